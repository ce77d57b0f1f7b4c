//! HotPotQA in the registry: ReAct (or CoT) with Reflexion's strategies over the offline
//! distractor sample.

use std::path::Path;

use super::agent::{hotpotqa_tasks, run, seed_first_trial, HotpotqaSettings};
use super::reflect::{HotpotqaReflection, ReflectionKind};
use super::Question;
use crate::trials::{self, AgentModels};
use crate::{
    EnvError, Environment, EvalPlan, Evaluation, Flag, FlagKind, Progress, Setting, Spec, TrialEnv,
    TrialEval,
};
use retroformer::agent::reflect::{ChatFrame, ReflectionPrompt};
use retroformer::agent::runner::{RunConfig, RunError, TaskInfo, TrialSummary};

/// HotPotQA.
pub struct Hotpotqa;

/// The agents: ReAct, and CoT without or with the gold paragraphs as context.
pub const AGENTS: [&str; 3] = ["react", "cot", "cot-context"];

/// Tokens of a reflection (Reflexion gives its reflector 250).
const REFLECTION_TOKENS: u32 = 250;

/// A lane holds one episode's prompt (at most the 3896-token budget) and its next call, or one
/// reflection prompt (the example and a failed trajectory) and its reply.
const LANE_TOKENS: u32 = 4096;

impl Environment for Hotpotqa {
    fn name(&self) -> &'static str {
        "hotpotqa"
    }

    fn spec(&self) -> Spec {
        use Setting::*;
        Spec {
            about:
                "HotPotQA, offline: ReAct with Reflexion strategies over the distractor paragraphs.",
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
                Resume,
                Data,
                Tasks,
                Skip,
                Limit,
            ],
            trials: ("trials", 5),
            strategies: &[
                "reflexion",
                "none",
                "last-attempt",
                "last-attempt-and-reflexion",
                "placebo",
            ],
            max_steps: 6,
            splits: &[],
            data: "the bundled 100-question distractor sample of the Reflexion paper",
            reflexion: true,
        }
    }

    fn flags(&self) -> &'static [Flag] {
        &[
            Flag {
                name: "agent",
                help: "Agent: react, cot (no context) or cot-context (gold paragraphs as context).",
                kind: FlagKind::Value {
                    default: Some("react"),
                },
            },
            Flag {
                name: "global-docstore",
                help: "Search all questions' pages (about 1000) instead of each question's ten.",
                kind: FlagKind::Switch,
            },
        ]
    }

    fn prepare(&self, plan: &EvalPlan) -> Result<Box<dyn Evaluation>, EnvError> {
        let agent: String = plan.options.or("agent", "react".to_string())?;
        if !AGENTS.contains(&agent.as_str()) {
            return Err(EnvError::setting(
                "agent",
                format!("{agent}: known agents are {}", AGENTS.join(", ")),
            ));
        }
        let settings = HotpotqaSettings {
            global_docstore: plan.options.switch("global-docstore"),
            ..HotpotqaSettings::default()
        };
        let cfg = trials::run_config(plan, &self.spec(), &agent, settings.into_env())?;
        if !AGENTS.contains(&cfg.agent.as_str()) {
            return Err(EnvError::setting(
                "resume",
                format!(
                    "{}: the run's agent {} is not HotPotQA's",
                    plan.out.display(),
                    cfg.agent
                ),
            ));
        }
        let source = super::source(plan.data.as_deref());
        let questions = trials::select(
            super::load_first(source.clone(), trials::row_cap(plan))?,
            |q| q.id.clone(),
            plan,
            &source.path(),
        )?;
        TrialEval::prepare(HotpotqaTrials { questions }, &self.spec(), cfg, plan)
    }

    fn bench(
        &self,
        model: &dyn retroformer_llm::LanguageModel,
        opts: &retroformer_llm::SessionOptions,
        quick: bool,
        progress: &dyn Fn(&str),
    ) -> Result<Vec<crate::BenchEpisode>, EnvError> {
        if quick {
            return Ok(Vec::new());
        }
        let questions = super::load(super::source(None))?;
        let mut out = Vec::new();
        // ReAct on the first two questions, each with its own docstore.
        for q in questions.iter().take(2) {
            progress(&format!("hotpotqa {}", q.id));
            let store = super::Docstore::for_question(q);
            let mut ep = super::Episode::new(q, &store);
            let mut session = model.session(opts)?;
            let t = std::time::Instant::now();
            let o = super::react::run_episode(
                model,
                session.as_mut(),
                &mut ep,
                "",
                0,
                &super::react::ReactConfig::default(),
                &retroformer_llm::SamplingParams::greedy(),
            )
            .map_err(retroformer::agent::runner::RunError::from)?;
            let steps = &o.trajectory.steps;
            out.push(crate::BenchEpisode {
                task: q.id.clone(),
                success: ep.success(),
                calls: 2 * steps.len() as u32,
                evaluated_tokens: steps.iter().map(|s| u64::from(s.evaluated_tokens)).sum(),
                reused_tokens: steps.iter().map(|s| u64::from(s.reused_tokens)).sum(),
                generated_tokens: steps.iter().map(|s| u64::from(s.generated_tokens)).sum(),
                wall_ms: t.elapsed().as_secs_f64() * 1e3,
            });
        }
        Ok(out)
    }
}

/// What a HotPotQA evaluation runs: the selected questions.
struct HotpotqaTrials {
    questions: Vec<Question>,
}

impl TrialEnv for HotpotqaTrials {
    fn name(&self) -> &str {
        "hotpotqa"
    }

    fn noun(&self) -> &'static str {
        "questions"
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        hotpotqa_tasks(&self.questions)
    }

    fn lane_tokens(&self, _: &RunConfig) -> u32 {
        LANE_TOKENS
    }

    fn reflection(&self, frame: ChatFrame, cfg: &RunConfig) -> (Box<dyn ReflectionPrompt>, u32) {
        let kind = ReflectionKind::of_agent(&cfg.agent);
        (
            Box::new(HotpotqaReflection { frame, kind }),
            REFLECTION_TOKENS,
        )
    }

    fn title(&self, cfg: &RunConfig) -> String {
        format!(
            "HotPotQA, {} + {} ({} questions)",
            cfg.agent,
            cfg.strategy,
            self.questions.len()
        )
    }

    fn seed_first_trial(
        &self,
        from: &Path,
        to: &Path,
        cfg: &RunConfig,
        tasks: &[TaskInfo],
    ) -> Result<usize, RunError> {
        seed_first_trial(from, to, cfg, tasks)
    }

    fn run(
        &self,
        models: AgentModels<'_>,
        cfg: &RunConfig,
        out: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Vec<TrialSummary>, EnvError> {
        Ok(run(&self.questions, models, cfg, out, &mut |r| {
            progress.done(&trials::task_line(r))
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retroformer::agent::Strategy;

    #[test]
    fn every_strategy_hotpotqa_offers_is_one_the_agent_core_knows() {
        for s in Hotpotqa.spec().strategies {
            assert!(Strategy::parse(s).is_some(), "{s}");
        }
        assert_eq!(Hotpotqa.spec().strategies[0], "reflexion");
    }
}
