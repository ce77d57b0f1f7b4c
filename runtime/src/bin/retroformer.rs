//! `retroformer`: the on-device runtime's command line.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use retroformer::env::math::Dataset;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use retroformer::fetch::{self, FetchOptions};
use retroformer::gguf;
use retroformer::llm::llama::{self, LlamaModel, LoadOptions};
use retroformer::llm::{
    ChatMessage, GenerateRequest, Generation, Grammar, LanguageModel, SamplingParams, Session,
    SessionOptions,
};
use retroformer::manifest::{home_dir, Manifest, ModelRef};
use retroformer::target::{TargetProfile, DEFAULT_TARGET};

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
    /// More logging (-v: info, -vv: debug, including llama.cpp's own log).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: fetch the default model if missing and run a short demonstration.
    Demo(DemoArgs),
    /// Generate text from a prompt (streams tokens; --json prints text and statistics).
    Generate(GenerateArgs),
    /// Chat interactively (one session; the KV cache is reused from turn to turn).
    Chat(ChatArgs),
    /// List, fetch, verify and inspect models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Evaluate agents over trials on an environment (results, rating records and a plot).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Play an environment yourself in the terminal.
    #[command(subcommand)]
    Play(PlayCommand),
    /// Collect RISE rollouts (n samples per turn, keep the best, stop at a correct one).
    #[command(subcommand)]
    Rollouts(RolloutsCommand),
    /// Build training data from collected runs.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Run Python through the sandbox that runs generated code, or check its layers here.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// The adapter store of a base model: install, activate, roll back.
    #[command(subcommand)]
    Adapters(AdaptersCommand),
    /// Benchmark this machine: per-model speed next to a bare llama.cpp loop, an agent suite,
    /// trainer figures; one versioned JSON report. `bench compare A.json B.json` lines reports up.
    Bench(BenchArgs),
    /// List the hardware profiles and the devices this build can use.
    Targets {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the model manifests and whether each is installed.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a model into the cache, assemble its parts and verify its sha256.
    Fetch {
        /// Manifest name or alias.
        name: String,
        /// Fetch again even if installed.
        #[arg(long)]
        force: bool,
    },
    /// Re-hash an installed model and compare with its manifest (or validate and hash a file).
    Verify {
        /// Manifest name or alias, or a path to a GGUF file.
        name: String,
    },
    /// Print a GGUF file's metadata (validated first).
    Info {
        /// Path to a GGUF file, or an installed model's name.
        model: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Run a Python file in the sandbox; print its outcome, output and the active layers.
    Run {
        /// The program.
        file: PathBuf,
        #[command(flatten)]
        limits: SandboxArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the isolation layers active on this machine and try hostile programs against them.
    Check {
        #[command(flatten)]
        limits: SandboxArgs,
    },
}

#[derive(Args, Clone)]
struct SandboxArgs {
    /// Python interpreter (default: /usr/bin/python3, /usr/local/bin/python3, then PATH).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Wall-clock limit per run, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    wall_ms: u64,
    /// Address-space limit, MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u64,
    /// Fail instead of warning when no network isolation layer works here.
    #[arg(long)]
    require_network_isolation: bool,
    /// Run generated code as root when this machine cannot give runs a user of their own.
    #[arg(long)]
    allow_root: bool,
}

impl SandboxArgs {
    fn build(&self) -> Result<retroformer::sandbox::Sandbox> {
        let mut c = retroformer::sandbox::SandboxConfig {
            wall_ms: self.wall_ms,
            cpu_seconds: self.wall_ms.div_ceil(1000).max(1),
            memory_bytes: self.memory_mb.saturating_mul(1 << 20),
            require_network_isolation: self.require_network_isolation,
            allow_root: self.allow_root,
            ..Default::default()
        };
        if let Some(p) = &self.python {
            c.python = p.clone();
        }
        retroformer::sandbox::Sandbox::new(c).map_err(|e| {
            let flag = match &e {
                retroformer::sandbox::SandboxError::Python { .. } => "--python: ",
                retroformer::sandbox::SandboxError::Config { field, .. } if *field == "wall_ms" => {
                    "--wall-ms: "
                }
                retroformer::sandbox::SandboxError::Config { .. } => "--memory-mb: ",
                retroformer::sandbox::SandboxError::NoNetworkIsolation { .. } => {
                    "--require-network-isolation: "
                }
                retroformer::sandbox::SandboxError::RootOnly { .. } => "--python: ",
            };
            anyhow::anyhow!("{flag}{e}")
        })
    }
}

fn print_layers(sandbox: &retroformer::sandbox::Sandbox) {
    for l in sandbox.isolation() {
        println!(
            "  [{}] {:<32} {}",
            if l.active { "on " } else { "off" },
            l.name,
            l.detail
        );
    }
}

fn sandbox_cmd(cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Run { file, limits, json } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read the program", file.display()))?;
            let sandbox = limits.build()?;
            let r = sandbox.run_python(&source);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "report": r, "layers": sandbox.isolation() })
                );
            } else {
                print!("{}", r.stdout);
                eprint!("{}", r.stderr);
                println!(
                    "outcome: {}{}{} in {:.0} ms{}",
                    r.outcome.name(),
                    r.exit_code
                        .map(|c| format!(", exit {c}"))
                        .unwrap_or_default(),
                    r.signal
                        .map(|s| format!(", signal {s}"))
                        .unwrap_or_default(),
                    r.wall_ms,
                    if r.truncated {
                        ", output truncated"
                    } else {
                        ""
                    }
                );
                if let Some(d) = &r.detail {
                    println!("sandbox: {d}");
                }
                println!("layers:");
                print_layers(&sandbox);
            }
            Ok(())
        }
        SandboxCommand::Check { limits } => {
            let sandbox = limits.build()?;
            println!("python: {}", sandbox.config().python.display());
            println!("layers:");
            print_layers(&sandbox);
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let outside = std::env::temp_dir().join(format!("rf-check-{}", std::process::id()));
            let probes: Vec<(&str, String, &[&str])> = vec![
                ("ordinary program", "print(6 * 7)\n".into(), &["passed"]),
                ("failed assert", "assert 1 == 2\n".into(), &["failed"]),
                ("infinite loop", "while True:\n    pass\n".into(), &["timeout"]),
                ("memory hog", "x = bytearray(64 * 1024 ** 3)\n".into(), &["memory_limit"]),
                (
                    "connect to the host's loopback",
                    format!("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"),
                    &["error"],
                ),
                (
                    "write outside its folder",
                    format!("open({:?}, 'w').write('x')\n", outside.display().to_string()),
                    &["error"],
                ),
                ("leave the process group", "import os\nos.setsid()\n".into(), &["error"]),
                (
                    "fork bomb",
                    "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n".into(),
                    &["timeout", "error"],
                ),
            ];
            println!("probes:");
            let mut contained = 0;
            for (name, source, expected) in &probes {
                let r = sandbox.run_python(source);
                let ok = expected.contains(&r.outcome.name());
                contained += usize::from(ok);
                println!(
                    "  [{}] {:<32} {} ({:.0} ms)",
                    if ok { "ok " } else { "NO " },
                    name,
                    r.outcome.name(),
                    r.wall_ms
                );
            }
            let escaped = outside.exists();
            if escaped {
                let _ = std::fs::remove_file(&outside);
            }
            println!("{contained} of {} probes behaved as expected", probes.len());
            if contained < probes.len() || escaped {
                anyhow::bail!(
                    "the sandbox does not contain everything on this machine (see NO above)"
                );
            }
            Ok(())
        }
    }
}

#[derive(Subcommand)]
enum EvalCommand {
    /// HotPotQA, offline: ReAct with Reflexion strategies over the distractor paragraphs.
    Hotpotqa(HotpotArgs),
    /// HumanEval (or MBPP-style JSONL): Reflexion with self-written tests, run in the sandbox.
    Humaneval(HumanevalArgs),
    /// GSM8K with RISE inference: sequential turns and/or parallel samples, four metrics.
    Gsm8k(RiseArgs),
    /// MATH-format problems (`problem`, `solution` with \boxed{}) with RISE inference.
    Math(RiseArgs),
    /// The household world (ALFWorld's text interface): ReAct with Reflexion over trials.
    Household(HouseholdArgs),
    /// Plot the success rate by trial of one or more run folders on one chart (SVG and PNG).
    Plot {
        /// Run folders (written by `eval hotpotqa --out`).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output path without extension: STEM.svg and STEM.png are written.
        #[arg(long, short)]
        out: PathBuf,
        /// Chart title.
        #[arg(long, default_value = "Success rate by trial")]
        title: String,
    },
}

#[derive(Args)]
struct HotpotArgs {
    /// Agent: react, cot (no context) or cot-context (gold paragraphs as context).
    #[arg(long, default_value = "react")]
    agent: String,
    /// What a trial is told about earlier ones: none, last-attempt, reflexion, last-attempt-and-reflexion.
    #[arg(long, default_value = "reflexion")]
    strategy: String,
    /// Number of trials (default: 5, or the count of the run already in --out / --resume).
    /// Running again with more trials goes on from where the run stopped (the last trial's
    /// failures get their reflections first); fewer are refused.
    #[arg(long)]
    trials: Option<u32>,
    /// Actor model (manifest name or GGUF path).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    actor: String,
    /// Reflector model, or `actor` to reflect with the actor itself.
    #[arg(long, default_value = "actor")]
    reflector: String,
    /// A LoRA adapter for the reflector (the learned retrospective model): a GGUF file, or
    /// `active` for the active adapter of the reflector's store (`retroformer adapters`). The
    /// actor's session never uses it.
    #[arg(long)]
    reflector_adapter: Option<String>,
    /// Sample the reflections at this temperature (0: greedy decoding). Runs with other seeds
    /// that take one first trial (--first-trial-from) rate several reflections of each failure.
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    reflector_temperature: f32,
    /// Seed of the reflector's sampler (with --reflector-temperature above 0).
    #[arg(long, default_value_t = 0)]
    reflector_seed: u32,
    /// Reflections kept per task.
    #[arg(long, default_value_t = 3)]
    memory: usize,
    /// Output folder (re-running with the same folder resumes).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Resume the run in this folder with its saved settings.
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Start a new run from the first trial of the run in DIR (same settings apart from
    /// --trials and the reflector), instead of running that trial again: no reflection exists
    /// before it, so the reflector cannot change it. Runs that compare reflectors (the
    /// canary, the loop's rounds) share it this way. Ignored when --out already holds a run.
    #[arg(long, value_name = "DIR")]
    first_trial_from: Option<PathBuf>,
    /// HotPotQA distractor JSONL (default: ../shared/data/hotpotqa/hotpot-qa-distractor-sample.jsonl).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Leave out the first N questions (held-out sets: train on the first N, test on the rest).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Only the first N questions (after --skip).
    #[arg(long)]
    limit: Option<usize>,
    /// Only these question ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Search all questions' pages (about 1000) instead of each question's ten.
    #[arg(long)]
    global_docstore: bool,
    /// Most ReAct steps per episode.
    #[arg(long, default_value_t = 6)]
    max_steps: u32,
    /// ReAct episodes run at once through one session (continuous batching: each episode's
    /// next Thought or Action continues in its own lane, on its KV), and reflections written
    /// together. 1: one after another.
    #[arg(long, default_value_t = 1)]
    parallel: u32,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Args)]
