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
    /// When `prompt` is a user message in the reflector's chat template: that message alone,
    /// so that a trainer can put it in its own model's template (a student learning from a
    /// teacher's reflections) and learn the end of the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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
    /// Line openings that mean the reply has gone on to write a trajectory (a small model
    /// continues the prompt's pattern): the reflection is cut before the first such line, so
    /// that no invented step reaches the actor's prompt.
    fn trajectory_lines(&self) -> &[&str] {
        &TRAJECTORY_LINES
    }
    /// The chat template the prompt is put in, if any: a reply is cut where it writes the
    /// template's end of turn as text ([`own_turn`]).
    fn frame(&self) -> Option<&ChatFrame> {
        None
    }
    /// Whether the prompt is tokenised with its chat template's special tokens. Spelt out as
    /// plain text (the default, kept for the environments whose measured results were made
    /// that way), the template is noise to the model; an environment whose prompt is in a
    /// frame should say true.
    fn special_tokens(&self) -> bool {
        false
    }
}

/// Openings of trajectory lines common to our environments' prompts.
pub const TRAJECTORY_LINES: [&str; 8] = [
    "Thought",
    "Action",
    "Observation",
    "Question:",
    "Reflection:",
    "STATUS:",
    "> ",
    "Your task is",
];

/// A reflection as it may enter memory: the reply cut before the first line that opens like a
/// trajectory line (`trajectory_lines`), and before the first sentence that repeats an earlier
/// one (a reply caught in a loop), trimmed. May be empty.
pub fn clean(text: &str, trajectory_lines: &[&str]) -> String {
    let mut kept = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if !kept.is_empty() && trajectory_lines.iter().any(|p| t.starts_with(p)) {
            break;
        }
        if kept.is_empty() && trajectory_lines.iter().any(|p| t.starts_with(p)) {
            // A reply that opens like a trajectory line has nothing before it to keep.
            return String::new();
        }
        kept.push(line);
    }
    cut_repeats(kept.join("\n").trim())
}

/// `text` up to the first sentence that repeats an earlier one (compared without case and
/// spacing).
fn cut_repeats(text: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut end = 0;
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let boundary = matches!(b, b'.' | b'!' | b'?' | b'\n') || i + 1 == bytes.len();
        if !boundary {
            continue;
        }
        let sentence: String = text[start..=i]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let trivial = sentence.trim_matches(|c: char| !c.is_alphanumeric()).len() < 8;
        if !trivial && !seen.insert(sentence) {
            break;
        }
        end = i + 1;
        start = i + 1;
    }
    text[..end].trim().to_string()
}

/// The reply's own turn: the prompt is tokenized without special tokens, so a small model ends
/// or reopens turns by writing the template's markers as text. A reply that opens by closing
/// the turn (and reopening the assistant's) is read after that; any reply is cut at the next
/// end of turn. Not a generation stop: a stop would end the first kind of reply before its text.
pub fn own_turn<'a>(text: &'a str, frame: Option<&ChatFrame>) -> &'a str {
    let Some(end) = frame.and_then(ChatFrame::end_of_turn) else {
        return text;
    };
    let mut t = text.trim_start();
    if let Some(rest) = t.strip_prefix(end) {
        let reopen = frame
            .and_then(|f| f.after.split_once(end))
            .map_or("", |(_, r)| r.trim());
        let rest = rest.trim_start();
        t = rest.strip_prefix(reopen).unwrap_or(rest).trim_start();
    }
    t.find(end).map_or(t, |i| &t[..i])
}

/// A model's chat template around one user message, taken apart once so that a prompt can be
/// put in it without the model at hand: `before` + message + `after` is what the template
/// renders (with the assistant's turn opened). A model without a template (a raw base model)
/// gets plain text: both parts empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatFrame {
    /// The template's text before the user message.
    pub before: String,
    /// The template's text after it, up to the assistant's reply.
    pub after: String,
}

impl ChatFrame {
    /// The frame of `model`'s chat template (plain text when it has none).
    pub fn of(model: &dyn retroformer_llm::LanguageModel) -> Self {
        const MARK: &str = "\u{1}RETROFORMER-MESSAGE\u{1}";
        let msg = [retroformer_llm::ChatMessage::new("user", MARK)];
        match model.chat_prompt(&msg, true) {
            Ok(text) => match text.split_once(MARK) {
                Some((before, after)) => Self {
                    before: before.into(),
                    after: after.into(),
                },
                None => Self::default(),
            },
            Err(_) => Self::default(),
        }
    }

    /// No template: the message is the whole prompt.
    pub fn is_plain(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }

    /// `message` in the frame.
    pub fn wrap(&self, message: &str) -> String {
        format!("{}{message}{}", self.before, self.after)
    }

    /// The text that ends a message in this template (ChatML's `<|im_end|>`): the first line
    /// of `after`, if any.
    pub fn end_of_turn(&self) -> Option<&str> {
        self.after
            .lines()
            .next()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
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
        // A prompt in the model's chat template is read with its special tokens where the
        // environment asks for it (`ReflectionPrompt::special_tokens`); a plain prompt never.
        req.parse_special =
            self.prompt.special_tokens() && self.prompt.frame().is_some_and(|f| !f.is_plain());
        req.sampling = self.sampling.clone();
        req
    }
}

