//! A small GGUF writer: tests build tiny models and LoRA adapters with it, and the trainer
//! exports adapters with it. Output always passes [`super::validate_bytes`].

use std::io;
use std::path::Path;

use super::{GgmlType, ValueType, DEFAULT_ALIGNMENT, GGUF_MAGIC};

/// A metadata value to write.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum WriteValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
    F32Array(Vec<f32>),
    /// A type tag and value exactly as stored in another GGUF file (see `Kv::span`).
    Raw(Vec<u8>),
}

impl From<&str> for WriteValue {
    fn from(s: &str) -> Self {
        WriteValue::Str(s.to_string())
    }
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
#[derive(Default)]
pub struct GgufWriter {
    kvs: Vec<(String, WriteValue)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer for a LoRA adapter of a base model with architecture `arch`, with the keys
    /// llama.cpp requires: `general.architecture`, `general.type = adapter`,
    /// `adapter.type = lora` and `adapter.lora.alpha`.
    pub fn lora_adapter(arch: &str, alpha: f32) -> Self {
        let mut w = Self::new();
        w.kv("general.architecture", arch)
            .kv("general.type", "adapter")
            .kv("adapter.type", "lora")
            .kv(
                retroformer_core::records::keys::ALPHA,
                WriteValue::F32(alpha),
            );
        w
    }

    /// Adds a metadata entry (later entries with the same key replace earlier ones).
    pub fn kv(&mut self, key: &str, value: impl Into<WriteValue>) -> &mut Self {
        let value = value.into();
        if let Some(slot) = self.kvs.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.kvs.push((key.to_string(), value));
        }
        self
    }

    /// Removes a metadata entry (tests build broken files this way).
    pub fn remove_kv(&mut self, key: &str) -> &mut Self {
        self.kvs.retain(|(k, _)| k != key);
        self
    }

    /// Removes a tensor.
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.name != name);
        self
    }

    /// Adds an F32 tensor. `dims` are in GGUF order (row length first).
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], data: &[f32]) -> &mut Self {
        let n: u64 = dims.iter().product();
        assert_eq!(
            n as usize,
            data.len(),
            "tensor '{name}': data length does not match dims"
        );
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty: GgmlType::F32,
            data: bytes,
        });
        self
    }

    /// Adds a tensor of any type from its raw bytes.
    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        self
    }

    /// The file image.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = DEFAULT_ALIGNMENT as usize;
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.to_u32().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += t.data.len().div_ceil(align) * align;
        }
        if !self.tensors.is_empty() {
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        out
    }

    /// Writes the file atomically (see [`retroformer_core::fsutil::write_atomic`]).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        retroformer_core::fsutil::write_atomic(path, &self.to_bytes())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &WriteValue) {
    let tag = |out: &mut Vec<u8>, t: ValueType| out.extend_from_slice(&t.to_u32().to_le_bytes());
    match v {
        WriteValue::Raw(bytes) => out.extend_from_slice(bytes),
        WriteValue::U32(x) => {
            tag(out, ValueType::U32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        WriteValue::I32(x) => {
            tag(out, ValueType::I32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        WriteValue::U64(x) => {
            tag(out, ValueType::U64);
            out.extend_from_slice(&x.to_le_bytes());
        }
        WriteValue::F32(x) => {
            tag(out, ValueType::F32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        WriteValue::Bool(x) => {
            tag(out, ValueType::Bool);
            out.push(u8::from(*x));
        }
        WriteValue::Str(s) => {
            tag(out, ValueType::Str);
            put_str(out, s);
        }
        WriteValue::StrArray(items) => {
            tag(out, ValueType::Array);
            tag(out, ValueType::Str);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                put_str(out, s);
            }
        }
        WriteValue::I32Array(items) => {
            tag(out, ValueType::Array);
            tag(out, ValueType::I32);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        WriteValue::F32Array(items) => {
            tag(out, ValueType::Array);
            tag(out, ValueType::F32);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}
