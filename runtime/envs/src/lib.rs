//! Retroformer's environments, each with its agent and its own reflection prompt: HotPotQA
//! ([`hotpotqa`]), the household world ([`household`]), HumanEval ([`humaneval`]) and GSM8K /
//! MATH with RISE, and GSM8K with Reflexion's retries (`gsm8k-retry`) ([`math`]). Each turns an action string into an observation, as the published
//! systems' text interfaces do (exact strings matter: few-shot prompts and metrics depend on
//! them). The benchmark data they read is bundled ([`data`]).

pub mod data;
pub mod hotpotqa;
pub mod household;
#[cfg(unix)]
pub mod humaneval;
pub mod math;
mod registry;
mod trial_eval;
mod trials;

pub use registry::{
    BenchEpisode, Chart, Environment, EvalPlan, EvalReport, Evaluation, Flag, FlagKind, Models,
    Needs, Options, Progress, Registry, Setting, Spec,
};
pub use trial_eval::{TrialEnv, TrialEval};
pub use trials::{success_points, AgentModels};

/// Episodes an evaluation runs at once by default (`--parallel`): sequences in flight in one
/// session, each episode saved as it ends. On 2 CPU cores 32 sequences decode about 3x one
/// (Qwen2.5-Coder-0.5B; `cargo bench --bench throughput`); fewer where a quarter of the free
/// memory holds fewer lanes.
pub const DEFAULT_PARALLEL: u32 = 32;

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What an environment answers to one action.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// The observation text shown to the agent.
    pub observation: String,
    /// Whether the episode has ended.
    pub done: bool,
    /// Reward for this step (1.0 for a correct final answer in binary-reward environments).
    pub reward: f32,
}

/// Why an environment's data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting is wrong; `flag` names it as the command line does (without `--`).
    #[error("--{flag} {message}")]
    Setting {
        /// The flag.
        flag: String,
        /// The value and what is wrong with it.
        message: String,
    },
    /// A run failed (its files, its agent, its settings).
    #[error(transparent)]
    Run(#[from] retroformer::agent::runner::RunError),
    /// The model failed.
    #[error(transparent)]
    Llm(#[from] retroformer_llm::LlmError),
    /// The sandbox could not be set up.
    #[cfg(unix)]
    #[error(transparent)]
    Sandbox(#[from] retroformer_sandbox::SandboxError),
}

impl EnvError {
    /// A [`EnvError::Setting`] for `--flag`.
    pub fn setting(flag: &str, message: impl Into<String>) -> Self {
        EnvError::Setting {
            flag: flag.into(),
            message: message.into(),
        }
    }
}

/// Reads JSONL from `reader` (the file `path`), turning each non-blank line into a row with
/// `row(line, text)`; an error message from `row` becomes [`EnvError::Parse`] naming the
/// 1-based line. The data loaders all read through this.
pub fn parse_jsonl<T>(
    path: &Path,
    reader: impl BufRead,
    row: impl FnMut(usize, &str) -> Result<T, String>,
) -> Result<Vec<T>, EnvError> {
    parse_jsonl_first(path, reader, None, row)
}

/// [`parse_jsonl`], stopping after `cap` rows when there is a cap: a run that takes the first
/// few tasks of a large file reads only those.
pub fn parse_jsonl_first<T>(
    path: &Path,
    reader: impl BufRead,
    cap: Option<usize>,
    mut row: impl FnMut(usize, &str) -> Result<T, String>,
) -> Result<Vec<T>, EnvError> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        if cap.is_some_and(|n| out.len() >= n) {
            break;
        }
        let line = line.map_err(|source| EnvError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(row(i + 1, &line).map_err(|message| EnvError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        })?);
    }
    Ok(out)
}

/// `rows`, or a parse error for the whole file when there are none.
pub(crate) fn require_rows<T>(path: &Path, rows: Vec<T>) -> Result<Vec<T>, EnvError> {
    if rows.is_empty() {
        return Err(EnvError::Parse {
            path: path.to_path_buf(),
            line: 0,
            message: "the file has no rows".into(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_read_stops_at_its_rows_and_never_reads_the_rest() {
        // Blank lines are not rows; the broken last line would be an error if it were read.
        let text = "1\n\n2\n3\n{broken\n";
        let int = |_: usize, l: &str| l.parse::<u32>().map_err(|e| e.to_string());
        let path = Path::new("x.jsonl");
        let two = parse_jsonl_first(path, text.as_bytes(), Some(2), int).unwrap();
        assert_eq!(two, [1, 2]);
        let three = parse_jsonl_first(path, text.as_bytes(), Some(3), int).unwrap();
        assert_eq!(three, [1, 2, 3]);
        let all = parse_jsonl(path, text.as_bytes(), int)
            .unwrap_err()
            .to_string();
        assert!(all.contains("x.jsonl") && all.contains('5'), "{all}");
    }
}
