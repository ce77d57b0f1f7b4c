//! The trial runner: N trials over a task set, Reflexion style, crash-safe.
//!
//! Layout of the output folder:
//! * `run.json`: the settings; a resumed run must use the same ones.
//! * `trial-NN/TASK.json`: one result per attempted task, written atomically as soon as its
//!   episode ends, and again with its reflection once the trial's reflections are written.
//!   These files are the single source of truth.
//! * `trial-NN.json`: the summary of trial NN, rewritten when the trial ends.
//! * `records.jsonl`: the Retroformer rating data (task, trial i, reflection prompt x,
//!   reflection y, G_i, G_{i+1}), regenerated from the task files after every trial.
//!
//! Resuming after a crash or `kill -9` skips every task whose file exists (a failure saved
//! without its reflection gets it then); a task solved in an earlier trial is not retried. An
//! interrupted task is rerun from its start (greedy decoding makes it deterministic).
//!
//! The runner knows no environment: an environment's agent plugs in as a [`TrialAgent`], and
//! its own settings travel in [`RunConfig::env`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::reflect::Reflection;
use super::{AgentError, Strategy};
use retroformer_core::trajectory::Step;

/// Format version of every file the runner writes.
pub const FORMAT_VERSION: u32 = 1;

/// Settings of a run (saved as `run.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The agent, as the environment names it (HotPotQA: `react`, `cot` or `cot-context`;
    /// household: `household`).
    #[serde(default = "default_agent")]
    pub agent: String,
    /// Number of trials.
    pub trials: u32,
    /// What a trial is told about earlier ones.
    pub strategy: String,
    /// Reflection memory capacity.
    pub memory: usize,
    /// Step limit of an episode.
    pub max_steps: u32,
    /// Actor model name (for the record; not checked on resume).
    pub actor: String,
    /// Reflector model name (for the record).
    pub reflector: String,
    /// The reflector's LoRA adapter (a file, or `active` for the store's active one), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflector_adapter: Option<String>,
    /// The reflector's sampling temperature (0: greedy). Sampled reflections give a collection
    /// several rated reflections of one failure (runs that share a first trial, each with its
    /// own seed).
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub reflector_temperature: f32,
    /// The seed of the reflector's sampler (used when the temperature is above 0).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub reflector_seed: u32,
    /// The actor's sampling temperature (0: greedy, every trial the same as the one before
    /// when nothing else changes). Sampled, a retry differs from the attempt before without
    /// any information: the baseline a reflection must beat.
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub actor_temperature: f32,
    /// The actor's nucleus (top-p) threshold when sampled (0 or 1: off).
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub actor_top_p: f32,
    /// The seed from which each task's and trial's actor seed is derived ([`actor_seed`]):
    /// two runs with the same seed sample the same first trial, and each retry has a seed of
    /// its own.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub actor_seed: u32,
    /// The environment's own settings, saved beside the others (HotPotQA: `global_docstore`,
    /// `max_prompt_tokens`, `last_attempt_tokens`). A setting whose value is zero, false or
    /// empty is the same as one that is absent, so settings added later leave older runs
    /// resumable.
    #[serde(flatten)]
    pub env: BTreeMap<String, serde_json::Value>,
}

fn is_zero_f32(x: &f32) -> bool {
    *x == 0.0
}

fn is_zero_u32(x: &u32) -> bool {
    *x == 0
}

impl RunConfig {
    /// The settings with the environment's zero-valued ones left out (see [`RunConfig::env`]).
    fn normalized(&self) -> RunConfig {
        let zero = |v: &serde_json::Value| match v {
            serde_json::Value::Null => true,
            serde_json::Value::Bool(b) => !b,
            serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
            serde_json::Value::String(s) => s.is_empty(),
            _ => false,
        };
        let mut c = self.clone();
        c.env.retain(|_, v| !zero(v));
        c
    }

