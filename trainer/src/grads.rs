//! One step's gradients: an example's loss and gradients through burn's autodiff or the native
//! engine, their sum over a batch, and clipping by the global norm.

use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::tensor::Device;

use crate::data::Tokenized;
use crate::lora::{to_vec2, LoraConfig};
use crate::model::Base;
use crate::native::{LoraWeights, NativeModel};
use crate::objective::{
    example_loss, loss_of, scalar_head, score_of, to_vec1, ExampleStats, Objective, Trainable,
};
use crate::TrainerError;

/// Ids of the trainable 2-D and 1-D parameters, for global-norm clipping.
fn param_ids(state: &Trainable) -> (Vec<ParamId>, Vec<ParamId>) {
    let mut two = Vec::new();
    for blk in &state.lora.blocks {
        for f in blk.proj.iter().flatten() {
            two.push(f.a.id);
            two.push(f.b.id);
        }
    }
    let mut one = Vec::new();
    if let Some(h) = &state.head {
        two.push(h.w.id);
        one.push(h.b.id);
    }
    (two, one)
}

pub(crate) fn clip_global(grads: &mut GradientsParams, state: &Trainable, max_norm: f64) -> f64 {
    let (two, one) = param_ids(state);
    let mut sq = 0f64;
    for id in &two {
        if let Some(g) = grads.get::<2>(*id) {
            sq += g.square().sum().into_scalar::<f64>();
        }
    }
    for id in &one {
        if let Some(g) = grads.get::<1>(*id) {
            sq += g.square().sum().into_scalar::<f64>();
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let f = max_norm / (norm + 1e-6);
        for id in two {
            if let Some(g) = grads.remove::<2>(id) {
                grads.register(id, g.mul_scalar(f));
            }
        }
        for id in one {
            if let Some(g) = grads.remove::<1>(id) {
                grads.register(id, g.mul_scalar(f));
            }
        }
    }
    norm
}

/// One example of a step: its loss and the gradients of the trainable parameters.
pub(crate) struct Example<'a> {
    pub(crate) objective: &'a Objective,
    pub(crate) base: &'a Base,
    /// Examples per step (each loss is divided by it).
    pub(crate) batch: usize,
    pub(crate) state: &'a Trainable,
    pub(crate) lora: &'a LoraConfig,
    pub(crate) ex: &'a Tokenized,
    pub(crate) stats: &'a ExampleStats,
    /// The step being taken (from 1) and the example's index, for errors.
    pub(crate) step: u64,
    pub(crate) index: usize,
}

impl Example<'_> {
    fn finite(&self, loss: &burn::tensor::Tensor<1>) -> Result<f64, TrainerError> {
        let value = loss.clone().into_scalar::<f64>();
        if !value.is_finite() {
            return Err(TrainerError::NonFinite {
                step: self.step,
                what: format!("the loss of example {} is {value}", self.index),
            });
        }
        Ok(value)
    }

    /// Through burn's autodiff graph of the whole model.
    pub(crate) fn burn_grads(&self) -> Result<(f64, GradientsParams), TrainerError> {
        let loss = example_loss(
            self.objective,
            self.base,
            self.state,
            self.lora,
            self.ex,
            self.stats,
            self.batch,
        )?;
        let value = self.finite(&loss)?;
        Ok((
            value,
            GradientsParams::from_grads(loss.backward(), self.state),
        ))
    }

    /// Through the native engine: its forward gives the response's log-probabilities (or the
    /// last hidden state), burn takes the objective's loss and its gradient with respect to
    /// them, and the engine's backward turns that into the factors' gradients.
    pub(crate) fn native_grads(
        &self,
        model: &NativeModel,
        factors: &LoraWeights,
        device: &Device,
    ) -> Result<(f64, GradientsParams), TrainerError> {
        use burn::tensor::{Tensor, TensorData};
        let ex = self.ex;
        let (e, n) = (model.cfg.embd, ex.tokens.len());
        let (hidden, tape) = model.forward(&ex.tokens, Some(factors), true)?;
        let tape = tape.expect("kept");
        let (value, d_hidden, mut grads) = if self.objective.scores() {
            let last = Tensor::<2>::from_data(
                TensorData::new(hidden[(n - 1) * e..].to_vec(), [1, e]),
                device,
            )
            .require_grad();
            let score = score_of(scalar_head(self.state)?, last.clone());
            let loss = loss_of(self.objective, score, ex, self.stats, self.batch, device)?;
            let value = self.finite(&loss)?;
            let mut g = loss.backward();
            let d_last = to_vec2(
                last.grad(&g)
                    .expect("the score depends on the hidden state"),
            )
            .0;
            let mut d_hidden = vec![0f32; n * e];
            d_hidden[(n - 1) * e..].copy_from_slice(&d_last);
            let params = GradientsParams::from_module(&mut g, self.state);
            (value, d_hidden, params)
        } else {
            let start = ex.prompt_len.max(1);
            let picked = model.logprobs(&hidden, &ex.tokens, start);
            let m = picked.logprobs.len();
            let lp = Tensor::<1>::from_data(TensorData::new(picked.logprobs.clone(), [m]), device)
                .require_grad();
            let loss = loss_of(
                self.objective,
                lp.clone(),
                ex,
                self.stats,
                self.batch,
                device,
            )?;
            let value = self.finite(&loss)?;
            let g = loss.backward();
            let d_lp = to_vec1(
                lp.grad(&g)
                    .expect("the loss depends on the log-probabilities"),
            );
            let d_hidden = model.logprobs_back(picked, &ex.tokens, &d_lp);
            (value, d_hidden, GradientsParams::new())
        };
        let inner = device.clone().inner();
        let factor_grads = model.backward(tape, factors, &d_hidden);
        for (blk, fg) in self.state.lora.blocks.iter().zip(factor_grads) {
            for (f, g) in blk.proj.iter().zip(fg) {
                let (Some(f), Some(g)) = (f, g) else { continue };
                let tensor = |v: Vec<f32>, dims: [usize; 2]| {
                    Tensor::<2>::from_data(TensorData::new(v, dims), &inner)
                };
                grads.register(f.a.id, tensor(g.a, f.a.val().dims()));
                grads.register(f.b.id, tensor(g.b, f.b.val().dims()));
            }
        }
        Ok((value, grads))
    }
}

pub(crate) fn add_grads(
    mut acc: GradientsParams,
    mut g: GradientsParams,
    state: &Trainable,
) -> GradientsParams {
    let (two, one) = param_ids(state);
    for id in two {
        if let Some(x) = g.remove::<2>(id) {
            let sum = match acc.remove::<2>(id) {
                Some(y) => y + x,
                None => x,
            };
            acc.register(id, sum);
        }
    }
    for id in one {
        if let Some(x) = g.remove::<1>(id) {
            let sum = match acc.remove::<1>(id) {
                Some(y) => y + x,
                None => x,
            };
            acc.register(id, sum);
        }
    }
    acc
}
