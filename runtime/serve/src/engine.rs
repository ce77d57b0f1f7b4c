//! The engine: the served models, each with a pool of sessions, and a bounded queue in front
//! of them.
//!
//! A session runs one generation at a time on its own thread (the llm layer's contract), so a
//! model serves as many requests at once as it has sessions (`Limits::sessions`); the rest wait,
//! up to `Limits::max_queue`, and beyond that are answered 429. A free session that last ran
//! with the request's adapter (and, better, for the same `session_id`) is preferred, since its
//! KV cache may hold the request's prefix; the cache is keyed by the adapter's handle and scale
//! inside the session, so it is never reused across adapters.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retroformer_llm::{
    CancelToken, GenerateRequest, Generation, LanguageModel, LlmError, Session, SessionOptions,
};
use tokio::sync::{mpsc, Semaphore};

use crate::adapters::{Adapters, Resolved};
use crate::capture::Capture;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Limits on what one request and the whole server may ask for.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Sessions (concurrent generations) per model.
    pub sessions: usize,
    /// Requests that may wait for a session, over all models; more get 429.
    pub max_queue: usize,
    /// The most tokens one completion may ask for (`max_tokens`).
    pub max_tokens: u32,
    /// The most completions one request may ask for (`n`).
    pub max_n: u32,
    /// A request's wall-clock budget, queueing included.
    pub deadline: Option<Duration>,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The API key clients must send (constant-time compared); `None`: no key.
    pub api_key: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions: 1,
            max_queue: 64,
            max_tokens: 4096,
            max_n: 8,
            deadline: Some(Duration::from_secs(600)),
            max_body_bytes: 4 << 20,
            api_key: None,
        }
    }
}

/// A session, with what its cache was last filled under.
struct Pooled {
    session: Box<dyn Session>,
    key: Option<(u64, u32)>,
    owner: Option<String>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Pooled>,
    /// Sessions open, idle or running.
    open: usize,
}

/// One model the server answers for.
pub struct ServedModel {
    /// The name requests use in `model`.
    pub name: String,
    pub model: Arc<dyn LanguageModel>,
    pub adapters: Adapters,
    options: SessionOptions,
    pool: Mutex<Pool>,
    permits: Arc<Semaphore>,
}

impl ServedModel {
    /// `model` served as `name` with `sessions` sessions of `options`.
    pub fn new(
        name: impl Into<String>,
        model: Arc<dyn LanguageModel>,
        adapters: Adapters,
        options: SessionOptions,
        sessions: usize,
    ) -> Self {
        Self {
            name: name.into(),
            model,
            adapters,
            options,
            pool: Mutex::new(Pool::default()),
            permits: Arc::new(Semaphore::new(sessions.max(1))),
        }
    }

    /// A free session, best first: same owner and adapter, same adapter, any; else a new one.
    /// The caller holds a permit, so one is free or may be opened.
    fn checkout(&self, key: Option<(u64, u32)>, owner: Option<&str>) -> Result<Pooled, LlmError> {
        let mut pool = self.pool.lock().unwrap();
        let score = |p: &Pooled| {
            u8::from(p.key == key) * 2 + u8::from(owner.is_some() && p.owner.as_deref() == owner)
        };
        let best = (0..pool.idle.len()).max_by_key(|&i| score(&pool.idle[i]));
        if let Some(i) = best {
            return Ok(pool.idle.swap_remove(i));
        }
        pool.open += 1;
        drop(pool);
        match self.model.session(&self.options) {
            Ok(session) => Ok(Pooled {
                session,
                key: None,
                owner: None,
            }),
            Err(e) => {
                self.pool.lock().unwrap().open -= 1;
                Err(e)
            }
        }
    }

    /// Returns a session to the pool; one whose owner thread is gone is dropped.
    fn checkin(&self, p: Pooled, gone: bool) {
        let mut pool = self.pool.lock().unwrap();
        if gone {
            pool.open -= 1;
        } else {
            pool.idle.push(p);
        }
    }

