//! Retroformer trainer: gradient updates with `burn` on LoRA adapters of GGUF models, exported
//! back to GGUF for the runtime.
//!
//! - [`config`]: the architecture read from a GGUF header;
//! - [`model`]: the `llama` / `qwen2` forward pass in burn, weights read from a GGUF file;
//! - [`lora`]: the trainable factors; [`export`]: their export as a llama.cpp adapter;
//! - [`data`]: JSONL examples (prompt/response, rating records, RISE samples) and tokenisation;
//! - [`native`]: the CPU engine: a hand-written forward and backward for LoRA training;
//! - [`objective`]: SFT, RWR, the reward model, REINFORCE and PPO;
//! - [`train`]: the training loop and its checkpoints.

pub mod config;
pub mod data;
pub mod export;
mod grads;
mod heldout;
pub mod lora;
pub mod model;
pub mod native;
pub mod objective;
pub mod train;

use std::path::Path;

use retroformer_core::records::{keys, TrainingLog, FORMAT_VERSION};
use retroformer_gguf::{self as gguf, GgufFile};

/// Where a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The native CPU engine ([`native`]): a hand-written LoRA forward and backward on gemm
    /// and rayon; burn (flex, else ndarray) keeps the factors, the objectives' scalars and the
    /// optimiser. The CPU default; no LoRA dropout.
    Native,
    /// burn-ndarray on the CPU (deprecated by burn 0.22; 2.4x slower than flex here: 9.1 vs
    /// 3.74 s per SmolLM2 SFT step, release build, 2 threads).
    Ndarray,
    /// burn's pure-Rust `flex` CPU backend (feature `flex`, on by default): burn's autodiff
    /// over the whole model.
    Flex,
    /// wgpu: Vulkan or Metal (feature `wgpu`).
    Wgpu,
    /// CUDA (feature `cuda`).
    Cuda,
}

impl Backend {
    /// Every backend, by its command-line name.
    pub const ALL: [(&'static str, Backend); 5] = [
        ("native", Backend::Native),
        ("ndarray", Backend::Ndarray),
        ("flex", Backend::Flex),
        ("wgpu", Backend::Wgpu),
        ("cuda", Backend::Cuda),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("native", |(n, _)| n)
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, b)| *b)
            .ok_or_else(|| format!("{s}: known backends are native, ndarray, flex, wgpu, cuda"))
    }
}

/// The autodiff device of `backend`, or an error naming the feature the build lacks.
#[allow(deprecated, unreachable_code)]
pub fn backend_device(backend: Backend) -> Result<burn::tensor::Device, TrainerError> {
    let missing = |feature: &str| TrainerError::Config {
        field: "backend".into(),
        reason: format!(
            "this build lacks it (rebuild retroformer-trainer with --features {feature})"
        ),
    };
    let device = match backend {
        Backend::Native => {
            #[cfg(feature = "flex")]
            {
                burn::tensor::Device::flex()
            }
            #[cfg(not(feature = "flex"))]
            burn::tensor::Device::ndarray()
        }
        Backend::Ndarray => burn::tensor::Device::ndarray(),
        Backend::Flex => {
            #[cfg(feature = "flex")]
            {
                burn::tensor::Device::flex()
            }
            #[cfg(not(feature = "flex"))]
            return Err(missing("flex"));
        }
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                burn::tensor::Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
            }
            #[cfg(not(feature = "wgpu"))]
            return Err(missing("wgpu"));
        }
        Backend::Cuda => {
            #[cfg(feature = "cuda")]
            {
                burn::tensor::Device::cuda(0)
            }
            #[cfg(not(feature = "cuda"))]
            return Err(missing("cuda"));
        }
    };
    Ok(device.autodiff())
}

/// The base model at `path` for `backend`: plain buffers for the native engine, else burn
/// tensors on `device` (from [`backend_device`]).
pub fn load_base(
    path: &Path,
    backend: Backend,
    device: &burn::tensor::Device,
) -> Result<model::Base, TrainerError> {
    match backend {
        Backend::Native => model::Base::load_native(path, device),
        _ => model::Base::load(path, device),
    }
}

/// Writes `OUT.log.json` (every step, and how long the adapter's export took) and the loss
/// curve `OUT.loss.svg`/`.png` next to the adapter; for a reward model also its scalar head,
/// `OUT.head.json`. Returns the files.
pub fn write_run_report(
    out: &Path,
    objective: &objective::Objective,
    trained: &train::Trained,
    state: &objective::Trainable,
    export_ms: f64,
) -> Result<Vec<std::path::PathBuf>, TrainerError> {
    let stem = out.with_extension("");
    let io = |p: &Path, e: String| TrainerError::Io {
        path: p.display().to_string(),
        source: std::io::Error::other(e),
    };
    let mut written = Vec::new();
    let log_path = stem.with_extension("log.json");
    let log = TrainingLog {
        format_version: FORMAT_VERSION,
        objective: objective.name().into(),
        resumed_from: trained.resumed_from,
        export_ms,
        steps: trained.log.clone(),
        best_step: trained.best_step,
    };
    retroformer_core::fsutil::write_atomic(
        &log_path,
        &serde_json::to_vec_pretty(&log).map_err(|e| io(&log_path, e.to_string()))?,
    )
    .map_err(|e| io(&log_path, e.to_string()))?;
    written.push(log_path);
    if let Some(h) = &state.head {
        let head_path = stem.with_extension("head.json");
        let (w, _) = lora::to_vec2(h.w.val());
        let b = objective::to_vec1(h.b.val());
        let j = serde_json::json!({"format_version": FORMAT_VERSION, "w": w, "b": b[0]});
        retroformer_core::fsutil::write_atomic(&head_path, j.to_string().as_bytes())
            .map_err(|e| io(&head_path, e.to_string()))?;
        written.push(head_path);
    }
    let points: Vec<(f64, f64)> = trained
        .log
        .iter()
        .map(|l| (l.step as f64, l.loss))
        .collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let svg = retroformer_report::line_chart_svg(
        &format!("{} loss", objective.name()),
        "step",
        "loss",
        (lo - pad, hi + pad),
        &[retroformer_report::Series {
            label: objective.name().into(),
            points,
        }],
    );
    let files = retroformer_report::write_chart(&stem.with_extension("loss"), &svg)
        .map_err(|e| io(&stem, e.to_string()))?;
    written.extend(files);
    Ok(written)
}

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

/// Errors of the trainer library.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The file failed GGUF validation.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// llama.cpp or the tensor reader failed.
    #[error(transparent)]
    Llm(#[from] retroformer_llm::LlmError),
    /// The model's header or tensors do not describe a model the trainer supports.
    #[error("{path}: {reason}")]
    Model {
        /// The model file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A line of a data file is malformed.
    #[error("{path}:{line}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// 1-based line (0 for the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Training diverged.
    #[error("step {step}: {what} (lower --lr, or check the rewards and weights in the data)")]
    NonFinite {
        /// The step (from 1).
        step: u64,
        /// What was not finite.
        what: String,
    },
    /// A setting is out of range.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The setting (command-line flag without dashes).
        field: String,
        /// Why.
        reason: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is valid GGUF but not a LoRA adapter.
    #[error("{0}: not a LoRA adapter (general.type is not \"adapter\")")]
    NotAnAdapter(String),
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
