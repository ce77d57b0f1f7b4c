//! A session: one `llama_context` on its own owner thread, and the handle that talks to it.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2 as sys;

use super::{tokenize, AdapterInner, ModelInner};
use crate::llm::{
    AdapterHandle, FinishReason, GenerateRequest, Generation, GenerationStats, LlmError, Session,
    SessionInfo, StopStream, Token,
};

pub(crate) struct ContextConfig {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: u32,
    pub flash: sys::llama_flash_attn_type,
}

enum Cmd {
    Generate {
        req: Box<GenerateRequest>,
        events: Sender<Event>,
        cancel: Arc<AtomicBool>,
    },
    SetAdapter {
        adapter: Option<(Arc<AdapterInner>, u64, f32)>,
        reply: Sender<Result<(), LlmError>>,
    },
    Clear {
        reply: Sender<Result<(), LlmError>>,
    },
    Info {
        reply: Sender<SessionInfo>,
    },
}

enum Event {
    Text(String),
    Done(Result<Generation, LlmError>),
}

/// Handle to a session's owner thread. Dropping it stops the thread and frees the context.
pub struct LlamaSession {
    tx: Option<Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
    model: Arc<ModelInner>,
}

impl LlamaSession {
    pub(crate) fn spawn(model: Arc<ModelInner>, cfg: ContextConfig) -> Result<Self, LlmError> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LlmError>>();
        let m = model.clone();
        let thread = std::thread::Builder::new()
            .name("llama-session".into())
            .spawn(move || match Worker::new(m, cfg) {
                Ok(mut w) => {
                    let _ = ready_tx.send(Ok(()));
                    w.run(rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| LlmError::Context(format!("cannot spawn the session thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                tx: Some(tx),
                thread: Some(thread),
                model,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(LlmError::SessionGone)
            }
        }
    }

    fn send(&self, cmd: Cmd) -> Result<(), LlmError> {
        self.tx
            .as_ref()
            .ok_or(LlmError::SessionGone)?
            .send(cmd)
            .map_err(|_| LlmError::SessionGone)
    }
}

impl Drop for LlamaSession {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Session for LlamaSession {
    fn generate(
        &mut self,
        req: &GenerateRequest,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        req.sampling.validate()?;
        let (events, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        self.send(Cmd::Generate {
            req: Box::new(req.clone()),
            events,
            cancel: cancel.clone(),
        })?;
        loop {
            match rx.recv() {
                Ok(Event::Text(t)) => {
                    if !cancel.load(Ordering::Relaxed) && !on_token(&t) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Ok(Event::Done(r)) => return r,
                Err(_) => return Err(LlmError::SessionGone),
            }
        }
    }

    fn set_adapter(&mut self, adapter: Option<(AdapterHandle, f32)>) -> Result<(), LlmError> {
        let adapter = match adapter {
            None => None,
            Some((h, scale)) => {
                if !scale.is_finite() {
                    return Err(LlmError::InvalidParam {
                        field: "adapter_scale",
                        message: format!("{scale} is not finite"),
                    });
                }
                let inner = h
                    .inner
                    .clone()
                    .downcast::<AdapterInner>()
                    .map_err(|_| LlmError::ForeignAdapter(h.path.display().to_string()))?;
                if !inner.belongs_to(&self.model) {
                    return Err(LlmError::ForeignAdapter(h.path.display().to_string()));
                }
                Some((inner, h.id, scale))
            }
        };
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::SetAdapter { adapter, reply })?;
        rx.recv().map_err(|_| LlmError::SessionGone)?
    }

    fn clear(&mut self) -> Result<(), LlmError> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Clear { reply })?;
        rx.recv().map_err(|_| LlmError::SessionGone)?
    }

    fn info(&self) -> Result<SessionInfo, LlmError> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Info { reply })?;
        rx.recv().map_err(|_| LlmError::SessionGone)
    }
}

/// A `llama_batch` with RAII.
struct Batch {
    raw: sys::llama_batch,
    cap: usize,
}

impl Batch {
    fn new(cap: usize) -> Self {
        // SAFETY: allocates arrays for `cap` tokens with one sequence id each.
        let raw = unsafe { sys::llama_batch_init(cap as i32, 0, 1) };
        Self { raw, cap }
    }

