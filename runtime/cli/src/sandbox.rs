//! `sandbox run` and `sandbox check`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum SandboxCommand {
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
        /// List the layers only, without trying the hostile programs (instant).
        #[arg(long)]
        layers: bool,
    },
}

#[derive(Args, Clone)]
pub struct SandboxArgs {
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
    fn build(&self) -> Result<retroformer_sandbox::Sandbox> {
        let mut c = retroformer_sandbox::SandboxConfig {
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
        retroformer_sandbox::Sandbox::new(c).map_err(|e| {
            let flag = match &e {
                retroformer_sandbox::SandboxError::Python { .. } => "--python: ",
                retroformer_sandbox::SandboxError::Config { field, .. } if *field == "wall_ms" => {
                    "--wall-ms: "
                }
                retroformer_sandbox::SandboxError::Config { .. } => "--memory-mb: ",
                retroformer_sandbox::SandboxError::NoNetworkIsolation { .. } => {
                    "--require-network-isolation: "
                }
                retroformer_sandbox::SandboxError::RootOnly { .. } => "--python: ",
            };
            anyhow::anyhow!("{flag}{e}")
        })
    }
}

/// A program's output as `NAME:` and then each line after `| `, control characters shown as
/// escapes; nothing for no output.
fn framed(name: &str, text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let shown = retroformer_core::text::printable(text, true);
    let mut out = format!("{name} of the program:\n");
    for line in shown.lines() {
        out.push_str("| ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn print_layers(sandbox: &retroformer_sandbox::Sandbox) {
    for l in sandbox.isolation() {
        println!(
            "  [{}] {:<32} {}",
            if l.active { "on " } else { "off" },
            l.name,
            l.detail
        );
    }
}

pub fn sandbox_cmd(cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Run { file, limits, json } => {
            let source = crate::common::read_text(&file, 16 << 20)
                .with_context(|| format!("{}: cannot read the program", file.display()))?;
            let sandbox = limits.build()?;
            let r = sandbox.run_python(&source);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "report": r, "layers": sandbox.isolation() })
                );
            } else {
                // The program's output, framed (each line after "| ") and with its control
                // characters shown, not obeyed: unframed lines or raw escape codes could hide
                // or fake the outcome line below.
                print!("{}", framed("stdout", &r.stdout));
                eprint!("{}", framed("stderr", &r.stderr));
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
        SandboxCommand::Check { limits, layers } => {
            let sandbox = limits.build()?;
            println!("python: {}", sandbox.config().python.display());
            println!("layers:");
            print_layers(&sandbox);
            if layers {
                return Ok(());
            }
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
