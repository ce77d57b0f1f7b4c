//! One RISE round as one resumable command: rollouts on GSM8K's train split (turn 1 sampled,
//! then best-of-n from the learner or a teacher, stopping at a correct answer) ->
//! reward-weighted samples -> `retroformer-train rwr` (a LoRA, a child process) -> the base
//! and the trained adapter evaluated on test problems with the same seeds -> a paired report
//! (`round.json`) and a chart of accuracy by turn (`turns.svg`/`.png`).
//!
//! Every phase writes its files atomically and is skipped when they are there: a stopped
//! round goes on where it stopped. Training and evaluation problems come from different
//! splits (train and test), so nothing is tuned on evaluation tasks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use retroformer::agent::files::{read_json, write_json, write_jsonl};
use retroformer_core::records::{RiseSample, TrainingLog};
use retroformer_envs::math::env::{lane_tokens, GSM8K};
use retroformer_envs::math::rise::{
    self, Candidates, Criterion, MathAgent, RiseResult, RolloutConfig,
};
use retroformer_envs::math::{self, Dataset};
use retroformer_envs::{Chart, EvalPlan, Options, Progress};
use retroformer_llm::SessionOptions;

use crate::child::{run_child, trainer};
use crate::compare::{paired, Table, TrialComparison};
use crate::{LabError, ModelSource};

/// Format version of `round.json`.
pub const FORMAT_VERSION: u32 = 1;
/// `round.json`'s `kind`.
pub const KIND: &str = "rise-round";

/// A round's settings (saved in `round.json`; a folder holding a round with other settings is
/// refused rather than mixed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSettings {
    /// The learner (a manifest name or a GGUF path).
    pub model: String,
    /// A model that samples turns 2 on (distillation); `None`: the learner (self-distillation).
    pub teacher: Option<String>,
    /// GSM8K train problems rolled out (the first N).
    pub train_problems: usize,
    /// GSM8K test problems evaluated (the first N).
    pub eval_problems: usize,
    /// Another train file (GSM8K JSONL).
    pub train_data: Option<PathBuf>,
    /// Another test file.
    pub eval_data: Option<PathBuf>,
    /// Candidates per rollout turn (the last repeats): `[1, 4]` samples turn 1 once, then
    /// keeps the best of 4.
    pub samples: Vec<u32>,
    /// Most rollout turns.
    pub rollout_turns: u32,
    /// RISE's context window (turns each turn's context holds, itself included).
    pub window: usize,
    /// Temperature of every sampled attempt, rollouts and evaluation.
    pub temperature: f32,
    /// Top-p of every sampled attempt.
    pub top_p: f32,
    /// Where later rollout turns' candidates are sampled.
    pub candidates: Candidates,
    /// Temperature and top-p of the rollouts (data generation), when not the evaluation's.
    pub rollout_sampling: Option<(f32, f32)>,
    /// Tokens per attempt.
    pub max_tokens: u32,
    /// Seed of rollouts, evaluation and the data's shuffle.
    pub seed: u32,
    /// Which rollout turns become samples (`better`, ...).
    pub criterion: String,
    /// Weights exp(reward / tau).
    pub tau: f64,
    /// Every k-th rolled-out problem's samples are held out for the held-out loss (0: none).
    pub heldout_every: usize,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha.
    pub alpha: f32,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the training samples (bounds the steps).
    pub epochs: f64,
    /// Samples per step.
    pub batch: usize,
    /// Longest training sequence in tokens.
    pub max_len: usize,
    /// The trainer's burn backend.
    pub backend: String,
    /// Evaluation: sequential turns.
    pub turns: u32,
    /// Evaluation: parallel samples (m5@t1).
    pub parallel_samples: u32,
    /// Evaluation: problems decoded together.
    pub eval_batch: u32,
}

/// A round to run.
pub struct RoundPlan {
    /// The settings.
    pub settings: RoundSettings,
    /// The round's folder.
    pub out: PathBuf,
}

/// The rollouts phase in figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutFigures {
    /// Problems rolled out.
    pub problems: usize,
    /// Rollouts that end correct.
    pub solved: usize,
    /// Samples each criterion would keep.
    pub by_criterion: std::collections::BTreeMap<String, usize>,
    /// Attempts generated.
    pub attempts: usize,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Decoding time, seconds (each turn's batch counted once).
    pub decode_s: f64,
    /// `generated_tokens / decode_s`.
    pub tokens_per_s: f64,
}

