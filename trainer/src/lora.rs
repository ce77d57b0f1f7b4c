//! LoRA factors on the attention and MLP projections (their export is [`crate::export`]).
//!
//! A projection `y = x W` (W as `[in, out]`) becomes `y = x W + (alpha / r) · drop(x) A B` with
//! `A: [in, r]` and `B: [r, out]`; `B` starts at zero, so training starts from the base model.

use burn::module::{Module, Param};
use std::cell::Cell;

use burn::tensor::{Device, Tensor, TensorData};
use retroformer_core::rng::SplitMix64;

use crate::TrainerError;

/// A projection LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `attn_q`.
    Q,
    /// `attn_k`.
    K,
    /// `attn_v`.
    V,
    /// `attn_output`.
    O,
    /// `ffn_gate`.
    Gate,
    /// `ffn_up`.
    Up,
    /// `ffn_down`.
    Down,
}

impl Target {
    /// All seven, in block order.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// Index into a block's projections.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The short name used on the command line (`q,k,v,o,gate,up,down`).
    pub fn name(self) -> &'static str {
        ["q", "k", "v", "o", "gate", "up", "down"][self.index()]
    }

    /// Parses a comma-separated list of short names (or `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Target>, TrainerError> {
        if s.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let t = Self::ALL
                .into_iter()
                .find(|t| t.name() == part)
                .ok_or_else(|| TrainerError::Config {
                    field: "targets".into(),
                    reason: format!("'{part}' is not one of q, k, v, o, gate, up, down, all"),
                })?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.is_empty() {
            return Err(TrainerError::Config {
                field: "targets".into(),
                reason: "no target modules given".into(),
            });
        }
        out.sort();
        Ok(out)
    }
}

/// LoRA hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank r.
    pub rank: usize,
    /// Alpha; the update is scaled by alpha / r.
    pub alpha: f32,
    /// Dropout on the adapter's input while training (0 disables it).
    pub dropout: f32,
    /// Adapted projections.
    pub targets: Vec<Target>,
    /// Dropout is applied only while this is set.
    pub training: bool,
    /// State of the generator that draws dropout masks (SplitMix64). The training loop sets it
    /// from (seed, step), so masks never depend on other users of burn's global generator.
    pub rng: Cell<u64>,
}

impl Default for LoraConfig {
    /// Rank 8, alpha 16, no dropout, all seven projections.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
            training: false,
            rng: Cell::new(0),
        }
    }
}

impl LoraConfig {
    /// alpha / r.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Checks the values a user can get wrong.
    pub fn validate(&self) -> Result<(), TrainerError> {
        let bad = |field: &str, reason: String| TrainerError::Config {
            field: field.into(),
            reason,
        };
        if self.rank == 0 || self.rank > 1024 {
            return Err(bad("rank", format!("{}; expected 1 to 1024", self.rank)));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(bad(
                "alpha",
                format!("{}; expected a positive number", self.alpha),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(
                "dropout",
                format!("{}; expected 0 <= p < 1", self.dropout),
            ));
        }
        Ok(())
    }

    /// Initialises adapters for a model whose blocks' projections have the `(in, out)` sizes
    /// `shapes` (in [`Target`] order; `Base::lora_shapes`): A uniform in ±1/sqrt(in)
    /// (Kaiming-uniform with a = sqrt(5), as PEFT), B zero. The values depend only on `seed`.
    pub fn init(
        &self,
        shapes: &[[(usize, usize); 7]],
        seed: u64,
        device: &Device,
    ) -> Result<Adapters, TrainerError> {
        self.validate()?;
        let mut rng = SplitMix64::new(seed ^ 0x1f0a_5c3d_9e37_79b9);
        let blocks = shapes
            .iter()
            .map(|blk| BlockLora {
                proj: Target::ALL
                    .iter()
                    .map(|t| {
                        self.targets.contains(t).then(|| {
                            let (d_in, d_out) = blk[t.index()];
                            let bound = 1.0 / (d_in as f32).sqrt();
                            let a: Vec<f32> = (0..d_in * self.rank)
                                .map(|_| (rng.unit_f32() * 2.0 - 1.0) * bound)
                                .collect();
                            LinearLora {
                                a: Param::from_tensor(Tensor::from_data(
                                    TensorData::new(a, [d_in, self.rank]),
                                    device,
                                )),
                                b: Param::from_tensor(Tensor::zeros([self.rank, d_out], device)),
                            }
                        })
                    })
                    .collect(),
            })
            .collect();
        Ok(Adapters { blocks })
    }
}

/// One projection's factors.
#[derive(Module, Debug)]
pub struct LinearLora {
    /// `[in, r]`.
    pub a: Param<Tensor<2>>,
    /// `[r, out]`.
    pub b: Param<Tensor<2>>,
}

impl LinearLora {
    /// `(alpha / r) · drop(x) A B`.
    pub fn delta(&self, x: Tensor<2>, cfg: &LoraConfig) -> Tensor<2> {
        let x = if cfg.training && cfg.dropout > 0.0 {
            let keep = 1.0 - cfg.dropout;
            let mut rng = SplitMix64::new(cfg.rng.get());
            let [r, c] = x.dims();
            let mask: Vec<f32> = (0..r * c)
                .map(|_| {
                    if rng.unit_f32() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect();
            cfg.rng.set(rng.state());
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [r, c]), &x.device());
            x * mask
        } else {
            x
        };
        x.matmul(self.a.val())
            .matmul(self.b.val())
            .mul_scalar(cfg.scale())
    }
}

/// The factors of one block, indexed by [`Target::index`]; `None` where not adapted.
#[derive(Module, Debug)]
pub struct BlockLora {
    /// Seven entries.
    pub proj: Vec<Option<LinearLora>>,
}

impl BlockLora {
    /// The factors of projection `i`, if adapted.
    pub fn get(&self, i: usize) -> Option<&LinearLora> {
        self.proj.get(i).and_then(Option::as_ref)
    }
}

/// Every block's factors: the trainable module.
#[derive(Module, Debug)]
pub struct Adapters {
    /// One per block.
    pub blocks: Vec<BlockLora>,
}

/// A 2-D tensor's values, row-major, with its shape.
pub fn to_vec2(t: Tensor<2>) -> (Vec<f32>, [usize; 2]) {
    let dims = t.dims();
    let data: TensorData = t.into_data();
    let v = data
        .convert::<f32>()
        .as_slice::<f32>()
        .expect("f32 data")
        .to_vec();
    (v, dims)
}

/// `rows x cols` row-major -> `cols x rows` row-major.
pub(crate) fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}
