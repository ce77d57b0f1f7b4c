//! `loop`: the Retroformer loop (collect, train with `retroformer-train`, install, canary).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use retroformer_envs::Registry;
use retroformer_lab::retroformer_loop::{run_loop, LoopPlan, LoopSettings};
use retroformer_lab::BackendSource;
use retroformer_llm::target::TargetProfile;

use crate::common::{FetchBar, TaskProgress};

#[derive(Args, Clone)]
pub struct LoopArgs {
    /// Environment (one with Reflexion trials: hotpotqa, household, humaneval, gsm8k-retry).
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
    /// Collections per round (hotpotqa, household, gsm8k-retry): the first decodes the reflections
    /// greedily, the others sample them at --collect-temperature, each with its own seed; all
    /// take one first trial, so each failure gets this many rated reflections.
    #[arg(long, default_value_t = 1)]
    collect_samples: u32,
    /// Temperature of the sampled collections (--collect-samples above 1).
    #[arg(long, default_value_t = 0.7)]
    collect_temperature: f64,
    /// Train only on an SFT set of at least this many reflections; with fewer the loop stops
    /// (a handful of examples is fitted, not learned: the README's retroformer-hotpotqa
    /// reflector, trained on 6, wrote 16 distinct texts in 94). A loop saved before this
    /// default (1) resumes with `--min-sft-examples 1`.
    #[arg(long, default_value_t = 32)]
    min_sft_examples: usize,
    /// SFT steps per round.
    #[arg(long, default_value_t = 40)]
    steps: u64,
    /// SFT peak learning rate (default: the trainer's, `retroformer-train sft --lr`).
    #[arg(long)]
    lr: Option<f64>,
    /// Canary margin: promote when candidate >= incumbent - margin.
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// HotPotQA or HumanEval data file (default: as `retroformer eval hotpotqa|humaneval`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Threads for the evaluations.
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
    /// Episodes the evaluations run at once (environments with `--parallel`: continuous
    /// batching in one session; see `retroformer eval hotpotqa --parallel`).
    #[arg(long, default_value_t = retroformer_envs::DEFAULT_PARALLEL)]
    parallel: u32,
    /// Training backend (`retroformer-train --backend`: native, flex, ndarray, wgpu, cuda).
    #[arg(long, default_value = "native")]
    backend: String,
    /// Output folder (re-running with it resumes: finished evaluations and training are reused).
    #[arg(long)]
    out: PathBuf,
}

/// Runs the loop of `a`, then prints its table and writes its chart.
pub fn retro_loop(profile: &TargetProfile, a: &LoopArgs) -> Result<()> {
    let plan = LoopPlan {
        settings: LoopSettings {
            env: a.env.clone(),
            base: a.base.clone(),
            actor: a.actor.clone().unwrap_or_else(|| a.base.clone()),
            train_tasks: a.train_tasks,
            eval_tasks: a.eval_tasks,
            trials: a.trials,
            min_reward: a.min_reward,
            steps: a.steps,
            margin: a.margin,
            // Settings added later are recorded when they are not their defaults, so that
            // loops written before them still resume.
            collect_samples: (a.collect_samples != 1).then_some(a.collect_samples),
            collect_temperature: (a.collect_samples > 1).then_some(a.collect_temperature),
            min_sft_examples: (a.min_sft_examples != 1).then_some(a.min_sft_examples),
            lr: a.lr,
        },
        rounds: a.rounds,
        max_steps: a.max_steps,
        data: a.data.clone(),
        parallel: a.parallel,
        backend: a.backend.clone(),
        out: a.out.clone(),
    };
    let bar = FetchBar::default();
    let models = BackendSource {
        profile: profile.clone(),
        threads: a.threads,
        fetch: (!a.no_fetch).then_some(&bar as &dyn retroformer::fetch::Progress),
    };
    let mut progress = TaskProgress::new(false);
    let report = run_loop(&Registry::builtin(), &plan, &models, &mut progress);
    progress.finish();
    let report = report?;
    for line in report.summary() {
        println!("{line}");
    }
    println!("results: {}", a.out.join("loop.json").display());
    for p in report.chart(&a.out)? {
        println!("plot: {}", p.display());
    }
    Ok(())
}
