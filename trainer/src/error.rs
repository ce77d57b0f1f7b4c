//! The trainer's errors: at the bottom, so that every module can return them and none of them
//! reaches back up.

use retroformer_gguf as gguf;

/// Errors of the trainer library.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The file failed GGUF validation.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// llama.cpp or the tensor reader failed.
    #[error(transparent)]
    Llm(#[from] retroformer_llm::LlmError),
    /// The model's header or tensors do not describe a model the trainer supports.
    #[error("{path}: {reason}")]
    Model {
        /// The model file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A line of a data file is malformed.
    #[error("{path}:{line}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// 1-based line (0 for the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Several lines of a data file are malformed: each named on a line of its own, as
    /// [`Self::Data`] names one (at most [`MAX_BAD_LINES`](crate::data::MAX_BAD_LINES)).
    #[error("{}", each_line(path, lines))]
    DataLines {
        /// The file.
        path: String,
        /// Each 1-based line and what is wrong with it.
        lines: Vec<(usize, String)>,
    },
    /// Training diverged.
    #[error("step {step}: {what} (lower --lr, or check the rewards and weights in the data)")]
    NonFinite {
        /// The step (from 1).
        step: u64,
        /// What was not finite.
        what: String,
    },
    /// A setting is out of range.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The setting (command-line flag without dashes).
        field: String,
        /// Why.
        reason: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is valid GGUF but not a LoRA adapter.
    #[error("{0}: not a LoRA adapter (general.type is not \"adapter\")")]
    NotAnAdapter(String),
}

/// `PATH:LINE: REASON`, a line each.
fn each_line(path: &str, lines: &[(usize, String)]) -> String {
    let each: Vec<String> = lines
        .iter()
        .map(|(line, reason)| format!("{path}:{line}: {reason}"))
        .collect();
    each.join("\n")
}
