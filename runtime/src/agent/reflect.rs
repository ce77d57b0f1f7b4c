//! Reflection: after a failed trial, a model reads the trajectory and writes what went wrong
//! and a new plan. [`Reflector`] is the slot; [`LlmReflector`] fills it with a frozen model (any
//! manifest model, or the actor itself); the learned retrospective model plugs in here too.

use serde::{Deserialize, Serialize};

use crate::llm::{GenerateRequest, LlmError, SamplingParams, Session};

use super::AgentError;

/// A reflection and the prompt it was written from: the (x, y) of a Retroformer training record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reflection {
    /// The reflection prompt x.
    pub prompt: String,
    /// The reflection y.
    pub text: String,
}

/// Writes reflections on failed trials.
pub trait Reflector {
    /// Reflects on a failed attempt at `question`, whose Thought/Action/Observation lines are
    /// `scratchpad` and whose return was `episode_return`.
    fn reflect(
        &mut self,
        question: &str,
        scratchpad: &str,
        episode_return: f32,
    ) -> Result<Reflection, AgentError>;
    /// Reflections on several failed attempts (question, scratchpad, return), in order. The
    /// default writes them one after another; a reflector with a batching session writes
    /// them together.
    fn reflect_many(
        &mut self,
        failed: &[(&str, &str, f32)],
    ) -> Result<Vec<Reflection>, AgentError> {
        failed
            .iter()
            .map(|(q, pad, ret)| self.reflect(q, pad, *ret))
            .collect()
    }
}

/// What the reflecting model is asked (our wording).
pub const REFLECT_INSTRUCTION: &str = "You are an advanced reasoning agent that improves by reflecting on its own mistakes. Below is a previous attempt at a question-answering task that used Search, Lookup and Finish actions. The attempt failed: it gave a wrong answer, or ran out of steps before answering. In a few sentences, say why it failed and write a new, concise plan that avoids the same failure.";

/// Our own example of a reflection.
pub const REFLECT_EXAMPLE: &str = "Previous trial:
Question: What year was the university attended by the author of Dracula founded?
Thought 1: I need the author of Dracula, then the university he attended, then its founding year.
Action 1: Search[Dracula]
Observation 1: Dracula is an 1897 Gothic horror novel by Irish author Bram Stoker.
Thought 2: The author is Bram Stoker. I need his university.
Action 2: Search[Bram Stoker university]
Observation 2: Could not find [Bram Stoker university]. Similar: ['Bram Stoker', 'Bram Stoker Award']
Thought 3: I cannot find his university, so I will guess.
Action 3: Finish[1850]
Observation 3: Answer is INCORRECT

Reflection: I searched a phrase that is not a page title and then guessed instead of using the similar titles offered. Next time I will search the exact page, Bram Stoker, look up the word university to find Trinity College Dublin, then search that page for its founding year.";

/// The reflection prompt for one failed attempt.
pub fn reflection_prompt(question: &str, scratchpad: &str) -> String {
    format!(
        "{REFLECT_INSTRUCTION}\nHere is an example:\n\n{REFLECT_EXAMPLE}\n(END OF EXAMPLE)\n\nPrevious trial:\nQuestion: {question}{}\n\nReflection:",
        if scratchpad.starts_with('\n') {
            scratchpad.to_string()
        } else {
            format!("\n{scratchpad}")
        }
    )
}

/// A frozen LLM as the reflector.
pub struct LlmReflector {
    session: Box<dyn Session>,
    max_tokens: u32,
    sampling: SamplingParams,
}

impl LlmReflector {
    /// A reflector writing with `session` (its own session, so the actor's cache is untouched).
    pub fn new(session: Box<dyn Session>, max_tokens: u32) -> Self {
        Self {
            session,
            max_tokens,
            sampling: SamplingParams::default(),
        }
    }

    /// Sample reflections with `sampling` instead of greedy decoding.
    pub fn with_sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }
}

