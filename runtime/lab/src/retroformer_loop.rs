//! The Retroformer loop: rounds of collect (Reflexion trials with the current reflector on the
//! training tasks, rating every reflection), train (SFT of the reflector on the well-rated
//! reflections, by `retroformer-train` in a child process), install (into the base model's
//! adapter store), canary (held-out tasks; the store promotes or keeps the incumbent).
//!
//! `OUT/loop.json` ([`LoopReport`]) is rewritten as each phase ends. A resumed loop keeps the
//! phases whose figures are saved, runs the interrupted one again on its own output (marked
//! `resumed`), and keeps the reflector each round started with. The first trial runs once:
//! before any reflection the reflector cannot change it, so later rounds' collections take
//! round 1's, and every canary takes round 1's first canary evaluation's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use retroformer::adapters::AdapterStore;
use retroformer::agent::files::{read_json, setting_differences};
use retroformer_core::records::{RatingRecord, TrainingLog};
use retroformer_core::rss;
use retroformer_envs::{EvalPlan, Progress, Registry, Setting, Spec};

mod report;

pub use report::{
    CanaryFigures, Collect, CollectArm, Export, LoopReport, LoopSettings, Round, Train,
};

use crate::canary::{canary, CanaryPlan};
use crate::child::{run_child, trainer};
use crate::eval::evaluate;
use crate::{LabError, ModelSource};

/// What a loop runs.
#[derive(Debug, Clone)]
pub struct LoopPlan {
    /// The loop's settings (saved in `loop.json`; a resumed loop must keep them).
    pub settings: LoopSettings,
    /// Rounds (a resumed loop may run more).
    pub rounds: u32,
    /// Step limit of an episode (default: the environment's).
    pub max_steps: Option<u32>,
    /// Another data file.
    pub data: Option<PathBuf>,
    /// Episodes at once in collection and canary.
    pub parallel: u32,
    /// The trainer's burn backend (`flex`, `ndarray`, ...).
    pub backend: String,
    /// The output folder.
    pub out: PathBuf,
}

