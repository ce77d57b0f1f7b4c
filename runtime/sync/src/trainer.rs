//! The trainer side: stores the fleet's record segments once each, trains when enough new
//! ones arrived, publishes the adapter, and promotes or rolls it back from the canaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::names::{self, HEADER_DEVICE};
use crate::release::{CanaryOutcome, Release, ReleaseStatus, FORMAT_VERSION};
use crate::{sha256_hex, SyncError};

mod room;

/// What the trainer needs.
pub struct TrainerConfig {
    /// Where segments and the trainer's state live.
    pub dir: PathBuf,
    /// The base model the fleet runs.
    pub base_sha256: String,
    /// Train when at least this many new records (lines) arrived since the last training.
    pub min_new_records: usize,
    /// Promote a candidate fleet-wide once this many devices activated it ...
    pub promote_after: usize,
    /// ... and roll it back once this many did not (worse, or refused).
    pub rollback_after: usize,
    /// How long a delivered segment may stay unacknowledged before the server re-delivers it
    /// (a trainer that crashed between storing and acknowledging).
    pub ack_wait: Duration,
    /// The most bytes `records/` and `quarantine/` may hold (`None`: no bound). At or past
    /// it the trainer takes no more segments: they wait in the stream (which has no limits of
    /// its own: the server's JetStream storage holds them) until the operator frees space or
    /// raises this (or [`WhenFull::DropTrained`]). A batch taken just under it may pass it by
    /// one batch (64 MiB). Each training reads every stored record and writes one copy of
    /// them: this bounds that too.
    pub max_stored_bytes: Option<u64>,
    /// What a store at `max_stored_bytes` does.
    pub when_full: WhenFull,
}

/// What a trainer whose store reached [`TrainerConfig::max_stored_bytes`] does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Takes no segment: they wait in the stream until the operator frees space. Nothing is
    /// lost, but no new record reaches a training until then.
    #[default]
    Wait,
    /// Removes the segments already trained on, and the set-aside ones (else a device sending
    /// bad records could fill the store for good), the longest stored first, until the store
    /// is under its bound, then takes more: every training then learns from the newest
    /// records only (a window over the fleet's experience). A segment not yet trained on is
    /// never removed, and nothing is when the untrained ones alone fill the store. A removed
    /// trained segment sent again is still known and not stored twice; a removed set-aside
    /// one is checked again.
    DropTrained,
}

/// An adapter trained on the stored records.
pub struct Trained {
    pub path: PathBuf,
    /// The sha256 of its training data, as the adapter records it.
    pub data_sha256: String,
}

/// What one [`FleetTrainer::consume`] took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// Segments delivered (re-deliveries and re-sends included).
    pub received: usize,
    /// Segments stored for the first time.
    pub stored: usize,
    /// Segments with a line the trainer cannot read, set aside (`quarantine/`) instead.
    pub quarantined: usize,
    /// The store was full ([`TrainerConfig::max_stored_bytes`]): nothing was taken.
    pub full: bool,
    /// Trained segments removed to make room ([`WhenFull::DropTrained`]).
    pub dropped: usize,
    /// Set-aside segments removed to make room ([`WhenFull::DropTrained`]).
    pub dropped_set_aside: usize,
}

/// Checks one line of a record segment as the training will read it (the trainer's
/// `data::check_line`): a segment with a bad line is set aside, so that one bad record does not
/// fail every training after it.
pub type LineCheck = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Trains an adapter on record files (the `improve` / loop training phase).
pub type Train<'a> = dyn FnMut(&[PathBuf]) -> Result<Trained, TrainFailure> + Send + 'a;

/// A line that passed the [`LineCheck`] but that the training cannot use, which only the
/// model can tell (a role its chat template refuses, a token id past its vocabulary): the
/// `file`-th record file given to the [`Train`], its 1-based `line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub file: usize,
    pub line: usize,
    pub reason: String,
}

