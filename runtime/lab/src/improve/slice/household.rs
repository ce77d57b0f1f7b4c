//! The household's part of the demo's slice: an arm's answer is how its greedy episode ended,
//! the same as the run's when the episode took the same actions.

use std::path::Path;

use retroformer::agent::files::read_json;
use retroformer::agent::runner::task_path;
use retroformer_envs::household::expert::Collected;
use retroformer_envs::household::{HouseholdEnv, TaskSpec};
use retroformer_envs::Progress;

use super::super::env::Split;
use super::super::Ctx;
use super::{Evaluated, Outcome, TheRun};
use crate::LabError;

/// Arm `arm` (`adapter`; `None`: the base) greedy on `tasks` (the context's test tasks), into
/// the demo's `eval/KEY-greedy/`, each episode compared with the one the run saved.
pub(super) fn evaluate_arm(
    ctx: &Ctx<'_>,
    tasks: &[TaskSpec],
    run: &TheRun<'_>,
    arm: &str,
    adapter: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<Evaluated, LabError> {
    let e = ctx
        .env
        .evaluate(ctx, Split::Test, adapter, false, progress)?;
    let here = episodes(&ctx.plan.out.join(&e.score.run), tasks)?;
    let theirs = match run.greedy_dir(arm) {
        Some(dir) => Some(episodes(&dir, tasks)?),
        None => None,
    };
    let mut outcomes = Vec::with_capacity(tasks.len());
    for (spec, c) in tasks.iter().zip(&here) {
        let c = c
            .as_ref()
            .ok_or_else(|| LabError::Config(format!("{}: its episode was not saved", spec.id())))?;
        outcomes.push(Outcome {
            id: spec.id(),
            gold: HouseholdEnv::new(spec).task_text().to_string(),
            answer: Some(ending(c)),
            solved: c.solved(),
        });
    }
    Ok(Evaluated {
        same_as_run: theirs.map(|t| agreement(&here, &t)),
        score: e.score,
        timed: e.timed,
        outcomes,
    })
}

/// Each task's saved episodes in `dir` (`None`: not saved).
fn episodes(dir: &Path, tasks: &[TaskSpec]) -> Result<Vec<Option<Collected>>, LabError> {
    tasks
        .iter()
        .map(|t| Ok(read_json(&task_path(dir, 0, &t.id()))?))
        .collect()
}

/// How a greedy episode ended, in words: `reached the goal in 9 actions`, `a cycle after 14
/// actions`.
pub(super) fn ending(c: &Collected) -> String {
    let Some(e) = c.chains.first() else {
        return "no episode".into();
    };
    let n = match e.steps.len() {
        1 => "1 action".to_string(),
        n => format!("{n} actions"),
    };
    if e.success {
        return format!("reached the goal in {n}");
    }
    let why = match e.stopped.as_deref() {
        Some("steps") => "the action limit",
        Some("cycle") => "a cycle",
        Some("repeated") => "one action repeated",
        Some("context") => "a full context",
        Some(other) => other,
        None => "a stop",
    };
    format!("{why} after {n}")
}

/// Tasks whose episodes took the same actions here as in the run, and tasks the run saved.
pub(super) fn agreement(here: &[Option<Collected>], run: &[Option<Collected>]) -> (usize, usize) {
    let actions = |c: &Collected| -> Vec<Vec<String>> {
        c.chains
            .iter()
            .map(|e| e.steps.iter().map(|s| s.action.clone()).collect())
            .collect()
    };
    let pairs = here
        .iter()
        .zip(run)
        .filter_map(|(h, r)| Some((h.as_ref()?, r.as_ref()?)));
    pairs.fold((0, 0), |(same, n), (h, r)| {
        (same + usize::from(actions(h) == actions(r)), n + 1)
    })
}
