//! `demo`, the README's main job: the product's result, reproduced on this machine. The base
//! model and the adapter that `retroformer improve` trained on the model's own verified GSM8K
//! answers are evaluated greedily on the first problems of the experiment's held-out set, and
//! the full experiment's figure is printed beside the slice's. `--run` shows another run the
//! same way, the household's too (its tasks are whole episodes).
//!
//! `demo --reflexion` runs the comparison that led there: the same tasks twice with the same
//! sampled actor and seed, once retrying without any information (`none`), once with
//! Reflexion; both share their first trial; then the two success-by-trial lines, their paired
//! difference with its interval and p-value, and a chart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use retroformer::manifest::home_dir;
use retroformer_envs::household::{eval_split, TaskType};
use retroformer_envs::{EvalPlan, Registry};
use retroformer_lab::arms::run_arms;
use retroformer_lab::compare::lines;
use retroformer_lab::improve::{run_slice, SlicePlan};
use retroformer_lab::BackendSource;
use retroformer_llm::target::TargetProfile;

use crate::common::{FetchBar, TaskProgress};

/// The committed experiment, relative to the repository's root: PLAN.md's amendment 1 (round
/// 1 trained to its last step), the run that the later rounds go on from.
const RUN: &str = "benches/results/improve-gsm8k/full-last";

/// `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Run the Reflexion comparison instead (retries without information against Reflexion,
    /// on HotPotQA or the household).
    #[arg(long)]
    reflexion: bool,
    /// Held-out problems evaluated: the first N of the experiment's evaluation set (default:
    /// 50 GSM8K problems, ~10 minutes on 2 cores; 12 household tasks, whose trained arm took
    /// 168 s on 2 cores).
    #[arg(long, conflicts_with = "reflexion")]
    problems: Option<usize>,
    /// The `retroformer improve` run whose adapter is shown (default: the repository's
    /// committed experiment, benches/results/improve-gsm8k/full-last; the household's is
    /// benches/results/improve-household/full).
    #[arg(long, conflicts_with = "reflexion")]
    run: Option<PathBuf>,
    /// Requests decoded together.
    #[arg(long, default_value_t = retroformer_envs::DEFAULT_PARALLEL, conflicts_with = "reflexion")]
    parallel: u32,
    /// With --reflexion, the environment: `hotpotqa` (chain of thought over the question's
    /// gold paragraphs, the first N questions of the bundled sample) or `household` (one task
    /// of each type, then the next of each, in the evaluation split's order).
    #[arg(long, default_value = "hotpotqa", requires = "reflexion")]
    env: String,
    /// With --reflexion, the actor model (fetched if missing); it also writes the reflections.
    #[arg(
        long,
        default_value = "qwen2.5-coder-0.5b-instruct",
        requires = "reflexion"
    )]
    model: String,
    /// With --reflexion, tasks.
    #[arg(long, default_value_t = 10, requires = "reflexion")]
    tasks: usize,
    /// With --reflexion, trials.
    #[arg(long, default_value_t = 5, requires = "reflexion")]
    trials: u32,
    /// With --reflexion, the actor's sampling temperature (both arms).
    #[arg(long, default_value_t = 0.7, requires = "reflexion")]
    temperature: f32,
    /// With --reflexion, the seed of both arms' samples.
    #[arg(long, default_value_t = 1, requires = "reflexion")]
    seed: u32,
    /// With --reflexion, most actions per household episode.
    #[arg(long, default_value_t = 20, requires = "reflexion")]
    max_steps: u32,
    /// Output folder (default: a new folder under $RETROFORMER_HOME/runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
}

