//! A session: one `llama_context` on its own owner thread, and the handle that talks to it.
//!
//! long: the session's owner thread (its command loop, KV bookkeeping and decode) shares the context's unsafe state; split, the invariants that keep llama.cpp's calls sound would be spread over files.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_sys_2 as sys;

use super::{decode, tokenize, AdapterInner, ModelInner};
use crate::context::ContextConfig;
use retroformer_llm::{
    AdapterHandle, FinishReason, GenerateRequest, Generation, GenerationStats, Intake, Keyed,
    LlmError, OnDone, SampledToken, Session, SessionInfo, StopStream, Token, TokenLogprob,
};

mod gbnf;
mod kvfile;
mod sampling;
pub use sampling::MAX_GRAMMAR_MS_PER_TOKEN;
mod stream;

use sampling::{Drawn, TokenSampler};

/// The caller's streaming callback, lent to the owner thread for one `generate` call.
///
/// The handle blocks until the worker answers (or dies), so the borrow outlives every use; the
/// worker never keeps the pointer past its answer.
struct Callback(*mut (dyn FnMut(&str) -> bool + Send + 'static));

// SAFETY: the closure is `Send`, and it is used by one thread at a time (see above).
unsafe impl Send for Callback {}

/// The caller's `on_done` for one `generate_stream` call, lent like [`Callback`].
struct DoneCallback(*mut OnDone<'static>);

// SAFETY: as for `Callback`.
unsafe impl Send for DoneCallback {}

/// The caller's `intake` for one `serve` call, lent like [`Callback`].
struct IntakeCallback(*mut Intake<'static>);

// SAFETY: as for `Callback`.
unsafe impl Send for IntakeCallback {}

enum Failure {
    Llm(LlmError),
    /// The callback panicked on the owner thread; re-raised on the caller's.
    Panic(Box<dyn Any + Send>),
}

enum Cmd {
    Generate {
        req: Box<GenerateRequest>,
        on_token: Callback,
        done: Sender<Result<Generation, Failure>>,
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
    Stream {
        first: Vec<Keyed>,
        /// `Some` for `serve`: requests keep arriving from it.
        intake: Option<IntakeCallback>,
        on_done: DoneCallback,
        done: Sender<Result<(), Failure>>,
    },
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
            // llama.cpp's grammar parser recurses; grammars are also depth-checked first.
            .stack_size(16 << 20)
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

    /// Runs a `Cmd::Stream` on the owner thread and waits for its answer.
    fn stream(
        &mut self,
        first: Vec<Keyed>,
        intake: Option<&mut Intake<'_>>,
        on_done: &mut OnDone<'_>,
    ) -> Result<(), LlmError> {
        let (done, rx) = mpsc::channel();
        let ptr: *mut OnDone<'_> = on_done;
        // SAFETY: erases the borrows' lifetimes only; we wait for the worker's answer below
        // before returning, and the worker drops the pointers before answering.
        let ptr: *mut OnDone<'static> = unsafe { std::mem::transmute(ptr) };
        let intake = intake.map(|i| {
            let feed: *mut Intake<'_> = i;
            // SAFETY: as above.
            IntakeCallback(unsafe {
                std::mem::transmute::<*mut Intake<'_>, *mut Intake<'static>>(feed)
            })
        });
        self.send(Cmd::Stream {
            first,
            intake,
            on_done: DoneCallback(ptr),
            done,
        })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::Llm(e))) => Err(e),
            Ok(Err(Failure::Panic(p))) => resume_unwind(p),
            Err(_) => Err(LlmError::SessionGone),
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
        on_token: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<Generation, LlmError> {
        check_request(req)?;
        let (done, rx) = mpsc::channel();
        let ptr: *mut (dyn FnMut(&str) -> bool + Send + '_) = on_token;
        // SAFETY: erases the borrow's lifetime only; we wait for the worker's answer below
        // before returning, and the worker drops the pointer before answering.
        let ptr: *mut (dyn FnMut(&str) -> bool + Send + 'static) =
            unsafe { std::mem::transmute(ptr) };
        self.send(Cmd::Generate {
            req: Box::new(req.clone()),
            on_token: Callback(ptr),
            done,
        })?;
        match rx.recv() {
            Ok(Ok(g)) => Ok(g),
            Ok(Err(Failure::Llm(e))) => Err(e),
            Ok(Err(Failure::Panic(p))) => resume_unwind(p),
            Err(_) => Err(LlmError::SessionGone),
        }
    }

    fn generate_stream(
        &mut self,
        first: Vec<Keyed>,
        on_done: &mut OnDone<'_>,
    ) -> Result<(), LlmError> {
        // Each request is checked on the owner thread as it is admitted, so that a bad one is
        // refused alone.
        self.stream(first, None, on_done)
    }

    fn serve(&mut self, intake: &mut Intake<'_>, on_done: &mut OnDone<'_>) -> Result<(), LlmError> {
        let first = intake(true);
        if first.is_empty() {
            return Ok(());
        }
        self.stream(first, Some(intake), on_done)
    }

    fn generate_batch(&mut self, reqs: &[GenerateRequest]) -> Result<Vec<Generation>, LlmError> {
        let mut out: Vec<Option<Result<Generation, LlmError>>> =
            std::iter::repeat_with(|| None).take(reqs.len()).collect();
        let first = reqs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (i as u64, r))
            .collect();
        self.generate_stream(first, &mut |key, g| {
            out[key as usize] = Some(g);
            Vec::new()
        })?;
        // A batch has one result: the first request's error, if any (the others still ran).
        out.into_iter()
            .map(|g| g.unwrap_or(Err(LlmError::SessionGone)))
            .collect()
    }

    fn set_adapter(&mut self, adapter: Option<(AdapterHandle, f32)>) -> Result<(), LlmError> {
        let adapter = match adapter {
            None => None,
            Some((h, scale)) => {
                Some((super::resolve_adapter(&self.model, &h, scale)?, h.id, scale))
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

    fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    /// The sequence id of token `i` (below `len()`).
    fn seq(&self, i: usize) -> i32 {
        assert!(i < self.len(), "batch index out of range");
        // SAFETY: i is below n_tokens, each entry has one sequence id.
        unsafe { *(*self.raw.seq_id.add(i)) }
    }

    /// Appends one token of sequence `seq` at `pos`; returns its index in the batch (where its
    /// logits are, if asked for).
    fn push(&mut self, token: Token, pos: usize, seq: i32, logits: bool) -> i32 {
        let i = self.len();
        assert!(i < self.cap, "batch overflow");
        // SAFETY: the arrays were allocated for `cap` entries by llama_batch_init, with room
        // for one sequence id per token.
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos as i32;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        i as i32
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
    /// This session's ggml CPU threads, paused while the session is idle so that an idle
    /// session never competes with a busy one (see `ARCHITECTURE.md`).
    pool: NonNull<sys::ggml_threadpool>,
    cfg: ContextConfig,
    batch: Batch,
    /// Tokens whose KV is in the cache, in position order.
    cached: Vec<Token>,
    cached_key: KvKey,
    adapter: Option<(Arc<AdapterInner>, u64, f32)>,
    /// The vocabulary-sized candidate buffer, reused for every sampled token.
    candidates: Vec<LlamaTokenData>,
    /// Lane moves of this session's streams so far.
    lane_moves: u64,
    /// Writes `KvFile`s off the decode loop (started by the first save).
    kv_writer: std::cell::OnceCell<kvfile::KvWriter>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: created by us and freed once, the context before the threadpool it uses.
        unsafe {
            sys::llama_free(self.ctx.as_ptr());
            sys::ggml_threadpool_free(self.pool.as_ptr());
        }
    }
}

/// Resumes a session's threadpool for one call and pauses it again however the call ends.
struct Resumed(NonNull<sys::ggml_threadpool>);

impl Resumed {
    fn new(pool: NonNull<sys::ggml_threadpool>) -> Self {
        // SAFETY: the pool lives as long as the worker, which outlives this guard.
        unsafe { sys::ggml_threadpool_resume(pool.as_ptr()) };
        Self(pool)
    }
}

impl Drop for Resumed {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { sys::ggml_threadpool_pause(self.0.as_ptr()) }
    }
}

impl Worker {
    fn new(model: Arc<ModelInner>, cfg: ContextConfig) -> Result<Self, LlmError> {
        // SAFETY: plain struct of defaults.
        let mut cp = unsafe { sys::llama_context_default_params() };
        // `n_ctx` is per sequence: each sequence gets a KV stream of its own (attention in a
        // lane only ever reads that lane's cells; a shared pool makes every lane's attention
        // walk every lane's cells, which costs more than batching saves on long prompts).
        cp.n_ctx = cfg.n_ctx.saturating_mul(cfg.n_seq_max.max(1));
        cp.n_batch = cfg.n_batch;
        cp.n_ubatch = cfg.n_ubatch;
        cp.n_seq_max = cfg.n_seq_max.max(1);
        cp.kv_unified = false;
        cp.n_threads = cfg.threads as i32;
        cp.n_threads_batch = cfg.threads as i32;
        cp.flash_attn_type = cfg.flash;
        cp.type_k = cfg.kv;
        cp.type_v = cfg.kv;
        cp.no_perf = true;
        // Full-size KV for sliding-window layers (Gemma 3): prefix reuse rolls the cache back,
        // which a windowed cache cannot do correctly.
        cp.swa_full = true;
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
        if cfg.reference_kernels {
            // SAFETY: ctx is live and not shared yet.
            match unsafe { crate::use_reference_kernels(ctx.as_ptr()) } {
                Ok(backends) => tracing::debug!(backends, "CPU backends on reference kernels"),
                Err(e) => {
                    // SAFETY: ctx is live and not used after this.
                    unsafe { sys::llama_free(ctx.as_ptr()) };
                    return Err(LlmError::Context(format!("batch_invariant: {e}")));
                }
            }
        }
        // SAFETY: plain struct of defaults for `threads` threads.
        let mut tpp = unsafe { sys::ggml_threadpool_params_default(cfg.threads as i32) };
        tpp.paused = true;
        // SAFETY: tpp is a valid parameter block.
        let pool = NonNull::new(unsafe { sys::ggml_threadpool_new(&mut tpp) });
        let Some(pool) = pool else {
            // SAFETY: ctx is live and not used after this.
            unsafe { sys::llama_free(ctx.as_ptr()) };
            return Err(LlmError::Context(format!(
                "could not create a ggml threadpool of {} threads",
                cfg.threads
            )));
        };
        // SAFETY: both are live; the context is freed before the pool (see Drop).
        unsafe { sys::llama_attach_threadpool(ctx.as_ptr(), pool.as_ptr(), pool.as_ptr()) };
        // SAFETY: ctx is live.
        let real_ctx = unsafe { sys::llama_n_ctx_seq(ctx.as_ptr()) };
        let batch = Batch::new(cfg.n_batch as usize);
        tracing::debug!(
            n_ctx = real_ctx,
            threads = cfg.threads,
            "session context created"
        );
        Ok(Self {
            model,
            ctx,
            pool,
            cfg: ContextConfig {
                n_ctx: real_ctx,
                ..cfg
            },
            batch,
            cached: Vec::new(),
            cached_key: None,
            adapter: None,
            candidates: Vec::new(),
            lane_moves: 0,
            kv_writer: std::cell::OnceCell::new(),
        })
    }

    fn run(&mut self, rx: Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Cmd::Generate {
                    req,
                    on_token,
                    done,
                } => {
                    let mut panicked = None;
                    // The lent callback is used only inside this block, before we answer.
                    let r = {
                        let mut emit = |text: &str| -> bool {
                            // SAFETY: see `Callback`: the caller is blocked until we answer.
                            let f = unsafe { &mut *on_token.0 };
                            match catch_unwind(AssertUnwindSafe(|| f(text))) {
                                Ok(go_on) => go_on,
                                Err(p) => {
                                    panicked = Some(p);
                                    false
                                }
                            }
                        };
                        self.generate(&req, &mut emit)
                    };
                    if let Err(e) = &r {
                        // A failed call may leave the cache in an unknown state.
                        tracing::debug!(error = %e, "generation failed; clearing the KV cache");
                        self.clear_cache();
                    }
                    let answer = match (panicked, r) {
                        (Some(p), _) => Err(Failure::Panic(p)),
                        (None, r) => r.map_err(Failure::Llm),
                    };
                    let _ = done.send(answer);
                }
                Cmd::SetAdapter { adapter, reply } => {
                    let _ = reply.send(self.set_adapter(adapter));
                }
                Cmd::Clear { reply } => {
                    self.clear_cache();
                    let _ = reply.send(Ok(()));
                }
                Cmd::Stream {
                    first,
                    intake,
                    on_done,
                    done,
                } => {
                    let mut report = |key: u64,
                                      g: Result<Generation, LlmError>|
                     -> Result<Vec<Keyed>, Failure> {
                        // SAFETY: see `DoneCallback`: the caller is blocked until we answer.
                        let f = unsafe { &mut *on_done.0 };
                        catch_unwind(AssertUnwindSafe(|| f(key, g))).map_err(Failure::Panic)
                    };
                    let mut feed = intake.map(|i| {
                        move |wait: bool| -> Result<Vec<Keyed>, Failure> {
                            // SAFETY: as for `report`.
                            let f = unsafe { &mut *i.0 };
                            catch_unwind(AssertUnwindSafe(|| f(wait))).map_err(Failure::Panic)
                        }
                    });
                    let r = self.generate_stream(
                        first,
                        feed.as_mut().map(|f| f as &mut stream::Feed<'_>),
                        &mut report,
                    );
                    if r.is_err() {
                        tracing::debug!("batched generation failed; clearing the KV cache");
                        self.clear_cache();
                    }
                    let _ = done.send(r);
                }
                Cmd::Info { reply } => {
                    let _ = reply.send(SessionInfo {
                        context_size: self.cfg.n_ctx,
                        cached_tokens: self.cached.len() as u32,
                        threads: self.cfg.threads,
                        lane_moves: self.lane_moves,
                        lanes: self.cfg.n_seq_max.saturating_sub(1).max(1),
                        numerics: self.cfg.numerics.clone(),
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
                unsafe { decode(self.ctx.as_ptr(), self.batch.raw) }
            };
            let rc = rc.map_err(|e| LlmError::Context(format!("llama_decode threw: {e}")))?;
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

    fn sampler(&self, req: &GenerateRequest) -> Result<TokenSampler, LlmError> {
        TokenSampler::new(
            self.model.binding(),
            self.model.n_vocab,
            self.cfg.n_ctx,
            req,
        )
    }

    /// Samples from the logits of the last decode's batch entry `idx` (-1: its last entry).
    fn sample(
        &mut self,
        sampler: &mut TokenSampler,
        req: &GenerateRequest,
        idx: i32,
    ) -> Result<SampledToken, LlmError> {
        let n_vocab = self.model.n_vocab as usize;
        // SAFETY: the last decode requested logits for entry `idx`; the pointer covers n_vocab
        // floats and stays valid until the next decode. llama.cpp returns NULL for an entry
        // without logits.
        let logits = unsafe {
            let p = sys::llama_get_logits_ith(self.ctx.as_ptr(), idx);
            if p.is_null() {
                return Err(LlmError::Decode(-100));
            }
            std::slice::from_raw_parts(p, n_vocab)
        };
        let token = match sampler.draw(logits, &mut self.candidates) {
            Drawn::Token(t) => t,
            Drawn::Nothing => return Err(sampler.error("the sampler selected no token")),
            Drawn::Refused => {
                return Err(sampler.error("the grammar allows no token the model can produce here"))
            }
        };
        sampler.accept(token)?;
        let mut sampled = SampledToken {
            id: token.0,
            bytes: self.model.token_bytes(token.0),
            logprob: None,
            top: Vec::new(),
        };
        if let Some(k) = req.logprobs {
            // The logits are still the model's own: the sampler worked on a copy.
            let (logprob, top) = logprobs(logits, token.0, k as usize);
            sampled.logprob = Some(logprob);
            sampled.top = top
                .into_iter()
                .map(|(id, logprob)| TokenLogprob {
                    id,
                    bytes: self.model.token_bytes(id),
                    logprob,
                })
                .collect();
        }
        Ok(sampled)
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        let t_start = Instant::now();
        let _threads = Resumed::new(self.pool);
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
        if let Some(kv) = &req.kv_file {
            let best = retroformer_llm::reusable_prefix(&self.cached, &prompt);
            if let Some(t) = self.restore_seq(0, kv, &prompt, best) {
                self.cached = t;
            }
        }
        let common = retroformer_llm::reusable_prefix(&self.cached, &prompt);
        let reused = self.truncate_cache(common);

        let t_prefill = Instant::now();
        self.eval(&prompt[reused..])?;
        let prefill_ms = ms(t_prefill);

        let t_decode = Instant::now();
        let mut stream = StopStream::new(&req.stop);
        let mut generated = 0u32;
        let mut tokens = Vec::new();
        let finish = loop {
            if generated >= req.max_tokens {
                break FinishReason::MaxTokens;
            }
            if let Some(f) = req.interrupted() {
                break f;
            }
            let sampled = self.sample(&mut sampler, req, -1)?;
            let token = sampled.id;
            tokens.push(sampled);
            // SAFETY: vocab is live; token is in range (sampled from the vocabulary).
            if !req.ignore_eos && unsafe { sys::llama_vocab_is_eog(self.model.vocab(), token) } {
                break FinishReason::EndOfGeneration;
            }
            generated += 1;
            let shown = stream.push(&tokens[tokens.len() - 1].bytes);
            if !shown.is_empty() && !emit(shown) {
                break FinishReason::Cancelled;
            }
            if let Some(s) = stream.stopped() {
                break FinishReason::Stop(s.to_string());
            }
            if generated >= req.max_tokens {
                // The last token is not evaluated: nothing will be sampled after it.
                break FinishReason::MaxTokens;
            }
            if self.cached.len() + 1 >= n_ctx {
                break FinishReason::ContextFull;
            }
            self.eval(&[token])?;
        };
        let (rest, text) = stream.finish();
        if !rest.is_empty() {
            // Cancellation is moot here: generation has ended.
            let _ = emit(&rest);
        }
        let decode_ms = ms(t_decode);
        if let Some(kv) = req.kv_file.as_ref().filter(|_| !finish.is_interrupted()) {
            self.save_seq(0, &self.cached, kv);
        }
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
            prompt_ids: prompt,
            tokens,
        })
    }
}

/// `token`'s log-probability under `logits`' softmax and the `k` most likely tokens with
/// theirs, most likely first.
fn logprobs(logits: &[f32], token: Token, k: usize) -> (f32, Vec<(Token, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_z = f64::from(max) + sum.ln();
    let lp = |l: f32| (f64::from(l) - log_z) as f32;
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    let k = k.min(ids.len());
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
    }
    ids.truncate(k);
    ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let top = ids
        .into_iter()
        .map(|i| (i as Token, lp(logits[i])))
        .collect();
    (lp(logits[token as usize]), top)
}

/// The length of the common prefix of `a` and `b`.
fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// What the caller's side checks before a request reaches the owner thread.
fn check_request(req: &GenerateRequest) -> Result<(), LlmError> {
    req.sampling.validate()?;
    if let Some(k) = req
        .logprobs
        .filter(|&k| k > retroformer_llm::MAX_TOP_LOGPROBS)
    {
        return Err(LlmError::InvalidParam {
            field: "logprobs",
            message: format!(
                "{k} alternatives asked; at most {}",
                retroformer_llm::MAX_TOP_LOGPROBS
            ),
        });
    }
    if let Some(g) = &req.grammar {
        check_grammar_depth(g)?;
        let gbnf::Cost { visits, stacks } = gbnf::cost(&g.text, &g.root);
        if visits > gbnf::MAX_SETUP_VISITS {
            return Err(LlmError::Grammar {
                origin: g.origin.clone(),
                message: format!(
                    "too costly to set up: llama.cpp's left-recursion check would visit its \
                     rules {visits} times (at most {}); a rule whose alternatives start with \
                     the same rule multiplies the visits of every rule above it",
                    gbnf::MAX_SETUP_VISITS
                ),
            });
        }
        if stacks > gbnf::MAX_INITIAL_STACKS {
            return Err(LlmError::Grammar {
                origin: g.origin.clone(),
                message: format!(
                    "too ambiguous: llama.cpp's matcher would start it with {stacks} parses \
                     (at most {}), each checked against every candidate at every token; a \
                     rule whose alternatives start with the same rule multiplies them",
                    gbnf::MAX_INITIAL_STACKS
                ),
            });
        }
    }
    Ok(())
}

/// Deepest grammar nesting accepted: llama.cpp's GBNF parser recurses once per group.
pub const MAX_GRAMMAR_DEPTH: usize = 128;

/// Rejects grammars nested deeper than [`MAX_GRAMMAR_DEPTH`] before llama.cpp parses them
/// (its recursive-descent parser would overflow the stack, which no shim can catch).
fn check_grammar_depth(g: &retroformer_llm::Grammar) -> Result<(), LlmError> {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut chars = g.text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A string literal: skip to its closing quote, honouring escapes.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '[' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        ']' => break,
                        _ => {}
                    }
                }
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max > MAX_GRAMMAR_DEPTH {
        return Err(LlmError::Grammar {
            origin: g.origin.clone(),
            message: format!("groups are nested {max} deep (at most {MAX_GRAMMAR_DEPTH})"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
