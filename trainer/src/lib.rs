//! Retroformer trainer: gradient updates with `burn` on LoRA adapters of GGUF models, exported
//! back to GGUF for the runtime.
//!
//! - [`config`]: the architecture read from a GGUF header;
//! - [`model`]: the `llama` / `qwen2` forward pass in burn, weights read from a GGUF file;
//! - [`lora`]: the trainable factors; [`export`]: their export as a llama.cpp adapter;
//! - [`data`]: JSONL examples (prompt/response, rating records, RISE samples) and tokenisation;
//! - [`native`]: the CPU engine: a hand-written forward and backward for LoRA training;
//! - [`objective`]: SFT, RWR, the reward model, REINFORCE and PPO;
//! - [`train`]: the training loop and its checkpoints;
//! - [`error`] (at the bottom: every module returns it), [`backend`] (where a run computes),
//!   [`inspect`] (an adapter's shape and provenance), and the run's base loading and report.

pub mod backend;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
mod grads;
mod heldout;
pub mod inspect;
pub mod lora;
pub mod model;
pub mod native;
pub mod objective;
mod run;
pub mod train;

pub use backend::{backend_device, Backend};
pub use error::TrainerError;
pub use inspect::{inspect_adapter, AdapterSummary};
pub use run::{load_base, write_head, write_run_report};