/// Runs (or resumes) the loop of `plan`; the finished report.
pub fn run_loop(
    registry: &Registry,
    plan: &LoopPlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<LoopReport, LabError> {
    let s = &plan.settings;
    let spec = check(registry, plan)?;
    let env = registry.get(&s.env)?;
    let saved = check_saved(plan)?;
    let base = models.resolve(&s.base)?;
    std::fs::create_dir_all(&plan.out).map_err(|e| LabError::file(&plan.out, e))?;
    let (store, base_header) = AdapterStore::for_model(&base)?;
    let mut report = LoopReport {
        format_version: 1,
        settings: s.clone(),
        rounds: Vec::new(),
    };
    let ctx = Ctx {
        registry,
        plan,
        spec: &spec,
        env,
        models,
        store: &store,
        base_path: &base.path,
    };
    for r in 1..=plan.rounds {
        let old = saved.get(r as usize - 1);
        // The reflector a round started with, even when a resumed loop finds another one
        // active (its own canary may have promoted one before the kill).
        let active = match old {
            Some(o) => o.reflector_adapter.clone(),
            None => store.active()?.map(|m| m.id),
        };
        let mut round = Round {
            round: r,
            reflector_adapter: active,
            collect: None,
            stopped: None,
            train: None,
            export: None,
            canary: None,
        };
        let save = |round: &Round, report: &LoopReport| -> Result<(), LabError> {
            let mut all = report.clone();
            all.rounds.push(round.clone());
            write_report(&plan.out, &all)
        };
        save(&round, &report)?;
        let dir = plan.out.join(format!("round-{r}"));
        std::fs::create_dir_all(&dir).map_err(|e| LabError::file(&dir, e))?;
        round.collect = Some(match old.and_then(|o| o.collect.clone()) {
            Some(c) => c,
            None => ctx
                .collect(r, round.reflector_adapter.as_deref(), progress)
                .map_err(|e| e.during(format!("round {r}: collect")))?,
        });
        // The adapter each round so far claims to have collected with (its sha256).
        let mut claimed = Vec::new();
        for id in report
            .rounds
            .iter()
            .map(|x| &x.reflector_adapter)
            .chain([&round.reflector_adapter])
        {
            claimed.push(
                id.as_deref()
                    .map(|i| store.manifest(i))
                    .transpose()?
                    .map(|m| m.sha256),
            );
        }
        let (records, kept) = pool_records(plan, r, &claimed)?;
        let c = round.collect.as_mut().expect("set above");
        (c.records, c.kept) = (records, kept);
        save(&round, &report)?;
        let min = s.min_sft_examples.unwrap_or(1);
        if kept < min {
            progress.note(&format!(
                "round {r}: {kept} of {records} reflections reached rating {}, fewer than --min-sft-examples {min}: too few to train on; stopping (more per failure: --collect-samples)",
                s.min_reward
            ));
            round.stopped =
                Some("fewer reflections reached --min-reward than --min-sft-examples".into());
            report.rounds.push(round);
            break;
        }
        match old.and_then(|o| o.train.clone().zip(o.export.clone())) {
            Some((t, e)) => (round.train, round.export) = (Some(t), Some(e)),
            None => {
                let (t, e) = ctx
                    .train(r, &dir, progress)
                    .map_err(|e| e.during(format!("round {r}: train")))?;
                (round.train, round.export) = (Some(t), Some(e));
                save(&round, &report)?;
            }
        }
        let id = ctx
            .install(&mut round, &base_header, progress)
            .map_err(|e| e.during(format!("round {r}: install")))?;
        save(&round, &report)?;
        round.canary = Some(match old.and_then(|o| o.canary.clone()) {
            Some(c) => c,
            None => ctx
                .canary(&report, &id, &round, &dir, progress)
                .map_err(|e| e.during(format!("round {r}: canary")))?,
        });
        progress.note(&format!(
            "round {r}: candidate {:?} vs incumbent {:?}, promoted {}",
            round.canary.as_ref().and_then(|c| c.candidate),
            round.canary.as_ref().and_then(|c| c.incumbent),
            round.canary.as_ref().is_some_and(|c| c.promoted)
        ));
        report.rounds.push(round);
        write_report(&plan.out, &report)?;
    }
    write_report(&plan.out, &report)?;
    Ok(report)
}

/// Checks the plan's settings; the environment's spec.
fn check(registry: &Registry, plan: &LoopPlan) -> Result<Spec, LabError> {
    let s = &plan.settings;
    let spec = registry.get(&s.env)?.spec();
    if !spec.reflexion {
        return Err(LabError::setting(
            "env",
            format!(
                "{}: the loop runs environments with Reflexion trials",
                s.env
            ),
        ));
    }
    if plan.rounds == 0 || s.trials < 2 || s.train_tasks == 0 || s.eval_tasks == 0 || s.steps == 0 {
        return Err(LabError::setting(
            "trials",
            "must be at least 2 (a rating needs a next trial), and --rounds, --train-tasks, --eval-tasks and --steps at least 1",
        ));
    }
    if plan.parallel == 0 {
        return Err(LabError::setting("parallel", "must be at least 1"));
    }
    if !(s.margin.is_finite() && s.margin >= 0.0) {
        return Err(LabError::setting(
            "margin",
            format!("{}: must be 0 or more", s.margin),
        ));
    }
    if !s.min_reward.is_finite() {
        return Err(LabError::setting(
            "min-reward",
            format!("{}: must be a number", s.min_reward),
        ));
    }
    if s.lr.is_some_and(|lr| !(lr.is_finite() && lr > 0.0)) {
        return Err(LabError::setting("lr", "must be a positive number"));
    }
    let samples = s.collect_samples.unwrap_or(1);
    if !(1..=1024).contains(&samples) {
        return Err(LabError::setting(
            "collect-samples",
            format!("{samples}: must be 1 to 1024"),
        ));
    }
    if samples > 1 && !spec.settings.contains(&Setting::FirstTrialFrom) {
        return Err(LabError::setting(
            "collect-samples",
            format!("above 1 needs an environment whose collections share one first trial ({} has none)", s.env),
        ));
    }
    let t = s.collect_temperature.unwrap_or(0.7);
    if samples > 1 && !(t.is_finite() && t > 0.0) {
        return Err(LabError::setting(
            "collect-temperature",
            format!("{t}: sampled collections need a positive temperature"),
        ));
    }
    if s.min_sft_examples == Some(0) {
        return Err(LabError::setting("min-sft-examples", "must be at least 1"));
    }
    if let Some(lr) = s.lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err(LabError::setting("lr", format!("{lr}: must be positive")));
    }
    Ok(spec)
}

