//! Environments the agents act in. Each turns an action string into an observation, as the
//! published systems' text interfaces do (exact strings matter: few-shot prompts and metrics
//! depend on them; see `shared/REFERENCE.md`).

pub mod hotpotqa;
pub mod household;
pub mod humaneval;
pub mod math;

use std::path::PathBuf;

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
