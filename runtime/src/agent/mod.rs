//! Agents: the loops that drive an LLM session through an environment.
//!
//! [`Strategy`] says what a new trial is told about earlier ones (Reflexion's four options);
//! [`react`] runs one ReAct episode on HotPotQA.

pub mod cot;
pub mod files;
pub mod household;
#[cfg(unix)]
pub mod programming;
pub mod react;
pub mod reflect;
pub mod rise;
pub mod runner;

use crate::llm::{GenerateRequest, Generation, LlmError, Session};
use crate::memory::ReflectionMemory;
use crate::trajectory::Step;

/// Runs `chains` chains of requests together through one session's
/// [`Session::generate_stream`] (continuous batching). Chain `k`'s opening request is
/// `next(k, None)`; after each reply, `next(k, Some(reply))` takes it in and gives the chain's
/// next request (`None`: the chain is done). A follow-up extends its chain's prompt, so it
/// continues in the same lane, on its KV. After the first error of `next` no chain gets a
/// follow-up (requests already handed over still run); a session error is returned first,
/// else that error.
pub(crate) fn run_chains<E: From<LlmError> + Send>(
    session: &mut dyn Session,
    chains: usize,
    mut next: impl FnMut(usize, Option<Generation>) -> Result<Option<GenerateRequest>, E> + Send,
) -> Result<(), E> {
    let mut first = Vec::with_capacity(chains);
    for k in 0..chains {
        if let Some(q) = next(k, None)? {
            first.push((k as u64, q));
        }
    }
    let mut failed: Option<E> = None;
    session.generate_stream(first, &mut |key, g| {
        if failed.is_some() {
            return Vec::new();
        }
        match next(key as usize, Some(g)) {
            Ok(Some(q)) => vec![(key, q)],
            Ok(None) => Vec::new(),
            Err(e) => {
                failed.get_or_insert(e);
                Vec::new()
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// One greedy LLM call that stops at the end of the line (as Reflexion's agents call the model
/// for each Thought and Action); its token counts are added to `step`. Returns the trimmed text.
pub(crate) fn line_call(
    session: &mut dyn Session,
    prompt: String,
    max_tokens: u32,
    step: &mut Step,
) -> Result<String, AgentError> {
    let mut req = GenerateRequest::new(prompt, max_tokens).stop("\n");
    req.parse_special = false;
    let g = session.generate(&req, &mut |_| true)?;
    step.reused_tokens += g.stats.reused_tokens;
    step.evaluated_tokens += g.stats.evaluated_tokens;
    step.generated_tokens += g.stats.generated_tokens;
    Ok(g.text.trim().to_string())
}

/// What a trial is told about the previous ones (Reflexion's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Nothing about earlier trials.
    None,
    /// The previous trial's trajectory.
    LastAttempt,
    /// The reflections in memory.
    Reflexion,
    /// The previous trajectory and the newest reflection.
    LastAttemptAndReflexion,
}

impl Strategy {
    /// The CLI names.
    pub const NAMES: [&'static str; 4] = [
        "none",
        "last-attempt",
        "reflexion",
        "last-attempt-and-reflexion",
    ];

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Strategy::None,
            "last-attempt" => Strategy::LastAttempt,
            "reflexion" => Strategy::Reflexion,
            "last-attempt-and-reflexion" => Strategy::LastAttemptAndReflexion,
            _ => return None,
        })
    }

    /// Whether a failed trial should be followed by a reflection.
    pub fn reflects(self) -> bool {
        matches!(
            self,
            Strategy::Reflexion | Strategy::LastAttemptAndReflexion
        )
    }
}

/// Opens the reflections section of a prompt.
pub const REFLECTIONS_HEADER: &str = "You tried this question before and did not get it right. The notes below say what went wrong and how to do better; follow them this time.\n";
/// Opens the previous-attempt section of a prompt.
pub const LAST_ATTEMPT_HEADER: &str =
    "You tried this question before and did not get it right. Your previous attempt follows.\n";
/// Replaces an observation shortened to fit the prompt budget.
pub const TRUNCATED: &str = "[observation shortened]";

/// The text a trial is given about earlier trials under `strategy` (empty for `None` or when
/// there is nothing to tell yet).
pub fn context_for(
    strategy: Strategy,
    question: &str,
    memory: &ReflectionMemory,
    last_scratchpad: Option<&str>,
    count_tokens: &dyn Fn(&str) -> usize,
    last_attempt_budget: usize,
) -> String {
    let reflections = |all: bool| -> String {
        let items: Vec<&str> = if all {
            memory.iter().collect()
        } else {
            memory.iter().last().into_iter().collect()
        };
        if items.is_empty() {
            return String::new();
        }
        let list: Vec<String> = items.iter().map(|r| r.trim().to_string()).collect();
        format!(
            "{REFLECTIONS_HEADER}Reflections:\n- {}\n",
            list.join("\n- ")
        )
    };
    let last = || -> String {
        match last_scratchpad {
            Some(pad) => format!(
                "{LAST_ATTEMPT_HEADER}Question: {question}\n{}\n(END PREVIOUS TRIAL)\n",
                truncate_scratchpad(pad.trim(), count_tokens, last_attempt_budget)
            ),
            None => String::new(),
        }
    };
    match strategy {
        Strategy::None => String::new(),
        Strategy::LastAttempt => last(),
        Strategy::Reflexion => reflections(true),
        Strategy::LastAttemptAndReflexion => format!("{}{}", last(), reflections(false)),
    }
}

/// Shortens a scratchpad to `budget` tokens by replacing its longest observations, one at a
/// time, with [`TRUNCATED`] (as Reflexion does before showing a previous trial).
pub fn truncate_scratchpad(
    pad: &str,
    count_tokens: &dyn Fn(&str) -> usize,
    budget: usize,
) -> String {
    let mut lines: Vec<String> = pad.split('\n').map(str::to_string).collect();
    let mut observations: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("Observation"))
        .collect();
    observations.sort_by_key(|&i| std::cmp::Reverse(count_tokens(&lines[i])));
    let mut next = observations.into_iter();
    while count_tokens(&lines.join("\n")) > budget {
        let Some(i) = next.next() else { break };
        let label = lines[i]
            .split(':')
            .next()
            .unwrap_or("Observation")
            .to_string();
        lines[i] = format!("{label}: {TRUNCATED}");
    }
    lines.join("\n")
}

