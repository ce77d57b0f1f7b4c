//! Retroformer runtime: on-device agents that improve from their own failures.
//!
//! The crate has two layers (see `ARCHITECTURE.md` at the repository root):
//!
//! * a `no_std` + `alloc` core that carries agent state: [`memory`] (bounded reflection memory),
//!   [`trajectory`] (tasks, steps, episodes), [`wire`] (the versioned postcard storage/wire
//!   envelope) and [`deadline`] (time budgets on `embassy-time`);
//! * `std` modules for the device: [`gguf`] (pure-Rust GGUF validator), [`fsutil`] (atomic
//!   writes), [`manifest`] and [`fetch`] (model manifests and the model cache), [`target`]
//!   (hardware profiles), [`llm`] (the language-model layer over llama.cpp, feature `llama`),
//!   and [`env`] (the environments agents act in).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod deadline;
pub mod memory;
pub mod rng;
pub mod trajectory;
pub mod wire;

#[cfg(feature = "std")]
pub mod adapters;
#[cfg(feature = "std")]
pub mod agent;
#[cfg(feature = "std")]
pub mod bench;
#[cfg(feature = "std")]
pub mod env;
#[cfg(feature = "std")]
pub mod fetch;
#[cfg(feature = "std")]
pub mod fsutil;
#[cfg(feature = "std")]
pub mod gguf;
#[cfg(feature = "std")]
pub mod manifest;
#[cfg(feature = "std")]
pub mod report;
#[cfg(all(feature = "std", unix))]
pub mod sandbox;
#[cfg(feature = "std")]
pub mod target;

#[cfg(feature = "std")]
pub mod llm;
