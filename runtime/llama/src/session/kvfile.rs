//! A sequence's KV cells in a file ([`KvFile`]): saved when a request ends, restored when a
//! later one (possibly in another process) starts.
//!
//! Layout, little-endian: the magic `RFKVSEQ\0`, the format version (u32), the KV cache's ggml
//! type (u32), the context size per sequence (u32), the tag (u32 length, UTF-8), the tokens
//! (u32 count, i32 each), the sha256 of the data (32 bytes), the data (u64 length, then
//! llama.cpp's `llama_state_seq_get_data` bytes). The header is read first: the data is read
//! only when its tokens would give a request more than the cache it already has. llama.cpp
//! sees only data whose hash matches what this module wrote; the file is ours, so a valid hash
//! rules out corruption on disk, not a file crafted to match.
//!
//! Only the copy of the cells runs on the decode loop; hashing and writing run on the
//! session's [`KvWriter`] thread, so that the other lanes do not wait for the disk. A file is
//! thus complete shortly after its request is answered (a crash in between leaves the
//! previous, still valid, file).

use std::io::Read;
use std::sync::mpsc;
use std::thread::JoinHandle;

use llama_cpp_sys_2 as sys;
use retroformer_llm::{KvFile, Token};
use sha2::{Digest, Sha256};

use super::{common_prefix, Worker};

const MAGIC: &[u8; 8] = b"RFKVSEQ\0";
const FORMAT_VERSION: u32 = 1;
/// Longest tag read back (a tag is a few hashes).
const MAX_TAG: u32 = 4096;

/// What the cells were computed under, besides the caller's tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Shape {
    pub kv_type: u32,
    pub n_ctx: u32,
}

/// The file's contents for `tokens` and the sequence's `data`.
pub(super) fn encode(kv: &KvFile, shape: Shape, tokens: &[Token], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + kv.tag.len() + tokens.len() * 4 + data.len());
    out.extend_from_slice(MAGIC);
    for v in [FORMAT_VERSION, shape.kv_type, shape.n_ctx] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(kv.tag.len() as u32).to_le_bytes());
    out.extend_from_slice(kv.tag.as_bytes());
    out.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out.extend_from_slice(&Sha256::digest(data));
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// One file to write.
pub(super) struct Save {
    kv: KvFile,
    shape: Shape,
    tokens: Vec<Token>,
    data: Vec<u8>,
}

impl Save {
    fn write(self) {
        let t0 = std::time::Instant::now();
        let bytes = encode(&self.kv, self.shape, &self.tokens, &self.data);
        let path = &self.kv.path;
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| retroformer_core::fsutil::write_atomic(path, &bytes));
        match written {
            Ok(()) => tracing::debug!(
                path = %path.display(),
                tokens = self.tokens.len(),
                bytes = bytes.len(),
                ms = t0.elapsed().as_secs_f64() * 1e3,
                "saved the KV cache"
            ),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the KV cache")
            }
        }
    }
}

/// Hashes and writes a session's KV files on a thread of its own, in the order given: on
/// SmolLM2, 877 tokens' 20 MB took 20 ms to copy out of the cache but 30 ms to hash and 60-80
/// ms to write, which would stall every lane. Dropping it finishes the queued writes.
pub(super) struct KvWriter {
    tx: Option<mpsc::Sender<Save>>,
    thread: Option<JoinHandle<()>>,
}

impl KvWriter {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Save>();
        let thread = std::thread::Builder::new()
            .name("kv-writer".into())
            .spawn(move || rx.into_iter().for_each(Save::write))
            .ok();
        Self {
            tx: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Queues `save`; written here when the thread could not start or has gone.
    fn write(&self, save: Save) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(save)) = tx.send(save) {
                    save.write();
                }
            }
            None => save.write(),
        }
    }
}

