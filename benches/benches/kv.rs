//! KV cache types: memory per token and prefill/decode speed of `f16`, `q8_0` and `q4_0`
//! caches, as ratios to `f16` measured in the same run (types interleaved within each
//! repetition), on a batched session of several lanes, each with a long context of its own.
//!
//! Memory per token is given twice: computed from the model's shape (layers × (K + V) widths ×
//! the type's bytes per value), and measured as the resident memory a new session adds
//! (KV cache and compute buffers), divided by its cells.
//!
//! cargo bench -p retroformer-benches --bench kv -- [--model NAME|PATH]... [--lanes 8]
//!     [--ctx 4096] [--prompt 512] [--tokens 32] [--threads N] [--reps 3] [--out FILE]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use retroformer_benches::{finish_report, load_average, median, resolve_model, rss_bytes};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::{KvType, TargetProfile, Threads};
use retroformer_llm::{prose, GenerateRequest, LanguageModel, SessionOptions};
use serde_json::json;

/// KV cache types' memory per token and speed, as ratios to `f16`.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path; repeat for several (default: SmolLM2 and Qwen 0.5B).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Lanes of the batched session.
    #[arg(long, default_value_t = 8)]
    lanes: u32,
    /// Context of each lane.
    #[arg(long, default_value_t = 4096)]
    ctx: u32,
    /// Prompt tokens a lane.
    #[arg(long, default_value_t = 512)]
    prompt: u32,
    /// Tokens generated a lane.
    #[arg(long, default_value_t = 32)]
    tokens: u32,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Repetitions (types interleaved).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The result file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn args() -> Result<Args> {
    let mut a: Args = clap::Parser::parse();
    if a.models.is_empty() {
        a.models = vec![
            "smollm2-135m-instruct".into(),
            "qwen2.5-coder-0.5b-instruct".into(),
        ];
    }
    anyhow::ensure!(a.lanes >= 2, "--lanes must be at least 2");
    anyhow::ensure!(
        a.reps >= 1 && a.threads >= 1,
        "--reps and --threads must be at least 1"
    );
    anyhow::ensure!(a.tokens >= 2, "--tokens must be at least 2");
    anyhow::ensure!(
        a.prompt
            .checked_add(a.tokens)
            .and_then(|n| n.checked_add(8))
            .is_some_and(|n| n <= a.ctx),
        "--prompt + --tokens must fit in --ctx"
    );
    anyhow::ensure!(
        a.lanes <= retroformer_llm::MAX_SEQUENCES,
        "--lanes must be at most {}",
        retroformer_llm::MAX_SEQUENCES
    );
    Ok(a)
}

/// KV bytes per token from the model's shape: every layer keeps a K and a V row per token.
fn computed_bytes_per_token(model: &LlamaModel, kv: KvType) -> f64 {
    let h = model.header();
    let heads = h.arch_u64("attention.head_count").unwrap_or(1).max(1);
    let kv_heads = h.arch_u64("attention.head_count_kv").unwrap_or(heads);
    let (k, v) = h.head_sizes();
    let layers = h.arch_u64("block_count").unwrap_or(0);
    (layers * kv_heads * (k + v)) as f64 * kv.block_bytes() as f64 / kv.block() as f64
}

/// One measurement of one type: a new session, prefill alone (one token each), then prefill and
/// decode; the decode time is the difference.
struct Sample {
    session_bytes: f64,
    prefill_tps: f64,
    decode_tps: f64,
}

fn sample(model: &LlamaModel, a: &Args, prompts: &[String]) -> Result<Sample> {
    let before = rss_bytes().unwrap_or(0);
    let mut s = model.session(&SessionOptions {
        context_size: Some(a.ctx),
        threads: Some(a.threads),
        sequences: Some(a.lanes),
    })?;
    let session_bytes = rss_bytes().unwrap_or(0).saturating_sub(before) as f64;
    let reqs = |n: u32| -> Vec<GenerateRequest> {
        prompts
            .iter()
            .map(|p| {
                let mut r = GenerateRequest::new(p.clone(), n);
                r.ignore_eos = true;
                r
            })
            .collect()
    };
    let t = Instant::now();
    s.generate_batch(&reqs(1))?;
    let prefill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let gens = s.generate_batch(&reqs(a.tokens))?;
    let both_s = t.elapsed().as_secs_f64();
    let generated: u32 = gens.iter().map(|g| g.stats.generated_tokens).sum();
    anyhow::ensure!(
        generated == a.tokens * a.lanes,
        "generated {generated} tokens, not {}",
        a.tokens * a.lanes
    );
    let prompt_tokens: u32 = gens.iter().map(|g| g.stats.evaluated_tokens).sum();
    Ok(Sample {
        session_bytes,
        prefill_tps: f64::from(prompt_tokens) / prefill_s,
        decode_tps: f64::from((a.tokens - 1) * a.lanes) / (both_s - prefill_s).max(1e-6),
    })
}

