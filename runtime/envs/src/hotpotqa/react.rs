//! ReAct on HotPotQA: Thought / Action / Observation lines, one LLM call per Thought and per
//! Action, each stopping at a newline, at most `max_steps` steps, halting when the prompt
//! outgrows its token budget (as Reflexion's ReAct agent does).
//!
//! The prompt only ever grows within an episode (instruction, examples, what the trial is told
//! about earlier trials, question, scratchpad), so the session evaluates just the new text at
//! each call, and the instruction and examples shared by every task stay cached across tasks.

use crate::hotpotqa::Episode;
use retroformer_core::trajectory::{Step, Trajectory};
use retroformer_llm::{GenerateRequest, Generation, LanguageModel, SamplingParams, Session};

use super::context::{absorb_line, call_sampling, line_request};

use retroformer::agent::AgentError;

/// What the agent is told about the task and its actions (our wording of ReAct's instruction).
pub const INSTRUCTION: &str = "Answer the question by alternating Thought, Action and Observation steps. A Thought reasons about what you know so far and what to do next. An Action is one of:
(1) Search[entity]: looks up the entity in Wikipedia and returns the first paragraph of its page if the page exists; otherwise it lists similar page titles to search instead.
(2) Lookup[keyword]: returns the next sentence containing the keyword in the page found by the last successful Search.
(3) Finish[answer]: gives the answer and ends the task.
Take as many steps as you need.";

/// Our own few-shot examples, in ReAct's format.
pub const EXAMPLES: &str = include_str!("react_examples.txt");

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

/// Runs one ReAct episode of `episode` in `session`, sampling with `sampling` (greedy: the
/// default).
pub fn run_episode(
    model: &dyn LanguageModel,
    session: &mut dyn Session,
    episode: &mut Episode<'_>,
    context: &str,
    trial: u32,
    cfg: &ReactConfig,
    sampling: &SamplingParams,
) -> Result<EpisodeOutcome, AgentError> {
    let mut run = EpisodeRun::start(episode, context, trial, sampling.clone());
    while let Some(req) = run.request(model, cfg)? {
        let g = session.generate(&req, &mut |_| true)?;
        run.absorb(episode, &g);
    }
    Ok(run.finish(episode))
}

/// What the next call writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Thought,
    Action,
}

/// One ReAct episode as a state machine: the request for the next Thought or Action, then the
/// model's reply. [`run_episode`] drives one with a session; the HotPotQA agent drives several
/// at once through [`Session::generate_stream`], each episode a chain of follow-ups whose
/// prompts only grow (so each continues in its lane, on its KV).
#[derive(Debug)]
pub struct EpisodeRun {
    head: String,
    pad: String,
    n: u32,
    phase: Phase,
    step: Step,
    trajectory: Trajectory,
    halted: bool,
    over: bool,
    sampling: SamplingParams,
    calls: u32,
}

impl EpisodeRun {
    /// An episode on `episode`'s question, told `context` about earlier trials, its calls
    /// sampled with `sampling` (each call's seed its own, see [`call_sampling`]).
    pub fn start(
        episode: &Episode<'_>,
        context: &str,
        trial: u32,
        sampling: SamplingParams,
    ) -> Self {
        let q = episode.question();
        Self {
            head: prompt(context, &q.question, ""),
            pad: String::new(),
            n: 1,
            phase: Phase::Thought,
            step: Step::default(),
            trajectory: Trajectory::new(q.id.clone(), trial),
            halted: true,
            over: false,
            sampling,
            calls: 0,
        }
    }

    /// The request for the next Thought or Action (one line), or `None` once the
    /// episode is over: after `Finish`, after `max_steps` steps, or when the prompt would
    /// exceed `max_prompt_tokens` (counted with `model`'s tokenizer). Call [`absorb`] with
    /// the reply before asking again.
    ///
    /// [`absorb`]: EpisodeRun::absorb
    pub fn request(
        &mut self,
        model: &dyn LanguageModel,
        cfg: &ReactConfig,
    ) -> Result<Option<GenerateRequest>, AgentError> {
        if self.over {
            return Ok(None);
        }
        let n = self.n;
        match self.phase {
            Phase::Thought if n > cfg.max_steps => {
                self.over = true;
                return Ok(None);
            }
            Phase::Thought => self.pad.push_str(&format!("\nThought {n}:")),
            Phase::Action => self.pad.push_str(&format!("\nAction {n}:")),
        }
        let text = format!("{}{}", self.head, self.pad);
        if model.tokenize(&text, true, false)?.len() > cfg.max_prompt_tokens {
            self.over = true;
            return Ok(None);
        }
        let req = line_request(
            text,
            cfg.max_tokens_per_call,
            call_sampling(&self.sampling, self.calls),
        );
        self.calls += 1;
        Ok(Some(req))
    }

    /// Takes the model's reply to the last request: a Thought, or an Action that is carried
    /// out in `episode`.
    pub fn absorb(&mut self, episode: &mut Episode<'_>, g: &Generation) {
        let out = absorb_line(&mut self.step, g);
        self.pad.push(' ');
        self.pad.push_str(&out);
        match self.phase {
            Phase::Thought => {
                self.step.thought = out;
                self.phase = Phase::Action;
            }
            Phase::Action => {
                let result = episode.step(&out);
                self.pad
                    .push_str(&format!("\nObservation {}: {}", self.n, result.observation));
                let mut step = std::mem::take(&mut self.step);
                step.action = out;
                step.observation = result.observation;
                self.trajectory.push(step);
                self.n += 1;
                self.phase = Phase::Thought;
                if result.done {
                    self.halted = false;
                    self.over = true;
                }
            }
        }
    }

    /// How it ended.
    pub fn finish(mut self, episode: &Episode<'_>) -> EpisodeOutcome {
        self.trajectory.success = episode.success();
        self.trajectory.episode_return = if self.trajectory.success { 1.0 } else { 0.0 };
        EpisodeOutcome {
            trajectory: self.trajectory,
            scratchpad: self.pad,
            halted: self.halted,
        }
    }
}

#[cfg(test)]
mod tests;
