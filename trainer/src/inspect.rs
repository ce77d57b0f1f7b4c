//! A LoRA adapter file summarised: its shape and provenance.

use std::path::Path;

use crate::error::TrainerError;
use retroformer_core::records::keys;
use retroformer_gguf::{self as gguf, GgufFile};

/// A LoRA adapter's shape as read from its GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `adapter.lora.alpha`.
    pub alpha: Option<f64>,
    /// Rank of the first pair.
    pub rank: Option<u64>,
    /// Number of `.lora_a`/`.lora_b` pairs.
    pub pairs: usize,
    /// Provenance keys (`retroformer.*`).
    pub provenance: Vec<(String, String)>,
}

/// Validates and summarises a LoRA adapter file.
pub fn inspect_adapter(path: &Path) -> Result<AdapterSummary, TrainerError> {
    let f: GgufFile = gguf::validate_file(path)?;
    if f.get_str("general.type") != Some("adapter") {
        return Err(TrainerError::NotAnAdapter(path.display().to_string()));
    }
    let pairs = f
        .tensors
        .iter()
        .filter(|t| t.name.ends_with(".lora_a"))
        .count();
    let rank = f
        .tensors
        .iter()
        .find(|t| t.name.ends_with(".lora_a"))
        .and_then(|t| t.dims.get(1).copied());
    let provenance = f
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with(keys::PREFIX))
        .map(|(k, v)| (k.clone(), format!("{:?}", v.value)))
        .collect();
    Ok(AdapterSummary {
        architecture: f.architecture().map(str::to_string),
        alpha: f.get_f64(keys::ALPHA),
        rank,
        pairs,
        provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use retroformer_gguf::GgufWriter;

    #[test]
    fn inspect_reads_rank_alpha_pairs_and_provenance() {
        let dir = std::env::temp_dir().join(format!("rf-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.gguf");
        let mut w = GgufWriter::lora_adapter("llama", 16.0);
        w.kv(keys::OBJECTIVE, "sft")
            .tensor_f32("blk.0.attn_q.weight.lora_a", &[8, 2], &[0.0; 16])
            .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 8], &[0.0; 16]);
        w.write(&p).unwrap();
        let s = inspect_adapter(&p).unwrap();
        assert_eq!(s.rank, Some(2));
        assert_eq!(s.pairs, 1);
        assert!((s.alpha.unwrap() - 16.0).abs() < 1e-6);
        assert_eq!(s.provenance.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
