//! The hidden tests: queued in the sandbox pool for every implementation as it is written,
//! collected while the model works on the next task, never shown to the model.

use std::time::Instant;

use super::{CodingResult, Problem};
use crate::humaneval::hidden_test_program;
use retroformer_sandbox::{Outcome, Pending, Pool, RunReport};

/// The hidden tests' run on one implementation.
pub(super) enum HiddenRun {
    /// Queued or running; `token` is printed after the last hidden test.
    Running { pending: Pending, token: String },
    /// Finished (the token checked and removed).
    Done(RunReport),
}

impl HiddenRun {
    /// Queue the hidden tests of `implementation`.
    pub(super) fn submit(pool: &Pool, problem: &Problem, implementation: &str) -> Self {
        let token = pass_token(&problem.task_id, implementation);
        let pending = pool.submit(format!(
            "{}\nprint({token:?})\n",
            hidden_test_program(problem, implementation)
        ));
        HiddenRun::Running { pending, token }
    }

    /// Finished if the run has ended.
    fn poll(self) -> Self {
        match self {
            HiddenRun::Running { pending, token } => match pending.try_get() {
                Some(r) => HiddenRun::Done(checked(r, &token)),
                None => HiddenRun::Running { pending, token },
            },
            done => done,
        }
    }

    /// The report, waiting for it.
    fn wait(self) -> RunReport {
        match self {
            HiddenRun::Running { pending, token } => checked(pending.wait(), &token),
            HiddenRun::Done(r) => r,
        }
    }
}

/// A task whose hidden tests are running while the model goes on.
pub struct InFlight {
    pub(super) result: Box<CodingResult>,
    pub(super) started: Instant,
    pub(super) hidden: Vec<HiddenRun>,
}

impl InFlight {
    /// Wait for the hidden tests and complete the result.
    pub fn finish(self) -> CodingResult {
        let reports = self.hidden.into_iter().map(HiddenRun::wait).collect();
        complete(self.result, self.started, reports)
    }

    /// The completed result if every hidden-test run has finished.
    pub fn try_finish(mut self) -> Result<CodingResult, InFlight> {
        self.hidden = self.hidden.into_iter().map(HiddenRun::poll).collect();
        if self.hidden.iter().all(|h| matches!(h, HiddenRun::Done(_))) {
            Ok(self.finish())
        } else {
            Err(self)
        }
    }
}

/// A hidden-test report with the pass token checked: a run passes only if it printed it.
fn checked(mut report: RunReport, token: &str) -> RunReport {
    if report.outcome == Outcome::Passed && !report.stdout.lines().any(|l| l.trim() == token) {
        report.outcome = Outcome::Error;
        report.detail =
            Some("the program exited with status 0 before the hidden tests ended".into());
    }
    // The token is ours, not the program's output.
    report.stdout = report
        .stdout
        .lines()
        .filter(|l| l.trim() != token)
        .map(|l| format!("{l}\n"))
        .collect();
    report
}

/// The result with every iteration's hidden outcome, and the submitted one's report.
fn complete(
    mut result: Box<CodingResult>,
    started: Instant,
    reports: Vec<RunReport>,
) -> CodingResult {
    for (it, r) in result.iterations.iter_mut().zip(&reports) {
        it.hidden_passed = Some(r.outcome == Outcome::Passed);
    }
    let submitted = result.submitted.unwrap_or(reports.len().saturating_sub(1));
    if let Some(report) = reports.into_iter().nth(submitted) {
        result.passed = report.outcome == Outcome::Passed;
        result.hidden = report;
    }
    result.wall_ms = started.elapsed().as_secs_f64() * 1e3;
    *result
}

/// A token printed after the hidden tests: a run only passes if it reached that line, so an
/// implementation that exits with status 0 early (`exit()`, `os._exit(0)`) does not pass. It
/// is derived from the clock and the task, never shown to the model.
fn pass_token(task_id: &str, implementation: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(task_id.as_bytes());
    h.write(implementation.as_bytes());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("__retroformer_hidden_tests_done_{:016x}__", h.finish())
}
