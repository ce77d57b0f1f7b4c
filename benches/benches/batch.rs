//! Batched generation: `Session::generate_batch` (one sequence per request in shared batches,
//! the common prompt prefix evaluated once) against the same requests one after another on a
//! one-sequence session, same model, threads and requests, interleaved, medians. Prints the
//! generated tokens per second of each and their ratio, for each batch size.
//!
//! The requests are RISE's parallel samples: the same chat prompt (a GSM8K-style question
//! with the system instruction and worked example), temperature 0.7, a seed each, a fixed
//! number of tokens (`ignore_eos`), so both sides generate exactly the same amount.
//!
//! cargo bench -p retroformer-benches --bench batch -- [--model NAME|PATH] [--threads N]
//!     [--sizes 4,8] [--tokens N] [--reps N] [--out FILE]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use retroformer_benches::{finish_report, load_average, median, resolve_model, spread};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::{TargetProfile, Threads};
use retroformer_llm::{
    ChatMessage, GenerateRequest, LanguageModel, SamplingParams, SessionOptions,
};
use serde_json::json;

/// Batched generation against the same requests one after another.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long = "model", default_value = "qwen2.5-coder-0.5b-instruct")]
    model_name: String,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 8])]
    sizes: Vec<usize>,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 64)]
    tokens: u32,
    /// Repetitions (interleaved).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The result file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

// long: a benchmark's main reads as its steps: arguments, warm-up, the interleaved repetitions, the report.
fn main() -> Result<()> {
    let Args {
        model_name,
        threads,
        sizes,
        tokens,
        reps,
        out,
        ..
    } = clap::Parser::parse();
    anyhow::ensure!(
        sizes.iter().all(|&n| n >= 2),
        "--sizes: each batch size must be at least 2"
    );
    let (path, label) = resolve_model(&model_name)?;
    let mut profile = TargetProfile::load("cpu")?;
    profile.threads = Threads::Fixed(threads);
    let model = LlamaModel::load(&path, LoadOptions::new(profile))?;
    let prompt = model.chat_prompt(
        &[
            ChatMessage::new(
                "system",
                "You solve math problems. Reason step by step, then give the final answer on its own as \\boxed{ANSWER}.",
            ),
            ChatMessage::new(
                "user",
                "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?",
            ),
        ],
        true,
    )?;
    let request = |seed: u32| {
        let mut r = GenerateRequest::new(prompt.clone(), tokens);
        r.sampling = SamplingParams {
            temperature: 0.7,
            top_p: 0.95,
            seed,
            ..SamplingParams::default()
        };
        r.ignore_eos = true;
        r
    };
    let max_n = *sizes.iter().max().unwrap_or(&2);
    let prompt_tokens = model.tokenize(&prompt, true, true)?.len() as u32;
    let ctx = (prompt_tokens + (max_n as u32 + 1) * (prompt_tokens + tokens)).max(512);
    let mut single = model.session(&SessionOptions {
        context_size: Some(ctx),
        threads: Some(threads),
        sequences: None,
    })?;
    let load_start = load_average();
    println!(
        "{label}, {threads} threads, {prompt_tokens}-token prompt, {tokens} tokens per request, {reps} reps"
    );
    let mut rows = Vec::new();
    for &n in &sizes {
        let mut batched = model.session(&SessionOptions {
            context_size: Some(ctx),
            threads: Some(threads),
            sequences: Some(n as u32),
        })?;
        let reqs: Vec<GenerateRequest> = (0..n as u32).map(request).collect();
        // Warm-up: both sessions cache the prompt, as they would in a run.
        single.generate(&reqs[0], &mut |_| true)?;
        batched.generate_batch(&reqs[..2])?;
        let (mut seq_tps, mut bat_tps) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            let mut generated = 0u32;
            for r in &reqs {
                generated += single.generate(r, &mut |_| true)?.stats.generated_tokens;
            }
            seq_tps.push(f64::from(generated) / t.elapsed().as_secs_f64());
            let t = Instant::now();
            let gens = batched.generate_batch(&reqs)?;
            let generated: u32 = gens.iter().map(|g| g.stats.generated_tokens).sum();
            anyhow::ensure!(
                generated == tokens * n as u32,
                "the batch generated {generated} tokens, not {}",
                tokens * n as u32
            );
            bat_tps.push(f64::from(generated) / t.elapsed().as_secs_f64());
        }
        let (s, b) = (median(&seq_tps), median(&bat_tps));
        println!(
            "batch {n:>2}: one at a time {s:7.1} tok/s {:?}, batched {b:7.1} tok/s {:?}, ratio {:.2}",
            spread(&seq_tps),
            spread(&bat_tps),
            b / s
        );
        rows.push(json!({
            "batch": n,
            "sequential_tps": {"median": s, "all": seq_tps},
            "batched_tps": {"median": b, "all": bat_tps},
            "ratio": b / s,
        }));
    }
    let report = json!({
        "kind": "retroformer-bench-batch",
        "format_version": 1,
        "model": label,
        "threads": threads,
        "prompt_tokens": prompt_tokens,
        "tokens_per_request": tokens,
        "reps": reps,
        "load_average_start": load_start,
        "rows": rows,
    });
    Ok(finish_report(&report, out.as_deref(), load_start, threads)?)
}
