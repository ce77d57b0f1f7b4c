//! ReAct or CoT on HotPotQA as the trial runner's agent: what a trial is told about earlier
//! trials, the episodes (several at once through continuous batching), and the reflections.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::context::context_for;
use super::cot::CotRun;
use super::react::{EpisodeOutcome, EpisodeRun, ReactConfig};
use super::{Docstore, Episode, Question};
use retroformer::agent::reflect::{Failure, Reflection};
use retroformer::agent::runner::{
    attempt_each, run_trials, Attempt, AttemptDone, RunConfig, RunError, TaskInfo, TaskResult,
    TrialAgent, TrialSummary,
};
use retroformer::agent::{AgentError, Strategy};
use retroformer_core::memory::ReflectionMemory;
use retroformer_llm::{GenerateRequest, Generation, LanguageModel};

/// HotPotQA's own settings of a run, saved in `run.json` beside the runner's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotpotqaSettings {
    /// Search all questions' pages instead of the question's own ten.
    pub global_docstore: bool,
    /// ReAct prompt budget in tokens.
    pub max_prompt_tokens: usize,
    /// Token budget of a previous attempt shown to the next trial.
    pub last_attempt_tokens: usize,
}

impl Default for HotpotqaSettings {
    /// As Reflexion: a prompt budget of about 3900 tokens, a previous attempt of 1600.
    fn default() -> Self {
        Self {
            global_docstore: false,
            max_prompt_tokens: 3896,
            last_attempt_tokens: 1600,
        }
    }
}

impl HotpotqaSettings {
    /// The settings a run records (a missing one reads as zero, as in runs that predate it).
    pub fn of(cfg: &RunConfig) -> Result<Self, RunError> {
        let mut map = serde_json::Map::new();
        for key in [
            "global_docstore",
            "max_prompt_tokens",
            "last_attempt_tokens",
        ] {
            let zero = if key == "global_docstore" {
                serde_json::Value::Bool(false)
            } else {
                serde_json::Value::from(0)
            };
            map.insert(key.into(), cfg.env.get(key).cloned().unwrap_or(zero));
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| RunError::Config(format!("run settings: {e}")))
    }

    /// These settings as a run's environment settings.
    pub fn into_env(self) -> std::collections::BTreeMap<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => unreachable!("a struct serialises to an object"),
        }
    }
}

/// The tasks of HotPotQA `questions`, as the trial loop knows them.
pub fn hotpotqa_tasks(questions: &[Question]) -> Vec<TaskInfo> {
    questions
        .iter()
        .map(|q| TaskInfo {
            id: q.id.clone(),
            question: q.question.clone(),
            gold: q.answer.clone(),
        })
        .collect()
}

/// Starts a run in `to` from the first trial of the run in `from`
/// ([`retroformer::agent::runner::seed_first_trial`]); refused with a global docstore, whose
/// pages depend on the whole question set, which a run's settings do not record.
pub fn seed_first_trial(
    from: &Path,
    to: &Path,
    cfg: &RunConfig,
    tasks: &[TaskInfo],
) -> Result<usize, RunError> {
    if HotpotqaSettings::of(cfg)?.global_docstore {
        return Err(RunError::Config(
            "--first-trial-from cannot be used with --global-docstore (the first trial's searches depend on the whole question set)".into(),
        ));
    }
    retroformer::agent::runner::seed_first_trial(from, to, cfg, tasks)
}

/// The models of a HotPotQA run.
pub type HotpotqaModels<'a> = crate::trials::AgentModels<'a>;

/// Runs (or resumes) `cfg.trials` trials over `questions`, writing into `out`. `on_task` is
/// called after every task (for progress display).
pub fn run(
    questions: &[Question],
    models: HotpotqaModels<'_>,
    cfg: &RunConfig,
    out: &Path,
    on_task: &mut (dyn FnMut(&TaskResult) + Send),
) -> Result<Vec<TrialSummary>, RunError> {
    let strategy = cfg.parsed_strategy()?;
    let settings = HotpotqaSettings::of(cfg)?;
    if !["react", "cot", "cot-context"].contains(&cfg.agent.as_str()) {
        return Err(RunError::Config(format!(
            "unknown agent '{}'; known: react, cot, cot-context",
            cfg.agent
        )));
    }
    let empty_memory = ReflectionMemory::new(cfg.memory)
        .map_err(|e| RunError::Config(format!("--memory: {e}")))?;
    let tasks = hotpotqa_tasks(questions);
    let mut agent = HotpotqaAgent {
        questions,
        global: settings
            .global_docstore
            .then(|| Docstore::global(questions)),
        react: ReactConfig {
            max_steps: cfg.max_steps,
            max_prompt_tokens: settings.max_prompt_tokens,
            ..ReactConfig::default()
        },
        last_attempt_tokens: settings.last_attempt_tokens,
        strategy,
        empty_memory,
        agents: models,
        cfg,
    };
    run_trials(&tasks, &mut agent, cfg, out, on_task)
}

