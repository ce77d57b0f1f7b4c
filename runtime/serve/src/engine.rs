//! The engine: the served models, each with its scheduler (one batched session), and the
//! bound on what may wait in front of them.
//!
//! A model decodes up to its lanes' requests together (`--parallel`); more wait, up to
//! `Limits::max_queue` over the lanes, and beyond that are answered 429. A lane keeps its KV
//! cache between requests, and a request goes to the free lane that shares the longest prefix
//! with it, so a conversation's next turn usually evaluates only what is new; the cache is
//! keyed by the adapter's handle and scale inside the session, so it is never reused across
//! adapters (see [`crate::scheduler`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use retroformer_core::records::TurnTokens;
use retroformer_llm::{
    CancelToken, GenerateRequest, Generation, KvFile, LanguageModel, LlmError, SessionOptions,
    TextSink,
};
use tokio::sync::mpsc;

use crate::adapters::{Adapters, Resolved};
use crate::capture::Capture;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::scheduler::{Health, Refused, Scheduler};

/// Limits on what one request and the whole server may ask for.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests that may wait beyond a model's lanes; more get 429.
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
    /// How long a model may have requests in flight without any progress before `/health`
    /// calls it stalled (503).
    pub stall_after: Duration,
    /// Connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// The longest a connection may take to send a request's headers, the wait for the next
    /// request on a kept-alive connection included; then it is closed.
    pub header_wait: Duration,
    /// The longest a request body may take to arrive (408 after).
    pub body_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queue: 64,
            max_tokens: 4096,
            max_n: 8,
            deadline: Some(Duration::from_secs(600)),
            max_body_bytes: 4 << 20,
            api_key: None,
            stall_after: Duration::from_secs(300),
            max_connections: 256,
            header_wait: Duration::from_secs(30),
            // 4 MiB at ~35 kB/s.
            body_wait: Duration::from_secs(120),
        }
    }
}

/// One model the server answers for.
pub struct ServedModel {
    /// The name requests use in `model`.
    pub name: String,
    pub model: Arc<dyn LanguageModel>,
    pub adapters: Adapters,
    scheduler: Scheduler,
    /// The model file's sha256, when known: it tags saved KV caches and captured token ids.
    sha256: Option<String>,
    /// Where conversations' KV caches persist (`--kv-dir`).
    kv_dir: Option<std::path::PathBuf>,
    /// The most bytes of KV files kept there; the least recently saved go first.
    kv_budget: u64,
}

/// How long past its deadline a request waits for the session's own answer before the route
/// answers 504 itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// The KV files `--kv-dir` keeps by default: each conversation has one (~20 MB per ~900 tokens
/// of SmolLM2), and a client that rotates session ids would otherwise fill the disk.
pub const DEFAULT_KV_BUDGET: u64 = 4 << 30;

impl ServedModel {
    /// `model` served as `name` by one session of `options`, whose `sequences` are the
    /// requests decoded together.
    pub fn new(
        name: impl Into<String>,
        model: Arc<dyn LanguageModel>,
        adapters: Adapters,
        options: SessionOptions,
    ) -> Result<Self, LlmError> {
        let scheduler = Scheduler::start(Arc::clone(&model), options)?;
        Ok(Self {
            name: name.into(),
            model,
            adapters,
            scheduler,
            sha256: None,
            kv_dir: None,
            kv_budget: DEFAULT_KV_BUDGET,
        })
    }

    /// The model file's sha256: needed by [`Self::with_kv_dir`] and for captured token ids.
    pub fn with_sha256(mut self, sha256: String) -> Self {
        self.sha256 = Some(sha256);
        self
    }

    /// Keeps each `session_id`'s KV cache in `dir` (when the model's sha256 is known).
    pub fn with_kv_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.kv_dir = Some(dir);
        self
    }

    /// Keeps at most `bytes` of KV files in the `--kv-dir` (default [`DEFAULT_KV_BUDGET`]).
    pub fn with_kv_budget(mut self, bytes: u64) -> Self {
        self.kv_budget = bytes;
        self
    }

    /// Requests the session decodes together.
    pub fn lanes(&self) -> usize {
        self.scheduler.lanes()
    }

    /// Whether this model serves (see [`Scheduler::health`]).
    pub fn health(&self, stall_after: Duration) -> Health {
        self.scheduler.health(stall_after)
    }

    /// `g`'s token ids for a captured turn, when the model's hash is known (ids mean nothing
    /// without the model they belong to).
    pub fn turn_tokens(&self, g: &Generation) -> Option<TurnTokens> {
        let logprobs: Option<Vec<f32>> = g.tokens.iter().map(|t| t.logprob).collect();
        Some(TurnTokens {
            model_sha256: self.sha256.clone()?,
            prompt: g.prompt_ids.clone(),
            completion: g.tokens.iter().map(|t| t.id).collect(),
            logprobs: logprobs.filter(|l| !l.is_empty()),
        })
    }

    /// Where `session_id`'s KV cache persists under `adapter`, when `--kv-dir` is on. The file
    /// is named by a hash of the id and the adapter (any string is safe) and tagged with what the cells depend
    /// on beyond the backend's own checks: the model's and the adapter's content and scale.
    pub fn kv_file(&self, session_id: &str, adapter: Option<&Resolved>) -> Option<KvFile> {
        use sha2::{Digest, Sha256};
        let (dir, model_sha) = (self.kv_dir.as_ref()?, self.sha256.as_ref()?);
        let adapter = adapter.map_or("base".to_string(), |a| format!("{}@{}", a.id, a.scale));
        // One file for each adapter a conversation uses: switching back and forth would
        // otherwise overwrite the other's cells at each turn.
        let key = format!("{session_id}\0{adapter}");
        let name = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        let path = dir.join(format!("{name}.kv"));
        prune_kv(dir, self.kv_budget, &path);
        Some(KvFile {
            path,
            tag: format!("model={model_sha};adapter={adapter}"),
        })
    }

    /// Requests not yet handed to the session.
    pub fn waiting(&self) -> usize {
        self.scheduler.waiting()
    }

    /// Requests submitted and not yet answered (waiting or in the session).
    pub fn in_flight(&self) -> usize {
        self.scheduler.in_flight()
    }
}

