//! A scripted language model for tests: it answers with prepared texts, in order, and records
//! every request, so that tests can assert the exact prompts an agent builds. Tokens are
//! whitespace-separated words; a request's stop strings cut the scripted text as a real model's
//! output would be cut. It implements the same traits as the llama.cpp model.
//!
//! [`ScriptedModel::generative`] answers without a script, as a deterministic pseudo-model:
//! `max_tokens` words drawn from a hash of the prompt and the session's adapter, so that it
//! keeps every invariant of the [conformance suite](crate::conformance) a real backend keeps.
//! [`ScriptedModel::responder`] answers with a function of the prompt and the session's adapter
//! file, for tests that need an adapter to make a model better or worse, deterministically.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    AdapterHandle, ChatMessage, FinishReason, GenerateRequest, Generation, GenerationStats,
    LanguageModel, LlmError, Session, SessionInfo, SessionOptions, Token,
};

/// A reply as a function of the prompt and the session's adapter file.
type Responder = dyn Fn(&str, Option<&Path>) -> String + Send + Sync;

#[derive(Default)]
struct Script {
    replies: VecDeque<String>,
    requests: Vec<GenerateRequest>,
    streams: Vec<usize>,
    /// With no reply left, generate one from the prompt instead of failing.
    generative: bool,
    /// Adapters loaded so far (each gets the next id).
    adapters: u64,
    /// With no reply left, answer with this.
    responder: Option<Arc<Responder>>,
}

/// A model that replies from a script. Clones share the script.
#[derive(Clone, Default)]
pub struct ScriptedModel {
    script: Arc<Mutex<Script>>,
}

impl ScriptedModel {
    /// A model that will answer `replies`, in order.
    pub fn new<S: Into<String>>(replies: impl IntoIterator<Item = S>) -> Self {
        let m = Self::default();
        m.script.lock().unwrap().replies = replies.into_iter().map(Into::into).collect();
        m
    }

    /// A model without a script: each reply is `max_tokens` words drawn from a hash of the
    /// prompt and the session's adapter (see the module's notes).
    pub fn generative() -> Self {
        let m = Self::default();
        m.script.lock().unwrap().generative = true;
        m
    }

    /// A model without a script that answers `respond(prompt, adapter file)`.
    pub fn responder(
        respond: impl Fn(&str, Option<&Path>) -> String + Send + Sync + 'static,
    ) -> Self {
        let m = Self::default();
        m.script.lock().unwrap().responder = Some(Arc::new(respond));
        m
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<GenerateRequest> {
        self.script.lock().unwrap().requests.clone()
    }

    /// For each `generate_stream` call so far, how many requests it started with (a session
    /// runs a stream one request at a time, follow-ups first, as the trait's default does).
    pub fn streams(&self) -> Vec<usize> {
        self.script.lock().unwrap().streams.clone()
    }

    /// Replies not yet used.
    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().replies.len()
    }
}

fn count_tokens(text: &str) -> usize {
    text.split_whitespace().count()
}

impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    fn tokenize(
        &self,
        text: &str,
        _add_bos: bool,
        _parse_special: bool,
    ) -> Result<Vec<Token>, LlmError> {
        Ok((0..count_tokens(text) as Token).collect())
    }

    fn detokenize(&self, tokens: &[Token]) -> Result<String, LlmError> {
        Ok(vec!["w"; tokens.len()].join(" "))
    }

    fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, LlmError> {
        let mut s: String = messages
            .iter()
            .map(|m| format!("<{}>{}</{}>\n", m.role, m.content, m.role))
            .collect();
        if add_assistant {
            s.push_str("<assistant>");
        }
        Ok(s)
    }

    fn session(&self, opts: &SessionOptions) -> Result<Box<dyn Session>, LlmError> {
        Ok(Box::new(ScriptedSession {
            model: self.clone(),
            cached: String::new(),
            adapter: None,
            adapter_path: None,
            context_size: opts.context_size,
        }))
    }

    /// Any existing file is an adapter (the scripted model has no weights to adapt); it
    /// changes what a generative model writes.
    fn load_adapter(&self, path: &Path) -> Result<AdapterHandle, LlmError> {
        if !path.is_file() {
            return Err(LlmError::AdapterLoad {
                path: path.display().to_string(),
            });
        }
        let mut s = self.script.lock().unwrap();
        s.adapters += 1;
        Ok(AdapterHandle::new(
            s.adapters,
            path.to_path_buf(),
            Arc::new(()),
        ))
    }
}

struct ScriptedSession {
    model: ScriptedModel,
    /// The last prompt, to report prefix reuse in words as a real session reports tokens.
    cached: String,
    /// The adapter's (id, scale bits), which keys the cache as a real session's does.
    adapter: Option<(u64, u32)>,
    /// The adapter's file, for a responder.
    adapter_path: Option<PathBuf>,
    /// Words a prompt may have (a lane's context), when the session was given one.
    context_size: Option<u32>,
}