/// The rounds saved in `OUT/loop.json`, refused when it was written with other settings (more
/// rounds is fine: the loop goes on).
fn check_saved(plan: &LoopPlan) -> Result<Vec<Round>, LabError> {
    let path = plan.out.join("loop.json");
    let saved: Option<serde_json::Value> =
        read_json(&path).map_err(|e| LabError::file(&path, e.message))?;
    let Some(saved) = saved else {
        return Ok(Vec::new());
    };
    let now = serde_json::to_value(&plan.settings).expect("settings serialise");
    let mut then = saved.clone();
    if let Some(m) = then.as_object_mut() {
        m.remove("format_version");
        m.remove("rounds");
    }
    let differ = setting_differences(&then, &now, "now");
    if !differ.is_empty() {
        return Err(LabError::Config(format!(
            "{} holds a loop with other settings ({}); use the same settings or another --out folder",
            path.display(),
            differ.join(", ")
        )));
    }
    let report: LoopReport = serde_json::from_value(saved).map_err(|e| LabError::file(&path, e))?;
    Ok(report.rounds)
}

fn write_report(out: &Path, report: &LoopReport) -> Result<(), LabError> {
    let path = out.join("loop.json");
    let bytes = serde_json::to_vec_pretty(report).expect("the report serialises");
    retroformer_core::fsutil::write_atomic(&path, &bytes).map_err(|e| LabError::file(&path, e))
}

/// The collection folders of round `r`: `collect` (greedy reflections), then `collect-2` ...
/// (sampled ones).
fn collect_dirs(out: &Path, r: u32, samples: u32) -> Vec<PathBuf> {
    let round = out.join(format!("round-{r}"));
    (1..=samples.max(1))
        .map(|k| match k {
            1 => round.join("collect"),
            k => round.join(format!("collect-{k}")),
        })
        .collect()
}

/// Pools every round's rating records so far into `OUT/records-all.jsonl`: (records, kept).
/// `claimed[k - 1]` is the sha256 of the adapter round k collected with (`None`: the base
/// alone); a record that names another is refused.
fn pool_records(
    plan: &LoopPlan,
    r: u32,
    claimed: &[Option<String>],
) -> Result<(usize, usize), LabError> {
    let mut text = String::new();
    let mut ratings = Vec::new();
    for k in 1..=r {
        let want = claimed.get(k as usize - 1).cloned().flatten();
        for d in collect_dirs(&plan.out, k, plan.settings.samples()) {
            let p = d.join("records.jsonl");
            let t = std::fs::read_to_string(&p).map_err(|e| LabError::file(&p, e))?;
            ratings.extend(check_reflector(&t, want.as_deref(), &p)?);
            text.push_str(&t);
        }
    }
    let all = plan.out.join("records-all.jsonl");
    retroformer_core::fsutil::write_atomic(&all, text.as_bytes())
        .map_err(|e| LabError::file(&all, e))?;
    let kept = ratings
        .iter()
        .filter(|&&x| x >= plan.settings.min_reward)
        .count();
    Ok((ratings.len(), kept))
}

