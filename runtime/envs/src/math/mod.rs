//! Math problems (GSM8K, MATH) and their answer checkers, as RISE publishes them.
//!
//! - GSM8K: the gold answer is the number after `####`; a response's answer is its last
//!   `\boxed{...}`, compared numerically. Reward 1 (correct), 0 (wrong), -1 (no boxed answer, or
//!   one that is not a number).
//! - MATH: the gold answer is the last `\boxed{...}` of the reference solution; a response's last
//!   boxed expression is compared with it as a string after the Hendrycks MATH normalisation
//!   ([`math_normalize`], a port of `_strip_string` from `hendrycks/math`,
//!   `modeling/math_equivalence.py`). Reward 1, 0, or -1 when the response has no boxed answer.
//!
//! Deviations from the published Python, all deliberate:
//! - [`last_boxed`] takes whichever of `\boxed` and `\fbox` comes last (the reference looks for
//!   `\fbox` only when there is no `\boxed` at all), returns the contents of an `\fbox` too (the
//!   reference's `remove_boxed` drops them), and reads `\boxed {x}` (a space before the brace)
//!   as `\boxed{x}`.
//! - Where the reference normalisation would raise (a `\sqrt` or `\frac` at the very end, two
//!   `\text{ ` units), [`try_math_normalize`] gives `None` and [`math_equiv`] falls back to raw
//!   string equality, as the reference's `is_equiv` does in its `except` branch.

pub mod env;
pub mod expert;
pub mod retry;
pub mod retry_env;
pub mod rise;

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::EnvError;
use crate::data::Source;

/// Which benchmark a problem comes from (it decides the answer checker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// Grade-school math word problems; integer answers after `####`.
    Gsm8k,
    /// Hendrycks MATH competition problems; LaTeX answers in `\boxed{}`.
    Math,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MathProblem {
    /// `<file stem>-<line>` (e.g. `test-1`), or the row's `unique_id`/`id` (MATH).
    pub id: String,
    /// The benchmark, which picks the checker.
    pub dataset: Dataset,
    /// The problem statement shown to the model.
    pub question: String,
    /// gold final answer: GSM8K the number after `####` (commas removed); MATH the last `\boxed{}`
    /// of the solution
    pub answer: String,
    /// The reference solution (GSM8K: the whole `answer` field, `#### N` included; MATH: the
    /// `solution` field). Never shown to the model during evaluation.
    pub solution: Option<String>,
}

#[derive(Deserialize)]
struct Gsm8kRow {
    question: String,
    answer: String,
}

