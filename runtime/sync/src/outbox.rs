//! A device's outbox on disk: record files cut into segments (see [`crate::segment`]), each
//! written as `pending/<sha256>.jsonl` before anything is sent and removed only when the
//! server has acknowledged it. A file is taken once per content (its sha256 is remembered in
//! `state.json`), so rescanning a folder adds only what is new. Every write is atomic; a
//! crash between writing segments and the state re-adds the same segments under the same
//! names, which is harmless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{names::MAX_SEGMENT_BYTES, segment, sha256_hex, SyncError};

use crate::state::FORMAT_VERSION;

/// The largest record file taken (read whole, then cut into segments).
pub const MAX_RECORD_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    format_version: u32,
    /// Each file taken, by path, with the sha256 of its contents when taken.
    sources: BTreeMap<String, String>,
    /// Each pending segment's source file, by the segment's sha256.
    segments: BTreeMap<String, String>,
}

/// A segment waiting for the server's acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub sha256: String,
    /// The record file it came from.
    pub source: String,
    pub path: PathBuf,
}

/// The outbox in one folder.
pub struct Outbox {
    dir: PathBuf,
    max_segment: usize,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SyncError> {
        let pending = dir.join("pending");
        std::fs::create_dir_all(&pending).map_err(|e| SyncError::io(&pending, e))?;
        let outbox = Self {
            dir: dir.to_path_buf(),
            max_segment: MAX_SEGMENT_BYTES,
        };
        outbox.state()?;
        Ok(outbox)
    }

