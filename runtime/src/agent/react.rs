//! ReAct on HotPotQA: Thought / Action / Observation lines, one LLM call per Thought and per
//! Action, each stopping at a newline, at most `max_steps` steps, halting when the prompt
//! outgrows its token budget (as Reflexion's ReAct agent does).
//!
//! The prompt only ever grows within an episode (instruction, examples, what the trial is told
//! about earlier trials, question, scratchpad), so the session evaluates just the new text at
//! each call, and the instruction and examples shared by every task stay cached across tasks.

use crate::env::hotpotqa::Episode;
use crate::llm::{LanguageModel, Session};
use crate::trajectory::{Step, Trajectory};

use super::{line_call, AgentError};

/// What the agent is told about the task and its actions (our wording of ReAct's instruction).
pub const INSTRUCTION: &str = "Answer the question by alternating Thought, Action and Observation steps. A Thought reasons about what you know so far and what to do next. An Action is one of:
(1) Search[entity]: looks up the entity in Wikipedia and returns the first paragraph of its page if the page exists; otherwise it lists similar page titles to search instead.
(2) Lookup[keyword]: returns the next sentence containing the keyword in the page found by the last successful Search.
(3) Finish[answer]: gives the answer and ends the task.
Take as many steps as you need.";

/// Our own few-shot examples, in ReAct's format.
pub const EXAMPLES: &str = include_str!("react_hotpotqa_examples.txt");

/// Limits of one episode.
#[derive(Debug, Clone)]
pub struct ReactConfig {
    /// Most steps (Reflexion: 6).
    pub max_steps: u32,
    /// The episode halts when the prompt would exceed this many tokens (Reflexion: ~3900).
    pub max_prompt_tokens: usize,
    /// Most tokens per Thought or Action.
    pub max_tokens_per_call: u32,
}

impl Default for ReactConfig {
    fn default() -> Self {
        Self {
            max_steps: 6,
            max_prompt_tokens: 3896,
            max_tokens_per_call: 128,
        }
    }
}

/// How an episode ended.
#[derive(Debug, Clone)]
pub struct EpisodeOutcome {
    /// The steps, with their token counts.
    pub trajectory: Trajectory,
    /// The scratchpad (the Thought/Action/Observation lines) as the model saw it.
    pub scratchpad: String,
    /// True when it ended without a `Finish` (step limit or prompt budget).
    pub halted: bool,
}

/// The full prompt for a question, given what the trial is told about earlier trials.
pub fn prompt(context: &str, question: &str, scratchpad: &str) -> String {
    let context = if context.is_empty() {
        String::new()
    } else {
        format!("{}\n\n", context.trim_end())
    };
    format!(
        "{INSTRUCTION}\nHere are some examples:\n{}\n(END OF EXAMPLES)\n\n{context}Question: {question}{scratchpad}",
        EXAMPLES.trim_end()
    )
}

/// Runs one ReAct episode of `episode` in `session` (greedy decoding).
pub fn run_episode(
    model: &dyn LanguageModel,
    session: &mut dyn Session,
    episode: &mut Episode<'_>,
    context: &str,
    trial: u32,
    cfg: &ReactConfig,
) -> Result<EpisodeOutcome, AgentError> {
    let question = episode.question().question.clone();
    let mut trajectory = Trajectory::new(episode.question().id.clone(), trial);
    let mut pad = String::new();
    let mut halted = true;
    for n in 1..=cfg.max_steps {
        let mut step = Step::default();
        let mut call = |pad: &mut String, label: String| -> Result<Option<String>, AgentError> {
            pad.push_str(&label);
            let text = prompt(context, &question, pad);
            if model.tokenize(&text, true, false)?.len() > cfg.max_prompt_tokens {
                return Ok(None);
            }
            let out = line_call(session, text, cfg.max_tokens_per_call, &mut step)?;
            pad.push(' ');
            pad.push_str(&out);
            Ok(Some(out))
        };
        let Some(thought) = call(&mut pad, format!("\nThought {n}:"))? else {
            break;
        };
        let Some(action) = call(&mut pad, format!("\nAction {n}:"))? else {
            break;
        };
        let result = episode.step(&action);
        pad.push_str(&format!("\nObservation {n}: {}", result.observation));
        step.thought = thought;
        step.action = action;
        step.observation = result.observation;
        trajectory.push(step);
        if result.done {
            halted = false;
            break;
        }
    }
    trajectory.success = episode.success();
    trajectory.episode_return = if trajectory.success { 1.0 } else { 0.0 };
    Ok(EpisodeOutcome {
        trajectory,
        scratchpad: pad,
        halted,
    })
}

#[cfg(test)]
mod tests;
