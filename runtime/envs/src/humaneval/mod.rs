//! Programming problems: HumanEval (`HumanEval.jsonl.gz` or plain JSONL) and the MBPP-style
//! layout Reflexion's benchmarks use (`prompt`, `entry_point`, `test`), plus the programs that
//! check an implementation against the hidden tests.

pub mod env;
pub mod examples;
pub mod programming;

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::EnvError;
use crate::data::Source;

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `HumanEval/0`, or the row number when the file has no id.
    pub task_id: String,
    /// The signature and docstring (HumanEval: with the imports the function needs).
    pub prompt: String,
    /// The function under test.
    pub entry_point: String,
    /// The hidden tests: a `check(candidate)` function, or plain asserts.
    pub test: String,
    /// A reference solution, when the file has one (never shown to the model).
    #[serde(default)]
    pub canonical_solution: Option<String>,
}

#[derive(Deserialize)]
struct RawRow {
    #[serde(default, alias = "name")]
    task_id: Option<String>,
    prompt: String,
    entry_point: String,
    test: String,
    #[serde(default)]
    canonical_solution: Option<String>,
}

/// Load problems from JSONL, gzip-compressed when the file starts with the gzip magic. A
/// malformed row is an error naming its line.
pub fn load(source: impl Into<Source>) -> Result<Vec<Problem>, EnvError> {
    load_first(source, None)
}

/// [`load`], reading at most `cap` rows when there is a cap.
pub fn load_first(source: impl Into<Source>, cap: Option<usize>) -> Result<Vec<Problem>, EnvError> {
    let source = source.into();
    let path = &source.path();
    let reader = source.reader()?;
    let rows = super::parse_jsonl_first(path, reader, cap, |line_no, line| {
        let raw: RawRow = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if raw.entry_point.trim().is_empty()
            || !raw
                .entry_point
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_')
        {
            return Err(format!(
                "entry_point {:?} is not a Python identifier",
                raw.entry_point
            ));
        }
        if !raw.prompt.contains(&raw.entry_point) {
            return Err(format!(
                "the prompt does not mention entry_point {:?}",
                raw.entry_point
            ));
        }
        if raw.test.trim().is_empty() {
            return Err("test is empty".into());
        }
        Ok(Problem {
            task_id: raw.task_id.unwrap_or_else(|| format!("row-{line_no}")),
            prompt: raw.prompt,
            entry_point: raw.entry_point,
            test: raw.test,
            canonical_solution: raw.canonical_solution,
        })
    })?;
    super::require_rows(path, rows)
}

/// The problems: from `given` (`--data`), else the bundled HumanEval (see [`crate::data`]).
pub fn source(given: Option<&Path>) -> Source {
    Source::resolve(given, &crate::data::HUMANEVAL)
}

/// The prompt's top-level import lines (HumanEval prompts import what the signature needs,
/// e.g. `from typing import List`), to put above an implementation that lacks them.
pub fn prompt_imports(prompt: &str) -> String {
    prompt
        .lines()
        .filter(|l| l.starts_with("import ") || l.starts_with("from "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The program that runs the hidden tests against `implementation` (a complete function).
pub fn hidden_test_program(p: &Problem, implementation: &str) -> String {
    let call = if p.test.contains("def check(") {
        format!("\ncheck({})\n", p.entry_point)
    } else {
        String::new()
    };
    format!(
        "{}{}\n\n{}\n{}",
        prompt_imports(&p.prompt),
        implementation.trim_end(),
        p.test.trim_end(),
        call
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn plain_and_mbpp_style_rows_load_and_a_bad_row_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = r#"{"task_id": "T/0", "prompt": "def f(x):\n    \"\"\"Double.\"\"\"\n", "entry_point": "f", "test": "def check(candidate):\n    assert candidate(2) == 4\n"}"#;
        let mbpp = r#"{"name": "mbpp_1", "prompt": "def g():\n", "entry_point": "g", "test": "assert g() == 1\n"}"#;
        let p = write(dir.path(), "ok.jsonl", &format!("{good}\n\n{mbpp}\n"));
        let v = load(&p).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].task_id, "T/0");
        assert_eq!(v[1].task_id, "mbpp_1");
        let bad = write(
            dir.path(),
            "bad.jsonl",
            &format!("{good}\n{{\"prompt\": \"x\", \"entry_point\": \"f\"}}\n"),
        );
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2"), "{err}");
        let ident = write(
            dir.path(),
            "ident.jsonl",
            r#"{"prompt": "def f(): pass", "entry_point": "f; import os", "test": "x"}"#,
        );
        assert!(load(&ident)
            .unwrap_err()
            .to_string()
            .contains("ident.jsonl:1"));
    }

    #[test]
    fn the_bundled_humaneval_file_has_164_problems() {
        let v = load(source(None)).unwrap();
        assert_eq!(v.len(), 164);
        assert_eq!(v[0].task_id, "HumanEval/0");
        assert!(v.iter().all(|p| p.test.contains("def check(")));
    }

    #[test]
    fn the_hidden_test_program_has_imports_implementation_tests_and_the_check_call() {
        let p = Problem {
            task_id: "t".into(),
            prompt:
                "from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
                    .into(),
            entry_point: "f".into(),
            test: "def check(candidate):\n    assert candidate([1]) == 1\n".into(),
            canonical_solution: None,
        };
        let prog = hidden_test_program(&p, "def f(xs):\n    return sum(xs)\n");
        assert_eq!(
            prog,
            "from typing import List\ndef f(xs):\n    return sum(xs)\n\ndef check(candidate):\n    assert candidate([1]) == 1\n\ncheck(f)\n"
        );
    }
}
