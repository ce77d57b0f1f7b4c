//! The architecture hyper-parameters of a `llama` or `qwen2` GGUF, shared by burn's model
//! ([`crate::model`]) and the native engine ([`crate::native`]).

use std::path::Path;

use retroformer_gguf::GgufFile;

use crate::TrainerError;

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rope {
    /// Adjacent pairs (2i, 2i+1): llama.cpp's `LLAMA_ROPE_TYPE_NORM` (llama).
    Norm,
    /// Halves (i, i + d/2): `LLAMA_ROPE_TYPE_NEOX` (qwen2).
    Neox,
}

/// The architecture hyper-parameters read from a GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Blocks.
    pub layers: usize,
    /// Embedding width.
    pub embd: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP width.
    pub ff: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RoPE pairing.
    pub rope: Rope,
    /// RMSNorm epsilon.
    pub eps: f32,
}

impl ModelConfig {
    /// Reads the hyper-parameters of a `llama` or `qwen2` model; anything else is refused with
    /// the key that is missing or unsupported.
    pub fn from_gguf(f: &GgufFile, path: &Path) -> Result<Self, TrainerError> {
        let bad = |reason: String| TrainerError::Model {
            path: path.display().to_string(),
            reason,
        };
        // The runtime's bounds first (layers, widths, heads, vocabulary, tensor shapes): the
        // sizes below allocate, and `export` reaches here without llama.cpp's load.
        retroformer_gguf::check_model(f, path)?;
        let arch = f
            .architecture()
            .ok_or_else(|| bad("general.architecture is missing".into()))?
            .to_string();
        let rope = match arch.as_str() {
            "llama" => Rope::Norm,
            "qwen2" => Rope::Neox,
            other => {
                return Err(bad(format!(
                    "architecture '{other}' is not supported by the trainer (llama, qwen2)"
                )))
            }
        };
        let need = |k: &str| {
            f.arch_u64(k)
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("{arch}.{k} is missing")))
        };
        let layers = need("block_count")?;
        let embd = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let kv_heads = f
            .arch_u64("attention.head_count_kv")
            .map(|v| v as usize)
            .unwrap_or(heads);
        let ff = need("feed_forward_length")?;
        if heads == 0 || kv_heads == 0 || embd % heads != 0 || heads % kv_heads != 0 {
            return Err(bad(format!(
                "{heads} heads over {kv_heads} KV heads do not divide width {embd}"
            )));
        }
        let head_dim = embd / heads;
        if head_dim % 2 != 0 {
            return Err(bad(format!(
                "head width {head_dim} is odd: RoPE rotates pairs"
            )));
        }
        let rope_dims = f
            .arch_u64("rope.dimension_count")
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        if rope_dims != head_dim {
            return Err(bad(format!(
                "partial RoPE ({rope_dims} of {head_dim} dimensions) is not supported"
            )));
        }
        if let Some(kind) = f.get_str(&format!("{arch}.rope.scaling.type")) {
            if kind != "none" {
                return Err(bad(format!("RoPE scaling '{kind}' is not supported")));
            }
        }
        // llama.cpp applies these when present; the trainer does not, so it refuses them
        // rather than silently computing another model.
        for key in ["rope.scaling.factor", "rope.scale_linear"] {
            if let Some(v) = f.get_f64(&format!("{arch}.{key}")) {
                if v != 0.0 && v != 1.0 {
                    return Err(bad(format!(
                        "{arch}.{key} = {v} (RoPE scaling) is not supported"
                    )));
                }
            }
        }
        if f.tensor("rope_freqs.weight").is_some() {
            return Err(bad(
                "rope_freqs.weight (per-frequency RoPE factors) is not supported".into(),
            ));
        }
        for key in ["attention.key_length", "attention.value_length"] {
            if let Some(v) = f.arch_u64(key) {
                if v as usize != embd / heads {
                    return Err(bad(format!(
                        "{arch}.{key} = {v} differs from width / heads = {}",
                        embd / heads
                    )));
                }
            }
        }
        let vocab =
            f.tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| bad("token_embd.weight is missing".into()))? as usize;
        let float = |k: &str, d: f64| f.get_f64(&format!("{arch}.{k}")).unwrap_or(d) as f32;
        Ok(Self {
            layers,
            embd,
            heads,
            kv_heads,
            head_dim,
            ff,
            vocab,
            rope_base: float("rope.freq_base", 10000.0),
            rope,
            eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            arch,
        })
    }
}

/// GGUF names of the seven projections, in [`crate::lora::Target`] order.
pub const PROJ_NAMES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

pub(crate) fn check_dims(
    path: &Path,
    name: &str,
    got: &[u64],
    want: &[usize],
) -> Result<(), TrainerError> {
    if got.len() != want.len() || got.iter().zip(want).any(|(&g, &w)| g as usize != w) {
        return Err(TrainerError::Model {
            path: path.display().to_string(),
            reason: format!("tensor {name} has dims {got:?}; the header implies {want:?}"),
        });
    }
    Ok(())
}

/// cos and sin of position · base^(-2i/d), `[s, d/2]` row-major. As ggml's rope cache: theta
/// starts at the position and is multiplied by base^(-2/d) once per pair, in f32, so the
/// angles match llama.cpp's to the last bit.
pub(crate) fn rope_tables(cfg: &ModelConfig, s: usize) -> (Vec<f32>, Vec<f32>) {
    let half = cfg.head_dim / 2;
    let theta_scale = cfg.rope_base.powf(-2.0 / cfg.head_dim as f32);
    let (mut c, mut si) = (Vec::with_capacity(s * half), Vec::with_capacity(s * half));
    for p in 0..s {
        let mut theta = p as f32;
        for _ in 0..half {
            c.push(theta.cos());
            si.push(theta.sin());
            theta *= theta_scale;
        }
    }
    (c, si)
}
