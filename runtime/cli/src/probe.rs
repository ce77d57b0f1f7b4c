//! `retroformer probe-load` (hidden): the child side of the load probe, glue around
//! [`retroformer::probe::child`]. If llama.cpp aborts or faults on the file, this process is
//! the one that ends.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ProbeArgs {
    /// The model file.
    #[arg(long)]
    model: PathBuf,
    /// An adapter file to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

pub fn probe_load(a: &ProbeArgs) -> Result<()> {
    retroformer::probe::child(&a.model, a.adapter.as_deref(), std::io::stdin())?;
    println!("ok");
    Ok(())
}
