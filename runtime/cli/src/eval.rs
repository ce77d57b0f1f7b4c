//! `eval ENV`: one subcommand per environment of the registry, its flags built from what the
//! environment declares ([`Spec`], [`Flag`]); and `eval plot` and `eval compare`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use retroformer_envs::{Environment, EvalPlan, FlagKind, Options, Registry, Setting, Spec};
use retroformer_lab::compare::{compare, lines, write_report};
use retroformer_lab::eval::{evaluate, plot_runs};
use retroformer_lab::BackendSource;
use retroformer_llm::target::TargetProfile;

use crate::common::{FetchBar, TaskProgress};

/// The default actor.
pub const DEFAULT_ACTOR: &str = "smollm2-135m-instruct";

/// `eval plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// Run folders (written by `eval ENV --out`).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output path without extension: STEM.svg and STEM.png are written.
    #[arg(long, short)]
    out: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "Success rate by trial")]
    title: String,
}

/// `eval compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Run folders (written by `eval ENV --out`) over the same tasks with the same --seed; the
    /// first is the baseline.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Write compare.json and the chart (compare.svg, compare.png) into this folder.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// The `eval` command: a subcommand per environment, `plot` and `compare`.
pub fn command(registry: &Registry) -> Command {
    let mut eval = Command::new("eval")
        .about("Evaluate agents over trials on an environment (results, rating records and a plot)")
        .subcommand_required(true)
        .arg_required_else_help(true);
    for env in registry.all() {
        eval = eval.subcommand(env_command(*env));
    }
    eval.subcommand(PlotArgs::augment_args(Command::new("plot")).about(
        "Plot the success rate by trial of one or more run folders on one chart (SVG and PNG).",
    ))
    .subcommand(CompareArgs::augment_args(Command::new("compare")).about(
        "Paired statistics between run folders over one task set: per trial the success rates, their difference with 95% intervals (exact conditional, which agrees with the test; paired bootstrap; Newcombe score), the exact McNemar p-value and the win/loss table; the first run is the baseline.",
    ))
}

fn value(name: &'static str, help: String) -> Arg {
    Arg::new(name)
        .long(name)
        .help(help)
        .value_name(name.to_uppercase().replace('-', "_"))
        .action(ArgAction::Set)
}

fn switch(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .help(help)
        .action(ArgAction::SetTrue)
}

