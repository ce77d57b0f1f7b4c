//! The language-model interface.
//!
//! Callers use the [`LanguageModel`] and [`Session`] traits and never touch a backend; the
//! llama.cpp implementation is the `retroformer-llama` crate, and [`scripted::ScriptedModel`]
//! plugs into the same traits for tests. [`conformance`] holds the session invariants every
//! backend must keep, as one suite each backend runs; [`target`] the hardware profiles.
//!
//! A [`Session`] keeps its KV cache between calls: when the next prompt shares a token prefix
//! with what is already evaluated, only the new suffix is evaluated. Every call reports prompt,
//! reused, evaluated and generated tokens and the time of each phase ([`GenerationStats`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod conformance;
mod prose;
pub mod scripted;
mod stream;
pub mod target;

pub use prose::prose;
pub use retroformer_core::records::ChatMessage;
pub use stream::StopStream;

/// A token id.
pub type Token = i32;

/// Largest `repeat_last_n` (llama.cpp allocates a ring buffer of this many tokens).
pub const MAX_REPEAT_LAST_N: i32 = 1 << 16;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 (or below) means greedy decoding.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: off).
    pub top_k: i32,
    /// Nucleus sampling threshold (1.0: off).
    pub top_p: f32,
    /// Minimum probability relative to the most likely token (0.0: off).
    pub min_p: f32,
    /// Repetition penalty (1.0: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: i32,
    /// Seed of the random sampler.
    pub seed: u32,
    /// With a grammar, apply it to the whole vocabulary before the rest of the chain (as
    /// llama.cpp's `grammar_first`). Off (the default), a token is first drawn without the
    /// grammar and kept if the grammar allows it, else drawn again among the allowed tokens:
    /// the same greedy tokens at a fraction of the cost, and sampled ones in proportion to
    /// their probabilities, except that top-k, top-p and min-p then truncate over the whole
    /// vocabulary; on, they truncate over the allowed tokens exactly.
    pub grammar_first: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            grammar_first: false,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Whether the parameters select greedy decoding (temperatures below 1e-3 are treated as
    /// greedy: dividing logits by them overflows).
    pub fn is_greedy(&self) -> bool {
        self.temperature < 1e-3
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), LlmError> {
        let bad = |field: &'static str, msg: String| {
            Err(LlmError::InvalidParam {
                field,
                message: msg,
            })
        };
        if !self.temperature.is_finite() {
            return bad("temperature", format!("{} is not finite", self.temperature));
        }
        if self.top_k < 0 {
            return bad("top_k", format!("{} is negative", self.top_k));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", format!("{} is not in [0, 1]", self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat_penalty",
                format!("{} must be positive", self.repeat_penalty),
            );
        }
        if !(0..=MAX_REPEAT_LAST_N).contains(&self.repeat_last_n) {
            return bad(
                "repeat_last_n",
                format!("{} is not in [0, {MAX_REPEAT_LAST_N}]", self.repeat_last_n),
            );
        }
        Ok(())
    }
}

/// A GBNF grammar that constrains generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grammar {
    /// The GBNF text.
    pub text: String,
    /// The start rule (usually `root`).
    pub root: String,
    /// Where it came from, for error messages.
    pub origin: String,
}

/// One generation call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The full prompt (already templated).
    pub prompt: String,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Generation ends before the first occurrence of any of these (not included in the text).
    pub stop: Vec<String>,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Optional grammar.
    pub grammar: Option<Grammar>,
    /// Add the model's BOS token if it wants one.
    pub add_bos: bool,
    /// Parse special-token text (e.g. `<|im_start|>`) as special tokens.
    pub parse_special: bool,
    /// Keep generating past end-of-generation tokens (benchmarks; llama.cpp's `--ignore-eos`).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Set by another thread (a client that went away) to end this request alone: it finishes
    /// with [`FinishReason::Cancelled`] and the text so far, its neighbours go on.
    #[serde(skip)]
    pub cancel: Option<CancelToken>,
    /// The request ends with [`FinishReason::Deadline`] at this instant, alone.
    #[serde(skip)]
    pub deadline: Option<std::time::Instant>,
    /// Receives the text as it is generated, in [`Session::generate_stream`] and
    /// [`Session::serve`] (where there is no `on_token`); returning `false` cancels the request.
    #[serde(skip)]
    pub on_text: Option<TextSink>,
    /// Where this request's KV cache persists across restarts (see [`KvFile`]).
    #[serde(skip)]
    pub kv_file: Option<KvFile>,
    /// Report each sampled token's log-probability and this many most likely alternatives
    /// ([`SampledToken`]); `None`: ids and bytes only.
    #[serde(default)]
    pub logprobs: Option<u32>,
}

