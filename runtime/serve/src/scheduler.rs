//! A served model's scheduler: one thread that owns the model's batched session and feeds it
//! the requests the routes submit.
//!
//! The session decodes up to its `lanes` requests together ([`Session::serve`]: continuous
//! batching, each lane keeping its KV cache between requests). One llama.cpp context applies
//! one adapter, so the scheduler serves one adapter at a time: it takes the oldest waiting
//! request's adapter, feeds the session every waiting request with that adapter, and once a
//! request with another adapter waits, stops feeding, lets the running ones finish and
//! switches. A request never runs under an adapter other than the one it resolved when it
//! started, and the session keys its cache by (adapter, scale), so no cached prefix crosses
//! adapters.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use retroformer_llm::{
    GenerateRequest, Generation, Keyed, LanguageModel, LlmError, Session, SessionOptions, TextSink,
};
use tokio::sync::oneshot;

use crate::adapters::Resolved;

/// The cache key of a request's adapter: `None` for the base model.
type AdapterKey = Option<(u64, u32)>;

/// What a request gets back.
pub type Reply = Result<Generation, LlmError>;

/// A submitted request, waiting for the scheduler.
struct Pending {
    key: u64,
    adapter: Option<Resolved>,
    request: GenerateRequest,
    reply: oneshot::Sender<Reply>,
}

impl Pending {
    fn adapter_key(&self) -> AdapterKey {
        self.adapter.as_ref().map(Resolved::key)
    }
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Pending>,
    /// Requests submitted and not yet answered (waiting or in the session).
    in_flight: usize,
    next_key: u64,
    closed: bool,
    /// Why the model stopped serving, once it has.
    stopped: Option<String>,
}

