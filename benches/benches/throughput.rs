//! Throughput by sequences in flight: our continuous batching (`Session::generate_stream`,
//! through `generate_batch`) against llama.cpp's own `llama-batched-bench`, same model,
//! threads, batch sizes, prompt and generation lengths, context per sequence, the reference
//! and ours interleaved in every repetition. Prints, for each sequence count (npl), the
//! aggregate decode tokens/s of each side (batched-bench's S_TG: npl x generated tokens over
//! the decode phase), their ratio, ours against our own one-sequence decode, the prefill
//! rate, and the peak RSS of each side.
//!
//! Both sides decode npl distinct prompts of `--pp` tokens (batched-bench's "prompt not
//! shared") and generate `--tg` tokens each (`ignore_eos`); ours is greedy by default (the
//! reference samples nothing), `--sampled` samples at temperature 0.7 / top-p 0.95.
//!
//! The reference binary is built by `scripts/llama-batched-bench` from the llama.cpp sources
//! that our sys crate vendors, linked against the very libraries our build compiled; give it
//! with `--reference PATH` (without one, only our side runs and no ratio is printed).
//!
//! cargo bench -p retroformer-benches --bench throughput -- [--model NAME|PATH] [--threads N]
//!     [--npl 1,8,16,32,64] [--pp 128] [--tg 128] [--reps 3] [--sampled]
//!     [--target NAME|PATH] [--reference PATH] [--out FILE]
//!
//! `--target` is our side's profile (default `cpu`). `--reference-target NAME` makes the
//! reference our own engine under another profile, alternating with ours in every repetition
//! (`--target cpu-batch-invariant --reference-target cpu`: that mode's cost).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use retroformer_benches::harness::system::fingerprint;
use retroformer_benches::{finish_report, git_commit, load_average, median, resolve_model, spread};
use retroformer_core::rss::{peak_rss_bytes, reset_peak_rss};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::{TargetProfile, Threads};
use retroformer_llm::{prose, GenerateRequest, LanguageModel, SamplingParams, SessionOptions};
use serde_json::json;

/// Batched throughput (llama-batched-bench's shape) against a reference in the same run.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Parallel sequences, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 8, 16, 32, 64])]
    npl: Vec<u32>,
    /// Prompt tokens a sequence.
    #[arg(long, default_value_t = 128)]
    pp: u32,
    /// Generated tokens a sequence.
    #[arg(long, default_value_t = 128)]
    tg: u32,
    /// Repetitions.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Sample (temperature 0.7) instead of greedy.
    #[arg(long)]
    sampled: bool,
    /// Target profile.
    #[arg(long, default_value = "cpu")]
    target: String,
    /// llama.cpp's `llama-batched-bench`, measured in the same run.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Another target profile as the reference.
    #[arg(long)]
    reference_target: Option<String>,
    /// The result file (relative to the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn parse_args() -> Result<Args> {
    let mut a: Args = clap::Parser::parse();
    // cargo runs a bench in its package's folder: a relative path is the workspace's.
    a.out = a
        .out
        .map(|o| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(o));
    anyhow::ensure!(
        a.npl
            .iter()
            .all(|&n| (1..=retroformer_llm::MAX_SEQUENCES).contains(&n)),
        "--npl: each count must be in [1, {}]",
        retroformer_llm::MAX_SEQUENCES
    );
    anyhow::ensure!(a.pp >= 8 && a.tg >= 2, "--pp must be >= 8 and --tg >= 2");
    anyhow::ensure!(a.reps >= 1, "--reps must be at least 1");
    anyhow::ensure!(
        a.reference.is_none() || a.reference_target.is_none(),
        "--reference and --reference-target are two references: give one"
    );
    Ok(a)
}

