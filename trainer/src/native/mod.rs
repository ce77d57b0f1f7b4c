//! The native CPU engine: a hand-written forward and backward pass of the `llama` and `qwen2`
//! models for LoRA training, on plain `f32` buffers.
//!
//! Why not burn's autodiff: the base is frozen, so a step needs only the input gradients of
//! the base's projections and the gradients of the small LoRA factors. A general autodiff
//! graph pays for every elementwise op as its own pass and allocation, recomputes `exp` in
//! the softmax backward and keeps `s × s` attention matrices per head and layer; measured, that
//! made burn-flex 0.5-0.7x PyTorch on SmolLM2 (issue 26). Here every heavy op is one gemm
//! call on rayon's pool or one row-parallel loop; attention keeps its probabilities for the
//! backward, but only the causal blocks (64 query rows over the keys they see, about half of
//! `s × s` per head and layer; [`kernels::attention`]); the normed inputs and the SwiGLU
//! product are recomputed in the backward instead of kept, and nothing but what the backward
//! needs outlives a layer.
//!
//! The engine computes; burn still owns the trainable parameters, the objectives' scalar
//! math and the optimiser: [`crate::train`] hands the engine the current LoRA factors, takes
//! the gradient of the loss with respect to the engine's outputs from burn (the response's
//! log-probabilities, or the last hidden state for a reward model), and registers the
//! engine's factor gradients with burn's optimiser. Parity with burn's path (log-probabilities
//! and every factor's gradient) is tested in `trainer/tests/native.rs`.

pub mod kernels;
pub mod profile;

use std::path::Path;

use rayon::prelude::*;
use retroformer_llama::TensorReader;

use crate::config::{check_dims, rope_tables, ModelConfig, PROJ_NAMES};
use crate::lora::{to_vec2, Adapters, LoraConfig};
use crate::TrainerError;
use kernels::{matmul, Heads, Threads, View};
use profile::{time, Phase};

/// A frozen projection `y = x Wᵀ + b`, W kept as GGUF stores it: `[out, in]`.
#[derive(Debug)]
struct Linear {
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    d_in: usize,
    d_out: usize,
}

#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    /// q, k, v, output, gate, up, down ([`crate::lora::Target`] order).
    proj: [Linear; 7],
    ffn_norm: Vec<f32>,
}

/// A frozen base model on plain buffers.
#[derive(Debug)]
pub struct NativeModel {
    /// Hyper-parameters.
    pub cfg: ModelConfig,
    /// `[vocab, embd]`.
    embd: Vec<f32>,
    /// `[vocab, embd]`; `None` when the output head is tied to the embedding.
    head: Option<Vec<f32>>,
    out_norm: Vec<f32>,
    blocks: Vec<Block>,
    /// The logits buffer of the last backward, for the next forward ([`Self::spare_logits`]).
    spare: std::sync::Mutex<Option<Vec<f32>>>,
}

/// One projection's LoRA factors (or their gradients): A `[in, r]`, B `[r, out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// `[in, r]`.
    pub a: Vec<f32>,
    /// `[r, out]`.
    pub b: Vec<f32>,
}

/// Every block's factors, `None` where a projection is not adapted.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    /// Rank r.
    pub rank: usize,
    /// alpha / r.
    pub scale: f32,
    /// Per block, in [`crate::lora::Target`] order.
    pub blocks: Vec<[Option<Factors>; 7]>,
}

impl LoraWeights {
    /// A copy of burn's adapters (a few MB at rank 8).
    pub fn from_adapters(adapters: &Adapters, cfg: &LoraConfig) -> Self {
        let blocks = adapters
            .blocks
            .iter()
            .map(|blk| {
                std::array::from_fn(|i| {
                    blk.get(i).map(|f| Factors {
                        a: to_vec2(f.a.val()).0,
                        b: to_vec2(f.b.val()).0,
                    })
                })
            })
            .collect();
        Self {
            rank: cfg.rank,
            scale: cfg.scale(),
            blocks,
        }
    }

