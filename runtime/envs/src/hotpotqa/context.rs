//! What a HotPotQA trial is told about earlier trials (Reflexion's strategies, in our wording),
//! and the one-line model call that ReAct and CoT make for each Thought and Action (as
//! Reflexion's agents call the model).

use retroformer::agent::Strategy;
use retroformer_core::memory::ReflectionMemory;
use retroformer_core::trajectory::Step;
use retroformer_llm::{GenerateRequest, Generation, SamplingParams};

/// A request for one line (it stops at a newline; special tokens in `prompt` stay text).
pub(crate) fn line_request(
    prompt: String,
    max_tokens: u32,
    sampling: SamplingParams,
) -> GenerateRequest {
    let mut req = GenerateRequest::new(prompt, max_tokens).stop("\n");
    req.parse_special = false;
    req.sampling = sampling;
    req
}

/// The line `g` generated, trimmed; its token counts are added to `step`'s.
pub(crate) fn absorb_line(step: &mut Step, g: &Generation) -> String {
    step.reused_tokens += g.stats.reused_tokens;
    step.evaluated_tokens += g.stats.evaluated_tokens;
    step.generated_tokens += g.stats.generated_tokens;
    g.text.trim().to_string()
}

/// The sampling of an episode's `k`-th model call: the episode's own (see
/// `RunConfig::actor_sampling`) with the call's index added to its seed, so that each call of
/// a sampled episode draws its own numbers and a rerun draws the same ones.
pub fn call_sampling(episode: &SamplingParams, k: u32) -> SamplingParams {
    let mut s = episode.clone();
    if !s.is_greedy() {
        s.seed = s.seed.wrapping_add(k);
    }
    s
}

/// Opens the reflections section of a prompt.
pub const REFLECTIONS_HEADER: &str = "You tried this question before and did not get it right. The notes below say what went wrong and how to do better; follow them this time.\n";
/// Opens the previous-attempt section of a prompt.
pub const LAST_ATTEMPT_HEADER: &str =
    "You tried this question before and did not get it right. Your previous attempt follows.\n";
/// Replaces an observation shortened to fit the prompt budget.
pub const TRUNCATED: &str = "[observation shortened]";

/// Names the answers already judged incorrect.
pub const REJECTED_HEADER: &str = "Answers already judged incorrect (do not give them again): ";

/// The text a trial is given about earlier trials under `strategy` (empty for `None` or when
/// there is nothing to tell yet). Strategies that show reflections also list `rejected`, the
/// answers earlier trials gave and were told were wrong: feedback the environment gave, which a
/// small actor otherwise repeats.
pub fn context_for(
    strategy: Strategy,
    question: &str,
    memory: &ReflectionMemory,
    last_scratchpad: Option<&str>,
    rejected: &[String],
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
        let wrong = if rejected.is_empty() {
            String::new()
        } else {
            format!("{REJECTED_HEADER}{}\n", rejected.join("; "))
        };
        format!(
            "{REFLECTIONS_HEADER}Reflections:\n- {}\n{wrong}",
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
        Strategy::Reflexion | Strategy::Placebo => reflections(true),
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
        let ctx = |s, m: &ReflectionMemory, p| context_for(s, "Q?", m, p, &[], &words, 100);
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
    fn reflecting_strategies_also_list_the_answers_judged_wrong() {
        let mut mem = ReflectionMemory::new(3).unwrap();
        mem.push("A plan.".into());
        let wrong = vec!["Paris".to_string(), "Lyon".to_string()];
        let with = |s| context_for(s, "Q?", &mem, None, &wrong, &words, 100);
        assert_eq!(
            with(Strategy::Reflexion),
            format!("{REFLECTIONS_HEADER}Reflections:\n- A plan.\n{REJECTED_HEADER}Paris; Lyon\n")
        );
        assert!(with(Strategy::Placebo).contains("Paris; Lyon"));
        assert_eq!(with(Strategy::None), "");
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
