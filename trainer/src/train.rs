//! Our own training loop (not burn-train's `Learner`): AdamW, linear warmup then cosine decay,
//! gradient accumulation over a batch, clipping by the global gradient norm, seeded data
//! order and dropout, checkpoints that resume to the same weights, a progress bar with the
//! loss and tokens/s, and a loss curve.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use retroformer_report::progress::{self, LineProgress};
use serde::{Deserialize, Serialize};

use crate::data::Tokenized;
use crate::grads::{add_grads, clip_global, Example};
use crate::heldout::{check_heldout, heldout_loss, Best, BestMark};
pub use crate::heldout::{Heldout, Keep};
use crate::lora::LoraConfig;
use crate::model::Base;
use crate::native::LoraWeights;
use crate::objective::{response_logprobs, to_vec1, ExampleStats, Objective, Trainable};
use crate::TrainerError;
use fingerprint::{fingerprint, heldout_fingerprint, short};
use retroformer_core::records::TrainingStep;

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup: u64,
    /// Optimiser steps in total.
    pub steps: u64,
    /// Examples per step (accumulated one at a time).
    pub batch: usize,
    /// Clip the global gradient norm to this (0 disables).
    pub clip: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of data order, initialisation and dropout.
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Also write one once this many minutes have passed since the last (0: by steps only):
    /// on 2 cores a step of whole household episodes takes minutes, so ten steps are half an
    /// hour that a stopped run would do again. A resume ends with the same weights however
    /// often it was checkpointed, so this changes no result.
    #[serde(default)]
    pub checkpoint_minutes: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            warmup: 10,
            steps: 100,
            batch: 4,
            clip: 1.0,
            weight_decay: 0.0,
            seed: 0,
            checkpoint_every: 0,
            checkpoint_minutes: 0,
        }
    }
}

impl TrainConfig {
    /// The settings the speed benchmarks time: `steps` plain SFT steps of batch 1, learning
    /// rate 2e-4 on [`Self::lr_at`]'s cosine without warm-up (the PyTorch reference of
    /// `benches/benches/train.rs` follows the same), no clipping, no weight decay, no checkpoints.
    pub fn timing(steps: u64) -> Self {
        Self {
            lr: 2e-4,
            warmup: 0,
            steps,
            batch: 1,
            clip: 0.0,
            weight_decay: 0.0,
            seed: 0,
            checkpoint_every: u64::MAX,
            checkpoint_minutes: 0,
        }
    }