    fn get(&self, layer: usize, i: usize) -> Option<&Factors> {
        self.blocks.get(layer).and_then(|b| b[i].as_ref())
    }
}

/// What one layer's backward needs from its forward.
struct LayerTape {
    /// The layer's input.
    x: Vec<f32>,
    inv1: Vec<f32>,
    /// `x A` of each adapted projection's input, `[s, r]`.
    xa: [Vec<f32>; 7],
    /// q and k after RoPE, v.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities (causal blocks, see [`kernels::attention`]).
    probs: Vec<f32>,
    /// Attention output (input of the output projection).
    o: Vec<f32>,
    /// The residual stream between attention and MLP.
    x_mid: Vec<f32>,
    inv2: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
}

/// A forward pass kept for its backward.
pub struct Tape {
    s: usize,
    layers: Vec<LayerTape>,
    /// Input of the output norm, and its inverse RMS.
    x_final: Vec<f32>,
    inv_final: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The log-softmax over the vocabulary of the response rows, kept for its backward.
pub struct Picked {
    /// Log-probability of each response token.
    pub logprobs: Vec<f32>,
    probs: Vec<f32>,
    start: usize,
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(16_384)
        .zip(src.par_chunks(16_384))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(a, b)| *a += b));
}

/// Asks glibc to keep freed memory for reuse instead of handing it back to the kernel.
///
/// Why: a step allocates its tape (hundreds of MB: every layer's activations) and frees it at
/// the end of the backward. With glibc's defaults the freed top of the heap is trimmed and
/// blocks from 128 KB up are mmapped, so every step paid a page fault and a cleared page per
/// 4 KB again. Peak RSS does not change: the next step reuses the same memory.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator tunables; it is called once, before the
        // engine allocates.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        });
    }
}

