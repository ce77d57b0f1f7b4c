//! A GGUF file's tensors as `f32`, dequantised by ggml's own routines.
//!
//! The trainer reads base weights through this module rather than through hand-written
//! dequantisers, so that every type llama.cpp reads (Q4_0/1, Q5_0/1, Q8_0, the K-quants, F16,
//! BF16, ...) is turned into exactly the floats llama.cpp computes with. The header comes from
//! the pure-Rust validator, so offsets and sizes are checked before a byte is read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use llama_cpp_sys_2 as sys;

use retroformer_gguf::{GgmlType, GgufFile, TensorInfo};
use retroformer_llm::LlmError;

/// Largest tensor read in one piece (elements); larger ones are refused rather than allocated.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;

/// Opens a GGUF file and reads its tensors as `f32`.
#[derive(Debug)]
pub struct TensorReader {
    path: PathBuf,
    header: GgufFile,
    file: File,
}

impl TensorReader {
    /// Validates `path` and opens it for reading.
    pub fn open(path: &Path) -> Result<Self, LlmError> {
        let header = retroformer_gguf::validate_file(path)?;
        let file = File::open(path).map_err(|e| tensor_error(path, "", e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            header,
            file,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &GgufFile {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads tensor `name` as row-major `f32` (ggml order: `dims[0]` varies fastest), with its
    /// GGUF dimensions.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<u64>, Vec<f32>), LlmError> {
        let info = self
            .header
            .tensor(name)
            .ok_or_else(|| tensor_error(&self.path, name, "no such tensor in the file"))?;
        let bytes = self.read_raw(info)?;
        let data = dequantize(info.ty, &bytes, info.n_elements())
            .map_err(|reason| tensor_error(&self.path, name, reason))?;
        Ok((info.dims.clone(), data))
    }

    /// The tensor's bytes as stored.
    pub fn read_raw(&self, info: &TensorInfo) -> Result<Vec<u8>, LlmError> {
        if info.n_elements() > MAX_TENSOR_ELEMENTS {
            return Err(tensor_error(
                &self.path,
                &info.name,
                format!(
                    "{} elements is more than this reader handles",
                    info.n_elements()
                ),
            ));
        }
        let start = self.header.data_offset + info.offset;
        let mut buf = vec![0u8; info.size as usize];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| tensor_error(&self.path, &info.name, e.to_string()))?;
        Ok(buf)
    }
}

fn tensor_error(path: &Path, name: &str, reason: impl Into<String>) -> LlmError {
    LlmError::Tensor {
        path: path.display().to_string(),
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Dequantises `n` elements of type `ty` from `bytes` with ggml's `to_float`.
///
/// Checks that `n` is a whole number of blocks and that `bytes` holds exactly those blocks
/// before ggml reads anything.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: u64) -> Result<Vec<f32>, String> {
    let (block, block_bytes) = ty.block();
    if !n.is_multiple_of(block) {
        return Err(format!(
            "{n} elements is not a whole number of {} blocks of {block}",
            ty.name()
        ));
    }
    let want = n / block * block_bytes;
    if bytes.len() as u64 != want {
        return Err(format!(
            "{} bytes for {n} {} elements; expected {want}",
            bytes.len(),
            ty.name()
        ));
    }
    let n_usize = usize::try_from(n).map_err(|_| "tensor too large".to_string())?;
    if ty == GgmlType::F32 {
        return Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect());
    }
    // SAFETY: a valid ggml type id (GgmlType only holds ids of the vendored ggml); the call
    // returns a pointer to a static table entry or null.
    let traits = unsafe { sys::ggml_get_type_traits(ty.to_u32() as sys::ggml_type) };
    // SAFETY: checked non-null; the table is static.
    let traits =
        unsafe { traits.as_ref() }.ok_or_else(|| format!("ggml knows no type {}", ty.name()))?;
    // Our block table decided how many bytes ggml may read: it must be ggml's own.
    if traits.blck_size as u64 != block || traits.type_size as u64 != block_bytes {
        return Err(format!(
            "type {}: ggml has blocks of {} elements in {} bytes, our table {block} in {block_bytes}",
            ty.name(),
            traits.blck_size,
            traits.type_size
        ));
    }
    let to_float = traits
        .to_float
        .ok_or_else(|| format!("ggml has no dequantiser for type {}", ty.name()))?;
    let mut out = vec![0f32; n_usize];
    // ggml's row functions take an i64 count; dequantise in chunks of whole blocks.
    const CHUNK_BLOCKS: u64 = 1 << 20;
    let mut done = 0u64;
    while done < n {
        let count = (n - done).min(CHUNK_BLOCKS * block);
        let src = &bytes[(done / block * block_bytes) as usize..];
        // SAFETY: `src` holds at least `count / block` blocks (the length was checked above) and
        // `out[done..]` has room for `count` floats.
        unsafe {
            to_float(
                src.as_ptr().cast(),
                out.as_mut_ptr().add(done as usize),
                count as i64,
            )
        };
        done += count;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_values_dequantise_to_the_same_floats() {
        let vals = [0.0f32, 1.0, -2.5, 0.099975586, 65504.0];
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|v| half_bits(*v).to_le_bytes())
            .collect();
        let out = dequantize(GgmlType::F16, &bytes, vals.len() as u64).unwrap();
        for (a, b) in vals.iter().zip(&out) {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn a_q8_0_block_dequantises_to_scale_times_quant() {
        // One block: f16 scale 0.5, then 32 signed bytes.
        let mut bytes = half_bits(0.5).to_le_bytes().to_vec();
        bytes.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let out = dequantize(GgmlType::Q8_0, &bytes, 32).unwrap();
        for (i, v) in out.iter().enumerate() {
            assert!((v - 0.5 * (i as f32 - 16.0)).abs() < 1e-6);
        }
    }

    #[test]
    fn a_short_buffer_or_a_partial_block_is_refused() {
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], 32).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], 31).is_err());
        assert!(dequantize(GgmlType::F32, &[0u8; 7], 2).is_err());
    }

    /// f32 -> IEEE half bits for values exactly representable in half precision.
    fn half_bits(v: f32) -> u16 {
        let b = v.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        let exp = ((b >> 23) & 0xff) as i32;
        let man = b & 0x7f_ffff;
        if exp == 0 {
            return sign;
        }
        let e = exp - 127 + 15;
        assert!((1..31).contains(&e), "not a normal half: {v}");
        sign | ((e as u16) << 10) | ((man >> 13) as u16)
    }
}