#[derive(Deserialize)]
struct MathRow {
    problem: String,
    solution: String,
    #[serde(default)]
    unique_id: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Read a JSONL file of problems (at least one) through [`super::parse_jsonl`].
fn load_jsonl(
    source: &Source,
    cap: Option<usize>,
    row: impl FnMut(usize, &str) -> Result<MathProblem, String>,
) -> Result<Vec<MathProblem>, EnvError> {
    let path = source.path();
    let rows = super::parse_jsonl_first(&path, source.reader()?, cap, row)?;
    super::require_rows(&path, rows)
}

/// Load GSM8K problems from JSONL rows `{"question": ..., "answer": "... #### N"}`. Ids are
/// `<file stem>-<line>` (`test-1` for the first line of `test.jsonl`). A malformed row, an
/// answer without `####`, or a gold answer that is not a number is an error naming its line.
pub fn load_gsm8k(source: impl Into<Source>) -> Result<Vec<MathProblem>, EnvError> {
    load_gsm8k_first(source, None)
}

/// [`load_gsm8k`], reading at most `cap` rows when there is a cap.
pub fn load_gsm8k_first(
    source: impl Into<Source>,
    cap: Option<usize>,
) -> Result<Vec<MathProblem>, EnvError> {
    let source = source.into();
    let stem = source.stem();
    load_jsonl(&source, cap, |line, text| {
        let raw: Gsm8kRow = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if raw.question.trim().is_empty() {
            return Err("question is empty".into());
        }
        if !raw.answer.contains("####") {
            return Err("answer has no `#### N` final answer".into());
        }
        let gold = gsm8k_gold(&raw.answer)
            .ok_or_else(|| "nothing after `####` in the answer".to_string())?;
        if parse_number(&gold).is_none() {
            return Err(format!("gold answer {gold:?} is not a number"));
        }
        Ok(MathProblem {
            id: format!("{stem}-{line}"),
            dataset: Dataset::Gsm8k,
            question: raw.question,
            answer: gold,
            solution: Some(raw.answer),
        })
    })
}

/// Load MATH problems from JSONL rows `{"problem": ..., "solution": ...}` (other fields such as
/// `type` and `level` are ignored; `unique_id` or `id` becomes the id, else `<file stem>-<line>`).
/// The gold answer is the solution's last `\boxed{}`; a solution without one is an error naming
/// its line.
pub fn load_math(source: impl Into<Source>) -> Result<Vec<MathProblem>, EnvError> {
    load_math_first(source, None)
}

/// [`load_math`], reading at most `cap` rows when there is a cap.
pub fn load_math_first(
    source: impl Into<Source>,
    cap: Option<usize>,
) -> Result<Vec<MathProblem>, EnvError> {
    let source = source.into();
    let stem = source.stem();
    load_jsonl(&source, cap, |line, text| {
        let raw: MathRow = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if raw.problem.trim().is_empty() {
            return Err("problem is empty".into());
        }
        let gold = last_boxed(&raw.solution)
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .ok_or_else(|| {
                "the solution has no (balanced, non-empty) \\boxed{} answer".to_string()
            })?;
        let id = match (raw.unique_id, raw.id) {
            (Some(u), _) => u,
            (None, Some(serde_json::Value::String(s))) => s,
            (None, Some(serde_json::Value::Number(n))) => n.to_string(),
            (None, Some(other)) => return Err(format!("id {other} is not a string or a number")),
            (None, None) => format!("{stem}-{line}"),
        };
        Ok(MathProblem {
            id,
            dataset: Dataset::Math,
            question: raw.problem,
            answer: gold,
            solution: Some(raw.solution),
        })
    })
}

/// GSM8K's `split` (`train`, `test` or `demo`): from `given` (`--data`), else the bundled
/// copy (see [`crate::data`]). `None` for another split name.
pub fn gsm8k_source(split: &str, given: Option<&Path>) -> Option<Source> {
    let bundled = match split {
        "train" => &crate::data::GSM8K_TRAIN,
        "test" => &crate::data::GSM8K_TEST,
        "demo" => &crate::data::GSM8K_DEMO,
        _ => return None,
    };
    Some(Source::resolve(given, bundled))
}

/// The contents of the last `\boxed{...}` or `\fbox{...}` in `text` (whichever comes last), with
/// nested braces balanced; `\boxed 5` (a space, then a token up to the next white space or `$`)
/// gives `5`. `None` when there is none, or when the last one's braces never close (braces are
/// counted raw, `\{` included, as the reference does).
pub fn last_boxed(text: &str) -> Option<String> {
    let (idx, cmd) = [r"\boxed", r"\fbox"]
        .iter()
        .filter_map(|c| text.rfind(c).map(|i| (i, *c)))
        .max_by_key(|(i, _)| *i)?;
    let rest = &text[idx + cmd.len()..];
    let after = rest.trim_start();
    if after.starts_with('{') {
        let mut depth = 0usize;
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(after[1..i].to_string());
                    }
                }
                _ => {}
            }
        }
        None
    } else if after.len() < rest.len() {
        let token = after
            .split(|c: char| c.is_whitespace() || c == '$')
            .next()
            .unwrap_or("");
        (!token.is_empty()).then(|| token.to_string())
    } else {
        None
    }
}

