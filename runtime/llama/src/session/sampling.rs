//! A request's token sampler, with its grammar kept apart from the rest of the chain.
//!
//! Applying a grammar to every token of the vocabulary (151 936 for Qwen2.5) costs more than a
//! batched decode step of a small model: profiled on household episodes (Qwen2.5-Coder-0.5B,
//! 16 lanes, 2 threads), llama.cpp's grammar code took ~20 % of the CPU, while the second
//! thread waited. So a token is first drawn from the chain without the grammar and checked
//! alone; only when the grammar refuses it is the grammar applied to the whole vocabulary and
//! the token drawn again (llama.cpp's own `common_sampler_sample` does the same).
//!
//! Greedy decoding is unchanged by this: the likeliest token, if allowed, is also the likeliest
//! allowed one. A sampled token is drawn from the grammar's tokens in proportion to the chain's
//! probabilities (a rejected draw is redrawn among the allowed tokens only), except that a
//! truncation (top-k, top-p, min-p) is first applied over the whole vocabulary rather than
//! over the allowed tokens.
//!
//! llama.cpp's grammar matcher keeps one parse stack for every way the text so far can be
//! parsed, and nothing bounds them: an ambiguous grammar (`s ::= "x" s "y" | "x" s "z"`, or a
//! JSON schema whose `anyOf` alternatives nest) doubles them with each character, until one
//! token takes minutes and the memory runs out, and every lane of the session waits on it.
//! So a request whose grammar work for one token passes [`MAX_GRAMMAR_MS_PER_TOKEN`] is ended
//! with an error naming its grammar (the time doubles token by token, so the cut comes within
//! a few tokens of the point where the matcher starts to blow up).

use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use retroformer_llm::{GenerateRequest, LlmError};

/// The most milliseconds of grammar work (drawing and accepting) one token may take; a normal
/// grammar takes a few over a whole vocabulary.
pub const MAX_GRAMMAR_MS_PER_TOKEN: u64 = 2_000;

pub(crate) struct TokenSampler {
    grammar: Option<LlamaSampler>,
    /// Time spent on the current token while a grammar is on: draw and accept.
    spent: Duration,
    chain: LlamaSampler,
    /// Apply the grammar to every token before drawing ([`retroformer_llm::SamplingParams::grammar_first`]).
    grammar_first: bool,
    /// Where the grammar came from, for its errors.
    origin: String,
}

/// What a draw found: the token, or why there is none.
pub(crate) enum Drawn {
    Token(LlamaToken),
    /// The sampler chain selected nothing.
    Nothing,
    /// The grammar allows no token here.
    Refused,
}

