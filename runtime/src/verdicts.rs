//! Verdicts kept between processes under `$RETROFORMER_HOME/probed/`: a file's load probe
//! passed ([`crate::probe`]), a cached model's sha256 matched its manifest
//! ([`crate::fetch::verified`]). Each is keyed by the identity of the files it is about (path,
//! device, inode, size, modification and change times), so a file changed in place has a new
//! identity, even with its size and modification time put back (the change time cannot be:
//! the kernel sets it). A verdict is believed only where no one else can have written it: the
//! folder and the file ours, neither writable by group or others.

use std::path::{Path, PathBuf};

/// The folder of kept verdicts under `home`.
pub(crate) fn folder(home: &Path) -> PathBuf {
    home.join("probed")
}

/// The identity of a file as bytes: its canonical path, device, inode, size, modification and
/// change times; `None` when it cannot be looked at.
pub(crate) fn identity(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let canonical = std::fs::canonicalize(path).ok()?;
    let mut id = canonical.as_os_str().as_encoded_bytes().to_vec();
    for n in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        id.extend_from_slice(&n.to_le_bytes());
    }
    Some(id)
}

/// The bytes of the kept verdict `p`, if there is one that no one else can have written.
pub(crate) fn read_trusted(p: &Path) -> Option<Vec<u8>> {
    if !p.parent().is_some_and(only_ours) || !only_ours(p) {
        if p.exists() {
            tracing::warn!(path = %p.display(), "a kept verdict is not trusted: it or its folder belongs to another user or others can write it; checking again");
        }
        return None;
    }
    retroformer_core::fsutil::read_regular(p, 4096).ok()
}

/// Keeps a verdict at `p` (its folder made private first). A verdict that cannot be kept only
/// costs a check next time, so a failure is logged, not returned.
pub(crate) fn keep(p: &Path, bytes: &[u8]) {
    let kept = p
        .parent()
        .map_or(Ok(()), private_dir)
        .and_then(|()| retroformer_core::fsutil::write_atomic(p, bytes));
    if let Err(e) = kept {
        tracing::warn!(path = %p.display(), error = %e, "could not keep a verdict");
    }
}

/// Makes `dir` (and its parents) if missing, `dir` itself readable and writable by its owner
/// alone.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

/// Whether `path` belongs to this process's user and neither its group nor others may write it
/// (so no one else can have put a verdict there).
fn only_ours(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == me && m.mode() & 0o022 == 0)
}
