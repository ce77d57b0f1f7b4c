//! `retroformer improve`: expert iteration on GSM8K. Rounds of collect (the actor, base plus
//! the active adapter, samples chains on train problems; a wrong answer is retried after being
//! told so), verify (the checker keeps correct, distinct answers, at most a few a problem),
//! train (an SFT LoRA by `retroformer-train` in a child process; held-out loss on the dev
//! split's answers, early stop, best step exported), install (the actor's adapter store),
//! canary (greedy on the dev split: promoted only if not worse) - then the arms evaluated on
//! held-out test problems: base, each round's adapter, round 1's other LoRA seeds and the
//! placebo (as many of the model's own answers, drawn without regard to correctness), greedy
//! and sampled, compared problem by problem.
//!
//! Splits: dev = the first `dev_problems` train problems (never trained on); collection = the
//! next `train_problems`; evaluation = test problems `eval_skip..eval_skip + eval_problems`,
//! used for no choice. Round r trains a fresh LoRA on the base with every round's correct
//! answers so far (STaR restarts from the base each iteration).
//!
//! Every phase's files are written atomically and kept: a stopped run resumes problem by
//! problem and phase by phase. `OUT/improve.json` is rewritten as each phase ends.

use std::path::{Path, PathBuf};
use std::time::Instant;

use retroformer::adapters::AdapterStore;
use retroformer::agent::files::{self, read_json, write_json};
use retroformer_envs::math::env::lane_tokens;
use retroformer_envs::math::expert::{self, Collected, ExpertConfig};
use retroformer_envs::math::rise::{self, MathAgent};
use retroformer_envs::math::{self, Dataset, MathProblem};
use retroformer_envs::Progress;
use retroformer_llm::{LanguageModel, Session, SessionOptions};

mod arms;
mod report;
mod slice;
mod train;

