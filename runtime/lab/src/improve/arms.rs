//! The arms evaluated on the held-out test problems, greedy (the primary endpoint) and
//! sampled (accuracy per sample and pass@k, so that "better" is told from "sharper"), and
//! their paired comparisons with Holm's correction across the arms.

use std::path::{Path, PathBuf};
use std::time::Instant;

use retroformer::agent::files::read_json;
use retroformer::agent::runner::task_path;
use retroformer_envs::math::env::lane_tokens;
use retroformer_envs::math::rise::{self, MathAgent, Mode, RiseConfig, RiseResult};
use retroformer_envs::math::{Dataset, MathProblem};
use retroformer_envs::{Chart, Progress};

use super::{write_report, ArmFigures, Comparison, Ctx, ImproveReport, Score, Splits};
use crate::compare::{paired, Table};
use crate::LabError;

/// The RISE settings of an evaluation: one greedy answer, or `eval_samples` sampled ones.
fn config(ctx: &Ctx<'_>, adapter: Option<&Path>, sampled: bool) -> Result<RiseConfig, LabError> {
    let s = &ctx.plan.settings;
    let mode = if sampled {
        Mode::Parallel
    } else {
        Mode::Sequential
    };
    let mut cfg = RiseConfig::new(Dataset::Gsm8k, mode, &s.model);
    cfg.turns = 1;
    cfg.window = 1;
    cfg.samples = if sampled { s.eval_samples } else { 1 };
    cfg.sequential_temperature = 0.0;
    cfg.parallel_temperature = s.eval_temperature;
    cfg.top_p = s.top_p;
    cfg.max_tokens = s.max_tokens;
    cfg.seed = s.seed;
    cfg.batch = ctx.plan.parallel;
    if let Some(p) = adapter {
        // Named relative to the run folder (or the store's home), so that a run folder
        // copied to another machine resumes with the same settings.
        let home = retroformer::manifest::home_dir();
        let short = p
            .strip_prefix(&ctx.plan.out)
            .or_else(|_| p.strip_prefix(&home))
            .unwrap_or(p);
        cfg.adapter = Some(short.display().to_string());
        cfg.adapter_sha256 = Some(
            retroformer::fetch::sha256_file(p, &retroformer::fetch::Silent)
                .map_err(|e| LabError::file(p, e))?,
        );
    }
    Ok(cfg)
}

/// The evaluation folder's key for `adapter`: `base`, or the start of the file's sha256.
fn key(cfg: &RiseConfig) -> String {
    cfg.adapter_sha256
        .as_deref()
        .map_or("base".into(), |s| s[..16.min(s.len())].to_string())
}

/// Evaluates the actor with `adapter` on `problems` into `OUT/SPLIT/KEY-greedy|sampled/`
/// (resumed; a finished one loads no model): the results in order and this run's wall time.
pub(super) fn evaluate(
    ctx: &Ctx<'_>,
    problems: &[MathProblem],
    adapter: Option<&Path>,
    sampled: bool,
    split: &str,
    progress: &mut dyn Progress,
) -> Result<(Vec<RiseResult>, Option<f64>), LabError> {
    let cfg = config(ctx, adapter, sampled)?;
    let kind = if sampled { "sampled" } else { "greedy" };
    let out = ctx
        .plan
        .out
        .join(split)
        .join(format!("{}-{kind}", key(&cfg)));
    retroformer::agent::files::claim_run_folder(&out, &cfg)?.map_err(LabError::Config)?;
    let mut wall = None;
    if !problems.iter().all(|p| task_path(&out, 0, &p.id).exists()) {
        let per = if sampled { cfg.samples } else { 1 };
        let wanted = ctx.plan.parallel.min(
            u32::try_from(problems.len())
                .unwrap_or(u32::MAX)
                .saturating_mul(per),
        );
        let (model, mut session) =
            ctx.session(adapter, wanted, lane_tokens(1, cfg.max_tokens), progress)?;
        let mut agent = MathAgent {
            model: model.as_ref(),
            session: session.as_mut(),
        };
        progress.note(&format!(
            "evaluate {kind} {} on {} {split} problems into {}",
            adapter.map_or("base".into(), |p| p.display().to_string()),
            problems.len(),
            out.display()
        ));
        progress.total(problems.len() as u64);
        let start = Instant::now();
        rise::run(problems, &cfg, &out, &mut agent, |r| {
            let all: Vec<&rise::Attempt> = r.sequential.iter().chain(&r.parallel).collect();
            let right = all.iter().filter(|a| a.reward >= 1.0).count();
            progress.done(&format!("{}: {right}/{} right", r.problem_id, all.len()));
        })?;
        wall = Some(start.elapsed().as_secs_f64());
    }
    let mut results = Vec::with_capacity(problems.len());
    for p in problems {
        let path = task_path(&out, 0, &p.id);
        let r: RiseResult =
            read_json(&path)?.ok_or_else(|| LabError::file(&path, "missing after the run"))?;
        results.push(r);
    }
    Ok((results, wall))
}

