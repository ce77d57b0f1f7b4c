//! burn models of the `llama` (SmolLM2) and `qwen2` (Qwen2.5) architectures, loaded straight
//! from a GGUF file.
//!
//! The frozen base is plain tensors (never a parameter, never given a gradient); the trainable
//! part is a separate [`Adapters`] module, so the optimiser and checkpoints only ever see the
//! LoRA factors. Weights keep GGUF's layout and RoPE convention: llama.cpp's converter already
//! permuted the Q/K rows of llama-arch models for its adjacent-pair RoPE, so a LoRA trained
//! here on those rows needs no permutation when it is exported back to llama.cpp.

use std::path::Path;

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use retroformer_llama::TensorReader;

use std::sync::Arc;

use crate::config::check_dims;
pub use crate::config::{ModelConfig, Rope, PROJ_NAMES};
use crate::lora::{to_vec2, Adapters, LinearLora, LoraConfig};
use crate::native::{LoraWeights, NativeModel};
use crate::TrainerError;

/// A frozen projection: `x @ w + b` with `w` as `[in, out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[in, out]`.
    pub w: Tensor<2>,
    /// `[out]`.
    pub b: Option<Tensor<1>>,
}

impl Linear {
    fn forward(&self, x: Tensor<2>, lora: Option<&LinearLora>, cfg: &LoraConfig) -> Tensor<2> {
        let mut y = x.clone().matmul(self.w.clone());
        if let Some(b) = &self.b {
            y = y + b.clone().unsqueeze_dim(0);
        }
        if let Some(l) = lora {
            y = y + l.delta(x, cfg);
        }
        y
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.w.dims()[0]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.w.dims()[1]
    }
}

/// One transformer block's frozen weights.
#[derive(Debug, Clone)]
pub struct Block {
    /// `attn_norm`.
    pub attn_norm: Tensor<1>,
    /// Projections in [`crate::lora::Target`] order: q, k, v, output, gate, up, down.
    pub proj: [Linear; 7],
    /// `ffn_norm`.
    pub ffn_norm: Tensor<1>,
}

/// The frozen base model: burn tensors on a burn device, or plain buffers for the native CPU
/// engine ([`crate::native`]).
#[derive(Debug, Clone)]
pub struct Base {
    /// Hyper-parameters.
    pub cfg: ModelConfig,
    device: Device,
    weights: Weights,
}

#[derive(Debug, Clone)]
enum Weights {
    Burn(Box<BurnWeights>),
    Native(Arc<NativeModel>),
}

/// The weights as burn tensors.
#[derive(Debug, Clone)]
struct BurnWeights {
    embd: Tensor<2>,
    blocks: Vec<Block>,
    out_norm: Tensor<1>,
    /// `[embd, vocab]`.
    head: Tensor<2>,
}

impl Base {
    /// The `(in, out)` sizes of every block's seven projections, in [`crate::lora::Target`]
    /// order, for [`LoraConfig::init`].
    pub fn lora_shapes(&self) -> Vec<[(usize, usize); 7]> {
        let c = &self.cfg;
        let (e, kv, f) = (c.embd, c.kv_heads * c.head_dim, c.ff);
        vec![[(e, e), (e, kv), (e, kv), (e, e), (e, f), (e, f), (f, e)]; c.layers]
    }

    /// Loads the weights for the native CPU engine ([`crate::native`]); `device` holds what
    /// burn still computes (the trainable factors, the optimiser, the objectives' scalars).
    pub fn load_native(path: &Path, device: &Device) -> Result<Self, TrainerError> {
        let model = NativeModel::load(path)?;
        Ok(Self {
            cfg: model.cfg.clone(),
            device: device.clone(),
            weights: Weights::Native(Arc::new(model)),
        })
    }

    /// The native engine's model, when this base was loaded for it.
    pub fn native(&self) -> Option<&NativeModel> {
        match &self.weights {
            Weights::Native(m) => Some(m),
            Weights::Burn(_) => None,
        }
    }