struct RiseArgs {
    /// sequential (turns), parallel (samples of turn 1) or both (all four metrics).
    #[arg(long, default_value = "both")]
    mode: String,
    /// Sequential turns.
    #[arg(long, default_value_t = 5)]
    turns: u32,
    /// Earlier attempts each turn sees.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// Parallel samples.
    #[arg(long, default_value_t = 5)]
    samples: u32,
    /// Temperature of the parallel samples.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Tokens per attempt.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Seed of the samplers.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Model (manifest name or GGUF path).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    actor: String,
    /// Output folder (re-running with the same folder and settings resumes).
    #[arg(long)]
    out: PathBuf,
    /// Problems JSONL (default: ../shared/data/gsm8k/test.jsonl for gsm8k; required for math).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only the first N problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Problems solved together: each turn of all of them, and all their parallel samples,
    /// decode as one batch (about 2.3x the tokens per second at 4 sequences and 2.9x at 8
    /// with Qwen2.5-Coder-0.5B on 2 cores; `cargo bench --bench batch`). 1: one at a time.
    /// Default: 8, or what the run being resumed in --out used.
    #[arg(long)]
    batch: Option<u32>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Subcommand)]
enum PlayCommand {
    /// A household task: type actions (`go to cabinet 1`, `help` lists the valid ones, `quit`).
    Household {
        /// The world's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Task type: put, clean, heat, cool, examine, puttwo.
        #[arg(long = "type", default_value = "put")]
        task_type: String,
    },
}

#[derive(Subcommand)]
enum RolloutsCommand {
    /// GSM8K rollouts.
    Gsm8k(RolloutArgs),
    /// MATH-format rollouts.
    Math(RolloutArgs),
}