impl TokenSampler {
    /// The sampler `req` asks for, for `model` with `n_vocab` tokens and `n_ctx` cells.
    pub(crate) fn new(
        model: &LlamaModel,
        n_vocab: i32,
        n_ctx: u32,
        req: &GenerateRequest,
    ) -> Result<Self, LlmError> {
        let grammar = match &req.grammar {
            Some(g) => Some(LlamaSampler::grammar(model, &g.text, &g.root).map_err(|e| {
                LlmError::Grammar {
                    origin: g.origin.clone(),
                    message: format!("llama.cpp rejected it ({e}); run with RUST_LOG=llama-cpp-2=info for the parser's message"),
                }
            })?),
            None => None,
        };
        let s = &req.sampling;
        let mut chain = Vec::new();
        if s.repeat_penalty != 1.0 {
            // A window longer than the context only costs memory.
            chain.push(LlamaSampler::penalties(
                n_vocab,
                s.repeat_last_n.min(n_ctx as i32),
                s.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if s.is_greedy() {
            chain.push(LlamaSampler::greedy());
        } else {
            if s.top_k > 0 {
                chain.push(LlamaSampler::top_k(s.top_k));
            }
            if s.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(s.top_p, 1));
            }
            if s.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(s.min_p, 1));
            }
            chain.push(LlamaSampler::temp(s.temperature));
            chain.push(LlamaSampler::dist(s.seed));
        }
        Ok(TokenSampler {
            grammar,
            spent: Duration::ZERO,
            chain: LlamaSampler::chain_simple(chain),
            grammar_first: s.grammar_first,
            origin: req
                .grammar
                .as_ref()
                .map(|g| g.origin.clone())
                .unwrap_or_default(),
        })
    }

    /// Draws a token from `logits`, with `buf` as the candidates' scratch space.
    pub(crate) fn draw(&mut self, logits: &[f32], buf: &mut Vec<LlamaTokenData>) -> Drawn {
        let t0 = Instant::now();
        let drawn = self.draw_timed(logits, buf);
        self.spent = t0.elapsed();
        drawn
    }

    fn draw_timed(&mut self, logits: &[f32], buf: &mut Vec<LlamaTokenData>) -> Drawn {
        let masked = self.grammar.is_some() && self.grammar_first;
        let first = self.apply(logits, buf, masked);
        let redraw = match (self.grammar.as_mut(), &first) {
            (Some(g), Some(t)) if !masked => !allows(g, t.id()),
            (Some(_), None) => !masked,
            _ => false,
        };
        if !redraw {
            return found(first, masked);
        }
        found(self.apply(logits, buf, true), true)
    }

    /// Records `token` as generated: advances the grammar and the penalties' history.
    /// The error when the token's grammar work passed [`MAX_GRAMMAR_MS_PER_TOKEN`].
    pub(crate) fn accept(&mut self, token: LlamaToken) -> Result<(), LlmError> {
        let t0 = Instant::now();
        let grammar = self.grammar.as_mut().map(|g| g.try_accept(token));
        if let Some(Err(e)) = grammar {
            return Err(self.error(&format!("the grammar rejected the sampled token ({e})")));
        }
        let ms = (self.spent + t0.elapsed()).as_millis();
        if grammar.is_some() && ms > u128::from(MAX_GRAMMAR_MS_PER_TOKEN) {
            return Err(self.error(&format!(
                "too ambiguous: matching one token took {ms} ms (at most \
                 {MAX_GRAMMAR_MS_PER_TOKEN}); llama.cpp keeps every parse of the text so far, \
                 and their number doubles where alternatives can match the same text (make the \
                 alternatives of each rule start differently)"
            )));
        }
        let chain = self.chain.try_accept(token);
        chain.map_err(|e| self.error(&format!("the sampler rejected the sampled token ({e})")))
    }

    /// An error of this request's sampling, named after its grammar's origin.
    pub(crate) fn error(&self, message: &str) -> LlmError {
        LlmError::Grammar {
            origin: self.origin.clone(),
            message: message.to_string(),
        }
    }

    /// Runs the chain over every token of `logits` (the grammar first when `masked`); the
    /// selected candidate.
    fn apply(
        &mut self,
        logits: &[f32],
        buf: &mut Vec<LlamaTokenData>,
        masked: bool,
    ) -> Option<LlamaTokenData> {
        let mut data = std::mem::take(buf);
        data.clear();
        data.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        );
        let mut arr = LlamaTokenDataArray::new(data, false);
        if let (true, Some(g)) = (masked, self.grammar.as_mut()) {
            arr.apply_sampler(g);
        }
        arr.apply_sampler(&mut self.chain);
        let picked = arr.selected.and_then(|i| arr.data.get(i).copied());
        *buf = arr.data;
        picked
    }
}

/// The drawn candidate: a token, or none, or (drawn with the grammar applied) one the grammar
/// had ruled out, which it picks only when it allows nothing.
fn found(t: Option<LlamaTokenData>, masked: bool) -> Drawn {
    match t {
        None => Drawn::Nothing,
        Some(t) if masked && t.logit() == f32::NEG_INFINITY => Drawn::Refused,
        Some(t) => Drawn::Token(t.id()),
    }
}

/// Whether `grammar`, in its current state, allows `token` next.
fn allows(grammar: &mut LlamaSampler, token: LlamaToken) -> bool {
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
    one.apply_sampler(grammar);
    one.data
        .first()
        .is_some_and(|t| t.logit() != f32::NEG_INFINITY)
}
