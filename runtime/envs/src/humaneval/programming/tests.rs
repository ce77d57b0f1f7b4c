use super::*;

#[test]
fn code_is_taken_from_the_block_that_defines_the_function() {
    let prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n";
    let reply = "Here:\n```python\nimport math\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\nDone.";
    assert_eq!(
        extract_code(reply, prompt, "add"),
        "def add(a, b):\n    return a + b\n"
    );
    // No fence at all: the whole reply.
    assert_eq!(
        extract_code("def add(a, b):\n    return a + b", prompt, "add"),
        "def add(a, b):\n    return a + b\n"
    );
    // A bare body goes under the prompt's signature, indented.
    assert_eq!(
        extract_code("```\nreturn a + b\n```", prompt, "add"),
        format!("{prompt}    return a + b\n")
    );
    // An unterminated fence still yields its code.
    assert_eq!(
        extract_code(
            "```python\ndef add(a, b):\n    return b + a\n",
            prompt,
            "add"
        ),
        "def add(a, b):\n    return b + a\n"
    );
}

#[test]
fn asserts_are_the_assert_lines_without_duplicates() {
    let reply = "Tests:\n```python\nassert f(1) == 2\n  assert f(2) == 4\nassert f(1) == 2\nprint('x')\nassertion = 3\nassert(f(0) == 0)\n```";
    assert_eq!(
        parse_asserts(reply),
        vec!["assert f(1) == 2", "assert f(2) == 4", "assert(f(0) == 0)"]
    );
}

#[test]
fn feedback_lists_passed_then_failed_asserts_with_their_output() {
    let r = |t: &str, o, out: &str| TestResult {
        test: t.into(),
        outcome: o,
        output: out.into(),
    };
    let fb = format_feedback(&[
        r("assert f(1) == 2", Outcome::Passed, ""),
        r("assert f(2) == 5", Outcome::Failed, "4"),
        r(
            "assert f(0) == 1",
            Outcome::Error,
            "ZeroDivisionError: division by zero",
        ),
        r("assert f(-1) == 0", Outcome::Timeout, "timeout"),
    ]);
    assert_eq!(
        fb,
        "Tests passed:\nassert f(1) == 2\n\nTests failed:\nassert f(2) == 5 # output: 4\nassert f(0) == 1 # output: ZeroDivisionError: division by zero\nassert f(-1) == 0 # output: timeout\n"
    );
}

#[test]
fn embedded_text_survives_quotes_and_newlines() {
    assert_eq!(py_str("a'b\n"), "bytes.fromhex('6127620a').decode('utf-8')");
}
