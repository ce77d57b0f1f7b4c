//! The device side: uploads its outbox, and follows its base model's release.

use std::path::{Path, PathBuf};

use async_nats::jetstream;
use retroformer::adapters::{AdapterStore, CanaryReport};
use retroformer_gguf::{BasePolicy, GgufFile};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::names::{self, HEADER_DEVICE, HEADER_SOURCE};
use crate::outbox::Pending;
use crate::release::{CanaryOutcome, Release, ReleaseStatus, FORMAT_VERSION};
use crate::{Outbox, SyncError};

/// How long a download may receive nothing before it is given up (and retried next check).
pub const DOWNLOAD_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A download's scratch file in the outbox: `download-<sha256's first 16>.gguf`.
const DOWNLOAD_PREFIX: &str = "download-";

/// The lock file a device holds in its outbox.
const LOCK_FILE: &str = "device.lock";

/// Takes the outbox for this process: two processes on one outbox (a cron `sync --once` beside
/// the daemon) would publish the same segments, write the same download file and remove each
/// other's. The lock is the operating system's (`flock`): a killed process leaves none behind.
fn lock_outbox(outbox: &Path) -> Result<std::fs::File, SyncError> {
    let path = outbox.join(LOCK_FILE);
    // Opened, never written: the lock file carries no data.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SyncError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SyncError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another process is this device (it holds this lock); stop it, or give this \
                 one another outbox",
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(SyncError::io(&path, e)),
    }
}

/// Removes the scratch files of downloads a crash interrupted (a finished or failed download
/// removes its own): the device holds its outbox's lock, so none is in use. Best effort: one
/// that cannot be removed is overwritten by the next download of the same release.
fn sweep_downloads(outbox: &Path) {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let digest = name
            .strip_prefix(DOWNLOAD_PREFIX)
            .and_then(|n| n.strip_suffix(".gguf"));
        let ours =
            digest.is_some_and(|d| d.len() == 16 && d.bytes().all(|b| b.is_ascii_hexdigit()));
        if ours && path.is_file() {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!("removed an interrupted download, {}", path.display()),
                Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
            }
        }
    }
}

/// Checks that an adapter file loads on the base (the CLI's load probe, in a child process).
pub type Proof = Box<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;
/// The canary's evaluation on local held-out tasks: a score, higher is better, for an adapter
/// file (`None`: the base alone).
pub type Eval = Box<dyn FnMut(Option<&Path>) -> Result<f64, String> + Send>;
/// The canary for an installed candidate (its store id): scores it against the active adapter
/// and activates it only if it is not worse (the adapter store's canary; the CLI runs `adapters
/// canary`'s evaluation on held-out tasks).
pub type Canary = Box<dyn FnMut(&AdapterStore, &str) -> Result<CanaryReport, String> + Send>;

/// The store's canary with `eval`, promoting at `margin`.
pub fn scored(margin: f64, mut eval: Eval) -> Canary {
    Box::new(move |store: &AdapterStore, id: &str| {
        store
            .canary(id, margin, &mut *eval)
            .map_err(|e| e.to_string())
    })
}

/// A publish's failure; a missing stream said in the fleet's terms.
fn publish_error(e: jetstream::context::PublishError) -> SyncError {
    if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
        return SyncError::Nats(format!(
            "the server has no {} stream yet: the trainer (retroformer-train fleet) creates it \
             when it first runs; the segments wait in the outbox",
            names::RECORDS_STREAM
        ));
    }
    SyncError::nats(e)
}

/// `text` as a header value: NATS headers cannot hold a line break, which a file name can.
fn header_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// Segments a device publishes before awaiting their acknowledgements (at most 512 KiB each).
pub const IN_FLIGHT: usize = 32;

/// One device.
pub struct DeviceConfig {
    /// Its id: one subject token ([`names::check_device_id`]).
    pub id: String,
    /// Where its outbox lives.
    pub outbox: PathBuf,
    /// Segments' size at most (default: [`names::MAX_SEGMENT_BYTES`]).
    pub max_segment: Option<usize>,
    /// Folders whose `*.jsonl` record files it uploads.
    pub watch: Vec<PathBuf>,
    /// The adapter store of its base model, the base's validated header and name.
    pub store: AdapterStore,
    pub base: GgufFile,
    pub base_name: String,
    pub proof: Proof,
}

/// The last release this device acted on (in the outbox folder, `device.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Followed {
    format_version: u32,
    version: u64,
    status: Option<ReleaseStatus>,
}

