//! The on-device adapter store: versioned LoRA adapters of one base model, with atomic
//! activation, rollback and a canary.
//!
//! Layout of a store (one per base model, under `$RETROFORMER_HOME/adapters/<base sha256[..16]>`):
//!
//! ```text
//! state.json                 {"format_version": 1, "active": ID or null, "history": [ID, ...]}
//! versions/ID/adapter.gguf   the adapter, byte for byte as installed
//! versions/ID/manifest.json  its manifest (sha256, base sha256, objective, data hash, metrics)
//! ```
//!
//! `ID` is the first 16 hex digits of the adapter's sha256, so installing the same file twice is
//! a no-op. Every write is atomic: a version folder is built under a temporary name and renamed
//! into place, and `state.json` is replaced with [`retroformer_core::fsutil::write_atomic`], so a kill at any
//! moment leaves the previously active adapter active and the store readable. Leftover
//! temporary folders are ignored (and removed by the next install).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use retroformer_core::records::{keys, AdapterProvenance};
use retroformer_gguf::{AdapterError, GgufFile};

/// Version of `state.json` and `manifest.json`.
pub const STORE_FORMAT_VERSION: u32 = 1;

/// The largest adapter the store takes (it is read whole, to install exactly what was checked).
pub const MAX_ADAPTER_BYTES: u64 = 4 << 30;

