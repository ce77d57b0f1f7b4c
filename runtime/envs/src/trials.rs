//! What the environments that run Reflexion trials share: a plan's settings as the runner's
//! [`RunConfig`], task selection, and the trial report.

use std::collections::BTreeMap;
use std::path::Path;

use retroformer::agent::files::read_json;
use retroformer::agent::reflect::Reflector;
use retroformer::agent::runner::{RunConfig, RunLabel, TaskResult, TrialSummary};
use retroformer::agent::Strategy;
use retroformer_llm::{LanguageModel, Session};

use crate::{Chart, EnvError, EvalPlan, EvalReport, Spec};

/// The settings of a run of `plan` with `agent` and the environment's own `env` settings: the
/// saved ones with `--resume` (only `--trials` may change), else the plan's, the trial count
/// defaulting to the run already in the folder (running again resumes, never extends), then
/// to the environment's.
pub(crate) fn run_config(
    plan: &EvalPlan,
    spec: &Spec,
    agent: &str,
    env: BTreeMap<String, serde_json::Value>,
) -> Result<RunConfig, EnvError> {
    let saved: Option<RunConfig> = read_json(&plan.out.join("run.json")).map_err(run_err)?;
    if plan.resume {
        let mut cfg = saved.ok_or_else(|| {
            EnvError::setting(
                "resume",
                format!("{}: no run.json there", plan.out.display()),
            )
        })?;
        if let Some(t) = plan.trials {
            cfg.trials = t;
        }
        return Ok(cfg);
    }
    let strategy = plan
        .strategy
        .clone()
        .unwrap_or_else(|| spec.strategies[0].to_string());
    if !spec.strategies.contains(&strategy.as_str()) || Strategy::parse(&strategy).is_none() {
        return Err(EnvError::setting(
            "strategy",
            format!(
                "{strategy}: known strategies are {}",
                spec.strategies.join(", ")
            ),
        ));
    }
    let t = plan.reflector_temperature;
    if !(t.is_finite() && t >= 0.0) {
        return Err(EnvError::setting(
            "reflector-temperature",
            format!("{t}: must be 0 (greedy) or a positive number"),
        ));
    }
    let at = plan.actor_temperature;
    if !(at.is_finite() && at >= 0.0) {
        return Err(EnvError::setting(
            "temperature",
            format!("{at}: must be 0 (greedy) or a positive number"),
        ));
    }
    let p = plan.actor_top_p;
    if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
        return Err(EnvError::setting(
            "top-p",
            format!("{p}: must be in 0..=1 (0 or 1: off)"),
        ));
    }
    let memory = plan.memory.unwrap_or(3);
    // A reflecting run with no memory would rate reflections that no trial is shown.
    if let Err(e) = retroformer_core::memory::ReflectionMemory::new(memory) {
        return Err(EnvError::setting("memory", format!("{memory}: {e}")));
    }
    let max_steps = plan.max_steps.unwrap_or(spec.max_steps);
    if max_steps == 0 {
        return Err(EnvError::setting("max-steps", "must be at least 1"));
    }
    Ok(RunConfig {
        agent: agent.into(),
        trials: plan
            .trials
            .or(saved.map(|c| c.trials))
            .unwrap_or(spec.trials.1),
        strategy,
        memory,
        max_steps,
        actor: plan.actor.clone(),
        reflector: plan.reflector.clone(),
        reflector_adapter: plan.reflector_adapter.clone(),
        reflector_temperature: t,
        reflector_seed: plan.reflector_seed,
        // Top-p 1 is off, as 0 is: stored as 0 so that both are the same run.
        actor_temperature: at,
        actor_top_p: if p >= 1.0 { 0.0 } else { p },
        actor_seed: plan.actor_seed,
        env,
    })
}

fn run_err(e: retroformer::agent::files::FileError) -> EnvError {
    EnvError::Run(e.into())
}

/// Sequences to keep in flight for `tasks` tasks with `--parallel` `parallel`: never more
/// lanes than tasks (each lane's cache is allocated whether used or not).
pub(crate) fn in_flight(parallel: u32, tasks: usize) -> u32 {
    parallel
        .min(u32::try_from(tasks).unwrap_or(u32::MAX))
        .max(1)
}

/// Whether a run with `cfg` writes reflections: a reflecting strategy and a trial after the
/// first (an unknown strategy counts as reflecting; the runner refuses it).
pub(crate) fn reflects(cfg: &RunConfig) -> bool {
    cfg.trials > 1 && cfg.parsed_strategy().map_or(true, |s| s.reflects())
}

/// `--parallel`, checked (default [`crate::DEFAULT_PARALLEL`]).
pub(crate) fn parallel(plan: &EvalPlan) -> Result<u32, EnvError> {
    match plan.parallel.unwrap_or(crate::DEFAULT_PARALLEL) {
        0 => Err(EnvError::setting("parallel", "must be at least 1")),
        n => Ok(n),
    }
}

