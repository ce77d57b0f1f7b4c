//! What each attempt is shown of its task's earlier trials: never an empty reflection, and
//! under the placebo another task's reflections.

use super::super::reflect::Reflection;
use super::super::Strategy;
use super::TaskResult;

/// The history the attempts are shown: `history` itself, unless a reflection in it is empty
/// (dropped: nothing would enter memory but an empty line) or the strategy is the placebo.
pub(super) fn shown_history(
    history: &[Vec<TaskResult>],
    strategy: Strategy,
) -> std::borrow::Cow<'_, [Vec<TaskResult>]> {
    let empty = |r: &TaskResult| {
        r.reflection
            .as_ref()
            .is_some_and(|x| x.text.trim().is_empty())
    };
    if !strategy.is_placebo() && !history.iter().flatten().any(empty) {
        return std::borrow::Cow::Borrowed(history);
    }
    let kept: Vec<Vec<TaskResult>> = history
        .iter()
        .map(|results| {
            results
                .iter()
                .map(|r| TaskResult {
                    reflection: r.reflection.clone().filter(|x| !x.text.trim().is_empty()),
                    ..r.clone()
                })
                .collect()
        })
        .collect();
    std::borrow::Cow::Owned(if strategy.is_placebo() {
        placebo_view(&kept)
    } else {
        kept
    })
}

/// Each task's results with every reflection replaced by the one written in the same trial
/// for the next task (in task order, cyclically) that has one there: the placebo's view of
/// the history. A reflection with no other task to come from is removed.
pub(super) fn placebo_view(history: &[Vec<TaskResult>]) -> Vec<Vec<TaskResult>> {
    // Per trial, the tasks with a reflection in it, in task order, and those reflections.
    let mut by_trial: std::collections::BTreeMap<u32, Vec<(usize, Reflection)>> =
        std::collections::BTreeMap::new();
    for (i, results) in history.iter().enumerate() {
        for r in results {
            if let Some(refl) = &r.reflection {
                by_trial.entry(r.trial).or_default().push((i, refl.clone()));
            }
        }
    }
    let donor = |trial: u32, i: usize| -> Option<Reflection> {
        let list = by_trial.get(&trial)?;
        let at = list.iter().position(|(j, _)| *j == i)?;
        (list.len() > 1).then(|| list[(at + 1) % list.len()].1.clone())
    };
    history
        .iter()
        .enumerate()
        .map(|(i, results)| {
            results
                .iter()
                .map(|r| TaskResult {
                    reflection: r.reflection.as_ref().and_then(|_| donor(r.trial, i)),
                    ..r.clone()
                })
                .collect()
        })
        .collect()
}