    /// Whether step `step` (counted from 1) ends with a checkpoint, `since_last` after the
    /// previous one (or the run's start): every `checkpoint_every` steps, once
    /// `checkpoint_minutes` have passed, and at the last step.
    pub fn checkpoint_due(&self, step: u64, since_last: std::time::Duration) -> bool {
        (self.checkpoint_every > 0 && step.is_multiple_of(self.checkpoint_every))
            || (self.checkpoint_minutes > 0
                && since_last.as_secs() >= self.checkpoint_minutes.saturating_mul(60))
            || step == self.steps
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), TrainerError> {
        let bad = |field: &str, reason: String| {
            Err(TrainerError::Config {
                field: field.into(),
                reason,
            })
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{}; must be positive", self.lr));
        }
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return bad("batch", format!("{}; must be 1 to {MAX_BATCH}", self.batch));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return bad("clip", format!("{}; must be >= 0", self.clip));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight-decay",
                format!("{}; must be >= 0", self.weight_decay),
            );
        }
        Ok(())
    }

    /// Learning rate at step `s` (from 0): linear warmup to `lr`, then cosine to 0.
    pub fn lr_at(&self, s: u64) -> f64 {
        if s < self.warmup {
            return self.lr * (s + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let t = (s - self.warmup) as f64 / span;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// The largest `--batch` (examples a step; each is its own forward and backward pass).
pub const MAX_BATCH: usize = 1 << 16;

/// Version of the checkpoint's `state.json`.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    format_version: u32,
    step: u64,
    objective: String,
    config: TrainConfig,
    lora: LoraSettings,
    /// The objective with its settings (`Debug` form), compared on resume.
    #[serde(default)]
    objective_settings: String,
    /// sha256 of the base model and of the data, compared on resume and used by export.
    #[serde(default)]
    base_sha256: String,
    #[serde(default)]
    data_sha256: String,
    /// The examples as trained on (after `--max-len`, `--min-reward` and any split) and the
    /// held-out set with its settings ([`fingerprint`]): the same file read another way gives
    /// another order and schedule. Compared on resume when recorded.
    #[serde(default)]
    examples: String,
    #[serde(default)]
    heldout: String,
    log: Vec<TrainingStep>,
    /// The lowest held-out loss so far (its state in `best-STEP.bpk`), so that a resumed run
    /// exports the same step as an uninterrupted one.
    #[serde(default)]
    best: Option<BestMark>,
}

/// The LoRA settings as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    /// Rank.
    pub rank: usize,
    /// Alpha.
    pub alpha: f32,
    /// Dropout.
    pub dropout: f32,
    /// Short target names.
    pub targets: Vec<String>,
}

impl LoraSettings {
    fn of(cfg: &LoraConfig) -> Self {
        Self {
            rank: cfg.rank,
            alpha: cfg.alpha,
            dropout: cfg.dropout,
            targets: cfg.targets.iter().map(|t| t.name().to_string()).collect(),
        }
    }

    /// Back to a configuration.
    pub fn to_config(&self) -> Result<LoraConfig, TrainerError> {
        Ok(LoraConfig {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            targets: crate::lora::Target::parse_list(&self.targets.join(","))?,
            ..LoraConfig::default()
        })
    }
}

/// A checkpoint read back for export.
pub struct Checkpoint {
    /// The trained module.
    pub state: Trainable,
    /// Its LoRA settings.
    pub lora: LoraConfig,
    /// The objective's name.
    pub objective: String,
    /// The step.
    pub step: u64,
    /// sha256 of the base it was trained on.
    pub base_sha256: String,
    /// sha256 of its data.
    pub data_sha256: String,
}

fn read_state(dir: &Path) -> Result<CheckpointState, TrainerError> {
    let state_path = dir.join("state.json");
    let ck: CheckpointState =
        serde_json::from_slice(&std::fs::read(&state_path).map_err(|e| io_err(&state_path, e))?)
            .map_err(|e| io_err(&state_path, e))?;
    if ck.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(io_err(
            &state_path,
            format!(
                "checkpoint format {} (this build reads {CHECKPOINT_FORMAT_VERSION})",
                ck.format_version
            ),
        ));
    }
    Ok(ck)
}

/// `state` with the weights of `dir`'s step `step`.
fn load_trainable(dir: &Path, step: u64, state: Trainable) -> Result<Trainable, TrainerError> {
    load_record(&dir.join(format!("trainable-{step}.bpk")), state)
}

/// `state` with the weights of file `tp`.
fn load_record(tp: &Path, state: Trainable) -> Result<Trainable, TrainerError> {
    let bytes = std::fs::read(tp).map_err(|e| io_err(tp, e))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| io_err(tp, format!("{e:?}")))?;
    state
        .try_load_record(record)
        .map_err(|e| io_err(tp, format!("{e:?}")))
}

/// Reads a checkpoint folder.
pub fn load_checkpoint(
    dir: &Path,
    base: &Base,
    device: &Device,
) -> Result<Checkpoint, TrainerError> {
    let ck = read_state(dir)?;
    let cfg = ck.lora.to_config()?;
    let head = (ck.objective == "reward")
        .then(|| crate::objective::ScalarHead::new(base.cfg.embd, device));
    let state = Trainable {
        lora: cfg.init(&base.lora_shapes(), 0, device)?,
        head,
    };
    let state = load_trainable(dir, ck.step, state)?;
    Ok(Checkpoint {
        state,
        lora: cfg,
        objective: ck.objective,
        step: ck.step,
        base_sha256: ck.base_sha256,
        data_sha256: ck.data_sha256,
    })
}