/// The committed experiment's folder: under the current folder when run from the repository's
/// root (a shorter name to print), else beside this crate's sources.
fn default_run() -> Result<PathBuf> {
    if Path::new(RUN).join("improve.json").is_file() {
        return Ok(PathBuf::from(RUN));
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(RUN);
    beside.canonicalize().with_context(|| {
        format!(
            "--run: the committed experiment ({RUN}) is not here nor at {}; pass --run with a `retroformer improve` folder",
            beside.display()
        )
    })
}

/// The models both modes load, fetched with `bar` when missing.
fn models<'a>(profile: &TargetProfile, a: &DemoArgs, bar: &'a FetchBar) -> BackendSource<'a> {
    BackendSource {
        profile: profile.clone(),
        threads: a.threads,
        fetch: Some(bar),
    }
}

fn new_out(a: &DemoArgs) -> PathBuf {
    a.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        home_dir().join("runs").join(format!("demo-{now}"))
    })
}

/// Runs the demo; `live` shows each step.
pub fn demo(profile: &TargetProfile, a: &DemoArgs, live: bool) -> Result<()> {
    if a.reflexion {
        return reflexion(profile, a, live);
    }
    let run = match &a.run {
        Some(r) => r.clone(),
        None => default_run()?,
    };
    let out = new_out(a);
    eprintln!(
        "[retroformer] demo: the base model and the adapter {} trained on verified experience, greedy, on the first {} of its held-out evaluation set; results in {}",
        run.display(),
        a.problems.map_or(
            "tasks (50 GSM8K problems, 12 household tasks)".to_string(),
            |n| n.to_string()
        ),
        out.display()
    );
    let bar = FetchBar::default();
    let models = models(profile, a, &bar);
    let plan = SlicePlan {
        run,
        problems: a.problems,
        parallel: a.parallel,
        out,
    };
    let mut progress = TaskProgress::new(live);
    let done = run_slice(&plan, &models, &mut progress);
    progress.finish();
    let (report, files) = done?;
    for line in report.lines() {
        println!("{line}");
    }
    for p in &files {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The household demo's task ids: one of each type, in order, then the next of each.
fn household_ids(n: usize) -> Vec<String> {
    let split = eval_split();
    let mut ids = Vec::new();
    for round in 0..=40 {
        for t in TaskType::ALL {
            if let Some(s) = split.iter().filter(|s| s.task_type == t).nth(round) {
                ids.push(s.id());
            }
        }
        if ids.len() >= n {
            break;
        }
    }
    ids.truncate(n);
    ids
}

/// The plan both arms share (the strategy and the folder are the arms').
fn plan(a: &DemoArgs) -> Result<EvalPlan> {
    let mut plan = EvalPlan {
        actor: a.model.clone(),
        reflector: "actor".into(),
        trials: Some(a.trials),
        memory: Some(3),
        actor_temperature: a.temperature,
        actor_top_p: 0.95,
        actor_seed: a.seed,
        ..EvalPlan::default()
    };
    match a.env.as_str() {
        "hotpotqa" => {
            plan.limit = Some(a.tasks);
            plan.options.0.insert("agent".into(), "cot-context".into());
        }
        "household" => {
            plan.split = Some("eval".into());
            plan.tasks = household_ids(a.tasks);
            plan.max_steps = Some(a.max_steps);
        }
        other => anyhow::bail!("--env {other}: the demo runs hotpotqa or household"),
    }
    Ok(plan)
}

/// The Reflexion comparison; `live` shows each action and observation.
fn reflexion(profile: &TargetProfile, a: &DemoArgs, live: bool) -> Result<()> {
    if a.tasks == 0 || a.trials < 2 || a.max_steps == 0 {
        anyhow::bail!("--tasks and --max-steps must be at least 1, --trials at least 2");
    }
    let out = new_out(a);
    let plan = plan(a)?;
    eprintln!(
        "[retroformer] demo --reflexion: {} on {} tasks, {} trials, actor {} sampled at T={} (seed {}): retries without information (none) against Reflexion; results in {}",
        a.env,
        a.tasks,
        a.trials,
        a.model,
        a.temperature,
        a.seed,
        out.display()
    );
    let bar = FetchBar::default();
    let models = models(profile, a, &bar);
    let registry = Registry::builtin();
    let env = registry.get(&a.env)?;
    let mut progress = TaskProgress::new(live);
    let arms = run_arms(
        env,
        &plan,
        &["none", "reflexion"],
        &out,
        &models,
        &mut progress,
    );
    progress.finish();
    let arms = arms?;
    for line in lines(&arms.compare) {
        println!("{line}");
    }
    println!("{}", verdict(&arms.compare));
    for p in &arms.files {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// One sentence on the last trial: the gain, its interval and p, and whether this run can tell
/// it from chance. The interval is the exact one, which excludes 0 exactly when p < 0.05, so the
/// sentence never contradicts itself.
fn verdict(r: &retroformer_lab::compare::CompareReport) -> String {
    let Some(t) = r.pairs.first().and_then(|p| p.trials.last()) else {
        return "no trial finished in both arms".into();
    };
    let points = |x: f64| format!("{:+.1}", 100.0 * x);
    let told = if t.p_value < 0.05 {
        "a difference this run can tell from chance"
    } else {
        "not a difference this run can tell from chance (more tasks would be needed)"
    };
    format!(
        "Reflexion against retries without information after trial {}: {} points (95 % exact interval {} to {}, McNemar p = {:.3}): {told}.",
        t.trial + 1,
        points(t.difference),
        points(t.exact_interval[0]),
        points(t.exact_interval[1]),
        t.p_value
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use retroformer_lab::compare::{paired, CompareReport, Pair, Table, CONFIDENCE};

    /// A report of one pair whose last trial has `only_a` and `only_b` discordant tasks of 24.
    fn report(only_a: usize, only_b: usize) -> CompareReport {
        let table = Table {
            both: 2,
            only_a,
            only_b,
            neither: 22 - only_a - only_b,
        };
        CompareReport {
            format_version: 3,
            kind: "retroformer-compare".into(),
            confidence: CONFIDENCE,
            resamples: 0,
            bootstrap_seed: 0,
            runs: Vec::new(),
            pairs: vec![Pair {
                name: "reflexion vs none".into(),
                a: 0,
                b: 1,
                trials: vec![paired(0, Table::default()), paired(1, table)],
                same_machine: Some(true),
                same_numerics: Some(true),
            }],
        }
    }

    /// The interval's two ends as the sentence prints them, in points.
    fn printed_interval(sentence: &str) -> (f64, f64) {
        let rest = sentence.split("exact interval ").nth(1).unwrap();
        let mut words = rest.split([' ', ',']);
        let lo = words.next().unwrap().parse().unwrap();
        assert_eq!(words.next(), Some("to"));
        (lo, words.next().unwrap().parse().unwrap())
    }

    #[test]
    fn the_verdict_says_chance_exactly_when_its_interval_holds_zero() {
        // At n = 24 the percentile bootstrap excluded 0 beside "not a difference" (6 against
        // 1: p = 0.125); every split of up to 22 discordant tasks must now agree with itself.
        let mut told = 0;
        for m in 0..=22 {
            for only_b in 0..=m {
                let v = verdict(&report(m - only_b, only_b));
                let (lo, hi) = printed_interval(&v);
                let holds_zero = lo <= 0.0 && hi >= 0.0;
                let chance = v.contains("not a difference this run can tell from chance");
                assert_eq!(holds_zero, chance, "{v}");
                assert!(
                    v.starts_with("Reflexion against retries without information after trial 2"),
                    "{v}"
                );
                told += usize::from(!chance);
            }
        }
        assert!(told > 20, "{told}");
        let v = verdict(&report(1, 6));
        assert!(
            v.contains("+20.8 points") && v.contains("McNemar p = 0.125"),
            "{v}"
        );
    }

    #[test]
    fn the_household_demo_takes_one_task_of_each_type_before_a_second_of_any() {
        let ids = household_ids(8);
        let types: Vec<&str> = ids.iter().map(|i| i.split('-').next().unwrap()).collect();
        assert_eq!(
            types,
            ["put", "clean", "heat", "cool", "examine", "puttwo", "put", "clean"]
        );
    }
}
