//! `retroformer-train`: LoRA training of the retrospective model (and RISE policies) with burn,
//! exported as GGUF adapters for the runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use retroformer::fetch;
use retroformer::llm::llama::{LlamaModel, LoadOptions};
use retroformer::manifest::{home_dir, ModelRef};
use retroformer::target::TargetProfile;
use retroformer_trainer::data::{read_examples, tokenize, with_min_reward};
use retroformer_trainer::lora::{export, LoraConfig, Provenance, Target};
use retroformer_trainer::model::Base;
use retroformer_trainer::objective::{reward_accuracy, Objective, RewardMode};
use retroformer_trainer::train::{load_checkpoint, train, Run, TrainConfig};
use retroformer_trainer::{backend_device, write_run_report, Backend};

#[derive(Parser)]
#[command(
    name = "retroformer-train",
    version,
    about = "Train LoRA adapters for Retroformer and export them as GGUF",
    after_help = "The CPU backend (flex) uses every core; set RAYON_NUM_THREADS=N to use N threads."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Supervised fine-tuning: cross-entropy on the response tokens.
    Sft(TrainArgs),
    /// Reward model: LoRA base with a scalar head, on ratings.
    Reward {
        #[command(flatten)]
        args: TrainArgs,
        /// A rating above this is a positive example.
        #[arg(long, default_value_t = 0.0)]
        threshold: f64,
        /// Regress the rating instead of classifying it.
        #[arg(long)]
        regress: bool,
    },
    /// Policy gradient (REINFORCE, batch-mean baseline, KL to the base).
    Pg {
        #[command(flatten)]
        args: TrainArgs,
        /// KL penalty coefficient.
        #[arg(long, default_value_t = 0.05)]
        beta: f64,
    },
    /// PPO (clipped ratio, group baseline, KL to the base).
    Ppo {
        #[command(flatten)]
        args: TrainArgs,
        /// Clip range.
        #[arg(long, default_value_t = 0.2)]
        clip_range: f64,
        /// KL penalty coefficient.
        #[arg(long, default_value_t = 0.05)]
        beta: f64,
        /// Updates per batch against the same old policy.
        #[arg(long, default_value_t = 4)]
        ppo_epochs: usize,
    },
    /// Reward-weighted regression (RISE): cross-entropy times exp(reward / tau).
    Rwr {
        #[command(flatten)]
        args: TrainArgs,
        /// Temperature; without it, the `weight` stored in the data is used.
        #[arg(long)]
        tau: Option<f64>,
    },
    /// Export a checkpoint folder (OUT.ckpt/) as a GGUF adapter.
    Export {
        /// Base model (manifest name or GGUF path) the checkpoint was trained on.
        #[arg(long)]
        base: String,
        /// The checkpoint folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The adapter to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure LoRA training speed and peak memory on one backend (SFT steps on fixed text;
    /// the first step is warm-up). `retroformer bench --trainer BACKEND` runs this.
    Bench {
        /// Burn backend.
        #[arg(long, value_enum, default_value = "flex")]
        backend: Backend,
        /// Base model: a manifest name or a GGUF path.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        model: String,
        /// Tokens per step (default 512; quick 128).
        #[arg(long)]
        seq: Option<usize>,
        /// Steps, the first not timed (default 4; quick 3).
        #[arg(long)]
        steps: Option<u64>,
        /// Fewer, shorter steps.
        #[arg(long)]
        quick: bool,
        /// Print the figure as JSON (the schema of `retroformer bench`'s trainer entries).
        #[arg(long)]
        json: bool,
    },
    /// The Retroformer loop: collect Reflexion trials with the current reflector, train the
    /// reflector by SFT on the reflections whose rating reached --min-reward, export, install,
    /// canary on held-out tasks, repeat. Each round's figures go to OUT/loop.json and a plot.
    Loop(LoopArgs),
    /// Validate and summarise a LoRA adapter GGUF file.
    Inspect {
        /// The adapter file.
        adapter: PathBuf,
    },
}

