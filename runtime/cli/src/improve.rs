//! `retroformer improve`: expert iteration (the lab's `improve`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use retroformer_lab::improve::KEEP;
use retroformer_llm::target::TargetProfile;

#[derive(Args)]
pub struct ImproveArgs {
    /// The actor (manifest name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    pub model: String,
    /// The environment: gsm8k or household.
    #[arg(long, default_value = "gsm8k")]
    pub env: String,
    /// A larger model that collects round 1 instead of the actor, as a teacher (household
    /// only: when the actor solves too few train tasks to learn from).
    #[arg(long)]
    pub collect_model: Option<String>,
    /// Rounds (collect, verify, train, install, canary); a resumed run may ask for more.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// The dev split: the first N train problems or tasks (held-out loss, canary; never
    /// trained on).
    #[arg(long, default_value_t = 100)]
    pub dev: usize,
    /// Train problems (tasks) collected each round: the N after the dev split.
    #[arg(long, default_value_t = 400)]
    pub train: usize,
    /// Sampled chains per problem.
    #[arg(long, default_value_t = 4)]
    pub chains: u32,
    /// Retries after a wrong answer (told it was wrong), per chain (GSM8K; default 1; the
    /// household's episodes are not retried).
    #[arg(long)]
    pub retries: Option<u32>,
    /// Correct, distinct answers kept per problem, at most.
    #[arg(long, default_value_t = 2)]
    pub per_problem: usize,
    /// Temperature of collection.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Top-p of every sampled answer.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Tokens per answer (GSM8K; default 512) or per action (household; default 64).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Seed of collection, the placebo's draw and the sampled evaluation.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// LoRA rank.
    #[arg(long, default_value_t = 4)]
    pub rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 8.0)]
    pub alpha: f32,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Passes over the training samples (steps: epochs x samples / batch).
    #[arg(long, default_value_t = 2.0)]
    pub epochs: f64,
    /// Samples per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Longest training sequence in tokens (default: 768 for GSM8K, 3072 for a household
    /// episode with its few-shot prompt).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Training backend (`retroformer-train --backend`).
    #[arg(long, default_value = "native")]
    pub backend: String,
    /// Steps between held-out loss measurements.
    #[arg(long, default_value_t = 20)]
    pub eval_every: u64,
    /// Measurements without a new lowest held-out loss before training stops (0: never).
    #[arg(long, default_value_t = 3)]
    pub patience: u64,
    /// The state each adapter is exported from: `lowest-loss` (its lowest held-out loss) or
    /// `last` (the last step trained; the held-out loss is still measured and logged). The
    /// model's own answers have a low loss from the start, so it can stay flat while the
    /// model changes.
    #[arg(long, default_value = KEEP[0], value_parser = KEEP)]
    pub keep: String,
    /// Round 1's LoRA seeds, comma-separated (the first is installed).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub lora_seeds: Vec<u64>,
    /// Do not train the placebo (as many of the model's own answers, drawn regardless of
    /// correctness).
    #[arg(long)]
    pub no_placebo: bool,
    /// The canary promotes a candidate at least as good as the incumbent minus this.
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Test problems skipped before the evaluated ones.
    #[arg(long, default_value_t = 0)]
    pub eval_skip: usize,
    /// Test problems (household: tasks in unseen worlds) evaluated, held out from every
    /// choice.
    #[arg(long, default_value_t = 500)]
    pub eval: usize,
    /// Sampled answers per problem in the sampled evaluation (pass@k; 0: greedy only).
    #[arg(long, default_value_t = 4)]
    pub eval_samples: u32,
    /// Temperature of the sampled evaluation.
    #[arg(long, default_value_t = 0.7)]
    pub eval_temperature: f32,
    /// Arms also evaluated sampled: base, r1-s1, r1-placebo, last (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "base,r1-s1,r1-placebo,last"
    )]
    pub sampled_arms: Vec<String>,
    /// Requests decoded together (capped by memory).
    #[arg(long, default_value_t = retroformer_envs::DEFAULT_PARALLEL)]
    pub parallel: u32,
    /// Another GSM8K train file.
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    /// Another GSM8K test file.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The run's folder (re-running resumes).
    #[arg(long)]
    pub out: PathBuf,
    /// Threads (default: the target profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    pub no_fetch: bool,
}

pub fn improve(profile: &TargetProfile, a: &ImproveArgs) -> Result<()> {
    use retroformer_lab::improve::{run_improve, ImprovePlan, ImproveSettings};
    let household = a.env == "household";
    let plan = ImprovePlan {
        settings: ImproveSettings {
            model: a.model.clone(),
            env: a.env.clone(),
            collect_model: a.collect_model.clone(),
            train_data: a.train_data.clone(),
            eval_data: a.eval_data.clone(),
            dev_problems: a.dev,
            train_problems: a.train,
            chains: a.chains,
            retries: a.retries.unwrap_or(u32::from(!household)),
            per_problem: a.per_problem,
            temperature: a.temperature,
            top_p: a.top_p,
            max_tokens: a.max_tokens.unwrap_or(if household { 64 } else { 512 }),
            seed: a.seed,
            rank: a.rank,
            alpha: a.alpha,
            lr: a.lr,
            epochs: a.epochs,
            batch: a.batch,
            max_len: a.max_len.unwrap_or(if household { 3072 } else { 768 }),
            backend: a.backend.clone(),
            eval_every: a.eval_every,
            patience: a.patience,
            keep: a.keep.clone(),
            lora_seeds: a.lora_seeds.clone(),
            placebo: !a.no_placebo,
            margin: a.margin,
            eval_skip: a.eval_skip,
            eval_problems: a.eval,
            eval_samples: a.eval_samples,
            eval_temperature: a.eval_temperature,
            sampled_arms: a.sampled_arms.clone(),
        },
        rounds: a.rounds,
        parallel: a.parallel,
        out: a.out.clone(),
    };
    let bar = crate::common::FetchBar::default();
    let models = retroformer_lab::BackendSource {
        profile: profile.clone(),
        threads: a.threads,
        fetch: (!a.no_fetch).then_some(&bar as &dyn retroformer::fetch::Progress),
    };
    let mut progress = crate::common::TaskProgress::new(false);
    let report = run_improve(&plan, &models, &mut progress);
    progress.finish();
    for line in report?.summary() {
        println!("{line}");
    }
    println!("results: {}", a.out.join("improve.json").display());
    Ok(())
}