/// ReAct or CoT on HotPotQA.
struct HotpotqaAgent<'a, 'b> {
    questions: &'a [Question],
    global: Option<Docstore>,
    react: ReactConfig,
    strategy: Strategy,
    empty_memory: ReflectionMemory,
    last_attempt_tokens: usize,
    agents: HotpotqaModels<'b>,
    cfg: &'a RunConfig,
}

impl HotpotqaAgent<'_, '_> {
    /// What a trial at task `i` is told about its earlier trials.
    fn context(&self, i: usize, earlier: &[TaskResult]) -> String {
        let q = &self.questions[i];
        let mut memory = self.empty_memory.clone();
        for refl in earlier.iter().filter_map(|r| r.reflection.as_ref()) {
            memory.push(refl.text.clone());
        }
        let actor = self.agents.actor;
        let count = |s: &str| {
            actor
                .tokenize(s, false, false)
                .map(|t| t.len())
                .unwrap_or(usize::MAX)
        };
        context_for(
            self.strategy,
            &q.question,
            &memory,
            earlier.last().map(|r| r.scratchpad.as_str()),
            &rejected_answers(earlier),
            &count,
            self.last_attempt_tokens,
        )
    }
}

/// The answers earlier trials gave and were told were wrong, oldest first, each once.
fn rejected_answers(earlier: &[TaskResult]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    earlier
        .iter()
        .filter(|r| !r.success)
        .filter_map(|r| r.answer.as_deref())
        .map(str::trim)
        .filter(|a| !a.is_empty() && seen.insert(super::normalize_answer(a)))
        .map(str::to_string)
        .collect()
}

/// An attempt from an episode's outcome and its answer.
fn attempt_from(outcome: super::react::EpisodeOutcome, answer: Option<&str>) -> Attempt {
    Attempt {
        answer: answer.map(str::to_string),
        success: outcome.trajectory.success,
        halted: outcome.halted,
        episode_return: outcome.trajectory.episode_return,
        steps: outcome.trajectory.steps,
        scratchpad: outcome.scratchpad,
    }
}

impl TrialAgent for HotpotqaAgent<'_, '_> {
    /// Success is the given answer's exact match with the gold one.
    fn judge(&self, i: usize, saved: &TaskResult) -> Option<bool> {
        let q = self.questions.get(i)?;
        Some(
            saved
                .answer
                .as_deref()
                .is_some_and(|a| super::exact_match(a, &q.answer)),
        )
    }

    fn parallelism(&self) -> usize {
        self.agents.parallel.max(1)
    }