/// A device connected to the fleet.
pub struct Device {
    cfg: DeviceConfig,
    js: jetstream::Context,
    outbox: Outbox,
    /// Held while the device lives: one process a outbox ([`lock_outbox`]).
    _lock: std::fs::File,
}

impl Device {
    pub fn new(client: async_nats::Client, cfg: DeviceConfig) -> Result<Self, SyncError> {
        names::check_device_id(&cfg.id).map_err(SyncError::Nats)?;
        let mut outbox = Outbox::open(&cfg.outbox)?;
        let lock = lock_outbox(&cfg.outbox)?;
        sweep_downloads(&cfg.outbox);
        if let Some(max) = cfg.max_segment {
            outbox = outbox.with_max_segment(max);
        }
        Ok(Self {
            cfg,
            js: jetstream::new(client),
            outbox,
            _lock: lock,
        })
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Takes new record files into the outbox, then publishes every pending segment with its
    /// sha256 as `Nats-Msg-Id`, up to [`IN_FLIGHT`] awaiting their acknowledgements at once,
    /// and removes those the server acknowledged. Stops at the first failure (offline: the rest
    /// wait for the next call; one published but not yet recorded as sent is re-sent, which the
    /// server and the trainer drop). Returns the segments sent.
    pub async fn upload(&self) -> Result<usize, SyncError> {
        self.outbox.scan(&self.cfg.watch)?;
        let pending = self.outbox.pending()?;
        let mut sent = 0;
        for window in pending.chunks(IN_FLIGHT) {
            let (acked, failed) = self.publish_window(window).await;
            sent += acked.len();
            self.outbox.sent_all(&acked)?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(sent)
    }

    /// Publishes `window`, then awaits the acknowledgements in order: the segments
    /// acknowledged, and the first failure.
    async fn publish_window(&self, window: &[Pending]) -> (Vec<String>, Option<SyncError>) {
        let subject = names::records_subject(&self.cfg.id);
        let mut futures = Vec::new();
        let mut failed = None;
        for p in window {
            let body = match std::fs::read(&p.path) {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(SyncError::io(&p.path, e));
                    break;
                }
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, p.sha256.as_str());
            headers.insert(HEADER_DEVICE, self.cfg.id.as_str());
            headers.insert(HEADER_SOURCE, header_text(&p.source));
            match self
                .js
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
            {
                Ok(f) => futures.push((p.sha256.clone(), f)),
                Err(e) => {
                    failed = Some(SyncError::nats(e));
                    break;
                }
            }
        }
        let mut acked = Vec::new();
        for (sha, f) in futures {
            match f.await {
                Ok(ack) => {
                    if ack.duplicate {
                        tracing::debug!(segment = %sha, "the server already had this segment");
                    }
                    acked.push(sha);
                }
                Err(e) => {
                    failed.get_or_insert(publish_error(e));
                    break;
                }
            }
        }
        (acked, failed)
    }

    fn followed_path(&self) -> PathBuf {
        self.cfg.outbox.join("device.json")
    }

    fn followed(&self) -> Result<Followed, SyncError> {
        Ok(crate::state::load(&self.followed_path())?.unwrap_or_default())
    }

    fn follow(&self, r: &Release) -> Result<(), SyncError> {
        let f = Followed {
            format_version: crate::state::FORMAT_VERSION,
            version: r.version,
            status: Some(r.status),
        };
        crate::state::save(&self.followed_path(), &f)
    }

    /// The current release of this device's base, if any.
    pub async fn release(&self) -> Result<Option<Release>, SyncError> {
        let kv = match self.js.get_key_value(names::RELEASES_BUCKET).await {
            Ok(kv) => kv,
            Err(e) => {
                tracing::debug!("no releases bucket yet: {e}");
                return Ok(None);
            }
        };
        let key = names::release_key(self.cfg.store.base_sha256());
        let Some(bytes) = kv.get(key).await.map_err(SyncError::nats)? else {
            return Ok(None);
        };
        Release::parse(&bytes).map(Some).map_err(SyncError::Nats)
    }

    /// Acts on the current release if it is new to this device: a candidate is downloaded,
    /// verified, installed and put through the canary, and the outcome reported; a promoted
    /// release is activated; a rolled-back one is left if it is active. Returns the canary's
    /// outcome when one ran.
    pub async fn follow_release(
        &self,
        canary: &mut Canary,
    ) -> Result<Option<CanaryOutcome>, SyncError> {
        let Some(r) = self.release().await? else {
            return Ok(None);
        };
        let seen = self.followed()?;
        if seen.version > r.version || (seen.version == r.version && seen.status == Some(r.status))
        {
            return Ok(None);
        }
        let outcome = match r.status {
            ReleaseStatus::Candidate => Some(self.canary(&r, canary).await?),
            ReleaseStatus::Promoted => {
                self.promoted(&r).await?;
                None
            }
            ReleaseStatus::RolledBack => {
                self.rolled_back(&r)?;
                None
            }
        };
        if let Some(o) = &outcome {
            self.report(o).await?;
        }
        self.follow(&r)?;
        Ok(outcome)
    }

    /// Downloads the release's adapter (at most its recorded size, one byte past it to tell a
    /// longer object) into `file`, hashing it on the way, so that what it holds in memory is a
    /// chunk, not the adapter. Returns its sha256 and length. A failure here is the network's
    /// or the disk's, not the release's: it is retried at the next check, never reported as a
    /// refusal; a server that sends nothing for [`DOWNLOAD_STALL`] is such a failure.
    async fn download(&self, r: &Release, file: &Path) -> Result<(String, u64), SyncError> {
        use sha2::{Digest, Sha256};
        use tokio::io::AsyncWriteExt;
        let os = self
            .js
            .get_object_store(names::ADAPTERS_BUCKET)
            .await
            .map_err(|e| SyncError::Nats(format!("the adapters object store: {e}")))?;
        let object = os
            .get(&r.object)
            .await
            .map_err(|e| SyncError::Nats(format!("object {}: {e}", r.object)))?;
        let mut object = object.take(r.size.saturating_add(1));
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| SyncError::io(file, e))?;
        let (mut hash, mut len, mut chunk) = (Sha256::new(), 0u64, vec![0u8; 1 << 16]);
        loop {
            let read = tokio::time::timeout(DOWNLOAD_STALL, object.read(&mut chunk))
                .await
                .map_err(|_| {
                    SyncError::Nats(format!(
                        "object {}: nothing received for {} s",
                        r.object,
                        DOWNLOAD_STALL.as_secs()
                    ))
                })?
                .map_err(|e| SyncError::Nats(format!("reading object {}: {e}", r.object)))?;
            if read == 0 {
                break;
            }
            hash.update(&chunk[..read]);
            len += read as u64;
            out.write_all(&chunk[..read])
                .await
                .map_err(|e| SyncError::io(file, e))?;
        }
        out.flush().await.map_err(|e| SyncError::io(file, e))?;
        Ok((hex::encode(hash.finalize()), len))
    }