/// The training phase in figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainFigures {
    /// Training samples.
    pub samples: usize,
    /// Held-out samples.
    pub heldout_samples: usize,
    /// Optimiser steps.
    pub steps: u64,
    /// Loss of the first and the last step.
    pub loss: [f64; 2],
    /// Tokens the trainer evaluated per second (forward and backward).
    pub tokens_per_s: f64,
    /// Wall time of the training process, seconds (this run's, when it was not resumed).
    pub wall_s: Option<f64>,
    /// The adapter.
    pub adapter: String,
}

/// One arm's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmFigures {
    /// Problems.
    pub problems: usize,
    /// `m1@t1`, `m5@t1`, `m1@t5`, `p1@t5`.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Accuracy at each sequential turn.
    pub accuracy_by_turn: Vec<f64>,
    /// Consecutive sequential turns whose answers differ, of all consecutive pairs.
    pub changed: f64,
    /// Pairs going from a wrong answer to a right one.
    pub wrong_to_right: f64,
    /// Pairs going from a right answer to a wrong one.
    pub right_to_wrong: f64,
    /// The evaluation's folder.
    pub run: String,
}

/// `round.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// The settings.
    pub settings: RoundSettings,
    /// Rollouts.
    pub rollouts: Option<RolloutFigures>,
    /// Training.
    pub train: Option<TrainFigures>,
    /// The base model.
    pub base: Option<ArmFigures>,
    /// The base model with the trained adapter.
    pub trained: Option<ArmFigures>,
    /// Trained minus base, per metric, paired by problem.
    pub paired: std::collections::BTreeMap<String, TrialComparison>,
    /// Trained model's `m1@t5 - m1@t1`, paired by problem.
    pub self_correction: Option<TrialComparison>,
}

impl RoundReport {
    /// The report in a few lines.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = &self.rollouts {
            out.push(format!(
                "rollouts: {} train problems, {} end correct, {} attempts at {:.1} tokens/s; samples by criterion {:?}",
                r.problems, r.solved, r.attempts, r.tokens_per_s, r.by_criterion
            ));
        }
        if let Some(t) = &self.train {
            out.push(format!(
                "train: {} samples ({} held out), {} steps, loss {:.4} -> {:.4}, {:.1} tokens/s",
                t.samples, t.heldout_samples, t.steps, t.loss[0], t.loss[1], t.tokens_per_s
            ));
        }
        for (name, arm) in [("base", &self.base), ("trained", &self.trained)] {
            if let Some(a) = arm {
                out.push(format!(
                    "{name}: {:?} over {} problems; answers change in {:.3} of turns, wrong->right {:.3}, right->wrong {:.3}",
                    a.metrics, a.problems, a.changed, a.wrong_to_right, a.right_to_wrong
                ));
            }
        }
        for (k, c) in &self.paired {
            out.push(format!(
                "trained - base, {k}: {:+.3}, exact interval [{:+.3}, {:+.3}], McNemar p {:.3}",
                c.difference, c.exact_interval[0], c.exact_interval[1], c.p_value
            ));
        }
        if let Some(c) = &self.self_correction {
            out.push(format!(
                "trained m1@t5 - m1@t1: {:+.3}, exact interval [{:+.3}, {:+.3}], McNemar p {:.3}",
                c.difference, c.exact_interval[0], c.exact_interval[1], c.p_value
            ));
        }
        out
    }
}

