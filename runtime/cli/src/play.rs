//! `play`: an environment in the terminal, for a person.

use std::io::Write;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PlayCommand {
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

pub fn play_household(seed: u64, task_type: &str) -> Result<()> {
    use retroformer_envs::household::{HouseholdEnv, TaskSpec, TaskType};
    let Some(t) = TaskType::from_name(task_type) else {
        anyhow::bail!(
            "--type {task_type}: known types are put, clean, heat, cool, examine, puttwo"
        );
    };
    let mut env = HouseholdEnv::new(&TaskSpec::new(seed, t));
    println!("{}", env.reset());
    let mut steps = 0u32;
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let Some(line) = crate::common::read_line()? else {
            println!();
            break;
        };
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
