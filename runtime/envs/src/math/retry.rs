//! Reflect and retry on GSM8K: Reflexion's trials on math problems. The actor solves a
//! problem; after a wrong answer it is told so and, with a reflecting strategy, shown the
//! reflections on its earlier attempts; then it answers again. The return is 1 for a correct
//! final answer, else 0, so a reflection's rating G_{i+1} - G_i is +1 when the retry after it
//! solved what the attempt before it did not.
//!
//! Every arm is told which answers were judged wrong (the observation of a failed trial), so
//! that the only difference between `none` (a sampled retry), `placebo` and `reflexion` is
//! the reflection shown. The prompts are our own wording: an instruction and two abstract
//! example reflections (no numbers or objects a small reflector could copy), the failed
//! attempt, and the failure stated plainly.

use serde::{Deserialize, Serialize};

use super::rise::{self, MathAgent};
use super::{extract_answer, Dataset, MathProblem};
use retroformer::agent::reflect::{ChatFrame, Failure, Reflection, ReflectionPrompt};
use retroformer::agent::runner::{
    run_trials, Attempt, AttemptDone, RunConfig, RunError, TaskInfo, TaskResult, TrialAgent,
    TrialSummary,
};
use retroformer::agent::Strategy;
use retroformer_core::trajectory::Step;
use retroformer_llm::ChatMessage;

/// The actor's token budget per answer (a GSM8K solution by a 0.5B model is ~150-300 tokens).
pub const DEFAULT_MAX_TOKENS: u32 = 400;

/// The reflection prompt's budget for the failed attempt, in characters (~300 tokens).
const ATTEMPT_CHARS: usize = 1200;

/// The environment's own settings of a run, saved in `run.json` beside the runner's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// The actor's token budget per answer.
    pub max_tokens: u32,
}

impl RetrySettings {
    /// The settings a run records.
    pub fn of(cfg: &RunConfig) -> Result<Self, RunError> {
        let max_tokens = match cfg.env.get("max_tokens") {
            None => DEFAULT_MAX_TOKENS,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| RunError::Config(format!("run settings: max_tokens {v}")))?,
        };
        Ok(Self { max_tokens })
    }

    /// These settings as a run's environment settings.
    pub fn into_env(self) -> std::collections::BTreeMap<String, serde_json::Value> {
        [("max_tokens".to_string(), self.max_tokens.into())]
            .into_iter()
            .collect()
    }
}

/// The tasks of `problems`, as the trial loop knows them.
pub fn tasks(problems: &[MathProblem]) -> Vec<TaskInfo> {
    problems
        .iter()
        .map(|p| TaskInfo {
            id: p.id.clone(),
            question: p.question.clone(),
            gold: p.answer.clone(),
        })
        .collect()
}

/// The question as a retry sees it: the problem, the answers already judged wrong (oldest
/// first, each once) and the reflections shown, then the request to solve it again.
pub fn retry_question(question: &str, rejected: &[String], reflections: &[String]) -> String {
    let mut q = question.trim().to_string();
    if !rejected.is_empty() {
        q.push_str(&format!(
            "\n\nYour earlier answers to this problem were judged incorrect: {}.",
            rejected.join(", ")
        ));
    }
    if !reflections.is_empty() {
        q.push_str("\nYour notes on your earlier attempts:");
        for r in reflections {
            q.push_str(&format!("\n- {}", r.trim()));
        }
    }
    if !rejected.is_empty() || !reflections.is_empty() {
        q.push_str("\nSolve the problem again.");
    }
    q
}

/// The actor's conversation for an attempt (RISE's instruction and worked example, then the
/// question as [`retry_question`] puts it).
pub fn attempt_messages(
    question: &str,
    rejected: &[String],
    reflections: &[String],
) -> Vec<ChatMessage> {
    rise::messages(&retry_question(question, rejected, reflections), &[], 1)
}

/// The final answers earlier trials gave and were told were wrong, oldest first, each once
/// (an attempt without a final answer is counted as none).
fn rejected_answers(earlier: &[TaskResult]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in earlier
        .iter()
        .filter(|r| !r.success)
        .filter_map(|r| r.answer.as_deref())
    {
        let a = a.trim();
        if !a.is_empty() && !out.iter().any(|b| b == a) {
            out.push(a.to_string());
        }
    }
    out
}