/// Why an episode could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The LLM failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn each_strategy_tells_the_trial_what_reflexion_tells_it() {
        let mut mem = ReflectionMemory::new(3).unwrap();
        let pad = "Thought 1: search\nAction 1: Search[X]\nObservation 1: X is a thing.";
        let ctx = |s, m: &ReflectionMemory, p| context_for(s, "Q?", m, p, &words, 100);
        assert_eq!(ctx(Strategy::None, &mem, Some(pad)), "");
        assert_eq!(
            ctx(Strategy::Reflexion, &mem, Some(pad)),
            "",
            "no reflections yet"
        );
        mem.push("First plan. ".into());
        mem.push("Second plan.".into());
        assert_eq!(
            ctx(Strategy::Reflexion, &mem, None),
            format!("{REFLECTIONS_HEADER}Reflections:\n- First plan.\n- Second plan.\n")
        );
        assert_eq!(
            ctx(Strategy::LastAttempt, &mem, Some(pad)),
            format!("{LAST_ATTEMPT_HEADER}Question: Q?\n{pad}\n(END PREVIOUS TRIAL)\n")
        );
        assert_eq!(
            ctx(Strategy::LastAttemptAndReflexion, &mem, Some(pad)),
            format!("{LAST_ATTEMPT_HEADER}Question: Q?\n{pad}\n(END PREVIOUS TRIAL)\n{REFLECTIONS_HEADER}Reflections:\n- Second plan.\n")
        );
        assert_eq!(
            Strategy::parse("last-attempt-and-reflexion"),
            Some(Strategy::LastAttemptAndReflexion)
        );
        assert_eq!(Strategy::parse("Reflexion"), None);
        assert!(Strategy::Reflexion.reflects() && !Strategy::LastAttempt.reflects());
    }

    #[test]
    fn truncation_replaces_the_longest_observations_first() {
        let pad = "Thought 1: a\nObservation 1: one two three four five six\nThought 2: b\nObservation 2: one two\nObservation 3: one two three";
        // 23 words in all; shortening observation 1 (8 words -> 4) gets to 19.
        let out = truncate_scratchpad(pad, &words, 19);
        assert_eq!(
            out,
            format!("Thought 1: a\nObservation 1: {TRUNCATED}\nThought 2: b\nObservation 2: one two\nObservation 3: one two three")
        );
        // 18 needs the next longest (observation 3, 5 words -> 4) too.
        let out = truncate_scratchpad(pad, &words, 18);
        assert!(
            out.contains(&format!("Observation 3: {TRUNCATED}"))
                && out.contains("Observation 2: one two"),
            "{out}"
        );
        // Nothing left to shorten: returned as far as it can go.
        assert_eq!(
            truncate_scratchpad("Thought 1: a b c", &words, 1),
            "Thought 1: a b c"
        );
        assert_eq!(truncate_scratchpad(pad, &words, 100), pad);
    }
}
