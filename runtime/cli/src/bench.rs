//! `bench`: this machine's figures in one versioned report, and `bench compare`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use retroformer::manifest::home_dir;
use retroformer_benches::harness::{
    self as bench, agents, suite, system, BenchReport, TrainerFigure,
};
use retroformer_envs::Registry;
use retroformer_llm::target::TargetProfile;

use crate::common::FetchBar;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// A short suite (3 repetitions, short prompts, one household task): under two minutes
    /// with the default model on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Models to measure (repeat the flag; manifest names or GGUF paths).
    #[arg(long = "model", short = 'm', default_value = "smollm2-135m-instruct")]
    pub models: Vec<String>,
    /// Threads (default: the target profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Repetitions of each measurement (default 5, quick 3).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Where to write the JSON report (default $RETROFORMER_HOME/bench/LABEL-TIME.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A name for this machine or run in comparisons (default the host name).
    #[arg(long)]
    pub label: Option<String>,
    /// Skip the agent-level suite.
    #[arg(long)]
    pub no_agents: bool,
    /// Also measure LoRA training (runs `retroformer-train bench`, found next to this binary
    /// or on PATH) for each backend given, e.g. `--trainer native`.
    #[arg(long, value_delimiter = ',')]
    pub trainer: Vec<String>,
    /// Do not fetch missing models; fail instead.
    #[arg(long)]
    pub no_fetch: bool,
    /// Run the suite once for every built-in target profile this machine can honour (one
    /// report each, next to --out), and record the ones it cannot, and why, in a summary.
    #[arg(long, conflicts_with = "trainer")]
    pub each_target: bool,
}

#[derive(Subcommand)]
pub enum BenchCommand {
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

/// `bench compare`: the reports' figures side by side, and their plots.
fn compare(reports: &[PathBuf], out: &std::path::Path) -> Result<()> {
    let reports = reports
        .iter()
        .map(|p| BenchReport::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    print!("{}", bench::compare(&reports).table());
    for f in bench::write_plots(&reports, out)? {
        println!("plot: {}", f.display());
    }
    Ok(())
}

pub fn bench(profile: &TargetProfile, a: BenchArgs) -> Result<()> {
    if let Some(BenchCommand::Compare { reports, out }) = &a.command {
        return compare(reports, out);
    }
    if a.reps == Some(0) {
        anyhow::bail!("--reps must be at least 1");
    }
    if a.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    if a.each_target {
        return each_target(&a, profile.kv_type);
    }
    bench_one(profile, &a, a.out.clone(), Vec::new()).map(|_| ())
}

/// Why this machine cannot run `profile` as written, or how it had to adapt it.
enum Honour {
    /// Runs as written, or with these adjustments.
    Run(TargetProfile, Vec<String>),
    /// Cannot run here.
    Skip(String),
}

fn honour(profile: &TargetProfile, cores: u32) -> Result<Honour> {
    use retroformer_llm::target::{Backend, Threads};
    let backend = profile.backend;
    if backend != Backend::Cpu {
        if !retroformer::backend::active().compiled_in(backend) {
            return Ok(Honour::Skip(format!(
                "backend {} is not compiled into this build (cargo build --features {})",
                backend.name(),
                backend.name()
            )));
        }
        let (devices, _) = retroformer::backend::active().devices()?;
        // ggml names Metal's backend "MTL".
        let ours = |d: &retroformer::backend::DeviceInfo| {
            d.backend.eq_ignore_ascii_case(backend.name())
                || (backend == Backend::Metal && d.backend == "MTL")
        };
        if !devices.iter().any(ours) {
            return Ok(Honour::Skip(format!(
                "backend {} is compiled in but llama.cpp sees no {} device",
                backend.name(),
                backend.name()
            )));
        }
    }
    let mut p = profile.clone();
    let mut notes = Vec::new();
    if let Threads::Fixed(n) = p.threads {
        if n > cores {
            p.threads = Threads::Fixed(cores);
            notes.push(format!(
                "threads {n} lowered to this machine's {cores} cores"
            ));
        }
    }
    let arch = std::env::consts::ARCH;
    let wants_arm = matches!(
        p.name.as_str(),
        "raspberry-pi-5" | "jetson-orin-nano" | "apple-m-laptop"
    );
    if wants_arm && arch != "aarch64" {
        notes.push(format!(
            "the profile's settings on this {arch} CPU, not the device's ARM CPU"
        ));
    }
    Ok(Honour::Run(p, notes))
}

/// `bench --each-target`: a report per built-in profile this machine honours, and a summary
/// (kind `retroformer-bench-targets`) of what ran, what was adapted and what could not run.
fn each_target(a: &BenchArgs, kv_type: retroformer_llm::target::KvType) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let summary_path = a
        .out
        .clone()
        .unwrap_or_else(|| home_dir().join("bench").join("targets.json"));
    let stem = summary_path.with_extension("");
    let mut rows = Vec::new();
    for profile in TargetProfile::builtin() {
        // `--kv-type` applies to every profile; one that cannot take it is recorded as such.
        let profile = match profile.clone().with_kv_type(kv_type, "--kv-type") {
            Ok(p) => p,
            Err(e) => {
                println!("target {}: not run: {e}", profile.name);
                rows.push(
                    serde_json::json!({"target": profile.name, "ran": false, "why": e.to_string()}),
                );
                continue;
            }
        };
        match honour(&profile, cores)? {
            Honour::Skip(why) => {
                println!("target {}: not run: {why}", profile.name);
                rows.push(serde_json::json!({"target": profile.name, "ran": false, "why": why}));
            }
            Honour::Run(p, notes) => {
                println!("target {}: running{}", p.name, suffix(&notes));
                let out = PathBuf::from(format!("{}-{}.json", stem.display(), p.name));
                bench_one(&p, a, Some(out.clone()), notes.clone())?;
                rows.push(serde_json::json!({
                    "target": p.name, "ran": true, "report": out, "adjustments": notes,
                }));
            }
        }
    }
    let summary = serde_json::json!({
        "kind": "retroformer-bench-targets",
        "format_version": 1,
        "arch": std::env::consts::ARCH,
        "cores": cores,
        "targets": rows,
    });
    retroformer_core::fsutil::write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )
    .with_context(|| format!("writing {}", summary_path.display()))?;
    println!("summary: {}", summary_path.display());
    Ok(())
}

