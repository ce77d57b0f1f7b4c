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
    /// Earlier attempts each turn sees.
    #[arg(long, default_value_t = 2)]
    pub window: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Tokens per attempt.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Output folder (rollouts/ID.json; re-running resumes).
    #[arg(long)]
    pub out: PathBuf,
    /// Problems JSONL (default: ../shared/data/gsm8k/train.jsonl for gsm8k; required for math).
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
    if a.models.is_empty() || a.samples.is_empty() || a.samples.contains(&0) {
        anyhow::bail!("--models and --samples need at least one entry each, samples at least 1");
    }
    let mut problems = retroformer_envs::math::env::load(dataset, a.data.as_deref(), "train")?;
    if let Some(n) = a.limit {
        problems.truncate(n);
    }
    let mut models = Vec::new();
    // A turn's candidates are decoded together.
    let most = a.samples.iter().copied().max().unwrap_or(1);
    let (sequences, ctx) = if most > 1 {
        profile.lanes(most, lane_tokens(a.window, a.max_tokens))
    } else {
        (1, 0)
    };
    for name in &a.models {
        let args = agent_model_args(name, profile, a.threads, a.no_fetch);
        let m = load(profile, &args)?;
        let s = open_batch_session(&m, &args, sequences, ctx)?;
        models.push((m, s));
    }
    let cfg = RolloutConfig {
        dataset,
        models: a.models.clone(),
        samples: a.samples.clone(),
        turns: a.turns,
        window: a.window,
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        seed: a.seed,
    };
    let mut solvers: Vec<MathAgent<'_>> = models
        .iter_mut()
        .map(|(m, s)| MathAgent {
            model: &*m,
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
