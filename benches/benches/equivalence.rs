//! Does a request's output depend on its neighbours? Greedy answers to the first N GSM8K test
//! problems (RISE's prompt), one at a time on a one-sequence session against all N through
//! one stream on `--lanes` lanes (twice, to check that the same command gives the same
//! outputs). Each pair is equal, or differs first at a token where the one-sequence path's
//! top-2 logits are within `--tolerance` of each other (a near-tie that floating-point order
//! can flip), or differs elsewhere (a defect). The margins come from teacher-forced logits of
//! the one-sequence answer (`LlamaModel::logits`, F32 cache).
//!
//! cargo bench -p retroformer-benches --bench equivalence -- [--model NAME|PATH] [--n 200]
//!     [--lanes 32] [--max-tokens 256] [--threads 2] [--tolerance 0.5] [--out FILE]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use retroformer_benches::harness::system::fingerprint;
use retroformer_benches::{finish_report, load_average, resolve_model};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::{TargetProfile, Threads};
use retroformer_llm::{GenerateRequest, LanguageModel, SessionOptions, Token};
use serde_json::json;

/// Greedy answers one at a time against all through one stream on several lanes.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long = "model", default_value = "smollm2-135m-instruct")]
    model_name: String,
    /// GSM8K test problems (the first N).
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Lanes of the batched stream.
    #[arg(long, default_value_t = 32)]
    lanes: u32,
    /// Tokens an answer at most.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// A near-tie: top-2 logits within this of each other.
    #[arg(long, default_value_t = 0.5)]
    tolerance: f32,
    /// The result file (relative to the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn main() -> Result<()> {
    let Args {
        model_name,
        n,
        lanes,
        max_tokens,
        threads,
        tolerance,
        out,
        ..
    } = clap::Parser::parse();
    // cargo runs a bench in its package's folder: a relative path is the workspace's.
    let out = out.map(|o| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(o)
    });
    anyhow::ensure!(lanes >= 2, "--lanes must be at least 2");
    let (path, label) = resolve_model(&model_name)?;
    let mut profile = TargetProfile::load("cpu")?;
    profile.threads = Threads::Fixed(threads);
    let model = LlamaModel::load(&path, LoadOptions::new(profile))?;
    let source = retroformer_envs::math::gsm8k_source("test", None).context("gsm8k test")?;
    let problems = retroformer_envs::math::load_gsm8k(source)?;
    anyhow::ensure!(problems.len() >= n, "only {} problems", problems.len());
    let reqs: Vec<GenerateRequest> = problems[..n]
        .iter()
        .map(|p| {
            let msgs = retroformer_envs::math::rise::messages(&p.question, &[], 1);
            Ok(GenerateRequest::new(
                model.chat_prompt(&msgs, true)?,
                max_tokens,
            ))
        })
        .collect::<Result<_>>()?;
    let load_start = load_average();
    let per_lane = 1024;
    let t = Instant::now();
    let mut one = model.session(&SessionOptions {
        context_size: Some(per_lane),
        threads: Some(threads),
        sequences: None,
    })?;
    let single: Vec<_> = reqs
        .iter()
        .map(|r| one.generate(r, &mut |_| true))
        .collect::<Result<_, _>>()?;
    let single_s = t.elapsed().as_secs_f64();
    let mut batched = Vec::new();
    let mut batched_s = Vec::new();
    for _ in 0..2 {
        let mut s = model.session(&SessionOptions {
            context_size: Some(per_lane),
            threads: Some(threads),
            sequences: Some(lanes),
        })?;
        let t = Instant::now();
        batched.push(s.generate_batch(&reqs)?);
        batched_s.push(t.elapsed().as_secs_f64());
    }
    let repeat_same = batched[0]
        .iter()
        .zip(&batched[1])
        .filter(|(a, b)| a.text == b.text)
        .count();
    let (mut equal, mut near_tie, mut other) = (0, 0, 0);
    let mut diverged = Vec::new();
    for (i, (a, b)) in single.iter().zip(&batched[0]).enumerate() {
        if a.text == b.text {
            equal += 1;
            continue;
        }
        let d = divergence(&model, &reqs[i].prompt, &a.text, &b.text, threads)?;
        if d.margin <= tolerance && d.batched_is_second {
            near_tie += 1;
        } else {
            other += 1;
        }
        diverged.push(json!({
            "problem": i, "token": d.at, "margin": d.margin,
            "batched_token_is_second": d.batched_is_second,
            "single": a.text, "batched": b.text,
        }));
    }
    println!(
        "{label}: {n} GSM8K prompts, {lanes} lanes, greedy, {max_tokens} tokens at most: {equal} equal, \
         {near_tie} differ first at a near-tie (top-2 margin <= {tolerance}), {other} differ otherwise; \
         the batched run repeated gave {repeat_same} of {n} identical outputs; \
         one at a time {single_s:.0} s, batched {:.0} s / {:.0} s",
        batched_s[0], batched_s[1]
    );
    let report = json!({
        "kind": "retroformer-bench-equivalence",
        "format_version": 1,
        "machine": fingerprint("cpu"),
        "commit": retroformer_benches::git_commit(),
        "model": label, "threads": threads, "problems": n, "lanes": lanes,
        "max_tokens": max_tokens, "tolerance": tolerance,
        "llama_cpp_binding": retroformer_benches::harness::system::LLAMA_CPP_BINDING,
        "equal": equal, "near_tie": near_tie, "other": other,
        "repeat_identical": repeat_same,
        "single_seconds": single_s, "batched_seconds": batched_s,
        "load_average_start": load_start,
        "diverged": diverged,
    });
    Ok(finish_report(&report, out.as_deref(), load_start, threads)?)
}

struct Divergence {
    /// Index of the first differing generated token.
    at: usize,
    /// Top-1 minus top-2 logit of the one-sequence path there.
    margin: f32,
    /// The batched path's token is the one-sequence path's second choice.
    batched_is_second: bool,
}

/// Where two answers to `prompt` part, and how close the one-sequence path's choice was there.
fn divergence(
    model: &LlamaModel,
    prompt: &str,
    single: &str,
    batched: &str,
    threads: u32,
) -> Result<Divergence> {
    let p = model.tokenize(prompt, true, true)?;
    let a = model.tokenize(single, false, false)?;
    let b = model.tokenize(batched, false, false)?;
    let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut seq: Vec<Token> = p.clone();
    seq.extend_from_slice(&a[..at]);
    let logits = model.logits(&seq, None, threads)?;
    let vocab = logits.len() / seq.len();
    let row = &logits[(seq.len() - 1) * vocab..];
    let mut idx: Vec<usize> = (0..vocab).collect();
    idx.sort_unstable_by(|&x, &y| row[y].total_cmp(&row[x]));
    let margin = row[idx[0]] - row[idx[1]];
    let second = idx[1] as Token;
    Ok(Divergence {
        at,
        margin,
        batched_is_second: b.get(at) == Some(&second) || b.len() == at,
    })
}