/// The reflection instruction.
pub const REFLECT_INSTRUCTION: &str = "You are an advanced reasoning agent that can improve based on self reflection. You will be given a math word problem and a previous attempt at solving it whose final answer was judged incorrect. In a few sentences, diagnose a possible reason for the failure and devise a new, concise, high level plan that aims to mitigate the same failure. Do not solve the problem and do not state a final answer. Use complete sentences.";

/// Two abstract example reflections on different failures: nothing in them fits a real
/// problem, so there is nothing to copy but the form.
pub const REFLECT_EXAMPLES: &str = "Failure: the attempt added two amounts, but the problem asked how much larger one amount was than the other.
Reflection: I combined the quantities when the question asked for a comparison. Next time I will reread the last sentence of the problem, name the quantity it asks for before computing anything, and check that my final step produces exactly that quantity.

Failure: the attempt computed the cost for one week, but the problem asked about four weeks and a discount applied after the second week.
Reflection: I stopped at an intermediate result and ignored a condition that changes part of the total. Next time I will list every condition in the problem, split the computation into the periods they define, and add the parts only at the end.";

/// What went wrong, stated plainly.
pub fn failure_fact(attempt: &str) -> String {
    match extract_answer(Dataset::Gsm8k, attempt) {
        Some(a) => format!("Your final answer {a} was judged incorrect."),
        None => "Your attempt gave no final answer in \\boxed{}.".into(),
    }
}

/// The reflection prompt for one failed attempt, without a chat template: the attempt cut to
/// its last [`ATTEMPT_CHARS`] characters (the end holds the answer and the step that led to it).
pub fn reflection_prompt(question: &str, attempt: &str) -> String {
    let attempt = attempt.trim();
    let cut = attempt
        .char_indices()
        .rev()
        .nth(ATTEMPT_CHARS)
        .map_or(attempt, |(i, _)| &attempt[i..]);
    let shown = if cut.len() < attempt.len() {
        format!("[...] {cut}")
    } else {
        cut.to_string()
    };
    format!(
        "{REFLECT_INSTRUCTION}\nHere are some examples:\n\n{REFLECT_EXAMPLES}\n(END OF EXAMPLES)\n\nProblem: {}\nPrevious attempt:\n{shown}\n\n{}\n\nReflection:",
        question.trim(),
        failure_fact(attempt)
    )
}

/// GSM8K's [`ReflectionPrompt`], in the reflecting model's chat template.
#[derive(Default)]
pub struct RetryReflection {
    /// The reflecting model's chat template (plain text when empty).
    pub frame: ChatFrame,
}

/// Line openings after which a reflection has gone on to write something else.
const TRAJECTORY_LINES: [&str; 6] = [
    "Problem:",
    "Previous attempt:",
    "Failure:",
    "Reflection:",
    "Question:",
    "\\boxed",
];

impl ReflectionPrompt for RetryReflection {
    fn prompt(&self, failure: &Failure<'_>) -> String {
        self.frame
            .wrap(&reflection_prompt(failure.task, failure.trajectory))
    }

    fn stops(&self) -> &[&str] {
        &["(END OF EXAMPLES)", "\nProblem:", "\nFailure:"]
    }

    fn trajectory_lines(&self) -> &[&str] {
        &TRAJECTORY_LINES
    }

    fn frame(&self) -> Option<&ChatFrame> {
        Some(&self.frame)
    }

    fn special_tokens(&self) -> bool {
        true
    }
}

/// The models of a run.
pub type RetryModels<'a> = crate::trials::AgentModels<'a>;

/// Runs (or resumes) `cfg.trials` trials over `problems`, writing into `out`.
pub fn run(
    problems: &[MathProblem],
    models: RetryModels<'_>,
    cfg: &RunConfig,
    out: &std::path::Path,
    on_task: &mut (dyn FnMut(&TaskResult) + Send),
) -> Result<Vec<TrialSummary>, RunError> {
    let settings = RetrySettings::of(cfg)?;
    let mut agent = RetryAgent {
        problems,
        strategy: cfg.parsed_strategy()?,
        settings,
        models,
        cfg,
    };
    run_trials(&tasks(problems), &mut agent, cfg, out, on_task)
}

