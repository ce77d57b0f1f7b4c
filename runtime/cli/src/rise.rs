//! RISE's data: `rollouts` (best-of-n turns) and `dataset rise` (reward-weighted samples).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use retroformer_envs::math::env::lane_tokens;
use retroformer_envs::math::Dataset;
use retroformer_llm::target::TargetProfile;

use crate::common::{load, open_batch_session, task_bar, ModelArgs};

/// The model settings of an agent run: the profile's context (at least 4096 tokens), no adapter.
pub fn agent_model_args(
    name: &str,
    profile: &TargetProfile,
    threads: Option<u32>,
    no_fetch: bool,
) -> ModelArgs {
    ModelArgs {
        model: name.to_string(),
        ctx_size: Some(profile.context_size.max(4096)),
        threads,
        no_fetch,
        adapter: None,
        adapter_scale: 1.0,
        any_base: false,
    }
}

#[derive(Subcommand)]
pub enum RolloutsCommand {
    /// GSM8K rollouts.
    Gsm8k(RolloutArgs),
    /// MATH-format rollouts.
    Math(RolloutArgs),
}

#[derive(Args)]
pub struct RolloutArgs {
    /// Model per turn, comma-separated; the last repeats (e.g. a larger model, then the learner).
    #[arg(long, value_delimiter = ',', default_value = "smollm2-135m-instruct")]
    pub models: Vec<String>,
    /// Samples per turn, comma-separated; the last repeats (e.g. 1,16).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub samples: Vec<u32>,
    /// Most turns.
    #[arg(long, default_value_t = 5)]
    pub turns: u32,
    /// Turns each turn's context holds, itself included (RISE's context_window: 2 shows one
    /// earlier attempt).
    #[arg(long, default_value_t = 2)]
    pub window: usize,
    /// Sampling temperature (RISE: 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Sampling top-p (RISE: 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Where later turns' candidates are sampled: history (RISE: after the kept attempts) or
    /// fresh (from the question alone; the kept one still follows the history in the data).
    #[arg(long, default_value = "history")]
    pub candidates: String,
    /// Tokens per attempt.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Output folder (rollouts/ID.json; re-running resumes).
    #[arg(long)]
    pub out: PathBuf,
    /// Problems JSONL (default: the bundled GSM8K train split for gsm8k; required for math).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Only the first N problems.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    pub no_fetch: bool,
}

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// RISE training samples from a rollouts folder (reward-weighted, loss on the last turn).
    Rise {
        /// all, better, best or success.
        #[arg(long, default_value = "better")]
        criteria: String,
        /// Temperature of the weights exp(reward / tau).
        #[arg(long, default_value_t = 0.4)]
        tau: f64,
        /// Shuffle seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The rollouts folder (from `retroformer rollouts`).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output JSONL.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn rollouts(profile: &TargetProfile, a: &RolloutArgs, dataset: Dataset) -> Result<()> {
    use retroformer_envs::math::rise::{self, MathAgent, RolloutConfig};
    if a.models.is_empty() || a.samples.is_empty() {
        anyhow::bail!("--models and --samples need at least one entry each");
    }
    for &n in &a.samples {
        if let Err((flag, why)) = rise::check_counts(a.turns, n) {
            anyhow::bail!("--{flag} {why}");
        }
    }
    if let Err((flag, why)) = rise::check_max_tokens(a.max_tokens)
        .and_then(|()| rise::check_sampling(a.window, a.temperature, a.top_p))
    {
        anyhow::bail!("--{flag} {why}");
    }
    let mut problems = retroformer_envs::math::env::load(dataset, a.data.as_deref(), "train")?;
    if let Some(n) = a.limit {
        problems.truncate(n);
    }
    let mut models = Vec::new();
    // A turn's candidates are decoded together; with one model, beside other problems'.
    let mut most = a.samples.iter().copied().max().unwrap_or(1);
    if a.models.len() == 1 {
        most = most.max(retroformer_envs::DEFAULT_PARALLEL);
    }
    let loaded = a
        .models
        .iter()
        .map(|name| {
            let args = agent_model_args(name, profile, a.threads, a.no_fetch);
            Ok((load(profile, &args)?, args))
        })
        .collect::<Result<Vec<_>>>()?;
    // Every model's session gets as many lanes: their caches share the memory.
    let per_token = loaded
        .iter()
        .map(|(m, _)| m.kv_bytes_per_token())
        .sum::<Option<u64>>();
    let (sequences, ctx) = if most > 1 {
        let cells = profile.batch_cells(per_token, retroformer_core::rss::available_bytes());
        profile.lanes(most, lane_tokens(a.window, a.max_tokens), cells)
    } else {
        (1, 0)
    };
    for (m, args) in loaded {
        let s = open_batch_session(m.as_ref(), profile, &args, sequences, ctx)?;
        models.push((m, s));
    }
    let cfg = RolloutConfig {
        dataset,
        models: a.models.clone(),
        samples: a.samples.clone(),
        turns: a.turns,
        window: a.window,
        temperature: a.temperature,
        top_p: a.top_p,
        max_tokens: a.max_tokens,
        seed: a.seed,
        format_version: rise::FORMAT_VERSION,
        candidates: candidates(&a.candidates)?,
    };
    let mut solvers: Vec<MathAgent<'_>> = models
        .iter_mut()
        .map(|(m, s)| MathAgent {
            model: &**m,
            session: s.as_mut(),
        })
        .collect();
    let bar = task_bar(problems.len());
    let all = rise::collect_all(&problems, &cfg, &a.out, &mut solvers, |r| {
        bar.inc(1);
        bar.set_message(format!("{}: {} turn(s)", r.problem_id, r.turns.len()));
    })?;
    bar.finish_and_clear();
    let solved = all
        .iter()
        .filter(|r| r.turns.last().is_some_and(|t| t.reward >= 1.0))
        .count();
    println!(
        "{} rollouts, {} end correct; samples per criterion: {}",
        all.len(),
        solved,
        rise::criterion_counts(&all)
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("rollouts: {}", a.out.join("rollouts").display());
    Ok(())
}

/// The `--candidates` setting.
fn candidates(name: &str) -> Result<retroformer_envs::math::rise::Candidates> {
    retroformer_envs::math::rise::Candidates::parse(name)
        .ok_or_else(|| anyhow::anyhow!("--candidates {name}: known values are history, fresh"))
}

pub fn dataset_rise(criteria: &str, tau: f64, seed: u64, input: &Path, out: &Path) -> Result<()> {
    use retroformer_envs::math::rise::{self, Criterion};
    let Some(c) = Criterion::parse(criteria) else {
        anyhow::bail!("--criteria {criteria}: known criteria are all, better, best, success");
    };
    let rollouts =
        rise::read_rollouts(input).with_context(|| format!("--in {}", input.display()))?;
    let samples = rise::to_dataset(&rollouts, c, tau, seed)?;
    rise::write_dataset(out, &samples)?;
    println!(
        "{} samples from {} rollouts (criterion {criteria}, tau {tau}, seed {seed}) -> {}",
        samples.len(),
        rollouts.len(),
        out.display()
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum RiseCommand {
    /// One RISE round: rollouts on GSM8K train, reward-weighted regression (a LoRA by
    /// `retroformer-train rwr`), then the base and the trained adapter evaluated on GSM8K test
    /// with the same seeds; `OUT/round.json` and `OUT/turns.svg`. Re-running resumes.
    Round(RoundArgs),
}

#[derive(Args)]
pub struct RoundArgs {
    /// The learner (manifest name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    pub base: String,
    /// A model that samples turns 2 on in the rollouts (distillation); default: the learner.
    #[arg(long)]
    pub teacher: Option<String>,
    /// GSM8K train problems rolled out (the first N).
    #[arg(long, default_value_t = 300)]
    pub train: usize,
    /// GSM8K test problems evaluated (the first N).
    #[arg(long, default_value_t = 400)]
    pub eval: usize,
    /// Candidates per rollout turn, comma-separated; the last repeats.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub samples: Vec<u32>,
    /// Most rollout turns.
    #[arg(long, default_value_t = 3)]
    pub rollout_turns: u32,
    /// Evaluation: sequential turns.
    #[arg(long, default_value_t = 5)]
    pub turns: u32,
    /// Evaluation: parallel samples (m5@t1).
    #[arg(long = "samples-eval", default_value_t = 5)]
    pub samples_eval: u32,
    /// RISE's context window: turns each turn's context holds, itself included.
    #[arg(long, default_value_t = 2)]
    pub window: usize,
    /// Temperature of every attempt (RISE: 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Top-p of every attempt (RISE: 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Where later rollout turns' candidates are sampled: history (RISE) or fresh (from the
    /// question alone).
    #[arg(long, default_value = "history")]
    pub candidates: String,
    /// Temperature of the rollouts (default: --temperature).
    #[arg(long)]
    pub rollout_temperature: Option<f32>,
    /// Top-p of the rollouts (default: --top-p).
    #[arg(long)]
    pub rollout_top_p: Option<f32>,
    /// Tokens per attempt.
    #[arg(long, default_value_t = 400)]
    pub max_tokens: u32,
    /// Seed of rollouts, evaluations and the data's shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Which rollout turns become samples: all, better, best, success.
    #[arg(long, default_value = "better")]
    pub criteria: String,
    /// Weights exp(reward / tau).
    #[arg(long, default_value_t = 0.4)]
    pub tau: f64,
    /// Every k-th rolled-out problem is held out for the trainer's held-out loss (0: none).
    #[arg(long, default_value_t = 10)]
    pub heldout_every: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f32,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Passes over the training samples (the steps are epochs x samples / batch).
    #[arg(long, default_value_t = 2.0)]
    pub epochs: f64,
    /// Samples per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Longest training sequence in tokens.
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// Training backend (`retroformer-train --backend`: native, flex, ndarray, wgpu, cuda).
    #[arg(long, default_value = "native")]
    pub backend: String,
    /// Evaluation: problems decoded together.
    #[arg(long, default_value_t = 8)]
    pub eval_batch: u32,
    /// Another GSM8K train file.
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    /// Another GSM8K test file.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The round's folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Threads (default: the target profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    pub no_fetch: bool,
}

pub fn round(profile: &TargetProfile, a: &RoundArgs) -> Result<()> {
    use retroformer_lab::rise_round::{run_round, RoundPlan, RoundSettings};
    let plan = RoundPlan {
        settings: RoundSettings {
            model: a.base.clone(),
            teacher: a.teacher.clone(),
            train_problems: a.train,
            eval_problems: a.eval,
            train_data: a.train_data.clone(),
            eval_data: a.eval_data.clone(),
            samples: a.samples.clone(),
            rollout_turns: a.rollout_turns,
            window: a.window,
            temperature: a.temperature,
            top_p: a.top_p,
            candidates: candidates(&a.candidates)?,
            rollout_sampling: (a.rollout_temperature.is_some() || a.rollout_top_p.is_some()).then(
                || {
                    (
                        a.rollout_temperature.unwrap_or(a.temperature),
                        a.rollout_top_p.unwrap_or(a.top_p),
                    )
                },
            ),
            max_tokens: a.max_tokens,
            seed: a.seed,
            criterion: a.criteria.clone(),
            tau: a.tau,
            heldout_every: a.heldout_every,
            rank: a.rank,
            alpha: a.alpha,
            lr: a.lr,
            epochs: a.epochs,
            batch: a.batch,
            max_len: a.max_len,
            backend: a.backend.clone(),
            turns: a.turns,
            parallel_samples: a.samples_eval,
            eval_batch: a.eval_batch,
        },
        out: a.out.clone(),
    };
    let bar = crate::common::FetchBar::default();
    let models = retroformer_lab::BackendSource {
        profile: profile.clone(),
        threads: a.threads,
        fetch: (!a.no_fetch).then_some(&bar as &dyn retroformer::fetch::Progress),
    };
    let mut progress = crate::common::TaskProgress::new(false);
    let report = run_round(&plan, &models, &mut progress);
    progress.finish();
    for line in report?.summary() {
        println!("{line}");
    }
    println!("results: {}", a.out.join("round.json").display());
    Ok(())
}