/// The GSM8K gold answer in an `answer` field: the text after the last `####`, trimmed, commas
/// removed. `None` without `####` or when nothing follows it.
pub fn gsm8k_gold(answer_field: &str) -> Option<String> {
    let (_, tail) = answer_field.rsplit_once("####")?;
    let gold = tail.trim().replace(',', "");
    (!gold.is_empty()).then_some(gold)
}

/// If `s` is `<prefix>...}` with the braces after `prefix` closing exactly at the end, the part
/// in between.
fn strip_wrapper<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = s.strip_prefix(prefix)?.strip_suffix('}')?;
    let mut depth = 0i64;
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0).then_some(inner)
}

/// A plain decimal: optional sign, ASCII digits with at most one `.`, at least one digit.
fn plain_decimal(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digits = body.chars().filter(|c| c.is_ascii_digit()).count();
    let dots = body.chars().filter(|&c| c == '.').count();
    if digits == 0 || dots > 1 || digits + dots != body.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b).filter(|x| x.is_finite())
}

/// A number written as an answer: after removing commas, white space, a leading `$` (or `\$`), a
/// trailing `%` (or `\%`), a trailing `.`, and a surrounding `\text{}` (also `\textbf{}`,
/// `\mathrm{}`, `\mathbf{}`, bare `{}`), a plain decimal (`18`, `-3`, `0.5`, `.5`), a fraction of two plain
/// decimals `a/b`, or `\frac{a}{b}` (`\dfrac`, `\tfrac`, with an optional sign in front).
/// LaTeX thousands separators `\,` and `{,}` and the unicode minus are understood too.
/// `None` otherwise: exponents, `inf`/`nan`, words, units, division by zero.
pub fn parse_number(s: &str) -> Option<f64> {
    let mut t = s.trim();
    loop {
        let unwrapped = [r"\text{", r"\textbf{", r"\mathrm{", r"\mathbf{", "{"]
            .iter()
            .find_map(|w| strip_wrapper(t, w));
        match unwrapped {
            Some(inner) => t = inner.trim(),
            None => break,
        }
    }
    let cleaned: String = t
        .replace(r"\,", "")
        .replace("{,}", "")
        .replace(r"\!", "")
        .chars()
        .filter(|&c| c != ',' && !c.is_whitespace())
        .map(|c| if c == '\u{2212}' { '-' } else { c })
        .collect();
    let mut t = cleaned.as_str();
    // Sign and dollar in either order: `-$5`, `$-5`.
    let mut sign = None;
    loop {
        if let Some(rest) = t.strip_prefix(r"\$").or_else(|| t.strip_prefix('$')) {
            t = rest;
        } else if let (None, Some(c @ ('-' | '+'))) = (sign, t.chars().next()) {
            sign = Some(c);
            t = &t[1..];
        } else {
            break;
        }
    }
    if t.starts_with(['-', '+']) {
        return None; // a second sign: `--18`
    }
    let negative = sign == Some('-');
    loop {
        if let Some(rest) = t.strip_suffix(r"\%").or_else(|| t.strip_suffix('%')) {
            t = rest;
        } else if let Some(rest) = t.strip_suffix('.') {
            t = rest;
        } else {
            break;
        }
    }
    let value = if let Some(rest) = [r"\frac", r"\dfrac", r"\tfrac"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
    {
        let rest = rest.strip_prefix('{')?;
        let (a, rest) = rest.split_once('}')?;
        let b = rest.strip_prefix('{')?.strip_suffix('}')?;
        ratio(plain_decimal(a)?, plain_decimal(b)?)?
    } else if let Some((a, b)) = t.split_once('/') {
        ratio(plain_decimal(a)?, plain_decimal(b)?)?
    } else {
        plain_decimal(t)?
    };
    Some(if negative { -value } else { value })
}

/// The canonical text of a number for voting: Rust's shortest round-trip form, never `-0`, never
/// an exponent (`18`, `0.5`, `-3`, `1000000000000`).
fn canonical_number(x: f64) -> String {
    format!("{}", x + 0.0)
}

/// GSM8K reward as RISE computes it: the response's last `\boxed{}` read with [`parse_number`];
/// none, or not a number: -1. Equal to the gold within `1e-9 * max(1, |gold|)` (tight: a gold in
/// the millions still needs the exact integer): 1, else 0 (also
/// 0 when the gold itself is not a number).
pub fn gsm8k_reward(response: &str, gold: &str) -> f32 {
    let Some(pred) = last_boxed(response).and_then(|b| parse_number(&b)) else {
        return -1.0;
    };
    let Some(gold) = parse_number(gold) else {
        return 0.0;
    };
    if (pred - gold).abs() <= 1e-9 * gold.abs().max(1.0) {
        1.0
    } else {
        0.0
    }
}

/// `_fix_sqrt`: `\sqrt3` -> `\sqrt{3}` (one character). `None` where the reference raises: a
/// `\sqrt` at the very end.
fn fix_sqrt(s: &str) -> Option<String> {
    if !s.contains(r"\sqrt") {
        return Some(s.to_string());
    }
    let mut parts = s.split(r"\sqrt");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        let first = part.chars().next()?;
        if first == '{' {
            out.push_str(r"\sqrt");
            out.push_str(part);
        } else {
            out.push_str(r"\sqrt{");
            out.push(first);
            out.push('}');
            out.push_str(&part[first.len_utf8()..]);
        }
    }
    Some(out)
}

