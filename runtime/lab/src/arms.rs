//! One experiment with arms: the same tasks, the same actor and the same seed under several
//! strategies (a sampled `none` baseline first, then Reflexion, a placebo, ...), each arm after
//! the first starting from the baseline's first trial where the environment shares one, then
//! paired statistics between the arms ([`crate::compare`]) and one chart of all of them. The
//! demo is one of these.

use std::path::{Path, PathBuf};

use retroformer_envs::{Environment, EvalPlan, Progress, Setting};

use crate::compare::{compare, write_report, CompareReport};
use crate::eval::{evaluate, Evaluated};
use crate::{LabError, ModelSource};

/// The arms' runs, their comparison and the files written.
#[derive(Debug, Clone)]
pub struct Arms {
    /// Each arm's strategy, run folder and evaluation, in order (the baseline first).
    pub runs: Vec<(String, PathBuf, Evaluated)>,
    /// The paired comparison of the arms.
    pub compare: CompareReport,
    /// `compare.json` and the chart of all arms (`compare.svg`/`.png`).
    pub files: Vec<PathBuf>,
}

/// Runs `plan` on `env` once per strategy of `strategies` (the first is the baseline), each in
/// `out/STRATEGY`, then compares them and draws them on one chart into `out`. Every arm takes the plan's tasks,
/// actor and seed; with `Setting::FirstTrialFrom` the arms after the first start from the
/// baseline's first trial (no reflection exists before it, so it cannot differ between them).
pub fn run_arms(
    env: &dyn Environment,
    plan: &EvalPlan,
    strategies: &[&str],
    out: &Path,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<Arms, LabError> {
    if strategies.len() < 2 {
        return Err(LabError::Config(
            "an experiment needs a baseline and at least one arm".into(),
        ));
    }
    let shares = env.spec().settings.contains(&Setting::FirstTrialFrom);
    let mut runs = Vec::new();
    for (i, strategy) in strategies.iter().enumerate() {
        let dir = out.join(strategy);
        let mut p = plan.clone();
        p.strategy = Some(strategy.to_string());
        p.out = dir.clone();
        p.first_trial_from = (i > 0 && shares).then(|| out.join(strategies[0]));
        progress.note(&format!("arm {}: {strategy}", i + 1));
        let done =
            evaluate(env, &p, models, progress).map_err(|e| e.during(format!("arm {strategy}")))?;
        runs.push((strategy.to_string(), dir, done));
    }
    let dirs: Vec<PathBuf> = runs.iter().map(|(_, d, _)| d.clone()).collect();
    let report = compare(&dirs)?;
    let files = write_report(&report, out)?;
    Ok(Arms {
        runs,
        compare: report,
        files,
    })
}
