//! `retroformer-train`: LoRA training for the retrospective model (skeleton).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "retroformer-train",
    version,
    about = "Train LoRA adapters for Retroformer and export them as GGUF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and summarise a LoRA adapter GGUF file.
    Inspect {
        /// The adapter file.
        adapter: PathBuf,
    },
    /// Supervised fine-tuning (not built yet).
    Sft,
    /// Reward model (not built yet).
    Reward,
    /// Policy gradient (not built yet).
    Pg,
    /// PPO (not built yet).
    Ppo,
    /// Reward-weighted regression (not built yet).
    Rwr,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Inspect { adapter } => match retroformer_trainer::inspect_adapter(&adapter) {
            Ok(s) => {
                println!("architecture  {}", s.architecture.as_deref().unwrap_or("-"));
                println!("lora pairs    {}", s.pairs);
                println!(
                    "rank          {}",
                    s.rank.map(|r| r.to_string()).unwrap_or("-".into())
                );
                println!(
                    "alpha         {}",
                    s.alpha.map(|a| a.to_string()).unwrap_or("-".into())
                );
                for (k, v) in s.provenance {
                    println!("{k}  {v}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("error: training is not built yet in this release (only `inspect` works)");
            ExitCode::from(2)
        }
    }
}
