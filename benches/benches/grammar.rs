//! Household episodes under the admissible-actions grammar: the runtime's sampler (a token
//! drawn first, then checked against the grammar alone) against llama.cpp's sampler chain with
//! the grammar applied to the whole vocabulary first (`grammar_first`, what the runtime did
//! before), measured in the same run, alternating which goes first. The same tasks, episodes
//! through one stream on `--lanes` lanes, the household's settings (few-shot examples, at most
//! `--max-steps` actions, 64 tokens an action). Greedy by default: the two must then act alike,
//! and the bench counts the episodes whose actions are the same.
//!
//! cargo bench -p retroformer-benches --bench grammar -- [--model NAME|PATH] [--tasks 8]
//!     [--lanes 8] [--max-steps 12] [--reps 3] [--threads 2] [--temperature 0] [--out FILE]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use retroformer_benches::harness::system::fingerprint;
use retroformer_benches::{finish_report, load_average, median, resolve_model, spread};
use retroformer_envs::household::env::LANE_TOKENS;
use retroformer_envs::household::episode::{EpisodeRun, HouseholdConfig};
use retroformer_envs::household::expert::Examples;
use retroformer_envs::household::{eval_tasks, HouseholdEnv, TaskSpec};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::{TargetProfile, Threads};
use retroformer_llm::{LanguageModel, LlmError, SamplingParams, SessionOptions};
use serde_json::json;

/// The runtime's grammar sampling against the grammar applied to the whole vocabulary first.
#[derive(clap::Parser)]
struct Args {
    /// Model name or GGUF path.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    /// Household evaluation tasks (the first N).
    #[arg(long, default_value_t = 8)]
    tasks: usize,
    /// Lanes of the stream.
    #[arg(long, default_value_t = 8)]
    lanes: u32,
    /// Actions an episode at most.
    #[arg(long, default_value_t = 12)]
    max_steps: u32,
    /// Repetitions (alternating which sampler goes first).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// The result file (relative to the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn args() -> Result<Args> {
    let mut a: Args = clap::Parser::parse();
    // cargo runs a bench in its package's folder: a relative path is the workspace's.
    a.out = a.out.map(|o| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(o)
    });
    anyhow::ensure!(
        a.tasks > 0 && a.reps > 0,
        "--tasks and --reps must be at least 1"
    );
    anyhow::ensure!(a.lanes >= 1, "--lanes must be at least 1");
    Ok(a)
}

/// One pass over the tasks: wall seconds, generated tokens and each episode's actions.
struct Pass {
    seconds: f64,
    generated: u64,
    actions: Vec<Vec<String>>,
}

fn pass(model: &LlamaModel, specs: &[TaskSpec], a: &Args, grammar_first: bool) -> Result<Pass> {
    let examples = Examples::load();
    let episode = HouseholdConfig {
        max_steps: a.max_steps,
        ..HouseholdConfig::default()
    };
    let mut session = model.session(&SessionOptions {
        context_size: Some(LANE_TOKENS),
        threads: Some(a.threads),
        sequences: Some(a.lanes),
    })?;
    let mut envs: Vec<HouseholdEnv> = specs.iter().map(HouseholdEnv::new).collect();
    let mut runs: Vec<Option<EpisodeRun>> = Vec::with_capacity(specs.len());
    for (k, s) in specs.iter().enumerate() {
        let sampling = SamplingParams {
            temperature: a.temperature,
            top_p: if a.temperature > 0.0 { 0.95 } else { 1.0 },
            seed: k as u32 * 7919 + 1,
            grammar_first,
            ..SamplingParams::default()
        };
        let examples = examples.of(s.task_type);
        runs.push(Some(EpisodeRun::start(
            &mut envs[k],
            examples,
            &[],
            sampling,
        )));
    }
    let mut actions = vec![Vec::new(); specs.len()];
    let mut generated = 0u64;
    let t = Instant::now();
    retroformer::agent::run_chains::<LlmError>(session.as_mut(), specs.len(), |k, g| {
        let run = runs[k]
            .as_mut()
            .expect("a chain asks nothing after its end");
        if let Some(g) = g.transpose()? {
            generated += u64::from(g.stats.generated_tokens);
            run.absorb(&mut envs[k], &g, &episode, &mut |action, _| {
                actions[k].push(action.to_string())
            });
        }
        let next = run.request(&envs[k], &episode);
        if next.is_none() {
            runs[k] = None;
        }
        Ok(next)
    })?;
    Ok(Pass {
        seconds: t.elapsed().as_secs_f64(),
        generated,
        actions,
    })
}

fn main() -> Result<()> {
    let a = args()?;
    let (path, label) = resolve_model(&a.model)?;
    let mut profile = TargetProfile::load("cpu")?;
    profile.threads = Threads::Fixed(a.threads);
    let model = LlamaModel::load(&path, LoadOptions::new(profile))?;
    let specs = eval_tasks(a.tasks);
    let load_start = load_average();
    let (mut ours, mut reference): (Vec<Pass>, Vec<Pass>) = (Vec::new(), Vec::new());
    for rep in 0..a.reps {
        // Alternate which goes first, so that neither always runs on a warmer machine.
        for first in [rep % 2 == 0, rep % 2 != 0] {
            let p = pass(&model, &specs, &a, !first)?;
            println!(
                "rep {rep}: {} {:.1} s, {} tokens",
                if first { "checked" } else { "grammar first" },
                p.seconds,
                p.generated
            );
            if first { &mut ours } else { &mut reference }.push(p);
        }
    }
    let secs = |ps: &[Pass]| ps.iter().map(|p| p.seconds).collect::<Vec<_>>();
    let rate = |ps: &[Pass]| {
        ps.iter()
            .map(|p| p.generated as f64 / p.seconds)
            .collect::<Vec<_>>()
    };
    let (ours_s, ref_s) = (secs(&ours), secs(&reference));
    let same = ours[0]
        .actions
        .iter()
        .zip(&reference[0].actions)
        .filter(|(x, y)| x == y)
        .count();
    let ratio = median(&ref_s) / median(&ours_s);
    let range = |xs: &[f64]| {
        let (lo, hi) = spread(xs);
        format!("{lo:.1}-{hi:.1}")
    };
    println!(
        "{label}: {} household episodes, {} lanes, T {}, at most {} actions: checked {:.1} s \
         ({}), grammar first {:.1} s ({}): {ratio:.2}x faster; \
         {:.1} vs {:.1} generated tokens/s; same actions in {same} of {} episodes",
        a.tasks,
        a.lanes,
        a.temperature,
        a.max_steps,
        median(&ours_s),
        range(&ours_s),
        median(&ref_s),
        range(&ref_s),
        median(&rate(&ours)),
        median(&rate(&reference)),
        a.tasks,
    );
    let report = json!({
        "kind": "retroformer-bench-grammar",
        "format_version": 1,
        "machine": fingerprint("cpu"),
        "commit": retroformer_benches::git_commit(),
        "llama_cpp_binding": retroformer_benches::harness::system::LLAMA_CPP_BINDING,
        "model": label, "threads": a.threads, "tasks": a.tasks, "lanes": a.lanes,
        "max_steps": a.max_steps, "temperature": a.temperature, "reps": a.reps,
        "checked_seconds": ours_s, "grammar_first_seconds": ref_s,
        "checked_tokens_per_s": rate(&ours), "grammar_first_tokens_per_s": rate(&reference),
        "speedup_median": ratio,
        "same_actions": same,
        "load_average_start": load_start,
    });
    Ok(finish_report(
        &report,
        a.out.as_deref(),
        load_start,
        a.threads,
    )?)
}
