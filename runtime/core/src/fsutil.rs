//! Crash-safe file writes.
//!
//! Every file the runtime writes goes through [`write_atomic`] (or [`AtomicFile`] for streamed
//! output): the bytes go to a temporary file in the same folder, are fsynced, renamed over the
//! destination, and the folder is fsynced. A crash leaves either the old file or the new one,
//! never a torn one.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Opens `path` for reading if it is a regular file. A FIFO, a device or a folder is refused
/// before it is opened (opening a FIFO for reading blocks until a writer comes). Errors do
/// not name the path: callers do, as they do for `File::open`.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    File::open(path)
}

/// The error for a path that is there but is not a regular file, saying what it is.
pub fn not_regular(t: &std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file: it is {}", kind(t)),
    )
}

/// What a file type is, in words: `a folder`, `a named pipe (FIFO)`, `a socket`, `a character
/// device`, `a block device`, `a regular file`.
fn kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Reads the regular file `path` if it holds at most `max` bytes (errors as [`open_regular`]).
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A temporary file (uniquely named, created exclusively, in the destination's folder) that
/// replaces its destination on [`AtomicFile::commit`] and is removed if dropped or if the commit
/// fails.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Starts writing a replacement for `dest` (its folder must exist).
    pub fn create(dest: &Path) -> io::Result<Self> {
        let dir = parent_dir(dest);
        let name = dest
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a file path", dest.display()),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // Results are ordinary files (0644 less the umask), not tempfile's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let tmp = builder
            .tempfile_in(dir)
            .map_err(|e| with_path(e, &dir.join(format!(".{name}.*.tmp"))))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes, fsyncs, renames over the destination and fsyncs the folder. On error the
    /// temporary file is removed and the destination is untouched.
    pub fn commit(mut self) -> io::Result<()> {
        self.tmp.flush().map_err(|e| with_path(e, &self.dest))?;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| with_path(e, &self.dest))?;
        self.tmp
            .persist(&self.dest)
            .map_err(|e| with_path(e.error, &self.dest))?;
        sync_dir(parent_dir(&self.dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Fsyncs a folder so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| with_path(e, dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Adds the path to an I/O error's message.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_fifo_or_a_folder_is_refused_without_blocking_and_a_large_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_regular(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(open_regular(dir.path()).is_err());
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; 100]).unwrap();
        assert_eq!(read_regular(&big, 100).unwrap().len(), 100);
        let e = read_regular(&big, 99).unwrap_err();
        assert!(e.to_string().contains("larger than 99 bytes"), "{e}");
    }

    #[cfg(target_os = "linux")]
    extern "C" {
        #[link_name = "mkfifo"]
        fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_readable_by_others_not_private_temp_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"{}").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        // 0644 less whatever the umask removes; never 0600.
        assert_eq!(mode & 0o600, 0o600);
        assert_ne!(mode, 0o600, "mode {mode:o}");
    }

    #[test]
    fn an_uncommitted_write_leaves_the_old_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        fs::write(&p, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half of the new").unwrap();
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn two_writers_of_the_same_file_get_separate_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        let mut a = AtomicFile::create(&p).unwrap();
        let mut b = AtomicFile::create(&p).unwrap();
        assert_ne!(a.temp_path(), b.temp_path());
        a.write_all(b"first").unwrap();
        b.write_all(b"second").unwrap();
        a.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        b.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writing_into_a_missing_folder_names_the_path() {
        let e = write_atomic(Path::new("/nonexistent-dir-xyz/f"), b"x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir-xyz"), "{e}");
    }
}