fn suffix(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// The suite on one profile; returns the report's path.
fn bench_one(
    profile: &TargetProfile,
    a: &BenchArgs,
    out: Option<PathBuf>,
    adjustments: Vec<String>,
) -> Result<PathBuf> {
    let started = std::time::Instant::now();
    let meter = system::LoadMeter::start();
    let mut fp = system::fingerprint(profile.backend.name());
    suite::complete_fingerprint(&mut fp)?;
    let mut label = a.label.clone().unwrap_or_else(|| fp.host.clone());
    if a.each_target {
        // One machine, several profiles: `bench compare` tells them apart by label.
        label = format!("{label}-{}", profile.name);
    }
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = out.unwrap_or_else(|| {
        home_dir().join("bench").join(format!(
            "{}-{created_unix}-{}.json",
            fetch_safe(&label),
            std::process::id()
        ))
    });
    // A fixed count, or every logical core (the suite's reference runs take the same count).
    let threads = a.threads.unwrap_or(match profile.threads {
        retroformer_llm::target::Threads::Fixed(n) => n,
        _ => fp.logical_cores,
    });
    let mut opts = suite::SuiteOptions::new(profile.clone(), threads, a.quick);
    if let Some(r) = a.reps {
        opts.reps = r;
    }
    let mut notes = adjustments;
    if opts.reference {
        notes.push("reference: a plain decode loop on llama-cpp-2's safe API with llama.cpp's default context settings and the same threads and batch; it attaches no ggml threadpool, so ggml starts threads for every graph, which the runtime's per-session threadpool avoids (decode ratios above 1 come from that, not from faster kernels)".to_string());
    } else if profile.gpu_layers > 0 {
        notes.push(format!(
            "no bare llama.cpp reference: the target offloads {} layers to a GPU and the reference runs on the CPU",
            profile.gpu_layers
        ));
    } else {
        notes.push(
            "no bare llama.cpp reference: the target sets flash_attention, which the reference's safe API cannot"
                .to_string(),
        );
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
        let fetch_bar = FetchBar::default();
        let fetch = (!a.no_fetch).then_some(&fetch_bar as &dyn retroformer::fetch::Progress);
        let resolved = retroformer::backend::resolve(name, fetch)?;
        let label = resolved
            .manifest
            .as_ref()
            .map_or(name.clone(), |m| m.name.clone());
        let say = |what: &str| bar.set_message(format!("{label}: {what}"));
        let m = suite::run_model(&resolved, &label, &opts, &say)?;
        if !a.no_agents {
            let model = load(&resolved, profile)?;
            agent.extend(agents::run(
                &Registry::builtin(),
                model.as_ref(),
                &label,
                threads,
                a.quick,
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
    Ok(out)
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
fn trainer_bench(backend: &str, model: &str, quick: bool, threads: u32) -> Result<TrainerFigure> {
    let mut cmd = retroformer_lab::child::trainer();
    let exe = PathBuf::from(cmd.get_program());
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

/// `resolved` loaded by the active backend for the agent benchmarks.
fn load(
    resolved: &retroformer::backend::Resolved,
    profile: &TargetProfile,
) -> Result<Box<dyn retroformer_llm::LanguageModel>> {
    use retroformer::backend::{active, BasePolicy};
    Ok(active().load(resolved, profile, BasePolicy::Recorded)?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{BenchArgs, BenchCommand};

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Bench::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|b| b.args)
    }

    #[test]
    fn bench_flags_take_repeated_models_and_comma_separated_trainer_backends() {
        let a = parse(&[
            "-m",
            "a",
            "--model",
            "b",
            "--trainer",
            "native,burn",
            "--quick",
        ])
        .unwrap();
        assert_eq!(a.models, ["a", "b"]);
        assert_eq!(a.trainer, ["native", "burn"]);
        assert!(a.quick && a.command.is_none());
        let default = parse(&[]).unwrap();
        assert_eq!(default.models, ["smollm2-135m-instruct"]);
        assert_eq!((default.reps, default.threads), (None, None));
    }

    #[test]
    fn bench_refuses_each_target_with_a_trainer_and_run_flags_before_compare() {
        let err = parse(&["--each-target", "--trainer", "native"])
            .err()
            .unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(parse(&["--quick", "compare", "a.json"]).is_err());
        assert!(parse(&["compare"]).is_err(), "compare needs a report");
        assert!(parse(&["--reps", "two"]).is_err());
        match parse(&["compare", "a.json", "b.json", "--out", "s"])
            .unwrap()
            .command
        {
            Some(BenchCommand::Compare { reports, out }) => {
                assert_eq!(reports.len(), 2);
                assert_eq!(out, std::path::Path::new("s"));
            }
            None => panic!("compare not parsed"),
        }
    }
}