#[derive(Args, Clone)]
struct LoopArgs {
    /// Environment: hotpotqa, household or humaneval.
    #[arg(long)]
    env: String,
    /// Rounds of collect, train, install, canary.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// The retrospective model (the reflector) that is trained; its adapter store is used.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    base: String,
    /// The actor (frozen; default: the base model itself).
    #[arg(long)]
    actor: Option<String>,
    /// Tasks trials are collected on (hotpotqa, humaneval: the first N; household: the
    /// training split).
    #[arg(long, default_value_t = 20)]
    train_tasks: usize,
    /// Held-out tasks for the canary (hotpotqa, humaneval: the N after the training ones;
    /// household: the evaluation split).
    #[arg(long, default_value_t = 20)]
    eval_tasks: usize,
    /// Reflexion trials per task, in collection and canary (humaneval: implementations per
    /// task, `--max-iters`).
    #[arg(long, default_value_t = 3)]
    trials: u32,
    /// Most steps per episode (default: the environment's).
    #[arg(long)]
    max_steps: Option<u32>,
    /// Ratings kept for SFT: G_{i+1} - G_i at least this.
    #[arg(long, default_value_t = 0.5)]
    min_reward: f64,
    /// Collections per round (hotpotqa, household): the first decodes the reflections
    /// greedily, the others sample them at --collect-temperature, each with its own seed; all
    /// take one first trial, so each failure gets this many rated reflections.
    #[arg(long, default_value_t = 1)]
    collect_samples: u32,
    /// Temperature of the sampled collections (--collect-samples above 1).
    #[arg(long, default_value_t = 0.7)]
    collect_temperature: f64,
    /// Train only on an SFT set of at least this many reflections; with fewer the loop stops
    /// (a handful of examples is fitted, not learned: see the README's retroformer-hotpotqa
    /// result).
    #[arg(long, default_value_t = 1)]
    min_sft_examples: usize,
    /// SFT steps per round.
    #[arg(long, default_value_t = 40)]
    steps: u64,
    /// Canary margin: promote when candidate >= incumbent - margin.
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// HotPotQA or HumanEval data file (default: as `retroformer eval hotpotqa|humaneval`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Threads for the runtime's evaluations.
    #[arg(long)]
    threads: Option<u32>,
    /// Episodes the runtime's evaluations run at once (hotpotqa and household: continuous
    /// batching in one session; see `retroformer eval hotpotqa --parallel`).
    #[arg(long, default_value_t = 1)]
    parallel: u32,
    /// burn backend for training.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Output folder (re-running with it resumes: finished evaluations and training are reused).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Base model: a manifest name (installed with `retroformer models fetch`) or a GGUF path.
    #[arg(long)]
    base: String,
    /// Training data (JSONL; see the crate docs for the accepted shapes).
    #[arg(long)]
    data: PathBuf,
    /// The adapter to write (GGUF). Its checkpoints go to OUT.ckpt/, its log and loss curve
    /// next to it.
    #[arg(long)]
    out: PathBuf,
    /// burn backend (flex: pure-Rust CPU, the fastest measured here).
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Adapted projections: q,k,v,o,gate,up,down or all.
    #[arg(long, default_value = "all")]
    targets: String,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Optimiser steps.
    #[arg(long, default_value_t = 100)]
    steps: u64,
    /// Examples per step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Longest sequence in tokens (longer examples keep the end of the prompt).
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// Checkpoint every N steps (0: only at the end). A run resumes from OUT.ckpt/ when it exists.
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Keep only examples whose reward (a rating record's G_{i+1} - G_i) is at least this:
    /// the Retroformer SFT set is `sft --min-reward 1` on `records.jsonl` (reflections after
    /// which the task was solved).
    #[arg(long)]
    min_reward: Option<f64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Command) -> Result<()> {
    let (args, objective) = match cmd {
        Command::Inspect { adapter } => return inspect(&adapter),
        Command::Loop(a) => return retro_loop(&a),
        Command::Bench {
            backend,
            model,
            seq,
            steps,
            quick,
            json,
        } => {
            let seq = seq.unwrap_or(if quick { 128 } else { 512 });
            let steps = steps.unwrap_or(if quick { 3 } else { 4 });
            return bench(backend, &model, seq, steps, json);
        }
        Command::Export {
            base,
            checkpoint,
            out,
        } => return export_checkpoint(&base, &checkpoint, &out),
        Command::Sft(a) => (a, Objective::Sft),
        Command::Rwr { args, tau } => (args, Objective::Rwr { tau }),
        Command::Reward {
            args,
            threshold,
            regress,
        } => (
            args,
            Objective::Reward {
                mode: if regress {
                    RewardMode::Regress
                } else {
                    RewardMode::Classify { threshold }
                },
            },
        ),
        Command::Pg { args, beta } => (args, Objective::Pg { beta }),
        Command::Ppo {
            args,
            clip_range,
            beta,
            ppo_epochs,
        } => (
            args,
            Objective::Ppo {
                clip: clip_range,
                beta,
                epochs: ppo_epochs,
            },
        ),
    };
    objective.validate()?;
    let base_path = base_file(&args.base)?;
    let lora = LoraConfig {
        rank: args.rank,
        alpha: args.alpha,
        dropout: args.dropout,
        targets: Target::parse_list(&args.targets)?,
        ..LoraConfig::default()
    };
    lora.validate()?;
    let config = TrainConfig {
        lr: args.lr,
        warmup: args.warmup,
        steps: args.steps,
        batch: args.batch,
        clip: args.clip,
        weight_decay: args.weight_decay,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
    };
    config.validate()?;
    if args.max_len < 2 {
        bail!("--max-len {}: must be at least 2", args.max_len);
    }
    if args.out.extension().and_then(|e| e.to_str()) != Some("gguf") {
        bail!(
            "--out {}: the adapter file must end in .gguf",
            args.out.display()
        );
    }
    // Tokenise with llama.cpp's tokenizer of the same file: training and inference see the
    // same tokens.
    let tokenizer = LlamaModel::load(&base_path, LoadOptions::new(TargetProfile::load("cpu")?))
        .with_context(|| format!("loading the tokenizer of {}", base_path.display()))?;
    let mut examples = read_examples(&args.data, &tokenizer)?;
    if let Some(min) = args.min_reward {
        examples = with_min_reward(examples, min, &args.data)?;
    }
    let mut data = examples
        .iter()
        .map(|e| tokenize(e, &tokenizer, args.max_len))
        .collect::<Result<Vec<_>, _>>()?;
    // The reward model holds out every fifth example (from 10 examples on) to report its
    // accuracy on data it did not see.
    let held_out: Vec<_> = match objective {
        Objective::Reward {
            mode: RewardMode::Classify { .. },
        } if data.len() >= 10 => {
            let all = std::mem::take(&mut data);
            let (eval, train): (Vec<_>, Vec<_>) =
                all.into_iter().enumerate().partition(|(i, _)| i % 5 == 4);
            data = train.into_iter().map(|(_, d)| d).collect();
            eval.into_iter().map(|(_, d)| d).collect()
        }
        _ => Vec::new(),
    };
    drop(tokenizer);
    let tokens: usize = data.iter().map(|d| d.tokens.len()).sum();
    eprintln!(
        "{} examples, {tokens} tokens, from {}",
        data.len(),
        args.data.display()
    );
    let device = backend_device(args.backend)?;
    let base = Base::load(&base_path, &device)?;
    eprintln!(
        "base {} ({} layers, width {}), backend {:?}",
        base_path.display(),
        base.cfg.layers,
        base.cfg.embd,
        args.backend
    );
    let base_sha256 = fetch::sha256_file(&base_path, false)?;
    let data_sha256 = fetch::sha256_file(&args.data, false)?;
    let checkpoint = PathBuf::from(format!("{}.ckpt", args.out.display()));
    let run = Run {
        base: &base,
        lora: lora.clone(),
        objective,
        config,
        data: &data,
        checkpoint,
        progress: !args.quiet,
        stop_after: None,
        base_sha256: base_sha256.clone(),
        data_sha256: data_sha256.clone(),
    };
    let trained = train(&run, &device)?;
    if trained.resumed_from > 0 {
        eprintln!("resumed from step {}", trained.resumed_from);
    }
    let provenance = Provenance {
        base_sha256,
        data_sha256,
        step: trained.log.last().map(|l| l.step).unwrap_or(0),
        objective: objective.name().into(),
    };
    let t_export = std::time::Instant::now();
    export(&trained.state.lora, &lora, &base, &provenance, &args.out)?;
    let export_ms = t_export.elapsed().as_secs_f64() * 1e3;
    let written = write_run_report(&args.out, &objective, &trained, &trained.state, export_ms)?;
    if let Objective::Reward {
        mode: RewardMode::Classify { threshold },
    } = objective
    {
        let acc = |d: &[_]| {
            reward_accuracy(&base, &trained.state, &lora, d, threshold)
                .map(|a| format!("{a:.3} of {}", d.len()))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "reward model accuracy: training {}, held out {}",
            acc(&data),
            acc(&held_out)
        );
    }
    let (Some(first), Some(last)) = (trained.log.first(), trained.log.last()) else {
        bail!("the run took no step");
    };
    println!(
        "{}: {} steps, loss {:.4} -> {:.4}; adapter {}",
        objective.name(),
        last.step,
        first.loss,
        last.loss,
        args.out.display()
    );
    for p in written {
        println!("  {}", p.display());
    }
    Ok(())
}

fn base_file(name: &str) -> Result<PathBuf> {
    Ok(match ModelRef::parse(name)? {
        ModelRef::File(p) => p,
        ModelRef::Manifest(m) => fetch::require_installed(&m, &home_dir())?,
    })
}

fn export_checkpoint(base: &str, checkpoint: &Path, out: &Path) -> Result<()> {
    let base_path = base_file(base)?;
    let device = backend_device(Backend::Flex)?;
    let base = Base::load(&base_path, &device)?;
    let ck = load_checkpoint(checkpoint, &base, &device)?;
    let base_sha256 = fetch::sha256_file(&base_path, false)?;
    if !ck.base_sha256.is_empty() && ck.base_sha256 != base_sha256 {
        bail!(
            "--base {}: {} was trained on another base model (sha256 {})",
            base_path.display(),
            checkpoint.display(),
            ck.base_sha256
        );
    }
    let provenance = Provenance {
        base_sha256,
        data_sha256: ck.data_sha256.clone(),
        step: ck.step,
        objective: ck.objective.clone(),
    };
    export(&ck.state.lora, &ck.lora, &base, &provenance, out)?;
    println!(
        "step {} of {} -> {}",
        ck.step,
        checkpoint.display(),
        out.display()
    );
    Ok(())
}

fn inspect(adapter: &Path) -> Result<()> {
    let s = retroformer_trainer::inspect_adapter(adapter)?;
    println!("architecture  {}", s.architecture.as_deref().unwrap_or("-"));
    println!("lora pairs    {}", s.pairs);
    println!(
        "rank          {}",
        s.rank.map(|r| r.to_string()).unwrap_or("-".into())
    );
    println!(
        "alpha         {}",
        s.alpha.map(|a| a.to_string()).unwrap_or("-".into())
    );
    for (k, v) in s.provenance {
        println!("{k}  {v}");
    }
    Ok(())
}

fn bench(backend: Backend, model: &str, seq: usize, steps: u64, json: bool) -> Result<()> {
    use retroformer::bench::{suite::prose, system, Figure, TrainerFigure};
    use retroformer::llm::LanguageModel;
    use retroformer_trainer::data::Tokenized;
    if steps < 2 {
        bail!("--steps must be at least 2 (the first step is warm-up)");
    }
    if seq < 8 {
        bail!("--seq must be at least 8 tokens");
    }
    let path = base_file(model)?;
    let isolated = system::reset_peak_rss();
    let lm = LlamaModel::load(&path, LoadOptions::new(TargetProfile::load("cpu")?))?;
    let mut ids = lm.tokenize(&prose(&lm, seq as u32 + 8)?, true, false)?;
    drop(lm);
    ids.truncate(seq);
    let device = backend_device(backend)?;
    let base = Base::load(&path, &device)?;
    let data = vec![Tokenized {
        tokens: ids.iter().map(|&t| t as u32).collect(),
        prompt_len: 1,
        reward: 1.0,
        weight: 1.0,
    }];
    let ck = tempfile::tempdir()?;
    let lora = LoraConfig::default();
    let rank = lora.rank as u32;
    let run = Run {
        base: &base,
        lora,
        objective: Objective::Sft,
        config: TrainConfig::timing(steps),
        data: &data,
        checkpoint: ck.path().join("ckpt"),
        progress: false,
        stop_after: None,
        base_sha256: String::new(),
        data_sha256: String::new(),
    };
    let t = train(&run, &device)?;
    let rates: Vec<f64> = t
        .log
        .iter()
        .skip(1)
        .map(|l| l.tokens as f64 / l.seconds)
        .collect();
    let fig = TrainerFigure {
        backend: format!("{backend:?}").to_lowercase(),
        model: model.to_string(),
        tokens_per_s: Figure::of(&rates).context("no timed step")?,
        peak_rss_bytes: system::peak_rss_bytes().filter(|_| isolated),
        rank,
        tokens_per_step: seq as u32,
        threads: u32::try_from(rayon::current_num_threads()).ok(),
    };
    if json {
        println!("{}", serde_json::to_string(&fig)?);
    } else {
        println!(
            "{} on {}: {:.1} training tokens/s (median of {} steps, {:.1}..{:.1}), rank {}, {} tokens/step, peak RSS {}",
            fig.backend,
            fig.model,
            fig.tokens_per_s.median,
            fig.tokens_per_s.n,
            fig.tokens_per_s.min,
            fig.tokens_per_s.max,
            fig.rank,
            fig.tokens_per_step,
            fig.peak_rss_bytes
                .map_or("unknown".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
        );
    }
    Ok(())
}

/// A phase of the loop run as a child process: its stdout, wall seconds and peak RSS.
struct Phase {
    stdout: String,
    wall_s: f64,
    peak_rss_bytes: u64,
}

/// Runs `cmd` to the end, stderr passed through; errors name `what` and the exit status.
fn run_phase(what: &str, cmd: &mut std::process::Command) -> Result<Phase> {
    use std::io::Read;
    use std::process::Stdio;
    eprintln!("[loop] {what}: {cmd:?}");
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("{what}: starting {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut bytes = Vec::new();
    if let Err(e) = child
        .stdout
        .take()
        .context("child stdout")
        .and_then(|mut o| o.read_to_end(&mut bytes).map_err(Into::into))
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.context(format!("{what}: reading its output")));
    }
    let stdout = String::from_utf8_lossy(&bytes).into_owned();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (std's Child is dropped without waiting).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc < 0 {
        bail!("{what}: wait4: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{what} failed (wait status {status}); its errors are above");
    }
    Ok(Phase {
        stdout,
        wall_s: start.elapsed().as_secs_f64(),
        // Linux reports kilobytes, macOS bytes.
        peak_rss_bytes: if cfg!(target_os = "macos") {
            ru.ru_maxrss as u64
        } else {
            ru.ru_maxrss as u64 * 1024
        },
    })
}

/// `retroformer` (the runtime's CLI): next to this binary, else on PATH.
fn runtime_cli() -> std::process::Command {
    let name = format!("retroformer{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(&name)))
        .filter(|p| p.is_file());
    std::process::Command::new(beside.unwrap_or_else(|| PathBuf::from(name)))
}

/// Success rate by trial of an evaluation folder.
fn success_by_trial(dir: &Path) -> Result<Vec<f64>> {
    let (_, summaries) = retroformer::agent::runner::read_run(dir)?;
    Ok(summaries.iter().map(|t| t.success_rate).collect())
}

/// The loop's settings as `loop.json` records them (a resumed loop must keep them: its
/// rounds' evaluations and adapters were made with them).
fn loop_settings(a: &LoopArgs, actor: &str) -> serde_json::Value {
    let mut v = serde_json::json!({
        "env": a.env, "base": a.base, "actor": actor,
        "train_tasks": a.train_tasks, "eval_tasks": a.eval_tasks, "trials": a.trials,
        "min_reward": a.min_reward, "steps": a.steps, "margin": a.margin,
    });
    // Settings added later are recorded when they are not their defaults, so that loops
    // written before them still resume.
    if a.collect_samples > 1 {
        v["collect_samples"] = a.collect_samples.into();
        v["collect_temperature"] = a.collect_temperature.into();
    }
    if a.min_sft_examples > 1 {
        v["min_sft_examples"] = a.min_sft_examples.into();
    }
    v
}

/// The collection folders of round `r`: `collect` (greedy reflections), then `collect-2` ...
/// (sampled ones), `samples` in all.
fn collect_dirs(out: &Path, r: u32, samples: u32) -> Vec<PathBuf> {
    let round = out.join(format!("round-{r}"));
    (1..=samples.max(1))
        .map(|k| match k {
            1 => round.join("collect"),
            k => round.join(format!("collect-{k}")),
        })
        .collect()
}

/// Refuses to resume a loop in `a.out` whose `loop.json` was written with other settings
/// (more `--rounds` is fine: the loop goes on).
fn check_loop_settings(a: &LoopArgs, actor: &str) -> Result<()> {
    let path = a.out.join("loop.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    let saved: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}", path.display()))?;
    let differ =
        retroformer::agent::files::setting_differences(&saved, &loop_settings(a, actor), "now");
    if !differ.is_empty() {
        bail!(
            "{} holds a loop with other settings ({}); use the same settings or another --out folder",
            path.display(),
            differ.join(", ")
        );
    }
    Ok(())
}

/// `OUT/loop.json`: the settings and every round so far (rewritten after each round).
fn write_loop_report(a: &LoopArgs, actor: &str, rounds: &[serde_json::Value]) -> Result<()> {
    let mut report = loop_settings(a, actor);
    let map = report.as_object_mut().expect("an object");
    map.insert("format_version".into(), 1.into());
    map.insert("rounds".into(), rounds.into());
    retroformer::fsutil::write_atomic(
        &a.out.join("loop.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(())
}

fn retro_loop(a: &LoopArgs) -> Result<()> {
    use retroformer::report::{line_chart_svg, write_chart, Series};
    if !["hotpotqa", "household", "humaneval"].contains(&a.env.as_str()) {
        bail!(
            "--env {}: the loop runs hotpotqa, household or humaneval",
            a.env
        );
    }
    if a.rounds == 0 || a.trials < 2 || a.train_tasks == 0 || a.eval_tasks == 0 || a.steps == 0 {
        bail!("--rounds, --train-tasks, --eval-tasks and --steps must be at least 1, and --trials at least 2 (a rating needs a next trial)");
    }
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if a.collect_samples == 0 {
        bail!("--collect-samples must be at least 1");
    }
    if a.collect_samples > 1 && a.env == "humaneval" {
        bail!("--collect-samples above 1 needs hotpotqa or household (their collections share one first trial)");
    }
    if a.collect_samples > 1 && !(a.collect_temperature.is_finite() && a.collect_temperature > 0.0)
    {
        bail!(
            "--collect-temperature {}: sampled collections need a positive temperature",
            a.collect_temperature
        );
    }
    if a.min_sft_examples == 0 {
        bail!("--min-sft-examples must be at least 1");
    }
    let actor = a.actor.clone().unwrap_or_else(|| a.base.clone());
    check_loop_settings(a, &actor)?;
    let base_path = base_file(&a.base)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let base_sha = fetch::sha256_file(&base_path, false)?;
    let store = retroformer::adapters::AdapterStore::for_base(&home_dir(), &base_sha)?;
    let common = |cmd: &mut std::process::Command| {
        if let Some(t) = a.threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        if a.parallel > 1 && a.env != "humaneval" {
            cmd.args(["--parallel", &a.parallel.to_string()]);
        }
        if let (Some(m), false) = (a.max_steps, a.env == "humaneval") {
            cmd.args(["--max-steps", &m.to_string()]);
        }
        if let (Some(d), "hotpotqa" | "humaneval") = (&a.data, a.env.as_str()) {
            cmd.arg("--data").arg(d);
        }
    };
    let mut rounds: Vec<serde_json::Value> = Vec::new();
    // A resumed loop: each round's figures as far as it got. A phase whose figures were saved
    // is not run again (its output is on disk); the one a kill interrupted runs again, resuming
    // its own output, and is marked `resumed` (its time and memory cover only the last part).
    let saved_rounds: Vec<serde_json::Value> = match retroformer::agent::files::read_json::<
        serde_json::Value,
    >(&a.out.join("loop.json"))?
    {
        Some(v) => v["rounds"].as_array().cloned().unwrap_or_default(),
        None => Vec::new(),
    };
    let all_records = a.out.join("records-all.jsonl");
    for r in 1..=a.rounds {
        let dir = a.out.join(format!("round-{r}"));
        let saved = saved_rounds
            .get(r as usize - 1)
            .cloned()
            .unwrap_or_default();
        // The reflector a round started with, even when a resumed loop finds another one active
        // (its own canary may have promoted one before the kill).
        let active = if saved.is_object() {
            saved["reflector_adapter"].as_str().map(String::from)
        } else {
            store.active()?.map(|m| m.id)
        };
        let mut round = serde_json::json!({"round": r, "reflector_adapter": active});
        let save = |round: &serde_json::Value| -> Result<()> {
            let mut all = rounds.clone();
            all.push(round.clone());
            write_loop_report(a, &actor, &all)
        };
        save(&round)?;
        std::fs::create_dir_all(&dir)?;
        // 1. Collect with the current reflector: greedy, then --collect-samples - 1 sampled
        // collections that take the greedy one's first trial.
        let dirs = collect_dirs(&a.out, r, a.collect_samples);
        // Trial 1 has no reflection yet, so the reflector cannot change it: later rounds take
        // round 1's instead of running it again (not HumanEval, whose trials are the
        // implementations inside a task).
        let collect_first = (r > 1 && a.env != "humaneval").then(|| a.out.join("round-1/collect"));
        if saved["collect"].is_object() {
            round["collect"] = saved["collect"].clone();
        } else {
            let mut arms = Vec::new();
            for (k, collect_dir) in dirs.iter().enumerate() {
                let resumed = collect_dir.join("run.json").exists();
                let mut cmd = runtime_cli();
                cmd.args(["eval", &a.env, "--strategy", "reflexion"])
                    // HumanEval's trials are the implementations inside a task; each
                    // reflection is rated by the next implementation's share of the model's
                    // own tests.
                    .arg(if a.env == "humaneval" {
                        "--max-iters"
                    } else {
                        "--trials"
                    })
                    .arg(a.trials.to_string())
                    .args(["--actor", &actor])
                    .args(["--reflector", &a.base])
                    .args(["--limit", &a.train_tasks.to_string()]);
                if a.env == "household" {
                    cmd.args(["--split", "train"]);
                }
                // The adapter's file, not `active`: a resumed round keeps the reflector it
                // started with.
                if let Some(id) = &active {
                    cmd.arg("--reflector-adapter").arg(store.adapter_path(id));
                }
                // Seeds differ between rounds too, so that a round does not draw the same
                // reflections as the one before from an unchanged reflector.
                let seed = (r - 1) * a.collect_samples + k as u32;
                if k > 0 {
                    cmd.arg(format!("--reflector-temperature={}", a.collect_temperature))
                        .args(["--reflector-seed", &seed.to_string()]);
                }
                common(&mut cmd);
                let first = match (&collect_first, k) {
                    (Some(f), _) => Some(f.clone()),
                    (None, 0) => None,
                    (None, _) => Some(dirs[0].clone()),
                };
                if let Some(first) = &first {
                    cmd.arg("--first-trial-from").arg(first);
                }
                cmd.arg("--out").arg(collect_dir);
                let what = match k {
                    0 => format!("round {r}: collect"),
                    _ => format!("round {r}: collect {}/{}", k + 1, a.collect_samples),
                };
                let collect = run_phase(&what, &mut cmd)?;
                arms.push(serde_json::json!({
                    "dir": collect_dir,
                    "temperature": if k > 0 { a.collect_temperature } else { 0.0 },
                    "seed": (k > 0).then_some(seed),
                    "success_by_trial": success_by_trial(collect_dir)?,
                    "first_trial_from": first,
                    "wall_s": collect.wall_s, "peak_rss_bytes": collect.peak_rss_bytes,
                    "resumed": resumed,
                }));
            }
            // The greedy collection's figures, with the time and peak of all of them.
            let mut c = arms[0].clone();
            c["wall_s"] = arms
                .iter()
                .filter_map(|x| x["wall_s"].as_f64())
                .sum::<f64>()
                .into();
            c["peak_rss_bytes"] = arms
                .iter()
                .filter_map(|x| x["peak_rss_bytes"].as_u64())
                .max()
                .into();
            c["resumed"] = arms.iter().any(|x| x["resumed"] == true).into();
            if arms.len() > 1 {
                c["samples"] = arms.into();
            }
            round["collect"] = c;
        }
        // 2. The SFT set: every round's records so far, kept by rating.
        let mut text = String::new();
        for k in 1..=r {
            for d in collect_dirs(&a.out, k, a.collect_samples) {
                let p = d.join("records.jsonl");
                text.push_str(
                    &std::fs::read_to_string(&p).with_context(|| p.display().to_string())?,
                );
            }
        }
        retroformer::fsutil::write_atomic(&all_records, text.as_bytes())?;
        let ratings: Vec<f64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["rating"].as_f64())
            .collect();
        let kept = ratings.iter().filter(|&&x| x >= a.min_reward).count();
        round["collect"]["records"] = ratings.len().into();
        round["collect"]["kept"] = kept.into();
        save(&round)?;
        if kept < a.min_sft_examples {
            eprintln!(
                "[loop] round {r}: {kept} of {} reflections reached rating {}, fewer than --min-sft-examples {}: too few to train on; stopping (more per failure: --collect-samples)",
                ratings.len(),
                a.min_reward,
                a.min_sft_examples
            );
            round["stopped"] =
                "fewer reflections reached --min-reward than --min-sft-examples".into();
            rounds.push(round);
            break;
        }
        // 3. Train the reflector (SFT) and export its adapter.
        let adapter = dir.join("reflector.gguf");
        if saved["train"].is_object() {
            round["train"] = saved["train"].clone();
            round["export"] = saved["export"].clone();
        } else {
            let resumed = dir.join("reflector.gguf.ckpt").exists();
            let me = std::env::current_exe()?;
            let mut cmd = std::process::Command::new(&me);
            cmd.args(["sft", "--base"])
                .arg(&base_path)
                .arg("--data")
                .arg(&all_records)
                .arg(format!("--min-reward={}", a.min_reward))
                .args(["--steps", &a.steps.to_string()])
                .args(["--warmup", &(a.steps / 10).to_string()])
                .args(["--batch", "4", "--quiet"])
                .args(["--backend", &format!("{:?}", a.backend).to_lowercase()])
                .arg("--out")
                .arg(&adapter);
            let trained = run_phase(&format!("round {r}: train"), &mut cmd)?;
            let log_path = dir.join("reflector.log.json");
            let log: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&log_path).with_context(|| log_path.display().to_string())?,
            )?;
            // The training process ends by exporting the adapter (its log says how long that
            // took); installing validates and copies it into the store.
            let export_s = log["export_ms"].as_f64().map(|m| m / 1e3);
            round["export"] = serde_json::json!({"export_s": export_s});
            round["train"] = serde_json::json!({
                "adapter": adapter, "steps": a.steps,
                "loss_first": log["steps"].as_array().and_then(|s| s.first()).map(|s| s["loss"].clone()),
                "loss_last": log["steps"].as_array().and_then(|s| s.last()).map(|s| s["loss"].clone()),
                "wall_s": trained.wall_s, "peak_rss_bytes": trained.peak_rss_bytes,
                "wall_s_without_export": export_s.map(|e| trained.wall_s - e),
                "resumed": resumed,
            });
            save(&round)?;
        }
        // 4. Install (validated and copied into the store; installing the same file again
        // gives the same id).
        let id = match round["train"]["id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let mut cmd = runtime_cli();
                cmd.args(["adapters", "install"])
                    .arg(&adapter)
                    .arg("--base")
                    .arg(&base_path);
                let installed = run_phase(&format!("round {r}: install"), &mut cmd)?;
                let id = installed
                    .stdout
                    .split_whitespace()
                    .nth(1)
                    .context("`retroformer adapters install` printed no id")?
                    .to_string();
                round["train"]["id"] = id.clone().into();
                round["export"]["install_wall_s"] = installed.wall_s.into();
                round["export"]["install_peak_rss_bytes"] = installed.peak_rss_bytes.into();
                save(&round)?;
                id
            }
        };
        // 5. The canary on held-out tasks. Its two evaluations share one first trial (see
        // above); later rounds take round 1's.
        if saved["canary"].is_object() {
            round["canary"] = saved["canary"].clone();
        } else {
            let m = store.manifest(&id)?;
            let metric = |k: &str| m.metrics.get(k).copied();
            let canary_first = match (rounds.first(), a.env.as_str()) {
                (Some(first), "hotpotqa" | "household") => {
                    let arm = first["reflector_adapter"].as_str().unwrap_or("base");
                    Some(a.out.join("round-1/canary").join(arm))
                }
                _ => None,
            };
            let (wall_s, peak_rss_bytes, resumed) = if metric("canary_score").is_some() {
                // A kill after the store recorded the canary's verdict (and perhaps
                // activated the adapter), before this file did: the verdict stands.
                (None, None, true)
            } else {
                let resumed = dir.join("canary").exists();
                let mut cmd = runtime_cli();
                cmd.args(["adapters", "canary", &id, "--base"])
                    .arg(&base_path)
                    .args(["--env", &a.env, "--actor", &actor])
                    .args(["--trials", &a.trials.to_string()])
                    .args(["--limit", &a.eval_tasks.to_string()])
                    .arg(format!("--margin={}", a.margin));
                if a.env == "household" {
                    cmd.args(["--split", "eval"]);
                } else {
                    cmd.args(["--skip", &a.train_tasks.to_string()]);
                }
                common(&mut cmd);
                if let Some(first) = &canary_first {
                    cmd.arg("--first-trial-from").arg(first);
                }
                cmd.arg("--out").arg(dir.join("canary"));
                let canary = run_phase(&format!("round {r}: canary"), &mut cmd)?;
                (Some(canary.wall_s), Some(canary.peak_rss_bytes), resumed)
            };
            let m = store.manifest(&id)?;
            let metric = |k: &str| m.metrics.get(k).copied();
            round["canary"] = serde_json::json!({
                "candidate": metric("canary_score"), "incumbent": metric("canary_incumbent_score"),
                "incumbent_id": active, "promoted": metric("canary_promoted") == Some(1.0),
                "margin": a.margin, "first_trial_from": canary_first,
                "wall_s": wall_s, "peak_rss_bytes": peak_rss_bytes, "resumed": resumed,
            });
        }
        eprintln!("[loop] round {r}: {}", round["canary"]);
        rounds.push(round);
        write_loop_report(a, &actor, &rounds)?;
    }
    write_loop_report(a, &actor, &rounds)?;
    let series = |label: &str, f: &dyn Fn(&serde_json::Value) -> Option<f64>| Series {
        label: label.into(),
        points: rounds
            .iter()
            .filter_map(|r| Some((r["round"].as_f64()?, f(r)?)))
            .collect(),
    };
    let svg = line_chart_svg(
        &format!(
            "Retroformer loop, {} ({} held-out tasks)",
            a.env, a.eval_tasks
        ),
        "round",
        "success rate after the last trial",
        (0.0, 1.0),
        &[
            series("canary: trained reflector", &|r| {
                r["canary"]["candidate"].as_f64()
            }),
            series("canary: incumbent", &|r| r["canary"]["incumbent"].as_f64()),
            series("collection (training tasks)", &|r| {
                r["collect"]["success_by_trial"]
                    .as_array()?
                    .last()?
                    .as_f64()
            }),
        ],
    );
    let written = write_chart(&a.out.join("loop"), &svg)?;
    println!(
        "{:>5} {:>10} {:>8} {:>10} {:>10} {:>9}",
        "round", "collected", "kept", "candidate", "incumbent", "promoted"
    );
    for r in &rounds {
        println!(
            "{:>5} {:>10} {:>8} {:>10} {:>10} {:>9}",
            r["round"].to_string(),
            r["collect"]["success_by_trial"]
                .as_array()
                .and_then(|s| s.last())
                .map_or("-".into(), |x| format!("{:.3}", x.as_f64().unwrap_or(0.0))),
            r["collect"]["kept"].to_string(),
            r["canary"]["candidate"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.3}")),
            r["canary"]["incumbent"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.3}")),
            r["canary"]["promoted"]
                .as_bool()
                .map_or("-".into(), |x| x.to_string()),
        );
    }
    // Time and peak memory of each phase (the export's peak is the training process's).
    let cell =
        |v: &serde_json::Value, wall: &str, rss: &str| match (v[wall].as_f64(), v[rss].as_u64()) {
            (Some(w), Some(m)) => format!("{w:.0} s/{} MB", m / 1_000_000),
            (Some(w), None) => format!("{w:.1} s"),
            _ => "-".into(),
        };
    println!(
        "{:>5} {:>16} {:>16} {:>8} {:>16} {:>16}",
        "round", "collect", "train", "export", "install", "canary"
    );
    for r in &rounds {
        println!(
            "{:>5} {:>16} {:>16} {:>8} {:>16} {:>16}",
            r["round"].to_string(),
            cell(&r["collect"], "wall_s", "peak_rss_bytes"),
            cell(&r["train"], "wall_s_without_export", "peak_rss_bytes"),
            cell(&r["export"], "export_s", "-"),
            cell(&r["export"], "install_wall_s", "install_peak_rss_bytes"),
            cell(&r["canary"], "wall_s", "peak_rss_bytes"),
        );
    }
    println!("results: {}", a.out.join("loop.json").display());
    for p in written {
        println!("plot: {}", p.display());
    }
    Ok(())
}