    /// Loads every tensor of `path` (dequantised by ggml) onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, TrainerError> {
        let reader = TensorReader::open(path)?;
        let cfg = ModelConfig::from_gguf(reader.header(), path)?;
        let vec1 = |name: &str, n: usize| -> Result<Tensor<1>, TrainerError> {
            let (dims, data) = reader.read_f32(name)?;
            check_dims(path, name, &dims, &[n])?;
            Ok(Tensor::from_data(TensorData::new(data, [n]), device))
        };
        // A GGUF matrix with dims [in, out] is `out` rows of `in`: transpose to [in, out].
        let mat = |name: &str, d_in: usize, d_out: usize| -> Result<Tensor<2>, TrainerError> {
            let (dims, data) = reader.read_f32(name)?;
            check_dims(path, name, &dims, &[d_in, d_out])?;
            let mut t = vec![0f32; data.len()];
            for o in 0..d_out {
                for i in 0..d_in {
                    t[i * d_out + o] = data[o * d_in + i];
                }
            }
            Ok(Tensor::from_data(TensorData::new(t, [d_in, d_out]), device))
        };
        let (e, kv, f, v) = (cfg.embd, cfg.kv_heads * cfg.head_dim, cfg.ff, cfg.vocab);
        let (edims, embd_data) = reader.read_f32("token_embd.weight")?;
        check_dims(path, "token_embd.weight", &edims, &[e, v])?;
        let embd = Tensor::from_data(TensorData::new(embd_data, [v, e]), device);
        let has = |n: &str| reader.header().tensor(n).is_some();
        let mut blocks = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let p = |s: &str| format!("blk.{l}.{s}");
            let shapes = [(e, e), (e, kv), (e, kv), (e, e), (e, f), (e, f), (f, e)];
            let mut proj = Vec::with_capacity(7);
            for (name, (di, dout)) in PROJ_NAMES.iter().zip(shapes) {
                let w = mat(&p(&format!("{name}.weight")), di, dout)?;
                let bias = p(&format!("{name}.bias"));
                let b = if has(&bias) {
                    Some(vec1(&bias, dout)?)
                } else {
                    None
                };
                proj.push(Linear { w, b });
            }
            blocks.push(Block {
                attn_norm: vec1(&p("attn_norm.weight"), e)?,
                proj: proj.try_into().expect("seven projections"),
                ffn_norm: vec1(&p("ffn_norm.weight"), e)?,
            });
        }
        let head = if has("output.weight") {
            mat("output.weight", e, v)?
        } else {
            embd.clone().transpose()
        };
        Ok(Self {
            weights: Weights::Burn(Box::new(BurnWeights {
                out_norm: vec1("output_norm.weight", e)?,
                embd,
                blocks,
                head,
            })),
            cfg,
            device: device.clone(),
        })
    }

    /// The device the weights live on (for a native base: where burn's part runs).
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// The last hidden state (after the output norm), `[tokens, embd]`. On a native base this
    /// is a constant: no gradient flows back through it (training goes through
    /// [`crate::native`] instead).
    pub fn hidden(&self, tokens: &[u32], lora: Option<(&Adapters, &LoraConfig)>) -> Tensor<2> {
        let w = match &self.weights {
            Weights::Burn(w) => w,
            Weights::Native(m) => {
                let lw = lora.map(|(a, c)| LoraWeights::from_adapters(a, c));
                let (h, _) = m
                    .forward(tokens, lw.as_ref(), false)
                    .expect("token ids are checked when the data is read");
                return Tensor::from_data(
                    TensorData::new(h, [tokens.len(), self.cfg.embd]),
                    &self.device,
                );
            }
        };
        let device = self.device();
        let cfg = &self.cfg;
        let s = tokens.len();
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [s]), &device);
        let mut x = w.embd.clone().select(0, ids);
        let (cos, sin) = rope_tables(cfg, s, &device);
        // Causal mask as an additive bias: 0 on and below the diagonal, a large negative
        // number above it (exp underflows to exactly 0, as with -inf). burn's `tril_mask`
        // marks the elements *outside* the lower triangle, i.e. the future positions.
        let mask = Tensor::<3>::zeros([1, s, s], &device)
            .mask_fill(Tensor::<3, Bool>::tril_mask([1, s, s], 0, &device), -1e30);
        let scale = (cfg.head_dim as f64).powf(-0.5);
        let default_cfg = LoraConfig::default();
        for (l, blk) in w.blocks.iter().enumerate() {
            let (ad, lcfg) = match lora {
                Some((a, c)) => (a.blocks.get(l), c),
                None => (None, &default_cfg),
            };
            let pl = |i: usize| ad.and_then(|b| b.get(i));
            let h = rms_norm(x.clone(), &blk.attn_norm, cfg.eps);
            let q = blk.proj[0].forward(h.clone(), pl(0), lcfg);
            let k = blk.proj[1].forward(h.clone(), pl(1), lcfg);
            let v = blk.proj[2].forward(h, pl(2), lcfg);
            let q = heads(q, cfg.heads, cfg.head_dim);
            let k = heads(k, cfg.kv_heads, cfg.head_dim);
            let v = heads(v, cfg.kv_heads, cfg.head_dim);
            let q = apply_rope(q, &cos, &sin, cfg.rope);
            let k = apply_rope(k, &cos, &sin, cfg.rope);
            let rep = cfg.heads / cfg.kv_heads;
            let k = repeat_kv(k, rep);
            let v = repeat_kv(v, rep);
            let att = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
            let att = att + mask.clone();
            let att = softmax(att, 2);
            let o = att.matmul(v).swap_dims(0, 1).reshape([s, cfg.embd]);
            x = x + blk.proj[3].forward(o, pl(3), lcfg);
            let h = rms_norm(x.clone(), &blk.ffn_norm, cfg.eps);
            let g = silu(blk.proj[4].forward(h.clone(), pl(4), lcfg));
            let u = blk.proj[5].forward(h, pl(5), lcfg);
            x = x + blk.proj[6].forward(g * u, pl(6), lcfg);
        }
        rms_norm(x, &w.out_norm, cfg.eps)
    }

    /// Logits after every token, `[tokens, vocab]`.
    pub fn logits(&self, tokens: &[u32], lora: Option<(&Adapters, &LoraConfig)>) -> Tensor<2> {
        self.project(self.hidden(tokens, lora))
    }

    /// The output head applied to hidden states: `[n, embd]` -> `[n, vocab]`.
    pub fn project(&self, h: Tensor<2>) -> Tensor<2> {
        match &self.weights {
            Weights::Burn(w) => h.matmul(w.head.clone()),
            Weights::Native(m) => {
                let n = h.dims()[0];
                let logits = m.project(&to_vec2(h).0);
                Tensor::from_data(TensorData::new(logits, [n, self.cfg.vocab]), &self.device)
            }
        }
    }
}