    /// Checks a downloaded adapter: its bytes' sha256 (`sha`, of `len` bytes), then (by the
    /// store's install) that it records this base; then that it records the release's data.
    /// Returns the installed id, or why the release is refused.
    fn install(&self, r: &Release, file: &Path, sha: &str, len: u64) -> Result<String, String> {
        // A longer object was cut one byte past the recorded size: its digest differs too.
        if sha != r.sha256 {
            return Err(format!(
                "the downloaded adapter's sha256 is {sha} ({len} bytes), the release says {} ({} bytes)",
                r.sha256,
                r.size
            ));
        }
        let installed = crate::blocking(|| {
            self.cfg.store.install(
                file,
                &self.cfg.base,
                &self.cfg.base_name,
                BasePolicy::Recorded,
                &*self.cfg.proof,
            )
        });
        let m = installed.map_err(|e| e.to_string())?;
        if m.data_sha256 != r.data_sha256 {
            return Err(format!(
                "the adapter records training data {}, the release says {}",
                m.data_sha256, r.data_sha256
            ));
        }
        Ok(m.id)
    }

    /// The release's adapter installed (its id), `Ok(Err(why))` when the release is refused
    /// (another base, other bytes, an adapter the store refuses), `Err` when it could not be
    /// downloaded.
    async fn fetch_and_install(&self, r: &Release) -> Result<Result<String, String>, SyncError> {
        if r.base_sha256 != self.cfg.store.base_sha256() {
            return Ok(Err(format!(
                "the release is for base {}, not this device's",
                r.base_sha256
            )));
        }
        let file = self
            .cfg
            .outbox
            .join(format!("{DOWNLOAD_PREFIX}{}.gguf", &r.sha256[..16]));
        let downloaded = self.download(r, &file).await;
        let installed = downloaded.map(|(sha, len)| self.install(r, &file, &sha, len));
        let _ = std::fs::remove_file(&file);
        installed
    }

