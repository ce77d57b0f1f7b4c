//! `retroformer-train`: LoRA training of the retrospective model (and RISE policies) with burn,
//! exported as GGUF adapters for the runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use retroformer::fetch::{self, Silent};
use retroformer_core::records::AdapterProvenance;
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_trainer::data::{keep_ids_of, read_examples, tokenize_all, with_min_reward};
use retroformer_trainer::export::export;
use retroformer_trainer::lora::{LoraConfig, Target};
use retroformer_trainer::model::Base;
use retroformer_trainer::objective::{reward_accuracy, Objective, RewardMode};
use retroformer_trainer::train::{load_checkpoint, train, Heldout, Keep, Run, TrainConfig};
use retroformer_trainer::{backend_device, load_base, write_head, write_run_report, Backend};

#[derive(Parser)]
#[command(
    name = "retroformer-train",
    version,
    about = "Train LoRA adapters for Retroformer and export them as GGUF",
    after_help = "The CPU backends (native, the default, and flex) use every core; set RAYON_NUM_THREADS=N to use N threads."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

mod fleet;

#[derive(Subcommand)]
enum Command {
    /// The fleet's trainer: stores the records devices send over NATS JetStream, trains when
    /// enough new ones arrived, releases the adapter and promotes or rolls it back from the
    /// devices' canaries.
    Fleet(fleet::FleetArgs),
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
    /// Export a checkpoint folder (OUT.ckpt/) as a GGUF adapter: its last step (a run that
    /// keeps its best held-out step exports that one itself when it ends), and a reward
    /// model's head as OUT.head.json.
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
        /// Backend.
        #[arg(long, value_enum, default_value = "native")]
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
    /// Validate and summarise a LoRA adapter GGUF file.
    Inspect {
        /// The adapter file.
        adapter: PathBuf,
    },
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
    /// Backend: native (the CPU engine, the fastest measured here), flex or ndarray (burn's
    /// autodiff on the CPU; flex allows LoRA dropout), wgpu, cuda.
    #[arg(long, default_value = "native")]
    backend: Backend,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// LoRA dropout (burn's backends only: the native engine trains without it).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Adapted projections: q,k,v,o,gate,up,down or all.
    #[arg(long, default_value = "all")]
    targets: String,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Warmup steps (if not below --steps, the learning rate never reaches --lr).
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
    /// Checkpoint every N steps (0: at the end, and as --checkpoint-minutes says). A run resumes
    /// from OUT.ckpt/ when it exists, to the same weights as an uninterrupted run.
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Also checkpoint once this many minutes have passed since the last checkpoint (0: never
    /// by time), so that a stopped long run loses at most that much.
    #[arg(long, default_value_t = 10)]
    checkpoint_minutes: u64,
    /// Keep only examples whose reward (a rating record's G_{i+1} - G_i) is at least this:
    /// the Retroformer SFT set is `sft --min-reward 1` on `records.jsonl` (reflections after
    /// which the task was solved).
    #[arg(long)]
    min_reward: Option<f64>,
    /// Held-out examples (the shapes of --data; sft and rwr): their loss is measured every
    /// --eval-every steps, training stops after --patience measurements without a new lowest
    /// loss, and --keep says which state is exported.
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Steps between held-out measurements.
    #[arg(long, default_value_t = 10)]
    eval_every: u64,
    /// Held-out measurements without a new lowest loss before stopping (0: never stop early).
    #[arg(long, default_value_t = 3)]
    patience: u64,
    /// The state exported when --eval-data is given: `lowest-loss` (its lowest held-out loss)
    /// or `last` (the last step trained; the held-out loss is still measured and logged).
    #[arg(long, default_value = Keep::NAMES[0], value_parser = Keep::NAMES)]
    keep: String,
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
            eprintln!("error: {}", retroformer_core::text::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

// long: the training command's steps in order (base, data, tokenisation, training, export, report); each is a few lines.
fn run(cmd: Command) -> Result<()> {
    let (args, objective) = match cmd {
        Command::Inspect { adapter } => return inspect(&adapter),
        Command::Fleet(a) => return fleet::fleet(&a),
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
        checkpoint_minutes: args.checkpoint_minutes,
    };
    config.validate()?;
    if config.warmup >= config.steps {
        // Allowed, as elsewhere (a short run with the default warmup), but worth knowing.
        tracing::warn!(
            warmup = config.warmup,
            steps = config.steps,
            "--warmup is not below --steps: every step is warmup, the learning rate never reaches --lr"
        );
    }
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
    let base_sha256 = fetch::sha256_file(&base_path, &Silent)?;
    let mut examples = read_examples(&args.data, &tokenizer)?;
    let foreign = keep_ids_of(&mut examples, &base_sha256);
    if foreign > 0 {
        eprintln!(
            "{foreign} examples carry token ids of another model: they are tokenised from their text"
        );
    }
    if let Some(min) = args.min_reward {
        examples = with_min_reward(examples, min, &args.data)?;
    }
    let mut data = tokenize_all(&examples, &tokenizer, args.max_len, &args.data)?;
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
    let heldout = match &args.eval_data {
        Some(p) => {
            let mut examples = read_examples(p, &tokenizer)?;
            keep_ids_of(&mut examples, &base_sha256);
            tokenize_all(&examples, &tokenizer, args.max_len, p).context("--eval-data")?
        }
        None => Vec::new(),
    };
    if args.eval_every == 0 {
        bail!("--eval-every 0: must be at least 1");
    }
    drop(tokenizer);
    let tokens: usize = data.iter().map(|d| d.tokens.len()).sum();
    eprintln!(
        "{} examples, {tokens} tokens, from {}",
        data.len(),
        args.data.display()
    );
    let device = backend_device(args.backend)?;
    let base = load_base(&base_path, args.backend, &device)?;
    eprintln!(
        "base {} ({} layers, width {}), backend {:?}",
        base_path.display(),
        base.cfg.layers,
        base.cfg.embd,
        args.backend
    );
    let data_sha256 = fetch::sha256_file(&args.data, &Silent)?;
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
        heldout: args.eval_data.as_ref().map(|_| Heldout {
            data: &heldout,
            every: args.eval_every,
            patience: args.patience,
            keep: Keep::parse(&args.keep).unwrap_or_default(),
        }),
        base_sha256: base_sha256.clone(),
        data_sha256: data_sha256.clone(),
    };
    let trained = train(&run, &device)?;
    if trained.resumed_from > 0 {
        eprintln!("resumed from step {}", trained.resumed_from);
    }
    let provenance = AdapterProvenance {
        base_sha256,
        data_sha256,
        step: trained
            .best_step
            .or(trained.log.last().map(|l| l.step))
            .unwrap_or(0),
        objective: objective.name().into(),
        ..AdapterProvenance::default()
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
    if let Some(b) = trained.best_step {
        let h = trained
            .log
            .iter()
            .find(|l| l.step == b)
            .and_then(|l| l.heldout_loss);
        println!(
            "exported step {b}: the lowest held-out loss ({})",
            h.map_or("-".into(), |h| format!("{h:.4}"))
        );
    }
    for p in written {
        println!("  {}", p.display());
    }
    Ok(())
}

/// The base model's file (a manifest name of an installed model, or a path).
fn base_file(name: &str) -> Result<PathBuf> {
    Ok(retroformer::backend::resolve(name, None)?.path)
}

fn export_checkpoint(base: &str, checkpoint: &Path, out: &Path) -> Result<()> {
    let base_path = base_file(base)?;
    let device = backend_device(Backend::Flex)?;
    let base = Base::load(&base_path, &device)?;
    let ck = load_checkpoint(checkpoint, &base, &device)?;
    let base_sha256 = fetch::sha256_file(&base_path, &Silent)?;
    if !ck.base_sha256.is_empty() && ck.base_sha256 != base_sha256 {
        bail!(
            "--base {}: {} was trained on another base model (sha256 {})",
            base_path.display(),
            checkpoint.display(),
            ck.base_sha256
        );
    }
    let provenance = AdapterProvenance {
        base_sha256,
        data_sha256: ck.data_sha256.clone(),
        step: ck.step,
        objective: ck.objective.clone(),
        ..AdapterProvenance::default()
    };
    export(&ck.state.lora, &ck.lora, &base, &provenance, out)?;
    println!(
        "step {} of {} -> {}",
        ck.step,
        checkpoint.display(),
        out.display()
    );
    if let Some(h) = &ck.state.head {
        println!("its reward head -> {}", write_head(out, h)?.display());
    }
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

/// The longest `bench --seq`.
const MAX_BENCH_SEQ: usize = 32_768;

fn bench(backend: Backend, model: &str, seq: usize, steps: u64, json: bool) -> Result<()> {
    use retroformer_core::records::{Figure, TrainerFigure};
    use retroformer_core::rss;
    use retroformer_llm::{prose, LanguageModel};
    use retroformer_trainer::data::Tokenized;
    if steps < 2 {
        bail!("--steps must be at least 2 (the first step is warm-up)");
    }
    // Past the bench's prose generator (the tokenizer takes at most 256 KiB of text).
    if !(8..=MAX_BENCH_SEQ).contains(&seq) {
        bail!("--seq {seq}: must be 8 to {MAX_BENCH_SEQ} tokens");
    }
    let path = base_file(model)?;
    let isolated = rss::reset_peak_rss();
    let lm = LlamaModel::load(&path, LoadOptions::new(TargetProfile::load("cpu")?))?;
    let mut ids = lm.tokenize(&prose(&lm, seq as u32 + 8)?, true, false)?;
    drop(lm);
    ids.truncate(seq);
    let device = backend_device(backend)?;
    let base = load_base(&path, backend, &device)?;
    let data = vec![Tokenized {
        tokens: ids.iter().map(|&t| t as u32).collect(),
        prompt_len: 1,
        mask: None,
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
        heldout: None,
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
        backend: backend.name().into(),
        model: model.to_string(),
        tokens_per_s: Figure::of(&rates).context("no timed step")?,
        peak_rss_bytes: rss::peak_rss_bytes().filter(|_| isolated),
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
