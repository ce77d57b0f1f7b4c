//! The household world in the registry: Reflexion's ALFWorld loop over generated tasks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::agent::{
    planner_examples, run_episode, HouseholdAgent, HouseholdConfig, HouseholdReflection,
    REFLECTION_TOKENS,
};
use super::{eval_split, train_split, HouseholdEnv, TaskSpec};
use crate::trials::{self, AgentModels};
use crate::{
    BenchEpisode, EnvError, Environment, EvalPlan, Evaluation, Progress, Setting, Spec, TrialEnv,
    TrialEval,
};
use retroformer::agent::reflect::{ChatFrame, ReflectionPrompt};
use retroformer::agent::runner::{run_trials, RunConfig, RunError, TaskInfo, TrialSummary};
use retroformer_llm::{LanguageModel, SessionOptions};

/// The household world.
pub struct Household;

/// Household prompts (instruction, two examples, memory, up to 30 steps) stay under about 3k
/// tokens; the examples differ by task type, so lanes share little.
pub const LANE_TOKENS: u32 = 3072;

impl Environment for Household {
    fn name(&self) -> &'static str {
        "household"
    }

    fn spec(&self) -> Spec {
        use Setting::*;
        Spec {
            about:
                "The household world (ALFWorld's text interface): ReAct with Reflexion over trials.",
            settings: &[
                Strategy,
                Trials,
                Memory,
                MaxSteps,
                Reflector,
                ReflectorSampling,
                ActorSampling,
                Parallel,
                FirstTrialFrom,
                Split,
                Tasks,
                Skip,
                Limit,
            ],
            trials: ("trials", 10),
            strategies: &["reflexion", "none", "placebo"],
            max_steps: 30,
            splits: &["eval", "train"],
            data: "generated worlds (no data file)",
            reflexion: true,
        }
    }

    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError> {
        let split = plan.split.clone().unwrap_or_else(|| "eval".into());
        let specs = match split.as_str() {
            "eval" => eval_split(),
            "train" => train_split(plan.skip + plan.limit.unwrap_or(134)),
            other => {
                return Err(EnvError::setting(
                    "split",
                    format!("{other}: known splits are eval and train"),
                ))
            }
        };
        let origin = PathBuf::from(format!("the {split} split"));
        let specs = trials::select(specs, |s| s.id(), plan, &origin)?;
        let cfg = trials::run_config(plan, &self.spec(), "household", Default::default())?;
        TrialEval::prepare(HouseholdTrials { specs, split }, &self.spec(), cfg, plan)
    }

    fn bench(
        &self,
        model: &dyn LanguageModel,
        opts: &SessionOptions,
        quick: bool,
        progress: &dyn Fn(&str),
    ) -> Result<Vec<BenchEpisode>, EnvError> {
        // Tasks spread evenly over the evaluation split; the examples are the planner's, never
        // the prompt file's, so that every machine sees the same prompt.
        let (n, max_steps) = if quick { (1, 6) } else { (3, 30) };
        let specs = eval_split();
        let cfg = HouseholdConfig {
            max_steps,
            ..HouseholdConfig::default()
        };
        let mut out = Vec::new();
        for i in 0..n {
            let spec = &specs[i * specs.len() / n];
            progress(&format!("household {}", spec.id()));
            let mut env = HouseholdEnv::new(spec);
            let examples = planner_examples(spec.task_type);
            let mut session = model.session(opts)?;
            let t = Instant::now();
            let greedy = retroformer_llm::SamplingParams::greedy();
            let o = run_episode(session.as_mut(), &mut env, &examples, &[], &cfg, &greedy)
                .map_err(RunError::from)?;
            out.push(BenchEpisode {
                task: spec.id(),
                success: o.success,
                calls: o.steps.len() as u32,
                evaluated_tokens: o.steps.iter().map(|s| u64::from(s.evaluated_tokens)).sum(),
                reused_tokens: o.steps.iter().map(|s| u64::from(s.reused_tokens)).sum(),
                generated_tokens: o.steps.iter().map(|s| u64::from(s.generated_tokens)).sum(),
                wall_ms: t.elapsed().as_secs_f64() * 1e3,
            });
        }
        Ok(out)
    }
}

/// What a household evaluation runs: the selected tasks of a split.
struct HouseholdTrials {
    specs: Vec<TaskSpec>,
    split: String,
}

impl TrialEnv for HouseholdTrials {
    fn name(&self) -> &str {
        "household"
    }

    fn split(&self) -> Option<&str> {
        Some(&self.split)
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        HouseholdAgent::tasks(&self.specs)
    }

    fn lane_tokens(&self, _: &RunConfig) -> u32 {
        LANE_TOKENS
    }

    fn reflection(&self, frame: ChatFrame, _: &RunConfig) -> (Box<dyn ReflectionPrompt>, u32) {
        (Box::new(HouseholdReflection::new(frame)), REFLECTION_TOKENS)
    }

    fn title(&self, cfg: &RunConfig) -> String {
        format!("Household, {} ({} tasks)", cfg.strategy, self.specs.len())
    }

    fn run(
        &self,
        models: AgentModels<'_>,
        cfg: &RunConfig,
        out: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Vec<TrialSummary>, EnvError> {
        let household = HouseholdConfig {
            max_steps: cfg.max_steps,
            ..HouseholdConfig::default()
        };
        // The live view (the progress's details) shows one episode's steps at a time.
        // (A mutex, not a cell: the runner's callback may run on the session's thread.)
        let progress = std::sync::Mutex::new(progress);
        let live = lock(&progress).wants_details();
        let mut agent = HouseholdAgent::new(
            &self.specs,
            models.session,
            models.reflector,
            household,
            cfg.memory,
        )
        .sampled_as(cfg)
        .parallel(models.parallel);
        if live {
            agent = agent.on_step(|action, observation| {
                lock(&progress).detail(&format!("> {action}\n{observation}"));
            });
        }
        let tasks = self.tasks();
        let summaries = run_trials(&tasks, &mut agent, cfg, out, &mut |r| {
            let mut p = lock(&progress);
            if live {
                let verdict = if r.success { "solved" } else { "failed" };
                p.detail(&format!("[trial {} {}: {verdict}]", r.trial + 1, r.task_id));
            }
            p.done(&trials::task_line(r));
        })?;
        drop(agent);
        Ok(summaries)
    }
}

/// The progress behind `m`, even if a holder panicked (it only draws).
fn lock<'a, T>(m: &'a std::sync::Mutex<T>) -> std::sync::MutexGuard<'a, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