/// How many rows of the data a plan can use: `--skip` plus `--limit` when it names no tasks
/// (then the loaders stop there, so a large file is not read whole for a few tasks).
pub(crate) fn row_cap(plan: &EvalPlan) -> Option<usize> {
    if plan.tasks.is_empty() {
        plan.limit.map(|n| plan.skip.saturating_add(n))
    } else {
        None
    }
}

/// The plan's selection of `items` (read from `origin`): `--tasks` (every id must exist, in the
/// file's order), then `--skip`, then `--limit`. Duplicate ids in the data are refused (their
/// results would overwrite each other), and so is a selection that leaves nothing.
pub(crate) fn select<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> String,
    plan: &EvalPlan,
    origin: &Path,
) -> Result<Vec<T>, EnvError> {
    let mut seen = std::collections::HashSet::new();
    for it in &items {
        if !seen.insert(id(it)) {
            return Err(EnvError::Parse {
                path: origin.to_path_buf(),
                line: 0,
                message: format!("task id {} appears more than once", id(it)),
            });
        }
    }
    if !plan.tasks.is_empty() {
        if let Some(missing) = plan.tasks.iter().find(|t| !seen.contains(t.as_str())) {
            return Err(EnvError::setting(
                "tasks",
                format!("{missing}: no such task in {}", origin.display()),
            ));
        }
        items.retain(|it| plan.tasks.contains(&id(it)));
    }
    items.drain(..plan.skip.min(items.len()));
    if let Some(n) = plan.limit {
        items.truncate(n);
    }
    if items.is_empty() {
        return Err(EnvError::setting(
            "limit",
            format!(
                "{:?}: no task left to run in {} (--skip {}, --tasks {})",
                plan.limit,
                origin.display(),
                plan.skip,
                plan.tasks.len()
            ),
        ));
    }
    Ok(items)
}

/// A progress line for a finished task.
pub(crate) fn task_line(r: &TaskResult) -> String {
    format!(
        "trial {} {}: {} in {} steps",
        r.trial + 1,
        r.task_id,
        if r.success {
            "solved"
        } else if r.halted {
            "halted"
        } else {
            "wrong"
        },
        r.steps.len()
    )
}

/// The report of a trial run: the summary table, and the success-by-trial chart titled
/// `title`.
pub(crate) fn report(
    title: &str,
    cfg: &RunConfig,
    summaries: &[TrialSummary],
    out: &Path,
) -> EvalReport {
    let mut lines = vec![format!(
        "{:>5} {:>9} {:>7} {:>7} {:>8} {:>10} {:>10}",
        "trial", "attempted", "solved", "total", "success", "evaluated", "reused"
    )];
    for t in summaries {
        lines.push(format!(
            "{:>5} {:>9} {:>7} {:>7} {:>8.3} {:>10} {:>10}",
            t.trial + 1,
            t.attempted,
            t.solved_now,
            t.solved_total,
            t.success_rate,
            t.evaluated_tokens,
            t.reused_tokens
        ));
    }
    lines.push(format!(
        "results: {} (trial-NN/*.json, records.jsonl)",
        out.display()
    ));
    let label = RunLabel {
        agent: cfg.agent.clone(),
        strategy: cfg.strategy.clone(),
        actor: cfg.actor.clone(),
        trials: cfg.trials,
        reflector: Some(cfg.reflector.clone()),
        reflector_adapter: cfg.reflector_adapter.clone(),
    };
    EvalReport {
        score: summaries.last().map(|t| t.success_rate),
        success_by_trial: summaries.iter().map(|t| t.success_rate).collect(),
        tasks: summaries.first().map_or(0, |t| t.tasks),
        lines,
        chart: Some(Chart {
            stem: "success".into(),
            title: title.into(),
            x_label: "trial".into(),
            y_label: "success rate".into(),
            series: vec![(label.legend(), success_points(summaries))],
        }),
    }
}

/// (trial, success rate) of each finished trial, trials counted from 1.
pub fn success_points(summaries: &[TrialSummary]) -> Vec<(f64, f64)> {
    summaries
        .iter()
        .map(|t| (f64::from(t.trial + 1), t.success_rate))
        .collect()
}

/// The models of a trial run: the actor (and its session) and the reflector.
pub struct AgentModels<'a> {
    /// The actor model (for token counting).
    pub actor: &'a dyn LanguageModel,
    /// The actor's session (one for the whole run, so the shared prompt prefix stays cached).
    pub session: &'a mut dyn Session,
    /// The reflector.
    pub reflector: &'a mut dyn Reflector,
    /// Episodes run at once through `session` (continuous batching; at most the sequences the
    /// session was opened with). 1: one after another.
    pub parallel: usize,
}