    /// The strategy, parsed.
    pub fn parsed_strategy(&self) -> Result<Strategy, RunError> {
        Strategy::parse(&self.strategy).ok_or_else(|| {
            RunError::Config(format!(
                "unknown strategy '{}'; known: {}",
                self.strategy,
                Strategy::NAMES.join(", ")
            ))
        })
    }

    /// How the reflector samples: greedy, or at `reflector_temperature` with `reflector_seed`
    /// within the nucleus (top-p 0.95, min-p 0.05: a small model's whole vocabulary is mostly
    /// noise).
    pub fn reflector_sampling(&self) -> retroformer_llm::SamplingParams {
        if self.reflector_temperature <= 0.0 {
            return retroformer_llm::SamplingParams::greedy();
        }
        retroformer_llm::SamplingParams {
            temperature: self.reflector_temperature,
            top_p: 0.95,
            min_p: 0.05,
            seed: self.reflector_seed,
            ..Default::default()
        }
    }
}

impl RunConfig {
    /// How the actor samples in `trial` of `task_id`: greedy, or at `actor_temperature` with
    /// `actor_top_p` and a seed of that task and trial. An agent that calls the model several
    /// times in an episode adds the step to the seed.
    pub fn actor_sampling(&self, task_id: &str, trial: u32) -> retroformer_llm::SamplingParams {
        if self.actor_temperature <= 0.0 {
            return retroformer_llm::SamplingParams::greedy();
        }
        retroformer_llm::SamplingParams {
            temperature: self.actor_temperature,
            top_p: if self.actor_top_p > 0.0 {
                self.actor_top_p
            } else {
                1.0
            },
            seed: actor_seed(self.actor_seed, task_id, trial),
            ..Default::default()
        }
    }
}

/// The actor's seed for `trial` of `task_id` in a run seeded with `seed`: the same in every run
/// with that seed, different across tasks and trials (and never 0, llama.cpp's "random").
pub fn actor_seed(seed: u32, task_id: &str, trial: u32) -> u32 {
    let key = format!("{seed}\u{1f}{task_id}\u{1f}{trial}");
    let s = retroformer_core::rng::seed_from(key.as_bytes()) as u32;
    s.max(1)
}

fn default_agent() -> String {
    "react".into()
}

/// One task's attempt in one trial (`trial-NN/TASK.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The task id.
    pub task_id: String,
    /// The trial, from 0.
    pub trial: u32,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold: String,
    /// The answer given, if any.
    pub answer: Option<String>,
    /// Solved by exact match.
    pub success: bool,
    /// Ended without an answer.
    pub halted: bool,
    /// Episode return G_i.
    pub episode_return: f32,
    /// The steps with their token counts.
    pub steps: Vec<Step>,
    /// The Thought/Action/Observation lines.
    pub scratchpad: String,
    /// The reflection written after this failed trial, if the strategy reflects.
    pub reflection: Option<Reflection>,
    /// Wall time of the task, milliseconds.
    pub wall_ms: f64,
}

/// The summary of one trial (`trial-NN.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSummary {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The trial.
    pub trial: u32,
    /// Tasks in the set.
    pub tasks: usize,
    /// Tasks attempted in this trial (not solved before).
    pub attempted: usize,
    /// Tasks solved in this trial.
    pub solved_now: usize,
    /// Tasks solved in this or an earlier trial.
    pub solved_total: usize,
    /// `solved_total / tasks`.
    pub success_rate: f64,
    /// Prompt tokens evaluated in this trial.
    pub evaluated_tokens: u64,
    /// Prompt tokens reused from the KV cache in this trial.
    pub reused_tokens: u64,
    /// Tokens generated in this trial.
    pub generated_tokens: u64,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The agent or the LLM failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A result file could not be written or read.
    #[error(transparent)]
    File(#[from] super::files::FileError),
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
}

impl From<retroformer_llm::LlmError> for RunError {
    fn from(e: retroformer_llm::LlmError) -> Self {
        Self::Agent(AgentError::Llm(e))
    }
}

use super::files::{file_err, read_json, write_json};

mod folder;
mod records;
mod shown;