/// Errors of the adapter store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The adapter failed validation against the base model.
    #[error(transparent)]
    Invalid(#[from] AdapterError),
    /// The load probe refused the adapter on the base: llama.cpp could not load it, or ended
    /// the probe process trying.
    #[error("{path}: refused: {reason}")]
    Refused {
        /// The adapter file.
        path: PathBuf,
        /// What the probe said.
        reason: String,
    },
    /// An installed adapter's bytes no longer have the sha256 its manifest records.
    #[error("{path}: the installed adapter {id} was changed after installation (sha256 {found}, installed {expected}); reinstall it")]
    Tampered {
        /// The adapter's id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// The sha256 recorded at installation.
        expected: String,
        /// The file's sha256 now.
        found: String,
    },
    /// No installed adapter has this id.
    #[error("no adapter '{id}' in the store (installed: {known})")]
    UnknownId {
        /// The id asked for.
        id: String,
        /// The ids installed.
        known: String,
    },
    /// The canary's evaluation failed (nothing was activated).
    #[error("canary evaluation failed: {0}")]
    Eval(String),
    /// Rollback with no earlier adapter.
    #[error("nothing to roll back to: no adapter was active before the current one")]
    NothingToRollBack,
    /// The base model could not be read.
    #[error("base model: {0}")]
    Base(String),
    /// A store file is unreadable or of another format version.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Crash injection for tests: when `RETROFORMER_FAILPOINT` names this point, the process aborts
/// here (no destructors, no cleanup), as a kill -9 at this moment would leave it.
fn failpoint(name: &str) {
    if std::env::var("RETROFORMER_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// A version folder being written, removed if dropped before it is renamed into place: an
/// install that fails half-way (a full disk, a refused probe) leaves nothing behind. (A process
/// killed meanwhile leaves it; the next install removes such leftovers.)
struct Staging(Option<PathBuf>);

impl Staging {
    fn create(path: PathBuf) -> Result<Self, StoreError> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(|e| io(&path, e))?;
        Ok(Self(Some(path)))
    }

    fn rename_to(mut self, dest: &Path) -> Result<(), StoreError> {
        let from = self.0.as_deref().expect("staging until renamed");
        std::fs::rename(from, dest).map_err(|e| io(dest, e))?;
        self.0 = None;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Held while a change is made; unlocks when dropped (the descriptor closes).
struct StoreLock(#[allow(dead_code)] std::fs::File);

/// Ids are 16 lowercase hex digits; anything else (a path, `..`) is refused before it is joined
/// to a path.
fn check_id(id: &str) -> Result<(), StoreError> {
    if id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(StoreError::UnknownId {
            id: id.to_string(),
            known: "ids are 16 lowercase hex digits; see `retroformer adapters list`".into(),
        })
    }
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the store knows of one installed adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterManifest {
    /// [`STORE_FORMAT_VERSION`].
    pub format_version: u32,
    /// First 16 hex digits of `sha256`.
    pub id: String,
    /// sha256 of the adapter file.
    pub sha256: String,
    /// sha256 of the base model this store belongs to.
    pub base_sha256: String,
    /// `retroformer.objective` of the adapter (empty when absent).
    pub objective: String,
    /// `retroformer.data_sha256` (empty when absent).
    pub data_sha256: String,
    /// `retroformer.step` (0 when absent).
    pub step: u64,
    /// LoRA rank (from the first `lora_a`).
    pub rank: u64,
    /// `adapter.lora.alpha`.
    pub alpha: f64,
    /// Where the adapter was installed from.
    pub source: String,
    /// Seconds since the Unix epoch at installation.
    pub installed_at: u64,
    /// Measurements attached later (the canary's scores, for one).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    format_version: u32,
    active: Option<String>,
    /// Earlier active ids, the most recent last.
    history: Vec<String>,
}

/// The result of a canary evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// The candidate.
    pub candidate: String,
    /// The adapter it was compared with (`None`: the base model alone).
    pub incumbent: Option<String>,
    /// The candidate's score.
    pub candidate_score: f64,
    /// The incumbent's score.
    pub incumbent_score: f64,
    /// How much worse the candidate may be and still be promoted.
    pub margin: f64,
    /// Whether the candidate is now active.
    pub promoted: bool,
}

/// A store of adapters for one base model.
#[derive(Debug, Clone)]
pub struct AdapterStore {
    root: PathBuf,
    base_sha256: String,
}

impl AdapterStore {
    /// The store of a resolved base model under `$RETROFORMER_HOME`, and its validated header:
    /// the sha256 comes from its manifest, or from hashing a file named by path.
    pub fn for_model(base: &crate::backend::Resolved) -> Result<(Self, GgufFile), StoreError> {
        let sha = match &base.manifest {
            Some(m) => m.sha256.clone(),
            None => crate::fetch::sha256_file(&base.path, &crate::fetch::Silent)
                .map_err(|e| StoreError::Base(e.to_string()))?,
        };
        let header = retroformer_gguf::validate_file(&base.path)
            .map_err(|e| StoreError::Base(e.to_string()))?;
        Ok((Self::for_base(&crate::manifest::home_dir(), &sha)?, header))
    }

    /// The store of the base model with sha256 `base_sha256` under `home`.
    pub fn for_base(home: &Path, base_sha256: &str) -> Result<Self, StoreError> {
        let short = &base_sha256[..base_sha256.len().min(16)];
        Self::open(&home.join("adapters").join(short), base_sha256)
    }

    /// The store at `root`. Nothing is created until a change is made, so that a store can be
    /// read (listed, its active adapter loaded) from a home this process cannot write.
    pub fn open(root: &Path, base_sha256: &str) -> Result<Self, StoreError> {
        Ok(Self {
            root: root.to_path_buf(),
            base_sha256: base_sha256.to_string(),
        })
    }

    /// The sha256 of the base model the store's adapters are for.
    pub fn base_sha256(&self) -> &str {
        &self.base_sha256
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn version_dir(&self, id: &str) -> PathBuf {
        self.root.join("versions").join(id)
    }

    /// The adapter file of `id` (not checked: see [`AdapterStore::verified_adapter`]).
    pub fn adapter_path(&self, id: &str) -> PathBuf {
        self.version_dir(id).join("adapter.gguf")
    }

    /// The adapter file of `id`, after checking that its bytes still have the sha256 recorded
    /// at installation (what was validated and probed is what is loaded).
    pub fn verified_adapter(&self, id: &str) -> Result<PathBuf, StoreError> {
        use sha2::{Digest, Sha256};
        let m = self.manifest(id)?;
        let p = self.adapter_path(id);
        let bytes =
            retroformer_core::fsutil::read_regular(&p, MAX_ADAPTER_BYTES).map_err(|e| io(&p, e))?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != m.sha256 {
            return Err(StoreError::Tampered {
                id: id.to_string(),
                path: p,
                expected: m.sha256,
                found,
            });
        }
        Ok(p)
    }

    fn read_state(&self) -> Result<State, StoreError> {
        let p = self.state_path();
        match std::fs::read(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                format_version: STORE_FORMAT_VERSION,
                ..State::default()
            }),
            Err(e) => Err(io(&p, e)),
            Ok(bytes) => {
                let s: State = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                if s.format_version != STORE_FORMAT_VERSION {
                    return Err(StoreError::Corrupt {
                        path: p,
                        reason: format!(
                            "format version {} (this build reads {STORE_FORMAT_VERSION})",
                            s.format_version
                        ),
                    });
                }
                Ok(s)
            }
        }
    }

    fn write_state(&self, s: &State) -> Result<(), StoreError> {
        let p = self.state_path();
        let bytes = serde_json::to_vec_pretty(s).expect("state serialises");
        retroformer_core::fsutil::write_atomic(&p, &bytes).map_err(|e| io(&p, e))
    }

    /// Validates `file` against the base model (`base`, the validated header of the file with
    /// sha256 `base_sha256` given at open; the adapter must record that base, or record none
    /// where `policy` allows it: the rule a model applies when it loads an adapter), has
    /// `proof` load the copy to be installed (the load probe: base and adapter in a child
    /// process), and installs it. Nothing is activated; a refused adapter leaves nothing behind.
    pub fn install(
        &self,
        file: &Path,
        base: &GgufFile,
        base_name: &str,
        policy: retroformer_gguf::BasePolicy,
        proof: &dyn Fn(&Path) -> Result<(), String>,
    ) -> Result<AdapterManifest, StoreError> {
        let _lock = self.lock()?;
        // Read once: what is validated is what is installed.
        let bytes = {
            use std::io::Read;
            let mut b = Vec::new();
            retroformer_core::fsutil::open_regular(file)
                .and_then(|f| f.take(MAX_ADAPTER_BYTES + 1).read_to_end(&mut b))
                .map_err(|e| io(file, e))?;
            if b.len() as u64 > MAX_ADAPTER_BYTES {
                return Err(io(
                    file,
                    std::io::Error::other(format!(
                        "larger than {} MiB, the most an adapter may be",
                        MAX_ADAPTER_BYTES >> 20
                    )),
                ));
            }
            b
        };
        let header = retroformer_gguf::validate_bytes(&bytes).map_err(|e| match e {
            retroformer_gguf::GgufError::Invalid { reason, .. } => {
                AdapterError::Gguf(retroformer_gguf::GgufError::Invalid {
                    path: file.to_path_buf(),
                    reason,
                })
            }
            other => AdapterError::Gguf(other),
        })?;
        retroformer_gguf::check_adapter(&header, file, base, base_name)?;
        retroformer_gguf::check_adapter_base(&header, file, &self.base_sha256, base_name, policy)?;
        let provenance = AdapterProvenance::read(
            |k| header.get_str(k).map(str::to_string),
            |k| header.get_u64(k),
        );
        let sha256 = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&bytes))
        };
        let id = sha256[..16].to_string();
        if let Ok(m) = self.manifest(&id) {
            return Ok(m);
        }
        let manifest = AdapterManifest {
            format_version: STORE_FORMAT_VERSION,
            id: id.clone(),
            sha256,
            base_sha256: self.base_sha256.clone(),
            objective: provenance.objective,
            data_sha256: provenance.data_sha256,
            step: provenance.step,
            rank: header
                .tensors
                .iter()
                .find(|t| t.name.ends_with(".lora_a"))
                .and_then(|t| t.dims.get(1).copied())
                .unwrap_or(0),
            alpha: header.get_f64(keys::ALPHA).unwrap_or(0.0),
            source: file.display().to_string(),
            installed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            metrics: BTreeMap::new(),
        };
        let versions = self.root.join("versions");
        self.remove_leftovers();
        let staging = Staging::create(versions.join(format!(".tmp-{id}-{}", std::process::id())))?;
        let tmp = staging.0.as_deref().expect("staging until renamed");
        let put = |name: &str, data: &[u8]| {
            let p = tmp.join(name);
            retroformer_core::fsutil::write_atomic(&p, data).map_err(|e| io(&p, e))
        };
        put("adapter.gguf", &bytes)?;
        if let Err(reason) = proof(&tmp.join("adapter.gguf")) {
            return Err(StoreError::Refused {
                path: file.to_path_buf(),
                reason,
            });
        }
        put(
            "manifest.json",
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        failpoint("install-before-rename");
        let dest = self.version_dir(&id);
        staging.rename_to(&dest)?;
        retroformer_core::fsutil::sync_dir(&versions).map_err(|e| io(&versions, e))?;
        failpoint("install-after-rename");
        tracing::info!(id = %id, source = %file.display(), "adapter installed");
        Ok(manifest)
    }

    fn remove_leftovers(&self) {
        let versions = self.root.join("versions");
        if let Ok(entries) = std::fs::read_dir(&versions) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// An exclusive lock on the store for the length of a change (install, activate,
    /// rollback, canary), so that two processes never interleave their writes.
    fn lock(&self) -> Result<StoreLock, StoreError> {
        let versions = self.root.join("versions");
        std::fs::create_dir_all(&versions).map_err(|e| io(&versions, e))?;
        let p = self.root.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| io(&p, e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; released when `f` is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(&p, std::io::Error::last_os_error()));
        }
        Ok(StoreLock(f))
    }

    /// The manifest of `id`.
    pub fn manifest(&self, id: &str) -> Result<AdapterManifest, StoreError> {
        check_id(id)?;
        let p = self.version_dir(id).join("manifest.json");
        let bytes = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::UnknownId {
                    id: id.to_string(),
                    known: self.ids().join(", "),
                }
            } else {
                io(&p, e)
            }
        })?;
        let m: AdapterManifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        if m.format_version != STORE_FORMAT_VERSION {
            return Err(StoreError::Corrupt {
                path: p,
                reason: format!("format version {}", m.format_version),
            });
        }
        Ok(m)
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.root.join("versions"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Every installed adapter, oldest installation first.
    pub fn list(&self) -> Result<Vec<AdapterManifest>, StoreError> {
        let mut all = self
            .ids()
            .iter()
            .map(|id| self.manifest(id))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| (a.installed_at, &a.id).cmp(&(b.installed_at, &b.id)));
        Ok(all)
    }

    /// The active adapter, if any.
    pub fn active(&self) -> Result<Option<AdapterManifest>, StoreError> {
        match self.read_state()?.active {
            Some(id) => Ok(Some(self.manifest(&id)?)),
            None => Ok(None),
        }
    }

    /// Makes `id` the active adapter (the previous one goes on the history).
    pub fn activate(&self, id: &str) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        self.activate_locked(id)
    }

    fn activate_locked(&self, id: &str) -> Result<(), StoreError> {
        self.manifest(id)?;
        let mut s = self.read_state()?;
        if s.active.as_deref() == Some(id) {
            return Ok(());
        }
        if let Some(prev) = s.active.take() {
            s.history.push(prev);
        }
        s.active = Some(id.to_string());
        s.format_version = STORE_FORMAT_VERSION;
        failpoint("activate-before-state");
        self.write_state(&s)
    }

    /// Goes back to the adapter that was active before the current one; returns it.
    pub fn rollback(&self) -> Result<String, StoreError> {
        let _lock = self.lock()?;
        let mut s = self.read_state()?;
        let prev = s.history.pop().ok_or(StoreError::NothingToRollBack)?;
        s.active = Some(prev.clone());
        s.format_version = STORE_FORMAT_VERSION;
        self.write_state(&s)?;
        Ok(prev)
    }

    /// Deactivates every adapter (the base model alone), keeping the current one on the history.
    pub fn deactivate(&self) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut s = self.read_state()?;
        if let Some(prev) = s.active.take() {
            s.history.push(prev);
        }
        s.format_version = STORE_FORMAT_VERSION;
        self.write_state(&s)
    }

    /// Records measurements in `id`'s manifest.
    pub fn record_metrics(&self, id: &str, metrics: &[(&str, f64)]) -> Result<(), StoreError> {
        let mut m = self.manifest(id)?;
        for (k, v) in metrics {
            m.metrics.insert((*k).to_string(), *v);
        }
        let p = self.version_dir(id).join("manifest.json");
        retroformer_core::fsutil::write_atomic(
            &p,
            &serde_json::to_vec_pretty(&m).expect("serialises"),
        )
        .map_err(|e| io(&p, e))
    }

    /// The canary: scores the active adapter (or the base alone) and `candidate` with `eval`
    /// (higher is better; `eval` gets the adapter file, `None` for the base alone), and
    /// activates the candidate only if its score is at least the incumbent's minus `margin`.
    /// Otherwise the incumbent stays active. Both scores go into the candidate's manifest.
    pub fn canary(
        &self,
        candidate: &str,
        margin: f64,
        eval: &mut dyn FnMut(Option<&Path>) -> Result<f64, String>,
    ) -> Result<CanaryReport, StoreError> {
        self.manifest(candidate)?;
        let incumbent = self.active()?.map(|m| m.id);
        let inc_path = incumbent
            .as_deref()
            .map(|id| self.verified_adapter(id))
            .transpose()?;
        let incumbent_score = eval(inc_path.as_deref()).map_err(StoreError::Eval)?;
        let cand_path = self.verified_adapter(candidate)?;
        let candidate_score = eval(Some(&cand_path)).map_err(StoreError::Eval)?;
        if !(candidate_score.is_finite() && incumbent_score.is_finite()) {
            return Err(StoreError::Eval(format!(
                "scores must be finite (candidate {candidate_score}, incumbent {incumbent_score})"
            )));
        }
        let promoted = candidate_score >= incumbent_score - margin;
        self.record_metrics(
            candidate,
            &[
                ("canary_score", candidate_score),
                ("canary_incumbent_score", incumbent_score),
                ("canary_promoted", f64::from(u8::from(promoted))),
            ],
        )?;
        if promoted {
            let _lock = self.lock()?;
            self.activate_locked(candidate)?;
        }
        tracing::info!(
            candidate,
            candidate_score,
            incumbent_score,
            promoted,
            "canary"
        );
        Ok(CanaryReport {
            candidate: candidate.to_string(),
            incumbent,
            candidate_score,
            incumbent_score,
            margin,
            promoted,
        })
    }
}

#[cfg(test)]
mod tests;