/// One side's figures at one sequence count, one repetition.
#[derive(Clone, Copy)]
struct Run {
    prefill_tps: f64,
    decode_tps: f64,
    peak_rss: Option<u64>,
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let (path, label) = resolve_model(&a.model)?;
    let mut profile = TargetProfile::load(&a.target).context("--target")?;
    profile.threads = Threads::Fixed(a.threads);
    let model = LlamaModel::load(&path, LoadOptions::new(profile.clone()))?;
    let ref_model = match &a.reference_target {
        Some(t) => {
            let mut p = TargetProfile::load(t).context("--reference-target")?;
            p.threads = Threads::Fixed(a.threads);
            Some(LlamaModel::load(&path, LoadOptions::new(p))?)
        }
        None => None,
    };
    let body = prose(&model, a.pp)?;
    let prompts: Vec<String> = (0..*a.npl.iter().max().unwrap_or(&1))
        .map(|j| format!("Request {j}. {body}"))
        .collect();
    let lens: Vec<usize> = prompts
        .iter()
        .map(|p| model.tokenize(p, true, true).map(|t| t.len()))
        .collect::<Result<_, _>>()?;
    let pp_real = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    // Each lane holds its prompt and its generation, as batched-bench's per-sequence context.
    let per_seq = lens.iter().max().copied().unwrap_or(0) as u32 + a.tg + 8;
    let load_start = load_average();
    println!(
        "{label}, target {}, {} threads, prompts of {pp_real:.1} tokens (batched-bench: {}), {} generated each, {} reps, {}",
        profile.name,
        a.threads,
        a.pp,
        a.tg,
        a.reps,
        if a.sampled { "sampled (T 0.7, top-p 0.95)" } else { "greedy" }
    );
    let mut ours: Vec<Vec<Run>> = vec![Vec::new(); a.npl.len()];
    let mut refs: Vec<Vec<Run>> = vec![Vec::new(); a.npl.len()];
    for rep in 0..a.reps {
        for (k, &n) in a.npl.iter().enumerate() {
            if let Some(bin) = &a.reference {
                let r = reference(bin, &path, &a, n)?;
                refs[k].push(r);
            }
            if let Some(m) = &ref_model {
                refs[k].push(ours_at(m, &prompts[..n as usize], &a, n, per_seq)?);
            }
            let r = ours_at(&model, &prompts[..n as usize], &a, n, per_seq)?;
            println!(
                "rep {rep} npl {n:>3}: ours decode {:8.1} t/s{}",
                r.decode_tps,
                refs[k]
                    .last()
                    .map(|x| format!(", reference {:8.1} t/s", x.decode_tps))
                    .unwrap_or_default()
            );
            ours[k].push(r);
        }
    }
    let rows = table(&a, &ours, &refs);
    let report = json!({
        "kind": "retroformer-bench-throughput",
        "format_version": 1,
        "machine": fingerprint("cpu"),
        "commit": git_commit(),
        "model": label,
        "model_path": path.display().to_string(),
        "threads": a.threads,
        "prompt_tokens_requested": a.pp,
        "prompt_tokens_mean": pp_real,
        "generated_tokens": a.tg,
        "context_per_sequence": per_seq,
        "batch_size": profile.batch_size,
        "ubatch_size": profile.ubatch_size,
        "flash_attention": format!("{:?}", profile.flash_attention),
        "kv_type": profile.kv_type.to_string(),
        "target": profile.name,
        "batch_invariant": profile.batch_invariant,
        "sampling": if a.sampled { "temperature 0.7, top-p 0.95" } else { "greedy" },
        "reps": a.reps,
        "reference": a.reference.as_ref().map(|p| p.display().to_string()),
        "reference_target": a.reference_target,
        "llama_cpp_binding": retroformer_benches::harness::system::LLAMA_CPP_BINDING,
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

/// Prints the table of medians (with min-max) and ratios; its rows for the report.
fn table(a: &Args, ours: &[Vec<Run>], refs: &[Vec<Run>]) -> Vec<serde_json::Value> {
    let one = a
        .npl
        .iter()
        .position(|&n| n == 1)
        .map(|k| median(&ours[k].iter().map(|r| r.decode_tps).collect::<Vec<_>>()));
    let mut rows = Vec::new();
    println!(
        "\n| npl | ours decode t/s (min-max) | reference decode t/s (min-max) | ratio | x our 1-seq | ours prefill t/s | ref prefill t/s | ours peak RSS MiB | ref peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (k, &n) in a.npl.iter().enumerate() {
        let od: Vec<f64> = ours[k].iter().map(|r| r.decode_tps).collect();
        let op: Vec<f64> = ours[k].iter().map(|r| r.prefill_tps).collect();
        let rd: Vec<f64> = refs[k].iter().map(|r| r.decode_tps).collect();
        let rp: Vec<f64> = refs[k].iter().map(|r| r.prefill_tps).collect();
        let o_rss = ours[k].iter().filter_map(|r| r.peak_rss).max();
        let r_rss = refs[k].iter().filter_map(|r| r.peak_rss).max();
        let ratio = (!rd.is_empty()).then(|| median(&od) / median(&rd));
        let vs_one = one.map(|o| median(&od) / o);
        let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.0}", b as f64 / 1048576.0));
        println!(
            "| {n} | {:.1} ({:.1}-{:.1}) | {} | {} | {} | {:.1} | {} | {} | {} |",
            median(&od),
            spread(&od).0,
            spread(&od).1,
            if rd.is_empty() {
                "-".into()
            } else {
                format!(
                    "{:.1} ({:.1}-{:.1})",
                    median(&rd),
                    spread(&rd).0,
                    spread(&rd).1
                )
            },
            ratio.map_or("-".into(), |r| format!("{r:.2}")),
            vs_one.map_or("-".into(), |r| format!("{r:.2}")),
            median(&op),
            if rp.is_empty() {
                "-".into()
            } else {
                format!("{:.1}", median(&rp))
            },
            mib(o_rss),
            mib(r_rss),
        );
        rows.push(json!({
            "npl": n,
            "ours": {"decode_tps": od, "decode_tps_median": median(&od), "prefill_tps": op,
                     "peak_rss_bytes": o_rss},
            "reference": {"decode_tps": rd, "decode_tps_median": (!rd.is_empty()).then(|| median(&rd)),
                          "prefill_tps": rp, "peak_rss_bytes": r_rss},
            "ratio_to_reference": ratio,
            "ratio_to_our_one_sequence": vs_one,
        }));
    }
    rows
}

/// Our side at `n` sequences: a fresh session, a warm-up, then the `n` requests in one
/// stream. Prefill ends when the last request has its first token (prefill batches go first);
/// decode is every later token over the time after it.
fn ours_at(model: &LlamaModel, prompts: &[String], a: &Args, n: u32, per_seq: u32) -> Result<Run> {
    let session = |seqs: Option<u32>| {
        model.session(&SessionOptions {
            context_size: Some(per_seq),
            threads: Some(a.threads),
            sequences: seqs,
        })
    };
    let request = |j: usize, p: &String| {
        let mut r = GenerateRequest::new(p.clone(), a.tg);
        r.ignore_eos = true;
        if a.sampled {
            r.sampling = SamplingParams {
                temperature: 0.7,
                top_p: 0.95,
                seed: j as u32 + 1,
                ..SamplingParams::default()
            };
        }
        r
    };
    reset_peak_rss();
    let mut s = session((n > 1).then_some(n))?;
    // Warm-up: a short request, then the cache is cleared so every prompt is evaluated.
    s.generate(&GenerateRequest::new("Hello", 4), &mut |_| true)?;
    s.clear()?;
    let reqs: Vec<GenerateRequest> = prompts
        .iter()
        .enumerate()
        .map(|(j, p)| request(j, p))
        .collect();
    let t = Instant::now();
    let gens = s.generate_batch(&reqs)?;
    let wall = t.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes();
    let generated: u32 = gens.iter().map(|g| g.stats.generated_tokens).sum();
    anyhow::ensure!(
        generated == a.tg * n,
        "ours generated {generated} tokens, not {}",
        a.tg * n
    );
    let evaluated: u32 = gens.iter().map(|g| g.stats.evaluated_tokens).sum();
    // Every request is admitted at the start (n lanes): its prefill_ms is its first token's
    // time from the start.
    let first = gens
        .iter()
        .map(|g| g.stats.prefill_ms)
        .fold(0.0f64, f64::max)
        / 1e3;
    let decode_s = wall - first;
    anyhow::ensure!(decode_s > 0.0, "no decode phase measured");
    Ok(Run {
        prefill_tps: f64::from(evaluated) / first,
        decode_tps: f64::from(n * (a.tg - 1)) / decode_s,
        peak_rss,
    })
}

/// The reference at `n` sequences: one `llama-batched-bench` process with our settings, its
/// JSONL line read. Its peak RSS is its own `VmHWM`, polled while it runs: `wait4`'s maxrss
/// would include ours, since a child spawned through vfork takes its parent's high-water mark
/// into its own at exec.
fn reference(bin: &Path, model: &Path, a: &Args, n: u32) -> Result<Run> {
    let ctx = n * (a.pp + a.tg);
    let log = tempfile::NamedTempFile::new()?;
    let mut child = Command::new(bin)
        .args(["-m", &model.display().to_string()])
        .args(["-c", &ctx.to_string(), "-b", "512", "-ub", "512"])
        .args(["-t", &a.threads.to_string(), "-tb", &a.threads.to_string()])
        .args(["-fa", "auto", "-ngl", "0"])
        .args(["-npp", &a.pp.to_string(), "-ntg", &a.tg.to_string()])
        .args(["-npl", &n.to_string(), "--output-format", "jsonl"])
        .stdout(log.reopen()?)
        .stderr(log.reopen()?)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut hwm: Option<u64> = None;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        }) {
            hwm = Some(hwm.unwrap_or(0).max(kb * 1024));
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(log.path())?;
    anyhow::ensure!(
        status.success(),
        "{} failed ({status}):\n{}",
        bin.display(),
        out.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    );
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("{\"n_kv_max\""))
        .with_context(|| format!("no JSONL result in the output of {}", bin.display()))?;
    let v: serde_json::Value = serde_json::from_str(line.trim())?;
    let get = |k: &str| v[k].as_f64().with_context(|| format!("{k} missing"));
    Ok(Run {
        prefill_tps: get("speed_pp")?,
        decode_tps: get("speed_tg")?,
        peak_rss: hwm,
    })
}