/// The flags of one common setting, as `spec` words and defaults them.
fn setting_args(s: Setting, spec: &Spec) -> Vec<Arg> {
    match s {
        Setting::Strategy => vec![value(
            "strategy",
            format!("What a trial is told about earlier ones: {}.", spec.strategies.join(", ")),
        )
        .default_value(spec.strategies[0])],
        Setting::Trials => {
            let (name, default) = spec.trials;
            let help = if name == "trials" {
                format!("Number of trials, at most 100 (default: {default}, or the count of the run already in --out). Running again with more trials goes on from where the run stopped (the last trial's failures get their reflections first); fewer are refused.")
            } else {
                format!("Most implementations per task, the first plus retries (default {default}).")
            };
            vec![value(name, help).id("trials").value_parser(clap::value_parser!(u32))]
        }
        Setting::Memory => vec![value("memory", "Reflections kept per task.".into())
            .default_value("3")
            .value_parser(clap::value_parser!(usize))],
        Setting::MaxSteps => vec![value("max-steps", "Most steps per episode.".into())
            .default_value(spec.max_steps.to_string())
            .value_parser(clap::value_parser!(u32))],
        Setting::Reflector => vec![
            value("reflector", "Reflector model, or `actor` to reflect with the actor itself.".into())
                .default_value("actor"),
            value("reflector-adapter", "A LoRA adapter for the reflector (the learned retrospective model): a GGUF file, or `active` for the active adapter of the reflector's store (`retroformer adapters`). The actor's session never uses it.".into()),
        ],
        Setting::ReflectorSampling => vec![
            value("reflector-temperature", "Sample the reflections at this temperature (0: greedy decoding). Runs with other seeds that take one first trial (--first-trial-from) rate several reflections of each failure.".into())
                .value_name("T")
                .default_value("0")
                .value_parser(clap::value_parser!(f32)),
            value("reflector-seed", "Seed of the reflector's sampler (with --reflector-temperature above 0).".into())
                .default_value("0")
                .value_parser(clap::value_parser!(u32)),
        ],
        Setting::ActorSampling => vec![
            value("temperature", "Sample the actor at this temperature (0: greedy, so a retry without new information repeats the attempt before). Each task and trial gets a seed of its own from --seed: runs with the same seed sample the same first trial, so a sampled `none` run is the baseline a reflecting run is compared with (`eval compare`).".into())
                .value_name("T")
                .default_value("0")
                .value_parser(clap::value_parser!(f32)),
            value("top-p", "The actor's nucleus threshold when sampled (1: off).".into())
                .value_name("P")
                .default_value("1")
                .value_parser(clap::value_parser!(f32)),
            value("seed", "The seed the actor's per-task, per-trial seeds derive from.".into())
                .default_value("0")
                .value_parser(clap::value_parser!(u32)),
        ],
        Setting::Parallel => vec![value("parallel", format!("Episodes in flight at once through one session (continuous batching: a finished episode's lane takes the next at once, each episode's next step continues in its own lane, on its KV, and each is saved as it ends), and reflections written together. At most as many as a quarter of the free memory holds. 1: one after another. Default: {}.", retroformer_envs::DEFAULT_PARALLEL))
            .value_parser(clap::value_parser!(u32))],
        Setting::FirstTrialFrom => vec![value("first-trial-from", "Start a new run from the first trial of the run in DIR (same settings apart from --trials, --strategy, --memory and the reflector), instead of running that trial again: no strategy shows anything before the second trial, so neither the strategy nor the reflector can change it. Runs that compare strategies (an experiment's arms) or reflectors (the canary, the loop's rounds) share it this way. Ignored when --out already holds a run.".into())
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))],
        Setting::Resume => vec![value("resume", "Resume the run in this folder with its saved settings.".into())
            .value_name("DIR")
            .conflicts_with("out")
            .value_parser(clap::value_parser!(PathBuf))],
        Setting::Data => vec![value("data", format!("Data file, JSONL or JSONL.gz (default: {}).", spec.data))
            .value_parser(clap::value_parser!(PathBuf))],
        Setting::Split => vec![value("split", format!("The split: {}.", spec.splits.join(" or ")))
            .default_value(spec.splits[0])],
        Setting::Tasks => vec![value("tasks", "Only these task ids (comma-separated).".into())
            .value_delimiter(',')
            .action(ArgAction::Append)],
        Setting::Skip => vec![value("skip", "Leave out the first N tasks (held-out sets: train on the first N, test on the rest).".into())
            .default_value("0")
            .value_parser(clap::value_parser!(usize))],
        Setting::Limit => {
            // "after --skip" only where the environment has that flag.
            let after = if spec.settings.contains(&Setting::Skip) { " (after --skip)" } else { "" };
            vec![value("limit", format!("Only the first N tasks{after}."))
                .value_parser(clap::value_parser!(usize))]
        }
    }
}

