//! The runners' JSON files: atomic writes (through [`retroformer_core::fsutil`]), reads that tell a
//! missing file from a broken one, and the `run.json` check that keeps one run's settings per
//! folder (so that re-running resumes and other settings are refused).

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use retroformer_core::fsutil::write_atomic;

/// A result file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// A [`FileError`] for `path`.
pub fn file_err(path: &Path, e: impl std::fmt::Display) -> FileError {
    FileError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Write `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), FileError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| file_err(path, e))?;
    write_atomic(path, &bytes).map_err(|e| file_err(path, e))
}

/// Read JSON; `None` when the file does not exist, an error when it exists but does not parse.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FileError> {
    match retroformer_core::fsutil::read_regular(path, 1 << 30) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| file_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, e)),
    }
}

/// Write one JSON object a line, atomically.
pub fn write_jsonl<'a, T: Serialize + 'a>(
    path: &Path,
    items: impl IntoIterator<Item = &'a T>,
) -> Result<(), FileError> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item).map_err(|e| file_err(path, e))?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(|e| file_err(path, e))
}

/// The result stored at `path`, or, when there is none yet, `make()`'s, written there
/// atomically before it is returned: a finished piece of work is never redone on resume.
pub fn load_or_make<T, E>(path: &Path, make: impl FnOnce() -> Result<T, E>) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
    E: From<FileError>,
{
    if let Some(done) = read_json(path)? {
        return Ok(done);
    }
    let made = make()?;
    write_json(path, &made)?;
    Ok(made)
}

/// Whether a run folder was new or held the same run already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// `run.json` was written now.
    New,
    /// `run.json` holds the same settings: the run resumes.
    Resumed,
}

/// Create `out` and its `run.json` with `cfg`, or check that the saved settings equal `cfg`.
/// `Err(Ok(saved))`-style mismatches are reported as a message naming the folder.
pub fn claim_run_folder<T>(out: &Path, cfg: &T) -> Result<Result<Claim, String>, FileError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    claim_run_folder_by(out, cfg, |saved, cfg| saved == cfg)
}

/// The settings that differ between a saved object and the current one, each as
/// `key: SAVED there, NOW <here>` (`here` names the current side: "here", "now"), in the
/// current object's key order. Keys the saved object lacks show as `null` there.
pub fn setting_differences(
    there: &serde_json::Value,
    now: &serde_json::Value,
    here: &str,
) -> Vec<String> {
    now.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| there.get(k.as_str()) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {} there, {v} {here}",
                there.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect()
}

/// As [`claim_run_folder`], but the saved settings need only be `same` as `cfg` (equal but
/// for settings a resumed run may change, such as the number of trials); when they are not
/// equal, `run.json` is rewritten with `cfg`.
pub fn claim_run_folder_by<T>(
    out: &Path,
    cfg: &T,
    same: impl Fn(&T, &T) -> bool,
) -> Result<Result<Claim, String>, FileError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let run_json = out.join("run.json");
    Ok(match read_json::<T>(&run_json)? {
        Some(saved) if !same(&saved, cfg) => Err(format!(
            "{} holds a run with other settings ({saved:?}); use another --out folder or the same settings",
            out.display()
        )),
        Some(saved) => {
            if &saved != cfg {
                write_json(&run_json, cfg)?;
            }
            Ok(Claim::Resumed)
        }
        None => {
            write_json(&run_json, cfg)?;
            Ok(Claim::New)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_reads_as_none_and_a_broken_one_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert!(read_json::<u32>(&p).unwrap().is_none());
        std::fs::write(&p, "{").unwrap();
        let e = read_json::<u32>(&p).unwrap_err().to_string();
        assert!(e.contains("x.json"), "{e}");
    }

    #[test]
    fn load_or_make_makes_once_and_then_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let a: Result<u32, FileError> = load_or_make(&p, || Ok(7));
        assert_eq!(a.unwrap(), 7);
        let b: Result<u32, FileError> = load_or_make(&p, || panic!("must not run again"));
        assert_eq!(b.unwrap(), 7);
    }

    #[test]
    fn a_run_folder_keeps_one_runs_settings() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        assert_eq!(claim_run_folder(&out, &1u32).unwrap(), Ok(Claim::New));
        assert_eq!(claim_run_folder(&out, &1u32).unwrap(), Ok(Claim::Resumed));
        let other = claim_run_folder(&out, &2u32).unwrap().unwrap_err();
        assert!(other.contains("other settings"), "{other}");
    }
}