impl NativeModel {
    /// Reads every tensor of `path`, dequantised by ggml.
    pub fn load(path: &Path) -> Result<Self, TrainerError> {
        keep_freed_memory();
        let reader = TensorReader::open(path)?;
        let cfg = ModelConfig::from_gguf(reader.header(), path)?;
        let read = |name: &str, want: &[usize]| -> Result<Vec<f32>, TrainerError> {
            let (dims, data) = reader.read_f32(name)?;
            check_dims(path, name, &dims, want)?;
            Ok(data)
        };
        let has = |n: &str| reader.header().tensor(n).is_some();
        let (e, kv, f, v) = (cfg.embd, cfg.kv_heads * cfg.head_dim, cfg.ff, cfg.vocab);
        let mut blocks = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let p = |s: &str| format!("blk.{l}.{s}");
            let shapes = [(e, e), (e, kv), (e, kv), (e, e), (e, f), (e, f), (f, e)];
            let mut proj = Vec::with_capacity(7);
            for (name, (d_in, d_out)) in PROJ_NAMES.iter().zip(shapes) {
                let bias = p(&format!("{name}.bias"));
                proj.push(Linear {
                    w: read(&p(&format!("{name}.weight")), &[d_in, d_out])?,
                    b: if has(&bias) {
                        Some(read(&bias, &[d_out])?)
                    } else {
                        None
                    },
                    d_in,
                    d_out,
                });
            }
            blocks.push(Block {
                attn_norm: read(&p("attn_norm.weight"), &[e])?,
                proj: proj.try_into().expect("seven projections"),
                ffn_norm: read(&p("ffn_norm.weight"), &[e])?,
            });
        }
        Ok(Self {
            embd: read("token_embd.weight", &[e, v])?,
            head: if has("output.weight") {
                Some(read("output.weight", &[e, v])?)
            } else {
                None
            },
            out_norm: read("output_norm.weight", &[e])?,
            blocks,
            cfg,
            spare: Default::default(),
        })
    }

    /// `[vocab, embd]`.
    fn head(&self) -> &[f32] {
        self.head.as_deref().unwrap_or(&self.embd)
    }

    fn heads(&self, s: usize) -> Heads {
        Heads {
            s,
            heads: self.cfg.heads,
            kv: self.cfg.kv_heads,
            d: self.cfg.head_dim,
        }
    }

    /// The last hidden state (after the output norm), `[tokens, embd]`, and the tape for the
    /// backward when `keep`.
    pub fn forward(
        &self,
        tokens: &[u32],
        lora: Option<&LoraWeights>,
        keep: bool,
    ) -> Result<(Vec<f32>, Option<Tape>), TrainerError> {
        let (e, s) = (self.cfg.embd, tokens.len());
        if tokens.is_empty() {
            return Err(TrainerError::Config {
                field: "data".into(),
                reason: "an empty token sequence".into(),
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(TrainerError::Config {
                field: "data".into(),
                reason: format!(
                    "token id {t} is outside the vocabulary ({})",
                    self.cfg.vocab
                ),
            });
        }
        let mut x = vec![0f32; s * e];
        for (row, &t) in x.chunks_mut(e).zip(tokens) {
            row.copy_from_slice(&self.embd[t as usize * e..][..e]);
        }
        let (cos, sin) = rope_tables(&self.cfg, s);
        let mut layers = Vec::new();
        for l in 0..self.cfg.layers {
            let (next, tape) = self.layer(l, x, lora, &cos, &sin);
            x = next;
            if keep {
                layers.push(tape);
            }
        }
        let mut hf = vec![0f32; s * e];
        let mut inv_final = vec![0f32; s];
        time(Phase::Elementwise, || {
            kernels::rms_norm(&x, &self.out_norm, self.cfg.eps, &mut hf, &mut inv_final)
        });
        let tape = keep.then_some(Tape {
            s,
            layers,
            x_final: x,
            inv_final,
            cos,
            sin,
        });
        Ok((hf, tape))
    }

    /// `y = x Wᵀ + b + scale · (x A) B`; returns y and `x A` (empty when not adapted).
    fn linear(
        &self,
        lin: &Linear,
        f: Option<&Factors>,
        r: usize,
        scale: f32,
        x: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let s = x.len() / lin.d_in;
        let mut y = vec![0f32; s * lin.d_out];
        let xv = View::rows(x, s, lin.d_in);
        time(Phase::Projection, || {
            matmul(
                &mut y,
                lin.d_out,
                xv,
                View::rows(&lin.w, lin.d_out, lin.d_in).t(),
                1.0,
                false,
                Threads::Pool,
            );
            if let Some(b) = &lin.b {
                y.par_chunks_mut(lin.d_out)
                    .for_each(|row| row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv));
            }
        });
        let mut xa = Vec::new();
        if let Some(f) = f {
            time(Phase::Lora, || {
                xa = vec![0f32; s * r];
                matmul(
                    &mut xa,
                    r,
                    xv,
                    View::rows(&f.a, lin.d_in, r),
                    1.0,
                    false,
                    Threads::Pool,
                );
                matmul(
                    &mut y,
                    lin.d_out,
                    View::rows(&xa, s, r),
                    View::rows(&f.b, r, lin.d_out),
                    scale,
                    true,
                    Threads::Pool,
                );
            });
        }
        (y, xa)
    }

    /// Backward of [`Self::linear`]: `dx += dy W + scale · (dy Bᵀ) Aᵀ`, and the factors'
    /// gradients `dA = scale · xᵀ (dy Bᵀ)`, `dB = scale · (x A)ᵀ dy`.
    #[allow(clippy::too_many_arguments)]
    fn linear_back(
        &self,
        lin: &Linear,
        f: Option<&Factors>,
        r: usize,
        scale: f32,
        x: &[f32],
        xa: &[f32],
        dy: &[f32],
        mut dx: Option<&mut [f32]>,
    ) -> Option<Factors> {
        let s = dy.len() / lin.d_out;
        let dyv = View::rows(dy, s, lin.d_out);
        if let Some(dx) = dx.as_deref_mut() {
            time(Phase::Projection, || {
                matmul(
                    dx,
                    lin.d_in,
                    dyv,
                    View::rows(&lin.w, lin.d_out, lin.d_in),
                    1.0,
                    true,
                    Threads::Pool,
                )
            });
        }
        let f = f?;
        Some(time(Phase::Lora, || {
            let mut gb = vec![0f32; r * lin.d_out];
            matmul(
                &mut gb,
                lin.d_out,
                View::rows(xa, s, r).t(),
                dyv,
                scale,
                false,
                Threads::Pool,
            );
            let mut t = vec![0f32; s * r];
            matmul(
                &mut t,
                r,
                dyv,
                View::rows(&f.b, r, lin.d_out).t(),
                1.0,
                false,
                Threads::Pool,
            );
            let mut ga = vec![0f32; lin.d_in * r];
            let tv = View::rows(&t, s, r);
            matmul(
                &mut ga,
                r,
                View::rows(x, s, lin.d_in).t(),
                tv,
                scale,
                false,
                Threads::Pool,
            );
            if let Some(dx) = dx {
                matmul(
                    dx,
                    lin.d_in,
                    tv,
                    View::rows(&f.a, lin.d_in, r).t(),
                    scale,
                    true,
                    Threads::Pool,
                );
            }
            Factors { a: ga, b: gb }
        }))
    }

    fn layer(
        &self,
        l: usize,
        x: Vec<f32>,
        lora: Option<&LoraWeights>,
        cos: &[f32],
        sin: &[f32],
    ) -> (Vec<f32>, LayerTape) {
        let (cfg, blk) = (&self.cfg, &self.blocks[l]);
        let (e, s) = (cfg.embd, x.len() / cfg.embd);
        let (r, scale) = lora.map_or((0, 0.0), |w| (w.rank, w.scale));
        let fac = |i: usize| lora.and_then(|w| w.get(l, i));
        let mut h = vec![0f32; s * e];
        let mut inv1 = vec![0f32; s];
        time(Phase::Elementwise, || {
            kernels::rms_norm(&x, &blk.attn_norm, cfg.eps, &mut h, &mut inv1)
        });
        let (mut q, xa_q) = self.linear(&blk.proj[0], fac(0), r, scale, &h);
        let (mut k, xa_k) = self.linear(&blk.proj[1], fac(1), r, scale, &h);
        let (v, xa_v) = self.linear(&blk.proj[2], fac(2), r, scale, &h);
        time(Phase::Elementwise, || {
            kernels::rope(&mut q, cfg.head_dim, cos, sin, cfg.rope, false)
        });
        time(Phase::Elementwise, || {
            kernels::rope(&mut k, cfg.head_dim, cos, sin, cfg.rope, false)
        });
        let mut o = vec![0f32; s * e];
        let hd = self.heads(s);
        let mut probs = vec![0f32; hd.heads * hd.probs_len()];
        time(Phase::Attention, || {
            kernels::attention(&hd, &q, &k, &v, &mut o, &mut probs)
        });
        let (mut x_mid, xa_o) = self.linear(&blk.proj[3], fac(3), r, scale, &o);
        time(Phase::Elementwise, || add_into(&mut x_mid, &x));
        let mut inv2 = vec![0f32; s];
        time(Phase::Elementwise, || {
            kernels::rms_norm(&x_mid, &blk.ffn_norm, cfg.eps, &mut h, &mut inv2)
        });
        let (g, xa_g) = self.linear(&blk.proj[4], fac(4), r, scale, &h);
        let (u, xa_u) = self.linear(&blk.proj[5], fac(5), r, scale, &h);
        let mut act = vec![0f32; g.len()];
        time(Phase::Elementwise, || kernels::swiglu(&g, &u, &mut act));
        let (mut out, xa_d) = self.linear(&blk.proj[6], fac(6), r, scale, &act);
        time(Phase::Elementwise, || add_into(&mut out, &x_mid));
        let tape = LayerTape {
            x,
            inv1,
            xa: [xa_q, xa_k, xa_v, xa_o, xa_g, xa_u, xa_d],
            q,
            k,
            v,
            probs,
            o,
            x_mid,
            inv2,
            g,
            u,
        };
        (out, tape)
    }

    /// Backward of one layer: from the gradient of its output, the gradient of its input (empty
    /// for layer 0, whose input needs none); the factors' gradients go to `grads`.
    #[allow(clippy::too_many_arguments)]
    fn layer_back(
        &self,
        l: usize,
        t: &LayerTape,
        lora: &LoraWeights,
        cos: &[f32],
        sin: &[f32],
        d_out: Vec<f32>,
        grads: &mut [Option<Factors>; 7],
    ) -> Vec<f32> {
        let (cfg, blk) = (&self.cfg, &self.blocks[l]);
        let (e, s) = (cfg.embd, t.x.len() / cfg.embd);
        let (r, scale) = (lora.rank, lora.scale);
        let fac = |i: usize| lora.get(l, i);
        let mut back = |i: usize, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>| {
            grads[i] = self.linear_back(&blk.proj[i], fac(i), r, scale, x, &t.xa[i], dy, dx);
        };
        // MLP: out = x_mid + down(silu(g) u).
        let mut act = vec![0f32; t.g.len()];
        time(Phase::Elementwise, || kernels::swiglu(&t.g, &t.u, &mut act));
        let mut d_act = vec![0f32; t.g.len()];
        back(6, &act, &d_out, Some(&mut d_act));
        let (mut dg, mut du) = (act, vec![0f32; t.g.len()]);
        time(Phase::Elementwise, || {
            kernels::swiglu_back(&t.g, &t.u, &d_act, &mut dg, &mut du)
        });
        drop(d_act);
        let mut h = vec![0f32; s * e];
        let mut scratch = vec![0f32; s];
        time(Phase::Elementwise, || {
            kernels::rms_norm(&t.x_mid, &blk.ffn_norm, cfg.eps, &mut h, &mut scratch)
        });
        let mut dh = vec![0f32; s * e];
        back(4, &h, &dg, Some(&mut dh));
        back(5, &h, &du, Some(&mut dh));
        let mut d_mid = d_out;
        time(Phase::Elementwise, || {
            kernels::rms_norm_back(&t.x_mid, &blk.ffn_norm, &t.inv2, &dh, &mut d_mid)
        });
        // Attention: x_mid = x + output(attention(rope(q), rope(k), v)).
        let mut d_o = vec![0f32; s * e];
        back(3, &t.o, &d_mid, Some(&mut d_o));
        let kvw = cfg.kv_heads * cfg.head_dim;
        let (mut dq, mut dk, mut dv) =
            (vec![0f32; s * e], vec![0f32; s * kvw], vec![0f32; s * kvw]);
        time(Phase::Attention, || {
            kernels::attention_back(
                &self.heads(s),
                &t.q,
                &t.k,
                &t.v,
                &t.probs,
                &d_o,
                &mut dq,
                &mut dk,
                &mut dv,
            )
        });
        time(Phase::Elementwise, || {
            kernels::rope(&mut dq, cfg.head_dim, cos, sin, cfg.rope, true)
        });
        time(Phase::Elementwise, || {
            kernels::rope(&mut dk, cfg.head_dim, cos, sin, cfg.rope, true)
        });
        time(Phase::Elementwise, || {
            kernels::rms_norm(&t.x, &blk.attn_norm, cfg.eps, &mut h, &mut scratch)
        });
        // The first layer's input is the frozen embedding: its gradient is never used.
        if l == 0 {
            back(0, &h, &dq, None);
            back(1, &h, &dk, None);
            back(2, &h, &dv, None);
            return Vec::new();
        }
        dh.fill(0.0);
        back(0, &h, &dq, Some(&mut dh));
        back(1, &h, &dk, Some(&mut dh));
        back(2, &h, &dv, Some(&mut dh));
        time(Phase::Elementwise, || {
            kernels::rms_norm_back(&t.x, &blk.attn_norm, &t.inv1, &dh, &mut d_mid)
        });
        d_mid
    }

    /// The gradients of the LoRA factors, given the gradient of the loss with respect to the
    /// last hidden state `d_hidden` (`[tokens, embd]`).
    pub fn backward(
        &self,
        tape: Tape,
        lora: &LoraWeights,
        d_hidden: &[f32],
    ) -> Vec<[Option<Factors>; 7]> {
        let e = self.cfg.embd;
        let mut dx = vec![0f32; tape.s * e];
        time(Phase::Elementwise, || {
            kernels::rms_norm_back(
                &tape.x_final,
                &self.out_norm,
                &tape.inv_final,
                d_hidden,
                &mut dx,
            )
        });
        let mut grads: Vec<[Option<Factors>; 7]> =
            (0..self.cfg.layers).map(|_| Default::default()).collect();
        for (l, t) in tape.layers.iter().enumerate().rev() {
            dx = self.layer_back(l, t, lora, &tape.cos, &tape.sin, dx, &mut grads[l]);
        }
        grads
    }

    /// Logits of `hidden`'s rows (`[n, embd]` -> `[n, vocab]`).
    pub fn project(&self, hidden: &[f32]) -> Vec<f32> {
        let (e, v) = (self.cfg.embd, self.cfg.vocab);
        let n = hidden.len() / e;
        let mut logits = self.spare_logits(n * v);
        matmul(
            &mut logits,
            v,
            View::rows(hidden, n, e),
            View::rows(self.head(), v, e).t(),
            1.0,
            false,
            Threads::Pool,
        );
        logits
    }

    /// A buffer of `len` floats for logits: the one the last backward gave back when it is
    /// large enough. The logits of a sequence are hundreds of MB (512 × 151 936 for Qwen);
    /// a fresh allocation each step costs a page fault per 4 KB.
    fn spare_logits(&self, len: usize) -> Vec<f32> {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        match spare.take() {
            Some(mut b) if b.capacity() >= len => {
                b.clear();
                b.resize(len, 0.0);
                b
            }
            _ => vec![0f32; len],
        }
    }

    /// The log-probability of each response token (`tokens[start..]`, `start >= 1`) from the
    /// hidden states, kept for [`Self::logprobs_back`].
    pub fn logprobs(&self, hidden: &[f32], tokens: &[u32], start: usize) -> Picked {
        let e = self.cfg.embd;
        let n = tokens.len();
        let (probs, logprobs) = time(Phase::Head, || {
            let mut probs = self.project(&hidden[(start - 1) * e..(n - 1) * e]);
            let lp = kernels::log_softmax_pick(&mut probs, self.cfg.vocab, &tokens[start..]);
            (probs, lp)
        });
        Picked {
            logprobs,
            probs,
            start,
        }
    }

    /// The gradient with respect to the hidden states (`[tokens, embd]`), given `g`, the
    /// gradient of the loss with respect to each of [`Picked::logprobs`].
    pub fn logprobs_back(&self, picked: Picked, tokens: &[u32], g: &[f32]) -> Vec<f32> {
        let (e, v) = (self.cfg.embd, self.cfg.vocab);
        let Picked {
            mut probs, start, ..
        } = picked;
        let n = tokens.len();
        time(Phase::Head, || {
            kernels::log_softmax_pick_back(&mut probs, v, &tokens[start..], g);
            let mut dh = vec![0f32; n * e];
            let m = n - start;
            matmul(
                &mut dh[(start - 1) * e..],
                e,
                View::rows(&probs, m, v),
                View::rows(self.head(), v, e),
                1.0,
                false,
                Threads::Pool,
            );
            *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
            dh
        })
    }
}
