//! `retroformer improve`: expert iteration, on GSM8K or in the household. Rounds of collect
//! (the actor, base plus the active adapter, samples chains on train tasks; on GSM8K a wrong
//! answer is retried after being told so; in the household a teacher model may collect round
//! 1), verify (the checker keeps successful, distinct attempts, at most a few a task), train (an
//! SFT LoRA by `retroformer-train` in a child process; held-out loss on the dev split's
//! successes, early stop, best step exported), install (the actor's adapter store), canary
//! (greedy on the dev split: promoted only if not worse) - then the arms evaluated on held-out
//! test tasks: base, each round's adapter, round 1's other LoRA seeds and the placebo (as many
//! of the model's own attempts, drawn without regard to success), greedy and sampled, compared
//! task by task. What differs between environments is behind [`env::ImproveEnv`].
//!
//! Splits: dev = the first `dev_problems` train tasks (never trained on); collection = the
//! next `train_problems`; evaluation = test tasks `eval_skip..eval_skip + eval_problems`,
//! used for no choice. Round r trains a fresh LoRA on the base with every round's successes so
//! far (STaR restarts from the base each iteration).
//!
//! Every phase's files are written atomically and kept: a stopped run resumes task by task
//! and phase by phase. `OUT/improve.json` is rewritten as each phase ends.

use std::path::{Path, PathBuf};

use retroformer::adapters::AdapterStore;
use retroformer::agent::files::{self, read_json, write_json};
use retroformer::provenance::provenance_in;
use retroformer_envs::math::rise;
use retroformer_envs::Progress;
use retroformer_llm::{LanguageModel, Session, SessionOptions};

mod arms;
mod env;
mod gsm8k;
mod household;
mod report;
mod slice;
mod train;

pub use env::ENVS;

pub use arms::holm;
pub use report::{
    ArmFigures, CanaryFigures, CollectFigures, Comparison, DataFigures, EpisodeFigures,
    ImproveReport, ImproveSettings, RoundFigures, Score, TrainFigures, TypeTally, FORMAT_VERSION,
    KEEP, KIND,
};
pub use slice::{
    run_slice, shown_adapter, Example, SliceArm, SlicePlan, SliceReport, SLICE_FORMAT_VERSION,
    SLICE_KIND,
};

use crate::{LabError, ModelSource};

/// A run to make.
#[derive(Debug, Clone)]
pub struct ImprovePlan {
    /// The settings.
    pub settings: ImproveSettings,
    /// Rounds (a resumed run may run more).
    pub rounds: u32,
    /// Requests decoded together (capped by memory).
    pub parallel: u32,
    /// The output folder.
    pub out: PathBuf,
}

/// A loaded actor and its session.
type Loaded = (Box<dyn LanguageModel>, Box<dyn Session>);

/// What every phase needs.
struct Ctx<'a> {
    plan: &'a ImprovePlan,
    env: &'a dyn env::ImproveEnv,
    models: &'a dyn ModelSource,
    store: AdapterStore,
    base_path: PathBuf,
    base_header: retroformer_gguf::GgufFile,
}

