//! Feature pins for the CLI (see `Cargo.toml`): no code.
#![no_std]
