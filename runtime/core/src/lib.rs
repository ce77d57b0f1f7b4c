//! Retroformer's core: what an agent carries and what crosses a process, in `no_std` + `alloc`.
//!
//! * [`memory`]: the bounded reflection memory; [`trajectory`]: tasks, steps, episodes;
//!   [`wire`]: the versioned postcard storage/wire envelope; [`rng`]: seeded randomness;
//!   [`deadline`]: time budgets on `embassy-time`.
//! * [`records`]: every record that one process writes and another reads (the Retroformer
//!   rating record, the RISE training sample, the adapter provenance keys, the trainer's
//!   benchmark figure), one type each, so that writer and reader cannot drift apart.
//! * With `std`: [`fsutil`] (crash-safe writes, used for every persisted file) and [`rss`]
//!   (peak resident memory of this process or a child).
//!
//! This crate depends on no other workspace crate (see `ARCHITECTURE.md`).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod deadline;
pub mod memory;
pub mod records;
pub mod rng;
pub mod text;
pub mod trajectory;
pub mod wire;

#[cfg(feature = "std")]
pub mod fsutil;
#[cfg(feature = "std")]
pub mod rss;