/// The ratings of the rating records in `text` (the JSONL of `path`), read once; records
/// written under another adapter than `want` (a sha256; `None`: none) are refused, and so are
/// records that do not say who wrote them (every environment names its reflector).
fn check_reflector(text: &str, want: Option<&str>, path: &Path) -> Result<Vec<f64>, LabError> {
    let mut ratings = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let rec: RatingRecord = serde_json::from_str(line)
            .map_err(|e| LabError::file(path, format!("line {}: {e}", i + 1)))?;
        ratings.push(f64::from(rec.rating));
        let Some(who) = rec.reflector else {
            return Err(LabError::file(
                path,
                format!(
                    "line {}: the record does not say who wrote its reflection, so it cannot be checked against this round's adapter (written by an older version? collect again)",
                    i + 1
                ),
            ));
        };
        if who.adapter_sha256.as_deref() != want {
            return Err(LabError::file(
                path,
                format!(
                    "line {}: a reflection written under adapter {:?}, but this round collected with {:?}",
                    i + 1,
                    who.adapter_sha256,
                    want
                ),
            ));
        }
    }
    Ok(ratings)
}

/// Runs `f` and measures its wall time and this process's peak memory over it.
fn measured<T>(f: impl FnOnce() -> Result<T, LabError>) -> Result<(T, f64, Option<u64>), LabError> {
    let isolated = rss::reset_peak_rss();
    let t = Instant::now();
    let v = f()?;
    let peak = rss::peak_rss_bytes().filter(|_| isolated);
    Ok((v, t.elapsed().as_secs_f64(), peak))
}

/// What the phases of every round share.
struct Ctx<'a> {
    registry: &'a Registry,
    plan: &'a LoopPlan,
    spec: &'a Spec,
    env: &'static dyn retroformer_envs::Environment,
    models: &'a dyn ModelSource,
    store: &'a AdapterStore,
    base_path: &'a Path,
}

