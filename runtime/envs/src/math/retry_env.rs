//! `gsm8k-retry` in the registry: Reflexion's trials on GSM8K (answer, be told it is wrong,
//! read the reflections, answer again), with the train split to learn from and the test split
//! to evaluate on.

use std::path::{Path, PathBuf};

use super::retry::{self, RetryReflection, RetrySettings};
use super::MathProblem;
use crate::trials::{self, AgentModels};
use crate::{
    EnvError, Environment, EvalPlan, Evaluation, Flag, FlagKind, Progress, Setting, Spec, TrialEnv,
    TrialEval,
};
use retroformer::agent::reflect::{ChatFrame, ReflectionPrompt};
use retroformer::agent::runner::{RunConfig, TaskInfo, TrialSummary};

/// GSM8K with reflect-and-retry trials.
pub struct Gsm8kRetry;

/// Tokens of a reflection.
const REFLECTION_TOKENS: u32 = 200;

/// A lane holds an attempt (instruction, example, question, rejected answers and up to three
/// reflections: ~1100 tokens, and the answer) or a reflection (instruction, examples, the
/// attempt cut to ~300 tokens, the reply).
fn lane_tokens(max_tokens: u32) -> u32 {
    1200u32.saturating_add(max_tokens).max(1400)
}

const FLAGS: &[Flag] = &[Flag {
    name: "max-tokens",
    help: "The actor's tokens per answer.",
    kind: FlagKind::Value {
        default: Some("400"),
    },
}];

impl Environment for Gsm8kRetry {
    fn name(&self) -> &'static str {
        "gsm8k-retry"
    }

    fn spec(&self) -> Spec {
        use Setting::*;
        Spec {
            about: "GSM8K, reflect and retry: answer, be told it is wrong, read the reflections, answer again.",
            settings: &[
                Strategy,
                Trials,
                Memory,
                Reflector,
                ReflectorSampling,
                ActorSampling,
                Parallel,
                FirstTrialFrom,
                Resume,
                Data,
                Split,
                Tasks,
                Skip,
                Limit,
            ],
            trials: ("trials", 2),
            strategies: &["reflexion", "none", "placebo"],
            max_steps: 1,
            splits: &["test", "train"],
            data: "the bundled GSM8K splits (test 1319, train 7473 problems)",
            reflexion: true,
        }
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError> {
        let max_tokens: u32 = plan.options.or("max-tokens", retry::DEFAULT_MAX_TOKENS)?;
        if max_tokens == 0 {
            return Err(EnvError::setting("max-tokens", "must be at least 1"));
        }
        let split = plan.split.clone().unwrap_or_else(|| "test".into());
        if split != "test" && split != "train" {
            return Err(EnvError::setting(
                "split",
                format!("{split}: known splits are test and train"),
            ));
        }
        let env = RetrySettings { max_tokens }.into_env();
        let cfg = trials::run_config(plan, &self.spec(), "gsm8k-retry", env)?;
        let settings = RetrySettings::of(&cfg).map_err(EnvError::Run)?;
        let cap = trials::row_cap(plan);
        let data = plan.data.as_deref();
        let problems = super::env::load_first(super::Dataset::Gsm8k, data, &split, cap)?;
        let origin = plan
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("the bundled GSM8K {split} split")));
        let problems = trials::select(problems, |p| p.id.clone(), plan, &origin)?;
        let env = RetryTrials {
            problems,
            split,
            max_tokens: settings.max_tokens,
        };
        TrialEval::prepare(env, &self.spec(), cfg, plan)
    }
}

/// What a gsm8k-retry evaluation runs: the selected problems of a split.
struct RetryTrials {
    problems: Vec<MathProblem>,
    split: String,
    /// The actor's tokens per answer (the run's settings, saved ones on `--resume`).
    max_tokens: u32,
}

impl TrialEnv for RetryTrials {
    fn name(&self) -> &str {
        "gsm8k-retry"
    }

    fn noun(&self) -> &'static str {
        "problems"
    }

    fn split(&self) -> Option<&str> {
        Some(&self.split)
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        retry::tasks(&self.problems)
    }

    fn lane_tokens(&self, _: &RunConfig) -> u32 {
        lane_tokens(self.max_tokens)
    }

    fn reflection(&self, frame: ChatFrame, _: &RunConfig) -> (Box<dyn ReflectionPrompt>, u32) {
        (Box::new(RetryReflection { frame }), REFLECTION_TOKENS)
    }

    fn title(&self, cfg: &RunConfig) -> String {
        format!(
            "GSM8K reflect and retry, {} ({} problems)",
            cfg.strategy,
            self.problems.len()
        )
    }

    fn run(
        &self,
        models: AgentModels<'_>,
        cfg: &RunConfig,
        out: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Vec<TrialSummary>, EnvError> {
        Ok(retry::run(&self.problems, models, cfg, out, &mut |r| {
            progress.done(&trials::task_line(r))
        })?)
    }
}