    fn attempt_stream(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
        done: &mut AttemptDone<'_>,
    ) -> Result<(), RunError> {
        if self.parallelism() <= 1 || tasks.len() <= 1 {
            return attempt_each(self, tasks, trial, done);
        }
        let own: Vec<Option<Docstore>> = tasks
            .iter()
            .map(|(i, _)| {
                self.global
                    .is_none()
                    .then(|| Docstore::for_question(&self.questions[*i]))
            })
            .collect();
        let mut episodes: Vec<Episode<'_>> = tasks
            .iter()
            .zip(&own)
            .map(|((i, _), store)| {
                let store = store
                    .as_ref()
                    .or(self.global.as_ref())
                    .expect("a docstore: the task's own or the global one");
                Episode::new(&self.questions[*i], store)
            })
            .collect();
        let mut runs: Vec<Option<Run>> = tasks
            .iter()
            .zip(&episodes)
            .map(|((i, earlier), ep)| Some(self.start(*i, earlier, ep, trial)))
            .collect();
        let actor = self.agents.actor;
        let react = &self.react;
        // Every episode is a chain of requests: each reply asks for the next Thought or
        // Action, which extends the same prompt (so it continues in its lane, on its KV).
        // An episode is saved as soon as it ends.
        retroformer::agent::run_chains::<RunError>(&mut *self.agents.session, runs.len(), |k, g| {
            let run = runs[k]
                .as_mut()
                .expect("a chain asks nothing after its end");
            // A refused request fails the run, as it would one request at a time.
            if let Some(g) = g.transpose()? {
                run.absorb(&mut episodes[k], &g);
            }
            let next = run.request(actor, react)?;
            if next.is_none() {
                let run = runs[k].take().expect("the chain's run");
                let outcome = run.finish(&mut episodes[k]);
                done(k, attempt_from(outcome, episodes[k].answer()))?;
            }
            Ok(next)
        })
    }

    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        trial: u32,
    ) -> Result<Attempt, RunError> {
        let q = &self.questions[i];
        let own;
        let store = match &self.global {
            Some(g) => g,
            None => {
                own = Docstore::for_question(q);
                &own
            }
        };
        let mut episode = Episode::new(q, store);
        let mut run = self.start(i, earlier, &episode, trial);
        while let Some(req) = run.request(self.agents.actor, &self.react)? {
            let g = self.agents.session.generate(&req, &mut |_| true)?;
            run.absorb(&mut episode, &g);
        }
        let outcome = run.finish(&mut episode);
        Ok(attempt_from(outcome, episode.answer()))
    }

    fn reflect(
        &mut self,
        i: usize,
        attempt: &Attempt,
        _earlier: &[TaskResult],
    ) -> Result<Reflection, RunError> {
        let task = self.reflection_task(i);
        Ok(self.agents.reflector.reflect(&Failure {
            task: &task,
            trajectory: &attempt.scratchpad,
            episode_return: attempt.episode_return,
            earlier: &[],
        })?)
    }

    fn reflect_many(
        &mut self,
        failed: &[(usize, &Attempt, &[TaskResult])],
    ) -> Result<Vec<Reflection>, RunError> {
        let tasks: Vec<String> = failed
            .iter()
            .map(|(i, _, _)| self.reflection_task(*i))
            .collect();
        let items: Vec<Failure<'_>> = failed
            .iter()
            .zip(&tasks)
            .map(|((_, a, _), task)| Failure {
                task,
                trajectory: &a.scratchpad,
                episode_return: a.episode_return,
                earlier: &[],
            })
            .collect();
        Ok(self.agents.reflector.reflect_many(&items)?)
    }
}

/// One HotPotQA episode in a stream: ReAct's or chain of thought's.
enum Run {
    React(EpisodeRun),
    Cot(CotRun),
}

impl Run {
    fn request(
        &mut self,
        actor: &dyn LanguageModel,
        react: &ReactConfig,
    ) -> Result<Option<GenerateRequest>, AgentError> {
        match self {
            Run::React(r) => r.request(actor, react),
            Run::Cot(r) => Ok(r.request()),
        }
    }

    fn absorb(&mut self, episode: &mut Episode<'_>, g: &Generation) {
        match self {
            Run::React(r) => r.absorb(episode, g),
            Run::Cot(r) => r.absorb(g),
        }
    }

    fn finish(self, episode: &mut Episode<'_>) -> EpisodeOutcome {
        match self {
            Run::React(r) => r.finish(episode),
            Run::Cot(r) => r.finish(episode),
        }
    }
}

impl HotpotqaAgent<'_, '_> {
    /// Task `i`'s episode on `episode` in `trial`, told what its `earlier` results say.
    fn start(&self, i: usize, earlier: &[TaskResult], episode: &Episode<'_>, trial: u32) -> Run {
        let context = self.context(i, earlier);
        let sampling = self.cfg.actor_sampling(&self.questions[i].id, trial);
        match self.cfg.agent.as_str() {
            "react" => Run::React(EpisodeRun::start(episode, &context, trial, sampling)),
            agent => Run::Cot(CotRun::start(
                episode,
                agent == "cot-context",
                &context,
                trial,
                self.react.max_tokens_per_call,
                &sampling,
            )),
        }
    }

    /// What the reflection prompt shows as question `i`'s task: the question for ReAct; for
    /// chain of thought as the published prompt shows it, after the context where it had one.
    fn reflection_task(&self, i: usize) -> String {
        let q = &self.questions[i];
        match self.cfg.agent.as_str() {
            "cot" => super::reflect::cot_task(None, &q.question),
            "cot-context" => {
                super::reflect::cot_task(Some(&super::cot::gold_context(q)), &q.question)
            }
            _ => q.question.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