impl Drop for KvWriter {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An open file whose header matched: its tokens, and the rest to read on demand.
#[derive(Debug)]
pub(super) struct Header {
    pub tokens: Vec<Token>,
    sha256: [u8; 32],
    rest: std::io::BufReader<std::fs::File>,
}

fn u32_of(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Reads `kv`'s header: `Ok(None)` when there is no file, `Err` (why) when it does not match
/// `shape` and the tag or is not ours.
pub(super) fn open(kv: &KvFile, shape: Shape) -> Result<Option<Header>, String> {
    let f = match std::fs::File::open(&kv.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut r = std::io::BufReader::new(f);
    let io = |e: std::io::Error| format!("truncated or unreadable: {e}");
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err("not a saved KV sequence".into());
    }
    let version = u32_of(&mut r).map_err(io)?;
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}, not {FORMAT_VERSION}"));
    }
    let saved = Shape {
        kv_type: u32_of(&mut r).map_err(io)?,
        n_ctx: u32_of(&mut r).map_err(io)?,
    };
    if saved != shape {
        return Err(format!("saved for {saved:?}, this session is {shape:?}"));
    }
    let tag_len = u32_of(&mut r).map_err(io)?;
    if tag_len > MAX_TAG {
        return Err(format!("tag of {tag_len} bytes"));
    }
    let mut tag = vec![0u8; tag_len as usize];
    r.read_exact(&mut tag).map_err(io)?;
    if tag != kv.tag.as_bytes() {
        return Err(format!(
            "saved for {:?}, this request is {:?}",
            String::from_utf8_lossy(&tag),
            kv.tag
        ));
    }
    let n = u32_of(&mut r).map_err(io)?;
    if n >= shape.n_ctx {
        return Err(format!("{n} tokens in a context of {}", shape.n_ctx));
    }
    let tokens = (0..n)
        .map(|_| u32_of(&mut r).map(|t| t as Token))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    let mut sha256 = [0u8; 32];
    r.read_exact(&mut sha256).map_err(io)?;
    Ok(Some(Header {
        tokens,
        sha256,
        rest: r,
    }))
}

impl Header {
    /// The data, checked against its hash.
    pub fn data(mut self) -> Result<Vec<u8>, String> {
        // A damaged length must not make us allocate more than the file holds.
        let limit = self
            .rest
            .get_ref()
            .metadata()
            .map_err(|e| e.to_string())?
            .len();
        let mut len = [0u8; 8];
        self.rest
            .read_exact(&mut len)
            .map_err(|e| format!("truncated: {e}"))?;
        let len = u64::from_le_bytes(len);
        if len > limit {
            return Err(format!("{len} bytes of data, more than {limit}"));
        }
        let mut data = Vec::with_capacity(len as usize);
        (&mut self.rest)
            .take(len)
            .read_to_end(&mut data)
            .map_err(|e| format!("unreadable: {e}"))?;
        if data.len() as u64 != len {
            return Err(format!("truncated: {} of {len} bytes", data.len()));
        }
        if Sha256::digest(&data).as_slice() != self.sha256 {
            return Err("its data does not match its hash".into());
        }
        Ok(data)
    }
}

impl Worker {
    fn kv_shape(&self) -> Shape {
        Shape {
            kv_type: self.cfg.kv,
            n_ctx: self.cfg.n_ctx,
        }
    }

    /// Saves sequence `seq`'s cells, which hold `tokens`, to `kv`; a failure is logged (the
    /// request has its answer either way).
    pub(super) fn save_seq(&self, seq: i32, tokens: &[Token], kv: &KvFile) {
        let ctx = self.ctx.as_ptr();
        // SAFETY: ctx is live and `seq` is below its n_seq_max.
        let size = unsafe { sys::llama_state_seq_get_size(ctx, seq) };
        let mut data = vec![0u8; size];
        // SAFETY: as above; `data` has the `size` bytes llama.cpp asked for.
        let n = unsafe { sys::llama_state_seq_get_data(ctx, data.as_mut_ptr(), size, seq) };
        if n == 0 {
            tracing::warn!(path = %kv.path.display(), "llama.cpp gave no state to save");
            return;
        }
        data.truncate(n);
        let save = Save {
            kv: kv.clone(),
            shape: self.kv_shape(),
            tokens: tokens.to_vec(),
            data,
        };
        self.kv_writer.get_or_init(KvWriter::start).write(save);
    }