    /// Fills the batch with `tokens` at positions `pos0..`, logits for the last one only.
    fn fill(&mut self, tokens: &[Token], pos0: usize) {
        assert!(tokens.len() <= self.cap, "batch overflow");
        // SAFETY: the arrays were allocated for `cap` entries by llama_batch_init.
        unsafe {
            for (i, &t) in tokens.iter().enumerate() {
                *self.raw.token.add(i) = t;
                *self.raw.pos.add(i) = (pos0 + i) as i32;
                *self.raw.n_seq_id.add(i) = 1;
                *(*self.raw.seq_id.add(i)) = 0;
                *self.raw.logits.add(i) = i8::from(i + 1 == tokens.len());
            }
        }
        self.raw.n_tokens = tokens.len() as i32;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}

/// KV-cache key: which adapter (id) at which scale the cached KV was computed under.
type KvKey = Option<(u64, u32)>;

struct Worker {
    model: Arc<ModelInner>,
    ctx: NonNull<sys::llama_context>,
    cfg: ContextConfig,
    batch: Batch,
    /// Tokens whose KV is in the cache, in position order.
    cached: Vec<Token>,
    cached_key: KvKey,
    adapter: Option<(Arc<AdapterInner>, u64, f32)>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: the context was created by us and is freed once.
        unsafe { sys::llama_free(self.ctx.as_ptr()) }
    }
}

impl Worker {
    fn new(model: Arc<ModelInner>, cfg: ContextConfig) -> Result<Self, LlmError> {
        // SAFETY: plain struct of defaults.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = cfg.n_ctx;
        cp.n_batch = cfg.n_batch;
        cp.n_ubatch = cfg.n_ubatch;
        cp.n_seq_max = 1;
        cp.n_threads = cfg.threads as i32;
        cp.n_threads_batch = cfg.threads as i32;
        cp.flash_attn_type = cfg.flash;
        cp.no_perf = true;
        let raw = {
            let _w = model.lock.write().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the model is alive; context creation mutates it, hence the write lock.
            unsafe { sys::llama_init_from_model(model.raw(), cp) }
        };
        let ctx = NonNull::new(raw).ok_or_else(|| {
            LlmError::Context(format!(
                "llama_init_from_model returned NULL for n_ctx={} (out of memory?)",
                cfg.n_ctx
            ))
        })?;
        // SAFETY: ctx is live.
        let real_ctx = unsafe { sys::llama_n_ctx(ctx.as_ptr()) };
        let batch = Batch::new(cfg.n_batch as usize);
        tracing::debug!(
            n_ctx = real_ctx,
            threads = cfg.threads,
            "session context created"
        );
        Ok(Self {
            model,
            ctx,
            cfg: ContextConfig {
                n_ctx: real_ctx,
                ..cfg
            },
            batch,
            cached: Vec::new(),
            cached_key: None,
            adapter: None,
        })
    }

