//! The text of Reflexion's programming loop: code and asserts out of replies, the programs
//! that run them, test feedback, and the prompts (our wording in Reflexion's structure).

use super::TestResult;
use retroformer_llm::ChatMessage;
use retroformer_sandbox::{Outcome, RunReport};

// ---- text handling --------------------------------------------------------------------------

/// The code in a reply: the first fenced block that defines `entry_point` (else the first
/// block, else the whole text). A bare body is completed with the prompt's signature.
pub fn extract_code(reply: &str, prompt: &str, entry_point: &str) -> String {
    let mut blocks = Vec::new();
    let mut rest = reply;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        let end = body.find("```").unwrap_or(body.len());
        blocks.push(&body[..end]);
        rest = &body[(end + 3).min(body.len())..];
    }
    let def = format!("def {entry_point}");
    let code = blocks
        .iter()
        .find(|b| b.contains(&def))
        .or(blocks.first())
        .map_or(reply, |b| b)
        .trim_matches('\n');
    if code.contains(&def) {
        format!("{}\n", code.trim_end())
    } else {
        // A body only: indent it under the prompt's signature when it is not indented.
        let indented: String = code
            .lines()
            .map(|l| {
                if l.starts_with(' ') || l.starts_with('\t') || l.is_empty() {
                    format!("{l}\n")
                } else {
                    format!("    {l}\n")
                }
            })
            .collect();
        format!("{}{}", prompt, indented)
    }
}