    /// Restores `kv`'s cells into sequence `seq` when they give more of `prompt` than `best`
    /// tokens (never its last token). `Some(tokens)`: the sequence now holds exactly these (a
    /// prefix of the prompt; empty when llama.cpp refused the data after the sequence was
    /// emptied); `None`: the sequence is untouched.
    pub(super) fn restore_seq(
        &mut self,
        seq: i32,
        kv: &KvFile,
        prompt: &[Token],
        best: usize,
    ) -> Option<Vec<Token>> {
        let skip = |why: String| {
            tracing::warn!(path = %kv.path.display(), %why, "not restoring the saved KV cache");
        };
        let header = match open(kv, self.kv_shape()) {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(why) => {
                skip(why);
                return None;
            }
        };
        let k = common_prefix(&header.tokens, prompt).min(prompt.len().saturating_sub(1));
        if k <= best {
            return None;
        }
        let mut tokens = header.tokens.clone();
        let data = match header.data() {
            Ok(d) => d,
            Err(why) => {
                skip(why);
                return None;
            }
        };
        let ctx = self.ctx.as_ptr();
        // SAFETY: ctx is live and `seq` is below its n_seq_max; `data` is what `save_seq`
        // got from llama.cpp for the same KV type and context size (its hash checked).
        let n = unsafe {
            let mem = sys::llama_get_memory(ctx);
            sys::llama_memory_seq_rm(mem, seq, -1, -1);
            let n = sys::llama_state_seq_set_data(ctx, data.as_ptr(), data.len(), seq);
            if n == 0 {
                sys::llama_memory_seq_rm(mem, seq, -1, -1);
            } else {
                sys::llama_memory_seq_rm(mem, seq, k as i32, -1);
            }
            n
        };
        if n == 0 {
            skip("llama.cpp refused the saved state".into());
            return Some(Vec::new());
        }
        tokens.truncate(k);
        tracing::debug!(path = %kv.path.display(), tokens = k, "restored a saved KV cache");
        Some(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(dir: &std::path::Path, tag: &str) -> KvFile {
        KvFile {
            path: dir.join("s.kv"),
            tag: tag.into(),
        }
    }

    const SHAPE: Shape = Shape {
        kv_type: 1,
        n_ctx: 512,
    };

    #[test]
    fn a_saved_sequence_reads_back_and_any_mismatch_or_damage_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let k = kv(dir.path(), "model=a adapter=base");
        let bytes = encode(&k, SHAPE, &[1, 2, 3], b"cells");
        std::fs::write(&k.path, &bytes).unwrap();
        let h = open(&k, SHAPE).unwrap().unwrap();
        assert_eq!(h.tokens, vec![1, 2, 3]);
        assert_eq!(h.data().unwrap(), b"cells");

        let other_tag = kv(dir.path(), "model=b adapter=base");
        assert!(open(&other_tag, SHAPE).unwrap_err().contains("saved for"));
        let other_ctx = Shape {
            n_ctx: 1024,
            ..SHAPE
        };
        assert!(open(&k, other_ctx).unwrap_err().contains("saved for"));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&k.path, &flipped).unwrap();
        let e = open(&k, SHAPE).unwrap().unwrap().data().unwrap_err();
        assert!(e.contains("hash"), "{e}");
        std::fs::write(&k.path, &bytes[..bytes.len() - 2]).unwrap();
        let e = open(&k, SHAPE).unwrap().unwrap().data().unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&k.path, b"garbage").unwrap();
        assert!(open(&k, SHAPE).is_err());
        std::fs::remove_file(&k.path).unwrap();
        assert!(open(&k, SHAPE).unwrap().is_none());
    }
}