pub use folder::{file_stem, load_task, read_run, task_path, trial_dir, RunLabel};
use records::write_records;
pub use records::{describe_reflector, reflector_info};
#[cfg(test)]
use shown::placebo_view;
use shown::shown_history;

/// Starts a run in `to` from the first trial of the run in `from`, so that two runs that
/// differ only in their reflector (a canary's incumbent and candidate, a loop's rounds) share
/// one first trial: no reflection exists before it, so the reflector cannot change it, and
/// sharing it leaves the reflections as the runs' only difference.
///
/// Checked before anything is written: `from` holds a run with `cfg`'s settings apart from
/// `trials`, `strategy`, `memory` and the reflector's settings; each of `tasks` found there has the same
/// question and gold answer. (An environment whose first trial depends on more than its
/// settings and tasks refuses to be seeded before it calls this.) Then `to` is claimed for
/// `cfg` (`run.json`; a folder holding another run is refused, as [`run_trials`] would) and
/// each trial-1 result of `from` that `to` lacks is copied without its reflection (the run in
/// `to` writes its own before its second trial). Tasks `from` lacks are attempted as usual, so
/// a kill while copying leaves a folder that resumes. The copies keep their token counts and
/// wall times, which were spent by the run in `from`. Returns how many results were copied.
pub fn seed_first_trial(
    from: &Path,
    to: &Path,
    cfg: &RunConfig,
    tasks: &[TaskInfo],
) -> Result<usize, RunError> {
    let src = from.join("run.json");
    let Some(saved) = read_json::<RunConfig>(&src)? else {
        return Err(RunError::Config(format!(
            "{}: no run there to take the first trial from",
            src.display()
        )));
    };
    // The actor's sampling must match: the first trial is sampled with it. The strategy and
    // the memory may differ: no strategy shows anything before the second trial, which is
    // what lets an experiment's arms (none, Reflexion, placebo) share one first trial.
    let comparable = |c: &RunConfig| RunConfig {
        trials: 0,
        strategy: String::new(),
        memory: 0,
        reflector: String::new(),
        reflector_adapter: None,
        reflector_temperature: 0.0,
        reflector_seed: 0,
        ..c.normalized()
    };
    if comparable(&saved) != comparable(cfg) {
        let differ = super::files::setting_differences(
            &serde_json::to_value(comparable(&saved)).unwrap_or_default(),
            &serde_json::to_value(comparable(cfg)).unwrap_or_default(),
            "here",
        );
        return Err(RunError::Config(format!(
            "{}: its first trial was run with other settings ({}); only trials, the strategy, the memory and the reflector may differ",
            src.display(),
            differ.join(", ")
        )));
    }
    let mut found = Vec::new();
    for task in tasks {
        let Some(r) = load_task(from, 0, &task.id)? else {
            continue;
        };
        if r.question != task.question || r.gold != task.gold {
            return Err(RunError::Config(format!(
                "{}: task {} there has another question or gold answer than here",
                task_path(from, 0, &task.id).display(),
                task.id
            )));
        }
        found.push(r);
    }
    if let Some(there) = read_json::<RunConfig>(&to.join("run.json"))? {
        if !same_run(&there, cfg) {
            return Err(RunError::Config(super::files::other_settings(
                to, &there, cfg,
            )));
        }
    } else if let Err(mismatch) = super::files::claim_run_folder_by(to, cfg, same_run)? {
        return Err(RunError::Config(mismatch));
    }
    std::fs::create_dir_all(trial_dir(to, 0)).map_err(|e| file_err(&trial_dir(to, 0), e))?;
    let mut copied = 0;
    for mut r in found {
        let path = task_path(to, 0, &r.task_id);
        if path.exists() {
            continue;
        }
        r.reflection = None;
        write_json(&path, &r)?;
        copied += 1;
    }
    Ok(copied)
}