/// Runs (or resumes) `plan`; the finished report.
pub fn run_improve(
    plan: &ImprovePlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<ImproveReport, LabError> {
    let s = &plan.settings;
    check(plan)?;
    std::fs::create_dir_all(&plan.out).map_err(|e| LabError::file(&plan.out, e))?;
    files::lock_run_folder(&plan.out)?;
    files::check_run_tree(&plan.out)?;
    let path = plan.out.join("improve.json");
    let mut report = match read_json::<ImproveReport>(&path)? {
        Some(r) if r.settings == *s => r,
        Some(mut r) if only_sampling_widened(&r, s) => {
            r.settings = s.clone();
            r
        }
        Some(r) => {
            return Err(LabError::Config(format!(
                "{} holds a run with other settings ({}); use another --out",
                path.display(),
                retroformer::agent::files::setting_differences(
                    &serde_json::to_value(&r.settings).unwrap_or_default(),
                    &serde_json::to_value(s).unwrap_or_default(),
                    "now"
                )
                .join("; ")
            )))
        }
        None => ImproveReport {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            settings: s.clone(),
            rounds: Vec::new(),
            arms: Vec::new(),
            comparisons: Vec::new(),
        },
    };
    let env = env::load(s)?;
    let base = models.resolve(&s.model)?;
    let (store, base_header) = actor_store(&base)?;
    let ctx = Ctx {
        plan,
        env: env.as_ref(),
        models,
        store,
        base_path: base.path.clone(),
        base_header,
    };
    ctx.restore_store(&report)?;
    for r in 1..=plan.rounds {
        let idx = r as usize - 1;
        if report.rounds.len() <= idx {
            report.rounds.push(RoundFigures {
                round: r,
                policy: incumbent(&report.rounds[..idx]),
                collect: None,
                data: None,
                train: Vec::new(),
                installed: None,
                canary: None,
            });
        }
        let promoted = ctx
            .round(&mut report, idx, progress)
            .map_err(|e| e.during(format!("round {r}")))?;
        if !promoted {
            progress.note(&format!(
                "round {r}: the canary kept the incumbent; no further round"
            ));
            break;
        }
    }
    // The store ends with the run's last promoted adapter active (or none).
    ctx.make_active(incumbent(&report.rounds).as_deref())?;
    arms::evaluate_arms(&ctx, &mut report, progress)?;
    write_report(&plan.out, &report)?;
    Ok(report)
}

/// The actor's adapter store for `base` (beside the reflector's, which holds other adapters
/// of the same base model) and the base's validated header.
fn actor_store(
    base: &retroformer::backend::Resolved,
) -> Result<(AdapterStore, retroformer_gguf::GgufFile), LabError> {
    let (reflector, header) = AdapterStore::for_model(base)?;
    let home = retroformer::manifest::home_dir().join("actor");
    Ok((
        AdapterStore::for_base(&home, reflector.base_sha256())?,
        header,
    ))
}

/// The adapter that `rounds` (those before a round) last promoted: the policy that round
/// collects with and the incumbent its canary faces. Taken from `improve.json`, never from the
/// store's state, which other runs on the machine share.
fn incumbent(rounds: &[RoundFigures]) -> Option<String> {
    rounds
        .iter()
        .rev()
        .find(|r| r.canary.as_ref().is_some_and(|c| c.promoted))
        .and_then(|r| r.installed.clone())
}

/// Whether a saved run may go on under `now`: the settings differ only in how many answers
/// a problem the sampled evaluation draws and which arms it covers (`eval_samples`,
/// `sampled_arms`), and nothing has been evaluated sampled yet. No collection, training or
/// greedy evaluation reads those, so a finished greedy run can add its sampled arms later.
/// `eval_temperature` may not change: GSM8K's greedy evaluation folders record it too.
fn only_sampling_widened(saved: &ImproveReport, now: &ImproveSettings) -> bool {
    let as_before = ImproveSettings {
        eval_samples: saved.settings.eval_samples,
        sampled_arms: saved.settings.sampled_arms.clone(),
        ..now.clone()
    };
    as_before == saved.settings && saved.arms.iter().all(|a| a.sampled.is_none())
}

fn write_report(out: &Path, report: &ImproveReport) -> Result<(), LabError> {
    Ok(write_json(&out.join("improve.json"), report)?)
}

fn check(plan: &ImprovePlan) -> Result<(), LabError> {
    let s = &plan.settings;
    let bad = |flag: &str, why: &str| Err(LabError::setting(flag, why.to_string()));
    if plan.rounds == 0 || s.train_problems == 0 || s.dev_problems == 0 || s.eval_problems == 0 {
        return bad(
            "rounds",
            "--train, --dev and --eval must be at least 1 (and --rounds)",
        );
    }
    if s.chains == 0 || s.per_problem == 0 || plan.parallel == 0 {
        return bad("chains", "--per-problem and --parallel must be at least 1");
    }
    // Each chain and sample is an attempt kept in memory until its problem ends.
    for (flag, n) in [("chains", s.chains), ("eval-samples", s.eval_samples)] {
        if n > rise::MAX_SAMPLES {
            return bad(flag, &format!("{n}: must be at most {}", rise::MAX_SAMPLES));
        }
    }
    if s.temperature <= 0.0 {
        return bad(
            "temperature",
            "must be above 0: collection samples (greedy chains would repeat)",
        );
    }
    rise::check_sampling(1, s.temperature, s.top_p)
        .map_err(|(flag, why)| LabError::setting(flag, why))?;
    rise::check_sampling(1, s.eval_temperature, s.top_p)
        .map_err(|(flag, why)| LabError::setting(&format!("eval-{flag}"), why))?;
    crate::child::check_training(s.rank, s.alpha, s.lr, s.max_len)?;
    rise::check_max_tokens(s.max_tokens).map_err(|(flag, why)| LabError::setting(flag, why))?;
    if s.lora_seeds.is_empty() {
        return bad("lora-seeds", "needs at least one seed");
    }
    if !(s.epochs.is_finite() && s.epochs > 0.0) || s.batch == 0 || s.eval_every == 0 {
        return bad("epochs", "--batch and --eval-every must be positive");
    }
    if !(s.margin.is_finite() && s.margin >= 0.0) {
        return bad("margin", "must be 0 or more");
    }
    if !KEEP.contains(&s.keep.as_str()) {
        return Err(LabError::setting(
            "keep",
            format!("{}: one of {}", s.keep, KEEP.join(", ")),
        ));
    }
    for a in &s.sampled_arms {
        if !["base", "r1-s1", "r1-placebo", "last"].contains(&a.as_str()) {
            return Err(LabError::setting(
                "sampled-arms",
                format!("{a}: known arms are base, r1-s1, r1-placebo, last"),
            ));
        }
    }
    check_env(s)
}

/// What one environment takes and the other does not.
fn check_env(s: &ImproveSettings) -> Result<(), LabError> {
    let bad = |flag: &str, why: String| Err(LabError::setting(flag, why));
    if !ENVS.contains(&s.env.as_str()) {
        return bad(
            "env",
            format!("{}: known environments are {}", s.env, ENVS.join(", ")),
        );
    }
    if s.env == "gsm8k" {
        if s.collect_model.is_some() {
            return bad(
                "collect-model",
                "a teacher collects in the household only (--env household)".into(),
            );
        }
        return Ok(());
    }
    if s.retries > 0 {
        return bad(
            "retries",
            format!("{}: a household episode is not retried (use 0)", s.retries),
        );
    }
    for (flag, file) in [("train-data", &s.train_data), ("eval-data", &s.eval_data)] {
        if file.is_some() {
            return bad(
                flag,
                "the household's tasks are generated, not read from a file".into(),
            );
        }
    }
    Ok(())
}

/// A collection's figures counted anew from its files (a newer build may count more), with the
/// wall time of the last process that collected when this one found everything saved.
fn recounted(old: Option<CollectFigures>, new: CollectFigures) -> CollectFigures {
    match (old, new.wall_s) {
        (Some(old), None) => CollectFigures {
            wall_s: old.wall_s,
            wall_tasks: old.wall_tasks,
            ..new
        },
        _ => new,
    }
}

impl Ctx<'_> {
    /// One round's phases, each skipped when its figures are saved; whether the candidate was
    /// promoted.
    fn round(
        &self,
        report: &mut ImproveReport,
        idx: usize,
        progress: &mut dyn Progress,
    ) -> Result<bool, LabError> {
        let r = idx as u32 + 1;
        let dir = self.plan.out.join(format!("round-{r}"));
        let policy = report.rounds[idx].policy.clone();
        let (figures, data) = self
            .env
            .experience(self, &dir, r, policy.as_deref(), progress)?;
        // Every environment collects into `dir/collect/` (ImproveEnv::experience).
        let time = provenance_in(&dir.join("collect"))?.time;
        let round = &mut report.rounds[idx];
        round.collect = Some(CollectFigures {
            time,
            ..recounted(round.collect.take(), figures)
        });
        // The collection's figures are kept even when there is nothing to train on.
        write_report(&self.plan.out, report)?;
        report.rounds[idx].data = Some(data?);
        write_report(&self.plan.out, report)?;
        for (name, data) in self.trainings(r) {
            let old = report.rounds[idx].train.iter().position(|t| t.name == name);
            let t = train::train(self, &dir, &name, &data, progress)?;
            let round = &mut report.rounds[idx];
            match old {
                // A resumed run keeps the wall time its training measured.
                Some(i) => {
                    round.train[i] = TrainFigures {
                        wall_s: t.wall_s.or(round.train[i].wall_s),
                        ..t
                    }
                }
                None => round.train.push(t),
            }
            write_report(&self.plan.out, report)?;
        }
        if let Some(c) = &report.rounds[idx].canary {
            return Ok(c.promoted);
        }
        let candidate = report.rounds[idx]
            .train
            .iter()
            .find(|t| t.name == "s1")
            .map(|t| t.adapter.clone())
            .ok_or_else(|| LabError::Config("no s1 adapter trained".into()))?;
        let id = self.install(&self.plan.out.join(&candidate))?;
        progress.note(&format!("round {r}: installed {id}"));
        report.rounds[idx].installed = Some(id.clone());
        write_report(&self.plan.out, report)?;
        self.make_active(incumbent(&report.rounds[..idx]).as_deref())?;
        let canary = self.canary(&id, progress)?;
        let promoted = canary.promoted;
        progress.note(&format!(
            "round {r} canary: candidate {:.3}, incumbent {:.3}: {}",
            canary.candidate_score,
            canary.incumbent_score,
            if promoted { "promoted" } else { "kept" }
        ));
        report.rounds[idx].canary = Some(canary);
        write_report(&self.plan.out, report)?;
        Ok(promoted)
    }

    /// Installs the adapters `report` says were installed but this machine's store lacks (a
    /// run folder resumed elsewhere) from the run folder's files.
    fn restore_store(&self, report: &ImproveReport) -> Result<(), LabError> {
        for r in &report.rounds {
            let Some(id) = &r.installed else { continue };
            if self.store.manifest(id).is_ok() {
                continue;
            }
            let file = self.plan.out.join(format!("round-{}/s1.gguf", r.round));
            if !file.is_file() {
                return Err(LabError::file(
                    &file,
                    format!(
                        "improve.json records this adapter as round {}'s installed {id}, but the file is missing and this machine's store lacks it; restore it (a run's adapters are committed with its folder) to resume",
                        r.round
                    ),
                ));
            }
            let got = self.install(&file)?;
            if &got != id {
                return Err(LabError::file(
                    &file,
                    format!("installs as {got}, not as {id}, the id improve.json records"),
                ));
            }
        }
        Ok(())
    }

    /// Makes `id` the store's active adapter (`None`: the base alone).
    fn make_active(&self, id: Option<&str>) -> Result<(), LabError> {
        match id {
            Some(id) => self.store.activate(id)?,
            None if self.store.active()?.is_some() => self.store.deactivate()?,
            None => {}
        }
        Ok(())
    }

    /// The trainings of round `r`: data file stem and adapter name.
    fn trainings(&self, r: u32) -> Vec<(String, String)> {
        let s = &self.plan.settings;
        let seeds = if r == 1 { s.lora_seeds.len() } else { 1 };
        let mut out: Vec<(String, String)> = (1..=seeds)
            .map(|i| (format!("s{i}"), "train".to_string()))
            .collect();
        if r == 1 && s.placebo {
            out.push(("placebo".into(), "placebo".into()));
        }
        out
    }

    /// Loads `model` (the actor, or a teacher) with `adapter` on, in a session of `lanes`
    /// lanes of `per_lane` tokens.
    fn session(
        &self,
        model: &str,
        adapter: Option<&Path>,
        lanes: u32,
        per_lane: u32,
        progress: &mut dyn Progress,
    ) -> Result<Loaded, LabError> {
        let model = self.models.load(model)?;
        let profile = self.models.profile();
        let cells = profile.batch_cells(
            model.kv_bytes_per_token(),
            retroformer_core::rss::available_bytes(),
        );
        let (lanes, ctx) = profile.lanes(lanes.max(1), per_lane, cells);
        let mut session = model.session(&SessionOptions {
            context_size: Some(ctx),
            threads: self.models.threads(),
            sequences: Some(lanes),
        })?;
        if let Some(p) = adapter {
            let h = model.load_adapter(p)?;
            session.set_adapter(Some((h, 1.0)))?;
            progress.note(&format!("adapter: {}", p.display()));
        }
        Ok((model, session))
    }

    /// The store's verified file of adapter `id`, and its sha256.
    fn adapter(&self, id: Option<&str>) -> Result<(Option<PathBuf>, Option<String>), LabError> {
        match id {
            None => Ok((None, None)),
            Some(id) => Ok((
                Some(self.store.verified_adapter(id)?),
                Some(self.store.manifest(id)?.sha256),
            )),
        }
    }
}

mod phases;

#[cfg(test)]
mod tests;