/// Runs (or resumes) `plan`: rollouts, data, training, both evaluations, the report.
pub fn run_round(
    plan: &RoundPlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<RoundReport, LabError> {
    let s = &plan.settings;
    check(s)?;
    std::fs::create_dir_all(&plan.out).map_err(|e| LabError::file(&plan.out, e))?;
    let path = plan.out.join("round.json");
    let mut report = match read_json::<RoundReport>(&path)? {
        Some(r) if r.settings == *s => r,
        Some(_) => {
            return Err(LabError::Config(format!(
                "{} holds a round with other settings: use another --out",
                path.display()
            )))
        }
        None => RoundReport {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            settings: s.clone(),
            rollouts: None,
            train: None,
            base: None,
            trained: None,
            paired: Default::default(),
            self_correction: None,
        },
    };
    report.rollouts = Some(rollouts(plan, models, progress)?);
    write_json(&path, &report)?;
    let (samples, heldout) = dataset(plan)?;
    let trained = train(plan, samples.len(), heldout.len(), progress)?;
    // A resumed round keeps the wall time its training measured.
    let wall_s = trained
        .wall_s
        .or(report.train.as_ref().and_then(|t| t.wall_s));
    report.train = Some(TrainFigures { wall_s, ..trained });
    write_json(&path, &report)?;
    let adapter = plan.out.join("adapter.gguf");
    let base = evaluate(plan, "base", None, models, progress)?;
    let trained = evaluate(plan, "trained", Some(&adapter), models, progress)?;
    report.base = Some(arm(&base, &plan.out.join("eval-base")));
    report.trained = Some(arm(&trained, &plan.out.join("eval-trained")));
    report.paired = paired_metrics(&base, &trained)?;
    report.self_correction = Some(self_correction(&trained));
    write_json(&path, &report)?;
    draw(&report, &plan.out)?;
    Ok(report)
}

fn check(s: &RoundSettings) -> Result<(), LabError> {
    let bad = |flag: &str, why: &str| Err(LabError::setting(flag, why.to_string()));
    if s.train_problems == 0 || s.eval_problems == 0 {
        return bad("train", "and --eval need at least one problem each");
    }
    if s.samples.is_empty() {
        return bad("samples", "needs at least one count");
    }
    for &n in &s.samples {
        rise::check_counts(1, n).map_err(|(flag, why)| LabError::setting(flag, why))?;
    }
    rise::check_sampling(s.window, s.temperature, s.top_p)
        .map_err(|(flag, why)| LabError::setting(flag, why))?;
    if let Some((t, p)) = s.rollout_sampling {
        rise::check_sampling(s.window, t, p)
            .map_err(|(flag, why)| LabError::setting(&format!("rollout-{flag}"), why))?;
    }
    crate::child::check_training(s.rank, s.alpha, s.lr, s.max_len)?;
    rise::check_max_tokens(s.max_tokens).map_err(|(flag, why)| LabError::setting(flag, why))?;
    if Criterion::parse(&s.criterion).is_none() {
        return bad("criteria", "known criteria are all, better, best, success");
    }
    if !(s.epochs.is_finite() && s.epochs > 0.0) || s.batch == 0 {
        return bad("epochs", "and --batch must be positive");
    }
    if s.turns == 0 || s.parallel_samples == 0 || s.eval_batch == 0 || s.rollout_turns == 0 {
        return bad(
            "turns",
            "--rollout-turns, --samples-eval and --eval-batch must be at least 1",
        );
    }
    rise::check_counts(s.turns, s.parallel_samples)
        .map_err(|(flag, why)| LabError::setting(flag, why))?;
    rise::check_counts(s.rollout_turns, 1)
        .map_err(|(_, why)| LabError::setting("rollout-turns", why))?;
    Ok(())
}

/// Rollouts on the train split (`rollouts/`), resumed problem by problem.
fn rollouts(
    plan: &RoundPlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<RolloutFigures, LabError> {
    let s = &plan.settings;
    let mut problems = math::env::load(Dataset::Gsm8k, s.train_data.as_deref(), "train")?;
    problems.truncate(s.train_problems);
    let mut names = vec![s.model.clone()];
    names.extend(s.teacher.clone());
    let cfg = RolloutConfig {
        dataset: Dataset::Gsm8k,
        models: names.clone(),
        samples: s.samples.clone(),
        turns: s.rollout_turns,
        window: s.window,
        temperature: s.rollout_sampling.map_or(s.temperature, |r| r.0),
        top_p: s.rollout_sampling.map_or(s.top_p, |r| r.1),
        max_tokens: s.max_tokens,
        seed: s.seed,
        format_version: rise::FORMAT_VERSION,
        candidates: s.candidates,
    };
    let dir = plan.out.join("rollouts");
    // A turn's candidates are decoded together; with one model, beside other problems'.
    let mut most = s.samples.iter().copied().max().unwrap_or(1);
    if names.len() == 1 {
        most = most.max(retroformer_envs::DEFAULT_PARALLEL);
    }
    let profile = models.profile();
    let loaded = names
        .iter()
        .map(|n| models.load(n))
        .collect::<Result<Vec<_>, _>>()?;
    // Every model's session gets as many lanes: their caches share the memory.
    let per_token = loaded
        .iter()
        .map(|m| m.kv_bytes_per_token())
        .sum::<Option<u64>>();
    let cells = profile.batch_cells(per_token, retroformer_core::rss::available_bytes());
    let (lanes, ctx) = profile.lanes(most, lane_tokens(s.window, s.max_tokens), cells);
    let opts = SessionOptions {
        context_size: Some(if lanes > 1 {
            ctx
        } else {
            profile.context_size.max(4096)
        }),
        threads: models.threads(),
        sequences: Some(lanes),
    };
    let mut sessions = loaded
        .iter()
        .map(|m| m.session(&opts))
        .collect::<Result<Vec<_>, _>>()?;
    let mut solvers: Vec<MathAgent<'_>> = loaded
        .iter()
        .zip(sessions.iter_mut())
        .map(|(m, s)| MathAgent {
            model: m.as_ref(),
            session: s.as_mut(),
        })
        .collect();
    progress.note(&format!(
        "rise round: rollouts of {} train problems into {}",
        problems.len(),
        dir.display()
    ));
    progress.total(problems.len() as u64);
    let all = rise::collect_all(&problems, &cfg, &dir, &mut solvers, |r| {
        let rewards: Vec<String> = r.turns.iter().map(|t| t.reward.to_string()).collect();
        progress.done(&format!("{}: {}", r.problem_id, rewards.join(" ")));
    })?;
    Ok(rollout_figures(&all))
}

fn rollout_figures(all: &[rise::Rollout]) -> RolloutFigures {
    let turns = all.iter().flat_map(|r| &r.turns);
    let (mut attempts, mut tokens, mut ms) = (0usize, 0u64, 0f64);
    for t in turns {
        attempts += t.candidates.len();
        tokens += t
            .candidates
            .iter()
            .map(|c| u64::from(c.generated_tokens))
            .sum::<u64>();
        // A turn's candidates decode together: its time is the last one's.
        ms += t.candidates.iter().map(|c| c.ms).fold(0.0, f64::max);
    }
    let decode_s = ms / 1e3;
    RolloutFigures {
        problems: all.len(),
        solved: all
            .iter()
            .filter(|r| r.turns.last().is_some_and(|t| t.reward >= 1.0))
            .count(),
        by_criterion: rise::criterion_counts(all),
        attempts,
        generated_tokens: tokens,
        decode_s,
        tokens_per_s: if decode_s > 0.0 {
            tokens as f64 / decode_s
        } else {
            0.0
        },
    }
}

/// `train.jsonl` and `heldout.jsonl` from the rollouts: every `heldout_every`-th problem (in
/// id order) held out, so no problem is in both. The training and the held-out samples.
type Split = (Vec<RiseSample>, Vec<RiseSample>);

fn dataset(plan: &RoundPlan) -> Result<Split, LabError> {
    let s = &plan.settings;
    let criterion = Criterion::parse(&s.criterion)
        .ok_or_else(|| LabError::setting("criteria", format!("{}: unknown", s.criterion)))?;
    let all = rise::read_rollouts(&plan.out.join("rollouts"))?;
    let k = s.heldout_every;
    let held: std::collections::BTreeSet<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| k > 0 && i % k == k - 1)
        .map(|(_, r)| r.problem_id.as_str())
        .collect();
    let samples = rise::to_dataset(&all, criterion, s.tau, u64::from(s.seed))?;
    let (heldout, train): (Vec<RiseSample>, Vec<RiseSample>) = samples
        .into_iter()
        .partition(|x| held.contains(x.problem_id.as_str()));
    if train.is_empty() {
        return Err(LabError::Config(format!(
            "the rollouts gave no training sample under criterion {}: roll out more problems (--train)",
            s.criterion
        )));
    }
    write_jsonl(&plan.out.join("train.jsonl"), &train)?;
    write_jsonl(&plan.out.join("heldout.jsonl"), &heldout)?;
    Ok((train, heldout))
}

/// `retroformer-train rwr` on `train.jsonl` (skipped when `adapter.gguf` and its log exist;
/// a stopped run resumes from its checkpoint).
fn train(
    plan: &RoundPlan,
    samples: usize,
    heldout: usize,
    progress: &mut dyn Progress,
) -> Result<TrainFigures, LabError> {
    let s = &plan.settings;
    let adapter = plan.out.join("adapter.gguf");
    let log_path = plan.out.join("adapter.log.json");
    let data = plan.out.join("train.jsonl");
    let steps = ((s.epochs * samples as f64) / s.batch as f64)
        .ceil()
        .max(1.0) as u64;
    let mut wall_s = None;
    if !(adapter.exists() && log_path.exists()) {
        let base = retroformer::backend::resolve(&s.model, None)?.path;
        let mut cmd = trainer();
        cmd.args(["rwr", "--base"])
            .arg(&base)
            .arg("--data")
            .arg(&data)
            .args(["--steps", &steps.to_string()])
            .args(["--warmup", &(steps / 10).to_string()])
            .args(["--batch", &s.batch.to_string()])
            .args(["--rank", &s.rank.to_string()])
            .args(["--alpha", &s.alpha.to_string()])
            .args(["--lr", &s.lr.to_string()])
            .args(["--max-len", &s.max_len.to_string()])
            .args(["--seed", &s.seed.to_string()])
            .args(["--backend", &s.backend])
            .args(["--checkpoint-every", "10", "--quiet"]);
        if heldout > 0 {
            cmd.arg("--eval-data").arg(plan.out.join("heldout.jsonl"));
        }
        cmd.arg("--out").arg(&adapter);
        progress.note(&format!(
            "rise round: training {samples} samples, {steps} steps ({cmd:?})"
        ));
        wall_s = Some(run_child("rise round: train", &mut cmd)?.0);
    }
    let log: TrainingLog = read_json(&log_path)?
        .ok_or_else(|| LabError::file(&log_path, "the trainer wrote no log"))?;
    let tokens: u64 = log.steps.iter().map(|t| t.tokens).sum();
    let secs: f64 = log.steps.iter().map(|t| t.seconds).sum();
    Ok(TrainFigures {
        samples,
        heldout_samples: heldout,
        steps: log.steps.last().map_or(0, |t| t.step),
        loss: [
            log.steps.first().map_or(f64::NAN, |t| t.loss),
            log.steps.last().map_or(f64::NAN, |t| t.loss),
        ],
        tokens_per_s: if secs > 0.0 {
            tokens as f64 / secs
        } else {
            0.0
        },
        wall_s,
        adapter: adapter.display().to_string(),
    })
}

/// One arm evaluated on the test problems (`eval-NAME/`, resumed) through the registry's
/// GSM8K environment; its per-problem results in problem order.
fn evaluate(
    plan: &RoundPlan,
    name: &str,
    adapter: Option<&Path>,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<Vec<RiseResult>, LabError> {
    let s = &plan.settings;
    let out = plan.out.join(format!("eval-{name}"));
    let mut options = Options::default();
    let mut set = |k: &str, v: String| options.0.insert(k.into(), v);
    set("mode", "both".into());
    set("turns", s.turns.to_string());
    set("window", s.window.to_string());
    set("samples", s.parallel_samples.to_string());
    set("temperature", s.temperature.to_string());
    set("top-p", s.top_p.to_string());
    set("max-tokens", s.max_tokens.to_string());
    set("seed", s.seed.to_string());
    set("batch", s.eval_batch.to_string());
    if let Some(a) = adapter {
        set("adapter", a.display().to_string());
    }
    let eval_plan = EvalPlan {
        out: out.clone(),
        actor: s.model.clone(),
        reflector: "actor".into(),
        data: s.eval_data.clone(),
        limit: Some(s.eval_problems),
        options,
        ..EvalPlan::default()
    };
    progress.note(&format!(
        "rise round: evaluating {name} into {}",
        out.display()
    ));
    crate::eval::evaluate(&GSM8K, &eval_plan, models, progress)?;
    let mut results = Vec::new();
    for p in math::env::load(Dataset::Gsm8k, s.eval_data.as_deref(), "test")?
        .iter()
        .take(s.eval_problems)
    {
        let path = retroformer::agent::runner::task_path(&out, 0, &p.id);
        let r: RiseResult =
            read_json(&path)?.ok_or_else(|| LabError::file(&path, "missing after the run"))?;
        results.push(r);
    }
    Ok(results)
}

/// The metrics of one problem as outcomes, by name.
fn outcomes(r: &RiseResult) -> [(&'static str, bool); 4] {
    let m = &r.metrics;
    let yes = |v: Option<f64>| v.is_some_and(|x| x >= 1.0);
    [
        ("m1@t1", yes(m.m1_t1)),
        ("m5@t1", yes(m.m5_t1)),
        ("m1@t5", yes(m.m1_t5)),
        ("p1@t5", yes(m.p1_t5)),
    ]
}

fn arm(results: &[RiseResult], run: &Path) -> ArmFigures {
    let n = results.len().max(1) as f64;
    let mut metrics = std::collections::BTreeMap::new();
    for r in results {
        for (k, v) in outcomes(r) {
            *metrics.entry(k.to_string()).or_insert(0.0) += f64::from(u8::from(v)) / n;
        }
    }
    let turns = results
        .iter()
        .map(|r| r.sequential.len())
        .max()
        .unwrap_or(0);
    let accuracy_by_turn = rise::summarize(results, turns as u32).accuracy_by_turn;
    let (mut pairs, mut changed, mut up, mut down) = (0usize, 0usize, 0usize, 0usize);
    for r in results {
        for w in r.sequential.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            pairs += 1;
            changed += usize::from(a.answer != b.answer);
            up += usize::from(a.reward < 1.0 && b.reward >= 1.0);
            down += usize::from(a.reward >= 1.0 && b.reward < 1.0);
        }
    }
    let share = |x: usize| x as f64 / pairs.max(1) as f64;
    ArmFigures {
        problems: results.len(),
        metrics,
        accuracy_by_turn,
        changed: share(changed),
        wrong_to_right: share(up),
        right_to_wrong: share(down),
        run: run.display().to_string(),
    }
}

/// Trained minus base for each metric, paired by problem.
fn paired_metrics(
    base: &[RiseResult],
    trained: &[RiseResult],
) -> Result<std::collections::BTreeMap<String, TrialComparison>, LabError> {
    if base.is_empty()
        || base
            .iter()
            .map(|r| &r.problem_id)
            .ne(trained.iter().map(|r| &r.problem_id))
    {
        return Err(LabError::Config(
            "the base and trained evaluations hold different problems (or none)".into(),
        ));
    }
    let mut out = std::collections::BTreeMap::new();
    for (i, (name, _)) in outcomes(&base[0]).iter().enumerate() {
        let a: Vec<bool> = base.iter().map(|r| outcomes(r)[i].1).collect();
        let b: Vec<bool> = trained.iter().map(|r| outcomes(r)[i].1).collect();
        out.insert(name.to_string(), paired(0, Table::of(&a, &b)));
    }
    Ok(out)
}

/// `m1@t5 - m1@t1` of one arm, paired by problem (the self-correction RISE claims).
fn self_correction(results: &[RiseResult]) -> TrialComparison {
    let a: Vec<bool> = results.iter().map(|r| outcomes(r)[0].1).collect();
    let b: Vec<bool> = results.iter().map(|r| outcomes(r)[2].1).collect();
    paired(0, Table::of(&a, &b))
}

/// `turns.svg`/`.png`: accuracy by turn, base and trained.
fn draw(report: &RoundReport, out: &Path) -> Result<Vec<PathBuf>, LabError> {
    let line = |label: &str, a: &Option<ArmFigures>| {
        let points = a.as_ref().map_or(Vec::new(), |a| {
            a.accuracy_by_turn
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, *v))
                .collect()
        });
        (label.to_string(), points)
    };
    let s = &report.settings;
    let chart = Chart {
        stem: "turns".into(),
        title: format!(
            "RISE round, {}: accuracy by turn ({} test problems, T={})",
            s.model, s.eval_problems, s.temperature
        ),
        x_label: "turn".into(),
        y_label: "accuracy".into(),
        series: vec![line("base", &report.base), line("trained", &report.trained)],
    };
    crate::eval::draw(&chart, out)
}

#[cfg(test)]
mod tests;