// long: a benchmark's main reads as its steps: arguments, models, interleaved repetitions, report.
fn main() -> Result<()> {
    let a = args()?;
    let load_start = load_average();
    let cells = f64::from(a.ctx) * f64::from(a.lanes + 1);
    println!(
        "KV cache types: {} lanes of {} tokens ({} cells with the shared prefix), {}-token prompts, {} tokens each, {} threads, {} reps",
        a.lanes, a.ctx, cells, a.prompt, a.tokens, a.threads, a.reps
    );
    let mut rows = Vec::new();
    for name in &a.models {
        let (path, label) = resolve_model(name)?;
        let models: Vec<(KvType, LlamaModel)> = KvType::ALL
            .into_iter()
            .map(|kv| {
                let mut p = TargetProfile::load("cpu")?.with_kv_type(kv, "kv")?;
                p.threads = Threads::Fixed(a.threads);
                Ok((kv, LlamaModel::load(&path, LoadOptions::new(p))?))
            })
            .collect::<Result<_>>()?;
        let base = prose(&models[0].1, a.prompt)?;
        // A different first word in each lane, so that the lanes share no prefix to speak of.
        let prompts: Vec<String> = (0..a.lanes).map(|i| format!("Story {i}. {base}")).collect();
        let mut samples: Vec<Vec<Sample>> = KvType::ALL.iter().map(|_| Vec::new()).collect();
        for rep in 0..=a.reps {
            for (i, (_, m)) in models.iter().enumerate() {
                let s = sample(m, &a, &prompts)?;
                if rep > 0 {
                    samples[i].push(s); // repetition 0 warms the caches up
                }
            }
        }
        let med =
            |i: usize, f: fn(&Sample) -> f64| median(&samples[i].iter().map(f).collect::<Vec<_>>());
        let (mem0, pre0, dec0) = (
            med(0, |s| s.session_bytes),
            med(0, |s| s.prefill_tps),
            med(0, |s| s.decode_tps),
        );
        println!("{label}:");
        for (i, (kv, m)) in models.iter().enumerate() {
            let computed = computed_bytes_per_token(m, *kv);
            let (mem, pre, dec) = (
                med(i, |s| s.session_bytes),
                med(i, |s| s.prefill_tps),
                med(i, |s| s.decode_tps),
            );
            println!(
                "  {kv:>5}: KV {:7.0} B/token (computed, x{:.2}), session {:7.0} B/cell (measured, x{:.2}), prefill {pre:7.1} tok/s (x{:.2}), decode {dec:6.1} tok/s (x{:.2})",
                computed,
                computed / computed_bytes_per_token(m, KvType::F16),
                mem / cells,
                mem / mem0,
                pre / pre0,
                dec / dec0
            );
            rows.push(json!({
                "model": label,
                "kv_type": kv.name(),
                "kv_bytes_per_token_computed": computed,
                "session_bytes_per_cell_measured": mem / cells,
                "session_bytes_measured": mem,
                "prefill_tps": {"median": pre, "all": samples[i].iter().map(|s| s.prefill_tps).collect::<Vec<_>>()},
                "decode_tps": {"median": dec, "all": samples[i].iter().map(|s| s.decode_tps).collect::<Vec<_>>()},
                "ratio_to_f16": {"memory_measured": mem / mem0, "prefill": pre / pre0, "decode": dec / dec0},
            }));
        }
    }
    let report = json!({
        "kind": "retroformer-bench-kv",
        "format_version": 1,
        "lanes": a.lanes,
        "context_per_lane": a.ctx,
        "prompt_tokens": a.prompt,
        "tokens_per_lane": a.tokens,
        "threads": a.threads,
        "reps": a.reps,
        "load_average_start": load_start,
        "rows": rows,
    });
    Ok(finish_report(
        &report,
        a.out.as_deref(),
        load_start,
        a.threads,
    )?)
}