/// A KV file's temporary twin older than this was left by a killed process (a writer's
/// own lives a fraction of a second; a dropped one removes itself).
const STALE_KV_TMP: Duration = Duration::from_secs(3600);

/// Removes the least recently saved `*.kv` files in `dir` (but `keep`) until the rest fit in
/// `budget` bytes, and temporary files a killed writer left. A file removed while a lane
/// restores it is still read whole (the lane holds it open); a removed conversation only
/// re-evaluates its prefix. One prune at a time: two would each count the other's removals
/// as still there and remove more than the budget asks. Failures are logged.
fn prune_kv(dir: &std::path::Path, budget: u64, keep: &std::path::Path) {
    static PRUNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = crate::lock(&PRUNING);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot list the KV folder: {e}");
            return;
        }
    };
    let mut files: Vec<(std::time::SystemTime, u64, std::path::PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let path = e.path();
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            if !meta.is_file() {
                return None;
            }
            if is_stale_kv_tmp(&path, modified) {
                remove_kv(&path);
                return None;
            }
            path.extension()
                .is_some_and(|x| x == "kv")
                .then_some((modified, meta.len(), path))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= budget {
            break;
        }
        if path != *keep && remove_kv(&path) {
            total -= len;
        }
    }
}

/// Whether `path` is the temporary twin of a KV file (`.NAME.kv.XXXX.tmp`, as
/// `fsutil::AtomicFile` names them) last written before [`STALE_KV_TMP`].
fn is_stale_kv_tmp(path: &std::path::Path, modified: std::time::SystemTime) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with('.')
        && name.ends_with(".tmp")
        && name.contains(".kv.")
        && modified.elapsed().is_ok_and(|age| age > STALE_KV_TMP)
}

/// Removes a KV file; whether it is gone (removed here, or already).
fn remove_kv(path: &std::path::Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot remove a KV file: {e}");
            false
        }
    }
}

/// One generation a route asks for.
pub struct Job {
    pub request: GenerateRequest,
    pub adapter: Option<Resolved>,
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

    /// Runs `job` on `model`; text pieces go to `stream` as they come. If this future is
    /// dropped, the generation is cancelled.
    pub async fn run(
        &self,
        model: &Arc<ServedModel>,
        mut job: Job,
        stream: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Generation, ApiError> {
        let cancel = CancelToken::new();
        job.request.cancel = Some(cancel.clone());
        let _cancel = CancelOnDrop(cancel);
        if let Some(tx) = stream {
            // A closed channel (the client left) cancels the request.
            job.request.on_text = Some(TextSink::new(move |piece| {
                tx.send(piece.to_string()).is_ok()
            }));
        }
        let adapter_name = job
            .adapter
            .as_ref()
            .map_or("base".to_string(), |a| a.id.clone());
        let limit = model
            .scheduler
            .lanes()
            .saturating_add(self.limits.max_queue);
        let deadline = job.request.deadline;
        let reply = model
            .scheduler
            .submit(job.request, job.adapter, limit)
            .map_err(|refused| match refused {
                Refused::Full(ahead) => ApiError::queue_full(ahead, 1),
                Refused::Stopped(why) => ApiError::unavailable(why),
            })?;
        let _running = Gauge::new(&self.metrics.running);
        // The session ends a request at its deadline; should the session itself hang, the
        // answer still comes, a moment later. (The request then leaves the `running` gauge
        // while the session may still hold it, until it sees the cancellation.)
        let reply = match deadline {
            Some(d) => {
                let at = tokio::time::Instant::from_std(d) + DEADLINE_GRACE;
                tokio::time::timeout_at(at, reply)
                    .await
                    .map_err(|_| ApiError::deadline(self.deadline_seconds()))?
            }
            None => reply.await,
        };
        let g = reply.map_err(|_| ApiError::internal("the model's scheduler stopped"))??;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kv_folder_drops_the_least_recently_saved_files_past_its_budget() {
        let d = tempfile::tempdir().unwrap();
        let at = |name: &str, age_s: u64| {
            let p = d.path().join(name);
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let t = std::time::SystemTime::now() - Duration::from_secs(age_s);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            p
        };
        let (oldest, old, new) = (at("a.kv", 30), at("b.kv", 20), at("c.kv", 10));
        let other = at("notes.txt", 40);
        // The file about to be used stays even when it is the oldest.
        prune_kv(d.path(), 150, &oldest);
        assert!(oldest.exists() && !old.exists() && !new.exists(), "kept: a");
        assert!(other.exists(), "only *.kv files are the cache's");
        let (b, c) = (at("b.kv", 20), at("c.kv", 10));
        prune_kv(d.path(), 250, &c);
        assert!(!oldest.exists() && b.exists() && c.exists());
        // What a killed writer left goes; a writer's own (recent) stays.
        let (stale, fresh) = (at(".d.kv.x1.tmp", 7200), at(".e.kv.x2.tmp", 5));
        prune_kv(d.path(), 250, &c);
        assert!(!stale.exists() && fresh.exists() && b.exists());
    }
}