/// A saved run and `cfg` are the same run: equal apart from the number of trials (a run may be
/// resumed with more).
fn same_run(saved: &RunConfig, cfg: &RunConfig) -> bool {
    RunConfig {
        trials: cfg.trials,
        ..saved.normalized()
    } == cfg.normalized()
}

/// What the trial loop knows of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The id (file names, records).
    pub id: String,
    /// The question or task text.
    pub question: String,
    /// The gold answer, if the task has one.
    pub gold: String,
}

/// One attempt, whatever the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The answer given, if any.
    pub answer: Option<String>,
    /// Solved.
    pub success: bool,
    /// Ended without an answer (step or prompt limit).
    pub halted: bool,
    /// Episode return G_i.
    pub episode_return: f32,
    /// The steps with their token counts.
    pub steps: Vec<Step>,
    /// The trajectory as text.
    pub scratchpad: String,
}

impl From<&TaskResult> for Attempt {
    /// The attempt a saved result records (to reflect on it after a resume).
    fn from(r: &TaskResult) -> Self {
        Attempt {
            answer: r.answer.clone(),
            success: r.success,
            halted: r.halted,
            episode_return: r.episode_return,
            steps: r.steps.clone(),
            scratchpad: r.scratchpad.clone(),
        }
    }
}

/// An agent the trial loop runs: one attempt at task `i` given that task's earlier results,
/// and a reflection on a failed attempt. Environments plug in here.
pub trait TrialAgent {
    /// Attempt task `i` in `trial`.
    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        trial: u32,
    ) -> Result<Attempt, RunError>;
    /// Reflect on a failed attempt at task `i`.
    fn reflect(
        &mut self,
        i: usize,
        attempt: &Attempt,
        earlier: &[TaskResult],
    ) -> Result<Reflection, RunError>;
    /// Whether a saved result's answer solves task `i`, judged again from the file alone, so
    /// that a resumed run does not count an edited "solved" as solved; `None` where the
    /// judgement cannot be repeated from the file (an episode's outcome), and the saved one
    /// stands.
    fn judge(&self, _i: usize, _saved: &TaskResult) -> Option<bool> {
        None
    }
    /// How many tasks [`TrialAgent::attempt_many`] runs at once (1: one after another).
    fn parallelism(&self) -> usize {
        1
    }
    /// Attempts at several tasks (task index and its earlier results), in order. The default
    /// runs them one after another; an agent with a batching session runs them together.
    fn attempt_many(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
    ) -> Result<Vec<Attempt>, RunError> {
        tasks
            .iter()
            .map(|(i, earlier)| self.attempt(*i, earlier, trial))
            .collect()
    }
    /// Attempts at several tasks (task index and its earlier results), each handed to `done`
    /// with its position in `tasks` as soon as it ends, in any order, so that the runner saves
    /// it at once. The default runs [`TrialAgent::attempt_many`] on groups of
    /// [`GROUP_LANES`] lanes' worth (each group waits for its slowest attempt); an agent whose
    /// session streams overrides it, so that no attempt waits for another. An error of `done`
    /// stops the stream: no further attempt starts.
    fn attempt_stream(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
        done: &mut AttemptDone<'_>,
    ) -> Result<(), RunError> {
        let chunk = group_size(self.parallelism());
        for (g, group) in tasks.chunks(chunk).enumerate() {
            for (k, attempt) in self.attempt_many(group, trial)?.into_iter().enumerate() {
                done(g * chunk + k, attempt)?;
            }
        }
        Ok(())
    }
    /// Reflections on several failed attempts, in order (default: one after another).
    fn reflect_many(
        &mut self,
        failed: &[(usize, &Attempt, &[TaskResult])],
    ) -> Result<Vec<Reflection>, RunError> {
        failed
            .iter()
            .map(|(i, a, earlier)| self.reflect(*i, a, earlier))
            .collect()
    }
}

/// Where an agent's [`TrialAgent::attempt_stream`] hands each attempt as it ends: its position
/// in the tasks given, and the attempt.
pub type AttemptDone<'a> = dyn FnMut(usize, Attempt) -> Result<(), RunError> + Send + 'a;

