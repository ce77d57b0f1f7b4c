//! LoRA SFT speed and memory against PyTorch + PEFT on the same CPU, model and settings,
//! measured in the same run.
//!
//! Setting (issues 7, 26): SmolLM2-135M-Instruct, `--batch` (1) copies of one sequence of `--seq`
//! (512) tokens per step, gradients accumulated,
//! rank 8 / alpha 16 on q,k,v,o,gate,up,down, AdamW, 2 threads. Each side runs as its own
//! process (ours: this binary re-invoked with `--child`; theirs: `benches/py/peft_sft.py`),
//! alternately, `--reps` times; each process trains `--steps` steps on the same token ids. The
//! first step of each process is warm-up and is left out. Both sides use the same learning-rate
//! schedule (AdamW at 2e-4, cosine to 0 over the process's steps, no warm-up: the trainer's
//! `TrainConfig::timing`). Reports the median step time with its min-max spread and every
//! timed step, tokens/s, each process's peak RSS (from `wait4`), the reference's library
//! versions, and our figure over theirs.
//!
//! cargo bench -p retroformer-benches --bench train -- [--model M] [--seq 512] [--steps 4]
//!     [--reps 2] [--batch 1] [--backend native|flex|ndarray] [--python PATH] [--out FILE]
//!
//! The reference needs a Python with torch, transformers, peft and gguf (`--python`, default
//! `python3`); without one the bench prints our figures and says the reference is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use retroformer_benches::{load_average, median, resolve_model, spread};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;
use retroformer_trainer::data::Tokenized;
use retroformer_trainer::lora::LoraConfig;
use retroformer_trainer::objective::Objective;
use retroformer_trainer::train::{train, Run, TrainConfig};
use retroformer_trainer::{backend_device, Backend};

struct Side {
    seconds: Vec<f64>,
    losses: Vec<f64>,
    peak_rss: u64,
    /// The reference's library versions (torch, transformers, peft), as it prints them.
    versions: serde_json::Value,
}

/// Runs `cmd` to completion; returns its stdout and its peak RSS in bytes (wait4's
/// `ru_maxrss`).
fn run_measured(cmd: &mut Command) -> Result<(String, u64)> {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let (mut so, mut se) = (
        child.stdout.take().context("stdout")?,
        child.stderr.take().context("stderr")?,
    );
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    so.read_to_string(&mut stdout)?;
    let stderr = err.join().unwrap_or_default();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; the kernel fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which `child` never reaps (we do not call wait on it).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("child failed (status {status}):\n{stderr}");
    }
    Ok((stdout, ru.ru_maxrss as u64 * 1024))
}

fn parse_side(stdout: &str, rss: u64) -> Result<Side> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("no JSON line in the child's output")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    Ok(Side {
        seconds: nums("seconds"),
        losses: nums("losses"),
        peak_rss: rss,
        versions: v["versions"].clone(),
    })
}

/// The child: trains `steps` SFT steps on the token ids and prints per-step seconds and losses.
fn child(model: &Path, tokens: &Path, steps: u64, batch: usize, backend: Backend) -> Result<()> {
    let text = std::fs::read(tokens).with_context(|| format!("--child: {}", tokens.display()))?;
    let ids: Vec<u32> =
        serde_json::from_slice(&text).with_context(|| format!("--child: {}", tokens.display()))?;
    let device = backend_device(backend)?;
    let base = retroformer_trainer::load_base(model, backend, &device)?;
    let data = vec![Tokenized {
        tokens: ids,
        prompt_len: 1,
        mask: None,
        reward: 1.0,
        weight: 1.0,
    }];
    let ck = std::env::temp_dir().join(format!("rf-bench-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ck);
    let run = Run {
        base: &base,
        lora: LoraConfig::default(),
        objective: Objective::Sft,
        config: TrainConfig {
            batch,
            ..TrainConfig::timing(steps)
        },
        data: &data,
        checkpoint: ck.clone(),
        progress: false,
        stop_after: None,
        heldout: None,
        base_sha256: String::new(),
        data_sha256: String::new(),
    };
    let t = train(&run, &device)?;
    let _ = std::fs::remove_dir_all(&ck);
    let seconds: Vec<f64> = t.log.iter().map(|l| l.seconds).collect();
    let losses: Vec<f64> = t.log.iter().map(|l| l.loss).collect();
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "losses": losses})
    );
    Ok(())
}

/// LoRA training steps: our trainer against PyTorch/PEFT on the same model and tokens.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Tokens a sequence.
    #[arg(long, default_value_t = 512)]
    seq: usize,
    /// Steps a repetition (the first is warm-up).
    #[arg(long, default_value_t = 4)]
    steps: u64,
    /// Repetitions (interleaved).
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Sequences a step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The Python that runs the PyTorch reference.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Our trainer's backend: native, ndarray, flex, wgpu or cuda.
    #[arg(long, default_value = "native")]
    backend: Backend,
    /// The result file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: run our side on MODEL and TOKENS in this process.
    #[arg(long, num_args = 2, value_names = ["MODEL", "TOKENS"], hide = true)]
    child: Option<Vec<PathBuf>>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