/// Words a generative model draws from.
const WORDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// `n` words, each with a leading space, from a hash of `prompt` and `adapter`.
fn generated(prompt: &str, adapter: Option<(u64, u32)>, n: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let key = adapter.map_or(String::new(), |(id, scale)| format!("{id}/{scale}"));
    for b in prompt.bytes().chain(key.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = retroformer_core::rng::SplitMix64::new(h);
    (0..n)
        .map(|_| format!(" {}", WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]))
        .collect()
}

/// The reply as tokens: pieces ending at spaces, each id a hash of its text; a scripted
/// reply is certain, so each has log-probability 0 and is its own only alternative.
fn sampled(text: &str, logprobs: Option<u32>) -> Vec<super::SampledToken> {
    text.split_inclusive(' ')
        .map(|piece| {
            let id = piece
                .bytes()
                .fold(7 as Token, |h, b| (h * 31 + Token::from(b)) % 50_000);
            let bytes = piece.as_bytes().to_vec();
            let top = match logprobs {
                Some(k) if k > 0 => vec![super::TokenLogprob {
                    id,
                    bytes: bytes.clone(),
                    logprob: 0.0,
                }],
                _ => Vec::new(),
            };
            super::SampledToken {
                id,
                bytes,
                logprob: logprobs.map(|_| 0.0),
                top,
            }
        })
        .collect()
}

impl Session for ScriptedSession {
    fn generate(
        &mut self,
        req: &GenerateRequest,
        on_token: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<Generation, LlmError> {
        let words = req.prompt.split_whitespace().count() as u32;
        if let Some(context_size) = self.context_size.filter(|&c| words >= c) {
            return Err(LlmError::PromptTooLong {
                prompt_tokens: words,
                context_size,
            });
        }
        if let Some(finish) = req.interrupted() {
            return Ok(Generation {
                text: String::new(),
                finish,
                stats: GenerationStats {
                    prompt_tokens: words,
                    evaluated_tokens: words,
                    ..GenerationStats::default()
                },
                prompt_ids: Vec::new(),
                tokens: Vec::new(),
            });
        }
        let (reply, generative, responder) = {
            let mut s = self.model.script.lock().unwrap();
            s.requests.push(req.clone());
            (s.replies.pop_front(), s.generative, s.responder.clone())
        };
        let (reply, out_of_tokens) = match reply {
            Some(r) => (r, FinishReason::EndOfGeneration),
            None if responder.is_some() => (
                responder.map_or(String::new(), |f| {
                    f(&req.prompt, self.adapter_path.as_deref())
                }),
                FinishReason::EndOfGeneration,
            ),
            None if generative => (
                generated(&req.prompt, self.adapter, req.max_tokens),
                FinishReason::MaxTokens,
            ),
            None => return Err(LlmError::Context("the script has no reply left".into())),
        };
        let (text, finish) = match req
            .stop
            .iter()
            .filter_map(|s| reply.find(s.as_str()).map(|i| (i, s)))
            .min_by_key(|(i, _)| *i)
        {
            Some((i, s)) => (reply[..i].to_string(), FinishReason::Stop(s.clone())),
            None => (reply.clone(), out_of_tokens),
        };
        on_token(&text);
        let prompt_words: Vec<&str> = req.prompt.split_whitespace().collect();
        let reused = self
            .cached
            .split_whitespace()
            .zip(&prompt_words)
            .take_while(|(a, b)| a == *b)
            .count()
            .min(prompt_words.len().saturating_sub(1));
        self.cached = req.prompt.clone();
        Ok(Generation {
            stats: GenerationStats {
                prompt_tokens: prompt_words.len() as u32,
                reused_tokens: reused as u32,
                evaluated_tokens: (prompt_words.len() - reused) as u32,
                generated_tokens: count_tokens(&text) as u32,
                ..GenerationStats::default()
            },
            prompt_ids: (0..prompt_words.len() as Token).collect(),
            tokens: sampled(&text, req.logprobs),
            text,
            finish,
        })
    }

    fn generate_stream(
        &mut self,
        first: Vec<super::Keyed>,
        on_done: &mut super::OnDone<'_>,
    ) -> Result<(), LlmError> {
        self.model.script.lock().unwrap().streams.push(first.len());
        super::one_at_a_time(self, first, on_done)
    }

    fn set_adapter(&mut self, adapter: Option<(AdapterHandle, f32)>) -> Result<(), LlmError> {
        let key = adapter.as_ref().map(|(h, scale)| (h.id, scale.to_bits()));
        self.adapter_path = adapter.map(|(h, _)| h.path.clone());
        if key != self.adapter {
            self.adapter = key;
            self.cached.clear();
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), LlmError> {
        self.cached.clear();
        Ok(())
    }

    fn info(&self) -> Result<SessionInfo, LlmError> {
        Ok(SessionInfo {
            context_size: self.context_size.unwrap_or(u32::MAX),
            cached_tokens: count_tokens(&self.cached) as u32,
            threads: 1,
            lane_moves: 0,
            lanes: 1,
            numerics: "scripted".into(),
        })
    }
}
