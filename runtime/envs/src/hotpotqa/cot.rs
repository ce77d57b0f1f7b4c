//! Chain of thought on HotPotQA: one Thought, then `Finish[answer]` (Reflexion's CoT agents),
//! with the gold supporting paragraphs as context (`cot-context`) or without (`cot`).

use crate::hotpotqa::{Episode, Question};
use retroformer_core::trajectory::{Step, Trajectory};
use retroformer_llm::{GenerateRequest, Generation, SamplingParams, Session};

use super::context::{absorb_line, call_sampling, line_request};
use super::react::EpisodeOutcome;
use retroformer::agent::AgentError;

/// The instruction (our wording); `{context}` switches between the two variants.
pub const INSTRUCTION: &str = "Answer the question with one Thought, then an Action. The Thought reasons step by step about the question. The Action must be Finish[answer], which gives the answer and ends the task.";
/// Added to the instruction when context is given.
pub const CONTEXT_NOTE: &str = " Use the context given with the question.";

/// Our own examples with context.
pub const EXAMPLES_CONTEXT: &str = "Relevant Context: The Louvre is the world's most-visited art museum, in Paris, France, on the Right Bank of the Seine.
Question: Which river flows through the city where the Louvre is?
Thought: The Louvre is in Paris, on the bank of the Seine, so the river is the Seine.
Action: Finish[Seine]

Relevant Context: Augusta Ada King, Countess of Lovelace (10 December 1815 – 27 November 1852) was an English mathematician. Charles Babbage (26 December 1791 – 18 October 1871) was an English polymath.
Question: Were Ada Lovelace and Charles Babbage born in the same year?
Thought: Lovelace was born in 1815 and Babbage in 1791, so they were not born in the same year.
Action: Finish[no]";

/// Our own examples without context.
pub const EXAMPLES_NO_CONTEXT: &str =
    "Question: Which river flows through the city where the Louvre is?
Thought: The Louvre is in Paris, and the river that flows through Paris is the Seine.
Action: Finish[Seine]

Question: Were Ada Lovelace and Charles Babbage born in the same year?
Thought: Ada Lovelace was born in 1815 and Charles Babbage in 1791, so no.
Action: Finish[no]";

