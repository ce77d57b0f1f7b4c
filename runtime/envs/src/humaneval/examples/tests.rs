use super::*;
use crate::humaneval::{load, source, Problem};

fn bundled() -> Vec<Problem> {
    load(source(None)).unwrap()
}

/// The docstring tests of a bundled HumanEval problem.
fn tests_of(task: &str) -> Vec<String> {
    let p = bundled()
        .into_iter()
        .find(|p| p.task_id == task)
        .unwrap_or_else(|| panic!("{task}"));
    docstring_tests(&p.prompt, &p.entry_point)
}

#[test]
fn a_doctest_with_a_float_is_compared_within_a_tolerance() {
    assert_eq!(
        tests_of("HumanEval/2"),
        vec!["assert abs(truncate_number(3.5) - 0.5) < 1e-6"]
    );
    // A wrapped call and a negative float, with the example's comment dropped.
    assert_eq!(
        tests_of("HumanEval/32"),
        vec![
            "assert abs(round(find_zero([1, 2]), 2) - (-0.5)) < 1e-6",
            "assert abs(round(find_zero([-6, 11, -6, 1]), 2) - 1.0) < 1e-6",
        ]
    );
}

#[test]
fn doctests_with_strings_keep_their_quotes_and_escapes() {
    let t = tests_of("HumanEval/51");
    assert_eq!(t.len(), 6);
    assert_eq!(t[0], "assert remove_vowels('') == ''");
    assert_eq!(
        t[1],
        r#"assert remove_vowels("abcdef\nghijklm") == 'bcdf\nghjklm'"#
    );
    assert_eq!(
        tests_of("HumanEval/27"),
        vec!["assert flip_case('Hello') == 'hELLO'"]
    );
}

#[test]
fn a_prompt_without_examples_has_no_docstring_tests() {
    // decode_cyclic: no examples (its helper's docstring is not its own).
    assert!(tests_of("HumanEval/38").is_empty());
    assert!(tests_of("HumanEval/41").is_empty());
}

#[test]
fn doctest_forms_without_output_mean_none_or_assert_themselves() {
    assert_eq!(tests_of("HumanEval/12")[0], "assert longest([]) == None");
    assert_eq!(
        tests_of("HumanEval/108"),
        vec![
            "assert count_nums([]) == 0",
            "assert count_nums([-1, 11, -11]) == 1",
            "assert count_nums([1, 1, 2]) == 3",
        ]
    );
    // `>>> f(x) [..]` (a missing `==`) is not Python we can trust: left out.
    assert_eq!(tests_of("HumanEval/116").len(), 2);
}

#[test]
fn an_output_over_several_lines_is_joined() {
    assert_eq!(
        tests_of("HumanEval/113")[1],
        r#"assert odd_count(['3', "11111111"]) == ["the number of odd elements 1n the str1ng 1 of the 1nput.", "the number of odd elements 8n the str8ng 8 of the 8nput."]"#
    );
}

#[test]
fn prose_examples_with_arrows_words_and_bullets_parse() {
    assert_eq!(
        tests_of("HumanEval/72")[0],
        "assert will_it_fly([1, 2], 5) == False"
    );
    // `=> true`: lowercase booleans in prose.
    assert_eq!(
        tests_of("HumanEval/76")[0],
        "assert is_simple_power(1, 4) == True"
    );
    // `should return 16.`: the sentence's period is not part of the value.
    assert_eq!(
        tests_of("HumanEval/97")[0],
        "assert multiply(148, 412) == 16"
    );
    assert_eq!(
        tests_of("HumanEval/79")[0],
        r#"assert decimal_to_binary(15) == "db1111db""#
    );
    assert_eq!(tests_of("HumanEval/88")[0], "assert sort_array([]) == []");
    assert_eq!(
        tests_of("HumanEval/150")[0],
        "assert x_or_y(7, 34, 12) == 34"
    );
    // A call over several lines.
    assert_eq!(
        tests_of("HumanEval/87")[0],
        "assert get_row([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 1, 6], [1, 2, 3, 4, 5, 1]], 1) == [(0, 0), (1, 4), (1, 0), (2, 5), (2, 0)]"
    );
}

#[test]
fn for_and_input_output_examples_become_positional_calls() {
    assert_eq!(
        tests_of("HumanEval/112")[0],
        r#"assert reverse_delete("abcde", "ae") == ('bcd', False)"#
    );
    assert_eq!(
        tests_of("HumanEval/120"),
        vec![
            "assert maximum([-3, -4, 5], 3) == [-4, -3, 5]",
            "assert maximum([4, -4, 4], 2) == [4, 4]",
            "assert maximum([-3, 2, 1, 2, -1, -2, 1], 1) == [2]",
        ]
    );
    // A single value for a function of one parameter.
    assert_eq!(
        tests_of("HumanEval/68")[0],
        "assert pluck([4, 2, 3]) == [2, 1]"
    );
    // `For N = 1000, the sum of digits will be 1 the output should be "1".`: prose between.
    assert!(tests_of("HumanEval/84").is_empty());
}

