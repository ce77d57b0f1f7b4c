//! The canary: an installed adapter, as the reflector, against the active one (or the base
//! alone) on held-out tasks of an environment; the store's policy promotes it or keeps the
//! incumbent.

use std::path::PathBuf;

use retroformer::adapters::{AdapterStore, CanaryReport};
use retroformer_envs::{EvalPlan, Progress, Registry, Setting};

use crate::eval::evaluate;
use crate::{LabError, ModelSource};

/// What a canary compares, and on what.
#[derive(Debug, Clone)]
pub struct CanaryPlan {
    /// The candidate's id in the store.
    pub candidate: String,
    /// The reflector's base model, whose store holds the adapters.
    pub base: String,
    /// The environment.
    pub env: String,
    /// The actor (default: the base model itself).
    pub actor: Option<String>,
    /// Leave out the first `skip` tasks (those used for training).
    pub skip: usize,
    /// Held-out tasks to evaluate on.
    pub limit: usize,
    /// The split (environments with splits; default: their first, the evaluation split).
    pub split: Option<String>,
    /// Trials (or iterations) per task.
    pub trials: u32,
    /// The step limit (default: the environment's).
    pub max_steps: Option<u32>,
    /// Another data file.
    pub data: Option<PathBuf>,
    /// Promote when candidate >= incumbent - margin.
    pub margin: f64,
    /// Where the two evaluations go (default: the store's `canary/ID` folder).
    pub out: Option<PathBuf>,
    /// Take both evaluations' first trial from the run in this folder.
    pub first_trial_from: Option<PathBuf>,
    /// Episodes at once.
    pub parallel: u32,
}

/// The canary's verdict and where its evaluations are.
#[derive(Debug, Clone)]
pub struct CanaryOutcome {
    /// The verdict.
    pub report: CanaryReport,
    /// The folder of both evaluations.
    pub out: PathBuf,
}

/// Runs the canary of `plan`: the incumbent's evaluation, then the candidate's, both with
/// Reflexion and the base model as the reflector; the candidate is activated when it is not
/// worse than the incumbent by more than the margin. Environments that share a first trial
/// run it once (the second evaluation takes the first's): before any reflection the
/// reflector cannot change it.
pub fn canary(
    registry: &Registry,
    plan: &CanaryPlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<CanaryOutcome, LabError> {
    let env = registry.get(&plan.env)?;
    let spec = env.spec();
    if !spec.reflexion {
        return Err(LabError::setting(
            "env",
            format!(
                "{}: the canary runs environments with Reflexion trials",
                plan.env
            ),
        ));
    }
    if plan.trials == 0 || plan.limit == 0 {
        return Err(LabError::setting(
            "trials",
            "and --limit must be at least 1",
        ));
    }
    if !plan.margin.is_finite() || plan.margin < 0.0 {
        return Err(LabError::setting(
            "margin",
            format!("{}: must be a number >= 0", plan.margin),
        ));
    }
    let shares = spec.settings.contains(&Setting::FirstTrialFrom);
    if plan.first_trial_from.is_some() && !shares {
        return Err(LabError::setting(
            "first-trial-from",
            format!("the {} canary has no first trial to share", plan.env),
        ));
    }
    let base = models.resolve(&plan.base)?;
    let (store, _) = AdapterStore::for_model(&base)?;
    if store.active()?.is_some_and(|m| m.id == plan.candidate) {
        return Err(LabError::setting(
            "candidate",
            format!(
                "{} is already the active adapter: nothing to compare it with",
                plan.candidate
            ),
        ));
    }
    let out = plan
        .out
        .clone()
        .unwrap_or_else(|| store.root().join("canary").join(&plan.candidate));
    let actor = plan.actor.clone().unwrap_or_else(|| plan.base.clone());
    let mut first_trial_from = plan.first_trial_from.clone();
    let mut eval = |adapter: Option<&std::path::Path>| -> Result<f64, String> {
        let name = adapter
            .and_then(|p| p.parent())
            .and_then(|d| d.file_name())
            .map_or("base".to_string(), |n| n.to_string_lossy().to_string());
        let dir = out.join(&name);
        let mut p = held_out(plan, &spec, &actor, &dir);
        p.reflector_adapter = adapter.map(|a| a.display().to_string());
        p.first_trial_from = first_trial_from.clone().filter(|_| shares);
        let done = evaluate(env, &p, models, progress).map_err(|e| format!("{name}: {e}"))?;
        if first_trial_from.is_none() && shares {
            first_trial_from = Some(dir.clone());
        }
        match (done.report.tasks, done.report.score) {
            (0, _) => Err(format!(
                "{name}: no held-out task was evaluated (--skip {} leaves none)",
                plan.skip
            )),
            (_, Some(score)) => Ok(score),
            (_, None) => Err(format!("{name}: the run has no score")),
        }
    };
    let report = store.canary(&plan.candidate, plan.margin, &mut eval)?;
    Ok(CanaryOutcome { report, out })
}

/// The evaluation plan of one canary arm (its adapter and first trial set by the caller).
fn held_out(
    plan: &CanaryPlan,
    spec: &retroformer_envs::Spec,
    actor: &str,
    dir: &std::path::Path,
) -> EvalPlan {
    let takes = |s: Setting| spec.settings.contains(&s);
    let split = if takes(Setting::Split) {
        plan.split
            .clone()
            .or(spec.splits.first().map(|s| s.to_string()))
    } else {
        None
    };
    EvalPlan {
        out: dir.to_path_buf(),
        actor: actor.into(),
        reflector: plan.base.clone(),
        strategy: Some("reflexion".into()),
        trials: Some(plan.trials),
        memory: takes(Setting::Memory).then_some(3),
        max_steps: plan.max_steps.filter(|_| takes(Setting::MaxSteps)),
        parallel: takes(Setting::Parallel).then_some(plan.parallel),
        data: plan.data.clone().filter(|_| takes(Setting::Data)),
        skip: plan.skip,
        split,
        limit: Some(plan.limit),
        ..EvalPlan::default()
    }
}
