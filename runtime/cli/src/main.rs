//! `retroformer`: the command line. Only glue: each command's work is in the crates it calls
//! (`retroformer` for models and adapters, `retroformer-envs` through its registry,
//! `retroformer-lab` for evaluations, the canary and the loop, `retroformer-benches` for
//! `bench`). `eval` has a subcommand per environment, built from the registry.

mod adapters;
mod bench;
mod common;
mod data;
mod demo;
mod eval;
mod generate;
mod improve;
mod models;
mod play;
mod probe;
mod retro_loop;
mod rise;
mod sandbox;
mod serve;
mod sync;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use retroformer_envs::math::Dataset;
use retroformer_envs::Registry;
use retroformer_llm::target::{KvType, TargetProfile, DEFAULT_TARGET};

#[derive(Parser)]
#[command(
    name = "retroformer",
    version,
    about = "On-device runtime for LLM agents that improve from their own failures",
    long_about = "Runs quantized GGUF models through llama.cpp on CPU, Vulkan, CUDA or Metal, \
with LoRA adapters hot-swapped and KV caches reused across agent steps.\n\n\
Models are named by manifest (see `retroformer models list`) or given as a path to a GGUF file; \
named models are fetched into the cache ($RETROFORMER_HOME, default ~/.cache/retroformer) on first use.",
    after_help = "Examples:\n  retroformer demo\n  retroformer generate --prompt \"Name three primes.\" --max-tokens 32\n  retroformer generate --model qwen2.5-coder-0.5b-instruct --prompt \"def fib(n):\" --raw --json\n  retroformer models fetch qwen2.5-coder-1.5b-instruct\n  retroformer --target raspberry-pi-5 chat"
)]
struct Cli {
    /// Hardware profile: a name from `retroformer targets` or a path to a profile TOML.
    #[arg(long, global = true, default_value = DEFAULT_TARGET, env = "RETROFORMER_TARGET")]
    target: String,
    /// KV cache type: f16, q8_0 or q4_0 (default: the profile's kv_type). The quantized types
    /// need flash attention and save memory per token of context.
    #[arg(long, global = true, env = "RETROFORMER_KV_TYPE")]
    kv_type: Option<KvType>,
    /// More logging (-v: info, -vv: debug, including llama.cpp's own log).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: Qwen2.5-Coder-0.5B alone and with the committed expert-iteration adapter,
    /// greedy, on 50 held-out GSM8K problems (--run: another run, the household's too; fetches
    /// the model if missing).
    Demo(demo::DemoArgs),
    /// Generate text from a prompt (streams tokens; --json prints text and statistics).
    Generate(generate::GenerateArgs),
    /// Chat interactively (one session; the KV cache is reused from turn to turn).
    Chat(generate::ChatArgs),
    /// List, fetch, verify and inspect models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Play an environment yourself in the terminal.
    #[command(subcommand)]
    Play(play::PlayCommand),
    /// Collect RISE rollouts (n samples per turn, keep the best, stop at a correct one).
    #[command(subcommand)]
    Rollouts(rise::RolloutsCommand),
    /// Build training data from collected runs.
    #[command(subcommand)]
    Dataset(rise::DatasetCommand),
    /// RISE: a training round (rollouts, reward-weighted regression, evaluation).
    #[command(subcommand)]
    Rise(rise::RiseCommand),
    /// Run Python through the sandbox that runs generated code, or check its layers here.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// The adapter store of a base model: install, activate, roll back.
    #[command(subcommand)]
    Adapters(adapters::AdaptersCommand),
    /// The Retroformer loop: collect rated reflections, train the reflector
    /// (`retroformer-train`), install it, canary it on held-out tasks; rounds, resumable.
    Loop(retro_loop::LoopArgs),
    /// Expert iteration: the actor samples GSM8K train problems or household tasks (--env), the
    /// checker keeps its correct answers or successful episodes, a LoRA is trained on them, installed and canaried; rounds, then the arms
    /// (base, rounds, placebo) evaluated on held-out test problems. Resumable.
    Improve(improve::ImproveArgs),
    /// The benchmark data bundled with the environments.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// An OpenAI-compatible HTTP server (chat and text completions, streaming, per-request
    /// adapters from the store, metrics) on 127.0.0.1:8080.
    Serve(serve::ServeArgs),
    /// A device in the fleet: uploads finished run records to a NATS JetStream server (an
    /// outbox on disk while offline), installs the adapters the trainer releases, canaries
    /// them on held-out tasks, activates or keeps the incumbent, and reports back.
    Sync(sync::SyncArgs),
    /// Benchmark this machine: per-model speed next to a bare llama.cpp loop, an agent suite,
    /// trainer figures; one versioned JSON report. `bench compare A.json B.json` lines reports up.
    Bench(bench::BenchArgs),
    /// List the hardware profiles and the devices this build can use.
    Targets {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The child side of the load probe (internal): load a file, decode one token, say ok.
    #[command(hide = true)]
    ProbeLoad(probe::ProbeArgs),
}

fn main() -> ExitCode {
    // Writing to a closed pipe (`retroformer models list | head`) ends the program quietly.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let registry = Registry::builtin();
    let matches = Cli::command()
        .subcommand(eval::command(&registry))
        .get_matches();
    let verbose = matches.get_count("verbose");
    init_logging(verbose);
    if matches.subcommand_name() != Some("probe-load") {
        install_probe();
    }
    let result = match matches.subcommand() {
        Some(("eval", m)) => load_profile(
            matches
                .get_one::<String>("target")
                .map_or(DEFAULT_TARGET, String::as_str),
            matches.get_one::<KvType>("kv_type").copied(),
        )
        .and_then(|profile| eval::run(&registry, &profile, m, false)),
        _ => Cli::from_arg_matches(&matches)
            .map_err(anyhow::Error::from)
            .and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", retroformer_core::text::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Every model and adapter this process loads is loaded first by a child (`probe-load`), so that
/// a file llama.cpp would abort or fault on is refused instead of ending this process.
fn install_probe() {
    match std::env::current_exe() {
        Ok(exe) => {
            retroformer::probe::install_process_probe(exe, vec!["probe-load".into()]);
        }
        Err(e) => tracing::warn!(error = %e, "no load probe: cannot find this program's path"),
    }
}

fn init_logging(verbose: u8) {
    // llama.cpp's loader warns about models that work (e.g. "control-looking token ... '</s>'"
    // in Qwen2.5's vocabulary): its warnings need -v, its errors are always shown.
    let default = match verbose {
        0 => "warn,llama-cpp-2=error",
        1 => "info,llama-cpp-2=warn",
        _ => "debug,llama-cpp-2=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// The `--target` profile, with `--kv-type` applied when given.
fn load_profile(target: &str, kv_type: Option<KvType>) -> Result<TargetProfile> {
    let profile = TargetProfile::load(target)?;
    Ok(match kv_type {
        Some(k) => profile.with_kv_type(k, "--kv-type")?,
        None => profile,
    })
}

fn run(cli: Cli) -> Result<()> {
    let profile = load_profile(&cli.target, cli.kv_type)?;
    match cli.command {
        Command::Demo(a) => demo::demo(&profile, &a, cli.verbose > 0),
        Command::Generate(a) => generate::generate(&profile, &a),
        Command::Chat(a) => generate::chat(&profile, &a),
        Command::Models(m) => models::models(m),
        Command::Rollouts(rise::RolloutsCommand::Gsm8k(a)) => {
            rise::rollouts(&profile, &a, Dataset::Gsm8k)
        }
        Command::Rollouts(rise::RolloutsCommand::Math(a)) => {
            rise::rollouts(&profile, &a, Dataset::Math)
        }
        Command::Dataset(rise::DatasetCommand::Rise {
            criteria,
            tau,
            seed,
            input,
            out,
        }) => rise::dataset_rise(&criteria, tau, seed, &input, &out),
        Command::Rise(rise::RiseCommand::Round(a)) => rise::round(&profile, &a),
        Command::Sandbox(c) => sandbox::sandbox_cmd(c),
        Command::Adapters(c) => adapters::adapters_cmd(&profile, c),
        Command::Play(play::PlayCommand::Household { seed, task_type }) => {
            play::play_household(seed, &task_type)
        }
        Command::Loop(a) => retro_loop::retro_loop(&profile, &a),
        Command::Improve(a) => improve::improve(&profile, &a),
        Command::Data(c) => data::data_cmd(c),
        Command::Serve(a) => serve::serve(&profile, &a),
        Command::Sync(a) => sync::sync(&profile, &a),
        Command::Targets { json } => models::targets(json),
        Command::ProbeLoad(a) => probe::probe_load(&a),
        Command::Bench(a) => bench::bench(&profile, a),
    }
}