struct RetryAgent<'a, 'b> {
    problems: &'a [MathProblem],
    strategy: Strategy,
    settings: RetrySettings,
    models: RetryModels<'b>,
    cfg: &'a RunConfig,
}

impl RetryAgent<'_, '_> {
    /// The conversation for task `i`'s next attempt.
    fn messages(&self, i: usize, earlier: &[TaskResult]) -> Vec<ChatMessage> {
        let shown: Vec<String> = if self.strategy.reflects() {
            let all: Vec<String> = earlier
                .iter()
                .filter_map(|r| r.reflection.as_ref())
                .map(|r| r.text.clone())
                .filter(|t| !t.trim().is_empty())
                .collect();
            let keep = self.cfg.memory.max(1);
            all[all.len().saturating_sub(keep)..].to_vec()
        } else {
            Vec::new()
        };
        attempt_messages(
            &self.problems[i].question,
            &rejected_answers(earlier),
            &shown,
        )
    }
}

impl TrialAgent for RetryAgent<'_, '_> {
    /// The solution is the scratchpad: the checker reads it again.
    fn judge(&self, i: usize, saved: &TaskResult) -> Option<bool> {
        let p = self.problems.get(i)?;
        Some(super::reward(p, &saved.scratchpad) > 0.5)
    }

    fn parallelism(&self) -> usize {
        self.models.parallel.max(1)
    }

    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        trial: u32,
    ) -> Result<Attempt, RunError> {
        let mut made = None;
        self.attempt_stream(&[(i, earlier)], trial, &mut |_, a| {
            made = Some(a);
            Ok(())
        })?;
        made.ok_or_else(|| RunError::Config(format!("no attempt at problem {i}")))
    }

    fn attempt_stream(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
        done: &mut AttemptDone<'_>,
    ) -> Result<(), RunError> {
        // The problems outlive `self`'s borrows: the jobs hold them while the session is used.
        let problems = self.problems;
        let jobs: Vec<rise::Job<'_>> = tasks
            .iter()
            .map(|(i, earlier)| {
                let p = &problems[*i];
                (
                    p,
                    self.messages(*i, earlier),
                    self.cfg.actor_sampling(&p.id, trial),
                )
            })
            .collect();
        let mut agent = MathAgent {
            model: self.models.actor,
            session: &mut *self.models.session,
        };
        agent.attempt_stream(&jobs, self.settings.max_tokens, &mut |k, a| {
            done(k, attempt_of(a))
        })
    }

    fn reflect(
        &mut self,
        i: usize,
        attempt: &Attempt,
        earlier: &[TaskResult],
    ) -> Result<Reflection, RunError> {
        Ok(self.reflect_many(&[(i, attempt, earlier)])?.remove(0))
    }

    fn reflect_many(
        &mut self,
        failed: &[(usize, &Attempt, &[TaskResult])],
    ) -> Result<Vec<Reflection>, RunError> {
        let problems = self.problems;
        let items: Vec<Failure<'_>> = failed
            .iter()
            .map(|(i, a, _)| Failure {
                task: &problems[*i].question,
                trajectory: &a.scratchpad,
                episode_return: a.episode_return,
                earlier: &[],
            })
            .collect();
        Ok(self.models.reflector.reflect_many(&items)?)
    }
}

/// A trial's attempt from a math attempt: one step, the solution as the scratchpad.
fn attempt_of(a: rise::Attempt) -> Attempt {
    let success = a.reward > 0.5;
    Attempt {
        halted: a.answer.is_none(),
        answer: a.answer,
        success,
        episode_return: if success { 1.0 } else { 0.0 },
        steps: vec![Step {
            thought: String::new(),
            action: String::new(),
            observation: if success { "correct" } else { "incorrect" }.into(),
            evaluated_tokens: a.evaluated_tokens,
            reused_tokens: a.reused_tokens,
            generated_tokens: a.generated_tokens,
        }],
        scratchpad: a.response,
    }
}

#[cfg(test)]
mod tests;
