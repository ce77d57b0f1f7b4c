//! A file held open from its checks to its load. The validator, the load probe's child and
//! llama.cpp each open a file by path; given the user's path, a file renamed over it between
//! the checks and the load would be loaded unchecked. Given `/proc/<pid>/fd/<n>` instead, each
//! of them opens the very file this process opened, whatever happens to the path meanwhile
//! (the probe's child can open it too: it runs as the same user). Elsewhere than on Linux the
//! path itself is used.

use std::fs::File;
use std::path::{Path, PathBuf};

/// An open regular file and the path it was given by.
#[derive(Debug)]
pub(crate) struct Pinned {
    file: File,
    shown: PathBuf,
}

impl Pinned {
    /// Opens `path` if it is a regular file (an error names it, as the validator's do).
    pub(crate) fn open(path: &Path) -> Result<Self, retroformer_gguf::GgufError> {
        let file = retroformer_core::fsutil::open_regular(path).map_err(|error| {
            retroformer_gguf::GgufError::Io {
                path: path.to_path_buf(),
                error,
            }
        })?;
        Ok(Self {
            file,
            shown: path.to_path_buf(),
        })
    }

    /// The path every reader opens: this open file's, in this process and in its children.
    pub(crate) fn read_path(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                self.file.as_raw_fd()
            ))
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.shown.clone()
        }
    }

    /// The path as the user gave it (for messages).
    pub(crate) fn shown(&self) -> &Path {
        &self.shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_pinned_file_reads_the_same_bytes_after_another_file_is_renamed_over_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"checked").unwrap();
        let pinned = Pinned::open(&p).unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"swapped").unwrap();
        std::fs::rename(&other, &p).unwrap();
        assert_eq!(std::fs::read(pinned.read_path()).unwrap(), b"checked");
        assert_eq!(std::fs::read(&p).unwrap(), b"swapped");
        assert_eq!(pinned.shown(), p);
    }
}