    /// Runs `request` on a session with `adapter`: blocking, on the caller's thread.
    fn generate(
        &self,
        request: &GenerateRequest,
        adapter: Option<&Resolved>,
        owner: Option<&str>,
        on_token: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<Generation, LlmError> {
        let key = adapter.map(Resolved::key);
        let mut p = self.checkout(key, owner)?;
        let r = (|| {
            if p.key != key {
                p.key = None;
                p.session
                    .set_adapter(adapter.map(|a| (a.handle.clone(), a.scale)))?;
                p.key = key;
            }
            p.session.generate(request, on_token)
        })();
        p.owner = owner.map(str::to_string);
        let gone = matches!(r, Err(LlmError::SessionGone));
        self.checkin(p, gone);
        r
    }
}

/// One generation a route asks for.
pub struct Job {
    pub request: GenerateRequest,
    pub adapter: Option<Resolved>,
    /// The client's `session_id`: its requests prefer the session it last used.
    pub session_id: Option<String>,
}

/// Cancels a generation when the request's future is dropped (the client went away).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Counts a request in a gauge while it lives.
struct Gauge<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Gauge<'a> {
    fn new(g: &'a std::sync::atomic::AtomicU64) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The served models, their queue and the counters.
pub struct Engine {
    pub models: Vec<Arc<ServedModel>>,
    pub limits: Limits,
    pub metrics: Metrics,
    /// Where chat turns with a `session_id` go, when capture is on.
    pub capture: Option<Capture>,
}

impl Engine {
    pub fn new(models: Vec<ServedModel>, limits: Limits) -> Self {
        Self {
            models: models.into_iter().map(Arc::new).collect(),
            limits,
            metrics: Metrics::default(),
            capture: None,
        }
    }

    /// Captures chat turns with a `session_id` for training (see [`Capture`]).
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    /// The model a request's `model` names.
    pub fn model(&self, name: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| {
                let served: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                ApiError::not_found(
                    "model",
                    "model_not_found",
                    format!(
                        "model {name:?} is not served here; served: {}",
                        served.join(", ")
                    ),
                )
            })
    }

    /// Runs `job` on `model` once a session is free; text pieces go to `stream` as they come.
    /// If this future is dropped, the generation is cancelled.
    pub async fn run(
        &self,
        model: &Arc<ServedModel>,
        mut job: Job,
        stream: Option<mpsc::Sender<String>>,
    ) -> Result<Generation, ApiError> {
        let cancel = CancelToken::new();
        job.request.cancel = Some(cancel.clone());
        let _cancel = CancelOnDrop(cancel);
        let permit = {
            let waiting = self.metrics.queued.load(Ordering::Relaxed) as usize;
            if waiting >= self.limits.max_queue && model.permits.available_permits() == 0 {
                return Err(ApiError::queue_full(waiting, 1));
            }
            let _queued = Gauge::new(&self.metrics.queued);
            Arc::clone(&model.permits)
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("the server is shutting down"))?
        };
        if job.request.interrupted() == Some(retroformer_llm::FinishReason::Deadline) {
            return Err(ApiError::deadline(self.deadline_seconds()));
        }
        let _running = Gauge::new(&self.metrics.running);
        let m = Arc::clone(model);
        let adapter_name = job
            .adapter
            .as_ref()
            .map_or("base".to_string(), |a| a.id.clone());
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut on_token = |piece: &str| match &stream {
                Some(tx) => tx.blocking_send(piece.to_string()).is_ok(),
                None => true,
            };
            m.generate(
                &job.request,
                job.adapter.as_ref(),
                job.session_id.as_deref(),
                &mut on_token,
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("the generation panicked: {e}")))?;
        let g = result?;
        self.metrics
            .generation(&model.name, &adapter_name, &g.stats);
        if g.finish == retroformer_llm::FinishReason::Deadline {
            return Err(ApiError::deadline(self.deadline_seconds()));
        }
        Ok(g)
    }

    fn deadline_seconds(&self) -> f64 {
        self.limits.deadline.map_or(0.0, |d| d.as_secs_f64())
    }
}
