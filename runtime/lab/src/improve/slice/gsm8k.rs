//! GSM8K's part of the demo's slice: an answer is the parsed answer of the one greedy turn, the
//! same as the run's when the run saved the same one.

use std::path::Path;

use retroformer::agent::files::read_json;
use retroformer::agent::runner::task_path;
use retroformer_envs::math::rise::RiseResult;
use retroformer_envs::math::MathProblem;
use retroformer_envs::Progress;

use super::super::gsm8k::{evaluate, score, solved};
use super::super::{Ctx, Score};
use super::{Evaluated, Outcome, TheRun};
use crate::LabError;

/// Arm `arm` (`adapter`; `None`: the base) greedy on `problems`, into the demo's
/// `slice/KEY-greedy/`, each answer compared with the one the run saved.
pub(super) fn evaluate_arm(
    ctx: &Ctx<'_>,
    problems: &[MathProblem],
    run: &TheRun<'_>,
    arm: &str,
    adapter: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<Evaluated, LabError> {
    let (results, timed, folder) = evaluate(ctx, problems, adapter, false, "slice", progress)?;
    let theirs = run_answers(run, arm, problems)?;
    Ok(Evaluated {
        score: Score {
            run: folder,
            ..score(&results, false)
        },
        timed,
        same_as_run: theirs.map(|t| agreement(&results, &t)),
        outcomes: results
            .iter()
            .map(|r| Outcome {
                id: r.problem_id.clone(),
                gold: r.gold.clone(),
                answer: first_answer(r),
                solved: solved(r),
            })
            .collect(),
    })
}

/// The run's saved greedy answers of arm `name`, by problem, where it saved them.
fn run_answers(
    run: &TheRun<'_>,
    name: &str,
    problems: &[MathProblem],
) -> Result<Option<Vec<Option<Option<String>>>>, LabError> {
    let Some(dir) = run.greedy_dir(name) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(problems.len());
    for p in problems {
        let r: Option<RiseResult> = read_json(&task_path(&dir, 0, &p.id))?;
        out.push(r.map(|r| first_answer(&r)));
    }
    Ok(Some(out))
}

fn first_answer(r: &RiseResult) -> Option<String> {
    r.sequential.first().and_then(|a| a.answer.clone())
}

/// Answers equal to the run's, and answers the run saved.
fn agreement(here: &[RiseResult], run: &[Option<Option<String>>]) -> (usize, usize) {
    let pairs = here
        .iter()
        .zip(run)
        .filter_map(|(h, r)| Some((h, r.as_ref()?)));
    pairs.fold((0, 0), |(same, n), (h, r)| {
        (same + usize::from(first_answer(h) == *r), n + 1)
    })
}