fn rms_norm(x: Tensor<2>, w: &Tensor<1>, eps: f32) -> Tensor<2> {
    let ms = x.clone().square().mean_dim(1);
    x * ms.add_scalar(eps).sqrt().recip() * w.clone().unsqueeze_dim(0)
}

/// `[s, n*d]` -> `[n, s, d]`.
fn heads(x: Tensor<2>, n: usize, d: usize) -> Tensor<3> {
    let s = x.dims()[0];
    x.reshape([s, n, d]).swap_dims(0, 1)
}

/// `[kv, s, d]` -> `[kv*rep, s, d]`, head h reading KV head h / rep (as ggml broadcasts).
fn repeat_kv(x: Tensor<3>, rep: usize) -> Tensor<3> {
    if rep == 1 {
        return x;
    }
    let [n, s, d] = x.dims();
    x.unsqueeze_dim::<4>(1)
        .repeat_dim(1, rep)
        .reshape([n * rep, s, d])
}

/// cos and sin of position * base^(-2i/d), `[1, s, d/2]` ([`crate::config::rope_tables`]).
fn rope_tables(cfg: &ModelConfig, s: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
    let half = cfg.head_dim / 2;
    let (c, si) = crate::config::rope_tables(cfg, s);
    (
        Tensor::from_data(TensorData::new(c, [1, s, half]), device),
        Tensor::from_data(TensorData::new(si, [1, s, half]), device),
    )
}

/// Rotates `[n, s, d]` by the tables.
fn apply_rope(x: Tensor<3>, cos: &Tensor<3>, sin: &Tensor<3>, rope: Rope) -> Tensor<3> {
    let [n, s, d] = x.dims();
    let half = d / 2;
    match rope {
        Rope::Neox => {
            let x1 = x.clone().narrow(2, 0, half);
            let x2 = x.narrow(2, half, half);
            let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
            let r2 = x2 * cos.clone() + x1 * sin.clone();
            Tensor::cat(vec![r1, r2], 2)
        }
        Rope::Norm => {
            let x = x.reshape([n, s, half, 2]);
            let x1 = x.clone().narrow(3, 0, 1).reshape([n, s, half]);
            let x2 = x.narrow(3, 1, 1).reshape([n, s, half]);
            let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
            let r2 = x2 * cos.clone() + x1 * sin.clone();
            Tensor::cat(vec![r1.unsqueeze_dim::<4>(3), r2.unsqueeze_dim::<4>(3)], 3)
                .reshape([n, s, d])
        }
    }
}

/// Writes an F32 copy of a GGUF model: every tensor dequantised by ggml, every metadata entry
/// (tokenizer arrays included) copied as stored, `general.file_type` set to 0 (all F32). The
/// strict parity checks run on such copies of the real quantised models.
pub fn write_f32_copy(src: &Path, dst: &Path) -> Result<(), TrainerError> {
    use retroformer_gguf::{GgufWriter, WriteValue};
    use std::os::unix::fs::FileExt;
    let reader = TensorReader::open(src)?;
    let file = std::fs::File::open(src).map_err(|e| TrainerError::Io {
        path: src.display().to_string(),
        source: e,
    })?;
    let mut w = GgufWriter::new();
    for (key, kv) in &reader.header().metadata {
        if key == "general.alignment" {
            continue;
        }
        if key == "general.file_type" {
            w.kv(key, WriteValue::U32(0));
            continue;
        }
        let mut raw = vec![0u8; (kv.span.1 - kv.span.0) as usize];
        file.read_exact_at(&mut raw, kv.span.0)
            .map_err(|e| TrainerError::Io {
                path: src.display().to_string(),
                source: e,
            })?;
        w.kv(key, WriteValue::Raw(raw));
    }
    for t in &reader.header().tensors {
        let (dims, data) = reader.read_f32(&t.name)?;
        w.tensor_f32(&t.name, &dims, &data);
    }
    w.write(dst).map_err(|e| TrainerError::Io {
        path: dst.display().to_string(),
        source: e,
    })
}