/// Tasks per group, in lanes, where an agent runs groups rather than a stream (the default
/// [`TrialAgent::attempt_stream`], and reflections): within a group a finished task's lane
/// takes the next task at once, and only the group's last tasks run with lanes idle.
pub const GROUP_LANES: usize = 8;

/// The tasks' attempts one after another, each handed to `done` as it ends: the stream of an
/// agent that runs one at a time.
pub fn attempt_each(
    agent: &mut (impl TrialAgent + ?Sized),
    tasks: &[(usize, &[TaskResult])],
    trial: u32,
    done: &mut AttemptDone<'_>,
) -> Result<(), RunError> {
    for (k, (i, earlier)) in tasks.iter().enumerate() {
        done(k, agent.attempt(*i, earlier, trial)?)?;
    }
    Ok(())
}

/// Tasks per group for an agent that runs `parallelism` at once.
fn group_size(parallelism: usize) -> usize {
    parallelism.max(1) * if parallelism > 1 { GROUP_LANES } else { 1 }
}

/// The most trials a run may have (trial folders are numbered with two digits).
pub const MAX_TRIALS: u32 = 100;

/// The trial loop: N trials over `tasks`; a task solved in a trial is not attempted again; one
/// result file per task and trial (the single source of truth, so a killed run resumes where
/// it was); a reflection after each failure when the strategy reflects and a trial follows;
/// summaries and rating records derived from the files.
pub fn run_trials(
    tasks: &[TaskInfo],
    agent: &mut dyn TrialAgent,
    cfg: &RunConfig,
    out: &Path,
    on_task: &mut (dyn FnMut(&TaskResult) + Send),
) -> Result<Vec<TrialSummary>, RunError> {
    let strategy = cfg.parsed_strategy()?;
    if cfg.trials == 0 || cfg.trials > MAX_TRIALS {
        return Err(RunError::Config(format!(
            "--trials {}: must be 1 to {MAX_TRIALS}",
            cfg.trials
        )));
    }
    if tasks.is_empty() {
        return Err(RunError::Config("no task to run".into()));
    }
    let mut stems = std::collections::HashSet::new();
    if let Some(dup) = tasks.iter().find(|t| !stems.insert(file_stem(&t.id))) {
        return Err(RunError::Config(format!(
            "task id {:?} appears more than once",
            dup.id
        )));
    }
    claim(cfg, out)?;
    // Each task's results by trial, loaded from disk (resume) or produced now: the files are the
    // source of truth, and this keeps them from being read again for every later trial.
    let mut history: Vec<Vec<TaskResult>> = vec![Vec::new(); tasks.len()];
    let mut summaries = Vec::new();
    let reflector = strategy.reflects().then(|| reflector_info(cfg));
    for trial in 0..cfg.trials {
        let dir = trial_dir(out, trial);
        std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
        let reflect = strategy.reflects() && trial + 1 < cfg.trials;
        let (mut results, pending) = load_trial(&*agent, tasks, &history, trial, out, on_task)?;
        // What each task is shown of its earlier trials: its own results, or under the placebo
        // another task's reflections; never an empty reflection.
        let shown = shown_history(&history, strategy);
        attempt_pending(
            agent,
            tasks,
            &shown,
            &pending,
            trial,
            out,
            &mut results,
            on_task,
        )?;
        // Reflections follow the trial's attempts (the placebo shows each task another task's
        // reflection of this trial, so all of them exist before the next trial starts).
        if reflect {
            reflect_failures(agent, tasks, &history, &mut results, trial, out)?;
        }
        let summary = summarize(&mut history, results, trial);
        write_json(&out.join(format!("trial-{trial:02}.json")), &summary)?;
        if !strategy.is_placebo() {
            write_records(&history, reflector.as_ref(), out)?;
        }
        summaries.push(summary);
    }
    Ok(summaries)
}

