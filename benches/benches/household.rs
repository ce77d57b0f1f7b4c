//! Household environment speed: steps per second of the world alone (no model), on a mixed
//! load (each task's plan plus looks, inventories, thoughts, examines and invalid actions, from
//! reset), against a reference loop measured in the same run that only copies the same
//! observations (the floor any text environment pays).
//!
//! cargo bench -p retroformer-benches --bench household -- [--seconds S]

use std::time::Instant;

use anyhow::Result;
use retroformer_benches::median;
use retroformer_envs::household::{eval_split, plan::plan, HouseholdEnv, TaskSpec};

/// Steps per second of the household world alone against copying its observations.
#[derive(clap::Parser)]
struct Args {
    /// Seconds each side runs.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn main() -> Result<()> {
    let Args { seconds, .. } = clap::Parser::parse();
    let specs: Vec<TaskSpec> = eval_split();
    let mut envs: Vec<(HouseholdEnv, Vec<String>)> = Vec::new();
    for s in &specs {
        let env = HouseholdEnv::new(s);
        let mut acts = plan(&env).map_err(|e| anyhow::anyhow!("{}: {e}", s.id()))?;
        acts.extend(
            [
                "look",
                "inventory",
                "go to nowhere 1",
                "take it",
                "think: ok",
                "examine cabinet 1",
            ]
            .map(String::from),
        );
        envs.push((env, acts));
    }
    // The observations each action produces, for the reference loop.
    let mut recorded: Vec<Vec<String>> = Vec::new();
    for (env, acts) in envs.iter_mut() {
        env.reset();
        recorded.push(acts.iter().map(|a| env.step(a).observation).collect());
    }
    let (mut env_rates, mut ref_rates) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let mut steps = 0u64;
        let mut sink = 0usize;
        while t.elapsed().as_secs_f64() < seconds / 5.0 {
            for (env, acts) in envs.iter_mut() {
                env.reset();
                for a in acts.iter() {
                    sink += env.step(a).observation.len();
                    steps += 1;
                }
            }
        }
        env_rates.push(steps as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut copies = 0u64;
        while t.elapsed().as_secs_f64() < seconds / 5.0 {
            for obs in &recorded {
                for o in obs {
                    let s = std::hint::black_box(o.clone());
                    sink += s.len();
                    copies += 1;
                }
            }
        }
        ref_rates.push(copies as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(sink);
    }
    let (e, r) = (median(&env_rates), median(&ref_rates));
    println!(
        "household env: {e:.0} steps/s ({:.0} ns/step) over the 134-task eval split; copying the same observations: {r:.0}/s; ratio env/copy {:.3}",
        1e9 / e,
        e / r
    );
    println!("(an LLM agent step takes tens of milliseconds: the environment is never the bottleneck at these rates)");
    Ok(())
}
