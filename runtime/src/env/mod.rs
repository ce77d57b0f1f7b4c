//! Environments the agents act in. Each turns an action string into an observation, as the
//! published systems' text interfaces do (exact strings matter: few-shot prompts and metrics
//! depend on them; see `shared/REFERENCE.md`).

pub mod hotpotqa;
pub mod household;
pub mod humaneval;
pub mod math;

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
    /// No data file was given and none was found in the default places.
    #[error("no {what} data file found (looked in: {looked}); pass --data PATH. {hint}")]
    MissingData {
        /// The data set.
        what: &'static str,
        /// The places looked in.
        looked: String,
        /// Where to get it.
        hint: &'static str,
    },
}

/// The candidate places of a data file, in order: `$RETROFORMER_DATA/<folder>/<file>`,
/// `../shared/data/<folder>/<file>` (next to a checkout) and `shared/data/<folder>/<file>`.
pub fn data_candidates(folder: &str, file: &str) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("RETROFORMER_DATA") {
        candidates.push(PathBuf::from(d).join(folder).join(file));
    }
    candidates.push(
        std::path::Path::new("../shared/data")
            .join(folder)
            .join(file),
    );
    candidates.push(std::path::Path::new("shared/data").join(folder).join(file));
    candidates
}

/// The first of `candidates` that exists, else [`EnvError::MissingData`] listing them all.
pub fn find_data(
    candidates: &[PathBuf],
    what: &'static str,
    hint: &'static str,
) -> Result<PathBuf, EnvError> {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| EnvError::MissingData {
            what,
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint,
        })
}

/// Reads JSONL from `reader` (the file `path`), turning each non-blank line into a row with
/// `row(line, text)`; an error message from `row` becomes [`EnvError::Parse`] naming the
/// 1-based line. The data loaders all read through this.
pub(crate) fn parse_jsonl<T>(
    path: &Path,
    reader: impl BufRead,
    mut row: impl FnMut(usize, &str) -> Result<T, String>,
) -> Result<Vec<T>, EnvError> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
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
            message: "no problems in the file".into(),
        });
    }
    Ok(rows)
}