#[test]
fn examples_that_are_not_values_are_left_out() {
    // Unquoted arguments (`is_happy(a) => False`).
    assert!(tests_of("HumanEval/80").is_empty());
    // Arithmetic as the expected value (`-> 19 - 5 - 6 = 8`).
    assert!(tests_of("HumanEval/67").is_empty());
    // A recurrence written with `=` (`tri(n) = 1 + n / 2`): no `=` example is trusted.
    assert!(tests_of("HumanEval/130").is_empty());
    // `("Venus")` is a string, not the tuple the author meant: left out, the others kept.
    assert_eq!(tests_of("HumanEval/148").len(), 2);
    // `""aaaaaaa"`: a stray quote.
    assert_eq!(tests_of("HumanEval/158").len(), 2);
    // `== 1 + 9 + 0 + 0 = 10`.
    assert_eq!(
        tests_of("HumanEval/151")[0],
        "assert double_the_difference([-1, -2, 0]) == 0"
    );
}

#[test]
fn most_bundled_prompts_yield_docstring_tests() {
    let problems = bundled();
    let with: Vec<usize> = problems
        .iter()
        .map(|p| docstring_tests(&p.prompt, &p.entry_point).len())
        .collect();
    let prompts = with.iter().filter(|n| **n > 0).count();
    let tests: usize = with.iter().sum();
    // 151 of 164 prompts, 432 tests (tests/tests/humaneval.rs runs them on the reference
    // solutions).
    assert_eq!((prompts, tests), (151, 432));
    let without: Vec<&str> = problems
        .iter()
        .zip(&with)
        .filter(|(_, n)| **n == 0)
        .map(|(p, _)| p.task_id.as_str())
        .collect();
    assert_eq!(
        without,
        [38, 41, 50, 67, 80, 81, 83, 84, 105, 115, 130, 149, 160].map(|i| format!("HumanEval/{i}"))
    );
}

#[test]
fn literals_are_read_as_python_writes_them_and_anything_else_is_refused() {
    let lit = |s: &str| {
        let mut c = Cursor::new(s);
        let v = c.literal(true);
        c.ws();
        v.filter(|_| c.done())
    };
    let text = |s: &str| lit(s).map(|(t, _)| t);
    assert_eq!(text("[1,2 ,3,]"), Some("[1, 2, 3]".into()));
    assert_eq!(text("(1,)"), Some("(1,)".into()));
    assert_eq!(text("()"), Some("()".into()));
    assert_eq!(
        text("{'a':1, 2: [None]}"),
        Some("{'a': 1, 2: [None]}".into())
    );
    assert_eq!(text("{1, 2}"), Some("{1, 2}".into()));
    assert_eq!(text("- 5"), Some("-5".into()));
    assert_eq!(text("0x1F"), Some("0x1F".into()));
    assert_eq!(text("r'a\\b'"), Some("r'a\\b'".into()));
    assert_eq!(text("'it\\'s'"), Some("'it\\'s'".into()));
    assert_eq!(text("false"), Some("False".into()));
    assert_eq!(lit("6.00").map(|(_, k)| k), Some(Kind::Float));
    assert_eq!(lit("1e-3").map(|(_, k)| k), Some(Kind::Float));
    assert_eq!(lit("[0.5]").map(|(_, k)| k), Some(Kind::Other));
    for bad in [
        "(1)", "x", "'a' 'b'", "3j", "0b12", "[1, 2", "'open", "f'x'", "1 + 2", "{1: }",
    ] {
        assert_eq!(text(bad), None, "{bad}");
    }
}

#[test]
fn a_signature_names_its_parameters_and_defaults() {
    let p = parameters(
        "from typing import List\n\ndef f(xs: List[int], k: int = 2) -> int:\n    \"\"\"x\"\"\"\n",
        "f",
    )
    .unwrap();
    assert_eq!(
        p,
        vec![
            Param {
                name: "xs".into(),
                has_default: false
            },
            Param {
                name: "k".into(),
                has_default: true
            }
        ]
    );
    assert_eq!(assignments("xs = [1]", &p), Some("[1]".into()));
    assert_eq!(assignments("k = 3, xs = [1]", &p), Some("[1], 3".into()));
    assert_eq!(assignments("k = 3", &p), None);
    assert_eq!(assignments("ys = [1]", &p), None);
    assert!(parameters("def g(*args):\n    \"\"\"x\"\"\"\n", "g").is_none());
}