/// Candidate unit tests: the lines that start with `assert`, without duplicates, in order.
pub fn parse_asserts(reply: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in reply.lines() {
        let t = line.trim();
        if t.starts_with("assert ") || t.starts_with("assert(") {
            let t = t.to_string();
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Python source that decodes `text` from hex: embeds any text without quoting issues.
pub fn py_str(text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("bytes.fromhex('{hex}').decode('utf-8')")
}

/// The program that keeps the candidates that parse as a single Python `assert` statement.
pub fn syntax_filter_program(candidates: &[String]) -> String {
    let list: Vec<String> = candidates.iter().map(|c| py_str(c)).collect();
    format!(
        "import ast\nfor i, c in enumerate([{}]):\n    try:\n        t = ast.parse(c)\n        if len(t.body) == 1 and isinstance(t.body[0], ast.Assert):\n            print(i)\n    except Exception:\n        pass\n",
        list.join(", ")
    )
}

/// Marker of the line the test harness prints with its verdict.
const VERDICT: &str = "__retroformer_test__";

/// The program that runs one assert against an implementation and, when it fails, prints the
/// actual value of the left-hand side of an `==` comparison (or of `x` in a float test
/// `abs(x - y) < tol`).
pub fn test_program(imports: &str, implementation: &str, test: &str) -> String {
    format!(
        "{imports}{implementation}\n\nimport ast as __ast\n__t = {src}\ntry:\n    exec(compile(__t, '<test>', 'exec'), globals())\n    print({VERDICT:?}, 'ok')\nexcept AssertionError:\n    __out = None\n    __n = __ast.parse(__t).body[0].test\n    __lhs = None\n    if isinstance(__n, __ast.Compare) and len(__n.ops) == 1:\n        __l = __n.left\n        if isinstance(__n.ops[0], __ast.Eq):\n            __lhs = __l\n        elif isinstance(__n.ops[0], (__ast.Lt, __ast.LtE)) and isinstance(__l, __ast.Call) and isinstance(__l.func, __ast.Name) and __l.func.id == 'abs' and len(__l.args) == 1 and isinstance(__l.args[0], __ast.BinOp) and isinstance(__l.args[0].op, __ast.Sub):\n            __lhs = __l.args[0].left\n    if __lhs is not None:\n        try:\n            __out = repr(eval(compile(__ast.Expression(__lhs), '<lhs>', 'eval'), globals()))\n        except Exception as __e:\n            __out = type(__e).__name__ + ': ' + str(__e)\n    print({VERDICT:?}, 'failed', __out)\n    raise\n",
        src = py_str(test)
    )
}

/// The result of one visible test's run.
pub fn test_result(test: &str, r: &RunReport) -> TestResult {
    let verdict = r
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(VERDICT))
        .map(str::trim);
    let output = match r.outcome {
        // Exit status 0 without the harness's verdict: the implementation ended the program
        // (exit(), os._exit(0)) before the test ran. That is not a pass.
        Outcome::Passed if verdict != Some("ok") => {
            return TestResult {
                test: test.to_string(),
                outcome: Outcome::Error,
                output: "the program exited before the test ran".into(),
            }
        }
        Outcome::Passed => String::new(),
        Outcome::Failed => match verdict.and_then(|v| v.strip_prefix("failed")) {
            Some(v) if !v.trim().is_empty() && v.trim() != "None" => v.trim().to_string(),
            _ => "AssertionError".into(),
        },
        Outcome::Error => r
            .exception_line()
            .unwrap_or("error")
            .chars()
            .take(300)
            .collect(),
        other => other.name().to_string(),
    };
    TestResult {
        test: test.to_string(),
        outcome: r.outcome,
        output,
    }
}

/// Feedback in Reflexion's layout: the passed asserts, then each failed one with what
/// happened, stated plainly: `# output: V` (the value its left-hand side had), or
/// `# error: WHAT` (the exception's line, a timeout, a crash).
pub fn format_feedback(results: &[TestResult]) -> String {
    let mut s = String::from("Tests passed:\n");
    for r in results.iter().filter(|r| r.outcome == Outcome::Passed) {
        s.push_str(&r.test);
        s.push('\n');
    }
    s.push_str("\nTests failed:\n");
    for r in results.iter().filter(|r| r.outcome != Outcome::Passed) {
        let what = match r.outcome {
            Outcome::Failed => format!("output: {}", r.output),
            Outcome::Error => format!("error: {}", r.output),
            Outcome::Timeout => "error: timed out".into(),
            Outcome::MemoryLimit => "error: ran out of memory".into(),
            Outcome::KilledBySignal => "error: killed by a signal".into(),
            Outcome::SandboxFailure | Outcome::Passed => "error: the test could not run".into(),
        };
        s.push_str(&format!("{} # {what}\n", r.test));
    }
    s
}

// ---- prompts --------------------------------------------------------------------------------

/// The system message of the test-writing call.
pub const TESTS_SYSTEM: &str = "You write unit tests for Python functions. Given a function's signature and docstring, reply with up to 6 short, diverse and correct test cases: one `assert` statement per line, nothing else.";
const TESTS_EXAMPLE_USER: &str = "def count_vowels(s: str) -> int:\n    \"\"\"Return how many characters of s are vowels (a, e, i, o, u, in either case).\"\"\"\n";
const TESTS_EXAMPLE_REPLY: &str = "assert count_vowels(\"\") == 0\nassert count_vowels(\"Banana\") == 3\nassert count_vowels(\"xyz\") == 0\nassert count_vowels(\"AEIOU\") == 5";
/// The system message of the first implementation.
pub const IMPL_SYSTEM: &str = "You are a Python programmer. Reply only with Python code in one ```python block: the complete function, with its signature restated and the imports it needs. No explanations.";
/// The system message of a reflection.
pub const REFLECT_SYSTEM: &str = "You are a Python programming assistant. You are shown a function implementation and the results of unit tests on it; each failed test is followed by the value its left side had (`# output:`) or the error it raised (`# error:`). In a few sentences, explain why the implementation is wrong, as the failing tests show. This will be your hint for the next attempt. Reply with the explanation only, no code.";
const RETRY_SYSTEM: &str = "You are a Python programmer. You are given your previous implementation of a function, the results of unit tests on it and a hint about what went wrong. Reply only with the improved, complete function in one ```python block, with its signature restated. No explanations.";

/// What an implementation reply is opened with: the model continues inside a Python fence and
/// stops at the closing one, so it answers with code and nothing after it.
pub const CODE_FENCE: &str = "```python\n";

/// The chat messages that ask for unit tests.
pub fn tests_messages(prompt: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", TESTS_SYSTEM),
        ChatMessage::new("user", TESTS_EXAMPLE_USER),
        ChatMessage::new("assistant", TESTS_EXAMPLE_REPLY),
        ChatMessage::new("user", prompt),
    ]
}

/// The chat messages that ask for a first implementation.
pub fn impl_messages(prompt: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", IMPL_SYSTEM),
        ChatMessage::new("user", prompt),
    ]
}

/// The chat messages that ask for a self-reflection.
pub fn reflect_messages(implementation: &str, feedback: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", REFLECT_SYSTEM),
        ChatMessage::new(
            "user",
            format!(
                "[implementation]:\n```python\n{}\n```\n\n[unit test results]:\n{}\n[self-reflection]:",
                implementation.trim_end(),
                feedback
            ),
        ),
    ]
}

/// The chat messages that ask for a new implementation (memory 1: the newest reflection;
/// an empty one is left out).
pub fn retry_messages(
    prompt: &str,
    previous: &str,
    feedback: &str,
    reflection: &str,
) -> Vec<ChatMessage> {
    let reflection = reflection.trim();
    let hint = if reflection.is_empty() {
        String::new()
    } else {
        format!("[reflection on previous implementation]:\n{reflection}\n\n")
    };
    vec![
        ChatMessage::new("system", RETRY_SYSTEM),
        ChatMessage::new("user", prompt),
        ChatMessage::new(
            "assistant",
            format!("```python\n{}\n```", previous.trim_end()),
        ),
        ChatMessage::new(
            "user",
            format!(
                "[unit test results from previous implementation]:\n{feedback}\n{hint}[improved implementation]:"
            ),
        ),
    ]
}