/// Attempts the `pending` tasks of `trial`, shown `shown` (the history, or the placebo's view
/// of it), saving each result as soon as its attempt ends. A task's wall time is the time
/// since the previous one ended, so that a run's wall times add up to its duration.
#[allow(clippy::too_many_arguments)] // one trial's state, lent by run_trials
fn attempt_pending(
    agent: &mut dyn TrialAgent,
    tasks: &[TaskInfo],
    shown: &[Vec<TaskResult>],
    pending: &[usize],
    trial: u32,
    out: &Path,
    results: &mut [Option<TaskResult>],
    on_task: &mut (dyn FnMut(&TaskResult) + Send),
) -> Result<(), RunError> {
    let asks: Vec<(usize, &[TaskResult])> =
        pending.iter().map(|&i| (i, shown[i].as_slice())).collect();
    let mut last = Instant::now();
    agent.attempt_stream(&asks, trial, &mut |k, attempt| {
        let i = *pending.get(k).ok_or_else(|| {
            RunError::Config(format!("the agent ended attempt {k} of {}", pending.len()))
        })?;
        let now = Instant::now();
        let wall_ms = now.duration_since(last).as_secs_f64() * 1e3;
        last = now;
        let r = task_result(&tasks[i], trial, attempt, wall_ms);
        write_json(&task_path(out, trial, &r.task_id), &r)?;
        on_task(&r);
        results[i] = Some(r);
        Ok(())
    })?;
    if let Some(k) = pending.iter().position(|&i| results[i].is_none()) {
        return Err(RunError::Config(format!(
            "the agent ended without an attempt at task {:?}",
            tasks[pending[k]].id
        )));
    }
    Ok(())
}

/// Task `task`'s result of `trial` from its attempt, without a reflection yet.
fn task_result(task: &TaskInfo, trial: u32, attempt: Attempt, wall_ms: f64) -> TaskResult {
    TaskResult {
        format_version: FORMAT_VERSION,
        task_id: task.id.clone(),
        trial,
        question: task.question.clone(),
        gold: task.gold.clone(),
        answer: attempt.answer,
        success: attempt.success,
        halted: attempt.halted,
        episode_return: attempt.episode_return,
        steps: attempt.steps,
        scratchpad: attempt.scratchpad,
        reflection: None,
        wall_ms,
    }
}

/// Claims `out` for a run with `cfg`: a new folder, or one holding the same run. A run may be
/// resumed with more trials (it goes on from where it stopped); every other setting must be
/// the same. Fewer would drop the later trials from the summaries and the rating records, so
/// that is refused.
fn claim(cfg: &RunConfig, out: &Path) -> Result<(), RunError> {
    if let Some(saved) = super::files::read_json::<RunConfig>(&out.join("run.json"))? {
        if same_run(&saved, cfg) && saved.trials > cfg.trials {
            return Err(RunError::Config(format!(
                "{} holds a run of {} trials: --trials {} would leave out the later ones; give --trials {} or more, or another --out folder",
                out.display(),
                saved.trials,
                cfg.trials,
                saved.trials
            )));
        }
    }
    match super::files::claim_run_folder_by(out, cfg, same_run)? {
        Ok(super::files::Claim::Resumed) => tracing::info!(out = %out.display(), "resuming"),
        Ok(super::files::Claim::New) => {}
        Err(mismatch) => return Err(RunError::Config(mismatch)),
    }
    Ok(())
}

/// Trial `trial`'s results already on disk (resume), by task, and the tasks still open in it.
fn load_trial(
    agent: &dyn TrialAgent,
    tasks: &[TaskInfo],
    history: &[Vec<TaskResult>],
    trial: u32,
    out: &Path,
    on_task: &mut (dyn FnMut(&TaskResult) + Send),
) -> Result<(Vec<Option<TaskResult>>, Vec<usize>), RunError> {
    let mut results: Vec<Option<TaskResult>> = vec![None; tasks.len()];
    let mut pending = Vec::new();
    for (i, (task, earlier)) in tasks.iter().zip(history).enumerate() {
        if earlier.iter().any(|r| r.success) {
            continue;
        }
        match load_task(out, trial, &task.id)? {
            Some(done) => {
                check_saved(agent, i, task, &done, out)?;
                on_task(&done);
                results[i] = Some(done);
            }
            None => pending.push(i),
        }
    }
    Ok((results, pending))
}