    async fn canary(&self, r: &Release, canary: &mut Canary) -> Result<CanaryOutcome, SyncError> {
        let mut outcome = CanaryOutcome {
            format_version: FORMAT_VERSION,
            device: self.cfg.id.clone(),
            version: r.version,
            sha256: r.sha256.clone(),
            installed: false,
            promoted: false,
            candidate_score: None,
            incumbent_score: None,
            reason: None,
        };
        let id = match self.fetch_and_install(r).await? {
            Ok(id) => id,
            Err(why) => {
                tracing::warn!(version = r.version, "refused release: {why}");
                outcome.reason = Some(why);
                return Ok(outcome);
            }
        };
        outcome.installed = true;
        let report = crate::blocking(|| canary(&self.cfg.store, &id));
        match report {
            Ok(c) => {
                outcome.promoted = c.promoted;
                outcome.candidate_score = Some(c.candidate_score);
                outcome.incumbent_score = Some(c.incumbent_score);
            }
            Err(e) => outcome.reason = Some(e),
        }
        Ok(outcome)
    }

    async fn promoted(&self, r: &Release) -> Result<(), SyncError> {
        if self.active_sha()?.as_deref() == Some(r.sha256.as_str()) {
            return Ok(());
        }
        let installed = self
            .cfg
            .store
            .list()?
            .into_iter()
            .find(|m| m.sha256 == r.sha256);
        let id = match installed {
            Some(m) => m.id,
            None => match self.fetch_and_install(r).await? {
                Ok(id) => id,
                // Refused here (its bytes, base or data are not what the release says): the
                // same object would be downloaded and refused again at every check, so the
                // device follows the release and keeps what it has.
                Err(reason) => {
                    self.follow(r)?;
                    return Err(SyncError::Release {
                        version: r.version,
                        reason,
                    });
                }
            },
        };
        self.cfg.store.activate(&id)?;
        Ok(())
    }

    fn rolled_back(&self, r: &Release) -> Result<(), SyncError> {
        if self.active_sha()?.as_deref() == Some(r.sha256.as_str()) {
            match self.cfg.store.rollback() {
                Ok(_) => {}
                Err(_) => self.cfg.store.deactivate()?,
            }
        }
        Ok(())
    }

    fn active_sha(&self) -> Result<Option<String>, SyncError> {
        Ok(self.cfg.store.active()?.map(|m| m.sha256))
    }

    async fn report(&self, o: &CanaryOutcome) -> Result<(), SyncError> {
        let body = serde_json::to_vec(o).expect("serialises");
        let mut headers = async_nats::HeaderMap::new();
        // The sha256 is a release's, checked as 64 hex digits when it was read.
        let id = format!(
            "{}-{}-{}",
            o.device,
            o.version,
            o.sha256.get(..16).unwrap_or("?")
        );
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        self.js
            .publish_with_headers(names::canary_subject(&self.cfg.id), headers, body.into())
            .await
            .map_err(SyncError::nats)?
            .await
            .map_err(SyncError::nats)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_with_line_breaks_becomes_a_header_value_nats_accepts() {
        let v = header_text("runs/a\r\nb\\n.jsonl");
        assert_eq!(v, "runs/a\\r\\nb\\\\n.jsonl");
        assert!(v.parse::<async_nats::HeaderValue>().is_ok());
    }

    #[test]
    fn an_interrupted_download_is_swept_and_the_outbox_files_beside_it_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let outbox = d.path();
        let stale = outbox.join("download-0123456789abcdef.gguf");
        std::fs::write(&stale, b"half an adapter").unwrap();
        std::fs::write(outbox.join("device.json"), b"{}").unwrap();
        std::fs::write(outbox.join("download-notes.txt"), b"not ours").unwrap();
        std::fs::write(outbox.join("download-mine.gguf"), b"not ours").unwrap();
        std::fs::create_dir(outbox.join("download-00000000000000aa.gguf")).unwrap();
        sweep_downloads(outbox);
        assert!(!stale.exists());
        assert!(outbox.join("device.json").exists());
        assert!(outbox.join("download-notes.txt").exists());
        assert!(outbox.join("download-mine.gguf").exists());
        assert!(outbox.join("download-00000000000000aa.gguf").is_dir());
        sweep_downloads(&outbox.join("missing"));
    }

    #[test]
    fn a_second_process_on_a_devices_outbox_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_outbox(d.path()).unwrap();
        // Another open file description stands for another process: flock locks belong to
        // descriptions, not processes.
        let e = lock_outbox(d.path()).unwrap_err().to_string();
        assert!(
            e.contains(LOCK_FILE) && e.contains("another process"),
            "{e}"
        );
        drop(first);
        assert!(lock_outbox(d.path()).is_ok());
    }
}
