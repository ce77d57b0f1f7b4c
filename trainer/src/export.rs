//! The export of trained LoRA factors as a GGUF adapter that llama.cpp loads.
//!
//! A projection `y = x W` (W as `[in, out]`) gets `(alpha / r) · x A B`; llama.cpp computes the
//! same sum as `scale · B'(A' x)` with `scale = alpha / r` (adapter scale 1), from tensors
//! `<base>.lora_a` with GGUF dims `[in, r]` (that is, `A` transposed, row-major) and
//! `<base>.lora_b` with dims `[r, out]` (`B` transposed).

use std::path::Path;

use retroformer_core::records::{AdapterProvenance, ProvenanceValue};
use retroformer_gguf::{GgufWriter, WriteValue};

use crate::lora::{to_vec2, transpose, Adapters, LoraConfig};
use crate::model::{Base, PROJ_NAMES};
use crate::TrainerError;

/// Writes `adapters` as a llama.cpp LoRA adapter for `base`, atomically, with `provenance`
/// under the `retroformer.*` keys (its rank and targets are `cfg`'s).
pub fn export(
    adapters: &Adapters,
    cfg: &LoraConfig,
    base: &Base,
    provenance: &AdapterProvenance,
    path: &Path,
) -> Result<(), TrainerError> {
    let mut w = GgufWriter::lora_adapter(&base.cfg.arch, cfg.alpha);
    let provenance = AdapterProvenance {
        rank: cfg.rank as u32,
        targets: cfg
            .targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(","),
        ..provenance.clone()
    };
    for (key, value) in provenance.entries() {
        match value {
            ProvenanceValue::U32(v) => w.kv(key, WriteValue::U32(v)),
            ProvenanceValue::U64(v) => w.kv(key, WriteValue::U64(v)),
            ProvenanceValue::Str(v) => w.kv(key, v),
        };
    }
    for (l, blk) in adapters.blocks.iter().enumerate() {
        for (i, name) in PROJ_NAMES.iter().enumerate() {
            let Some(f) = blk.get(i) else { continue };
            let (a, [d_in, r]) = to_vec2(f.a.val());
            let (b, [r2, d_out]) = to_vec2(f.b.val());
            debug_assert_eq!(r, r2);
            // GGUF dims [in, r] = r rows of `in`: A transposed; [r, out] = B transposed.
            w.tensor_f32(
                &format!("blk.{l}.{name}.weight.lora_a"),
                &[d_in as u64, r as u64],
                &transpose(&a, d_in, r),
            );
            w.tensor_f32(
                &format!("blk.{l}.{name}.weight.lora_b"),
                &[r as u64, d_out as u64],
                &transpose(&b, r, d_out),
            );
        }
    }
    w.write(path).map_err(|e| TrainerError::Io {
        path: path.display().to_string(),
        source: e,
    })
}