/// Most alternatives [`GenerateRequest::logprobs`] may ask for (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// A token and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub id: Token,
    /// The token's text as bytes (a piece of a UTF-8 character is possible).
    pub bytes: Vec<u8>,
    /// Natural log of its probability under the model's own distribution at that step: the
    /// raw logits' softmax, before temperature, top-k/p and grammar (what a trainer needs for
    /// importance ratios, as vLLM's default `raw_logprobs`).
    pub logprob: f32,
}

/// One sampled token (see [`Generation::tokens`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledToken {
    pub id: Token,
    /// The token's text as bytes.
    pub bytes: Vec<u8>,
    /// Its log-probability ([`TokenLogprob::logprob`]), when the request asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
    /// The most likely tokens at that step, most likely first ([`GenerateRequest::logprobs`]
    /// of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TokenLogprob>,
}

/// A file that keeps a conversation's KV cache across processes. When a request starts, a
/// backend that can restores the file's cells if they give more of the prompt than its own
/// cache does, and only if the file was written for the same `tag`, KV type and context size,
/// its data is intact (its hash) and its tokens are a prefix of the prompt; otherwise the file
/// is ignored. When the request ends, its cells are saved there (atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvFile {
    pub path: std::path::PathBuf,
    /// What else the cells depend on, which the backend cannot see: the model's and the
    /// adapter's content hashes and the adapter's scale.
    pub tag: String,
}

/// Where a request's text goes as it is generated ([`GenerateRequest::on_text`]). It runs on
/// the session's owner thread, between decode steps, so it must not block: a server forwards
/// the piece to a channel.
#[derive(Clone)]
pub struct TextSink(std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl TextSink {
    /// A sink calling `f` with each piece; `f` returns `false` to cancel the request.
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }

    /// Hands `piece` to the sink; `false`: the request is cancelled.
    pub fn send(&self, piece: &str) -> bool {
        (self.0)(piece)
    }
}

impl std::fmt::Debug for TextSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextSink")
    }
}

impl PartialEq for TextSink {
    /// The same sink.
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A flag one side sets and a running request reads between tokens; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks every request holding a clone to stop.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for CancelToken {
    /// The same flag.
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl GenerateRequest {
    /// A greedy request with no stop strings.
    pub fn new(prompt: impl Into<String>, max_tokens: u32) -> Self {
        Self {
            prompt: prompt.into(),
            max_tokens,
            stop: Vec::new(),
            sampling: SamplingParams::default(),
            grammar: None,
            add_bos: true,
            parse_special: true,
            ignore_eos: false,
            cancel: None,
            deadline: None,
            on_text: None,
            kv_file: None,
            logprobs: None,
        }
    }

    /// Hands `text` to the request's [`TextSink`], if any; `false`: the request is cancelled.
    pub fn emit(&self, text: &str) -> bool {
        self.on_text.as_ref().is_none_or(|s| s.send(text))
    }

    /// Why this request must end now without another token: cancelled, or past its deadline.
    pub fn interrupted(&self) -> Option<FinishReason> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            Some(FinishReason::Cancelled)
        } else if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            Some(FinishReason::Deadline)
        } else {
            None
        }
    }

    /// Adds a stop string.
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop string was produced (the string is given).
    Stop(String),
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context window is full.
    ContextFull,
    /// The streaming callback or the request's [`CancelToken`] asked to stop.
    Cancelled,
    /// The request's deadline passed.
    Deadline,
}

impl FinishReason {
    /// Cancelled or past its deadline: the request did not end on its own.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Cancelled | Self::Deadline)
    }
}

/// Token counts and phase timings of one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV was reused from earlier calls.
    pub reused_tokens: u32,
    /// Prompt tokens evaluated in this call.
    pub evaluated_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Tokenisation time.
    pub tokenize_ms: f64,
    /// Prompt evaluation (prefill) time.
    pub prefill_ms: f64,
    /// Generation (decode and sampling) time.
    pub decode_ms: f64,
    /// Whole call.
    pub total_ms: f64,
}

