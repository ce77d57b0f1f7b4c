//! The runners' JSON files: atomic writes (through [`retroformer_core::fsutil`]), reads that tell a
//! missing file from a broken one, and the `run.json` check that keeps one run's settings per
//! folder (so that re-running resumes and other settings are refused). A claimed folder is
//! locked for the rest of the process (two processes on one folder would do the work twice and
//! overwrite each other), and holds only regular files and folders: a symbolic link inside it
//! could send the run's writes, or a "solved" result, from outside.

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

/// Read JSON; `None` when the file does not exist, an error when it exists but does not parse,
/// is a symbolic link or is not a regular file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FileError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(file_err(path, SYMLINK)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
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

/// The settings that differ, `key: SAVED there, NOW here`; the whole saved object when they
/// do not serialize as JSON objects.
fn differences<T: Serialize + std::fmt::Debug>(saved: &T, cfg: &T) -> String {
    let (Ok(there), Ok(now)) = (serde_json::to_value(saved), serde_json::to_value(cfg)) else {
        return format!("{saved:?}");
    };
    let diff = setting_differences(&there, &now, "here");
    if diff.is_empty() {
        format!("{saved:?}")
    } else {
        diff.join("; ")
    }
}

/// Why run folder `out`, holding a run saved with `saved`, refuses `cfg`: the settings that
/// differ.
pub fn other_settings<T: Serialize + std::fmt::Debug>(out: &Path, saved: &T, cfg: &T) -> String {
    format!(
        "{} holds a run with other settings ({}); use another --out folder or the same settings",
        out.display(),
        differences(saved, cfg)
    )
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
    lock_run_folder(out)?;
    check_run_tree(out)?;
    let run_json = out.join("run.json");
    Ok(match read_json::<T>(&run_json)? {
        Some(saved) if !same(&saved, cfg) => Err(other_settings(out, &saved, cfg)),
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

const SYMLINK: &str = "a symbolic link inside a run folder: a run's folder holds only its own \
    files and folders (remove the link, or use another --out folder)";

/// The file in a run folder whose lock the running process holds.
pub const LOCK_FILE: &str = "run.lock";

/// Locks `out` for the rest of the process, or says that another process holds it. Taking it
/// again in the same process is a no-op (a run resumes its own sub-runs). The lock is the
/// operating system's (`flock`), so a killed process leaves no stale lock behind.
pub fn lock_run_folder(out: &Path) -> Result<(), FileError> {
    static HELD: std::sync::Mutex<Vec<(PathBuf, std::fs::File)>> =
        std::sync::Mutex::new(Vec::new());
    let key = std::fs::canonicalize(out).map_err(|e| file_err(out, e))?;
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if held.iter().any(|(p, _)| *p == key) {
        return Ok(());
    }
    let path = key.join(LOCK_FILE);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        return Err(file_err(&path, SYMLINK));
    }
    // Opened, never written: the lock file carries no data.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| file_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(file_err(
                out,
                "another process is running in this folder (it holds run.lock); wait for it \
                 to end, or use another --out folder",
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(file_err(&path, e)),
    }
    held.push((key, file));
    Ok(())
}

/// Refuses a run folder that holds a symbolic link, a FIFO, a socket or a device anywhere
/// inside it, naming the first one found.
pub fn check_run_tree(out: &Path) -> Result<(), FileError> {
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| file_err(&dir, e))? {
            let entry = entry.map_err(|e| file_err(&dir, e))?;
            let path = entry.path();
            let t = entry.file_type().map_err(|e| file_err(&path, e))?;
            if t.is_symlink() {
                return Err(file_err(&path, SYMLINK));
            } else if t.is_dir() {
                stack.push(path);
            } else if !t.is_file() {
                let e = retroformer_core::fsutil::not_regular(&t);
                return Err(file_err(&path, format!("{e}, inside a run folder")));
            }
        }
    }
    Ok(())
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
        // Of an object, only the settings that differ are named.
        let out = dir.path().join("object");
        let cfg = |t: f64| serde_json::json!({"turns": 1, "temperature": t});
        assert_eq!(claim_run_folder(&out, &cfg(0.7)).unwrap(), Ok(Claim::New));
        let other = claim_run_folder(&out, &cfg(0.0)).unwrap().unwrap_err();
        assert!(
            other.contains("(temperature: 0.7 there, 0.0 here)"),
            "{other}"
        );
    }

    #[test]
    fn a_symbolic_link_inside_a_run_folder_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        assert_eq!(claim_run_folder(&out, &1u32).unwrap(), Ok(Claim::New));
        std::os::unix::fs::symlink(outside.path(), out.join("trial-00")).unwrap();
        let e = claim_run_folder(&out, &1u32).unwrap_err().to_string();
        assert!(e.contains("trial-00") && e.contains("symbolic link"), "{e}");
        std::fs::remove_file(out.join("trial-00")).unwrap();
        std::fs::create_dir(out.join("trial-00")).unwrap();
        let file = outside.path().join("t0.json");
        std::fs::write(&file, "{}").unwrap();
        std::os::unix::fs::symlink(&file, out.join("trial-00/t0.json")).unwrap();
        let e = claim_run_folder(&out, &1u32).unwrap_err().to_string();
        assert!(e.contains("t0.json") && e.contains("symbolic link"), "{e}");
        let e = read_json::<serde_json::Value>(&out.join("trial-00/t0.json")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_fifo_inside_a_run_folder_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        std::fs::create_dir(&out).unwrap();
        let fifo = std::ffi::CString::new(out.join("x.json").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = claim_run_folder(&out, &1u32).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("named pipe"), "{e}");
    }

    #[test]
    fn a_folder_locked_by_another_process_is_refused_and_the_same_process_may_claim_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        assert_eq!(claim_run_folder(&out, &1u32).unwrap(), Ok(Claim::New));
        assert_eq!(claim_run_folder(&out, &1u32).unwrap(), Ok(Claim::Resumed));
        // Another open file description stands for another process: flock locks belong to
        // the description, so this one conflicts with the one held above.
        let other = std::fs::File::open(out.join(LOCK_FILE)).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        let free = dir.path().join("free");
        std::fs::create_dir(&free).unwrap();
        let held = std::fs::File::create(free.join(LOCK_FILE)).unwrap();
        held.lock().unwrap();
        let e = claim_run_folder(&free, &1u32).unwrap_err().to_string();
        assert!(e.contains("another process") && e.contains("free"), "{e}");
        drop(held);
        assert_eq!(claim_run_folder(&free, &1u32).unwrap(), Ok(Claim::New));
    }
}