/// Why a [`Train`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainFailure {
    /// Lines the training cannot use (all it found in one pass): the fleet sets their
    /// segments aside and trains on the rest.
    #[error("{}", first_of(.0))]
    BadLines(Vec<BadLine>),
    /// Anything else: the same data would fail the same way.
    #[error("{0}")]
    Failed(String),
}

fn first_of(lines: &[BadLine]) -> String {
    match lines.first() {
        Some(b) => format!(
            "{} lines the training cannot use, the first line {} of record file {}: {}",
            lines.len(),
            b.line,
            b.file,
            b.reason
        ),
        None => "no line named".into(),
    }
}

impl From<String> for TrainFailure {
    fn from(s: String) -> Self {
        Self::Failed(s)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    format_version: u32,
    /// Segments already trained on.
    trained: Vec<String>,
    /// Canary outcomes of the current release, by device.
    canaries: BTreeMap<String, CanaryOutcome>,
}

impl State {
    /// The segments trained on, to look up (the list grows with every segment ever trained on).
    fn trained_set(&self) -> std::collections::HashSet<&str> {
        self.trained.iter().map(String::as_str).collect()
    }
}

/// The fleet's trainer.
pub struct FleetTrainer {
    cfg: TrainerConfig,
    js: jetstream::Context,
    records: consumer::Consumer<consumer::pull::Config>,
    canaries: consumer::Consumer<consumer::pull::Config>,
    check: Option<LineCheck>,
}

impl FleetTrainer {
    /// Creates (or opens) the streams, consumers and buckets.
    pub async fn new(client: async_nats::Client, cfg: TrainerConfig) -> Result<Self, SyncError> {
        let records_dir = cfg.dir.join("records");
        std::fs::create_dir_all(&records_dir).map_err(|e| SyncError::io(&records_dir, e))?;
        let js = jetstream::new(client);
        let records = durable(
            &js,
            names::RECORDS_STREAM,
            &names::records_subject("*"),
            names::RECORDS_CONSUMER,
            cfg.ack_wait,
        )
        .await?;
        let canaries = durable(
            &js,
            names::CANARY_STREAM,
            &names::canary_subject("*"),
            names::CANARY_CONSUMER,
            cfg.ack_wait,
        )
        .await?;
        releases_bucket(&js).await?;
        js.create_object_store(jetstream::object_store::Config {
            bucket: names::ADAPTERS_BUCKET.into(),
            ..Default::default()
        })
        .await
        .map_err(|e| SyncError::Nats(format!("object store {}: {e}", names::ADAPTERS_BUCKET)))?;
        Ok(Self {
            cfg,
            js,
            records,
            canaries,
            check: None,
        })
    }

    /// Sets aside every segment with a line `check` refuses (see [`LineCheck`]).
    pub fn with_line_check(mut self, check: LineCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// Where a segment with a bad line is kept, for its sender to see.
    pub fn quarantine_path(&self, sha256: &str) -> PathBuf {
        self.cfg
            .dir
            .join("quarantine")
            .join(format!("{sha256}.jsonl"))
    }

    /// The first line of `payload` that the line check refuses: its number and why.
    fn bad_line(&self, payload: &[u8]) -> Option<(usize, String)> {
        let check = self.check.as_ref()?;
        let Ok(text) = std::str::from_utf8(payload) else {
            return Some((0, "not UTF-8".into()));
        };
        text.lines()
            .enumerate()
            .find_map(|(i, l)| check(l).err().map(|why| (i + 1, why)))
    }

    fn state_path(&self) -> PathBuf {
        self.cfg.dir.join("state.json")
    }

    fn state(&self) -> Result<State, SyncError> {
        Ok(crate::state::load(&self.state_path())?.unwrap_or(State {
            format_version: crate::state::FORMAT_VERSION,
            ..State::default()
        }))
    }

    fn save(&self, s: &State) -> Result<(), SyncError> {
        crate::state::save(&self.state_path(), s)
    }

    /// Where a segment is stored.
    pub fn segment_path(&self, sha256: &str) -> PathBuf {
        self.cfg.dir.join("records").join(format!("{sha256}.jsonl"))
    }

    /// The bytes of the stored and the set-aside segments.
    pub fn stored_bytes(&self) -> Result<u64, SyncError> {
        let mut total = 0;
        for d in [
            self.cfg.dir.join("records"),
            self.cfg.dir.join("quarantine"),
        ] {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SyncError::io(&d, e)),
            };
            // A file removed between the listing and its size counts nothing; a link counts
            // what it points to, which the training reads.
            total += entries
                .filter_map(|e| std::fs::metadata(e.ok()?.path()).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum::<u64>();
        }
        Ok(total)
    }