pub use arms::holm;
pub use report::{
    ArmFigures, CanaryFigures, CollectFigures, Comparison, DataFigures, ImproveReport,
    ImproveSettings, RoundFigures, Score, TrainFigures, FORMAT_VERSION, KIND,
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
    let base = retroformer::backend::resolve(&s.model, None)?;
    let (store, base_header) = actor_store(&base)?;
    let ctx = Ctx {
        plan,
        models,
        store,
        base_path: base.path.clone(),
        base_header,
    };
    let splits = Splits::load(s)?;
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
            .round(&mut report, idx, &splits, progress)
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
    arms::evaluate_arms(&ctx, &mut report, &splits, progress)?;
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

fn write_report(out: &Path, report: &ImproveReport) -> Result<(), LabError> {
    Ok(write_json(&out.join("improve.json"), report)?)
}

/// The problems of each split.
struct Splits {
    dev: Vec<MathProblem>,
    train: Vec<MathProblem>,
    test: Vec<MathProblem>,
}

impl Splits {
    fn load(s: &ImproveSettings) -> Result<Self, LabError> {
        let all = math::env::load(Dataset::Gsm8k, s.train_data.as_deref(), "train")?;
        let need = s.dev_problems + s.train_problems;
        if all.len() < need {
            return Err(LabError::setting(
                "train",
                format!(
                    "{} dev and {} train problems: the train split has {}",
                    s.dev_problems,
                    s.train_problems,
                    all.len()
                ),
            ));
        }
        let test = math::env::load(Dataset::Gsm8k, s.eval_data.as_deref(), "test")?;
        if test.len() < s.eval_skip + s.eval_problems {
            return Err(LabError::setting(
                "eval",
                format!(
                    "{} problems after {}: the test split has {}",
                    s.eval_problems,
                    s.eval_skip,
                    test.len()
                ),
            ));
        }
        Ok(Self {
            dev: all[..s.dev_problems].to_vec(),
            train: all[s.dev_problems..need].to_vec(),
            test: test[s.eval_skip..s.eval_skip + s.eval_problems].to_vec(),
        })
    }
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
    if s.lora_seeds.is_empty() {
        return bad("lora-seeds", "needs at least one seed");
    }
    if !(s.epochs.is_finite() && s.epochs > 0.0) || s.batch == 0 || s.eval_every == 0 {
        return bad("epochs", "--batch and --eval-every must be positive");
    }
    if !(s.margin.is_finite() && s.margin >= 0.0) {
        return bad("margin", "must be 0 or more");
    }
    for a in &s.sampled_arms {
        if !["base", "r1-s1", "r1-placebo", "last"].contains(&a.as_str()) {
            return Err(LabError::setting(
                "sampled-arms",
                format!("{a}: known arms are base, r1-s1, r1-placebo, last"),
            ));
        }
    }
    Ok(())
}

impl Ctx<'_> {
    /// One round's phases, each skipped when its figures are saved; whether the candidate was
    /// promoted.
    fn round(
        &self,
        report: &mut ImproveReport,
        idx: usize,
        splits: &Splits,
        progress: &mut dyn Progress,
    ) -> Result<bool, LabError> {
        let r = idx as u32 + 1;
        let dir = self.plan.out.join(format!("round-{r}"));
        let policy = report.rounds[idx].policy.clone();
        let (collected, wall_s) = self.collect(&dir, policy.as_deref(), splits, progress)?;
        let figures = collect_figures(&collected, splits.dev.len(), wall_s);
        let round = &mut report.rounds[idx];
        if round.collect.is_none() || wall_s.is_some() {
            round.collect = Some(figures);
        }
        let (dev, train) = collected.split_at(splits.dev.len());
        round.data = Some(self.data(&dir, r, dev, train)?);
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
        let canary = self.canary(&id, splits, progress)?;
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

    /// Loads the actor with `adapter` on, in a session of `lanes` lanes of `per_lane` tokens.
    fn session(
        &self,
        adapter: Option<&Path>,
        lanes: u32,
        per_lane: u32,
        progress: &mut dyn Progress,
    ) -> Result<Loaded, LabError> {
        let model = self.models.load(&self.plan.settings.model)?;
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

    /// Dev and train problems collected with the policy (`round-R/collect/`, resumed); their
    /// results in order (dev first) and this run's wall time (`None` when all were saved).
    fn collect(
        &self,
        dir: &Path,
        policy: Option<&str>,
        splits: &Splits,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<Collected>, Option<f64>), LabError> {
        let s = &self.plan.settings;
        let (adapter, sha) = self.adapter(policy)?;
        let cfg = ExpertConfig {
            dataset: Dataset::Gsm8k,
            model: s.model.clone(),
            adapter_sha256: sha,
            chains: s.chains,
            retries: s.retries,
            temperature: s.temperature,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            seed: s.seed,
            format_version: expert::FORMAT_VERSION,
        };
        let problems: Vec<MathProblem> = splits.dev.iter().chain(&splits.train).cloned().collect();
        let out = dir.join("collect");
        let found = expert::saved(&problems, &cfg, &out)?;
        let saved = found.iter().flatten().count();
        progress.note(&format!(
            "collect: {} problems ({} dev), {} chains, {} retries, into {} ({saved} saved)",
            problems.len(),
            splits.dev.len(),
            s.chains,
            s.retries,
            out.display()
        ));
        progress.total(problems.len() as u64);
        if saved == problems.len() {
            // A finished collection needs no model.
            let all: Vec<Collected> = found.into_iter().flatten().collect();
            all.iter().for_each(|c| progress.done(&chains_line(c)));
            return Ok((all, None));
        }
        let start = Instant::now();
        let wanted = self
            .plan
            .parallel
            .min((problems.len() * s.chains as usize) as u32);
        let (model, mut session) = self.session(
            adapter.as_deref(),
            wanted,
            lane_tokens(2, s.max_tokens),
            progress,
        )?;
        let mut agent = MathAgent {
            model: model.as_ref(),
            session: session.as_mut(),
        };
        let all = expert::collect(&problems, &cfg, &out, &mut agent, |c| {
            progress.done(&chains_line(c))
        })?;
        Ok((all, Some(start.elapsed().as_secs_f64())))
    }
}

/// A problem's rewards, chain by chain (`0>1 1 -1>0`).
fn chains_line(c: &Collected) -> String {
    let r: Vec<String> = c
        .chains
        .iter()
        .map(|ch| {
            ch.iter()
                .map(|a| a.reward.to_string())
                .collect::<Vec<_>>()
                .join(">")
        })
        .collect();
    format!("{}: {}", c.problem_id, r.join(" "))
}

mod phases;
use phases::collect_figures;

#[cfg(test)]
mod tests;