/// Refuses a saved result that is not this task's (its question or gold answer differ: the
/// task set changed under the run) or whose success the agent judges otherwise.
fn check_saved(
    agent: &dyn TrialAgent,
    i: usize,
    task: &TaskInfo,
    done: &TaskResult,
    out: &Path,
) -> Result<(), RunError> {
    let path = task_path(out, done.trial, &task.id);
    let wrong = |what: String| RunError::from(file_err(&path, what));
    if done.question != task.question || done.gold != task.gold {
        return Err(wrong(format!(
            "holds another question or gold answer than task {:?} has now: the tasks changed \
             under this run; use another --out folder",
            task.id
        )));
    }
    match agent.judge(i, done) {
        Some(judged) if judged != done.success => Err(wrong(format!(
            "says success {} but its answer {:?} judges as {judged}: the file was edited; \
             delete it to redo the task",
            done.success, done.answer
        ))),
        _ => Ok(()),
    }
}

/// Reflects on every failure of `trial` saved without a reflection (this trial's, or a resumed
/// run's whose trial was the last one then), in groups of [`GROUP_LANES`] lanes' worth, each
/// written before the next starts. A task's wall time stays its attempt's.
fn reflect_failures(
    agent: &mut dyn TrialAgent,
    tasks: &[TaskInfo],
    history: &[Vec<TaskResult>],
    results: &mut [Option<TaskResult>],
    trial: u32,
    out: &Path,
) -> Result<(), RunError> {
    let open: Vec<usize> = (0..tasks.len())
        .filter(|&i| {
            results[i]
                .as_ref()
                .is_some_and(|r| !r.success && r.reflection.is_none())
        })
        .collect();
    for group in open.chunks(group_size(agent.parallelism())) {
        let attempts: Vec<Attempt> = group
            .iter()
            .map(|&i| Attempt::from(results[i].as_ref().expect("attempted")))
            .collect();
        let failed: Vec<(usize, &Attempt, &[TaskResult])> = group
            .iter()
            .zip(&attempts)
            .map(|(&i, a)| (i, a, history[i].as_slice()))
            .collect();
        let reflections = agent.reflect_many(&failed)?;
        for (&i, reflection) in group.iter().zip(reflections) {
            let r = results[i].as_mut().expect("attempted");
            r.reflection = Some(reflection);
            write_json(&task_path(out, trial, &r.task_id), r)?;
        }
    }
    Ok(())
}

/// Trial `trial`'s summary; its results join each task's history.
fn summarize(
    history: &mut [Vec<TaskResult>],
    results: Vec<Option<TaskResult>>,
    trial: u32,
) -> TrialSummary {
    let mut summary = TrialSummary {
        format_version: FORMAT_VERSION,
        trial,
        tasks: history.len(),
        attempted: 0,
        solved_now: 0,
        solved_total: 0,
        success_rate: 0.0,
        evaluated_tokens: 0,
        reused_tokens: 0,
        generated_tokens: 0,
    };
    for (earlier, result) in history.iter_mut().zip(results) {
        if earlier.iter().any(|r| r.success) {
            summary.solved_total += 1;
            continue;
        }
        let Some(result) = result else { continue };
        summary.attempted += 1;
        for s in &result.steps {
            summary.evaluated_tokens += u64::from(s.evaluated_tokens);
            summary.reused_tokens += u64::from(s.reused_tokens);
            summary.generated_tokens += u64::from(s.generated_tokens);
        }
        if result.success {
            summary.solved_now += 1;
            summary.solved_total += 1;
        }
        earlier.push(result);
    }
    if summary.tasks > 0 {
        summary.success_rate = summary.solved_total as f64 / summary.tasks as f64;
    }
    summary
}

#[cfg(test)]
mod tests;