/// `_fix_fracs`: `\frac12` -> `\frac{1}{2}`, `\frac1{72}` -> `\frac{1}{72}` (but not
/// `\frac{72}1`). A `\frac` followed by a single character leaves the whole string unchanged;
/// `None` where the reference raises: a `\frac` at the very end.
fn fix_fracs(s: &str) -> Option<String> {
    let mut parts = s.split(r"\frac");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        out.push_str(r"\frac");
        let mut chars = part.chars();
        let a = chars.next()?;
        if a == '{' {
            out.push_str(part);
            continue;
        }
        let Some(b) = chars.next() else {
            return Some(s.to_string());
        };
        let post = chars.as_str();
        out.push('{');
        out.push(a);
        out.push('}');
        if b != '{' {
            out.push('{');
            out.push(b);
            out.push('}');
        } else {
            out.push(b);
        }
        out.push_str(post);
    }
    Some(out)
}

/// Python's `str(int(x)) == x`: `0`, or an optional `-` and digits without a leading zero.
fn canonical_int(x: &str) -> bool {
    let digits = x.strip_prefix('-').unwrap_or(x);
    let well_formed = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed && (x == "0" || !digits.starts_with('0'))
}

/// `_fix_a_slash_b`: exactly one `/` between two integers written canonically -> `\frac{a}{b}`.
fn fix_a_slash_b(s: &str) -> String {
    let parts: Vec<&str> = s.split('/').collect();
    match parts[..] {
        [a, b] if canonical_int(a) && canonical_int(b) => format!(r"\frac{{{a}}}{{{b}}}"),
        _ => s.to_string(),
    }
}

/// `_remove_right_units`: everything before `\text{ ` (a unit). `None` where the reference's
/// assertion fails: `\text{ ` more than once.
fn remove_right_units(s: &str) -> Option<String> {
    if !s.contains(r"\text{ ") {
        return Some(s.to_string());
    }
    let parts: Vec<&str> = s.split(r"\text{ ").collect();
    (parts.len() == 2).then(|| parts[0].to_string())
}

