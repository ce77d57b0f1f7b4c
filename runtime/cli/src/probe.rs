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
    // The parent applied the adapter's base rule; this process only shows whether llama.cpp
    // survives the files.
    let opts = LoadOptions {
        adapter_base: retroformer_gguf::BasePolicy::Unchecked,
        ..LoadOptions::new(profile)
    };
    let model = Model::load(&a.model, opts)?;
    tokeniser_scales(&model)?;
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

/// Refuses a vocabulary on which llama.cpp's tokeniser takes time quadratic in the text (many
/// user-defined tokens do that: a 120 KB prompt then takes tens of seconds). Four times the text
/// takes about four times as long on an ordinary vocabulary and sixteen on such a one; the
/// ratio, not the time alone, decides, so a busy machine is not mistaken for a bad file.
fn tokeniser_scales(model: &Model) -> Result<()> {
    let time = |bytes: usize| -> Result<f64> {
        let text = sample_text(bytes);
        let t = std::time::Instant::now();
        model.tokenize(&text, false, false)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let (short, long) = (8 << 10, 32 << 10);
    time(short)?; // warm
    let (t_short, t_long) = (time(short)?, time(long)?);
    if t_long > TOKENISE_SLOW_S && t_long > QUADRATIC_RATIO * t_short {
        anyhow::bail!(
            "its vocabulary makes tokenising slow, growing with the square of the text: {} KB took {t_short:.2} s and {} KB {t_long:.2} s (an ordinary vocabulary takes ~0.01 s); refused, as a long prompt would take minutes",
            short >> 10,
            long >> 10
        );
    }
    Ok(())
}

/// Seconds for 32 KB beyond which the growth is looked at (an ordinary vocabulary takes
/// ~0.01 s).
const TOKENISE_SLOW_S: f64 = 0.5;

/// 4x the text in more than 10x the time: quadratic (16x), not linear (4x).
const QUADRATIC_RATIO: f64 = 10.0;

/// `bytes` of ordinary English text with digits and punctuation.
fn sample_text(bytes: usize) -> String {
    let line = "The quick brown fox jumps over the lazy dog; 0123456789, said Ada (again).\n";
    line.repeat(bytes / line.len() + 1)[..bytes].to_string()
}
