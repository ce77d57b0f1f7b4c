//! Math answer checkers against data: hand-written GSM8K reward, MATH equivalence and boxed
//! extraction fixtures (the MATH expectations agree with the published Hendrycks Python, and
//! `math_normalize.jsonl` holds that Python's own output), and the real GSM8K test split in
//! bundled data (`runtime/envs/data`).

use retroformer_e2e::data_dir;
use retroformer_envs::math::{self, Dataset};
use serde_json::Value;

/// The rows of `tests/data/math/<name>`, each with its 1-based line number.
fn fixture(name: &str) -> Vec<(usize, Value)> {
    let path = data_dir().join("math").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{name}:{}: bad JSON: {e}", i + 1));
            (i + 1, v)
        })
        .collect()
}

fn text<'a>(name: &str, line: usize, v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{name}:{line}: `{key}` is not a string"))
}

/// Fails listing every failing case at once.
fn report(name: &str, checked: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {checked} cases in {name} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_gsm8k_reward_case_gets_its_expected_reward() {
    let name = "gsm8k_reward.jsonl";
    let rows = fixture(name);
    let mut failures = Vec::new();
    for (line, v) in &rows {
        let response = text(name, *line, v, "response");
        let gold = text(name, *line, v, "gold");
        let want = v["reward"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}:{line}: `reward` is not a number"))
            as f32;
        let got = math::gsm8k_reward(response, gold);
        if got != want {
            failures.push(format!(
                "  line {line} ({}): response {response:?}, gold {gold:?}: got {got}, want {want}",
                v["note"]
            ));
        }
    }
    assert!(rows.len() >= 40, "only {} cases", rows.len());
    report(name, rows.len(), &failures);
}

#[test]
fn every_math_equivalence_case_holds_both_ways_and_through_the_reward() {
    let name = "math_equiv.jsonl";
    let rows = fixture(name);
    let mut failures = Vec::new();
    for (line, v) in &rows {
        let a = text(name, *line, v, "a");
        let b = text(name, *line, v, "b");
        let want = v["equiv"]
            .as_bool()
            .unwrap_or_else(|| panic!("{name}:{line}: `equiv` is not a boolean"));
        let note = &v["note"];
        for (x, y) in [(a, b), (b, a)] {
            let got = math::math_equiv(x, y);
            if got != want {
                failures.push(format!(
                    "  line {line} ({note}): math_equiv({x:?}, {y:?}) = {got}, want {want} \
                     (normalised: {:?} vs {:?})",
                    math::try_math_normalize(x),
                    math::try_math_normalize(y)
                ));
            }
        }
        // Boxed in a response, `a` scores against gold `b` as the equivalence says (`a` has no
        // unbalanced braces in any fixture row).
        let reward = math::math_reward(&format!("so the answer is $\\boxed{{{a}}}$."), b);
        let want_reward = if want { 1.0 } else { 0.0 };
        if reward != want_reward {
            failures.push(format!(
                "  line {line} ({note}): math_reward(\\boxed{{{a:?}}}, {b:?}) = {reward}, want {want_reward}"
            ));
        }
    }
    assert!(rows.len() >= 50, "only {} cases", rows.len());
    report(name, rows.len(), &failures);
}

#[test]
fn the_normalisation_reproduces_the_published_python_output_on_every_fixture_string() {
    let name = "math_normalize.jsonl";
    let rows = fixture(name);
    let mut failures = Vec::new();
    for (line, v) in &rows {
        let input = text(name, *line, v, "input");
        let want = v["expected"].as_str();
        let got = math::try_math_normalize(input);
        if got.as_deref() != want {
            failures.push(format!(
                "  line {line}: {input:?}: got {got:?}, want {want:?}"
            ));
        }
        let total = math::math_normalize(input);
        if total != want.unwrap_or(input) {
            failures.push(format!(
                "  line {line}: math_normalize({input:?}) = {total:?}, want the input back when the reference raises"
            ));
        }
    }
    assert!(rows.len() >= 100, "only {} cases", rows.len());
    report(name, rows.len(), &failures);
}

#[test]
fn every_last_boxed_case_extracts_its_expected_contents() {
    let name = "last_boxed.jsonl";
    let rows = fixture(name);
    let mut failures = Vec::new();
    for (line, v) in &rows {
        let input = text(name, *line, v, "text");
        let want = match &v["boxed"] {
            Value::Null => None,
            Value::String(s) => Some(s.as_str()),
            other => panic!("{name}:{line}: `boxed` is {other}, not a string or null"),
        };
        let got = math::last_boxed(input);
        if got.as_deref() != want {
            failures.push(format!(
                "  line {line} ({}): {input:?}: got {got:?}, want {want:?}",
                v["note"]
            ));
        }
    }
    assert!(rows.iter().any(|(_, v)| v["boxed"].is_null()));
    report(name, rows.len(), &failures);
}

#[test]
fn the_fixtures_catch_a_checker_that_ignores_the_answer() {
    // The reward fixture would fail for a checker that gave 1 to every boxed number, or one that
    // compared strings instead of numbers: both kinds of case are there.
    let rows = fixture("gsm8k_reward.jsonl");
    let rewards: Vec<f64> = rows
        .iter()
        .map(|(_, v)| v["reward"].as_f64().unwrap())
        .collect();
    for r in [1.0, 0.0, -1.0] {
        assert!(
            rewards.iter().filter(|&&x| x == r).count() >= 5,
            "few cases of reward {r}"
        );
    }
    let equiv: Vec<bool> = fixture("math_equiv.jsonl")
        .iter()
        .map(|(_, v)| v["equiv"].as_bool().unwrap())
        .collect();
    assert!(equiv.iter().filter(|&&e| e).count() >= 20);
    assert!(equiv.iter().filter(|&&e| !e).count() >= 20);
}

#[test]
fn every_real_gsm8k_test_gold_parses_and_its_own_boxed_form_scores_one() {
    let problems = math::load_gsm8k(math::gsm8k_source("test", None).unwrap()).unwrap();
    assert_eq!(problems.len(), 1319);
    assert_eq!(problems[0].id, "test-1");
    assert_eq!(problems[0].answer, "18");
    let mut failures = Vec::new();
    for p in &problems {
        assert_eq!(p.dataset, Dataset::Gsm8k);
        if math::parse_number(&p.answer).is_none() {
            failures.push(format!("  {}: gold {:?} does not parse", p.id, p.answer));
        }
        let response = format!("so \\boxed{{{}}}", p.answer);
        let r = math::gsm8k_reward(&response, &p.answer);
        if r != 1.0 {
            failures.push(format!("  {}: gold {:?} boxed scores {r}", p.id, p.answer));
        }
        if math::reward(p, &response) != 1.0 {
            failures.push(format!("  {}: reward() disagrees", p.id));
        }
        if math::reward(p, "I am not sure.") != -1.0 {
            failures.push(format!("  {}: an unboxed response does not score -1", p.id));
        }
        // The canonical vote of the gold is the gold itself (GSM8K golds are integers).
        if math::extract_answer(Dataset::Gsm8k, &response).as_deref() != Some(p.answer.as_str()) {
            failures.push(format!("  {}: extract_answer is not {:?}", p.id, p.answer));
        }
    }
    report("gsm8k/test.jsonl", problems.len(), &failures);
}

#[test]
fn a_wrong_number_scores_zero_on_every_real_gsm8k_test_problem() {
    let problems = math::load_gsm8k(math::gsm8k_source("test", None).unwrap()).unwrap();
    let wrong: Vec<_> = problems
        .iter()
        .filter(|p| {
            let off = math::parse_number(&p.answer).unwrap() + 10.0;
            math::reward(p, &format!("\\boxed{{{off}}}")) != 0.0
        })
        .map(|p| p.id.clone())
        .collect();
    assert!(wrong.is_empty(), "gold + 10 scored as correct: {wrong:?}");
}

#[test]
fn gsm8k_votes_of_equal_numbers_agree_and_math_votes_are_normalised() {
    let g = |r: &str| math::extract_answer(Dataset::Gsm8k, r);
    assert_eq!(g("\\boxed{18}"), g("\\boxed{18.0}"));
    assert_eq!(g("\\boxed{18}"), g("\\boxed{\\$18.}"));
    assert_eq!(g("\\boxed{1,000}"), Some("1000".into()));
    assert_eq!(g("\\boxed{0.5}"), Some("0.5".into()));
    assert_ne!(g("\\boxed{18}"), g("\\boxed{19}"));
    assert_eq!(g("no box"), None);
    let m = |r: &str| math::extract_answer(Dataset::Math, r);
    assert_eq!(m("\\boxed{\\dfrac12}"), m("\\boxed{1/2}"));
    assert_eq!(m("\\boxed{x = 5}"), Some("5".into()));
    assert_ne!(m("\\boxed{[0,1)}"), m("\\boxed{(0,1]}"));
    assert_eq!(m("none"), None);
}
