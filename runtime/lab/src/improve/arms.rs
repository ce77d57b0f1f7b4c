//! The arms evaluated on the held-out test problems, greedy (the primary endpoint) and
//! sampled (accuracy per sample and pass@k, so that "better" is told from "sharper"), and
//! their paired comparisons with Holm's correction across the arms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use retroformer::provenance::{one_machine, provenance_in, same_numerics};
use retroformer_envs::{Chart, Progress};

use super::env::{Evaluation, Split};
use super::{write_report, ArmFigures, Comparison, Ctx, ImproveReport};
use crate::compare::{paired, Table};
use crate::LabError;

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
    progress: &mut dyn Progress,
) -> Result<(), LabError> {
    let arms = arm_list(report);
    // Each evaluated arm's outcomes task by task, by name and whether sampled.
    let mut outcomes_of = BTreeMap::new();
    for sampled in [false, true] {
        for (name, adapter) in &arms {
            if sampled && !wants_sampled(report, name) {
                continue;
            }
            let path = adapter.as_ref().map(|a| ctx.plan.out.join(a));
            let Evaluation {
                outcomes,
                score,
                timed,
            } = ctx
                .env
                .evaluate(ctx, Split::Test, path.as_deref(), sampled, progress)
                .map_err(|e| e.during(format!("evaluate {name}")))?;
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
            // Read back from files, an arm keeps the time its last process measured.
            let (wall_s, wall_tasks) = match (timed, slot.as_ref()) {
                (Some(t), _) => (Some(t.wall_s), Some(t.tasks)),
                (None, Some(s)) => (s.wall_s, s.wall_tasks),
                (None, None) => (None, None),
            };
            let made = provenance_in(&ctx.plan.out.join(&score.run))?;
            *slot = Some(super::Score {
                wall_s,
                wall_tasks,
                machines: made.machines,
                numerics: made.numerics,
                time: made.time,
                ..score
            });
            outcomes_of.insert((name.clone(), sampled), outcomes);
            // After every arm: the primary endpoint (base and r1-s1, greedy, the first two)
            // is known hours before the sampled arms are. Holm's family grows with the arms;
            // the last write holds them all.
            report.comparisons = comparisons(report, &outcomes_of);
            write_report(&ctx.plan.out, report)?;
            draw(ctx, report, &ctx.plan.out)?;
        }
    }
    Ok(())
}

/// Every arm against the base, the trained arms against the placebo and each round against
/// the one before, greedy; the same for pass@k where both arms were sampled. Holm across the
/// comparisons of each metric. The primary (round 1's first seed against the base, greedy)
/// comes first.
pub(super) fn comparisons(
    report: &ImproveReport,
    outcomes_of: &BTreeMap<(String, bool), Vec<bool>>,
) -> Vec<Comparison> {
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
            let get = |n: &str| outcomes_of.get(&(n.to_string(), sampled));
            let (Some(ta), Some(tb)) = (get(a), get(b)) else {
                continue;
            };
            let machines = |n: &str| report.machines(n, sampled);
            let numerics = |n: &str| report.score(n, sampled).map_or(&[][..], |s| &s.numerics);
            family.push(Comparison {
                name: format!("{b} - {a}"),
                metric: metric.clone(),
                paired: paired(0, Table::of(ta, tb)),
                p_holm: f64::NAN,
                same_machine: one_machine(machines(a), machines(b)),
                same_numerics: same_numerics(numerics(a), numerics(b)),
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
    out
}

/// `accuracy.svg`/`.png`: greedy accuracy (and sampled pass@k) by round, the placebo beside.
fn draw(ctx: &Ctx<'_>, report: &ImproveReport, out: &Path) -> Result<Vec<PathBuf>, LabError> {
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
            "Expert iteration, {}: accuracy by round on {}",
            report.settings.model,
            ctx.env.test_name()
        ),
        x_label: "round (0: base)".into(),
        y_label: "accuracy".into(),
        series: series.into_iter().filter(|(_, p)| !p.is_empty()).collect(),
    };
    crate::eval::draw(&chart, out)
}