// long: a benchmark's main reads as its steps: arguments, the child processes of both sides, interleaved, the report.
fn main() -> Result<()> {
    let Args {
        model,
        seq,
        steps,
        reps,
        batch,
        python,
        backend,
        out,
        child: child_args,
        ..
    } = clap::Parser::parse();
    let child_args = child_args.map(|v| (v[0].clone(), v[1].clone()));
    if let Some((m, t)) = child_args {
        return child(&m, &t, steps, batch, backend);
    }
    if steps < 2 {
        bail!("--steps must be at least 2 (the first step is warm-up)");
    }
    let (path, label) = resolve_model(&model)?;
    // The same token ids for both sides: this repository's architecture document, tokenised by
    // llama.cpp, cut to `seq` tokens.
    let text = include_str!("../../ARCHITECTURE.md").repeat(4);
    let lm = LlamaModel::load(&path, LoadOptions::new(TargetProfile::load("cpu")?))?;
    let mut ids = lm.tokenize(&text, true, false)?;
    drop(lm);
    if ids.len() < seq {
        bail!("only {} tokens of text for --seq {seq}", ids.len());
    }
    ids.truncate(seq);
    let dir = std::env::temp_dir().join(format!("rf-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tokens = dir.join("tokens.json");
    std::fs::write(&tokens, serde_json::to_vec(&ids)?)?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/peft_sft.py");
    let has_reference = Command::new(&python)
        .args(["-c", "import torch, transformers, peft, gguf"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let load_start = load_average();
    let me = std::env::current_exe()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    for rep in 0..reps {
        let (o, rss) = run_measured(
            Command::new(&me)
                .arg("--child")
                .arg(&path)
                .arg(&tokens)
                .args(["--steps", &steps.to_string()])
                .args(["--batch", &batch.to_string()])
                .args(["--backend", &format!("{backend:?}").to_lowercase()])
                // The flex backend's threads are rayon's: two, like the reference's.
                .env("RAYON_NUM_THREADS", "2"),
        )?;
        ours.push(parse_side(&o, rss)?);
        eprintln!("rep {rep}: ours done ({:.0} s)", t0.elapsed().as_secs_f64());
        if has_reference {
            let (o, rss) = run_measured(
                Command::new(&python)
                    .arg(&script)
                    .arg("--gguf")
                    .arg(&path)
                    .arg("--tokens")
                    .arg(&tokens)
                    .args(["--steps", &steps.to_string(), "--threads", "2"])
                    .args(["--batch", &batch.to_string()]),
            )?;
            theirs.push(parse_side(&o, rss)?);
            eprintln!(
                "rep {rep}: reference done ({:.0} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (ms, mr, ml) = summarise(&ours);
    println!(
        "ours ({label}, seq {seq}, batch {batch}, rank 8, all 7 projections, {backend:?}, 2 threads): {:.2} s/step = {:.0} tokens/s, peak RSS {:.2} GB; losses {:?}",
        ms,
        (seq * batch) as f64 / ms,
        mr / 1e9,
        ml
    );
    let mut report = serde_json::json!({
        "format_version": 1,
        "benchmark": "train",
        "model": label,
        "backend": format!("{backend:?}").to_lowercase(),
        "seq": seq,
        "batch": batch,
        "steps_per_process": steps,
        "reps": reps,
        // Both sides: f32 weights (the GGUF dequantised), the same LoRA, AdamW at lr 2e-4
        // without weight decay, cosine from lr to 0 over the process's steps, no warm-up.
        "dtype": "f32",
        "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]},
        "optimiser": {"name": "AdamW", "lr": 2e-4, "weight_decay": 0.0, "schedule": "cosine to 0 over steps_per_process, no warm-up"},
        "ours": side_report(&ours, seq * batch),
        "load_average_at_start": load_start,
    });
    if has_reference {
        let (ts, tr, tl) = summarise(&theirs);
        println!(
            "PyTorch + PEFT: {:.2} s/step = {:.0} tokens/s, peak RSS {:.2} GB; losses {:?}",
            ts,
            (seq * batch) as f64 / ts,
            tr / 1e9,
            tl
        );
        println!(
            "ratio (ours / PyTorch): speed {:.2}, peak RSS {:.2}",
            ts / ms,
            mr / tr
        );
        report["reference"] = side_report(&theirs, seq * batch);
        report["speed_ratio"] = serde_json::json!(ts / ms);
        report["rss_ratio"] = serde_json::json!(mr / tr);
    } else {
        println!("reference missing: `{python}` lacks torch, transformers, peft or gguf (pip install torch transformers peft gguf; pass --python)");
    }
    Ok(retroformer_benches::finish_report(
        &report,
        out.as_deref(),
        load_start,
        2,
    )?)
}

/// The timed steps of every process of one side (each process's first step, its warm-up,
/// left out).
fn timed_steps(sides: &[Side]) -> Vec<f64> {
    sides
        .iter()
        .flat_map(|s| s.seconds.get(1..).unwrap_or_default().to_vec())
        .collect()
}

/// One side's median step time, median peak RSS and the first process's losses.
fn summarise(sides: &[Side]) -> (f64, f64, Vec<f64>) {
    let rss: Vec<f64> = sides.iter().map(|s| s.peak_rss as f64).collect();
    (
        median(&timed_steps(sides)),
        median(&rss),
        sides[0].losses.clone(),
    )
}

/// One side in the report: the median and the spread of its timed steps, every step's time,
/// peak RSS, losses, and the libraries it reported.
fn side_report(sides: &[Side], tokens_per_step: usize) -> serde_json::Value {
    let (median_s, rss, losses) = summarise(sides);
    let steps = timed_steps(sides);
    let (lo, hi) = spread(&steps);
    serde_json::json!({
        "seconds_per_step": median_s,
        "seconds_per_step_min_max": [lo, hi],
        "timed_steps": steps,
        "tokens_per_s": tokens_per_step as f64 / median_s,
        "peak_rss_bytes": rss,
        "peak_rss_bytes_by_process": sides.iter().map(|s| s.peak_rss).collect::<Vec<_>>(),
        "losses": losses,
        "versions": sides[0].versions,
    })
}