/// The order in which examples are visited: epoch e is a SplitMix shuffle seeded by (seed, e).
pub fn example_at(seed: u64, n: usize, k: u64) -> usize {
    let epoch = k / n as u64;
    let mut idx: Vec<usize> = (0..n).collect();
    retroformer_core::rng::shuffle(&mut idx, seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    idx[(k % n as u64) as usize]
}

/// Everything a run needs.
pub struct Run<'a> {
    /// The frozen base.
    pub base: &'a Base,
    /// LoRA settings.
    pub lora: LoraConfig,
    /// The objective.
    pub objective: Objective,
    /// Optimisation settings.
    pub config: TrainConfig,
    /// The examples.
    pub data: &'a [Tokenized],
    /// Checkpoint folder: `state.json`, `trainable-STEP.bpk`, `optim-STEP.bpk`.
    pub checkpoint: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop (after writing a checkpoint) once this step is reached, as if interrupted.
    pub stop_after: Option<u64>,
    /// Held-out examples for early stopping, if any.
    pub heldout: Option<Heldout<'a>>,
    /// sha256 of the base model file (recorded in checkpoints; a resume must match).
    pub base_sha256: String,
    /// sha256 of the data file (likewise).
    pub data_sha256: String,
}

/// What a run returns.
pub struct Trained {
    /// The trained module.
    pub state: Trainable,
    /// One entry per step, including the steps before a resume.
    pub log: Vec<TrainingStep>,
    /// Step the run resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// The step of the returned state when a held-out set chose it (`Keep::LowestLoss`).
    pub best_step: Option<u64>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainerError {
    TrainerError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The mean reward of the examples in `data` with example `i`'s prompt (several responses to
/// one prompt: several reflections on one failure), when there are at least two: the baseline
/// that leaves only what the response itself is worth. `None` for a prompt seen once.
pub fn group_baseline(data: &[Tokenized], i: usize) -> Option<f64> {
    let prompt = &data[i].tokens[..data[i].prompt_len];
    let group: Vec<f64> = data
        .iter()
        .filter(|e| e.prompt_len == prompt.len() && e.tokens[..e.prompt_len] == *prompt)
        .map(|e| e.reward)
        .collect();
    (group.len() > 1).then(|| group.iter().sum::<f64>() / group.len() as f64)
}

/// Per-example statistics for a batch: advantages, class weights, reference and old
/// log-probabilities.
fn batch_stats(
    run: &Run,
    state: &Trainable,
    batch: &[usize],
    class_weights: (f64, f64),
) -> Vec<ExampleStats> {
    let data = run.data;
    let mean_reward = batch.iter().map(|&i| data[i].reward).sum::<f64>() / batch.len() as f64;
    batch
        .iter()
        .map(|&i| {
            let ex = &data[i];
            let mut s = ExampleStats {
                class_weight: 1.0,
                ..ExampleStats::default()
            };
            let objective = &run.objective;
            if let Some(threshold) = objective.class_threshold() {
                s.class_weight = if ex.reward > threshold {
                    class_weights.1
                } else {
                    class_weights.0
                };
            }
            if objective.on_policy() {
                s.advantage = ex.reward - group_baseline(data, i).unwrap_or(mean_reward);
            }
            if objective.needs_old_policy() {
                // The policy before this step's update (no gradient: values only).
                s.old_logprobs = Some(to_vec1(
                    response_logprobs(run.base, Some((&state.lora, &run.lora)), ex).detach(),
                ));
            }
            if objective.kl_beta().is_some_and(|beta| beta > 0.0) {
                s.ref_logprobs = Some(to_vec1(response_logprobs(run.base, None, ex)));
            }
            s
        })
        .collect()
}

/// Trains from the checkpoint in `run.checkpoint` if there is one, else from a fresh
/// initialisation, up to `run.config.steps`.
// long: the training loop: one step's batch, forward, loss, backward, clipping, optimiser and checkpoint share the loop's state; each phase is commented in place.
pub fn train(run: &Run, device: &Device) -> Result<Trained, TrainerError> {
    run.config.validate()?;
    run.lora.validate()?;
    run.objective.validate()?;
    if run.data.is_empty() {
        return Err(TrainerError::Config {
            field: "data".into(),
            reason: "no examples".into(),
        });
    }
    if run.objective.on_policy() {
        if run.lora.dropout > 0.0 {
            return Err(TrainerError::Config {
                field: "dropout".into(),
                reason: "must be 0 for pg and ppo (their old and reference log-probabilities are taken without dropout)".into(),
            });
        }
        if run.config.batch < 2 {
            return Err(TrainerError::Config {
                field: "batch".into(),
                reason: "pg and ppo need at least 2 examples per batch (the baseline is the batch mean; with 1 every advantage is 0)".into(),
            });
        }
    }
    if let Some(i) = run
        .data
        .iter()
        .position(|d| d.tokens.len() <= d.prompt_len.max(1) || d.prompt_len > d.tokens.len())
    {
        return Err(TrainerError::Config {
            field: "data".into(),
            reason: format!("example {i} has no response token to train on"),
        });
    }
    check_heldout(&run.objective, run.heldout.as_ref())?;
    check_tokens(run)?;
    if run.base.native().is_some() && run.lora.dropout > 0.0 {
        return Err(TrainerError::Config {
            field: "dropout".into(),
            reason:
                "the native CPU engine trains without LoRA dropout; use --backend flex for dropout"
                    .into(),
        });
    }
    let cfg = &run.config;
    let mut lora_cfg = run.lora.clone();
    let head = run
        .objective
        .scores()
        .then(|| crate::objective::ScalarHead::new(run.base.cfg.embd, device));
    let mut state = Trainable {
        lora: lora_cfg.init(&run.base.lora_shapes(), cfg.seed, device)?,
        head,
    };
    // epsilon 1e-8 as PyTorch's AdamW (and so PEFT's and Hugging Face's trainers). burn's
    // default, 1e-5, is larger than the square root of most LoRA-A gradients' second moment in
    // the first steps, so it damped those updates: measured against PyTorch + PEFT on the same
    // tokens, our loss fell more slowly from the third step on (issue 26).
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let mut log = Vec::new();
    let mut step = 0u64;
    let (mut best, mut since_best): (Option<Best>, u64) = (None, 0);
    let state_path = run.checkpoint.join("state.json");
    if state_path.exists() {
        let ck = read_state(&run.checkpoint)?;
        let lora_now = LoraSettings::of(&run.lora);
        let same_schedule = ck.config.lr == cfg.lr
            && ck.config.steps == cfg.steps
            && ck.config.warmup == cfg.warmup
            && ck.config.clip == cfg.clip
            && ck.config.weight_decay == cfg.weight_decay;
        let differs = |a: &str, b: &str| !a.is_empty() && a != b;
        if ck.objective != run.objective.name()
            || (!ck.objective_settings.is_empty()
                && ck.objective_settings != format!("{:?}", run.objective))
            || ck.config.seed != cfg.seed
            || ck.config.batch != cfg.batch
            || !same_schedule
            || ck.lora != lora_now
            || differs(&ck.base_sha256, &run.base_sha256)
            || differs(&ck.data_sha256, &run.data_sha256)
            || differs(&ck.examples, &fingerprint(run.data))
            || differs(&ck.heldout, &heldout_fingerprint(run.heldout.as_ref()))
        {
            return Err(TrainerError::Config {
                field: "resume".into(),
                reason: format!(
                    "{} holds another run ({}, {:?}, LoRA {:?}, base {}, data {}); this run is {:?}, {:?}, LoRA {:?}, base {}, data {}: a resume needs the same objective, seed, batch, steps, lr, warmup, clip, weight decay, LoRA, base, data (as read: --max-len, --min-reward) and held-out set and settings (delete the folder to start over)",
                    run.checkpoint.display(),
                    ck.objective_settings,
                    ck.config,
                    ck.lora,
                    short(&ck.base_sha256),
                    short(&ck.data_sha256),
                    run.objective,
                    cfg,
                    lora_now,
                    short(&run.base_sha256),
                    short(&run.data_sha256)
                ),
            });
        }
        state = load_trainable(&run.checkpoint, ck.step, state)?;
        let op = run.checkpoint.join(format!("optim-{}.bpk", ck.step));
        let bytes = std::fs::read(&op).map_err(|e| io_err(&op, e))?;
        optim = optim
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| io_err(&op, format!("{e:?}")))?;
        step = ck.step;
        log = ck.log;
        if let Some(m) = ck.best {
            let file = run.checkpoint.join(format!("best-{}.bpk", m.step));
            best = Some(Best {
                loss: m.loss,
                step: m.step,
                state: load_record(&file, state.clone())?,
            });
            since_best = m.since;
        }
        tracing::info!(step, checkpoint = %run.checkpoint.display(), "resumed");
    }
    let resumed_from = step;
    let n = run.data.len();
    let class_weights = match run.objective.class_threshold() {
        Some(threshold) => {
            let pos = run.data.iter().filter(|e| e.reward > threshold).count();
            let neg = n - pos;
            if pos == 0 || neg == 0 {
                return Err(TrainerError::Config {
                    field: "threshold".into(),
                    reason: format!(
                        "all {n} examples fall on one side of {threshold}; a classifier needs both"
                    ),
                });
            }
            (n as f64 / (2.0 * neg as f64), n as f64 / (2.0 * pos as f64))
        }
        None => (1.0, 1.0),
    };
    let bar = if run.progress {
        let b = indicatif::ProgressBar::new(cfg.steps);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} steps {msg} ({eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        b.set_prefix(run.objective.name());
        b.set_position(step);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Without a terminal (a run in the background) the bar is hidden: a line a minute instead.
    let mut lines = (run.progress && bar.is_hidden())
        .then(|| LineProgress::new(progress::EVERY, Instant::now()));
    // A run stopped early and killed before its export stops again at once.
    let patience_spent = |since: u64| {
        run.heldout
            .as_ref()
            .is_some_and(|h| h.patience > 0 && since >= h.patience)
    };
    let mut last_checkpoint = Instant::now();
    while step < cfg.steps && !patience_spent(since_best) {
        let t0 = Instant::now();
        // Dropout masks depend only on (seed, step), so a resumed run draws the same ones.
        lora_cfg
            .rng
            .set(cfg.seed ^ (step + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        lora_cfg.training = true;
        let batch: Vec<usize> = (0..cfg.batch as u64)
            .map(|j| example_at(cfg.seed, n, step * cfg.batch as u64 + j))
            .collect();
        let stats = batch_stats(run, &state, &batch, class_weights);
        // PPO takes several updates on each batch against the same old policy; the others one.
        let updates = run.objective.updates_per_batch();
        let lr = cfg.lr_at(step);
        let (mut loss_sum, mut tokens, mut grad_norm) = (0f64, 0u64, 0f64);
        for update in 0..updates {
            let mut grads: Option<GradientsParams> = None;
            let mut batch_loss = 0f64;
            // The native engine reads the factors as plain buffers, once per update.
            let factors = run
                .base
                .native()
                .map(|_| LoraWeights::from_adapters(&state.lora, &lora_cfg));
            for (&i, st) in batch.iter().zip(&stats) {
                let ex = &run.data[i];
                let example = Example {
                    objective: &run.objective,
                    base: run.base,
                    batch: cfg.batch,
                    state: &state,
                    lora: &lora_cfg,
                    ex,
                    stats: st,
                    step: step + 1,
                    index: i,
                };
                let (value, g) = match (run.base.native(), &factors) {
                    (Some(model), Some(f)) => example.native_grads(model, f, device)?,
                    _ => example.burn_grads()?,
                };
                batch_loss += value;
                tokens += ex.tokens.len() as u64;
                grads = Some(match grads {
                    None => g,
                    Some(acc) => add_grads(acc, g, &state),
                });
            }
            let mut grads = grads.expect("batch >= 1");
            let norm = clip_global(&mut grads, &state, cfg.clip);
            if !norm.is_finite() {
                return Err(TrainerError::NonFinite {
                    step: step + 1,
                    what: format!("the gradient norm is {norm}"),
                });
            }
            state = optim.step(lr, state, grads);
            if update == 0 {
                // The loss and gradient norm before this step's first update.
                loss_sum = batch_loss;
                grad_norm = norm;
            }
        }
        step += 1;
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(phases) = crate::native::profile::take() {
            tracing::info!(step, seconds, "native engine phases: {phases}");
            eprintln!("step {step}: {seconds:.3} s; native engine: {phases}");
        }
        log.push(TrainingStep {
            step,
            loss: loss_sum,
            lr,
            grad_norm,
            tokens,
            seconds,
            heldout_loss: None,
        });
        let message = format!(
            "loss {loss_sum:.4} | {:.0} tokens/s",
            tokens as f64 / seconds
        );
        if let Some(line) = lines
            .as_mut()
            .and_then(|l| l.update(step, cfg.steps, Instant::now(), &message))
        {
            eprintln!("{} steps {line}", run.objective.name());
        }
        bar.set_position(step);
        bar.set_message(message);
        let early = match &run.heldout {
            Some(h) if step.is_multiple_of(h.every.max(1)) || step == cfg.steps => {
                lora_cfg.training = false;
                let loss = heldout_loss(&run.objective, run.base, &state, &lora_cfg, h.data)?;
                if let Some(last) = log.last_mut() {
                    last.heldout_loss = Some(loss);
                }
                if best.as_ref().is_none_or(|b| loss < b.loss) {
                    best = Some(Best {
                        loss,
                        step,
                        state: state.clone(),
                    });
                    since_best = 0;
                } else {
                    since_best += 1;
                }
                patience_spent(since_best)
            }
            _ => false,
        };
        let stop = run.stop_after.is_some_and(|s| step >= s) || early;
        if cfg.checkpoint_due(step, last_checkpoint.elapsed()) || stop {
            save_checkpoint(run, &state, &optim, step, &log, best.as_ref(), since_best)?;
            last_checkpoint = Instant::now();
        }
        if stop {
            break;
        }
    }
    bar.finish_and_clear();
    lora_cfg.training = false;
    let keep_best = run
        .heldout
        .as_ref()
        .is_some_and(|h| h.keep == Keep::LowestLoss);
    let best = best.filter(|_| keep_best);
    let best_step = best.as_ref().map(|b| b.step);
    if let Some(b) = best {
        state = b.state;
    }
    Ok(Trained {
        state,
        log,
        resumed_from,
        best_step,
    })
}

/// Every token id of the data and the held-out set lies inside the base's vocabulary.
fn check_tokens(run: &Run) -> Result<(), TrainerError> {
    let vocab = run.base.cfg.vocab;
    let held = run.heldout.as_ref().map_or(&[][..], |h| h.data);
    for (set, data) in [("data", run.data), ("heldout", held)] {
        for (i, ex) in data.iter().enumerate() {
            if let Some(t) = ex.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(TrainerError::Config {
                    field: set.into(),
                    reason: format!(
                        "example {i} has token id {t}, outside the vocabulary ({vocab})"
                    ),
                });
            }
        }
    }
    Ok(())
}

fn save_checkpoint(
    run: &Run,
    state: &Trainable,
    optim: &burn::optim::ModuleOptimizer,
    step: u64,
    log: &[TrainingStep],
    best: Option<&Best>,
    since_best: u64,
) -> Result<(), TrainerError> {
    let dir = &run.checkpoint;
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        retroformer_core::fsutil::write_atomic(&p, bytes).map_err(|e| io_err(&p, e))
    };
    let bytes = |s: &Trainable| {
        let record = s.clone().into_record().into_bytes();
        record.map_err(|e| io_err(dir, format!("{e:?}")))
    };
    write(&format!("trainable-{step}.bpk"), &bytes(state)?)?;
    let op = optim
        .into_bytes()
        .map_err(|e| io_err(dir, format!("{e:?}")))?;
    write(&format!("optim-{step}.bpk"), &op)?;
    if let Some(b) = best {
        write(&format!("best-{}.bpk", b.step), &bytes(&b.state)?)?;
    }
    // state.json last: a checkpoint counts once its state names the step, so a kill at any
    // point leaves the previous checkpoint's files and state intact.
    let st = CheckpointState {
        format_version: CHECKPOINT_FORMAT_VERSION,
        step,
        objective: run.objective.name().into(),
        config: run.config.clone(),
        lora: LoraSettings::of(&run.lora),
        objective_settings: format!("{:?}", run.objective),
        base_sha256: run.base_sha256.clone(),
        data_sha256: run.data_sha256.clone(),
        examples: fingerprint(run.data),
        heldout: heldout_fingerprint(run.heldout.as_ref()),
        log: log.to_vec(),
        best: best.map(|b| BestMark {
            step: b.step,
            loss: b.loss,
            since: since_best,
        }),
    };
    write(
        "state.json",
        &serde_json::to_vec_pretty(&st).map_err(|e| io_err(dir, e))?,
    )?;
    // Older steps' files are no longer referenced.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = |p: &str| {
                if p == "best-" {
                    best.map(|b| b.step)
                } else {
                    Some(step)
                }
            };
            let old = ["trainable-", "optim-", "best-"].iter().any(|p| {
                name.strip_prefix(p)
                    .and_then(|r| r.strip_suffix(".bpk"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| Some(n) != keep(p))
            });
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

mod fingerprint;
#[cfg(test)]
mod tests;
