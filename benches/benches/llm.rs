//! LLM-layer benchmark: the runtime against a bare llama-cpp-2 loop on the same model, threads
//! and batch, measured in the same run (interleaved, medians); KV reuse; adapter switch vs
//! model reload; peak RSS with two resident models.
//!
//! cargo bench -p retroformer-benches --bench llm -- [--quick] [--model NAME|PATH]
//!     [--second-model NAME|PATH] [--threads N] [--reps N] [--out FILE]
//!     [--llama-bench PATH/TO/llama-bench] [--skip-bare]

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use retroformer_benches::{load_average, median, peak_rss_bytes, resolve_model, spread};
use retroformer_llama::BareLoop as Bare;
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::{TargetProfile, Threads};
use retroformer_llm::{GenerateRequest, LanguageModel, SessionOptions};
use serde_json::json;

/// llama-bench figures quoted in the issue tracker for this machine class (2 threads, quiet);
/// printed for reference only. Pass `--llama-bench PATH` to measure llama-bench in the same run.
const LLAMA_BENCH_REF: &[(&str, f64, f64)] = &[
    ("smollm2-135m-instruct", 429.0, 163.0),
    ("qwen2.5-coder-1.5b-instruct", 155.0, 38.0),
];

/// Runs llama.cpp's `llama-bench` on the same model and threads; returns (pp t/s, tg t/s).
fn llama_bench(
    exe: &Path,
    model: &Path,
    threads: u32,
    pp: usize,
    tg: u32,
    reps: usize,
) -> Result<(f64, f64)> {
    let out = std::process::Command::new(exe)
        .arg("-m")
        .arg(model)
        .args([
            "-t",
            &threads.to_string(),
            "-p",
            &pp.to_string(),
            "-n",
            &tg.to_string(),
        ])
        .args(["-r", &reps.to_string(), "-o", "json"])
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("llama-bench -o json output")?;
    let pick = |prompt: bool| {
        rows.iter()
            .find(|r| (r["n_prompt"].as_u64().unwrap_or(0) > 0) == prompt)
            .and_then(|r| r["avg_ts"].as_f64())
            .context("llama-bench printed no such test")
    };
    Ok((pick(true)?, pick(false)?))
}

