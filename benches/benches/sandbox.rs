//! Sandbox overhead: the same programs run through the sandbox (every layer active on this
//! machine) and as a bare `python3 -c CODE` subprocess, interleaved, one at a time. Prints the
//! medians and their ratio.
//!
//! cargo bench -p retroformer-benches --bench sandbox -- [--programs N] [--reps N] [--out FILE]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use retroformer_benches::{load_average, median, spread};
use retroformer_envs::humaneval::{hidden_test_program, load};
use retroformer_sandbox::{Outcome, Sandbox, SandboxConfig};
use serde_json::json;

/// The sandbox's overhead over a bare `python3 -c` subprocess.
#[derive(clap::Parser)]
struct Args {
    /// HumanEval reference solutions run (the first N).
    #[arg(long = "programs", default_value_t = 40)]
    n_programs: usize,
    /// Repetitions (interleaved).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// The result file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn main() -> Result<()> {
    let Args {
        n_programs,
        reps,
        out,
        ..
    } = clap::Parser::parse();
    let problems = load(retroformer_envs::humaneval::source(None))?;
    // Realistic test runs: reference solutions against their hidden tests, plus a one-liner.
    let mut programs: Vec<String> = problems
        .iter()
        .take(n_programs)
        .map(|p| {
            hidden_test_program(
                p,
                &format!(
                    "{}{}",
                    p.prompt,
                    p.canonical_solution.as_deref().unwrap_or("")
                ),
            )
        })
        .collect();
    programs.push("assert 1 + 1 == 2\n".into());
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let python = sandbox.config().python.clone();
    let layers: Vec<&str> = sandbox
        .isolation()
        .iter()
        .filter(|l| l.active)
        .map(|l| l.name.as_str())
        .collect();
    eprintln!("layers active: {}", layers.join(", "));
    let load_start = load_average();
    let (mut bare, mut boxed) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for (i, code) in programs.iter().enumerate() {
            // Alternate which goes first so that neither always runs on a warmer cache.
            let order = if (rep + i) % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for sandboxed in order {
                let t = Instant::now();
                if sandboxed {
                    let r = sandbox.run_python(code);
                    anyhow::ensure!(r.outcome == Outcome::Passed, "program {i}: {r:?}");
                    boxed.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    let o = Command::new(&python).arg("-c").arg(code).output()?;
                    anyhow::ensure!(o.status.success(), "bare program {i} failed");
                    bare.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    let (mb, ms) = (median(&bare), median(&boxed));
    let report = json!({
        "format_version": 1,
        "benchmark": "sandbox",
        "python": python,
        "runs_each": bare.len(),
        "bare_ms_median": mb,
        "bare_ms_spread": spread(&bare),
        "sandbox_ms_median": ms,
        "sandbox_ms_spread": spread(&boxed),
        "ratio_sandbox_over_bare": ms / mb,
        "overhead_ms": ms - mb,
        "layers": layers,
        "load_average_at_start": load_start,
    });
    println!(
        "sandbox {ms:.1} ms vs bare python3 -c {mb:.1} ms per run (median of {} each): ratio {:.2}, overhead {:.1} ms",
        bare.len(),
        ms / mb,
        ms - mb
    );
    Ok(retroformer_benches::finish_report(
        &report,
        out.as_deref(),
        load_start,
        // Each sandboxed program is one single-threaded Python process.
        1,
    )?)
}