    /// Segments of at most `bytes` (tests; the default fits NATS's payload limit).
    pub fn with_max_segment(mut self, bytes: usize) -> Self {
        self.max_segment = bytes;
        self
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The state, its segment names checked: they become file paths and message headers.
    fn state(&self) -> Result<State, SyncError> {
        let path = self.state_path();
        let state = crate::state::load(&path)?.unwrap_or(State {
            format_version: FORMAT_VERSION,
            ..State::default()
        });
        if let Some(bad) = state.segments.keys().find(|k| !crate::is_sha256_hex(k)) {
            return Err(SyncError::Record {
                path: path.display().to_string(),
                line: 0,
                reason: format!("segment name {bad:?} is not a sha256 (64 hex digits)"),
            });
        }
        Ok(state)
    }

    fn save(&self, s: &State) -> Result<(), SyncError> {
        crate::state::save(&self.state_path(), s)
    }

    fn segment_path(&self, sha: &str) -> PathBuf {
        self.dir.join("pending").join(format!("{sha}.jsonl"))
    }

    /// Takes `file` unless its current contents were taken before; returns the new segments.
    pub fn add_file(&self, file: &Path) -> Result<usize, SyncError> {
        let size = std::fs::metadata(file)
            .map_err(|e| SyncError::io(file, e))?
            .len();
        // The file is read whole and cut in memory.
        if size > MAX_RECORD_FILE_BYTES {
            return Err(SyncError::Record {
                path: file.display().to_string(),
                line: 0,
                reason: format!(
                    "{size} bytes; a record file is taken up to {MAX_RECORD_FILE_BYTES} bytes \
                     (start a new file)"
                ),
            });
        }
        let bytes = std::fs::read(file).map_err(|e| SyncError::io(file, e))?;
        let key = file.display().to_string();
        let sha = sha256_hex(&bytes);
        let mut state = self.state()?;
        if state.sources.get(&key) == Some(&sha) {
            return Ok(0);
        }
        let segments = segment::cut(&key, &bytes, self.max_segment)?;
        for seg in &segments {
            let s = sha256_hex(seg);
            let p = self.segment_path(&s);
            retroformer_core::fsutil::write_atomic(&p, seg).map_err(|e| SyncError::io(&p, e))?;
            state.segments.insert(s, key.clone());
        }
        state.sources.insert(key, sha);
        self.save(&state)?;
        Ok(segments.len())
    }

    /// Takes every `*.jsonl` file directly in `dirs` (in name order) that is new or changed;
    /// a folder or file that cannot be read or cut is skipped with a warning (and retried next
    /// scan), so that one bad file does not hold back the others' segments. Returns the new
    /// segments.
    pub fn scan(&self, dirs: &[PathBuf]) -> Result<usize, SyncError> {
        let mut n = 0;
        for d in dirs {
            let entries = match std::fs::read_dir(d) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!("outbox: skipped {}", SyncError::io(d, e));
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p.is_file())
                .collect();
            files.sort();
            for f in files {
                match self.add_file(&f) {
                    Ok(k) => n += k,
                    Err(e @ (SyncError::Record { .. } | SyncError::Io { .. })) => {
                        tracing::warn!("outbox: skipped {e}")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }

    /// The segments not yet acknowledged, oldest file first.
    pub fn pending(&self) -> Result<Vec<Pending>, SyncError> {
        let state = self.state()?;
        Ok(state
            .segments
            .into_iter()
            .map(|(sha256, source)| Pending {
                path: self.segment_path(&sha256),
                sha256,
                source,
            })
            .collect())
    }

    /// The server acknowledged these: they leave the outbox (one state write for all).
    pub fn sent_all(&self, sha256s: &[String]) -> Result<(), SyncError> {
        if sha256s.is_empty() {
            return Ok(());
        }
        let mut state = self.state()?;
        for sha in sha256s {
            state.segments.remove(sha);
        }
        self.save(&state)?;
        for sha in sha256s {
            let p = self.segment_path(sha);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SyncError::io(&p, e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_taken_once_per_content_and_leaves_when_acknowledged() {
        let d = tempfile::tempdir().unwrap();
        let runs = d.path().join("runs");
        std::fs::create_dir(&runs).unwrap();
        let f = runs.join("a.jsonl");
        std::fs::write(&f, "{\"i\":1}\n{\"i\":2}\n").unwrap();
        std::fs::write(runs.join("notes.txt"), "not records").unwrap();
        let o = Outbox::open(&d.path().join("outbox")).unwrap();
        assert_eq!(o.scan(std::slice::from_ref(&runs)).unwrap(), 1);
        assert_eq!(o.scan(std::slice::from_ref(&runs)).unwrap(), 0, "unchanged");
        std::fs::write(&f, "{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n").unwrap();
        assert_eq!(o.scan(std::slice::from_ref(&runs)).unwrap(), 1, "changed");
        // A restart: the same folder, the same pending segments.
        let o = Outbox::open(&d.path().join("outbox")).unwrap();
        let p = o.pending().unwrap();
        assert_eq!(p.len(), 2);
        let body = std::fs::read(&p[0].path).unwrap();
        assert_eq!(sha256_hex(&body), p[0].sha256);
        o.sent_all(&[p[0].sha256.clone()]).unwrap();
        assert_eq!(o.pending().unwrap(), p[1..].to_vec());
        assert!(!p[0].path.exists());
    }

    #[test]
    fn a_bad_file_is_skipped_and_the_rest_taken() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.jsonl"), "{}\nnot json\n").unwrap();
        std::fs::write(d.path().join("b.jsonl"), "{\"ok\":true}\n").unwrap();
        let o = Outbox::open(&d.path().join("outbox")).unwrap();
        assert_eq!(o.scan(&[d.path().to_path_buf()]).unwrap(), 1);
    }

    #[test]
    fn a_missing_folder_or_an_oversized_file_is_skipped_and_the_rest_taken() {
        let d = tempfile::tempdir().unwrap();
        let runs = d.path().join("runs");
        std::fs::create_dir(&runs).unwrap();
        std::fs::write(runs.join("a.jsonl"), "{\"ok\":true}\n").unwrap();
        // Sparse: it takes no disk.
        let big = std::fs::File::create(runs.join("big.jsonl")).unwrap();
        big.set_len(MAX_RECORD_FILE_BYTES + 1).unwrap();
        let o = Outbox::open(&d.path().join("outbox")).unwrap();
        let dirs = [d.path().join("gone"), runs];
        assert_eq!(o.scan(&dirs).unwrap(), 1);
        assert_eq!(
            o.pending().unwrap()[0].source,
            dirs[1].join("a.jsonl").display().to_string()
        );
    }

    #[test]
    fn a_state_whose_segment_name_is_not_a_sha256_is_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("outbox");
        let o = Outbox::open(&dir).unwrap();
        let state = r#"{"format_version":1,"sources":{},"segments":{"../../x":"a.jsonl"}}"#;
        std::fs::write(dir.join("state.json"), state).unwrap();
        let e = o.pending().unwrap_err().to_string();
        assert!(e.contains("state.json") && e.contains("../../x"), "{e}");
    }
}
