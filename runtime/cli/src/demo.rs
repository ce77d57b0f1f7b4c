//! `demo`, the README's main job: Reflexion on a few household tasks, with the default model.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use retroformer::manifest::home_dir;
use retroformer_envs::household::{eval_split, TaskType};
use retroformer_envs::{EvalPlan, Registry};
use retroformer_lab::eval::evaluate;
use retroformer_lab::BackendSource;
use retroformer_llm::target::TargetProfile;

use crate::common::{FetchBar, TaskProgress};

/// `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Actor model (fetched if missing).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Household tasks: the first of each task type (put, clean, heat, cool, examine, puttwo),
    /// then the next of each, run in the evaluation split's order.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// Trials.
    #[arg(long, default_value_t = 3)]
    trials: u32,
    /// Most actions per episode.
    #[arg(long, default_value_t = 20)]
    max_steps: u32,
    /// Output folder (default: a new folder under $RETROFORMER_HOME/runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
}

/// The demo's task ids: one of each type, in order, then the next of each.
fn task_ids(n: usize) -> Vec<String> {
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

/// Runs the demo; `live` shows each action and observation.
pub fn demo(profile: &TargetProfile, a: &DemoArgs, live: bool) -> Result<()> {
    if a.tasks == 0 || a.trials == 0 || a.max_steps == 0 {
        anyhow::bail!("--tasks, --trials and --max-steps must be at least 1");
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        home_dir().join("runs").join(format!("demo-{now}"))
    });
    let plan = EvalPlan {
        out: out.clone(),
        actor: a.model.clone(),
        reflector: "actor".into(),
        strategy: Some("reflexion".into()),
        trials: Some(a.trials),
        memory: Some(3),
        max_steps: Some(a.max_steps),
        split: Some("eval".into()),
        tasks: task_ids(a.tasks),
        ..EvalPlan::default()
    };
    eprintln!(
        "[retroformer] demo: Reflexion on {} household tasks, {} trials, actor {}; results in {}",
        plan.tasks.len(),
        a.trials,
        a.model,
        out.display()
    );
    let bar = FetchBar::default();
    let models = BackendSource {
        profile: profile.clone(),
        threads: a.threads,
        fetch: Some(&bar),
    };
    let registry = Registry::builtin();
    let mut progress = TaskProgress::new(live);
    let done = evaluate(registry.get("household")?, &plan, &models, &mut progress);
    progress.finish();
    let done = done?;
    println!("success by trial:");
    for line in &done.report.lines {
        println!("{line}");
    }
    for p in &done.plots {
        println!("plot: {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_takes_one_task_of_each_type_before_a_second_of_any() {
        let ids = task_ids(8);
        let types: Vec<&str> = ids.iter().map(|i| i.split('-').next().unwrap()).collect();
        assert_eq!(
            types,
            ["put", "clean", "heat", "cool", "examine", "puttwo", "put", "clean"]
        );
    }
}
