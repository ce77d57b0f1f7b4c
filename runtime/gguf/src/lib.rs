//! Pure-Rust GGUF reader and validator.
//!
//! Every model or adapter file passes [`validate_file`] before llama.cpp opens it. llama.cpp's
//! own GGUF parser has had integer-overflow CVEs (2025-53630, 2026-27940, 2026-33298); this
//! validator checks, with checked arithmetic and without trusting any count: magic, version,
//! tensor and key/value counts against the file size, string and array lengths against the
//! bytes left, value types, key and tensor-name uniqueness, tensor names (< 64 bytes, UTF-8),
//! dimensions (at most 4, non-negative, element count below `i64::MAX`), ggml types, row sizes
//! divisible by the block size, the alignment key, offsets (aligned, in order, as llama.cpp
//! requires) and that all tensor data lies inside the file. It never panics on any input
//! (see the mutation test in `tests.rs` and the cargo-fuzz target in `runtime/gguf/fuzz`).
//!
//! Array contents are skipped, not stored: only their element type and length are kept, so a
//! 150k-entry tokenizer array costs nothing to validate.

mod adapter;
mod semantics;
mod tiny;
mod types;
mod writer;

pub use adapter::{check_adapter, check_adapter_base, AdapterError, BasePolicy};
pub use semantics::check_model;
pub use tiny::TinyModel;
pub use types::{GgmlType, ValueType};
pub use writer::{GgufWriter, WriteValue};

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The four magic bytes of a GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Longest tensor name llama.cpp accepts, exclusive (`GGML_MAX_NAME`).
pub const MAX_TENSOR_NAME: usize = 64;
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest scalar string value (keys and string values) we hold in memory.
pub const MAX_STRING: u64 = 16 << 20;
/// Skips up to this many bytes are read through the buffer instead of seeking.
const SMALL_SKIP: u64 = 64 << 10;

/// A metadata value. Arrays are summarised (element type and length), not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type, widened.
    Uint(u64),
    /// Any signed integer type, widened.
    Int(i64),
    /// `f32` or `f64`, widened.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// An array: its element type and length.
    Array {
        /// Type of every element.
        elem: ValueType,
        /// Number of elements.
        len: u64,
    },
}

/// One metadata entry with its on-disk type.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    /// The stored type (so `general.alignment` can be required to be `u32`).
    pub ty: ValueType,
    /// The value.
    pub value: Value,
    /// Byte range of the stored type tag and value in the file (for copying the entry,
    /// arrays included, into another file).
    pub span: (u64, u64),
}

/// A tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in GGUF (ggml `ne`) order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A validated GGUF header.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Kv>,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment.
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    /// File size in bytes.
    pub file_size: u64,
}

/// Why a GGUF file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (shown in the message, so not also a `source()`, which would print it
        /// twice in an error chain).
        error: io::Error,
    },
    /// The file is not a valid GGUF file.
    #[error("{path}: not a valid GGUF file: {reason}")]
    Invalid {
        /// The file (`<memory>` for in-memory buffers).
        path: PathBuf,
        /// What is wrong, with the byte offset where it was found.
        reason: String,
    },
    /// A valid GGUF file whose values llama.cpp would abort on.
    #[error("{path}: {key}: {reason}")]
    Semantic {
        /// The file.
        path: PathBuf,
        /// The metadata key or tensor.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
}

impl GgufError {
    /// The same error naming `path` (the file as the user gave it, where it was read through
    /// another path to the same open file).
    pub fn at(mut self, path: &Path) -> Self {
        match &mut self {
            GgufError::Io { path: p, .. }
            | GgufError::Invalid { path: p, .. }
            | GgufError::Semantic { path: p, .. } => *p = path.to_path_buf(),
        }
        self
    }

    fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        GgufError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Validates the GGUF file at `path` and returns its header.
pub fn validate_file(path: &Path) -> Result<GgufFile, GgufError> {
    let io_err = |error| GgufError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = retroformer_core::fsutil::open_regular(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(GgufError::invalid(path, "not a regular file"));
    }
    let len = meta.len();
    let mut reader = Reader::new(BufReader::with_capacity(1 << 16, file), len);
    parse(&mut reader).map_err(|e| match e {
        ParseError::Io(source) => io_err(source),
        ParseError::Invalid(reason) => GgufError::invalid(path, reason),
    })
}

/// Validates the GGUF file at `path` as a model llama.cpp may load: the container
/// ([`validate_file`]), one shard only (llama.cpp would open the other shards unvalidated), not
/// an adapter, and its values ([`check_model`]).
pub fn validate_model(path: &Path) -> Result<GgufFile, GgufError> {
    let header = validate_file(path)?;
    if header.get_u64("split.count").is_some_and(|n| n > 1) {
        return Err(GgufError::Semantic {
            path: path.to_path_buf(),
            key: "split.count".into(),
            reason: "split GGUF files are not supported (llama.cpp would open the other shards unvalidated); merge them with llama-gguf-split --merge".into(),
        });
    }
    check_model(&header, path)?;
    Ok(header)
}

/// The elements of the array stored under `key` in the file at `path` (whose header is `f`),
/// read from the entry's span; `None` when the key is absent or not an array. At most
/// `max_len` elements are read (a longer array is an error).
pub fn read_array(
    path: &Path,
    f: &GgufFile,
    key: &str,
    max_len: u64,
) -> Result<Option<Vec<Value>>, GgufError> {
    let Some(kv) = f.metadata.get(key) else {
        return Ok(None);
    };
    let Value::Array { elem, len } = kv.value else {
        return Ok(None);
    };
    if len > max_len {
        return Err(GgufError::invalid(
            path,
            format!("'{key}' has {len} elements, more than {max_len}"),
        ));
    }
    let io_err = |error| GgufError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = retroformer_core::fsutil::open_regular(path).map_err(io_err)?;
    // The span starts at the type tag; the array's element type and length follow it.
    file.seek(SeekFrom::Start(kv.span.0 + 16)).map_err(io_err)?;
    let mut r = Reader::new(BufReader::with_capacity(1 << 16, file), f.file_size);
    r.pos = kv.span.0 + 16;
    let mut out = Vec::with_capacity(len as usize);
    for _ in 0..len {
        out.push(read_value(&mut r, elem, key).map_err(|e| match e {
            ParseError::Io(error) => io_err(error),
            ParseError::Invalid(reason) => GgufError::invalid(path, reason),
        })?);
    }
    Ok(Some(out))
}

/// Validates a GGUF image held in memory (used by the fuzz target and tests).
pub fn validate_bytes(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    let mut reader = Reader::new(io::Cursor::new(bytes), bytes.len() as u64);
    parse(&mut reader).map_err(|e| match e {
        ParseError::Io(error) => GgufError::Io {
            path: PathBuf::from("<memory>"),
            error,
        },
        ParseError::Invalid(reason) => GgufError::invalid(Path::new("<memory>"), reason),
    })
}

enum ParseError {
    Io(io::Error),
    Invalid(String),
}

type PResult<T> = Result<T, ParseError>;

fn bad<T>(msg: String) -> PResult<T> {
    Err(ParseError::Invalid(msg))
}

/// A reader that knows the file length and its position, so that no length is ever trusted.
struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn new(inner: R, len: u64) -> Self {
        Self { inner, pos: 0, len }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &str) -> PResult<()> {
        if n > self.remaining() {
            return bad(format!(
                "at byte {}: {what} needs {n} bytes but only {} remain (truncated file?)",
                self.pos,
                self.remaining()
            ));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> PResult<[u8; N]> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(ParseError::Io)?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &str) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    fn skip(&mut self, n: u64, what: &str) -> PResult<()> {
        self.need(n, what)?;
        if n <= SMALL_SKIP {
            // Small skips (array strings) read through the buffer: a seek would discard it,
            // costing a system call and a refill for each of a tokenizer's 150k strings.
            let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
                .map_err(ParseError::Io)?;
            if copied != n {
                return bad(format!(
                    "at byte {}: {what}: unexpected end of file",
                    self.pos
                ));
            }
        } else {
            let n_i64 = i64::try_from(n)
                .map_err(|_| ParseError::Invalid(format!("{what}: size overflow")))?;
            self.inner
                .seek(SeekFrom::Current(n_i64))
                .map_err(ParseError::Io)?;
        }
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, what: &str) -> PResult<String> {
        let at = self.pos;
        let n = self.u64(what)?;
        self.need(n, what)?;
        if n > MAX_STRING {
            return bad(format!(
                "at byte {at}: {what} is {n} bytes long (limit {MAX_STRING})"
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(ParseError::Io)?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip_string(&mut self, what: &str) -> PResult<()> {
        let n = self.u64(what)?;
        self.skip(n, what)
    }
}

// long: the validator reads a file's parts in their on-disk order (header, metadata, tensor infos, data) with one cursor and one budget; each part's checks stay next to the bytes they read.
fn parse<R: Read + Seek>(r: &mut Reader<R>) -> PResult<GgufFile> {
    let magic = r.bytes::<4>("magic")?;
    if magic != GGUF_MAGIC {
        return bad(format!(
            "bad magic {:02x?} (expected \"GGUF\"); is this a GGUF model file?",
            magic
        ));
    }
    let version = r.u32("version")?;
    if version == 1 {
        return bad("GGUF version 1 is not supported (re-convert the model)".into());
    }
    if version != 2 && version != 3 {
        if matches!(version.swap_bytes(), 2 | 3) {
            return bad("big-endian GGUF files are not supported".into());
        }
        return bad(format!(
            "unsupported GGUF version {version} (expected 2 or 3)"
        ));
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    // Every tensor info takes at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
    // every key/value at least 8 (key len) + 4 (type) + 1 byte.
    if n_tensors > i64::MAX as u64 || n_tensors.saturating_mul(24) > r.remaining() {
        return bad(format!(
            "tensor count {n_tensors} cannot fit in a file of {} bytes (truncated or corrupt file?)",
            r.len
        ));
    }
    if n_kv > i64::MAX as u64 || n_kv.saturating_mul(13) > r.remaining() {
        return bad(format!(
            "metadata count {n_kv} cannot fit in a file of {} bytes (truncated or corrupt file?)",
            r.len
        ));
    }

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let at = r.pos;
        let key = r.string("metadata key")?;
        if key.is_empty() {
            return bad(format!("at byte {at}: metadata key {i} is empty"));
        }
        let value_start = r.pos;
        let ty_raw = r.u32("metadata type")?;
        let ty = ValueType::from_u32(ty_raw).ok_or_else(|| {
            ParseError::Invalid(format!("key '{key}' has invalid GGUF type {ty_raw}"))
        })?;
        let value = read_value(r, ty, &key)?;
        let span = (value_start, r.pos);
        if metadata
            .insert(key.clone(), Kv { ty, value, span })
            .is_some()
        {
            return bad(format!("duplicate metadata key '{key}'"));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Kv {
            ty: ValueType::U32,
            value: Value::Uint(a),
            ..
        }) => {
            if *a == 0 || !a.is_power_of_two() {
                return bad(format!("general.alignment {a} is not a power of 2"));
            }
            *a
        }
        Some(kv) => {
            return bad(format!(
                "general.alignment has type {:?}, expected u32",
                kv.ty
            ))
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut names = HashSet::new();
    let mut expected_offset: u64 = 0;
    for i in 0..n_tensors {
        let at = r.pos;
        let name = r.string("tensor name")?;
        if name.len() >= MAX_TENSOR_NAME {
            return bad(format!(
                "at byte {at}: tensor {i} name is {} bytes long (limit {})",
                name.len(),
                MAX_TENSOR_NAME - 1
            ));
        }
        if !names.insert(name.clone()) {
            return bad(format!("duplicate tensor name '{name}'"));
        }
        let n_dims = r.u32("tensor dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return bad(format!(
                "tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for _ in 0..n_dims {
            let d = r.u64("tensor dimension")?;
            if d > i64::MAX as u64 {
                return bad(format!("tensor '{name}' has a negative dimension"));
            }
            n_elements = n_elements
                .checked_mul(d)
                .filter(|n| *n <= i64::MAX as u64)
                .ok_or_else(|| {
                    ParseError::Invalid(format!("tensor '{name}' element count overflows"))
                })?;
            dims.push(d);
        }
        let ty_raw = r.u32("tensor type")?;
        let ty = GgmlType::from_u32(ty_raw).ok_or_else(|| {
            ParseError::Invalid(format!("tensor '{name}' has unknown ggml type {ty_raw}"))
        })?;
        let (block, type_size) = ty.block();
        let row = dims.first().copied().unwrap_or(1);
        if row % block != 0 {
            return bad(format!(
                "tensor '{name}' of type {} has rows of {row} elements, not a multiple of the block size {block}",
                ty.name()
            ));
        }
        let size = (n_elements / block)
            .checked_mul(type_size)
            .ok_or_else(|| ParseError::Invalid(format!("tensor '{name}' byte size overflows")))?;
        let offset = r.u64("tensor offset")?;
        if offset % alignment != 0 {
            return bad(format!(
                "tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}"
            ));
        }
        if offset != expected_offset {
            return bad(format!(
                "tensor '{name}' has offset {offset}, expected {expected_offset} (tensors must be stored in order without gaps or overlaps)"
            ));
        }
        let padded = size
            .checked_add(alignment - 1)
            .map(|s| s / alignment * alignment)
            .ok_or_else(|| ParseError::Invalid(format!("tensor '{name}' size overflows")))?;
        expected_offset = expected_offset
            .checked_add(padded)
            .ok_or_else(|| ParseError::Invalid("total tensor data size overflows".to_string()))?;
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            size,
        });
    }

    let data_offset = if n_tensors > 0 {
        r.pos
            .checked_add(alignment - 1)
            .map(|p| p / alignment * alignment)
            .ok_or_else(|| ParseError::Invalid("data offset overflows".into()))?
    } else {
        r.pos
    };
    for t in &tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|o| o.checked_add(t.size));
        match end {
            Some(end) if end <= r.len => {}
            _ => {
                return bad(format!(
                    "tensor '{}' data (offset {}, {} bytes) runs past the end of the file ({} bytes): truncated file?",
                    t.name,
                    data_offset.saturating_add(t.offset),
                    t.size,
                    r.len
                ))
            }
        }
    }

    Ok(GgufFile {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        file_size: r.len,
    })
}

fn read_value<R: Read + Seek>(r: &mut Reader<R>, ty: ValueType, key: &str) -> PResult<Value> {
    let what = format!("value of '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::Uint(u64::from(r.bytes::<1>(&what)?[0])),
        ValueType::I8 => Value::Int(i64::from(r.bytes::<1>(&what)?[0] as i8)),
        ValueType::U16 => Value::Uint(u64::from(u16::from_le_bytes(r.bytes::<2>(&what)?))),
        ValueType::I16 => Value::Int(i64::from(i16::from_le_bytes(r.bytes::<2>(&what)?))),
        ValueType::U32 => Value::Uint(u64::from(r.u32(&what)?)),
        ValueType::I32 => Value::Int(i64::from(r.u32(&what)? as i32)),
        ValueType::F32 => Value::Float(f64::from(f32::from_le_bytes(r.bytes::<4>(&what)?))),
        ValueType::Bool => {
            let b = r.bytes::<1>(&what)?[0];
            if b > 1 {
                return bad(format!("{what}: bool byte is {b}"));
            }
            Value::Bool(b == 1)
        }
        ValueType::Str => Value::Str(r.string(&what)?),
        ValueType::U64 => Value::Uint(r.u64(&what)?),
        ValueType::I64 => Value::Int(r.u64(&what)? as i64),
        ValueType::F64 => Value::Float(f64::from_le_bytes(r.bytes::<8>(&what)?)),
        ValueType::Array => {
            let elem_raw = r.u32(&what)?;
            let elem = ValueType::from_u32(elem_raw).ok_or_else(|| {
                ParseError::Invalid(format!("{what}: invalid array element type {elem_raw}"))
            })?;
            let len = r.u64(&what)?;
            match elem {
                ValueType::Array => {
                    return bad(format!("{what}: nested arrays are not supported"));
                }
                ValueType::Str => {
                    // Each string needs at least its 8-byte length.
                    if len.saturating_mul(8) > r.remaining() {
                        return bad(format!(
                            "{what}: array of {len} strings cannot fit in the {} bytes left",
                            r.remaining()
                        ));
                    }
                    for _ in 0..len {
                        r.skip_string(&what)?;
                    }
                }
                fixed => {
                    let size = fixed.fixed_size().unwrap_or(1);
                    let total = len.checked_mul(size).ok_or_else(|| {
                        ParseError::Invalid(format!("{what}: array size overflows"))
                    })?;
                    r.skip(total, &what)?;
                }
            }
            Value::Array { elem, len }
        }
    })
}

impl GgufFile {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key).map(|kv| &kv.value)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value of any width and sign, if non-negative.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Uint(v) => Some(*v),
            Value::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// A float value (f32 or f64).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// An architecture-scoped integer, e.g. `arch_u64("block_count")` reads `llama.block_count`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }

    /// The widths of one attention head's key and value: `attention.key_length` and
    /// `attention.value_length`, else the embedding width over the query heads.
    pub fn head_sizes(&self) -> (u64, u64) {
        let embd = self.arch_u64("embedding_length").unwrap_or(0);
        let heads = self.arch_u64("attention.head_count").unwrap_or(0).max(1);
        let k = self
            .arch_u64("attention.key_length")
            .unwrap_or(embd / heads);
        (k, self.arch_u64("attention.value_length").unwrap_or(k))
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A one-screen summary of the model.
    pub fn summary(&self) -> Summary {
        let mut quant: BTreeMap<&'static str, usize> = BTreeMap::new();
        for t in &self.tensors {
            *quant.entry(t.ty.name()).or_default() += 1;
        }
        let vocab = match self.get("tokenizer.ggml.tokens") {
            Some(Value::Array { len, .. }) => Some(*len),
            _ => None,
        };
        Summary {
            architecture: self.architecture().map(str::to_string),
            name: self.get_str("general.name").map(str::to_string),
            file_type: self.get_str("general.type").map(str::to_string),
            layers: self.arch_u64("block_count"),
            heads: self.arch_u64("attention.head_count"),
            kv_heads: self.arch_u64("attention.head_count_kv"),
            embedding: self.arch_u64("embedding_length"),
            context_length: self.arch_u64("context_length"),
            vocab,
            tensor_count: self.tensors.len(),
            parameters: self.tensors.iter().map(TensorInfo::n_elements).sum(),
            tensor_types: quant.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            file_size: self.file_size,
            version: self.version,
            chat_template: self.get_str("tokenizer.chat_template").is_some(),
        }
    }
}

/// What `retroformer models info` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.type` (`model` or `adapter`).
    pub file_type: Option<String>,
    /// Transformer blocks.
    pub layers: Option<u64>,
    /// Attention heads.
    pub heads: Option<u64>,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: Option<u64>,
    /// Embedding width.
    pub embedding: Option<u64>,
    /// Training context length.
    pub context_length: Option<u64>,
    /// Vocabulary size.
    pub vocab: Option<u64>,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Total number of weights.
    pub parameters: u64,
    /// How many tensors of each ggml type.
    pub tensor_types: Vec<(String, usize)>,
    /// File size in bytes.
    pub file_size: u64,
    /// GGUF version.
    pub version: u32,
    /// Whether the file carries a chat template.
    pub chat_template: bool,
}

#[cfg(test)]
mod tests;