    /// The stored segments, in name order.
    pub fn stored(&self) -> Result<Vec<PathBuf>, SyncError> {
        let d = self.cfg.dir.join("records");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|e| SyncError::io(&d, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Takes up to `max` delivered segments, waiting up to `wait`: each is stored under its
    /// sha256 (once: a re-delivered or re-sent one finds its file) and acknowledged only then.
    /// A segment whose id is not its sha256 is dropped as corrupt. With `ack` false the
    /// segments are stored but never acknowledged (a trainer that crashes in between; tests).
    /// Not concurrently with [`Self::maybe_train`]: with [`WhenFull::DropTrained`] it may
    /// remove a segment that training is reading (the fleet command calls them in turn).
    pub async fn consume(
        &self,
        max: usize,
        wait: Duration,
        ack: bool,
    ) -> Result<Consumed, SyncError> {
        let mut made_room = Consumed::default();
        if let Some(cap) = self.cfg.max_stored_bytes {
            let mut used = self.stored_bytes()?;
            if used >= cap && self.cfg.when_full == WhenFull::DropTrained {
                (used, made_room) = self.make_room(used, cap)?;
            }
            if used >= cap {
                // The caller says so (`Consumed::full`), once a round.
                tracing::debug!(used, cap, "the store is full: segments wait in the stream");
                return Ok(Consumed {
                    full: true,
                    ..made_room
                });
            }
        }
        // A segment trained on is known by name even once its file is dropped.
        let state = self.state()?;
        let trained = state.trained_set();
        let mut batch = self
            .records
            .batch()
            .max_messages(max)
            .max_bytes(BATCH_BYTES)
            .expires(wait)
            .messages()
            .await
            .map_err(SyncError::nats)?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            messages.push(m.map_err(SyncError::nats)?);
        }
        let mut new = BTreeMap::new();
        let (mut stored, mut quarantined) = (0, 0);
        for m in &messages {
            let Some(sha) = verified(m) else { continue };
            // A re-delivered segment is found by name before its lines are read again.
            let (kept, set_aside) = (self.segment_path(&sha), self.quarantine_path(&sha));
            let seen = |p: &PathBuf| p.exists() || new.contains_key(p);
            if trained.contains(sha.as_str()) || seen(&kept) || seen(&set_aside) {
                continue;
            }
            let bad = self.bad_line(&m.payload);
            let p = if bad.is_none() { kept } else { set_aside };
            match bad {
                None => stored += 1,
                Some((line, why)) => {
                    let device = m.headers.as_ref().and_then(|h| h.get(HEADER_DEVICE));
                    tracing::warn!(?device, segment = %sha, line, %why,
                        "set aside a segment the training cannot read");
                    quarantined += 1;
                }
            }
            new.insert(p, m.payload.clone());
        }
        let got = Consumed {
            received: messages.len(),
            stored,
            quarantined,
            ..made_room
        };
        if quarantined > 0 {
            let q = self.cfg.dir.join("quarantine");
            std::fs::create_dir_all(&q).map_err(|e| SyncError::io(&q, e))?;
        }
        store_all(new).await?;
        // A plain ack: one lost in transit re-delivers the segment after ack_wait, and its
        // file, named by its content, is found stored.
        if ack {
            for m in messages {
                m.ack().await.map_err(SyncError::nats)?;
            }
        }
        Ok(got)
    }

    /// Sets aside each segment of `files` that `bad` names a line of (the first named), so
    /// that every call removes at least one segment or fails: the caller's loop ends. When
    /// every segment has one, none is set aside and the training fails: a fault common to all
    /// is more likely the model's or the trainer's than the data's, and the records are kept
    /// for the next try. A failure to move one is a [`SyncError::Train`], as a failed
    /// training is.
    fn set_aside_all(&self, files: &[PathBuf], bad: &[BadLine]) -> Result<(), SyncError> {
        let first = bad.first().ok_or_else(|| {
            SyncError::Train("the training named bad lines but none of them".into())
        })?;
        if let Some(b) = bad.iter().find(|b| b.file >= files.len()) {
            return Err(SyncError::Train(format!(
                "line {} of a record file {} not given: {}",
                b.line, b.file, b.reason
            )));
        }
        // Each named file with the first of its bad lines: what is logged when it is set aside.
        let mut by_file = std::collections::BTreeMap::new();
        for b in bad {
            by_file.entry(b.file).or_insert(b);
        }
        if by_file.len() == files.len() {
            return Err(SyncError::Train(format!(
                "every record file has a line the training cannot use, so none is set aside \
                 (the first: line {} of {}: {})",
                first.line,
                files[first.file].display(),
                first.reason
            )));
        }
        for (file, b) in by_file {
            self.set_aside(&files[file], b.line, &b.reason)
                .map_err(|e| SyncError::Train(format!("setting a segment aside: {e}")))?;
        }
        Ok(())
    }

    /// Moves a stored segment to `quarantine/` (a re-delivery of it is then found there and
    /// dropped), logging which line of it the training could not use and why.
    fn set_aside(&self, segment: &Path, line: usize, why: &str) -> Result<(), SyncError> {
        let sha = segment
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let to = self.quarantine_path(sha);
        let q = self.cfg.dir.join("quarantine");
        std::fs::create_dir_all(&q).map_err(|e| SyncError::io(&q, e))?;
        std::fs::rename(segment, &to).map_err(|e| SyncError::io(segment, e))?;
        tracing::warn!(segment = %sha, line, %why,
            "set aside a segment the training cannot read (only the model could tell)");
        Ok(())
    }

    /// Records (lines) stored but not yet trained on, and their segments.
    pub fn untrained(&self) -> Result<(usize, Vec<PathBuf>), SyncError> {
        let state = self.state()?;
        let trained = state.trained_set();
        let mut lines = 0;
        let mut files = Vec::new();
        for p in self.stored()? {
            let sha = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if trained.contains(sha.as_str()) {
                continue;
            }
            let text = std::fs::read(&p).map_err(|e| SyncError::io(&p, e))?;
            lines += text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            files.push(p);
        }
        Ok((lines, files))
    }

    /// Trains when enough new records arrived, then publishes the adapter as a candidate. The
    /// segments the training finds bad lines in ([`TrainFailure::BadLines`]) are set aside and
    /// the rest trained on, while enough new records are left.
    pub async fn maybe_train(&self, train: &mut Train<'_>) -> Result<Option<Release>, SyncError> {
        let (trained, files) = loop {
            let (lines, files) = self.untrained()?;
            if lines < self.cfg.min_new_records || files.is_empty() {
                return Ok(None);
            }
            let all = self.stored()?;
            match crate::blocking(|| train(&all)) {
                Ok(t) => break (t, files),
                Err(TrainFailure::BadLines(bad)) => self.set_aside_all(&all, &bad)?,
                Err(TrainFailure::Failed(why)) => return Err(SyncError::Train(why)),
            }
        };
        let release = self.publish(&trained.path, &trained.data_sha256).await?;
        let mut state = self.state()?;
        state.trained.extend(
            files
                .iter()
                .filter_map(|p| p.file_stem()?.to_str().map(String::from)),
        );
        state.canaries.clear();
        self.save(&state)?;
        Ok(Some(release))
    }

    async fn current(&self) -> Result<(jetstream::kv::Store, Option<Release>), SyncError> {
        let kv = self
            .js
            .get_key_value(names::RELEASES_BUCKET)
            .await
            .map_err(SyncError::nats)?;
        let cur = kv
            .get(names::release_key(&self.cfg.base_sha256))
            .await
            .map_err(SyncError::nats)?
            .map(|b| Release::parse(&b))
            .transpose()
            .map_err(SyncError::Nats)?;
        Ok((kv, cur))
    }

    /// Puts `adapter` in the object store and offers it as the next candidate.
    pub async fn publish(&self, adapter: &Path, data_sha256: &str) -> Result<Release, SyncError> {
        let bytes = std::fs::read(adapter).map_err(|e| SyncError::io(adapter, e))?;
        let sha = sha256_hex(&bytes);
        let object = format!("{sha}.gguf");
        let os = self
            .js
            .get_object_store(names::ADAPTERS_BUCKET)
            .await
            .map_err(SyncError::nats)?;
        os.put(object.as_str(), &mut bytes.as_slice())
            .await
            .map_err(SyncError::nats)?;
        let (kv, cur) = self.current().await?;
        let version = match cur {
            None => 1,
            Some(c) => c.version.checked_add(1).ok_or_else(|| SyncError::Release {
                version: c.version,
                reason: "the release version cannot go higher".into(),
            })?,
        };
        let release = Release {
            format_version: FORMAT_VERSION,
            version,
            status: ReleaseStatus::Candidate,
            base_sha256: self.cfg.base_sha256.clone(),
            sha256: sha,
            data_sha256: data_sha256.to_string(),
            size: bytes.len() as u64,
            object,
        };
        self.put(&kv, &release).await?;
        Ok(release)
    }

    async fn put(&self, kv: &jetstream::kv::Store, r: &Release) -> Result<(), SyncError> {
        let body = serde_json::to_vec(r).expect("serialises");
        kv.put(names::release_key(&self.cfg.base_sha256), body.into())
            .await
            .map_err(SyncError::nats)?;
        Ok(())
    }

    /// Reads the canary reports that arrived (up to `wait`) and, for the current candidate,
    /// promotes it once `promote_after` devices activated it or rolls it back once
    /// `rollback_after` did not. Returns the release when its status changed.
    pub async fn judge(&self, wait: Duration) -> Result<Option<Release>, SyncError> {
        let mut batch = self
            .canaries
            .batch()
            .max_messages(1000)
            .max_bytes(BATCH_BYTES)
            .expires(wait)
            .messages()
            .await
            .map_err(SyncError::nats)?;
        let mut state = self.state()?;
        let (kv, cur) = self.current().await?;
        let mut read = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(SyncError::nats)?;
            match CanaryOutcome::parse(&m.payload) {
                Ok(o)
                    if cur
                        .as_ref()
                        .is_some_and(|c| c.version == o.version && c.sha256 == o.sha256) =>
                {
                    // A report comes from the device whose subject it used.
                    if m.subject.as_str() == names::canary_subject(&o.device) {
                        state.canaries.insert(o.device.clone(), o);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(subject = %m.subject, "not a canary report: {e}"),
            }
            read.push(m);
        }
        // Stored once, before any is acknowledged: a crash in between gets them again.
        if !read.is_empty() {
            self.save(&state)?;
        }
        for m in read {
            m.double_ack().await.map_err(SyncError::nats)?;
        }
        let Some(mut r) = cur.filter(|c| c.status == ReleaseStatus::Candidate) else {
            return Ok(None);
        };
        // Only this release's votes count: a publish not followed by a cleared state (a crash
        // in between, or `publish` called alone) leaves the last release's.
        let votes: Vec<&CanaryOutcome> = state
            .canaries
            .values()
            .filter(|o| o.version == r.version && o.sha256 == r.sha256)
            .collect();
        let passed = votes.iter().filter(|o| o.promoted).count();
        let failed = votes.len() - passed;
        r.status = if passed >= self.cfg.promote_after {
            ReleaseStatus::Promoted
        } else if failed >= self.cfg.rollback_after {
            ReleaseStatus::RolledBack
        } else {
            return Ok(None);
        };
        self.put(&kv, &r).await?;
        Ok(Some(r))
    }
}

/// A segment's sha256 when its id (`Nats-Msg-Id`) is that; else `None`, logged as corrupt.
fn verified(m: &jetstream::Message) -> Option<String> {
    let header = |name: &str| {
        m.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    let id = header(async_nats::header::NATS_MESSAGE_ID.as_ref());
    let sha = sha256_hex(&m.payload);
    if id.as_deref() == Some(sha.as_str()) {
        return Some(sha);
    }
    let device = header(HEADER_DEVICE);
    tracing::warn!(?device, ?id, %sha, "dropped a segment whose id is not its sha256");
    None
}

/// A batch held in memory at most (segments are up to 512 KiB each).
const BATCH_BYTES: usize = 64 << 20;

/// Files written at once when storing a batch: each write waits for its fsync, which the
/// file system commits together (on ext4 here, 1.3 ms a file one at a time, 0.4 ms 32 at once).
const STORE_WRITERS: usize = 32;

/// Writes each file atomically (fsynced), up to [`STORE_WRITERS`] at once, off the async
/// threads.
async fn store_all(files: BTreeMap<PathBuf, bytes::Bytes>) -> Result<(), SyncError> {
    if files.is_empty() {
        return Ok(());
    }
    let files: Vec<(PathBuf, bytes::Bytes)> = files.into_iter().collect();
    tokio::task::spawn_blocking(move || {
        let per = files.len().div_ceil(STORE_WRITERS);
        std::thread::scope(|scope| {
            let writers: Vec<_> = files
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        for (p, bytes) in chunk {
                            retroformer_core::fsutil::write_atomic(p, bytes)
                                .map_err(|e| SyncError::io(p, e))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            writers
                .into_iter()
                .try_for_each(|w| w.join().expect("a store writer panicked"))
        })
    })
    .await
    .map_err(|e| SyncError::Io {
        path: "the trainer's records".into(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// The releases bucket, made as the key-value layout defines it (a stream `KV_<bucket>` on
/// `$KV.<bucket>.>`, a few values per key, rollups, direct gets): async-nats's own
/// `create_key_value` first reads the account's info, which it cannot parse from a 2.9 server
/// (Debian 12's).
async fn releases_bucket(js: &jetstream::Context) -> Result<(), SyncError> {
    let bucket = names::RELEASES_BUCKET;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 8,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| SyncError::Nats(format!("bucket {bucket}: {e}")))?;
    Ok(())
}

/// A work-queue stream on `subjects` with a durable pull consumer `name`. No byte or message
/// limit: with `discard: new` a full work queue acknowledged segments it did not keep
/// (nats-server #4771; seen here on 2.9.10: a device's outbox emptied, 7 of 40 records
/// stored), and `discard: old` drops records silently.
async fn durable(
    js: &jetstream::Context,
    stream_name: &str,
    subjects: &str,
    name: &str,
    ack_wait: Duration,
) -> Result<consumer::Consumer<consumer::pull::Config>, SyncError> {
    let s = js
        .get_or_create_stream(stream::Config {
            name: stream_name.into(),
            subjects: vec![subjects.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: names::DUPLICATE_WINDOW,
            max_message_size: (names::MAX_SEGMENT_BYTES + 4096) as i32,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| SyncError::Nats(format!("stream {stream_name}: {e}")))?;
    s.get_or_create_consumer(
        name,
        consumer::pull::Config {
            durable_name: Some(name.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| SyncError::Nats(format!("consumer {name} of {stream_name}: {e}")))
}