/// The request for a HotPotQA reflection prompt. Small models run on into the example's
/// markers: stop there too.
fn reflection_request(
    prompt: String,
    max_tokens: u32,
    sampling: SamplingParams,
) -> GenerateRequest {
    let mut req = GenerateRequest::new(prompt, max_tokens)
        .stop("\n\n")
        .stop("(END OF EXAMPLE)")
        .stop("Previous trial:");
    req.parse_special = false;
    req.sampling = sampling;
    req
}

impl Reflector for LlmReflector {
    fn reflect(
        &mut self,
        question: &str,
        scratchpad: &str,
        _episode_return: f32,
    ) -> Result<Reflection, AgentError> {
        let prompt = reflection_prompt(question, scratchpad);
        let g = self.session.generate(
            &reflection_request(prompt.clone(), self.max_tokens, self.sampling.clone()),
            &mut |_| true,
        )?;
        Ok(Reflection {
            prompt,
            text: g.text.trim().to_string(),
        })
    }

    /// One [`Session::generate_batch`]: together when the session has several sequences.
    fn reflect_many(
        &mut self,
        failed: &[(&str, &str, f32)],
    ) -> Result<Vec<Reflection>, AgentError> {
        let prompts: Vec<String> = failed
            .iter()
            .map(|(q, pad, _)| reflection_prompt(q, pad))
            .collect();
        let session = &mut *self.session;
        let (max_tokens, sampling) = (self.max_tokens, self.sampling.clone());
        Ok(reflect_batch(session, prompts, |p| {
            reflection_request(p, max_tokens, sampling.clone())
        })?)
    }
}

/// Reflections on `prompts` written with one [`Session::generate_batch`] (together when the
/// session has several sequences), each reply trimmed; `request` makes a prompt's request.
pub(crate) fn reflect_batch(
    session: &mut dyn Session,
    prompts: Vec<String>,
    request: impl Fn(String) -> GenerateRequest,
) -> Result<Vec<Reflection>, LlmError> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let reqs: Vec<GenerateRequest> = prompts.iter().map(|p| request(p.clone())).collect();
    let gens = session.generate_batch(&reqs)?;
    Ok(prompts
        .into_iter()
        .zip(gens)
        .map(|(prompt, g)| Reflection {
            prompt,
            text: g.text.trim().to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::scripted::ScriptedModel;
    use crate::llm::{LanguageModel, SessionOptions};

    #[test]
    fn the_reflector_sends_the_failed_trial_and_keeps_the_text_before_a_blank_line() {
        let model =
            ScriptedModel::new([" I guessed. Next time search the page.\n\nPrevious trial: ..."]);
        let mut r = LlmReflector::new(model.session(&SessionOptions::default()).unwrap(), 100);
        let pad = "\nThought 1: guess\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT";
        let out = r.reflect("Who?", pad, 0.0).unwrap();
        assert_eq!(out.text, "I guessed. Next time search the page.");
        let req = &model.requests()[0];
        assert_eq!(req.prompt, out.prompt);
        assert!(req.prompt.ends_with("Previous trial:\nQuestion: Who?\nThought 1: guess\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT\n\nReflection:"), "{}", req.prompt);
        assert_eq!(
            req.stop,
            vec!["\n\n", "(END OF EXAMPLE)", "Previous trial:"]
        );
        assert_eq!(req.sampling, SamplingParams::default(), "greedy by default");
    }

    #[test]
    fn a_sampling_reflector_asks_for_its_temperature_and_seed_in_every_request() {
        let model = ScriptedModel::new([" One.", " Two.", " Three."]);
        let sampling = SamplingParams {
            temperature: 0.7,
            seed: 5,
            ..Default::default()
        };
        let mut r = LlmReflector::new(model.session(&SessionOptions::default()).unwrap(), 100)
            .with_sampling(sampling.clone());
        let pad = "\nAction 1: Finish[x]\nObservation 1: Answer is INCORRECT";
        r.reflect("Who?", pad, 0.0).unwrap();
        let many = r
            .reflect_many(&[("Where?", pad, 0.0), ("When?", pad, 0.0)])
            .unwrap();
        assert_eq!(many[1].text, "Three.");
        let reqs = model.requests();
        assert_eq!(reqs.len(), 3);
        assert!(reqs.iter().all(|q| q.sampling == sampling), "{reqs:?}");
    }
}