impl GenerationStats {
    /// Prefill speed in tokens per second (0 when nothing was evaluated).
    pub fn prefill_tps(&self) -> f64 {
        rate(self.evaluated_tokens, self.prefill_ms)
    }

    /// Decode speed in tokens per second.
    pub fn decode_tps(&self) -> f64 {
        rate(self.generated_tokens, self.decode_ms)
    }
}

fn rate(n: u32, ms: f64) -> f64 {
    if ms > 0.0 {
        f64::from(n) * 1000.0 / ms
    } else {
        0.0
    }
}

/// The result of one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (without the stop string).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Counts and timings.
    pub stats: GenerationStats,
    /// The prompt's token ids, as the model saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_ids: Vec<Token>,
    /// Every token sampled, in order: including an end-of-generation token and the tokens of
    /// a stop string, which `text` leaves out, so that a trainer sees exactly what was sampled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<SampledToken>,
}

/// A loaded LoRA adapter, opaque to callers. Cheap to clone; freed when the last clone (and
/// every session using it) is gone.
#[derive(Clone)]
pub struct AdapterHandle {
    /// Unique per loaded adapter within the process; part of the KV-cache key.
    pub id: u64,
    /// The file it was loaded from.
    pub path: std::path::PathBuf,
    /// The backend's adapter, which only the backend that loaded it reads.
    inner: Arc<dyn std::any::Any + Send + Sync>,
}

impl AdapterHandle {
    /// A handle for a backend's adapter `inner`, loaded from `path`; `id` must be unique
    /// within the process (sessions key their KV cache by it).
    pub fn new(
        id: u64,
        path: std::path::PathBuf,
        inner: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        Self { id, path, inner }
    }

    /// The backend's adapter (a backend downcasts it to its own type).
    pub fn inner(&self) -> &Arc<dyn std::any::Any + Send + Sync> {
        &self.inner
    }
}

impl std::fmt::Debug for AdapterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterHandle")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

/// Per-session settings (defaults come from the target profile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOptions {
    /// Context size in tokens.
    pub context_size: Option<u32>,
    /// Threads.
    pub threads: Option<u32>,
    /// Requests [`Session::generate_stream`] decodes together (default 1: one at a time). With
    /// more than one, `context_size` is per sequence: each has a KV cache of its own, and one
    /// more holds the prompt prefix they share, so memory grows with `sequences + 1`.
    #[serde(default)]
    pub sequences: Option<u32>,
}

/// A request and the caller's key for it ([`Session::generate_stream`]).
pub type Keyed = (u64, GenerateRequest);

/// What [`Session::generate_stream`] calls as each request ends: its key and its generation or
/// its own error; it returns the follow-ups to run.
pub type OnDone<'a> = dyn FnMut(u64, Result<Generation, LlmError>) -> Vec<Keyed> + Send + 'a;

/// Where [`Session::serve`] gets its requests. `intake(false)` returns the requests that have
/// arrived (none, often) without waiting; `intake(true)` is called when the session has nothing
/// left to do and waits for more: an empty answer ends the serving.
pub type Intake<'a> = dyn FnMut(bool) -> Vec<Keyed> + Send + 'a;

/// Most requests a session decodes together.
pub const MAX_SEQUENCES: u32 = 128;

/// A device a backend can run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// e.g. `CPU`, `Vulkan0`.
    pub name: String,
    /// e.g. the GPU's marketing name.
    pub description: String,
    /// The device's kind, e.g. `CPU`, `Vulkan`, `CUDA`, `Metal`.
    pub backend: String,
    /// Device memory in bytes.
    pub memory_total: usize,
}

/// What a session's owner reports about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Context size in tokens.
    pub context_size: u32,
    /// Tokens whose KV is cached.
    pub cached_tokens: u32,
    /// Threads used.
    pub threads: u32,
    /// Busy lanes moved down so far by continuous batching, so that busy sequence ids stay
    /// consecutive (see `generate_stream`); 0 for backends without lanes.
    pub lane_moves: u64,
    /// Requests the session decodes at once (1: one at a time).
    pub lanes: u32,
    /// What besides the machine decides its numbers, as one line
    /// ([`target::TargetProfile::numerics`]; a backend without a profile names itself).
    pub numerics: String,
}

