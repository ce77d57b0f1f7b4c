//! `gsm8k-retry` in the registry: Reflexion's trials on GSM8K (answer, be told it is wrong,
//! read the reflections, answer again), with the train split to learn from and the test split
//! to evaluate on.

use std::path::PathBuf;

use super::retry::{self, RetryModels, RetryReflection, RetrySettings};
use super::MathProblem;
use crate::trials;
use crate::{
    EnvError, Environment, EvalPlan, EvalReport, Evaluation, Flag, FlagKind, Models, Needs,
    Progress, Setting, Spec,
};
use retroformer::agent::reflect::{ChatFrame, LlmReflector};
use retroformer::agent::runner::{seed_first_trial, RunConfig};

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
        RetrySettings::of(&cfg).map_err(EnvError::Run)?;
        let cap = trials::row_cap(plan);
        let data = plan.data.as_deref();
        let problems = super::env::load_first(super::Dataset::Gsm8k, data, &split, cap)?;
        let origin = plan
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("the bundled GSM8K {split} split")));
        let problems = trials::select(problems, |p| p.id.clone(), plan, &origin)?;
        Ok(Box::new(RetryEval {
            cfg,
            problems,
            split,
            parallel: trials::parallel(plan)?,
            first_trial_from: plan.first_trial_from.clone(),
            out: plan.out.clone(),
        }))
    }
}

struct RetryEval {
    cfg: RunConfig,
    problems: Vec<MathProblem>,
    split: String,
    parallel: u32,
    first_trial_from: Option<PathBuf>,
    out: PathBuf,
}

impl Evaluation for RetryEval {
    fn needs(&self) -> Needs {
        Needs::of(&self.cfg)
    }

    fn run(
        self: Box<Self>,
        models: &Models<'_>,
        progress: &mut dyn Progress,
    ) -> Result<EvalReport, EnvError> {
        let cfg = &self.cfg;
        let settings = RetrySettings::of(cfg).map_err(EnvError::Run)?;
        let (lanes, per_lane) = models.lanes(
            trials::in_flight(self.parallel, self.problems.len()),
            lane_tokens(settings.max_tokens),
        );
        let mut session = models.session(models.actor, lanes, per_lane)?;
        let mut reflector = LlmReflector::new(
            models.reflector_session(lanes, per_lane, trials::reflects(cfg))?,
            Box::new(RetryReflection {
                frame: ChatFrame::of(models.reflector),
            }),
            REFLECTION_TOKENS,
        )
        .with_sampling(cfg.reflector_sampling());
        progress.note(&format!(
            "gsm8k-retry: {} problems ({} split), {} trials, strategy {}, out {}",
            self.problems.len(),
            self.split,
            cfg.trials,
            cfg.strategy,
            self.out.display()
        ));
        let tasks = retry::tasks(&self.problems);
        if let Some(from) = &self.first_trial_from {
            let n = seed_first_trial(from, &self.out, cfg, &tasks)?;
            if n > 0 {
                progress.note(&format!(
                    "trial 1 of {n} problems taken from {}",
                    from.display()
                ));
            }
        }
        progress.total(tasks.len() as u64 * u64::from(cfg.trials));
        let summaries = retry::run(
            &self.problems,
            RetryModels {
                actor: models.actor,
                session: session.as_mut(),
                reflector: &mut reflector,
                parallel: lanes as usize,
            },
            cfg,
            &self.out,
            &mut |r| progress.done(&trials::task_line(r)),
        )?;
        Ok(trials::report(
            &format!(
                "GSM8K reflect and retry, {} ({} problems)",
                cfg.strategy,
                self.problems.len()
            ),
            cfg,
            &summaries,
            &self.out,
        ))
    }
}