impl Reflector for LlmReflector {
    /// One [`Session::generate_batch`]: together when the session has several sequences.
    /// Each reply is [`clean`]ed; a reply that comes out empty is asked for once more, sampled
    /// (an empty reflection would enter memory as nothing and be rated as something).
    fn reflect_many(&mut self, failed: &[Failure<'_>]) -> Result<Vec<Reflection>, AgentError> {
        let prompts: Vec<String> = failed.iter().map(|f| self.prompt.prompt(f)).collect();
        let reqs: Vec<GenerateRequest> = prompts.iter().map(|p| self.request(p.clone())).collect();
        let mut texts = self.write(&reqs)?;
        let empty: Vec<usize> = (0..texts.len()).filter(|&i| texts[i].is_empty()).collect();
        if !empty.is_empty() {
            let retry: Vec<GenerateRequest> = empty
                .iter()
                .map(|&i| {
                    let mut q = reqs[i].clone();
                    q.sampling = retry_sampling(&self.sampling, i);
                    q
                })
                .collect();
            for (&i, text) in empty.iter().zip(self.write(&retry)?) {
                texts[i] = text;
            }
        }
        Ok(prompts
            .into_iter()
            .zip(texts)
            .map(|(prompt, text)| Reflection {
                message: self.message_of(&prompt),
                prompt,
                text,
            })
            .collect())
    }
}

impl LlmReflector {
    /// The user message inside `prompt`, when the prompt is one in a chat template.
    fn message_of(&self, prompt: &str) -> Option<String> {
        let f = self.prompt.frame().filter(|f| !f.is_plain())?;
        prompt
            .strip_prefix(f.before.as_str())?
            .strip_suffix(f.after.as_str())
            .map(str::to_string)
    }

    /// The cleaned replies to `reqs`, with one [`Session::generate_batch`].
    fn write(&mut self, reqs: &[GenerateRequest]) -> Result<Vec<String>, LlmError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let lines = self.prompt.trajectory_lines();
        Ok(self
            .session
            .generate_batch(reqs)?
            .into_iter()
            .map(|g| clean(own_turn(&g.text, self.prompt.frame()), lines))
            .collect())
    }
}

/// How an empty reply is asked for again: sampled at a moderate temperature, within the
/// nucleus, with a seed of its own (greedy decoding would write the same empty reply).
fn retry_sampling(sampling: &SamplingParams, i: usize) -> SamplingParams {
    SamplingParams {
        temperature: sampling.temperature.max(0.7),
        top_p: 0.95,
        min_p: 0.05,
        seed: sampling.seed.wrapping_add(7919).wrapping_add(i as u32),
        ..sampling.clone()
    }
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
    fn a_chat_frame_ends_a_turn_where_its_template_does() {
        let chatml = ChatFrame {
            before: "<|im_start|>user\n".into(),
            after: "<|im_end|>\n<|im_start|>assistant\n".into(),
        };
        assert_eq!(chatml.end_of_turn(), Some("<|im_end|>"));
        assert_eq!(ChatFrame::default().end_of_turn(), None);
        let f = Some(&chatml);
        assert_eq!(own_turn("Plan.<|im_end|>\n<|im_start|>user\nQ", f), "Plan.");
        assert_eq!(
            own_turn("<|im_end|>\n<|im_start|>assistant\nPlan.<|im_end|>", f),
            "Plan."
        );
        assert_eq!(own_turn("<|im_end|>", f), "");
        assert_eq!(own_turn("Plan.", None), "Plan.");
    }

    #[test]
    fn cleaning_cuts_invented_trajectory_lines_and_loops() {
        let lines = &TRAJECTORY_LINES;
        assert_eq!(
            clean(
                " I searched the wrong page.\nThought 3: Search[x]\nAction 3: ...",
                lines
            ),
            "I searched the wrong page."
        );
        assert_eq!(clean("Thought 1: I should search.", lines), "");
        assert_eq!(
            clean(
                "Search the film first. Then the actor. Search the film first. Then",
                lines
            ),
            "Search the film first. Then the actor."
        );
        assert_eq!(clean("  \n ", lines), "");
        // Short fragments ("1.", "ok.") may repeat without being a loop.
        assert_eq!(
            clean("Plan: 1. go. 2. take. 1. go again.", lines),
            "Plan: 1. go. 2. take. 1. go again."
        );
    }

    #[test]
    fn a_chat_frame_puts_a_message_where_the_template_would() {
        let model = ScriptedModel::new(Vec::<String>::new());
        let frame = ChatFrame::of(&model);
        let direct = model
            .chat_prompt(&[retroformer_llm::ChatMessage::new("user", "Why?")], true)
            .unwrap();
        assert_eq!(frame.wrap("Why?"), direct);
        assert!(!frame.before.is_empty() || !frame.after.is_empty());
    }

    #[test]
    fn an_empty_reply_is_asked_for_once_more_sampled() {
        let model = ScriptedModel::new([" Good plan.", "\n", " Second try."]);
        let session = model.session(&SessionOptions::default()).unwrap();
        let mut r = LlmReflector::new(session, Box::new(Plain), 100);
        let out = r
            .reflect_many(&[failure("A?", &[]), failure("B?", &[])])
            .unwrap();
        assert_eq!(
            (out[0].text.as_str(), out[1].text.as_str()),
            ("Good plan.", "Second try.")
        );
        let reqs = model.requests();
        assert_eq!(reqs.len(), 3);
        assert!(reqs[2].sampling.temperature > 0.0 && reqs[2].sampling.top_p < 1.0);
        assert_eq!(reqs[2].prompt, reqs[1].prompt);
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