/// A language model: tokenizer, chat template and a factory of sessions.
pub trait LanguageModel: Send + Sync {
    /// A short name.
    fn name(&self) -> &str;
    /// Tokenizes `text`.
    fn tokenize(
        &self,
        text: &str,
        add_bos: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, LlmError>;
    /// Turns tokens back into text.
    fn detokenize(&self, tokens: &[Token]) -> Result<String, LlmError>;
    /// Renders `messages` with the model's chat template; `add_assistant` opens the reply turn.
    fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, LlmError>;
    /// A new session with its own KV cache.
    fn session(&self, opts: &SessionOptions) -> Result<Box<dyn Session>, LlmError>;
    /// Loads a LoRA adapter (validated first) without reloading the base.
    fn load_adapter(&self, path: &std::path::Path) -> Result<AdapterHandle, LlmError>;
    /// Bytes one token's keys and values take in a session's cache, over all layers, where the
    /// backend knows (it sizes batched sessions to the memory available: see
    /// [`TargetProfile::lanes`]).
    fn kv_bytes_per_token(&self) -> Option<u64> {
        None
    }
}

/// How many leading tokens of `prompt` a session can take from its cache `cached`: the common
/// prefix, but never the whole prompt, since its last token must be evaluated again to get
/// fresh logits. Zero for an empty prompt.
pub fn reusable_prefix(cached: &[Token], prompt: &[Token]) -> usize {
    cached
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count()
        .min(prompt.len().saturating_sub(1))
}

/// A conversation with its own KV cache.
pub trait Session: Send {
    /// Generates a continuation of `req.prompt`, reusing the cached prefix. `on_token` receives
    /// the text as it is produced and returns `false` to stop. It runs on the session's owner
    /// thread (hence `Send`), so streaming costs no thread wake-up per token.
    fn generate(
        &mut self,
        req: &GenerateRequest,
        on_token: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<Generation, LlmError>;
    /// Generates one continuation per request, in request order, without streaming. A backend
    /// that can decodes them together: the llama.cpp one evaluates their common prompt prefix
    /// once and then runs one sequence per request through shared batches, up to the session's
    /// `sequences`, which multiplies throughput wherever decoding one sequence leaves the
    /// hardware idle. The default runs them one after another. Batched results may differ from
    /// one-at-a-time ones in the last bits of the logits, as any change of batch shape does.
    fn generate_batch(&mut self, reqs: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        reqs.iter()
            .map(|r| self.generate(r, &mut |_| true))
            .collect()
    }
    /// Continuous batching: runs `first`, and the follow-ups that `on_done(key, result)`
    /// returns as each request finishes, until none is left. A backend that can keeps every
    /// lane busy: a request starts as soon as a lane and the context allow, not when a whole
    /// batch is done; a follow-up starts in the lane of the request it follows, reusing that
    /// prompt's KV (the next step of an agent extends the last one). Results arrive in the order
    /// requests finish. A request that cannot run (its prompt does not fit a lane, its grammar
    /// is refused: [`LlmError::is_request_error`]) gets its error alone and the others go on;
    /// one that is cancelled or passes its deadline ends alone. The stream itself fails only
    /// for what ends the session (a decode failure, the owner thread gone). The default runs
    /// one request at a time, follow-ups first.
    fn generate_stream(
        &mut self,
        first: Vec<Keyed>,
        on_done: &mut OnDone<'_>,
    ) -> Result<(), LlmError> {
        one_at_a_time(self, first, on_done)
    }
    /// Serving: continuous batching as in [`Self::generate_stream`], with requests arriving
    /// from `intake` while others run; each request's text goes to its
    /// [`GenerateRequest::on_text`]. A lane keeps its KV cache between requests, so a
    /// conversation's next turn, landing in the lane that holds its prefix, evaluates only what
    /// is new. Returns when `intake(true)` answers nothing. The default serves one request at a
    /// time.
    fn serve(&mut self, intake: &mut Intake<'_>, on_done: &mut OnDone<'_>) -> Result<(), LlmError> {
        loop {
            let first = intake(true);
            if first.is_empty() {
                return Ok(());
            }
            one_at_a_time(self, first, on_done)?;
        }
    }
    /// Applies an adapter at `scale`, or none. The KV cache is keyed by (adapter, scale).
    fn set_adapter(&mut self, adapter: Option<(AdapterHandle, f32)>) -> Result<(), LlmError>;
    /// Forgets the KV cache.
    fn clear(&mut self) -> Result<(), LlmError>;
    /// Context size and cache state.
    fn info(&self) -> Result<SessionInfo, LlmError>;
}

/// [`Session::generate_stream`] one request at a time, follow-ups first: the trait's default,
/// for backends without lanes.
pub fn one_at_a_time<S: Session + ?Sized>(
    session: &mut S,
    first: Vec<Keyed>,
    on_done: &mut OnDone<'_>,
) -> Result<(), LlmError> {
    let mut queue: std::collections::VecDeque<Keyed> = first.into();
    while let Some((key, req)) = queue.pop_front() {
        let r = match session.generate(&req, &mut |s| req.emit(s)) {
            Err(e) if !e.is_request_error() => return Err(e),
            r => r,
        };
        for (i, f) in on_done(key, r).into_iter().enumerate() {
            queue.insert(i, f);
        }
    }
    Ok(())
}

/// Errors of the LLM layer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The model file failed validation.
    #[error(transparent)]
    Gguf(#[from] retroformer_gguf::GgufError),
    /// An adapter file failed validation or does not fit the base.
    #[error(transparent)]
    Adapter(#[from] retroformer_gguf::AdapterError),
    /// llama.cpp could not load the model.
    #[error("{path}: llama.cpp could not load the model: {reason}")]
    ModelLoad {
        /// The file.
        path: String,
        /// Why (see the log for llama.cpp's own message).
        reason: String,
    },
    /// llama.cpp could not load an adapter.
    #[error("{path}: llama.cpp could not load the adapter (see the log for its message)")]
    AdapterLoad {
        /// The file.
        path: String,
    },
    /// A load probe (a child process that loaded the file first) failed: the file would have
    /// taken this process down, or could not be loaded at all.
    #[error("{path}: refused: {reason}")]
    Refused {
        /// The file.
        path: String,
        /// What the probe saw (its exit, signal or message).
        reason: String,
    },
    /// The context could not be created.
    #[error("could not create a llama.cpp context: {0}")]
    Context(String),
    /// The prompt does not fit in the context.
    #[error("prompt is {prompt_tokens} tokens but the context holds {context_size} (use a shorter prompt or a larger --ctx-size)")]
    PromptTooLong {
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Context size.
        context_size: u32,
    },
    /// The prompt is empty after tokenisation.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A parameter is out of range.
    #[error("invalid {field}: {message}")]
    InvalidParam {
        /// The field or flag.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A grammar was rejected.
    #[error("grammar {origin}: {message}")]
    Grammar {
        /// Where the grammar came from.
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// `llama_decode` failed.
    #[error("llama_decode failed with code {0}")]
    Decode(i32),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// The chat template could not be applied.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// The session's owner thread is gone.
    #[error("the session's owner thread has stopped")]
    SessionGone,
    /// An adapter handle from another model or backend.
    #[error("adapter {0} was not loaded by this model")]
    ForeignAdapter(String),
    /// A tensor of a GGUF file could not be read.
    #[error("{path}: tensor '{name}': {reason}")]
    Tensor {
        /// The file.
        path: String,
        /// The tensor (empty when the file itself failed).
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl LlmError {
    /// Whether the error belongs to one request (its prompt, parameters or grammar), so that a
    /// stream reports it for that request alone and goes on with the others.
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            LlmError::PromptTooLong { .. }
                | LlmError::EmptyPrompt
                | LlmError::InvalidParam { .. }
                | LlmError::Grammar { .. }
                | LlmError::Tokenize(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::reusable_prefix;

    #[test]
    fn the_reusable_prefix_is_the_common_one_but_never_the_whole_prompt() {
        assert_eq!(reusable_prefix(&[1, 2, 3, 4], &[1, 2, 9, 4, 5]), 2);
        // Same prompt again: all but the last token, whose logits must be recomputed.
        assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3]), 2);
        // The prompt grew: the whole cache is reused.
        assert_eq!(reusable_prefix(&[1, 2], &[1, 2, 3, 4]), 2);
        assert_eq!(reusable_prefix(&[], &[1, 2]), 0);
        assert_eq!(reusable_prefix(&[1], &[]), 0);
    }
}
