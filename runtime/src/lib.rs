//! Retroformer's device runtime: what an agent needs on the device where it runs, and nothing
//! of the research harness (see `ARCHITECTURE.md` at the repository root).
//!
//! * [`backend`]: the one place a language-model backend is picked (llama.cpp, feature
//!   `llama`), and models loaded by name or path;
//! * [`manifest`] and [`fetch`]: model manifests and the model cache (downloads need the
//!   feature `fetch`);
//! * [`probe`]: the load probe, which loads a file in a child process before this process's
//!   llama.cpp reads it;
//! * [`provenance`]: each session that wrote a run folder's results, with its machine;
//! * [`adapters`]: the versioned adapter store with its canary policy (promote or roll back);
//! * [`agent`]: the agent core: the trial runner, the reflection slot and the strategies. It
//!   names no environment; environments plug in through its traits.
//!
//! The agent state itself (reflection memory, trajectories, the wire envelope) is
//! `retroformer-core`, re-exported here as [`core`].
#![forbid(unsafe_op_in_unsafe_fn)]

pub use retroformer_core as core;
pub use retroformer_llm as llm;

pub mod adapters;
pub mod agent;
pub mod backend;
mod child;
pub mod fetch;
pub mod manifest;
#[cfg(feature = "llama")]
pub mod probe;
pub mod provenance;
mod verdicts;