/// The queue between the routes and the scheduler thread.
struct Queue {
    state: Mutex<State>,
    changed: Condvar,
    /// When the queue was made: [`Self::beat`] counts from it.
    born: Instant,
    /// Milliseconds from `born` to the scheduler's last sign of progress: the session asked
    /// for work (with lanes, between every prompt chunk and decode step), answered a request,
    /// or emitted a piece of a request's text (see [`Scheduler::health`]).
    beat: AtomicU64,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            changed: Condvar::new(),
            born: Instant::now(),
            beat: AtomicU64::new(0),
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the scheduler moved.
    fn stamp(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.beat.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since the scheduler last moved.
    fn quiet(&self) -> Duration {
        let beat = Duration::from_millis(self.beat.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(beat)
    }

    /// Closes the queue for good: later submissions are refused with `why`.
    fn stop(&self, why: String) {
        let mut s = self.lock();
        s.closed = true;
        s.stopped.get_or_insert(why);
    }

    /// Blocks until a request waits (its adapter), or the queue is closed (`None`; what still
    /// waits is then answered by [`fail_waiting`]).
    fn next_adapter(&self) -> Option<Option<Resolved>> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            if let Some(p) = s.waiting.front() {
                return Some(p.adapter.clone());
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The waiting requests with adapter `key`, moved to `replies`. None while a request with
    /// another adapter waits (the session drains, then the scheduler switches). With `wait`,
    /// blocks until there is something to take or to switch to; empty: the serving ends.
    fn take(
        &self,
        key: AdapterKey,
        wait: bool,
        replies: &Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    ) -> Vec<Keyed> {
        self.stamp();
        let mut s = self.lock();
        loop {
            if s.closed || s.waiting.iter().any(|p| p.adapter_key() != key) {
                return Vec::new();
            }
            if !s.waiting.is_empty() || !wait {
                let mut replies = replies.lock().unwrap_or_else(|e| e.into_inner());
                return s
                    .waiting
                    .drain(..)
                    .map(|p| {
                        replies.insert(p.key, p.reply);
                        (p.key, p.request)
                    })
                    .collect();
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Answers a request and forgets it.
    fn answer(&self, reply: oneshot::Sender<Reply>, r: Reply) {
        self.stamp();
        let _ = reply.send(r);
        self.lock().in_flight -= 1;
    }
}

/// Why [`Scheduler::submit`] refused a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is at its limit; this many requests wait.
    Full(usize),
    /// The model stopped serving, for this reason.
    Stopped(String),
}

/// What [`Scheduler::health`] finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Idle, or serving and moving.
    Ready,
    /// Requests are in flight and nothing has moved for this long.
    Stalled(Duration),
    /// The model stopped serving, for this reason; every request is refused.
    Stopped(String),
}

/// The scheduler of one model: its queue and its thread.
pub struct Scheduler {
    queue: Arc<Queue>,
    lanes: usize,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Opens `model`'s session with `options` (its `sequences` are the lanes) and starts the
    /// thread that runs it.
    pub fn start(model: Arc<dyn LanguageModel>, options: SessionOptions) -> Result<Self, LlmError> {
        let session = model.session(&options)?;
        let lanes = options.sequences.unwrap_or(1).max(1) as usize;
        let queue = Arc::new(Queue::default());
        let q = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("serve-scheduler".into())
            .spawn(move || run(session, &model, &options, &q))
            .map_err(|e| LlmError::Context(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Self {
            queue,
            lanes,
            thread: Some(thread),
        })
    }

    /// Requests the session decodes together.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Requests not yet handed to the session.
    pub fn waiting(&self) -> usize {
        self.queue.lock().waiting.len()
    }

    /// Requests submitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.queue.lock().in_flight
    }

    /// Whether the model serves: [`Health::Stalled`] when requests are in flight and the
    /// scheduler has not moved for `stall_after` (a llama.cpp call that does not return, say).
    pub fn health(&self, stall_after: Duration) -> Health {
        let s = self.queue.lock();
        if let Some(why) = &s.stopped {
            return Health::Stopped(why.clone());
        }
        match self.queue.quiet() {
            quiet if s.in_flight > 0 && quiet >= stall_after => Health::Stalled(quiet),
            _ => Health::Ready,
        }
    }

    /// Queues `request` under `adapter` unless `in_flight` would pass `limit` or the model
    /// stopped serving. The answer comes on the returned channel.
    pub fn submit(
        &self,
        mut request: GenerateRequest,
        adapter: Option<Resolved>,
        limit: usize,
    ) -> Result<oneshot::Receiver<Reply>, Refused> {
        let mut s = self.queue.lock();
        if let Some(why) = &s.stopped {
            return Err(Refused::Stopped(why.clone()));
        }
        if s.in_flight >= limit {
            return Err(Refused::Full(s.waiting.len()));
        }
        let (reply, rx) = oneshot::channel();
        request.on_text = Some(self.beating(request.on_text.take()));
        if s.in_flight == 0 {
            // An idle scheduler's quiet time is not a stall: the clock starts with the work.
            self.queue.stamp();
        }
        s.in_flight += 1;
        s.next_key += 1;
        let key = s.next_key;
        s.waiting.push_back(Pending {
            key,
            adapter,
            request,
            reply,
        });
        drop(s);
        self.queue.changed.notify_all();
        Ok(rx)
    }

    /// `sink`, and a beat for each piece of text: a long generation is progress.
    fn beating(&self, sink: Option<TextSink>) -> TextSink {
        let queue = Arc::downgrade(&self.queue);
        TextSink::new(move |piece| {
            if let Some(q) = queue.upgrade() {
                q.stamp();
            }
            sink.as_ref().is_none_or(|s| s.send(piece))
        })
    }
}

/// How long dropping a scheduler waits for its thread to end.
const JOIN_WAIT: Duration = Duration::from_secs(10);

impl Drop for Scheduler {
    /// Closes the queue and waits for the thread, for at most [`JOIN_WAIT`]: a session stuck
    /// in a llama.cpp call would otherwise keep a stopping server from ever exiting. A thread
    /// still running then is left to the process's exit (it holds its own model).
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.changed.notify_all();
        let Some(t) = self.thread.take() else {
            return;
        };
        let start = Instant::now();
        while !t.is_finished() && start.elapsed() < JOIN_WAIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("the scheduler's session did not stop within {JOIN_WAIT:?}; leaving it");
        }
    }
}

/// The scheduler thread: serves one adapter's requests at a time until the queue closes.
fn run(
    mut session: Box<dyn Session>,
    model: &Arc<dyn LanguageModel>,
    options: &SessionOptions,
    queue: &Queue,
) {
    // However the thread ends (a panic outside the session included), later requests are
    // refused rather than left waiting for an answer that will not come.
    let _stop = StopOnExit(queue);
    let mut applied: Option<AdapterKey> = None;
    while let Some(adapter) = queue.next_adapter() {
        let key = adapter.as_ref().map(Resolved::key);
        if applied != Some(key) {
            applied = None;
            let set = session.set_adapter(adapter.map(|a| (a.handle.clone(), a.scale)));
            if let Err(e) = set {
                fail_waiting(queue, key, &e);
                continue;
            }
            applied = Some(key);
        }
        let replies = Mutex::new(HashMap::new());
        let served = catch_unwind(AssertUnwindSafe(|| {
            session.serve(&mut |wait| queue.take(key, wait, &replies), &mut |k, r| {
                let reply = replies.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
                if let Some(reply) = reply {
                    queue.answer(reply, r);
                }
                Vec::new()
            })
        }));
        let failure = match served {
            Ok(Ok(())) => {
                // The session answers every request it takes before it returns; should one be
                // left, its client must not wait (nor count as in flight) for ever.
                for (_, reply) in replies.into_inner().unwrap_or_else(|e| e.into_inner()) {
                    queue.answer(reply, Err(LlmError::SessionGone));
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the session panicked".to_string(),
        };
        tracing::error!(%failure, "the session failed; answering its requests and reopening it");
        for (_, reply) in replies.into_inner().unwrap_or_else(|e| e.into_inner()) {
            queue.answer(reply, Err(LlmError::Context(failure.clone())));
        }
        applied = None;
        match model.session(options) {
            Ok(s) => session = s,
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the session; the model stops serving");
                queue.stop(format!(
                    "the model stopped serving: cannot reopen its session: {e}"
                ));
                fail_waiting(queue, None, &e);
                return;
            }
        }
    }
}

/// Stops the queue when the scheduler thread ends, and answers what still waits.
struct StopOnExit<'a>(&'a Queue);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0
            .stop("the model stopped serving: its scheduler ended".into());
        fail_waiting(self.0, None, &LlmError::SessionGone);
    }
}

/// Answers the waiting requests with adapter `key` (every one when the queue is closed) with
/// `e`'s message.
fn fail_waiting(queue: &Queue, key: AdapterKey, e: &LlmError) {
    let failed: VecDeque<Pending> = {
        let mut s = queue.lock();
        let closed = s.closed;
        let (out, keep) = std::mem::take(&mut s.waiting)
            .into_iter()
            .partition(|p| closed || p.adapter_key() == key);
        s.waiting = keep;
        out
    };
    for p in failed {
        queue.answer(p.reply, Err(LlmError::Context(e.to_string())));
    }
}