fn answers(r: &RiseResult) -> impl Iterator<Item = &rise::Attempt> {
    r.sequential.iter().chain(&r.parallel)
}

/// The score of one evaluation's results.
pub(crate) fn score(results: &[RiseResult], sampled: bool) -> Score {
    let all: Vec<&rise::Attempt> = results.iter().flat_map(answers).collect();
    let n = all.len().max(1) as f64;
    let right = all.iter().filter(|a| a.reward >= 1.0).count();
    let parsable = all.iter().filter(|a| a.answer.is_some()).count();
    let tokens: u64 = all.iter().map(|a| u64::from(a.generated_tokens)).sum();
    Score {
        problems: results.len(),
        answers: all.len(),
        accuracy: right as f64 / n,
        parsable: parsable as f64 / n,
        accuracy_parsable: right as f64 / parsable.max(1) as f64,
        pass_at_k: sampled.then(|| {
            results.iter().filter(|r| solved(r)).count() as f64 / results.len().max(1) as f64
        }),
        mean_tokens: tokens as f64 / n,
        wall_s: None,
        run: PathBuf::new(),
    }
}

pub(super) fn solved(r: &RiseResult) -> bool {
    answers(r).any(|a| a.reward >= 1.0)
}

/// Holm's step-down adjustment of `p` (in the given order).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// The arms: the base, each round's installed adapter (`rR-s1`), round 1's other seeds and
/// its placebo; names and adapter files (relative to the output folder).
fn arm_list(report: &ImproveReport) -> Vec<(String, Option<PathBuf>)> {
    let mut out = vec![("base".to_string(), None)];
    for r in &report.rounds {
        for t in &r.train {
            if r.round == 1 || t.name == "s1" {
                out.push((format!("r{}-{}", r.round, t.name), Some(t.adapter.clone())));
            }
        }
    }
    out
}

/// Whether `arm` is evaluated sampled too (`last`: the last round's `s1`).
fn wants_sampled(report: &ImproveReport, arm: &str) -> bool {
    let last = report.rounds.len();
    report.settings.eval_samples > 0
        && report
            .settings
            .sampled_arms
            .iter()
            .any(|a| a == arm || (a == "last" && arm == format!("r{last}-s1")))
}

// long: each arm's two evaluations in turn, then the comparisons; a few lines each.
/// Evaluates every arm (greedy first for all, then sampled), then the comparisons and the
/// chart; `improve.json` is rewritten after each evaluation.
pub(super) fn evaluate_arms(
    ctx: &Ctx<'_>,
    report: &mut ImproveReport,
    splits: &Splits,
    progress: &mut dyn Progress,
) -> Result<(), LabError> {
    let arms = arm_list(report);
    for sampled in [false, true] {
        for (name, adapter) in &arms {
            if sampled && !wants_sampled(report, name) {
                continue;
            }
            let path = adapter.as_ref().map(|a| ctx.plan.out.join(a));
            let (results, wall) = evaluate(
                ctx,
                &splits.test,
                path.as_deref(),
                sampled,
                "eval",
                progress,
            )
            .map_err(|e| e.during(format!("evaluate {name}")))?;
            let cfg = config(ctx, path.as_deref(), sampled)?;
            let kind = if sampled { "sampled" } else { "greedy" };
            let score = Score {
                run: Path::new("eval").join(format!("{}-{kind}", key(&cfg))),
                ..score(&results, sampled)
            };
            let i = match report.arms.iter().position(|a| &a.name == name) {
                Some(i) => i,
                None => {
                    report.arms.push(ArmFigures {
                        name: name.clone(),
                        adapter: adapter.clone(),
                        greedy: None,
                        sampled: None,
                    });
                    report.arms.len() - 1
                }
            };
            let slot = if sampled {
                &mut report.arms[i].sampled
            } else {
                &mut report.arms[i].greedy
            };
            let wall_s = wall.or(slot.as_ref().and_then(|s| s.wall_s));
            *slot = Some(Score { wall_s, ..score });
            write_report(&ctx.plan.out, report)?;
        }
    }
    report.comparisons = comparisons(ctx, report, splits)?;
    write_report(&ctx.plan.out, report)?;
    draw(report, &ctx.plan.out)?;
    Ok(())
}