/// The Hendrycks MATH normalisation (`_strip_string`), step for step; `None` where the Python
/// would raise an exception (see the module docs).
pub fn try_math_normalize(s: &str) -> Option<String> {
    let mut s = s.replace('\n', "");
    s = s.replace(r"\!", "");
    s = s.replace(r"\\", r"\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace(r"\left", "").replace(r"\right", "");
    s = s.replace(r"^{\circ}", "").replace(r"^\circ", "");
    s = s.replace(r"\$", "");
    s = remove_right_units(&s)?;
    s = s.replace(r"\%", "").replace('%', "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.is_empty() {
        return Some(s);
    }
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    let sides: Vec<&str> = s.split('=').collect();
    if sides.len() == 2 && sides[0].chars().count() <= 2 {
        s = sides[1].to_string();
    }
    s = fix_sqrt(&s)?;
    s = s.replace(' ', "");
    s = fix_fracs(&s)?;
    if s == "0.5" {
        s = r"\frac{1}{2}".to_string();
    }
    Some(fix_a_slash_b(&s))
}

/// The Hendrycks MATH `strip_string` normalisation: drops line breaks, `\!`, `\left`/`\right`,
/// degrees, `\$`, a trailing `\text{ unit}`, percent signs and spaces; turns `\\` into `\`,
/// `tfrac`/`dfrac` into `frac`, `.5` into `0.5`, `k = 5` (a left side of at most 2 characters)
/// into `5`, `\sqrt3` into `\sqrt{3}`, `\frac12` into `\frac{1}{2}`, `0.5` into `\frac{1}{2}`
/// and `a/b` (two integers) into `\frac{a}{b}`. Where the reference would raise, the input is
/// returned unchanged ([`try_math_normalize`] tells the two apart).
pub fn math_normalize(s: &str) -> String {
    try_math_normalize(s).unwrap_or_else(|| s.to_string())
}

/// Hendrycks `is_equiv`: equal after [`math_normalize`]; when either normalisation fails, raw
/// string equality.
pub fn math_equiv(a: &str, b: &str) -> bool {
    match (try_math_normalize(a), try_math_normalize(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// MATH reward: the response's last boxed expression; none: -1. [`math_equiv`] with the gold:
/// 1, else 0.
pub fn math_reward(response: &str, gold: &str) -> f32 {
    match last_boxed(response) {
        None => -1.0,
        Some(pred) if math_equiv(&pred, gold) => 1.0,
        Some(_) => 0.0,
    }
}

/// The reward of `response` for `problem`, by its data set's checker.
pub fn reward(problem: &MathProblem, response: &str) -> f32 {
    match problem.dataset {
        Dataset::Gsm8k => gsm8k_reward(response, &problem.answer),
        Dataset::Math => math_reward(response, &problem.answer),
    }
}

/// The canonical answer string of a response, for majority voting: GSM8K the last boxed number
/// in canonical form (`18.0`, `18` and `\$18` all give `18`; `1/2` and `0.5` give `0.5`); MATH
/// the [`math_normalize`]d last boxed expression. `None` when there is no boxed answer, it is
/// empty, or (GSM8K) it is not a number.
pub fn extract_answer(dataset: Dataset, response: &str) -> Option<String> {
    let boxed = last_boxed(response).filter(|b| !b.trim().is_empty())?;
    match dataset {
        Dataset::Gsm8k => parse_number(&boxed).map(canonical_number),
        Dataset::Math => Some(math_normalize(&boxed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn parse_error(e: EnvError) -> (usize, String) {
        match e {
            EnvError::Parse { line, message, .. } => (line, message),
            other => panic!("expected a parse error, got {other}"),
        }
    }

    #[test]
    fn gsm8k_rows_load_with_stem_and_line_ids_and_commas_removed_from_the_gold() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "test.jsonl",
            "{\"question\": \"Q1?\", \"answer\": \"3*6=18\\n#### 18\"}\n\n{\"question\": \"Q2?\", \"answer\": \"big\\n#### 1,234,567\"}\n",
        );
        let v = load_gsm8k(&p).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, "test-1");
        assert_eq!(v[0].answer, "18");
        assert_eq!(v[0].dataset, Dataset::Gsm8k);
        assert_eq!(v[0].solution.as_deref(), Some("3*6=18\n#### 18"));
        assert_eq!(
            v[1].id, "test-3",
            "ids follow file lines, blank lines included"
        );
        assert_eq!(v[1].answer, "1234567");
        assert_eq!(reward(&v[1], r"\boxed{1,234,567}"), 1.0);
    }

    #[test]
    fn a_malformed_gsm8k_row_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"question\": \"Q?\", \"answer\": \"#### 1\"}";
        let p = write(
            dir.path(),
            "bad.jsonl",
            &format!("{good}\n{good}\n{{\"question\": \"Q?\"\n"),
        );
        let err = load_gsm8k(&p).unwrap_err();
        assert!(err.to_string().contains("bad.jsonl:3"), "{err}");
        assert_eq!(parse_error(err).0, 3);
    }

    #[test]
    fn a_gsm8k_answer_without_hashes_or_with_a_non_number_gold_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "nohash.jsonl",
            "{\"question\": \"Q?\", \"answer\": \"#### 2\"}\n{\"question\": \"Q?\", \"answer\": \"The answer is 5\"}\n",
        );
        let (line, message) = parse_error(load_gsm8k(&p).unwrap_err());
        assert_eq!(line, 2);
        assert!(message.contains("####"), "{message}");
        let p = write(
            dir.path(),
            "word.jsonl",
            "{\"question\": \"Q?\", \"answer\": \"#### five\"}\n",
        );
        let (line, message) = parse_error(load_gsm8k(&p).unwrap_err());
        assert_eq!(line, 1);
        assert!(message.contains("five"), "{message}");
        let p = write(dir.path(), "empty.jsonl", "\n\n");
        assert_eq!(parse_error(load_gsm8k(&p).unwrap_err()).0, 0);
    }

    #[test]
    fn math_rows_take_the_last_boxed_of_the_solution_and_their_own_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "algebra.jsonl",
            concat!(
                r#"{"problem": "P1", "solution": "First \\boxed{1}, then $\\boxed{\\frac{1}{2}}$.", "type": "Algebra", "level": "Level 2", "unique_id": "test/algebra/1.json"}"#,
                "\n",
                r#"{"problem": "P2", "solution": "So \\boxed{x^{2}}", "id": 7}"#,
                "\n",
                r#"{"problem": "P3", "solution": "\\fbox{3}", "level": 5}"#,
                "\n",
            ),
        );
        let v = load_math(&p).unwrap();
        assert_eq!(v[0].answer, r"\frac{1}{2}");
        assert_eq!(v[0].id, "test/algebra/1.json");
        assert_eq!(v[0].dataset, Dataset::Math);
        assert_eq!(v[1].answer, "x^{2}");
        assert_eq!(v[1].id, "7");
        assert_eq!(v[2].answer, "3");
        assert_eq!(v[2].id, "algebra-3");
        assert_eq!(reward(&v[0], r"\boxed{\dfrac12}"), 1.0);
        assert_eq!(reward(&v[0], r"\boxed{0.4}"), 0.0);
        assert_eq!(reward(&v[0], "one half"), -1.0);
    }

    #[test]
    fn a_math_solution_without_a_boxed_answer_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "m.jsonl",
            "{\"problem\": \"P\", \"solution\": \"\\\\boxed{2}\"}\n{\"problem\": \"P\", \"solution\": \"It is 2.\"}\n",
        );
        let (line, message) = parse_error(load_math(&p).unwrap_err());
        assert_eq!(line, 2);
        assert!(message.contains("boxed"), "{message}");
        let p = write(
            dir.path(),
            "u.jsonl",
            "{\"problem\": \"P\", \"solution\": \"\\\\boxed{2\"}\n",
        );
        assert_eq!(parse_error(load_math(&p).unwrap_err()).0, 1);
        let p = write(dir.path(), "f.jsonl", "{\"problem\": \"P\"}\n");
        assert_eq!(parse_error(load_math(&p).unwrap_err()).0, 1);
    }

    #[test]
    fn a_missing_file_is_an_io_error_an_unknown_split_has_no_source_and_the_bundled_test_split_reads(
    ) {
        let err = load_gsm8k(Path::new("/nonexistent/gsm8k/test.jsonl")).unwrap_err();
        assert!(matches!(err, EnvError::Io { .. }), "{err}");
        assert!(gsm8k_source("no-such-split-xyz", None).is_none());
        let test = load_gsm8k(gsm8k_source("test", None).unwrap()).unwrap();
        assert_eq!((test.len(), test[0].id.as_str()), (1319, "test-1"));
    }

    #[test]
    fn the_reference_normalisation_steps_behave_as_the_python_does() {
        assert_eq!(fix_fracs(r"\frac12"), Some(r"\frac{1}{2}".into()));
        assert_eq!(fix_fracs(r"\frac1{72}"), Some(r"\frac{1}{72}".into()));
        assert_eq!(fix_fracs(r"\frac{72}1"), Some(r"\frac{72}1".into()));
        assert_eq!(fix_fracs(r"3\frac1"), Some(r"3\frac1".into()));
        assert_eq!(fix_fracs(r"3\frac"), None);
        assert_eq!(
            fix_sqrt(r"\sqrt3+\sqrt{2}"),
            Some(r"\sqrt{3}+\sqrt{2}".into())
        );
        assert_eq!(fix_sqrt(r"2\sqrt"), None);
        assert_eq!(fix_a_slash_b("3/4"), r"\frac{3}{4}");
        assert_eq!(fix_a_slash_b("-3/4"), r"\frac{-3}{4}");
        assert_eq!(fix_a_slash_b("03/4"), "03/4");
        assert_eq!(fix_a_slash_b("-0/4"), "-0/4");
        assert_eq!(fix_a_slash_b("0/4"), r"\frac{0}{4}");
        assert_eq!(fix_a_slash_b("x/4"), "x/4");
        assert_eq!(fix_a_slash_b("1/2/3"), "1/2/3");
        assert_eq!(remove_right_units(r"5\text{ cm}"), Some("5".into()));
        assert_eq!(remove_right_units(r"5\text{ cm}\text{ s}"), None);
        assert_eq!(try_math_normalize(""), Some(String::new()));
        assert_eq!(try_math_normalize(" .5"), Some(r"\frac{1}{2}".into()));
        assert_eq!(try_math_normalize("k = 7"), Some("7".into()));
        assert_eq!(try_math_normalize("abc = 7"), Some("abc=7".into()));
    }

    #[test]
    fn majority_vote_answers_are_canonical() {
        let g = |r: &str| extract_answer(Dataset::Gsm8k, r);
        assert_eq!(g(r"\boxed{18.0}"), Some("18".into()));
        assert_eq!(g(r"\boxed{\$18}"), Some("18".into()));
        assert_eq!(g(r"\boxed{1/2}"), Some("0.5".into()));
        assert_eq!(g(r"\boxed{-3}"), Some("-3".into()));
        assert_eq!(g(r"\boxed{-0}"), Some("0".into()));
        assert_eq!(
            g(r"\boxed{1,000,000,000,000}"),
            Some("1000000000000".into())
        );
        assert_eq!(g(r"\boxed{eighteen}"), None);
        assert_eq!(g(r"\boxed{}"), None);
        assert_eq!(g("18"), None);
        let m = |r: &str| extract_answer(Dataset::Math, r);
        assert_eq!(m(r"\boxed{\dfrac{1}{2}}"), Some(r"\frac{1}{2}".into()));
        assert_eq!(m(r"\boxed{0.5}"), Some(r"\frac{1}{2}".into()));
        assert_eq!(m(r"\boxed{ }"), None);
    }
}
