//! Retroformer's experiments, over the environment registry: evaluations ([`eval`]), arms of
//! one experiment on the same tasks and seed ([`arms`]) and their paired comparison
//! ([`compare`]), the adapter canary ([`canary`]), and the Retroformer loop ([`retroformer_loop`]: collect rated
//! reflections, train the reflector with `retroformer-train`, install, canary), and expert
//! iteration ([`improve`]: the actor trained on its own verified answers).
//!
//! Models come from a [`ModelSource`]: the device runtime's backend for real runs
//! ([`BackendSource`]), scripted models in tests.

pub mod arms;
pub mod canary;
pub mod child;
pub mod compare;
pub mod eval;
pub mod improve;
mod models;
pub mod retroformer_loop;
pub mod rise_round;
pub mod stats;

pub use models::{BackendSource, ModelSource};

/// Why an experiment could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The environment refused its plan or failed.
    #[error(transparent)]
    Env(#[from] retroformer_envs::EnvError),
    /// A model could not be resolved or loaded.
    #[error(transparent)]
    Backend(#[from] retroformer::backend::BackendError),
    /// The model failed.
    #[error(transparent)]
    Llm(#[from] retroformer_llm::LlmError),
    /// The adapter store refused.
    #[error(transparent)]
    Store(#[from] retroformer::adapters::StoreError),
    /// A run's files could not be read or written.
    #[error(transparent)]
    Run(#[from] retroformer::agent::runner::RunError),
    /// A chart could not be written.
    #[error(transparent)]
    Report(#[from] retroformer_report::ReportError),
    /// A setting is wrong; `flag` names it (without `--`).
    #[error("--{flag} {message}")]
    Setting {
        /// The flag.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// A child process (the trainer) failed.
    #[error("{what}: {message}")]
    Child {
        /// The phase.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// Settings that contradict each other or what is on disk, in a sentence.
    #[error("{0}")]
    Config(String),
    /// A phase of an experiment failed. (Why is in the message, not a `source`: a chain
    /// printed whole would say it twice.)
    #[error("{what}: {error}")]
    Phase {
        /// The phase (`round 2: collect`).
        what: String,
        /// Why.
        error: Box<LabError>,
    },
    /// A file of the experiment could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl LabError {
    /// A [`LabError::Setting`] for `--flag`.
    pub fn setting(flag: &str, message: impl Into<String>) -> Self {
        LabError::Setting {
            flag: flag.into(),
            message: message.into(),
        }
    }

    /// This error, as the failure of phase `what`.
    pub fn during(self, what: String) -> Self {
        LabError::Phase {
            what,
            error: Box::new(self),
        }
    }

    /// A [`LabError::File`] for `path`.
    pub fn file(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        LabError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

impl From<retroformer::agent::files::FileError> for LabError {
    fn from(e: retroformer::agent::files::FileError) -> Self {
        LabError::File {
            path: e.path,
            message: e.message,
        }
    }
}