/// Prefill and decode speed against a bare decode loop on the same binding (and llama-bench).
#[derive(clap::Parser)]
struct Args {
    /// llama.cpp's `llama-bench`, measured in the same run.
    #[arg(long)]
    llama_bench: Option<PathBuf>,
    /// Fewer repetitions (at most 3).
    #[arg(long)]
    quick: bool,
    /// Skip the bare loop.
    #[arg(long)]
    skip_bare: bool,
    /// Model name or GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// A second model, measured the same way.
    #[arg(long = "second-model")]
    second: Option<String>,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Repetitions.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// The result file.
    #[arg(long, default_value = "target/bench/llm.json")]
    out: PathBuf,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn parse() -> Result<Args> {
    let mut o: Args = clap::Parser::parse();
    if o.quick {
        o.reps = o.reps.min(3);
    }
    Ok(o)
}

/// A prompt of about `n` tokens (plain prose, no special tokens).
fn prompt_of(model: &LlamaModel, n: usize) -> String {
    let unit =
        "The quick brown fox jumps over the lazy dog while the river runs past the old mill. ";
    let mut s = String::new();
    while model.tokenize(&s, true, false).unwrap().len() < n {
        s.push_str(unit);
    }
    s
}

fn ours(
    model: &LlamaModel,
    prompt: &str,
    n_gen: u32,
    threads: u32,
    n_ctx: u32,
) -> Result<(f64, f64, u32, u32)> {
    let mut s = model.session(&SessionOptions {
        context_size: Some(n_ctx),
        threads: Some(threads),
        ..Default::default()
    })?;
    let mut req = GenerateRequest::new(prompt, n_gen);
    req.parse_special = false;
    req.ignore_eos = true;
    let g = s.generate(&req, &mut |_| true)?;
    Ok((
        g.stats.prefill_ms,
        g.stats.decode_ms,
        g.stats.prompt_tokens,
        g.stats.generated_tokens,
    ))
}

fn figure(xs: &[f64]) -> serde_json::Value {
    let (lo, hi) = spread(xs);
    json!({"median": median(xs), "min": lo, "max": hi, "n": xs.len()})
}

fn write_bench_adapter(dir: &Path, model: &LlamaModel, seed: u64) -> Result<PathBuf> {
    retroformer_benches::harness::suite::random_adapter(model, dir, seed)?
        .context("the model has no projection an adapter can target")
}

fn rss_probe(a: &str, b: &str) -> Result<()> {
    let profile = TargetProfile::load("cpu")?;
    let mut sizes = 0u64;
    let mut models = Vec::new();
    for name in [a, b] {
        let (p, _) = resolve_model(name)?;
        sizes += std::fs::metadata(&p)?.len();
        models.push(LlamaModel::load(&p, LoadOptions::new(profile.clone()))?);
    }
    for m in &models {
        let mut s = m.session(&SessionOptions {
            context_size: Some(2048),
            threads: Some(2),
            ..Default::default()
        })?;
        s.generate(
            &GenerateRequest::new("Hello, how are you today?", 16),
            &mut |_| true,
        )?;
    }
    println!(
        "{}",
        json!({"peak_rss_bytes": peak_rss_bytes(), "gguf_bytes": sizes})
    );
    Ok(())
}

// long: a benchmark's main reads as its steps: arguments, each measurement interleaved with its reference, the report.
fn main() -> Result<()> {
    if let Ok(models) = std::env::var("RF_BENCH_RSS_PROBE") {
        let (a, b) = models.split_once(',').context("RF_BENCH_RSS_PROBE=A,B")?;
        return rss_probe(a, b);
    }
    let o = parse()?;
    let load_before = load_average();
    let (path, name) = resolve_model(&o.model)?;
    let mut profile = TargetProfile::load("cpu")?;
    profile.threads = Threads::Fixed(o.threads);
    let model = LlamaModel::load(&path, LoadOptions::new(profile.clone()))?;
    let bare = Bare::load(&path)?;
    let (pp_len, tg_len) = if o.quick {
        (128usize, 32u32)
    } else {
        (512, 128)
    };
    let n_ctx = 2048;
    let pp_prompt = prompt_of(&model, pp_len);
    let tg_prompt = "Once upon a time";
    println!(
        "model {name} | threads {} | reps {} | pp{pp_len} tg{tg_len}",
        o.threads, o.reps
    );

    // 1. Prefill and decode, runtime vs bare loop, interleaved.
    let (mut pp_o, mut pp_b, mut tg_o, mut tg_b) = (vec![], vec![], vec![], vec![]);
    let (_, _, warm_tokens, _) = ours(&model, &pp_prompt, 1, o.threads, n_ctx)?; // warm-up
    if !o.skip_bare {
        bare.run(&pp_prompt, 1, o.threads, n_ctx, 512, 512)?;
    }
    for _ in 0..o.reps {
        let (pm, _, pt, _) = ours(&model, &pp_prompt, 1, o.threads, n_ctx)?;
        pp_o.push(f64::from(pt) * 1e3 / pm);
        if !o.skip_bare {
            let (pm, _, pt) = bare.run(&pp_prompt, 1, o.threads, n_ctx, 512, 512)?;
            pp_b.push(pt as f64 * 1e3 / pm);
        }
        let (_, dm, _, gt) = ours(&model, tg_prompt, tg_len, o.threads, n_ctx)?;
        tg_o.push(f64::from(gt) * 1e3 / dm);
        if !o.skip_bare {
            let (_, dm, _) = bare.run(tg_prompt, tg_len, o.threads, n_ctx, 512, 512)?;
            tg_b.push(f64::from(tg_len) * 1e3 / dm);
        }
    }
    let pp_ratio = median(&pp_o) / median(&pp_b);
    let tg_ratio = median(&tg_o) / median(&tg_b);
    println!("prefill pp{warm_tokens}: runtime {:.1} t/s, bare llama-cpp-2 {:.1} t/s, ratio {:.3} (target >= 0.98)", median(&pp_o), median(&pp_b), pp_ratio);
    println!("decode tg{tg_len}: runtime {:.1} t/s, bare llama-cpp-2 {:.1} t/s, ratio {:.3} (target >= 0.98)", median(&tg_o), median(&tg_b), tg_ratio);
    let mut lb = serde_json::Value::Null;
    if let Some(exe) = &o.llama_bench {
        let (pp_lb, tg_lb) = llama_bench(exe, &path, o.threads, pp_len, tg_len, o.reps)?;
        println!(
            "vs llama-bench measured now (same model, {} threads): pp{pp_len} {:.1}/{pp_lb:.1} = {:.3}, tg{tg_len} {:.1}/{tg_lb:.1} = {:.3}",
            o.threads,
            median(&pp_o),
            median(&pp_o) / pp_lb,
            median(&tg_o),
            median(&tg_o) / tg_lb
        );
        lb = json!({"pp_tps": pp_lb, "tg_tps": tg_lb, "pp_ratio": median(&pp_o) / pp_lb, "tg_ratio": median(&tg_o) / tg_lb});
    }
    let reference = LLAMA_BENCH_REF.iter().find(|(n, _, _)| *n == name);
    if let (Some((_, pp_ref, tg_ref)), false) = (reference, o.quick) {
        println!(
            "vs llama-bench figures quoted in the issue tracker (another day/host): pp512 {:.1}/{pp_ref} = {:.3}, tg128 {:.1}/{tg_ref} = {:.3}",
            median(&pp_o),
            median(&pp_o) / pp_ref,
            median(&tg_o),
            median(&tg_o) / tg_ref
        );
    }

    // 2. KV reuse: append ~50 tokens to a cached ~600-token prefix vs evaluating all ~650.
    let prefix = prompt_of(&model, 600);
    let n_prefix = model.tokenize(&prefix, true, false)?.len();
    let mut appended = prefix.clone();
    for word in "Then a second paragraph begins and tells what the fox did next, slowly and in great detail, while the sun went down behind the hills and the miller closed the heavy doors of the mill for the night, counting sacks of flour one by one until".split(' ').cycle() {
        if model.tokenize(&appended, true, false)?.len() >= n_prefix + 50 {
            break;
        }
        appended.push_str(word);
        appended.push(' ');
    }
    let (mut inc, mut full, mut inc_eval, mut full_eval) = (vec![], vec![], 0, 0);
    for _ in 0..o.reps {
        let mut s = model.session(&SessionOptions {
            context_size: Some(n_ctx),
            threads: Some(o.threads),
            ..Default::default()
        })?;
        let mut req = GenerateRequest::new(prefix.clone(), 1);
        req.parse_special = false;
        s.generate(&req, &mut |_| true)?;
        req.prompt = appended.clone();
        let g = s.generate(&req, &mut |_| true)?;
        inc.push(g.stats.prefill_ms);
        inc_eval = g.stats.evaluated_tokens;
        let mut fresh = model.session(&SessionOptions {
            context_size: Some(n_ctx),
            threads: Some(o.threads),
            ..Default::default()
        })?;
        let g = fresh.generate(&req, &mut |_| true)?;
        full.push(g.stats.prefill_ms);
        full_eval = g.stats.evaluated_tokens;
    }
    let kv_ratio = median(&inc) / median(&full);
    println!("append: {inc_eval} new tokens on a cached prefix {:.0} ms vs all {full_eval} tokens {:.0} ms, ratio {:.3}", median(&inc), median(&full), kv_ratio);

    // 3. Adapter switch vs model reload.
    let dir = std::env::temp_dir().join(format!("rf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pa = write_bench_adapter(&dir, &model, 1)?;
    let pb = write_bench_adapter(&dir, &model, 2)?;
    let t = Instant::now();
    let (a, b) = (model.load_adapter(&pa)?, model.load_adapter(&pb)?);
    let adapter_load_ms = t.elapsed().as_secs_f64() * 1e3 / 2.0;
    let mut s = model.session(&SessionOptions {
        context_size: Some(n_ctx),
        threads: Some(o.threads),
        ..Default::default()
    })?;
    let (mut switch, mut reload) = (vec![], vec![]);
    for i in 0..o.reps.max(3) {
        let t = Instant::now();
        s.set_adapter(Some((if i % 2 == 0 { a.clone() } else { b.clone() }, 1.0)))?;
        s.generate(&GenerateRequest::new("Hi", 1), &mut |_| true)?;
        switch.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let m2 = LlamaModel::load(&path, LoadOptions::new(profile.clone()))?;
        let mut s2 = m2.session(&SessionOptions {
            context_size: Some(n_ctx),
            threads: Some(o.threads),
            ..Default::default()
        })?;
        s2.generate(&GenerateRequest::new("Hi", 1), &mut |_| true)?;
        reload.push(t.elapsed().as_secs_f64() * 1e3);
    }
    std::fs::remove_dir_all(&dir)?;
    let switch_ratio = median(&switch) / median(&reload);
    println!(
        "adapter switch + first token {:.1} ms vs model reload + first token {:.1} ms, ratio {:.3} (adapter load once: {adapter_load_ms:.0} ms)",
        median(&switch),
        median(&reload),
        switch_ratio
    );

    // 4. Two sessions taking turns (an actor and a reflector) vs one session alone.
    let (mut alone, mut turns) = (vec![], vec![]);
    {
        let so = SessionOptions {
            context_size: Some(1024),
            threads: Some(o.threads),
            ..Default::default()
        };
        let mut req = GenerateRequest::new(tg_prompt, tg_len.min(64));
        req.ignore_eos = true;
        let mut a = model.session(&so)?;
        let mut b = model.session(&so)?;
        for _ in 0..o.reps {
            let ga = a.generate(&req, &mut |_| true)?;
            let gb = b.generate(&req, &mut |_| true)?;
            turns.push((ga.stats.decode_tps() + gb.stats.decode_tps()) / 2.0);
        }
        drop(b);
        for _ in 0..o.reps {
            alone.push(a.generate(&req, &mut |_| true)?.stats.decode_tps());
        }
    }
    let turns_ratio = median(&turns) / median(&alone);
    println!(
        "two sessions taking turns: {:.1} t/s vs one session alone {:.1} t/s, ratio {:.3}",
        median(&turns),
        median(&alone),
        turns_ratio
    );

    // 5. Peak RSS with two models resident, in a fresh process.
    let second = o.second.clone().unwrap_or_else(|| o.model.clone());
    let probe = std::process::Command::new(std::env::current_exe()?)
        .env("RF_BENCH_RSS_PROBE", format!("{},{}", o.model, second))
        .output()?;
    let rss: serde_json::Value = serde_json::from_slice(&probe.stdout)
        .with_context(|| String::from_utf8_lossy(&probe.stderr).to_string())?;
    let peak = rss["peak_rss_bytes"].as_u64().unwrap_or(0) as f64;
    let gguf = rss["gguf_bytes"].as_u64().unwrap_or(1) as f64;
    println!(
        "peak RSS with {} + {second} resident: {:.0} MB vs GGUF files {:.0} MB, ratio {:.2}",
        o.model,
        peak / 1e6,
        gguf / 1e6,
        peak / gguf
    );

    let load_after = load_average();
    let loaded =
        load_before.unwrap_or(0.0) > 0.5 || load_after.unwrap_or(0.0) > f64::from(o.threads) + 0.5;
    if loaded {
        println!("warning: the machine was under load (load average before {load_before:?}, after {load_after:?}); figures are noisy");
    }
    let report = json!({
        "format_version": 1,
        "model": name,
        "threads": o.threads,
        "reps": o.reps,
        "prefill_tps": {"runtime": figure(&pp_o), "bare": figure(&pp_b), "ratio": pp_ratio, "prompt_tokens": warm_tokens},
        "llama_bench": lb,
        "decode_tps": {"runtime": figure(&tg_o), "bare": figure(&tg_b), "ratio": tg_ratio, "tokens": tg_len},
        "kv_append": {"incremental_ms": figure(&inc), "full_ms": figure(&full), "ratio": kv_ratio, "evaluated_incremental": inc_eval, "evaluated_full": full_eval},
        "sessions_taking_turns": {"turns_tps": figure(&turns), "alone_tps": figure(&alone), "ratio": turns_ratio},
        "adapter": {"switch_ms": figure(&switch), "reload_ms": figure(&reload), "ratio": switch_ratio, "load_ms": adapter_load_ms},
        "rss": {"peak_bytes": peak, "gguf_bytes": gguf, "ratio": peak / gguf, "models": [o.model, second]},
        "load_average": {"before": load_before, "after": load_after, "flagged": loaded},
    });
    // The load average is in the report; the note on a busy start is printed above.
    Ok(retroformer_benches::finish_report(
        &report,
        Some(&o.out),
        None,
        o.threads,
    )?)
}