#[derive(Args)]
struct RolloutArgs {
    /// Model per turn, comma-separated; the last repeats (e.g. a larger model, then the learner).
    #[arg(long, value_delimiter = ',', default_value = "smollm2-135m-instruct")]
    models: Vec<String>,
    /// Samples per turn, comma-separated; the last repeats (e.g. 1,16).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    samples: Vec<u32>,
    /// Most turns.
    #[arg(long, default_value_t = 5)]
    turns: u32,
    /// Earlier attempts each turn sees.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Tokens per attempt.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Output folder (rollouts/ID.json; re-running resumes).
    #[arg(long)]
    out: PathBuf,
    /// Problems JSONL (default: ../shared/data/gsm8k/train.jsonl for gsm8k; required for math).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only the first N problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// A short suite (3 repetitions, short prompts, one household task): under two minutes
    /// with the default model on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Models to measure (repeat the flag; manifest names or GGUF paths).
    #[arg(long = "model", short = 'm', default_value = "smollm2-135m-instruct")]
    models: Vec<String>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Repetitions of each measurement (default 5, quick 3).
    #[arg(long)]
    reps: Option<usize>,
    /// Where to write the JSON report (default $RETROFORMER_HOME/bench/LABEL-TIME.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A name for this machine or run in comparisons (default the host name).
    #[arg(long)]
    label: Option<String>,
    /// Skip the agent-level suite.
    #[arg(long)]
    no_agents: bool,
    /// Also measure LoRA training (runs `retroformer-train bench`, found next to this binary
    /// or on PATH) for each backend given, e.g. `--trainer flex`.
    #[arg(long, value_delimiter = ',')]
    trainer: Vec<String>,
    /// Do not fetch missing models; fail instead.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Line up reports: a table of each figure and its ratio to the first report, and plots of
    /// throughput against prompt length and depth (STEM-prefill/-decode .svg/.png).
    Compare {
        /// Reports written by `retroformer bench` (the first is the baseline).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Stem of the plots.
        #[arg(long, default_value = "bench-compare")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdaptersCommand {
    /// The installed adapters of a base model (the active one marked).
    List {
        /// Base model (manifest name or GGUF path).
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate an adapter against the base model and install it (not activated).
    Install {
        /// The adapter file.
        file: PathBuf,
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
        /// Activate it once installed.
        #[arg(long)]
        activate: bool,
    },
    /// Make an installed adapter the active one.
    Activate {
        /// Its id (from `adapters list`).
        id: String,
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
    },
    /// Go back to the adapter that was active before.
    Rollback {
        /// Base model.
        #[arg(long, default_value = "smollm2-135m-instruct")]
        base: String,
    },
    /// Evaluate an installed adapter as the reflector against the active one (or the base
    /// alone) on held-out tasks; activate it only if it is not worse by more than --margin,
    /// else keep the active one.
    Canary(CanaryArgs),
}

#[derive(Args, Clone)]
struct CanaryArgs {
    /// The candidate's id (from `adapters list`).
    id: String,
    /// Base model: the reflector whose store holds the adapters.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    base: String,
    /// Environment: hotpotqa, household or humaneval.
    #[arg(long, default_value = "household")]
    env: String,
    /// Actor model (default: the base model itself).
    #[arg(long)]
    actor: Option<String>,
    /// Leave out the first N tasks (those used for training).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Held-out tasks to evaluate on.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Household split (`eval` or `train`).
    #[arg(long, default_value = "eval")]
    split: String,
    /// Trials per task (Reflexion; the score is the success rate after the last). For
    /// humaneval: implementations per task (--max-iters); the score is pass@1.
    #[arg(long, default_value_t = 3)]
    trials: u32,
    /// Most steps per episode (default: the environment's, 6 for hotpotqa, 30 for household).
    #[arg(long)]
    max_steps: Option<u32>,
    /// HotPotQA or HumanEval data file (default: as `eval hotpotqa` / `eval humaneval`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Promote when candidate >= incumbent - margin.
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// Where the two evaluations go (default: the store's canary/ID folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Take both evaluations' first trial from the run in DIR (hotpotqa, household; see
    /// `eval hotpotqa --first-trial-from`). Without it the second evaluation takes the
    /// first's: the first trial has no reflection yet, so it is the same for both reflectors.
    #[arg(long, value_name = "DIR")]
    first_trial_from: Option<PathBuf>,
    /// Episodes run at once (hotpotqa and household; see `eval hotpotqa --parallel`).
    #[arg(long, default_value_t = 1)]
    parallel: u32,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// RISE training samples from a rollouts folder (reward-weighted, loss on the last turn).
    Rise {
        /// all, better, best or success.
        #[arg(long, default_value = "better")]
        criteria: String,
        /// Temperature of the weights exp(reward / tau).
        #[arg(long, default_value_t = 0.4)]
        tau: f64,
        /// Shuffle seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The rollouts folder (from `retroformer rollouts`).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output JSONL.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct HouseholdArgs {
    /// eval (the fixed 134 tasks) or train.
    #[arg(long, default_value = "eval")]
    split: String,
    /// Trials (default: 10, or the count of the run already in --out). Running again with
    /// more trials goes on from where the run stopped (the last trial's failures get their
    /// reflections first); fewer are refused.
    #[arg(long)]
    trials: Option<u32>,
    /// reflexion or none.
    #[arg(long, default_value = "reflexion")]
    strategy: String,
    /// Actor model (manifest name or GGUF path).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    actor: String,
    /// Reflector model, or `actor` to reflect with the actor itself.
    #[arg(long, default_value = "actor")]
    reflector: String,
    /// A LoRA adapter for the reflector: a GGUF file, or `active` (see `eval hotpotqa`).
    #[arg(long)]
    reflector_adapter: Option<String>,
    /// Sample the reflections at this temperature (0: greedy decoding). Runs with other seeds
    /// that take one first trial (--first-trial-from) rate several reflections of each failure.
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    reflector_temperature: f32,
    /// Seed of the reflector's sampler (with --reflector-temperature above 0).
    #[arg(long, default_value_t = 0)]
    reflector_seed: u32,
    /// Reflections kept per task.
    #[arg(long, default_value_t = 3)]
    memory: usize,
    /// Most actions per episode.
    #[arg(long, default_value_t = 30)]
    max_steps: u32,
    /// Output folder (re-running with the same folder and settings resumes).
    #[arg(long)]
    out: PathBuf,
    /// Start a new run from the first trial of the run in DIR (same settings apart from
    /// --trials and the reflector), instead of running that trial again: no reflection exists
    /// before it, so the reflector cannot change it. Runs that compare reflectors (the
    /// canary, the loop's rounds) share it this way. Ignored when --out already holds a run.
    #[arg(long, value_name = "DIR")]
    first_trial_from: Option<PathBuf>,
    /// Leave out the first N tasks (held-out sets: train on the first N, test on the rest).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Only the first N tasks (after --skip).
    #[arg(long)]
    limit: Option<usize>,
    /// Only these task ids (comma-separated, e.g. clean-1001003).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Episodes run at once through one session (continuous batching: each episode's next
    /// action continues in its own lane, on its KV). 1: one after another.
    #[arg(long, default_value_t = 1)]
    parallel: u32,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Args)]
struct HumanevalArgs {
    /// reflexion (self-written tests, reflection, retries) or none (one shot).
    #[arg(long, default_value = "reflexion")]
    strategy: String,
    /// Most implementations per task (the first plus retries).
    #[arg(long, default_value_t = 5)]
    max_iters: u32,
    /// Actor model (manifest name or GGUF path); it writes the tests and the code, and the
    /// reflections too unless --reflector names another model or --reflector-adapter is given.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    actor: String,
    /// Reflector model, or `actor` to reflect with the actor itself.
    #[arg(long, default_value = "actor")]
    reflector: String,
    /// A LoRA adapter for the reflector: a GGUF file, or `active` (see `eval hotpotqa`).
    #[arg(long)]
    reflector_adapter: Option<String>,
    /// Output folder (re-running with the same folder and settings resumes).
    #[arg(long)]
    out: PathBuf,
    /// Problems JSONL(.gz) (default: ../shared/data/humaneval/HumanEval.jsonl.gz).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Leave out the first N problems (held-out sets: train on the first N, test on the rest).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Only the first N problems (after --skip).
    #[arg(long)]
    limit: Option<usize>,
    /// Only these task ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Sandbox runs at once (tests of one implementation run in parallel; hidden tests run
    /// while the model works on the next task).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Wall-clock limit of one test run, milliseconds.
    #[arg(long, default_value_t = 6_000)]
    test_timeout_ms: u64,
    /// Python interpreter for the sandbox.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch missing models.
    #[arg(long)]
    no_fetch: bool,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Model: manifest name or alias, or a path to a GGUF file.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Context size in tokens (default: the target profile's).
    #[arg(long)]
    ctx_size: Option<u32>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not fetch a missing model; fail instead.
    #[arg(long)]
    no_fetch: bool,
    /// LoRA adapter (GGUF) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Scale of the adapter.
    #[arg(long, default_value_t = 1.0, requires = "adapter")]
    adapter_scale: f32,
}

#[derive(Args, Clone)]
struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: i32,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// GBNF grammar file constraining the output.
    #[arg(long)]
    grammar: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt (a user message, unless --raw).
    #[arg(long, short)]
    prompt: String,
    /// System message.
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Print one JSON object (text and statistics) instead of streaming.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// System message.
    #[arg(long)]
    system: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Actor model (fetched if missing).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Household tasks (one per task type, in order: put, clean, heat, cool, examine, puttwo).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
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

fn run(cli: Cli) -> Result<()> {
    let profile = TargetProfile::load(&cli.target)?;
    match cli.command {
        Command::Demo(a) => demo(&profile, &a, cli.verbose > 0),
        Command::Generate(a) => generate(&profile, &a),
        Command::Chat(a) => chat(&profile, &a),
        Command::Models(m) => models(m),
        Command::Eval(EvalCommand::Hotpotqa(a)) => eval_hotpotqa(&profile, &a),
        Command::Eval(EvalCommand::Humaneval(a)) => eval_humaneval(&profile, &a),
        Command::Eval(EvalCommand::Household(a)) => eval_household(&profile, &a),
        Command::Eval(EvalCommand::Gsm8k(a)) => eval_rise(&profile, &a, Dataset::Gsm8k),
        Command::Eval(EvalCommand::Math(a)) => eval_rise(&profile, &a, Dataset::Math),
        Command::Rollouts(RolloutsCommand::Gsm8k(a)) => rollouts(&profile, &a, Dataset::Gsm8k),
        Command::Rollouts(RolloutsCommand::Math(a)) => rollouts(&profile, &a, Dataset::Math),
        Command::Dataset(DatasetCommand::Rise {
            criteria,
            tau,
            seed,
            input,
            out,
        }) => dataset_rise(&criteria, tau, seed, &input, &out),
        Command::Eval(EvalCommand::Plot { runs, out, title }) => eval_plot(&runs, &out, &title),
        Command::Sandbox(c) => sandbox_cmd(c),
        Command::Adapters(c) => adapters_cmd(&profile, c),
        Command::Play(PlayCommand::Household { seed, task_type }) => {
            play_household(seed, &task_type)
        }
        Command::Targets { json } => targets(json),
        Command::Bench(a) => bench(&profile, a),
    }
}

/// Resolves a model name or path to a file, fetching a known model when allowed.
fn resolve(name: &str, allow_fetch: bool) -> Result<(PathBuf, Option<Manifest>)> {
    match ModelRef::parse(name)? {
        ModelRef::File(p) => Ok((p, None)),
        ModelRef::Manifest(m) => {
            let home = home_dir();
            let path = match fetch::installed(&m, &home) {
                Some(p) => p,
                None if allow_fetch => {
                    eprintln!(
                        "fetching {} ({} MB) into {} ...",
                        m.name,
                        m.size_bytes >> 20,
                        home.display()
                    );
                    fetch::fetch(
                        &m,
                        &home,
                        FetchOptions {
                            force: false,
                            progress: true,
                        },
                    )?
                }
                None => fetch::require_installed(&m, &home)?,
            };
            Ok((path, Some(*m)))
        }
    }
}

fn load(profile: &TargetProfile, args: &ModelArgs) -> Result<LlamaModel> {
    let (path, manifest) = resolve(&args.model, !args.no_fetch)?;
    let opts = LoadOptions {
        profile: profile.clone(),
        chat_template: manifest
            .as_ref()
            .and_then(|m| m.chat_template.override_template.clone()),
        name: manifest.as_ref().map(|m| m.name.clone()),
    };
    let model = LlamaModel::load(&path, opts)?;
    report_backend(profile, &model)?;
    Ok(model)
}

/// Prints the target, backend and devices actually in use (stderr).
fn report_backend(profile: &TargetProfile, model: &LlamaModel) -> Result<()> {
    let (devices, _) = llama::devices()?;
    let gpus: Vec<_> = devices.iter().filter(|d| d.backend != "CPU").collect();
    let used = if profile.gpu_layers > 0 && !gpus.is_empty() {
        gpus.iter()
            .map(|d| format!("{} {} ({})", d.backend, d.name, d.description))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        let cpu = devices
            .iter()
            .find(|d| d.backend == "CPU")
            .map(|d| d.description.clone())
            .unwrap_or_default();
        format!("CPU ({cpu})")
    };
    eprintln!(
        "[retroformer] model {} | target {} | backend {} | device {} | loaded in {:.0} ms",
        model.name(),
        profile.name,
        profile.backend.name(),
        used,
        model.load_ms()
    );
    if profile.gpu_layers > 0 && gpus.is_empty() {
        eprintln!(
            "[retroformer] warning: target {} asks for GPU offload but this build sees no GPU device; running on the CPU",
            profile.name
        );
    }
    Ok(())
}

fn open_session(model: &LlamaModel, args: &ModelArgs) -> Result<Box<dyn Session>> {
    open_batch_session(model, args, 1, 0)
}

/// A session that decodes up to `sequences` requests together, each with `ctx` tokens of
/// context of its own (0: the model arguments' context).
fn open_batch_session(
    model: &LlamaModel,
    args: &ModelArgs,
    sequences: u32,
    ctx: u32,
) -> Result<Box<dyn Session>> {
    // With several sequences the context is per sequence (each has a KV stream of its own).
    let context_size = if sequences > 1 && ctx > 0 {
        Some(ctx)
    } else {
        args.ctx_size
    };
    let mut s = model.session(&SessionOptions {
        context_size,
        threads: args.threads,
        sequences: Some(sequences),
    })?;
    if let Some(a) = &args.adapter {
        let h = model.load_adapter(a)?;
        s.set_adapter(Some((h, args.adapter_scale)))?;
    }
    // What the session really uses (threads are clamped to the cores, the context rounded up).
    let info = s.info()?;
    eprintln!(
        "[retroformer] session: {} threads, context {} tokens",
        info.threads, info.context_size
    );
    Ok(s)
}

fn request(prompt: String, s: &SamplingArgs) -> Result<GenerateRequest> {
    let grammar = match &s.grammar {
        Some(p) => Some(Grammar {
            text: std::fs::read_to_string(p)
                .with_context(|| format!("--grammar {}", p.display()))?,
            root: "root".into(),
            origin: p.display().to_string(),
        }),
        None => None,
    };
    let sampling = SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: 64,
        seed: s.seed,
    };
    sampling.validate().map_err(|e| {
        anyhow::anyhow!(
            "--{}",
            e.to_string()
                .trim_start_matches("invalid ")
                .replace('_', "-")
        )
    })?;
    Ok(GenerateRequest {
        prompt,
        max_tokens: s.max_tokens,
        stop: s.stop.clone(),
        sampling,
        grammar,
        add_bos: true,
        parse_special: true,
        ignore_eos: false,
    })
}

fn stream_generate(
    session: &mut dyn Session,
    req: &GenerateRequest,
    echo: bool,
) -> Result<Generation> {
    let g = session.generate(req, &mut |t| {
        if echo {
            let mut out = std::io::stdout();
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        }
        true
    })?;
    Ok(g)
}

fn print_stats(g: &Generation) {
    let s = &g.stats;
    eprintln!(
        "\n[retroformer] prompt {} tok (reused {}, evaluated {}) in {:.0} ms = {:.0} t/s | generated {} tok in {:.0} ms = {:.1} t/s | finish {:?}",
        s.prompt_tokens,
        s.reused_tokens,
        s.evaluated_tokens,
        s.prefill_ms,
        s.prefill_tps(),
        s.generated_tokens,
        s.decode_ms,
        s.decode_tps(),
        g.finish
    );
}

fn generate(profile: &TargetProfile, a: &GenerateArgs) -> Result<()> {
    let model = load(profile, &a.model)?;
    let prompt = if a.raw {
        a.prompt.clone()
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", &a.prompt));
        model.chat_prompt(&msgs, true)?
    };
    let req = request(prompt, &a.sampling)?;
    let mut session = open_session(&model, &a.model)?;
    let g = stream_generate(session.as_mut(), &req, !a.json)?;
    if a.json {
        let out = serde_json::json!({
            "model": model.name(),
            "target": profile.name,
            "text": g.text,
            "finish": g.finish,
            "stats": g.stats,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
        print_stats(&g);
    }
    Ok(())
}

fn chat(profile: &TargetProfile, a: &ChatArgs) -> Result<()> {
    let model = load(profile, &a.model)?;
    let mut session = open_session(&model, &a.model)?;
    let mut msgs = Vec::new();
    if let Some(s) = &a.system {
        msgs.push(ChatMessage::new("system", s));
    }
    eprintln!(
        "[retroformer] chat with {} (empty line or Ctrl-D to quit)",
        model.name()
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        msgs.push(ChatMessage::new("user", line.trim_end()));
        let req = request(model.chat_prompt(&msgs, true)?, &a.sampling)?;
        let g = stream_generate(session.as_mut(), &req, true)?;
        println!();
        print_stats(&g);
        msgs.push(ChatMessage::new("assistant", g.text));
    }
}

/// Print a line above a progress bar, or to stderr when the bar is hidden (not a terminal).
fn say(bar: &indicatif::ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// The main job: Reflexion on a few household tasks with the default model, needing no data
/// files (the few-shot examples come from the prompt file when present, else from the world).
fn demo(profile: &TargetProfile, a: &DemoArgs, verbose: bool) -> Result<()> {
    use retroformer::agent::household::{HouseholdAgent, HouseholdConfig};
    use retroformer::agent::runner::{run_trials, RunConfig};
    use retroformer::env::household::{eval_split, TaskType};

    if a.tasks == 0 || a.trials == 0 || a.max_steps == 0 {
        anyhow::bail!("--tasks, --trials and --max-steps must be at least 1");
    }
    // One task of each type, in order, then the next of each.
    let split = eval_split();
    let mut specs = Vec::new();
    for round in 0.. {
        for t in TaskType::ALL {
            if let Some(s) = split.iter().filter(|s| s.task_type == t).nth(round) {
                specs.push(*s);
            }
        }
        if specs.len() >= a.tasks || round > 40 {
            break;
        }
    }
    specs.truncate(a.tasks);
    let out = match &a.out {
        Some(o) => o.clone(),
        None => home_dir().join("runs").join(format!(
            "demo-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        )),
    };
    let args = agent_model_args(&a.model, profile, a.threads, false);
    let actor = load(profile, &args)?;
    let mut session = open_session(&actor, &args)?;
    let mut reflector = open_session(&actor, &args)?;
    let cfg = RunConfig {
        agent: "household".into(),
        trials: a.trials,
        strategy: "reflexion".into(),
        memory: 3,
        global_docstore: false,
        max_steps: a.max_steps,
        max_prompt_tokens: 0,
        last_attempt_tokens: 0,
        actor: a.model.clone(),
        reflector: "actor".into(),
        reflector_adapter: None,
        reflector_temperature: 0.0,
        reflector_seed: 0,
    };
    let tasks = HouseholdAgent::tasks(&specs);
    eprintln!(
        "[retroformer] demo: Reflexion on {} household tasks, {} trials, actor {}; results in {}",
        tasks.len(),
        a.trials,
        a.model,
        out.display()
    );
    let bar = task_bar(tasks.len() * a.trials as usize);
    let live = bar.clone();
    let mut agent = HouseholdAgent::new(
        &specs,
        session.as_mut(),
        reflector.as_mut(),
        HouseholdConfig {
            max_steps: a.max_steps,
            ..HouseholdConfig::default()
        },
        3,
    )
    .on_step(move |action, observation| {
        if verbose {
            say(&live, &format!("> {action}\n{observation}"));
        }
    });
    let summaries = run_trials(&tasks, &mut agent, &cfg, &out, &mut |r| {
        bar.inc(1);
        if verbose {
            say(
                &bar,
                &format!(
                    "[trial {} {}: {}]",
                    r.trial + 1,
                    r.task_id,
                    if r.success { "solved" } else { "failed" }
                ),
            );
        }
        bar.set_message(format!(
            "trial {} {}: {}",
            r.trial + 1,
            r.task_id,
            if r.success { "solved" } else { "failed" }
        ));
    })?;
    bar.finish_and_clear();
    println!("success by trial:");
    report_trials(
        &format!(
            "Demo: household Reflexion, {} ({} tasks)",
            a.model,
            tasks.len()
        ),
        &cfg,
        &summaries,
        &out,
    )
}

fn models(cmd: ModelsCommand) -> Result<()> {
    let home = home_dir();
    match cmd {
        ModelsCommand::List { json } => {
            let rows: Vec<_> = Manifest::builtin()
                .into_iter()
                .map(|m| {
                    let installed = fetch::installed(&m, &home);
                    (m, installed)
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(m, p)| serde_json::json!({"manifest": m, "installed": p}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<30} {:<8} {:<8} {:>8}  {:<10} LICENCE",
                    "NAME", "ARCH", "QUANT", "SIZE", "STATUS"
                );
                for (m, p) in rows {
                    println!(
                        "{:<30} {:<8} {:<8} {:>6}MB  {:<10} {}{}",
                        m.name,
                        m.architecture,
                        m.quantization,
                        m.size_bytes >> 20,
                        if p.is_some() { "installed" } else { "-" },
                        m.licence,
                        if m.default { "  (default)" } else { "" }
                    );
                }
                println!("\ncache: {}", home.display());
            }
        }
        ModelsCommand::Fetch { name, force } => {
            let m = Manifest::find(&name).ok_or_else(|| unknown(&name))?;
            let p = fetch::fetch(
                &m,
                &home,
                FetchOptions {
                    force,
                    progress: true,
                },
            )?;
            gguf::validate_file(&p)?;
            println!("{}", p.display());
        }
        ModelsCommand::Verify { name } => match ModelRef::parse(&name)? {
            ModelRef::Manifest(m) => {
                let p = fetch::verify(&m, &home, true)?;
                let h = gguf::validate_file(&p)?;
                println!(
                    "{}: sha256 ok, {} bytes, GGUF v{} with {} tensors",
                    p.display(),
                    m.size_bytes,
                    h.version,
                    h.tensors.len()
                );
            }
            ModelRef::File(p) => {
                let h = gguf::validate_file(&p)?;
                let digest = fetch::sha256_file(&p, true)?;
                let known = Manifest::builtin().into_iter().find(|m| m.sha256 == digest);
                println!(
                    "{}: valid GGUF v{} with {} tensors, sha256 {digest}{}",
                    p.display(),
                    h.version,
                    h.tensors.len(),
                    known
                        .map(|m| format!(" (matches manifest {})", m.name))
                        .unwrap_or_else(|| " (no manifest has this hash)".into())
                );
            }
        },
        ModelsCommand::Info { model, json } => {
            let path = match ModelRef::parse(&model)? {
                ModelRef::File(p) => p,
                ModelRef::Manifest(m) => fetch::require_installed(&m, &home)?,
            };
            info(&path, json)?;
        }
    }
    Ok(())
}

fn unknown(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unknown model '{name}'; known: {}",
        Manifest::builtin()
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn info(path: &Path, json: bool) -> Result<()> {
    let h = gguf::validate_file(path)?;
    let s = h.summary();
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    println!("file            {}", path.display());
    println!("gguf version    {}", s.version);
    println!(
        "type            {}",
        s.file_type.as_deref().unwrap_or("model")
    );
    println!(
        "architecture    {}",
        s.architecture.as_deref().unwrap_or("-")
    );
    println!("name            {}", s.name.as_deref().unwrap_or("-"));
    println!("layers          {}", opt(s.layers));
    println!("heads           {} (kv {})", opt(s.heads), opt(s.kv_heads));
    println!("embedding       {}", opt(s.embedding));
    println!("context length  {}", opt(s.context_length));
    println!("vocabulary      {}", opt(s.vocab));
    println!("tensors         {}", s.tensor_count);
    println!("parameters      {}", s.parameters);
    println!(
        "tensor types    {}",
        s.tensor_types
            .iter()
            .map(|(t, n)| format!("{t} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "chat template   {}",
        if s.chat_template { "yes" } else { "no" }
    );
    println!("size            {} bytes", s.file_size);
    Ok(())
}

fn targets(json: bool) -> Result<()> {
    let all = TargetProfile::builtin();
    let (devices, sys_info) = llama::devices()?;
    if json {
        let v = serde_json::json!({"targets": all, "devices": devices, "llama_cpp_system_info": sys_info});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<7} {:>7} {:>6} {:>5}  DESCRIPTION",
        "TARGET", "BACKEND", "THREADS", "CTX", "GPU"
    );
    for t in &all {
        let threads = match t.threads {
            retroformer::target::Threads::Fixed(n) => n.to_string(),
            retroformer::target::Threads::Auto(_) => format!("auto={}", t.resolve_threads()),
        };
        let built = if t.backend.compiled_in() {
            ""
        } else {
            "  [backend not in this build]"
        };
        println!(
            "{:<18} {:<7} {:>7} {:>6} {:>5}  {}{}",
            t.name,
            t.backend.name(),
            threads,
            t.context_size,
            t.gpu_layers,
            t.description,
            built
        );
    }
    println!("\ndevices seen by llama.cpp:");
    for d in devices {
        println!(
            "  {:<10} {:<8} {} ({} MB)",
            d.name,
            d.backend,
            d.description,
            d.memory_total >> 20
        );
    }
    println!("llama.cpp: {sys_info}");
    Ok(())
}

/// The number of trials of a Reflexion evaluation into `out`: `--trials` when given, else the
/// count the run already in `out` was saved with (running again without the flag resumes it,
/// never extends it), else `default`.
fn trials_or_saved(given: Option<u32>, out: &std::path::Path, default: u32) -> Result<u32> {
    if let Some(t) = given {
        return Ok(t);
    }
    let saved: Option<retroformer::agent::runner::RunConfig> =
        retroformer::agent::files::read_json(&out.join("run.json"))?;
    Ok(saved.map_or(default, |c| c.trials))
}

fn eval_hotpotqa(profile: &TargetProfile, a: &HotpotArgs) -> Result<()> {
    use retroformer::agent::reflect::LlmReflector;
    use retroformer::agent::runner::{self, Agents, RunConfig};
    use retroformer::agent::Strategy;
    use retroformer::env::hotpotqa;

    if !["react", "cot", "cot-context"].contains(&a.agent.as_str()) {
        anyhow::bail!(
            "--agent {}: known agents are react, cot, cot-context",
            a.agent
        );
    }
    let (out, cfg) = match (&a.resume, &a.out) {
        (Some(dir), _) => {
            let text = std::fs::read(dir.join("run.json"))
                .with_context(|| format!("--resume {}: no run.json there", dir.display()))?;
            let mut cfg: RunConfig = serde_json::from_slice(&text)
                .with_context(|| format!("{}", dir.join("run.json").display()))?;
            if let Some(t) = a.trials {
                cfg.trials = t;
            }
            (dir.clone(), cfg)
        }
        (None, Some(dir)) => {
            if Strategy::parse(&a.strategy).is_none() {
                anyhow::bail!(
                    "--strategy {}: known strategies are {}",
                    a.strategy,
                    Strategy::NAMES.join(", ")
                );
            }
            let cfg = RunConfig {
                agent: a.agent.clone(),
                trials: trials_or_saved(a.trials, dir, 5)?,
                strategy: a.strategy.clone(),
                memory: a.memory,
                global_docstore: a.global_docstore,
                max_steps: a.max_steps,
                max_prompt_tokens: 3896,
                last_attempt_tokens: 1600,
                actor: a.actor.clone(),
                reflector: a.reflector.clone(),
                reflector_adapter: a.reflector_adapter.clone(),
                reflector_temperature: reflector_temperature(a.reflector_temperature)?,
                reflector_seed: a.reflector_seed,
            };
            (dir.clone(), cfg)
        }
        (None, None) => anyhow::bail!("--out DIR is required (or --resume DIR)"),
    };
    let data = match &a.data {
        Some(p) => p.clone(),
        None => hotpotqa::default_path()?,
    };
    let mut questions = hotpotqa::load(&data)?;
    if !a.tasks.is_empty() {
        for id in &a.tasks {
            if !questions.iter().any(|q| &q.id == id) {
                anyhow::bail!("--tasks: no question with id {id} in {}", data.display());
            }
        }
        questions.retain(|q| a.tasks.contains(&q.id));
    }
    questions.drain(..a.skip.min(questions.len()));
    if let Some(n) = a.limit {
        questions.truncate(n);
    }
    if a.parallel == 0 {
        anyhow::bail!("--parallel must be at least 1");
    }
    // A lane holds one episode's prompt (at most the 3896-token budget) and its next call,
    // or one reflection prompt (the example and a failed trajectory) and its reply.
    let (seqs, ctx) = if a.parallel > 1 && cfg.agent == "react" {
        batch_lanes(profile, a.parallel, 4096)
    } else {
        (1, 0)
    };
    let model_args = |name: &str| agent_model_args(name, profile, a.threads, a.no_fetch);
    let actor_args = model_args(&cfg.actor);
    let actor = load(profile, &actor_args)?;
    let mut session = open_batch_session(&actor, &actor_args, seqs, ctx)?;
    let (reflector_model, r_args) = if cfg.reflector == "actor" {
        (None, actor_args.clone())
    } else {
        let r_args = model_args(&cfg.reflector);
        (Some(load(profile, &r_args)?), r_args)
    };
    let r_model = reflector_model.as_ref().unwrap_or(&actor);
    let mut reflector_session = open_batch_session(r_model, &r_args, seqs, ctx)?;
    apply_run_reflector_adapter(&cfg, r_model, reflector_session.as_mut())?;
    let mut reflector =
        LlmReflector::new(reflector_session, 160).with_sampling(cfg.reflector_sampling());
    eprintln!(
        "[retroformer] hotpotqa: {} questions, {} trials, strategy {}, out {}",
        questions.len(),
        cfg.trials,
        cfg.strategy,
        out.display()
    );
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    if let Some(from) = &a.first_trial_from {
        let n = runner::seed_first_trial(from, &out, &cfg, &runner::hotpotqa_tasks(&questions))?;
        if n > 0 {
            eprintln!(
                "[retroformer] trial 1 of {} questions taken from {}",
                n,
                from.display()
            );
        }
    }
    let summaries = runner::run(
        &questions,
        Agents {
            actor: &actor,
            session: session.as_mut(),
            reflector: &mut reflector,
            parallel: seqs as usize,
        },
        &cfg,
        &out,
        &mut |r| {
            bar.set_message(format!(
                "trial {} {}: {} ({} steps)",
                r.trial + 1,
                r.task_id,
                if r.success {
                    "solved"
                } else if r.halted {
                    "halted"
                } else {
                    "wrong"
                },
                r.steps.len()
            ));
            tracing::info!(trial = r.trial, task = %r.task_id, success = r.success, "task done");
        },
    )?;
    bar.finish_and_clear();
    report_trials(
        &format!(
            "HotPotQA, {} + {} ({} questions)",
            cfg.agent,
            cfg.strategy,
            questions.len()
        ),
        &cfg,
        &summaries,
        &out,
    )
}

fn play_household(seed: u64, task_type: &str) -> Result<()> {
    use retroformer::env::household::{HouseholdEnv, TaskSpec, TaskType};
    let Some(t) = TaskType::from_name(task_type) else {
        anyhow::bail!(
            "--type {task_type}: known types are put, clean, heat, cool, examine, puttwo"
        );
    };
    let mut env = HouseholdEnv::new(&TaskSpec::new(seed, t));
    println!("{}", env.reset());
    let stdin = std::io::stdin();
    let mut steps = 0u32;
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let action = line.trim();
        match action {
            "" => continue,
            "quit" | "exit" => break,
            "help" => {
                println!("valid actions: {}", env.admissible_actions().join(", "));
                continue;
            }
            _ => {}
        }
        steps += 1;
        let r = env.step(action);
        println!("{}", r.observation);
        if env.is_success() {
            println!("Task solved in {steps} steps.");
            break;
        }
    }
    Ok(())
}

/// The summary table of a trial run, and its success-by-trial chart (SVG and PNG).
fn report_trials(
    title: &str,
    cfg: &retroformer::agent::runner::RunConfig,
    summaries: &[retroformer::agent::runner::TrialSummary],
    out: &Path,
) -> Result<()> {
    println!(
        "{:>5} {:>9} {:>7} {:>7} {:>8} {:>10} {:>10}",
        "trial", "attempted", "solved", "total", "success", "evaluated", "reused"
    );
    for t in summaries {
        println!(
            "{:>5} {:>9} {:>7} {:>7} {:>8.3} {:>10} {:>10}",
            t.trial + 1,
            t.attempted,
            t.solved_now,
            t.solved_total,
            t.success_rate,
            t.evaluated_tokens,
            t.reused_tokens
        );
    }
    let label = retroformer::agent::runner::RunLabel {
        agent: cfg.agent.clone(),
        strategy: cfg.strategy.clone(),
        actor: cfg.actor.clone(),
        trials: cfg.trials,
        reflector: Some(cfg.reflector.clone()),
        reflector_adapter: cfg.reflector_adapter.clone(),
    };
    let svg = retroformer::report::line_chart_svg(
        title,
        "trial",
        "success rate",
        (0.0, 1.0),
        &[success_series(&label, summaries)],
    );
    let plots = retroformer::report::write_chart(&out.join("success"), &svg)?;
    println!(
        "results: {} (trial-NN/*.json, records.jsonl, plots {})",
        out.display(),
        plots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Puts the run's reflector adapter (a file, or `active`: the active one of the reflector
/// model's store) on the reflector's session. The actor's session never gets it.
/// `--reflector-temperature`, checked: 0 (greedy) or a finite positive temperature.
fn reflector_temperature(t: f32) -> Result<f32> {
    if !(t.is_finite() && t >= 0.0) {
        anyhow::bail!("--reflector-temperature {t}: must be 0 (greedy) or a positive number");
    }
    Ok(t)
}

/// [`apply_reflector_adapter`] with a run's settings (HotPotQA, household).
fn apply_run_reflector_adapter(
    cfg: &retroformer::agent::runner::RunConfig,
    model: &LlamaModel,
    session: &mut dyn Session,
) -> Result<()> {
    apply_reflector_adapter(
        cfg.reflector_adapter.as_deref(),
        &cfg.reflector,
        &cfg.actor,
        model,
        session,
    )
}

fn apply_reflector_adapter(
    spec: Option<&str>,
    reflector: &str,
    actor: &str,
    model: &LlamaModel,
    session: &mut dyn Session,
) -> Result<()> {
    let Some(spec) = spec else {
        return Ok(());
    };
    let path = if spec == "active" {
        let name = if reflector == "actor" {
            actor
        } else {
            reflector
        };
        let (store, _, _) = adapter_store(name)?;
        let m = store.active()?.with_context(|| {
            format!(
                "--reflector-adapter active: no adapter is active in {}",
                store.root().display()
            )
        })?;
        store.adapter_path(&m.id)
    } else {
        PathBuf::from(spec)
    };
    let handle = model.load_adapter(&path).context("--reflector-adapter")?;
    session.set_adapter(Some((handle, 1.0)))?;
    eprintln!("[retroformer] reflector adapter: {}", path.display());
    Ok(())
}

fn eval_household(profile: &TargetProfile, a: &HouseholdArgs) -> Result<()> {
    use retroformer::agent::household::{HouseholdAgent, HouseholdConfig};
    use retroformer::agent::runner::{run_trials, RunConfig};
    use retroformer::env::household::{eval_split, train_split};

    if !["reflexion", "none"].contains(&a.strategy.as_str()) {
        anyhow::bail!(
            "--strategy {}: the household runs reflexion or none",
            a.strategy
        );
    }
    let mut specs = match a.split.as_str() {
        "eval" => eval_split(),
        "train" => train_split(a.skip + a.limit.unwrap_or(134)),
        other => anyhow::bail!("--split {other}: known splits are eval and train"),
    };
    if !a.tasks.is_empty() {
        for id in &a.tasks {
            if !specs.iter().any(|s| &s.id() == id) {
                anyhow::bail!("--tasks: no task {id} in the {} split", a.split);
            }
        }
        specs.retain(|s| a.tasks.contains(&s.id()));
    }
    specs.drain(..a.skip.min(specs.len()));
    if let Some(n) = a.limit {
        specs.truncate(n);
    }
    if a.max_steps == 0 {
        anyhow::bail!("--max-steps must be at least 1");
    }
    if a.parallel == 0 {
        anyhow::bail!("--parallel must be at least 1");
    }
    // Checked before the models load; the settings below take it.
    let temperature = reflector_temperature(a.reflector_temperature)?;
    let args = agent_model_args(&a.actor, profile, a.threads, a.no_fetch);
    let actor = load(profile, &args)?;
    // Household prompts (instruction, two examples, memory, up to 30 steps) stay under about
    // 3k tokens; the examples differ by task type, so lanes share little.
    let (seqs, ctx) = if a.parallel > 1 {
        batch_lanes(profile, a.parallel, 3072)
    } else {
        (1, 0)
    };
    let lanes = seqs;
    let mut session = open_batch_session(&actor, &args, seqs, ctx)?;
    let reflector_model = if a.reflector == "actor" {
        None
    } else {
        let r_args = agent_model_args(&a.reflector, profile, a.threads, a.no_fetch);
        Some((load(profile, &r_args)?, r_args))
    };
    let (r_model, r_args) = match &reflector_model {
        Some((m, r)) => (m, r),
        None => (&actor, &args),
    };
    let mut reflector_session = open_batch_session(r_model, r_args, seqs, ctx)?;
    let cfg = RunConfig {
        agent: "household".into(),
        trials: trials_or_saved(a.trials, &a.out, 10)?,
        strategy: a.strategy.clone(),
        memory: a.memory,
        global_docstore: false,
        max_steps: a.max_steps,
        max_prompt_tokens: 0,
        last_attempt_tokens: 0,
        actor: a.actor.clone(),
        reflector: a.reflector.clone(),
        reflector_adapter: a.reflector_adapter.clone(),
        reflector_temperature: temperature,
        reflector_seed: a.reflector_seed,
    };
    apply_run_reflector_adapter(&cfg, r_model, reflector_session.as_mut())?;
    let household_cfg = HouseholdConfig {
        max_steps: a.max_steps,
        ..HouseholdConfig::default()
    };
    let tasks = HouseholdAgent::tasks(&specs);
    let mut agent = HouseholdAgent::new(
        &specs,
        session.as_mut(),
        reflector_session.as_mut(),
        household_cfg,
        a.memory,
    )
    .reflection_sampling(cfg.reflector_sampling())
    .parallel(lanes as usize);
    eprintln!(
        "[retroformer] household: {} tasks ({} split), {} trials, strategy {}, out {}",
        tasks.len(),
        a.split,
        cfg.trials,
        cfg.strategy,
        a.out.display()
    );
    if let Some(from) = &a.first_trial_from {
        let n = retroformer::agent::runner::seed_first_trial(from, &a.out, &cfg, &tasks)?;
        if n > 0 {
            eprintln!(
                "[retroformer] trial 1 of {} tasks taken from {}",
                n,
                from.display()
            );
        }
    }
    let bar = task_bar(tasks.len() * cfg.trials as usize);
    let summaries = run_trials(&tasks, &mut agent, &cfg, &a.out, &mut |r| {
        bar.inc(1);
        bar.set_message(format!(
            "trial {} {}: {} in {} steps",
            r.trial + 1,
            r.task_id,
            if r.success { "solved" } else { "failed" },
            r.steps.len()
        ));
    })?;
    bar.finish_and_clear();
    report_trials(
        &format!("Household, {} ({} tasks)", cfg.strategy, tasks.len()),
        &cfg,
        &summaries,
        &a.out,
    )
}

fn eval_humaneval(profile: &TargetProfile, a: &HumanevalArgs) -> Result<()> {
    use retroformer::agent::programming::{self, Coder, CodingConfig};
    use retroformer::env::humaneval;

    if !["reflexion", "none"].contains(&a.strategy.as_str()) {
        anyhow::bail!(
            "--strategy {}: programming supports reflexion and none",
            a.strategy
        );
    }
    if a.max_iters == 0 {
        anyhow::bail!("--max-iters must be at least 1");
    }
    let data = match &a.data {
        Some(p) => p.clone(),
        None => humaneval::default_path()?,
    };
    let mut problems = humaneval::load(&data)?;
    if !a.tasks.is_empty() {
        for id in &a.tasks {
            if !problems.iter().any(|p| &p.task_id == id) {
                anyhow::bail!("--tasks: no problem with id {id} in {}", data.display());
            }
        }
        problems.retain(|p| a.tasks.contains(&p.task_id));
    }
    problems.drain(..a.skip.min(problems.len()));
    if let Some(n) = a.limit {
        problems.truncate(n);
    }
    if problems.is_empty() {
        anyhow::bail!(
            "no problem left to run in {} (--skip {}, --limit {:?}, --tasks {})",
            data.display(),
            a.skip,
            a.limit,
            a.tasks.len()
        );
    }
    let sandbox = SandboxArgs {
        python: a.python.clone(),
        wall_ms: a.test_timeout_ms,
        memory_mb: 1024,
        require_network_isolation: false,
        allow_root: false,
    }
    .build()?;
    let inactive: Vec<&str> = sandbox
        .isolation()
        .iter()
        .filter(|l| !l.active)
        .map(|l| l.name.as_str())
        .collect();
    if !inactive.is_empty() {
        eprintln!(
            "[retroformer] sandbox: layers not available here: {}",
            inactive.join(", ")
        );
    }
    let pool = retroformer::sandbox::Pool::new(sandbox, a.workers)?;
    let args = agent_model_args(&a.actor, profile, a.threads, a.no_fetch);
    let actor = load(profile, &args)?;
    let mut session = open_session(&actor, &args)?;
    let mut cfg = CodingConfig::new(&a.strategy, a.max_iters, &a.actor);
    cfg.reflector = a.reflector.clone();
    cfg.reflector_adapter = a.reflector_adapter.clone();
    // A reflector of its own (another model, or the actor with an adapter) gets its own
    // session; otherwise the actor reflects in its session, as Reflexion does.
    let reflector_model = if a.reflector == "actor" {
        None
    } else {
        let r_args = agent_model_args(&a.reflector, profile, a.threads, a.no_fetch);
        Some((load(profile, &r_args)?, r_args))
    };
    let mut reflector_session = if reflector_model.is_some() || a.reflector_adapter.is_some() {
        let (r_model, r_args) = match &reflector_model {
            Some((m, r)) => (m, r),
            None => (&actor, &args),
        };
        let mut s = open_session(r_model, r_args)?;
        apply_reflector_adapter(
            a.reflector_adapter.as_deref(),
            &a.reflector,
            &a.actor,
            r_model,
            s.as_mut(),
        )?;
        Some(s)
    } else {
        None
    };
    eprintln!(
        "[retroformer] humaneval: {} problems, strategy {}, max {} iterations, out {}",
        problems.len(),
        cfg.strategy,
        cfg.max_iters,
        a.out.display()
    );
    let bar = task_bar(problems.len());
    let mut passed = 0usize;
    let r_model: &dyn retroformer::llm::LanguageModel = match &reflector_model {
        Some((m, _)) => m,
        None => &actor,
    };
    let mut coder = Coder {
        model: &actor,
        session: session.as_mut(),
        reflector: reflector_session
            .as_mut()
            .map(|s| retroformer::agent::programming::Reflector {
                model: r_model,
                session: s.as_mut(),
            }),
    };
    let (summary, _) = programming::run(&problems, &cfg, &a.out, &mut coder, &pool, |r| {
        passed += usize::from(r.passed);
        bar.inc(1);
        bar.set_message(format!(
            "{}: {} after {} iteration(s); pass@1 so far {}/{}",
            r.task_id,
            r.hidden.outcome.name(),
            r.iterations.len(),
            passed,
            bar.position()
        ));
        tracing::info!(task = %r.task_id, outcome = r.hidden.outcome.name(), "task done");
    })?;
    bar.finish_and_clear();
    println!(
        "pass@1 {:.3} ({} of {}), strategy {}, actor {}",
        summary.pass_at_1, summary.passed, summary.tasks, cfg.strategy, cfg.actor
    );
    println!(
        "hidden-test outcomes: {}",
        summary
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "loops ended: {}",
        summary
            .stops
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "per task: {:.1} iterations, {:.1} s, {:.0} tokens ({:.0} generated)",
        summary.mean_iterations,
        summary.mean_task_s,
        summary.mean_tokens,
        summary.mean_generated_tokens
    );
    let mut series = vec![retroformer::report::Series {
        label: "own tests all pass (cumulative)".into(),
        points: summary
            .own_tests_pass_by_iteration
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, *v))
            .collect(),
    }];
    series.push(retroformer::report::Series {
        label: format!("hidden tests, final: pass@1 {:.3}", summary.pass_at_1),
        points: (1..=cfg.max_iters)
            .map(|k| (f64::from(k), summary.pass_at_1))
            .collect(),
    });
    let svg = retroformer::report::line_chart_svg(
        &format!(
            "HumanEval, {} ({}, {} problems)",
            cfg.strategy,
            cfg.actor,
            problems.len()
        ),
        "iteration",
        "share of tasks",
        (0.0, 1.0),
        &series,
    );
    let plots = retroformer::report::write_chart(&a.out.join("success"), &svg)?;
    println!(
        "results: {} (trial-00/*.json, humaneval.json, records.jsonl, plots {})",
        a.out.display(),
        plots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn load_math_problems(
    dataset: Dataset,
    data: &Option<PathBuf>,
    split: &str,
    limit: Option<usize>,
) -> Result<Vec<retroformer::env::math::MathProblem>> {
    use retroformer::env::math;
    let mut problems = match (dataset, data) {
        (Dataset::Gsm8k, Some(p)) => math::load_gsm8k(p)?,
        (Dataset::Gsm8k, None) => math::load_gsm8k(&math::default_gsm8k_path(split)?)?,
        (Dataset::Math, Some(p)) => math::load_math(p)?,
        (Dataset::Math, None) => {
            anyhow::bail!("--data PATH is required for MATH (JSONL rows with problem and solution)")
        }
    };
    if let Some(n) = limit {
        problems.truncate(n);
    }
    Ok(problems)
}

fn eval_rise(profile: &TargetProfile, a: &RiseArgs, dataset: Dataset) -> Result<()> {
    use retroformer::agent::rise::{self, Mode, RiseConfig, Solver};
    let Some(mode) = Mode::parse(&a.mode) else {
        anyhow::bail!(
            "--mode {}: known modes are sequential, parallel, both",
            a.mode
        );
    };
    if a.turns == 0 || a.samples == 0 {
        anyhow::bail!("--turns and --samples must be at least 1");
    }
    let batch = match a.batch {
        Some(0) => anyhow::bail!("--batch must be at least 1"),
        Some(b) => b,
        None => resumed_batch(&a.out)?.unwrap_or(8),
    };
    let problems = load_math_problems(dataset, &a.data, "test", a.limit)?;
    let args = agent_model_args(&a.actor, profile, a.threads, a.no_fetch);
    let model = load(profile, &args)?;
    let mut cfg = RiseConfig::new(dataset, mode, &a.actor);
    cfg.turns = a.turns;
    cfg.window = a.window;
    cfg.samples = a.samples;
    cfg.parallel_temperature = a.temperature;
    cfg.max_tokens = a.max_tokens;
    cfg.seed = a.seed;
    cfg.batch = batch;
    let (sequences, ctx) = if batch > 1 {
        rise_lanes(profile, mode, batch, a.samples, a.window, a.max_tokens)
    } else {
        (1, 0)
    };
    let mut session = open_batch_session(&model, &args, sequences, ctx)?;
    eprintln!(
        "[retroformer] rise: {} problems, mode {}, {} turns (window {}), {} samples, out {}",
        problems.len(),
        cfg.strategy,
        cfg.turns,
        cfg.window,
        cfg.samples,
        a.out.display()
    );
    let bar = task_bar(problems.len());
    let mut solver = Solver {
        model: &model,
        session: session.as_mut(),
    };
    let summary = rise::run(&problems, &cfg, &a.out, &mut solver, |r| {
        bar.inc(1);
        bar.set_message(format!(
            "{}: turns {}",
            r.problem_id,
            r.sequential
                .iter()
                .map(|t| format!("{}", t.reward))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    })?;
    bar.finish_and_clear();
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    println!(
        "m1@t1 {}  m5@t1 {}  m1@t5 {}  p1@t5 {}  ({} problems, {:.1} s and {:.0} generated tokens per problem)",
        f(summary.metrics.m1_t1),
        f(summary.metrics.m5_t1),
        f(summary.metrics.m1_t5),
        f(summary.metrics.p1_t5),
        summary.problems,
        summary.mean_problem_s,
        summary.mean_generated_tokens
    );
    if !summary.accuracy_by_turn.is_empty() {
        let svg = retroformer::report::line_chart_svg(
            &format!("RISE sequential turns, {} ({})", a.actor, summary.problems),
            "turn",
            "accuracy",
            (0.0, 1.0),
            &[retroformer::report::Series {
                label: "accuracy at turn t".into(),
                points: summary
                    .accuracy_by_turn
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ((i + 1) as f64, *v))
                    .collect(),
            }],
        );
        retroformer::report::write_chart(&a.out.join("turns"), &svg)?;
    }
    println!("results: {} (trial-00/*.json, rise.json)", a.out.display());
    Ok(())
}

/// Sequences and context for RISE attempts decoded together: `batch` problems' sequential
/// turns (each up to the prompt, `window` earlier attempts and its own) or their `samples`
/// parallel samples each. The context is capped; groups that do not fit it are split.
fn rise_lanes(
    profile: &TargetProfile,
    mode: retroformer::agent::rise::Mode,
    batch: u32,
    samples: u32,
    window: usize,
    max_tokens: u32,
) -> (u32, u32) {
    use retroformer::agent::rise::Mode;
    let seq = matches!(mode, Mode::Sequential | Mode::Both);
    let par = matches!(mode, Mode::Parallel | Mode::Both);
    let (mut lanes, mut per_lane) = (1u32, 0u32);
    if seq {
        lanes = lanes.max(batch);
        per_lane = per_lane.max(rise_lane_tokens(window, max_tokens));
    }
    if par {
        lanes = lanes.max(batch.saturating_mul(samples));
        per_lane = per_lane.max(rise_lane_tokens(0, max_tokens));
    }
    batch_lanes(profile, lanes, per_lane)
}

/// Lanes and context per lane for `wanted` lanes of `per_lane` tokens: as many lanes as the
/// batch budget (`max_batch_context`) holds, at least 2, at most [`MAX_SEQUENCES`]; requests
/// beyond the lanes wait for one to free up.
///
/// [`MAX_SEQUENCES`]: retroformer::llm::MAX_SEQUENCES
fn batch_lanes(profile: &TargetProfile, wanted: u32, per_lane: u32) -> (u32, u32) {
    let per_lane = per_lane.max(256);
    let fit = (max_batch_context(profile) / per_lane).max(2);
    (
        wanted.min(fit).min(retroformer::llm::MAX_SEQUENCES),
        per_lane,
    )
}

/// Tokens one RISE attempt may need: instruction, worked example and question (generously
/// 400), `window` earlier attempts with their retry messages, and its own answer.
fn rise_lane_tokens(window: usize, max_tokens: u32) -> u32 {
    let window = u32::try_from(window).unwrap_or(u32::MAX);
    400u32
        .saturating_add(window.saturating_mul(max_tokens.saturating_add(40)))
        .saturating_add(max_tokens)
}

/// The most KV cells a batched session asks for, over all its lanes: 8 times the target's
/// context, at most 32768 tokens (the KV cache grows with it).
fn max_batch_context(profile: &TargetProfile) -> u32 {
    profile.context_size.saturating_mul(8).min(32768)
}

/// The `--batch` of the RISE run already in `out` (1 for runs from before the setting), if any.
fn resumed_batch(out: &std::path::Path) -> Result<Option<u32>> {
    let path = out.join("run.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(Some(
        v.get("batch")
            .and_then(|b| b.as_u64())
            .map_or(1, |b| u32::try_from(b).unwrap_or(u32::MAX)),
    ))
}

fn rollouts(profile: &TargetProfile, a: &RolloutArgs, dataset: Dataset) -> Result<()> {
    use retroformer::agent::rise::{self, RolloutConfig, Solver};
    if a.models.is_empty() || a.samples.is_empty() || a.samples.contains(&0) {
        anyhow::bail!("--models and --samples need at least one entry each, samples at least 1");
    }
    let problems = load_math_problems(dataset, &a.data, "train", a.limit)?;
    let mut models = Vec::new();
    // A turn's candidates are decoded together.
    let most = a.samples.iter().copied().max().unwrap_or(1);
    let (sequences, ctx) = if most > 1 {
        batch_lanes(profile, most, rise_lane_tokens(a.window, a.max_tokens))
    } else {
        (1, 0)
    };
    for name in &a.models {
        let args = agent_model_args(name, profile, a.threads, a.no_fetch);
        let m = load(profile, &args)?;
        let s = open_batch_session(&m, &args, sequences, ctx)?;
        models.push((m, s));
    }
    let cfg = RolloutConfig {
        dataset,
        models: a.models.clone(),
        samples: a.samples.clone(),
        turns: a.turns,
        window: a.window,
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        seed: a.seed,
    };
    let mut solvers: Vec<Solver<'_>> = models
        .iter_mut()
        .map(|(m, s)| Solver {
            model: &*m,
            session: s.as_mut(),
        })
        .collect();
    let bar = task_bar(problems.len());
    let all = rise::collect_all(&problems, &cfg, &a.out, &mut solvers, |r| {
        bar.inc(1);
        bar.set_message(format!("{}: {} turn(s)", r.problem_id, r.turns.len()));
    })?;
    bar.finish_and_clear();
    let solved = all
        .iter()
        .filter(|r| r.turns.last().is_some_and(|t| t.reward >= 1.0))
        .count();
    println!(
        "{} rollouts, {} end correct; samples per criterion: {}",
        all.len(),
        solved,
        rise::criterion_counts(&all)
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("rollouts: {}", a.out.join("rollouts").display());
    Ok(())
}

fn dataset_rise(criteria: &str, tau: f64, seed: u64, input: &Path, out: &Path) -> Result<()> {
    use retroformer::agent::rise::{self, Criterion};
    let Some(c) = Criterion::parse(criteria) else {
        anyhow::bail!("--criteria {criteria}: known criteria are all, better, best, success");
    };
    let rollouts =
        rise::read_rollouts(input).with_context(|| format!("--in {}", input.display()))?;
    let samples = rise::to_dataset(&rollouts, c, tau, seed)?;
    rise::write_dataset(out, &samples)?;
    println!(
        "{} samples from {} rollouts (criterion {criteria}, tau {tau}, seed {seed}) -> {}",
        samples.len(),
        rollouts.len(),
        out.display()
    );
    Ok(())
}

/// A progress bar over `n` tasks with elapsed time and an estimate of the rest.
fn task_bar(n: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}, eta {eta}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// The model settings of an agent run: the profile's context (at least 4096 tokens), no adapter.
fn agent_model_args(
    name: &str,
    profile: &TargetProfile,
    threads: Option<u32>,
    no_fetch: bool,
) -> ModelArgs {
    ModelArgs {
        model: name.to_string(),
        ctx_size: Some(profile.context_size.max(4096)),
        threads,
        no_fetch,
        adapter: None,
        adapter_scale: 1.0,
    }
}

/// One run's success rate by trial, labelled with its agent, strategy, actor and reflector.
fn success_series(
    cfg: &retroformer::agent::runner::RunLabel,
    summaries: &[retroformer::agent::runner::TrialSummary],
) -> retroformer::report::Series {
    retroformer::report::Series {
        label: cfg.legend(),
        points: summaries
            .iter()
            .map(|t| (f64::from(t.trial + 1), t.success_rate))
            .collect(),
    }
}

fn eval_plot(runs: &[PathBuf], out: &Path, title: &str) -> Result<()> {
    let mut series = Vec::new();
    for dir in runs {
        let (cfg, summaries) = retroformer::agent::runner::read_run(dir)?;
        if summaries.is_empty() {
            anyhow::bail!("{}: no finished trial to plot", dir.display());
        }
        println!(
            "{}: {}",
            dir.display(),
            summaries
                .iter()
                .map(|t| format!("{:.3}", t.success_rate))
                .collect::<Vec<_>>()
                .join(" ")
        );
        series.push(success_series(&cfg, &summaries));
    }
    let svg =
        retroformer::report::line_chart_svg(title, "trial", "success rate", (0.0, 1.0), &series);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "--out {}: cannot create {}",
                out.display(),
                parent.display()
            )
        })?;
    }
    for p in retroformer::report::write_chart(out, &svg)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The store of `base` and its validated header.
fn adapter_store(
    base: &str,
) -> Result<(retroformer::adapters::AdapterStore, PathBuf, gguf::GgufFile)> {
    let (path, manifest) = resolve(base, false)?;
    let sha = match manifest {
        Some(m) => m.sha256,
        None => fetch::sha256_file(&path, false)?,
    };
    let header = retroformer::gguf::validate_file(&path)?;
    let store = retroformer::adapters::AdapterStore::for_base(&home_dir(), &sha)?;
    Ok((store, path, header))
}

fn adapters_cmd(profile: &TargetProfile, c: AdaptersCommand) -> Result<()> {
    match c {
        AdaptersCommand::List { base, json } => {
            let (store, _, _) = adapter_store(&base)?;
            let active = store.active()?.map(|m| m.id);
            let all = store.list()?;
            if json {
                let adapters: Vec<serde_json::Value> = all
                    .iter()
                    .map(|m| {
                        let mut v = serde_json::to_value(m).expect("manifest serialises");
                        v["path"] = store.adapter_path(&m.id).display().to_string().into();
                        v
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"format_version": 1, "active": active, "adapters": adapters})
                );
                return Ok(());
            }
            if all.is_empty() {
                println!(
                    "no adapters installed for {base} ({})",
                    store.root().display()
                );
            }
            for m in all {
                let mark = if active.as_deref() == Some(m.id.as_str()) {
                    "*"
                } else {
                    " "
                };
                let metrics: Vec<String> = m
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.3}"))
                    .collect();
                println!(
                    "{mark} {}  {:<6} rank {:<3} step {:<6} {}  {}",
                    m.id,
                    m.objective,
                    m.rank,
                    m.step,
                    m.source,
                    metrics.join(" ")
                );
            }
            Ok(())
        }
        AdaptersCommand::Install {
            file,
            base,
            activate,
        } => {
            let (store, path, header) = adapter_store(&base)?;
            let m = store.install(&file, &header, &path.display().to_string())?;
            println!("installed {} ({})", m.id, file.display());
            if activate {
                store.activate(&m.id)?;
                println!("active: {}", m.id);
            }
            Ok(())
        }
        AdaptersCommand::Activate { id, base } => {
            let (store, _, _) = adapter_store(&base)?;
            store.activate(&id)?;
            println!("active: {id}");
            Ok(())
        }
        AdaptersCommand::Rollback { base } => {
            let (store, _, _) = adapter_store(&base)?;
            let id = store.rollback()?;
            println!("active: {id}");
            Ok(())
        }
        AdaptersCommand::Canary(c) => canary(profile, &c),
    }
}

/// `adapters canary`: a Reflexion run on held-out tasks with the incumbent reflector and one
/// with the candidate, same actor and settings; the store promotes or keeps.
fn canary(profile: &TargetProfile, c: &CanaryArgs) -> Result<()> {
    if !["hotpotqa", "household", "humaneval"].contains(&c.env.as_str()) {
        anyhow::bail!(
            "--env {}: the canary runs hotpotqa, household or humaneval",
            c.env
        );
    }
    if c.trials == 0 || c.limit == 0 {
        anyhow::bail!("--trials and --limit must be at least 1");
    }
    if !c.margin.is_finite() || c.margin < 0.0 {
        anyhow::bail!("--margin {}: must be a number >= 0", c.margin);
    }
    let (store, _, _) = adapter_store(&c.base)?;
    if store.active()?.is_some_and(|m| m.id == c.id) {
        anyhow::bail!(
            "{} is already the active adapter: nothing to compare it with",
            c.id
        );
    }
    let out = c
        .out
        .clone()
        .unwrap_or_else(|| store.root().join("canary").join(&c.id));
    let actor = c.actor.clone().unwrap_or_else(|| c.base.clone());
    // HumanEval's "trials" are the implementations inside one task, each after a reflection
    // but the first: there is no reflector-free trial to share.
    if c.env == "humaneval" && c.first_trial_from.is_some() {
        anyhow::bail!("--first-trial-from: the humaneval canary has no first trial to share (its trials are the implementations inside a task)");
    }
    let mut first_trial_from = c.first_trial_from.clone();
    let mut eval = |adapter: Option<&Path>| -> std::result::Result<f64, String> {
        let name = adapter
            .and_then(|p| p.parent())
            .and_then(|d| d.file_name())
            .map_or("base".to_string(), |n| n.to_string_lossy().to_string());
        let dir = out.join(&name);
        let spec = adapter.map(|p| p.display().to_string());
        let run = || -> Result<()> {
            if c.env == "hotpotqa" {
                eval_hotpotqa(
                    profile,
                    &HotpotArgs {
                        agent: "react".into(),
                        strategy: "reflexion".into(),
                        trials: Some(c.trials),
                        actor: actor.clone(),
                        reflector: c.base.clone(),
                        reflector_adapter: spec.clone(),
                        reflector_temperature: 0.0,
                        reflector_seed: 0,
                        memory: 3,
                        out: Some(dir.clone()),
                        resume: None,
                        first_trial_from: first_trial_from.clone(),
                        data: c.data.clone(),
                        skip: c.skip,
                        limit: Some(c.limit),
                        tasks: Vec::new(),
                        global_docstore: false,
                        max_steps: c.max_steps.unwrap_or(6),
                        parallel: c.parallel,
                        threads: c.threads,
                        no_fetch: c.no_fetch,
                    },
                )
            } else if c.env == "humaneval" {
                // Reflexion's programming loop: --trials is its iterations per task; the
                // score is pass@1 on the hidden tests of the held-out problems.
                eval_humaneval(
                    profile,
                    &HumanevalArgs {
                        strategy: "reflexion".into(),
                        max_iters: c.trials,
                        actor: actor.clone(),
                        reflector: c.base.clone(),
                        reflector_adapter: spec.clone(),
                        out: dir.clone(),
                        data: c.data.clone(),
                        skip: c.skip,
                        limit: Some(c.limit),
                        tasks: Vec::new(),
                        workers: 2,
                        test_timeout_ms: 6_000,
                        python: None,
                        threads: c.threads,
                        no_fetch: c.no_fetch,
                    },
                )
            } else {
                eval_household(
                    profile,
                    &HouseholdArgs {
                        split: c.split.clone(),
                        trials: Some(c.trials),
                        strategy: "reflexion".into(),
                        actor: actor.clone(),
                        reflector: c.base.clone(),
                        reflector_adapter: spec.clone(),
                        reflector_temperature: 0.0,
                        reflector_seed: 0,
                        memory: 3,
                        max_steps: c.max_steps.unwrap_or(30),
                        out: dir.clone(),
                        first_trial_from: first_trial_from.clone(),
                        skip: c.skip,
                        limit: Some(c.limit),
                        tasks: Vec::new(),
                        parallel: c.parallel,
                        threads: c.threads,
                        no_fetch: c.no_fetch,
                    },
                )
            }
        };
        run().map_err(|e| format!("{name}: {e:#}"))?;
        if first_trial_from.is_none() && c.env != "humaneval" {
            first_trial_from = Some(dir.clone());
        }
        let (_, summaries) =
            retroformer::agent::runner::read_run(&dir).map_err(|e| format!("{name}: {e}"))?;
        match summaries.last() {
            Some(t) if t.tasks > 0 => Ok(t.success_rate),
            Some(_) => Err(format!(
                "{name}: no held-out task was evaluated (--skip {} leaves none)",
                c.skip
            )),
            None => Err(format!("{name}: the run has no trial summary")),
        }
    };
    let r = store.canary(&c.id, c.margin, &mut eval)?;
    println!(
        "canary {}: candidate {:.3} vs {} {:.3} (margin {:.3}) -> {}",
        r.candidate,
        r.candidate_score,
        r.incumbent.as_deref().unwrap_or("base alone"),
        r.incumbent_score,
        r.margin,
        if r.promoted {
            "promoted (active)"
        } else {
            "kept the incumbent"
        }
    );
    println!("evaluations: {}", out.display());
    Ok(())
}

fn bench(profile: &TargetProfile, a: BenchArgs) -> Result<()> {
    use retroformer::bench::{self, agents, suite, system, BenchReport};
    if let Some(BenchCommand::Compare { reports, out }) = a.command {
        let reports = reports
            .iter()
            .map(|p| BenchReport::read(p))
            .collect::<Result<Vec<_>, _>>()?;
        let c = bench::compare(&reports);
        print!("{}", c.table());
        for f in bench::write_plots(&reports, &out)? {
            println!("plot: {}", f.display());
        }
        return Ok(());
    }
    if a.reps == Some(0) {
        anyhow::bail!("--reps must be at least 1");
    }
    if a.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let started = std::time::Instant::now();
    let meter = system::LoadMeter::start();
    let mut fp = system::fingerprint(profile.backend.name());
    suite::complete_fingerprint(&mut fp)?;
    let label = a.label.clone().unwrap_or_else(|| fp.host.clone());
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = a.out.clone().unwrap_or_else(|| {
        home_dir().join("bench").join(format!(
            "{}-{created_unix}-{}.json",
            fetch_safe(&label),
            std::process::id()
        ))
    });
    // Not the profile's `auto` (free cores, which would count this program's own load from a
    // previous run): a fixed count, or every core.
    let threads = a.threads.unwrap_or(match profile.threads {
        retroformer::target::Threads::Fixed(n) => n,
        _ => fp.logical_cores,
    });
    let mut opts = suite::SuiteOptions::new(profile.clone(), threads, a.quick);
    if let Some(r) = a.reps {
        opts.reps = r;
    }
    let mut notes = Vec::new();
    if opts.reference {
        notes.push("reference: a plain decode loop on llama-cpp-2's safe API with llama.cpp's default context settings and the same threads and batch; it attaches no ggml threadpool, so ggml starts threads for every graph, which the runtime's per-session threadpool avoids (decode ratios above 1 come from that, not from faster kernels)".to_string());
    } else {
        notes.push(format!(
            "no bare llama.cpp reference: the target offloads {} layers to a GPU and the reference runs on the CPU",
            profile.gpu_layers
        ));
    }
    eprintln!(
        "bench: {} | {} | {} threads | {} repetitions{}",
        label,
        fp.cpu_model,
        threads,
        opts.reps,
        if a.quick { " | quick" } else { "" }
    );
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut models = Vec::new();
    let mut agent = Vec::new();
    for name in &a.models {
        let (path, manifest) = resolve(name, !a.no_fetch)?;
        let label = manifest.as_ref().map_or(name.clone(), |m| m.name.clone());
        let load = LoadOptions {
            profile: profile.clone(),
            chat_template: manifest
                .as_ref()
                .and_then(|m| m.chat_template.override_template.clone()),
            name: manifest.as_ref().map(|m| m.name.clone()),
        };
        let say = |what: &str| bar.set_message(format!("{label}: {what}"));
        let m = suite::run_model(
            &path,
            &label,
            manifest.as_ref().map(|m| m.sha256.clone()),
            &load,
            &opts,
            &say,
        )?;
        if !a.no_agents {
            let model = LlamaModel::load(&path, load.clone())?;
            agent.extend(agents::run(
                &model,
                &label,
                threads,
                &agents::AgentSuite::new(a.quick),
                &mut notes,
                &say,
            )?);
        }
        models.push(m);
    }
    let mut trainer = Vec::new();
    for backend in &a.trainer {
        bar.set_message(format!("trainer: {backend}"));
        trainer.push(trainer_bench(backend, &a.models[0], a.quick, threads)?);
    }
    bar.finish_and_clear();
    let load = meter.finish(fp.logical_cores);
    if let Some(n) = &load.note {
        eprintln!("warning: {n}");
    }
    notes.sort();
    notes.dedup();
    let report = BenchReport {
        kind: bench::KIND.into(),
        format_version: bench::FORMAT_VERSION,
        label,
        created_unix,
        quick: a.quick,
        wall_s: started.elapsed().as_secs_f64(),
        fingerprint: fp,
        target: profile.clone(),
        models,
        agent,
        trainer,
        load,
        notes,
    };
    report.write(&out)?;
    print!("{}", bench::compare(std::slice::from_ref(&report)).table());
    for n in &report.notes {
        println!("note: {n}");
    }
    println!("report: {}", out.display());
    Ok(())
}

/// A label as a file name: letters, digits, `-`, `_`, `.`; anything else becomes `_`.
fn fetch_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `retroformer-train bench` (next to this binary, else on PATH) and reads its figure.
fn trainer_bench(
    backend: &str,
    model: &str,
    quick: bool,
    threads: u32,
) -> Result<retroformer::bench::TrainerFigure> {
    let exe_name = format!("retroformer-train{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(&exe_name)))
        .filter(|p| p.is_file());
    let exe = beside.unwrap_or_else(|| PathBuf::from(&exe_name));
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["bench", "--backend", backend, "--model", model, "--json"]);
    // The CPU backend's threads are rayon's: as many as the runtime's figures used.
    cmd.env("RAYON_NUM_THREADS", threads.to_string());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().with_context(|| {
        format!(
            "--trainer: running {} (build it with `cargo build --release -p retroformer-trainer`)",
            exe.display()
        )
    })?;
    if !out.status.success() {
        anyhow::bail!(
            "--trainer {backend}: {} failed: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "--trainer {backend}: {} printed no trainer figure",
            exe.display()
        )
    })
}