impl Ctx<'_> {
    fn takes(&self, s: Setting) -> bool {
        self.spec.settings.contains(&s)
    }

    /// The plan of an evaluation with the base model as the reflector.
    fn eval_plan(&self, out: &Path) -> EvalPlan {
        let s = &self.plan.settings;
        EvalPlan {
            out: out.to_path_buf(),
            actor: s.actor.clone(),
            reflector: s.base.clone(),
            strategy: Some("reflexion".into()),
            trials: Some(s.trials),
            max_steps: self
                .plan
                .max_steps
                .filter(|_| self.takes(Setting::MaxSteps)),
            parallel: self.takes(Setting::Parallel).then_some(self.plan.parallel),
            data: self.plan.data.clone().filter(|_| self.takes(Setting::Data)),
            ..EvalPlan::default()
        }
    }

    /// Round `r`'s collections with the reflector `active`: greedy, then the sampled ones,
    /// which take the greedy one's first trial (later rounds take round 1's).
    fn collect(
        &self,
        r: u32,
        active: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<Collect, LabError> {
        let s = &self.plan.settings;
        let shares = self.takes(Setting::FirstTrialFrom);
        let dirs = collect_dirs(&self.plan.out, r, s.samples());
        let round_one = (r > 1 && shares).then(|| self.plan.out.join("round-1/collect"));
        let mut arms = Vec::new();
        for (k, dir) in dirs.iter().enumerate() {
            let resumed = dir.join("run.json").exists();
            let mut p = self.eval_plan(dir);
            match self.spec.splits.get(1) {
                Some(train) => p.split = Some(train.to_string()),
                None => p.skip = 0,
            }
            p.limit = Some(s.train_tasks);
            // The adapter's file, not `active`: a resumed round keeps its reflector.
            p.reflector_adapter = active
                .map(|id| self.store.verified_adapter(id))
                .transpose()?
                .map(|p| p.display().to_string());
            // Seeds differ between rounds too, so that a round does not draw the reflections
            // of the one before from an unchanged reflector.
            let seed = (r - 1) * s.samples() + k as u32;
            let temperature = s.collect_temperature.unwrap_or(0.7);
            if k > 0 {
                p.reflector_temperature = temperature as f32;
                p.reflector_seed = seed;
            }
            p.first_trial_from = match (&round_one, k) {
                (Some(f), _) => Some(f.clone()),
                (None, 0) => None,
                (None, _) => Some(dirs[0].clone()),
            };
            progress.note(&format!("round {r}: collect {}/{}", k + 1, dirs.len()));
            let (done, wall_s, peak) = measured(|| evaluate(self.env, &p, self.models, progress))?;
            arms.push(CollectArm {
                dir: dir.clone(),
                temperature: if k > 0 { temperature } else { 0.0 },
                seed: (k > 0).then_some(seed),
                success_by_trial: done.report.success_by_trial,
                first_trial_from: p.first_trial_from,
                wall_s,
                peak_rss_bytes: peak,
                resumed,
            });
        }
        let mut first = arms[0].clone();
        first.wall_s = arms.iter().map(|a| a.wall_s).sum();
        first.peak_rss_bytes = arms.iter().filter_map(|a| a.peak_rss_bytes).max();
        first.resumed = arms.iter().any(|a| a.resumed);
        Ok(Collect {
            first,
            samples: if arms.len() > 1 { arms } else { Vec::new() },
            records: 0,
            kept: 0,
        })
    }

    /// Trains the reflector by SFT on the pooled records (`retroformer-train sft`, a child
    /// process) and reads its log.
    fn train(
        &self,
        r: u32,
        dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<(Train, Export), LabError> {
        let s = &self.plan.settings;
        let adapter = dir.join("reflector.gguf");
        let resumed = dir.join("reflector.gguf.ckpt").exists();
        let mut cmd = trainer();
        cmd.args(["sft", "--base"])
            .arg(self.base_path)
            .arg("--data")
            .arg(self.plan.out.join("records-all.jsonl"))
            .arg(format!("--min-reward={}", s.min_reward))
            .args(["--steps", &s.steps.to_string()])
            .args(["--warmup", &(s.steps / 10).to_string()])
            .args(["--batch", "4", "--quiet"])
            .args(s.lr.map(|lr| format!("--lr={lr}")))
            .args(["--backend", &self.plan.backend])
            .arg("--out")
            .arg(&adapter);
        progress.note(&format!("round {r}: train ({cmd:?})"));
        let (wall_s, peak) = run_child(&format!("round {r}: train"), &mut cmd)?;
        let log_path = dir.join("reflector.log.json");
        let log: TrainingLog = read_json(&log_path)
            .map_err(|e| LabError::file(&log_path, e.message))?
            .ok_or_else(|| LabError::file(&log_path, "the trainer wrote no log"))?;
        // The training process ends by exporting the adapter (its log says how long that took).
        let export_s = Some(log.export_ms / 1e3);
        Ok((
            Train {
                adapter,
                steps: s.steps,
                loss_first: log.steps.first().map(|t| t.loss),
                loss_last: log.steps.last().map(|t| t.loss),
                wall_s,
                peak_rss_bytes: peak,
                wall_s_without_export: export_s.map(|e| wall_s - e),
                resumed,
                id: None,
            },
            Export {
                export_s,
                install_wall_s: None,
                install_peak_rss_bytes: None,
            },
        ))
    }

    /// Installs the round's adapter (validated and copied into the store; the same file
    /// again gives the same id); its id.
    fn install(
        &self,
        round: &mut Round,
        base: &retroformer_gguf::GgufFile,
        progress: &mut dyn Progress,
    ) -> Result<String, LabError> {
        let train = round.train.as_mut().expect("trained before installing");
        if let Some(id) = &train.id {
            return Ok(id.clone());
        }
        let (m, wall_s, peak) = measured(|| {
            Ok(self.store.install(
                &train.adapter,
                base,
                &self.plan.settings.base,
                retroformer_gguf::BasePolicy::Recorded,
                &|p| retroformer::backend::active().probe_adapter(self.base_path, p),
            )?)
        })?;
        progress.note(&format!("round {}: installed {}", round.round, m.id));
        train.id = Some(m.id.clone());
        let export = round.export.get_or_insert(Export {
            export_s: None,
            install_wall_s: None,
            install_peak_rss_bytes: None,
        });
        export.install_wall_s = Some(wall_s);
        export.install_peak_rss_bytes = peak;
        Ok(m.id)
    }

    /// The canary of `id` on the held-out tasks; its two evaluations share a first trial with
    /// round 1's first canary evaluation.
    fn canary(
        &self,
        report: &LoopReport,
        id: &str,
        round: &Round,
        dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<CanaryFigures, LabError> {
        let s = &self.plan.settings;
        let metric = |k: &str| -> Result<Option<f64>, LabError> {
            Ok(self.store.manifest(id)?.metrics.get(k).copied())
        };
        let first_trial_from = match report.rounds.first() {
            Some(first) if self.takes(Setting::FirstTrialFrom) => {
                let arm = first.reflector_adapter.as_deref().unwrap_or("base");
                Some(self.plan.out.join("round-1/canary").join(arm))
            }
            _ => None,
        };
        let (wall_s, peak_rss_bytes, resumed) = if metric("canary_score")?.is_some() {
            // A kill after the store recorded the canary's verdict (and perhaps activated the
            // adapter), before this file did: the verdict stands.
            (None, None, true)
        } else {
            let resumed = dir.join("canary").exists();
            let plan = CanaryPlan {
                candidate: id.into(),
                base: s.base.clone(),
                env: s.env.clone(),
                actor: Some(s.actor.clone()),
                skip: if self.spec.splits.is_empty() {
                    s.train_tasks
                } else {
                    0
                },
                limit: s.eval_tasks,
                split: self.spec.splits.first().map(|x| x.to_string()),
                trials: s.trials,
                max_steps: self.plan.max_steps,
                data: self.plan.data.clone(),
                margin: s.margin,
                out: Some(dir.join("canary")),
                first_trial_from: first_trial_from.clone(),
                parallel: self.plan.parallel,
            };
            let (_, wall_s, peak) =
                measured(|| canary(self.registry, &plan, self.models, progress))?;
            (Some(wall_s), peak, resumed)
        };
        Ok(CanaryFigures {
            candidate: metric("canary_score")?,
            incumbent: metric("canary_incumbent_score")?,
            incumbent_id: round.reflector_adapter.clone(),
            promoted: metric("canary_promoted")? == Some(1.0),
            margin: s.margin,
            first_trial_from,
            wall_s,
            peak_rss_bytes,
            resumed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_under_another_adapter_or_naming_no_reflector_are_refused() {
        let rec = |adapter: Option<&str>| {
            let mut r = RatingRecord::new("t", 0, "x", "y", 0.0, 1.0);
            r.reflector = Some(retroformer_core::records::ReflectorInfo {
                model: "m".into(),
                base_sha256: None,
                adapter: adapter.map(|_| "a.gguf".into()),
                adapter_sha256: adapter.map(str::to_string),
                temperature: 0.0,
                seed: 0,
            });
            serde_json::to_string(&r).unwrap()
        };
        let p = Path::new("records.jsonl");
        let old = serde_json::to_string(&RatingRecord::new("t", 0, "x", "y", 0.0, 1.0)).unwrap();
        let named = format!("{}\n{}\n", rec(Some("aa")), rec(Some("aa")));
        assert_eq!(check_reflector(&named, Some("aa"), p).unwrap().len(), 2);
        let e = check_reflector(&named, None, p).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("aa"), "{e}");
        // A record that names no reflector is refused: it could be anyone's.
        let text = format!("{}\n{old}\n", rec(Some("aa")));
        let e = check_reflector(&text, Some("aa"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("who wrote"), "{e}");
        assert!(check_reflector(&rec(None), Some("bb"), p).is_err());
        assert!(check_reflector(&rec(None), None, p).is_ok());
    }
}