    fn run(&mut self, rx: Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Cmd::Generate {
                    req,
                    events,
                    cancel,
                } => {
                    let r = self.generate(&req, &events, &cancel);
                    if let Err(e) = &r {
                        // A failed call may leave the cache in an unknown state.
                        tracing::debug!(error = %e, "generation failed; clearing the KV cache");
                        self.clear_cache();
                    }
                    let _ = events.send(Event::Done(r));
                }
                Cmd::SetAdapter { adapter, reply } => {
                    let _ = reply.send(self.set_adapter(adapter));
                }
                Cmd::Clear { reply } => {
                    self.clear_cache();
                    let _ = reply.send(Ok(()));
                }
                Cmd::Info { reply } => {
                    let _ = reply.send(SessionInfo {
                        context_size: self.cfg.n_ctx,
                        cached_tokens: self.cached.len() as u32,
                        threads: self.cfg.threads,
                    });
                }
            }
        }
    }

    fn key(&self) -> KvKey {
        self.adapter.as_ref().map(|(_, id, s)| (*id, s.to_bits()))
    }

    fn set_adapter(
        &mut self,
        adapter: Option<(Arc<AdapterInner>, u64, f32)>,
    ) -> Result<(), LlmError> {
        let rc = match &adapter {
            // SAFETY: ctx is live; a null list with n=0 clears the adapters.
            None => unsafe {
                sys::llama_set_adapters_lora(
                    self.ctx.as_ptr(),
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                )
            },
            Some((a, _, scale)) => {
                let mut ptrs = [a.raw()];
                let mut scales = [*scale];
                // SAFETY: the adapter belongs to this model (checked by the handle) and stays
                // alive while set: we hold its Arc in `self.adapter`.
                unsafe {
                    sys::llama_set_adapters_lora(
                        self.ctx.as_ptr(),
                        ptrs.as_mut_ptr(),
                        1,
                        scales.as_mut_ptr(),
                    )
                }
            }
        };
        if rc != 0 {
            return Err(LlmError::Context(format!(
                "llama_set_adapters_lora failed with code {rc}"
            )));
        }
        self.adapter = adapter;
        Ok(())
    }

    fn clear_cache(&mut self) {
        // SAFETY: ctx is live.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx.as_ptr()), true) };
        self.cached.clear();
    }

    /// Makes the cache hold exactly `tokens[..keep]` and returns `keep`.
    fn truncate_cache(&mut self, keep: usize) -> usize {
        if keep == self.cached.len() {
            return keep;
        }
        // SAFETY: ctx is live; removing [keep, inf) of sequence 0.
        let ok = unsafe {
            sys::llama_memory_seq_rm(sys::llama_get_memory(self.ctx.as_ptr()), 0, keep as i32, -1)
        };
        if ok {
            self.cached.truncate(keep);
            keep
        } else {
            // Some memory types cannot drop a partial sequence: start over.
            self.clear_cache();
            0
        }
    }

    /// Evaluates `tokens` after the cache in batches; logits are left for the last one.
    fn eval(&mut self, tokens: &[Token]) -> Result<(), LlmError> {
        let n_vocab = self.model.n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(LlmError::Tokenize(format!(
                "token {bad} is outside the vocabulary (0..{n_vocab})"
            )));
        }
        if self.cached.len() + tokens.len() > self.cfg.n_ctx as usize {
            return Err(LlmError::PromptTooLong {
                prompt_tokens: (self.cached.len() + tokens.len()) as u32,
                context_size: self.cfg.n_ctx,
            });
        }
        for chunk in tokens.chunks(self.batch.cap) {
            self.batch.fill(chunk, self.cached.len());
            let rc = {
                let _r = self.model.lock.read().unwrap_or_else(|e| e.into_inner());
                // SAFETY: ctx is live; the batch holds valid tokens (checked above) at positions
                // that continue the cache and fit the context (checked above).
                unsafe { sys::llama_decode(self.ctx.as_ptr(), self.batch.raw) }
            };
            if rc != 0 {
                return Err(if rc == 1 {
                    LlmError::PromptTooLong {
                        prompt_tokens: (self.cached.len() + chunk.len()) as u32,
                        context_size: self.cfg.n_ctx,
                    }
                } else {
                    LlmError::Decode(rc)
                });
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn sampler(&self, req: &GenerateRequest) -> Result<LlamaSampler, LlmError> {
        let s = &req.sampling;
        let mut chain = Vec::new();
        if let Some(g) = &req.grammar {
            let gs = LlamaSampler::grammar(self.model.binding(), &g.text, &g.root).map_err(|e| LlmError::Grammar {
                origin: g.origin.clone(),
                message: format!("llama.cpp rejected it ({e}); run with RUST_LOG=llama-cpp-2=info for the parser's message"),
            })?;
            chain.push(gs);
        }
        if s.repeat_penalty != 1.0 {
            chain.push(LlamaSampler::penalties(
                self.model.n_vocab,
                s.repeat_last_n,
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
        Ok(LlamaSampler::chain_simple(chain))
    }

    fn sample(&self, sampler: &mut LlamaSampler, req: &GenerateRequest) -> Result<Token, LlmError> {
        let n_vocab = self.model.n_vocab as usize;
        // SAFETY: the last eval requested logits for its last token; the pointer covers n_vocab
        // floats and stays valid until the next decode.
        let logits = unsafe {
            let p = sys::llama_get_logits_ith(self.ctx.as_ptr(), -1);
            if p.is_null() {
                return Err(LlmError::Decode(-100));
            }
            std::slice::from_raw_parts(p, n_vocab)
        };
        let data: Vec<LlamaTokenData> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0))
            .collect();
        let mut arr = LlamaTokenDataArray::new(data, false);
        arr.apply_sampler(sampler);
        let grammar_err = |message: &str| LlmError::Grammar {
            origin: req
                .grammar
                .as_ref()
                .map(|g| g.origin.clone())
                .unwrap_or_default(),
            message: message.to_string(),
        };
        let idx = arr
            .selected
            .ok_or_else(|| grammar_err("the sampler selected no token"))?;
        let chosen = arr
            .data
            .get(idx)
            .ok_or_else(|| grammar_err("the sampler selected no token"))?;
        if req.grammar.is_some() && chosen.logit() == f32::NEG_INFINITY {
            return Err(grammar_err(
                "the grammar allows no token the model can produce here",
            ));
        }
        let token = chosen.id();
        sampler
            .try_accept(token)
            .map_err(|e| grammar_err(&format!("the grammar rejected the sampled token ({e})")))?;
        Ok(token.0)
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        events: &Sender<Event>,
        cancel: &AtomicBool,
    ) -> Result<Generation, LlmError> {
        let t_start = Instant::now();
        let prompt = tokenize(&self.model, &req.prompt, req.add_bos, req.parse_special)?;
        let tokenize_ms = ms(t_start);
        if prompt.is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        let n_ctx = self.cfg.n_ctx as usize;
        if prompt.len() >= n_ctx {
            return Err(LlmError::PromptTooLong {
                prompt_tokens: prompt.len() as u32,
                context_size: self.cfg.n_ctx,
            });
        }
        let mut sampler = self.sampler(req)?;

        // KV reuse: only under the same (adapter, scale), and at most up to the second-to-last
        // prompt token, since the last one must be evaluated to get fresh logits.
        if self.cached_key != self.key() {
            self.clear_cache();
            self.cached_key = self.key();
        }
        let common = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        let reused = self.truncate_cache(common);

        let t_prefill = Instant::now();
        self.eval(&prompt[reused..])?;
        let prefill_ms = ms(t_prefill);

        let t_decode = Instant::now();
        let mut stream = StopStream::new(&req.stop);
        let mut generated = 0u32;
        let finish = loop {
            if generated >= req.max_tokens {
                break FinishReason::MaxTokens;
            }
            if cancel.load(Ordering::Relaxed) {
                break FinishReason::Cancelled;
            }
            let token = self.sample(&mut sampler, req)?;
            // SAFETY: vocab is live; token is in range (sampled from the vocabulary).
            if !req.ignore_eos && unsafe { sys::llama_vocab_is_eog(self.model.vocab(), token) } {
                break FinishReason::EndOfGeneration;
            }
            generated += 1;
            let shown = stream.push(&self.model.token_bytes(token));
            if !shown.is_empty() {
                let _ = events.send(Event::Text(shown.to_string()));
            }
            if let Some(s) = stream.stopped() {
                break FinishReason::Stop(s.to_string());
            }
            if self.cached.len() + 1 >= n_ctx {
                break FinishReason::ContextFull;
            }
            self.eval(&[token])?;
        };
        let (rest, text) = stream.finish();
        if !rest.is_empty() {
            let _ = events.send(Event::Text(rest));
        }
        let decode_ms = ms(t_decode);
        Ok(Generation {
            text,
            finish,
            stats: GenerationStats {
                prompt_tokens: prompt.len() as u32,
                reused_tokens: reused as u32,
                evaluated_tokens: (prompt.len() - reused) as u32,
                generated_tokens: generated,
                tokenize_ms,
                prefill_ms,
                decode_ms,
                total_ms: ms(t_start),
            },
        })
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