/// Each problem's outcome in an arm's saved evaluation: greedy correct, or (sampled) pass@k.
fn outcomes(ctx: &Ctx<'_>, run: &Path, problems: &[MathProblem]) -> Result<Vec<bool>, LabError> {
    let dir = ctx.plan.out.join(run);
    problems
        .iter()
        .map(|p| {
            let path = task_path(&dir, 0, &p.id);
            let r: RiseResult =
                read_json(&path)?.ok_or_else(|| LabError::file(&path, "missing"))?;
            Ok(solved(&r))
        })
        .collect()
}

/// Every arm against the base, the trained arms against the placebo and each round against
/// the one before, greedy; the same for pass@k where both arms were sampled. Holm across the
/// comparisons of each metric. The primary (round 1's first seed against the base, greedy)
/// comes first.
fn comparisons(
    ctx: &Ctx<'_>,
    report: &ImproveReport,
    splits: &Splits,
) -> Result<Vec<Comparison>, LabError> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let names: Vec<&str> = report.arms.iter().map(|a| a.name.as_str()).collect();
    for n in names.iter().filter(|n| **n != "base") {
        pairs.push(("base", n));
    }
    if names.contains(&"r1-placebo") {
        for n in names
            .iter()
            .filter(|n| n.ends_with("-s1") || n.ends_with("-s2"))
        {
            pairs.push(("r1-placebo", n));
        }
    }
    for r in 2..=report.rounds.len() {
        let (a, b) = (format!("r{}-s1", r - 1), format!("r{r}-s1"));
        if let (Some(a), Some(b)) = (
            names.iter().find(|n| **n == a),
            names.iter().find(|n| **n == b),
        ) {
            pairs.push((a, b));
        }
    }
    let mut out = Vec::new();
    for sampled in [false, true] {
        let metric = if sampled {
            format!("pass@{}", report.settings.eval_samples)
        } else {
            "greedy".into()
        };
        let mut family = Vec::new();
        for (a, b) in &pairs {
            let run = |n: &str| {
                let arm = report.arms.iter().find(|x| x.name == n)?;
                let s = if sampled { &arm.sampled } else { &arm.greedy };
                s.as_ref().map(|s| s.run.clone())
            };
            let (Some(ra), Some(rb)) = (run(a), run(b)) else {
                continue;
            };
            let ta = outcomes(ctx, &ra, &splits.test)?;
            let tb = outcomes(ctx, &rb, &splits.test)?;
            family.push(Comparison {
                name: format!("{b} - {a}"),
                metric: metric.clone(),
                paired: paired(0, Table::of(&ta, &tb)),
                p_holm: f64::NAN,
            });
        }
        let adjusted = holm(&family.iter().map(|c| c.paired.p_value).collect::<Vec<_>>());
        for (c, p) in family.iter_mut().zip(adjusted) {
            c.p_holm = p;
        }
        out.extend(family);
    }
    // The primary first.
    out.sort_by_key(|c| !(c.name == "r1-s1 - base" && c.metric == "greedy"));
    Ok(out)
}

/// `accuracy.svg`/`.png`: greedy accuracy (and sampled pass@k) by round, the placebo beside.
fn draw(report: &ImproveReport, out: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut series = Vec::new();
    let by_round = |f: &dyn Fn(&ArmFigures) -> Option<f64>| -> Vec<(f64, f64)> {
        report
            .arms
            .iter()
            .filter_map(|a| {
                let round = if a.name == "base" {
                    0.0
                } else if a.name.ends_with("-s1") {
                    a.name[1..a.name.find('-')?].parse::<f64>().ok()?
                } else {
                    return None;
                };
                Some((round, f(a)?))
            })
            .collect()
    };
    series.push((
        "greedy".to_string(),
        by_round(&|a| a.greedy.as_ref().map(|s| s.accuracy)),
    ));
    series.push((
        format!("pass@{}", report.settings.eval_samples),
        by_round(&|a| a.sampled.as_ref().and_then(|s| s.pass_at_k)),
    ));
    for a in report
        .arms
        .iter()
        .filter(|a| a.name == "r1-placebo" || a.name == "r1-s2")
    {
        if let Some(g) = &a.greedy {
            series.push((format!("{} greedy", a.name), vec![(1.0, g.accuracy)]));
        }
    }
    let chart = Chart {
        stem: "accuracy".into(),
        title: format!(
            "Expert iteration, {}: GSM8K test accuracy by round ({} problems)",
            report.settings.model, report.settings.eval_problems
        ),
        x_label: "round (0: base)".into(),
        y_label: "accuracy".into(),
        series: series.into_iter().filter(|(_, p)| !p.is_empty()).collect(),
    };
    crate::eval::draw(&chart, out)
}