/// The subcommand of `env`.
fn env_command(env: &dyn Environment) -> Command {
    let spec = env.spec();
    let out = value(
        "out",
        "Output folder (re-running with the same folder and settings resumes).".into(),
    )
    // Required (or --resume): checked after parsing, with the error the other settings give.
    .value_parser(clap::value_parser!(PathBuf));
    let mut cmd = Command::new(env.name()).about(spec.about).args([
        value("actor", "Actor model (manifest name or GGUF path).".into())
            .default_value(DEFAULT_ACTOR),
        out,
        value("threads", "Threads (default: the target profile's).".into())
            .value_parser(clap::value_parser!(u32)),
        switch("no-fetch", "Do not fetch missing models."),
    ]);
    for s in spec.settings {
        cmd = cmd.args(setting_args(*s, &spec));
    }
    for f in env.flags() {
        let arg = match f.kind {
            FlagKind::Switch => switch(f.name, f.help),
            FlagKind::Value { default } => {
                let a = value(f.name, f.help.into());
                match default {
                    Some(d) => a.default_value(d),
                    None => a,
                }
            }
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The plan the flags of `env`'s subcommand give.
fn plan(env: &dyn Environment, m: &ArgMatches) -> EvalPlan {
    let s = |id: &str| m.try_get_one::<String>(id).ok().flatten().cloned();
    let get = |id: &str| m.try_get_one::<u32>(id).ok().flatten().copied();
    let f = |id: &str| m.try_get_one::<f32>(id).ok().flatten().copied();
    let path = |id: &str| m.try_get_one::<PathBuf>(id).ok().flatten().cloned();
    let resume = path("resume");
    let mut options = Options::default();
    for f in env.flags() {
        match f.kind {
            FlagKind::Switch if m.get_flag(f.name) => {
                options.0.insert(f.name.into(), "true".into());
            }
            FlagKind::Switch => {}
            FlagKind::Value { .. } => {
                if let Some(v) = s(f.name) {
                    options.0.insert(f.name.into(), v);
                }
            }
        }
    }
    EvalPlan {
        out: resume.clone().or(path("out")).unwrap_or_default(),
        resume: resume.is_some(),
        actor: s("actor").unwrap_or_else(|| DEFAULT_ACTOR.into()),
        reflector: s("reflector").unwrap_or_else(|| "actor".into()),
        reflector_adapter: s("reflector-adapter"),
        reflector_temperature: f("reflector-temperature").unwrap_or(0.0),
        reflector_seed: get("reflector-seed").unwrap_or(0),
        actor_temperature: f("temperature").unwrap_or(0.0),
        actor_top_p: f("top-p").unwrap_or(1.0),
        actor_seed: get("seed").unwrap_or(0),
        strategy: s("strategy"),
        trials: get("trials"),
        memory: m.try_get_one::<usize>("memory").ok().flatten().copied(),
        max_steps: get("max-steps"),
        parallel: get("parallel"),
        first_trial_from: path("first-trial-from"),
        data: path("data"),
        split: s("split"),
        tasks: m
            .try_get_many::<String>("tasks")
            .ok()
            .flatten()
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
        skip: m
            .try_get_one::<usize>("skip")
            .ok()
            .flatten()
            .copied()
            .unwrap_or(0),
        limit: m.try_get_one::<usize>("limit").ok().flatten().copied(),
        options,
    }
}

/// Runs `eval` with its matches.
pub fn run(registry: &Registry, profile: &TargetProfile, m: &ArgMatches, live: bool) -> Result<()> {
    let (name, sub) = m.subcommand().expect("eval requires a subcommand");
    if name == "plot" {
        let a = PlotArgs::from_arg_matches(sub)?;
        let (rates, plots) = plot_runs(&a.runs, &a.out, &a.title)?;
        for (dir, r) in rates {
            let r: Vec<String> = r.iter().map(|x| format!("{x:.3}")).collect();
            println!("{}: {}", dir.display(), r.join(" "));
        }
        for p in plots {
            println!("wrote {}", p.display());
        }
        return Ok(());
    }
    if name == "compare" {
        return compare_cmd(&CompareArgs::from_arg_matches(sub)?);
    }
    let env = registry.get(name)?;
    let plan = plan(env, sub);
    if plan.out.as_os_str().is_empty() {
        let resume = env.spec().settings.contains(&Setting::Resume);
        anyhow::bail!(
            "--out DIR is required{}",
            if resume { " (or --resume DIR)" } else { "" }
        );
    }
    let bar = FetchBar::default();
    let models = BackendSource {
        profile: profile.clone(),
        threads: sub.try_get_one::<u32>("threads").ok().flatten().copied(),
        fetch: (!sub.get_flag("no-fetch")).then_some(&bar as &dyn retroformer::fetch::Progress),
    };
    let mut progress = TaskProgress::new(live);
    let done = evaluate(env, &plan, &models, &mut progress);
    progress.finish();
    let done = done?;
    for line in &done.report.lines {
        println!("{line}");
    }
    for p in &done.plots {
        println!("plot: {}", p.display());
    }
    Ok(())
}

/// `eval compare`: the report as a table (or JSON on stdout with `--json`, the files written
/// then named on stderr so that stdout stays one JSON document).
fn compare_cmd(a: &CompareArgs) -> Result<()> {
    let report = compare(&a.runs)?;
    let written = match &a.out {
        Some(dir) => write_report(&report, dir)?,
        None => Vec::new(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        for p in &written {
            eprintln!("wrote {}", p.display());
        }
    } else {
        for line in lines(&report) {
            println!("{line}");
        }
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_flag_mentions_skip_only_where_the_environment_has_that_flag() {
        let eval = command(&Registry::builtin());
        let mut checked = 0;
        for env in eval.get_subcommands() {
            let arg = |id: &str| env.get_arguments().find(|a| a.get_id() == id);
            let Some(limit) = arg("limit") else { continue };
            let help = limit.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert_eq!(
                help.contains("--skip"),
                arg("skip").is_some(),
                "{}: {help}",
                env.get_name()
            );
            checked += 1;
        }
        assert!(checked >= 2, "only {checked} environments take --limit");
    }
}