/// The gold supporting paragraphs of a question, as one context string.
pub fn gold_context(q: &Question) -> String {
    let mut titles: Vec<&str> = Vec::new();
    for (t, _) in &q.supporting_facts {
        if !titles.contains(&t.as_str()) {
            titles.push(t);
        }
    }
    titles
        .iter()
        .filter_map(|t| q.pages.iter().find(|p| p.title == *t))
        .map(|p| p.text())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The prompt; `gold` is the context for `cot-context`, `None` for `cot`.
pub fn prompt(gold: Option<&str>, earlier: &str, question: &str, scratchpad: &str) -> String {
    let (note, examples, ctx) = match gold {
        Some(c) => (
            CONTEXT_NOTE,
            EXAMPLES_CONTEXT,
            format!("Relevant Context: {c}\n"),
        ),
        None => ("", EXAMPLES_NO_CONTEXT, String::new()),
    };
    let earlier = if earlier.is_empty() {
        String::new()
    } else {
        format!("{}\n\n", earlier.trim_end())
    };
    format!("{INSTRUCTION}{note}\nHere are some examples:\n{examples}\n(END OF EXAMPLES)\n\n{earlier}{ctx}Question: {question}{scratchpad}")
}

/// Runs one CoT episode: a Thought call and an Action call, each stopping at a newline.
pub fn run_episode(
    session: &mut dyn Session,
    episode: &mut Episode<'_>,
    with_context: bool,
    earlier: &str,
    trial: u32,
    max_tokens: u32,
    sampling: &SamplingParams,
) -> Result<EpisodeOutcome, AgentError> {
    let mut run = CotRun::start(episode, with_context, earlier, trial, max_tokens, sampling);
    while let Some(req) = run.request() {
        let g = session.generate(&req, &mut |_| true)?;
        run.absorb(&g);
    }
    Ok(run.finish(episode))
}

/// The calls of a CoT episode, in order.
const LABELS: [&str; 2] = ["\nThought:", "\nAction:"];

/// One CoT episode as a state machine (as ReAct's [`super::react::EpisodeRun`]): the request
/// for the Thought, then for the Action, whose prompt extends the Thought's (so a stream
/// continues it in its lane, on its KV).
#[derive(Debug)]
pub struct CotRun {
    question: Question,
    gold: Option<String>,
    earlier: String,
    trial: u32,
    max_tokens: u32,
    sampling: SamplingParams,
    pad: String,
    step: Step,
    outputs: Vec<String>,
}

impl CotRun {
    /// An episode on `episode`'s question, with its gold context when `with_context`, told
    /// `earlier` about earlier trials.
    pub fn start(
        episode: &Episode<'_>,
        with_context: bool,
        earlier: &str,
        trial: u32,
        max_tokens: u32,
        sampling: &SamplingParams,
    ) -> Self {
        let question = episode.question().clone();
        Self {
            gold: with_context.then(|| gold_context(&question)),
            question,
            earlier: earlier.to_string(),
            trial,
            max_tokens,
            sampling: sampling.clone(),
            pad: String::new(),
            step: Step::default(),
            outputs: Vec::new(),
        }
    }

    /// The next call's request, or `None` after the Action. Call [`CotRun::absorb`] with the
    /// reply before asking again.
    pub fn request(&mut self) -> Option<GenerateRequest> {
        let k = self.outputs.len();
        let label = LABELS.get(k)?;
        self.pad.push_str(label);
        let text = prompt(
            self.gold.as_deref(),
            &self.earlier,
            &self.question.question,
            &self.pad,
        );
        Some(line_request(
            text,
            self.max_tokens,
            call_sampling(&self.sampling, k as u32),
        ))
    }

    /// Takes the model's reply to the last request.
    pub fn absorb(&mut self, g: &Generation) {
        let out = absorb_line(&mut self.step, g);
        self.pad.push(' ');
        self.pad.push_str(&out);
        self.outputs.push(out);
    }

    /// How it ended: the Action is carried out in `episode`.
    pub fn finish(mut self, episode: &mut Episode<'_>) -> EpisodeOutcome {
        let action = self.outputs.pop().unwrap_or_default();
        let thought = self.outputs.pop().unwrap_or_default();
        // Only Finish counts; anything else ends the (single-step) episode unanswered.
        let observation = if action.starts_with("Finish[") {
            episode.step(&action).observation
        } else {
            "Invalid action type, please try again.".to_string()
        };
        self.pad.push_str(&format!("\nObservation: {observation}"));
        self.step.thought = thought;
        self.step.action = action;
        self.step.observation = observation;
        let mut trajectory = Trajectory::new(self.question.id.clone(), self.trial);
        trajectory.push(self.step);
        trajectory.success = episode.success();
        trajectory.episode_return = if trajectory.success { 1.0 } else { 0.0 };
        EpisodeOutcome {
            trajectory,
            scratchpad: self.pad,
            halted: episode.answer().is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotpotqa::{milhouse, Docstore, ANSWER_CORRECT};
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SessionOptions};

    #[test]
    fn cot_with_context_shows_the_gold_paragraphs_and_finishes_in_one_step() {
        let q = milhouse();
        assert_eq!(
            gold_context(&q),
            "Milhouse is a character. He is voiced by Pamela Hayden."
        );
        let store = Docstore::for_question(&q);
        let mut ep = Episode::new(&q, &store);
        let model =
            ScriptedModel::new(["The context says Pamela Hayden.", "Finish[Pamela Hayden]"]);
        let mut s = model.session(&SessionOptions::default()).unwrap();
        let out = run_episode(
            s.as_mut(),
            &mut ep,
            true,
            "",
            0,
            64,
            &SamplingParams::greedy(),
        )
        .unwrap();
        assert!(out.trajectory.success && !out.halted);
        assert_eq!(out.trajectory.steps[0].observation, ANSWER_CORRECT);
        let reqs = model.requests();
        assert!(reqs[0].prompt.ends_with("(END OF EXAMPLES)\n\nRelevant Context: Milhouse is a character. He is voiced by Pamela Hayden.\nQuestion: Who voices Milhouse?\nThought:"), "{}", reqs[0].prompt);
        assert!(reqs[1]
            .prompt
            .ends_with("\nThought: The context says Pamela Hayden.\nAction:"));
    }

    #[test]
    fn cot_without_context_and_a_non_finish_action_ends_unanswered() {
        let q = milhouse();
        let store = Docstore::for_question(&q);
        let mut ep = Episode::new(&q, &store);
        let model = ScriptedModel::new(["Not sure.", "Search[Milhouse]"]);
        let mut s = model.session(&SessionOptions::default()).unwrap();
        let out = run_episode(
            s.as_mut(),
            &mut ep,
            false,
            "",
            0,
            64,
            &SamplingParams::greedy(),
        )
        .unwrap();
        assert!(!out.trajectory.success && out.halted);
        assert!(out
            .scratchpad
            .ends_with("\nObservation: Invalid action type, please try again."));
        assert!(!model.requests()[0].prompt.contains("Relevant Context"));
    }
}
