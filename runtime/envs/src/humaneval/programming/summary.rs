//! The summary of a programming run (`humaneval.json`), with the visible tests measured as a
//! verifier of the hidden ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CodingResult, FORMAT_VERSION};
use retroformer_sandbox::Outcome;

/// The summary of a programming run (`humaneval.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodingSummary {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Tasks.
    pub tasks: usize,
    /// Tasks whose submitted implementation passed the hidden tests.
    pub passed: usize,
    /// `passed / tasks`.
    pub pass_at_1: f64,
    /// Hidden-test outcomes (of the submitted implementations) by name.
    pub outcomes: BTreeMap<String, usize>,
    /// Why the loops ended, by reason.
    pub stops: BTreeMap<String, usize>,
    /// Share of tasks whose visible tests all passed at or before iteration k (index k-1);
    /// the name predates the docstring tests.
    pub own_tests_pass_by_iteration: Vec<f64>,
    /// Mean implementations per task.
    pub mean_iterations: f64,
    /// Mean wall time per task, seconds.
    pub mean_task_s: f64,
    /// Mean tokens (evaluated + generated) per task.
    pub mean_tokens: f64,
    /// Mean generated tokens per task.
    pub mean_generated_tokens: f64,
    /// Tasks by where their visible tests came from: `docstring`, `model` (self-written) or
    /// `none`.
    #[serde(default)]
    pub visible_tests: BTreeMap<String, usize>,
    /// Share of tasks with an implementation that passes the hidden tests at or before
    /// iteration k (index k-1): what a perfect verifier could submit (analysis only).
    #[serde(default)]
    pub hidden_pass_any_by_iteration: Vec<f64>,
    /// Tasks whose submitted implementation is not their last one.
    #[serde(default)]
    pub submitted_earlier: usize,
    /// The visible tests as a verifier of the hidden ones, over every implementation.
    #[serde(default)]
    pub verifier: VerifierStats,
    /// [`CodingSummary::verifier`] by where the visible tests came from (`docstring`,
    /// `model`).
    #[serde(default)]
    pub verifier_by_source: BTreeMap<String, VerifierStats>,
}

/// How well the visible tests predict the hidden ones. Implementations count when they have
/// visible tests and a hidden-test result (every implementation of a run since the hidden
/// tests run on each); tasks count when their first implementation has a hidden-test result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifierStats {
    /// Implementations measured.
    pub implementations: usize,
    /// Of those, the ones that pass the hidden tests.
    pub hidden_passed: usize,
    /// Pass the hidden tests but fail a visible test.
    pub false_alarms: usize,
    /// `false_alarms / hidden_passed` (null when none passed).
    pub false_alarm_rate: Option<f64>,
    /// Fail the hidden tests.
    pub hidden_failed: usize,
    /// Fail the hidden tests but pass every visible test.
    pub misses: usize,
    /// `misses / hidden_failed` (null when none failed).
    pub miss_rate: Option<f64>,
    /// Tasks measured.
    pub tasks: usize,
    /// Tasks whose first implementation passed the hidden tests.
    pub first_passed: usize,
    /// Tasks whose first implementation passed the hidden tests and whose submitted one does
    /// not: regressions caused by the visible tests (the hidden ones are never shown).
    pub regressions: usize,
    /// Tasks whose first implementation failed the hidden tests and whose submitted one passes.
    pub fixes: usize,
}

/// Where a task's visible tests came from.
pub fn visible_source(r: &CodingResult) -> &'static str {
    if !r.docstring_tests.is_empty() {
        "docstring"
    } else if !r.own_tests.is_empty() {
        "model"
    } else {
        "none"
    }
}

/// The verifier statistics of `results`.
pub fn verifier_stats<'a>(results: impl IntoIterator<Item = &'a CodingResult>) -> VerifierStats {
    let mut s = VerifierStats::default();
    for r in results {
        for it in &r.iterations {
            let Some(hidden) = it.hidden_passed else {
                continue;
            };
            if it.tests.is_empty() {
                continue;
            }
            let visible = it.tests.iter().all(|t| t.outcome == Outcome::Passed);
            s.implementations += 1;
            if hidden {
                s.hidden_passed += 1;
                s.false_alarms += usize::from(!visible);
            } else {
                s.hidden_failed += 1;
                s.misses += usize::from(visible);
            }
        }
        if let Some(first) = r.iterations.first().and_then(|it| it.hidden_passed) {
            s.tasks += 1;
            s.first_passed += usize::from(first);
            s.regressions += usize::from(first && !r.passed);
            s.fixes += usize::from(!first && r.passed);
        }
    }
    let rate = |k: usize, n: usize| (n > 0).then(|| k as f64 / n as f64);
    s.false_alarm_rate = rate(s.false_alarms, s.hidden_passed);
    s.miss_rate = rate(s.misses, s.hidden_failed);
    s
}

/// Totals over finished tasks.
pub fn summarize(results: &[CodingResult], max_iters: u32) -> CodingSummary {
    let n = results.len().max(1) as f64;
    let passed = results.iter().filter(|r| r.passed).count();
    let mut outcomes = BTreeMap::new();
    let mut stops = BTreeMap::new();
    let mut visible_tests = BTreeMap::new();
    for r in results {
        *outcomes
            .entry(r.hidden.outcome.name().to_string())
            .or_insert(0) += 1;
        let stop = serde_json::to_value(r.stop)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *stops.entry(stop).or_insert(0) += 1;
        *visible_tests
            .entry(visible_source(r).to_string())
            .or_insert(0) += 1;
    }
    let by_iteration = |hit: &dyn Fn(&super::Iteration) -> bool| -> Vec<f64> {
        (1..=max_iters as usize)
            .map(|k| {
                results
                    .iter()
                    .filter(|r| r.iterations.iter().take(k).any(hit))
                    .count() as f64
                    / n
            })
            .collect()
    };
    let verifier_by_source = ["docstring", "model"]
        .into_iter()
        .map(|src| {
            let of = results.iter().filter(|r| visible_source(r) == src);
            (src.to_string(), verifier_stats(of))
        })
        .filter(|(_, s)| s.tasks > 0 || s.implementations > 0)
        .collect();
    let mean = |f: &dyn Fn(&CodingResult) -> f64| results.iter().map(f).sum::<f64>() / n;
    CodingSummary {
        format_version: FORMAT_VERSION,
        tasks: results.len(),
        passed,
        pass_at_1: passed as f64 / n,
        outcomes,
        stops,
        own_tests_pass_by_iteration: by_iteration(&|it| {
            !it.tests.is_empty() && it.own_pass_rate >= 1.0
        }),
        mean_iterations: mean(&|r| r.iterations.len() as f64),
        mean_task_s: mean(&|r| r.wall_ms) / 1e3,
        mean_tokens: mean(&|r| (r.usage.evaluated_tokens + r.usage.generated_tokens) as f64),
        mean_generated_tokens: mean(&|r| r.usage.generated_tokens as f64),
        visible_tests,
        hidden_pass_any_by_iteration: by_iteration(&|it| it.hidden_passed == Some(true)),
        submitted_earlier: results
            .iter()
            .filter(|r| r.submitted.is_some_and(|s| s + 1 < r.iterations.len()))
            .count(),
        verifier: verifier_stats(results),
        verifier_by_source,
    }
}
