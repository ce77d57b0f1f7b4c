//! Tasks, steps and trajectories: what an actor did in one trial.
//!
//! A [`Trajectory`] is the sequence of [`Step`]s (thought, action, observation) of one attempt
//! at one task, with its return. These are the inputs of reflection and the rows of the
//! Retroformer rating data (return of trial i+1 minus return of trial i).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::wire::{Record, RecordKind};

/// One step of an agent: what it thought, what it did, what it saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Free-text reasoning (may be empty for act-only agents).
    pub thought: String,
    /// The action as written by the model (e.g. `Search[Paris]`).
    pub action: String,
    /// The environment's answer.
    pub observation: String,
    /// Prompt tokens whose KV was reused from the previous step.
    pub reused_tokens: u32,
    /// Prompt tokens evaluated for this step.
    pub evaluated_tokens: u32,
    /// Tokens generated for this step.
    pub generated_tokens: u32,
}

/// One attempt (trial) at one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The task's id within its data set.
    pub task_id: String,
    /// Trial index, starting at 0.
    pub trial: u32,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The episode return (1.0 for success in binary-reward environments).
    pub episode_return: f32,
    /// Whether the task was solved.
    pub success: bool,
}

impl Trajectory {
    /// An empty trajectory for `task_id`, trial `trial`.
    pub fn new(task_id: impl Into<String>, trial: u32) -> Self {
        Self {
            task_id: task_id.into(),
            trial,
            steps: Vec::new(),
            episode_return: 0.0,
            success: false,
        }
    }

    /// Appends a step.
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Tokens evaluated over the whole trajectory.
    pub fn evaluated_tokens(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| u64::from(s.evaluated_tokens))
            .sum()
    }

    /// Tokens reused from the KV cache over the whole trajectory.
    pub fn reused_tokens(&self) -> u64 {
        self.steps.iter().map(|s| u64::from(s.reused_tokens)).sum()
    }
}

impl Record for Trajectory {
    const KIND: RecordKind = RecordKind::Trajectory;
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode};

    fn step(evaluated: u32, reused: u32) -> Step {
        Step {
            thought: "I should search".into(),
            action: "Search[Paris]".into(),
            observation: "Paris is the capital of France.".into(),
            reused_tokens: reused,
            evaluated_tokens: evaluated,
            generated_tokens: 7,
        }
    }

    #[test]
    fn trajectory_sums_token_counts_over_its_steps() {
        let mut t = Trajectory::new("q1", 0);
        t.push(step(600, 0));
        t.push(step(40, 620));
        assert_eq!(t.evaluated_tokens(), 640);
        assert_eq!(t.reused_tokens(), 620);
    }

    #[test]
    fn trajectory_round_trips_through_the_envelope() {
        let mut t = Trajectory::new("5a8b57f25542995d1e6f1371", 2);
        t.push(step(10, 0));
        t.episode_return = 1.0;
        t.success = true;
        let back: Trajectory = decode(&encode(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
