//! The reflection slot: after a failed trial, a model reads the trajectory and writes what went
//! wrong and a new plan. [`Reflector`] is the slot; [`LlmReflector`] fills it with a model in a
//! session of its own (any model, the actor itself, or a learned retrospective model with its
//! adapter) asked in an environment's own words ([`ReflectionPrompt`]).

use serde::{Deserialize, Serialize};

use retroformer_llm::{GenerateRequest, LlmError, SamplingParams, Session};

use super::AgentError;

/// A reflection and the prompt it was written from: the (x, y) of a Retroformer rating record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reflection {
    /// The reflection prompt x.
    pub prompt: String,
    /// The reflection y.
    pub text: String,
}

/// A failed attempt, as a reflector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The task (a question, a household goal).
    pub task: &'a str,
    /// The attempt's trajectory as text.
    pub trajectory: &'a str,
    /// Its return.
    pub episode_return: f32,
    /// The task's earlier reflections still in memory, oldest first.
    pub earlier: &'a [String],
}

/// Writes reflections on failed attempts.
pub trait Reflector {
    /// Reflections on several failed attempts, in order. A reflector with a batching session
    /// writes them together.
    fn reflect_many(&mut self, failed: &[Failure<'_>]) -> Result<Vec<Reflection>, AgentError>;

    /// A reflection on one failed attempt.
    fn reflect(&mut self, failure: &Failure<'_>) -> Result<Reflection, AgentError> {
        let mut out = self.reflect_many(std::slice::from_ref(failure))?;
        Ok(out.pop().expect("one reflection per failure"))
    }
}

/// How an environment puts a failure to a reflecting model.
pub trait ReflectionPrompt: Send {
    /// The prompt for `failure`.
    fn prompt(&self, failure: &Failure<'_>) -> String;
    /// The stop strings of a reflection (where a reply that runs on is cut).
    fn stops(&self) -> &[&str];
}

/// A model as the reflector, in a session of its own (so the actor's cache is untouched).
pub struct LlmReflector {
    session: Box<dyn Session>,
    prompt: Box<dyn ReflectionPrompt>,
    max_tokens: u32,
    sampling: SamplingParams,
}

impl LlmReflector {
    /// A reflector writing with `session`, asked with `prompt`, greedy.
    pub fn new(
        session: Box<dyn Session>,
        prompt: Box<dyn ReflectionPrompt>,
        max_tokens: u32,
    ) -> Self {
        Self {
            session,
            prompt,
            max_tokens,
            sampling: SamplingParams::default(),
        }
    }

    /// Sample reflections with `sampling` instead of greedy decoding.
    pub fn with_sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }

    fn request(&self, prompt: String) -> GenerateRequest {
        let mut req = GenerateRequest::new(prompt, self.max_tokens);
        for s in self.prompt.stops() {
            req = req.stop(*s);
        }
        req.parse_special = false;
        req.sampling = self.sampling.clone();
        req
    }
}

impl Reflector for LlmReflector {
    /// One [`Session::generate_batch`]: together when the session has several sequences.
    fn reflect_many(&mut self, failed: &[Failure<'_>]) -> Result<Vec<Reflection>, AgentError> {
        let prompts: Vec<String> = failed.iter().map(|f| self.prompt.prompt(f)).collect();
        let reqs: Vec<GenerateRequest> = prompts.iter().map(|p| self.request(p.clone())).collect();
        Ok(reflect_batch(&mut *self.session, prompts, reqs)?)
    }
}

/// Reflections on `prompts`, written from their requests `reqs` with one
/// [`Session::generate_batch`], each reply trimmed.
fn reflect_batch(
    session: &mut dyn Session,
    prompts: Vec<String>,
    reqs: Vec<GenerateRequest>,
) -> Result<Vec<Reflection>, LlmError> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
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
    use retroformer_llm::scripted::ScriptedModel;
    use retroformer_llm::{LanguageModel, SessionOptions};

    struct Plain;
    impl ReflectionPrompt for Plain {
        fn prompt(&self, f: &Failure<'_>) -> String {
            format!(
                "{} | {} | {}\nReflection:",
                f.task,
                f.trajectory,
                f.earlier.join(";")
            )
        }
        fn stops(&self) -> &[&str] {
            &["\n\n"]
        }
    }

    fn failure<'a>(task: &'a str, earlier: &'a [String]) -> Failure<'a> {
        Failure {
            task,
            trajectory: "did x",
            episode_return: 0.0,
            earlier,
        }
    }

    #[test]
    fn the_reflector_asks_in_the_environments_words_and_keeps_the_text_before_its_stop() {
        let model = ScriptedModel::new([" I guessed.\n\nMore.", " Two.", " Three."]);
        let session = model.session(&SessionOptions::default()).unwrap();
        let mut r = LlmReflector::new(session, Box::new(Plain), 100);
        let earlier = vec!["old plan".to_string()];
        let one = r.reflect(&failure("Who?", &earlier)).unwrap();
        assert_eq!(one.text, "I guessed.");
        assert_eq!(one.prompt, "Who? | did x | old plan\nReflection:");
        let many = r
            .reflect_many(&[failure("A?", &[]), failure("B?", &[])])
            .unwrap();
        assert_eq!(
            (many[0].text.as_str(), many[1].text.as_str()),
            ("Two.", "Three.")
        );
        let reqs = model.requests();
        assert_eq!(reqs[0].prompt, one.prompt);
        assert_eq!(reqs[0].stop, vec!["\n\n"]);
        assert!(reqs
            .iter()
            .all(|q| q.sampling == SamplingParams::default() && !q.parse_special));
        assert!(r.reflect_many(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_sampling_reflector_asks_for_its_temperature_and_seed_in_every_request() {
        let model = ScriptedModel::new([" One.", " Two."]);
        let sampling = SamplingParams {
            temperature: 0.7,
            seed: 5,
            ..Default::default()
        };
        let session = model.session(&SessionOptions::default()).unwrap();
        let mut r =
            LlmReflector::new(session, Box::new(Plain), 100).with_sampling(sampling.clone());
        r.reflect_many(&[failure("A?", &[]), failure("B?", &[])])
            .unwrap();
        assert!(model.requests().iter().all(|q| q.sampling == sampling));
    }
}
