//! `retroformer probe-load` (hidden): the child side of the load probe
//! (`retroformer::probe`). Loads a model and an adapter with the profile read from stdin,
//! decodes one token, prints `ok`. If llama.cpp aborts or faults on the file, this process is
//! the one that ends.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use retroformer::backend::{LoadOptions, Model};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::{GenerateRequest, LanguageModel, SamplingParams, SessionOptions};

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
    let mut json = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut json)
        .context("reading the profile from stdin")?;
    let profile: TargetProfile = serde_json::from_str(&json).context("the profile on stdin")?;
    let model = Model::load(&a.model, LoadOptions::new(profile))?;
    let mut session = model.session(&SessionOptions {
        context_size: Some(64),
        threads: None,
        sequences: None,
    })?;
    if let Some(p) = &a.adapter {
        let h = model.load_adapter(p)?;
        session.set_adapter(Some((h, 1.0)))?;
    }
    session.generate(
        &GenerateRequest {
            prompt: "Hello".into(),
            max_tokens: 1,
            stop: Vec::new(),
            sampling: SamplingParams::greedy(),
            grammar: None,
            add_bos: true,
            parse_special: false,
            ignore_eos: true,
            cancel: None,
            deadline: None,
        },
        &mut |_| true,
    )?;
    println!("ok");
    Ok(())
}
