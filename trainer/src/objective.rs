//! The training objectives, each a loss on one tokenised example given batch statistics.
//!
//! A step averages the loss over `batch` examples (gradient accumulation, one example at a
//! time because sequences differ in length). Per-example losses are token means over the
//! response, so long and short responses count alike.

use burn::module::{Module, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::Tokenized;
use crate::lora::{Adapters, LoraConfig};
use crate::model::Base;
use crate::TrainerError;

/// What is trained.
#[derive(Module, Debug)]
pub struct Trainable {
    /// The LoRA factors.
    pub lora: Adapters,
    /// The reward model's scalar head (reward objective only).
    pub head: Option<ScalarHead>,
}

/// `h_last · w + b`: a scalar from the last token's hidden state.
#[derive(Module, Debug)]
pub struct ScalarHead {
    /// `[embd, 1]`.
    pub w: Param<Tensor<2>>,
    /// `[1]`.
    pub b: Param<Tensor<1>>,
}

impl ScalarHead {
    /// A zero-initialised head for width `embd`.
    pub fn new(embd: usize, device: &Device) -> Self {
        Self {
            w: Param::from_tensor(Tensor::zeros([embd, 1], device)),
            b: Param::from_tensor(Tensor::zeros([1], device)),
        }
    }
}

/// How the reward model reads the rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RewardMode {
    /// Binary classifier of `reward > threshold`, classes weighted to balance.
    Classify {
        /// Label boundary.
        threshold: f64,
    },
    /// Squared error on the reward.
    Regress,
}

/// A training objective and its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Masked cross-entropy on the response tokens (times the example's weight).
    Sft,
    /// RISE's reward-weighted regression: cross-entropy times exp(reward / tau); with `tau`
    /// unset, the weight stored in the data (`dataset rise` writes exp(r / tau) there).
    Rwr {
        /// Temperature.
        tau: Option<f64>,
    },
    /// A reward model: the LoRA base with a scalar head.
    Reward {
        /// Classification or regression.
        mode: RewardMode,
    },
    /// REINFORCE with a KL penalty to the frozen base; the baseline is the mean reward of the
    /// data's responses to the same prompt (several reflections on one failure), else the
    /// batch's mean reward.
    Pg {
        /// KL coefficient.
        beta: f64,
    },
    /// PPO: clipped probability ratio against the policy before the batch's first update
    /// (`epochs` updates per batch), advantage
    /// = reward minus the mean reward of the data's examples with the same prompt (a group
    /// baseline; else the batch mean), KL penalty to the frozen base.
    Ppo {
        /// Clip range epsilon.
        clip: f64,
        /// KL coefficient.
        beta: f64,
        /// Updates on each batch against the same old policy.
        epochs: usize,
    },
}

impl Objective {
    /// The name written into adapters and results.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Sft => "sft",
            Objective::Rwr { .. } => "rwr",
            Objective::Reward { .. } => "reward",
            Objective::Pg { .. } => "pg",
            Objective::Ppo { .. } => "ppo",
        }
    }

    /// Whether the model's output is a scalar score from a head on the last token (the
    /// reward model), not the response's log-probabilities.
    pub fn scores(&self) -> bool {
        matches!(self, Objective::Reward { .. })
    }

    /// Whether the loss compares the policy with itself (the old policy, the frozen base):
    /// those log-probabilities are taken without dropout.
    pub fn on_policy(&self) -> bool {
        matches!(self, Objective::Pg { .. } | Objective::Ppo { .. })
    }

    /// Whether the loss clips the ratio to the policy before the batch's first update (PPO).
    pub fn needs_old_policy(&self) -> bool {
        matches!(self, Objective::Ppo { .. })
    }

    /// Whether the loss is the response's (weighted) likelihood, so that a held-out loss
    /// means the same as the training loss.
    pub fn is_likelihood(&self) -> bool {
        matches!(self, Objective::Sft | Objective::Rwr { .. })
    }

    /// Updates taken on each batch: PPO's epochs, one for the others.
    pub fn updates_per_batch(&self) -> usize {
        match *self {
            Objective::Ppo { epochs, .. } => epochs.max(1),
            _ => 1,
        }
    }

    /// The label boundary of a reward classifier, whose classes are weighted to balance.
    pub fn class_threshold(&self) -> Option<f64> {
        match *self {
            Objective::Reward {
                mode: RewardMode::Classify { threshold },
            } => Some(threshold),
            _ => None,
        }
    }

    /// The KL coefficient to the frozen base (policy gradient, PPO).
    pub fn kl_beta(&self) -> Option<f64> {
        match *self {
            Objective::Pg { beta } | Objective::Ppo { beta, .. } => Some(beta),
            _ => None,
        }
    }

    /// Checks settings.
    pub fn validate(&self) -> Result<(), TrainerError> {
        let bad = |field: &str, reason: String| {
            Err(TrainerError::Config {
                field: field.into(),
                reason,
            })
        };
        match *self {
            Objective::Rwr { tau: Some(t) } if !(t.is_finite() && t > 0.0) => {
                bad("tau", format!("{t}; must be positive"))
            }
            Objective::Pg { beta } | Objective::Ppo { beta, .. }
                if !(beta.is_finite() && beta >= 0.0) =>
            {
                bad("beta", format!("{beta}; must be >= 0"))
            }
            Objective::Ppo { epochs, .. } if !(1..=64).contains(&epochs) => {
                bad("ppo-epochs", format!("{epochs}; expected 1 to 64"))
            }
            Objective::Ppo { clip, .. } if !(clip > 0.0 && clip < 1.0) => {
                bad("clip", format!("{clip}; expected 0 < clip < 1"))
            }
            _ => Ok(()),
        }
    }
}

/// Per-example context an objective needs beyond the example itself.
#[derive(Debug, Clone, Default)]
pub struct ExampleStats {
    /// Advantage (policy gradient, PPO).
    pub advantage: f64,
    /// Class weight (balanced reward classifier).
    pub class_weight: f64,
    /// Log-probabilities of the response under the policy at the start of the epoch (PPO).
    pub old_logprobs: Option<Vec<f32>>,
    /// Log-probabilities of the response under the frozen base (KL penalty).
    pub ref_logprobs: Option<Vec<f32>>,
}

/// log p(tokens[i] | tokens[..i]) for the response positions `prompt_len.max(1)..`, `[m]`.
pub fn response_logprobs(
    base: &Base,
    lora: Option<(&Adapters, &LoraConfig)>,
    ex: &Tokenized,
) -> Tensor<1> {
    let n = ex.tokens.len();
    let start = ex.prompt_len.max(1);
    let m = n - start;
    let h = base.hidden(&ex.tokens, lora).narrow(0, start - 1, m);
    let logp = log_softmax(base.project(h), 1);
    let targets: Vec<i64> = ex.tokens[start..].iter().map(|&t| t as i64).collect();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(targets, [m, 1]), &base.device());
    logp.gather(1, idx).reshape([m])
}

/// The loss of one example, already divided by the batch size.
pub fn example_loss(
    objective: &Objective,
    base: &Base,
    state: &Trainable,
    cfg: &LoraConfig,
    ex: &Tokenized,
    stats: &ExampleStats,
    batch: usize,
) -> Result<Tensor<1>, TrainerError> {
    let output = if objective.scores() {
        reward_score(base, &state.lora, scalar_head(state)?, cfg, &ex.tokens)
    } else {
        response_logprobs(base, Some((&state.lora, cfg)), ex)
    };
    loss_of(objective, output, ex, stats, batch, &base.device())
}

/// The reward model's head, or the error that the state lacks one.
pub fn scalar_head(state: &Trainable) -> Result<&ScalarHead, TrainerError> {
    state.head.as_ref().ok_or_else(|| TrainerError::Config {
        field: "objective".into(),
        reason: "the reward objective needs a scalar head".into(),
    })
}

/// The mean of the response's log-probabilities over the tokens that carry the loss: all of
/// them, or those of a segments example's mask.
fn masked_mean(logprobs: Tensor<1>, ex: &Tokenized, device: &Device) -> Tensor<1> {
    let Some(mask) = &ex.mask else {
        return logprobs.mean();
    };
    let n = mask.iter().filter(|&&m| m).count().max(1) as f32;
    let w: Vec<f32> = mask
        .iter()
        .map(|&m| if m { 1.0 / n } else { 0.0 })
        .collect();
    let w = Tensor::<1>::from_data(TensorData::new(w, [mask.len()]), device);
    (logprobs * w).sum()
}

/// The loss of one example (divided by the batch size) from the model's output for it: the
/// reward model's score `[1]` for [`Objective::Reward`], else the response's log-probabilities
/// `[m]` ([`response_logprobs`]). Whoever computed the output (burn's graph or the native
/// engine) takes the gradient back from there.
pub fn loss_of(
    objective: &Objective,
    output: Tensor<1>,
    ex: &Tokenized,
    stats: &ExampleStats,
    batch: usize,
    device: &Device,
) -> Result<Tensor<1>, TrainerError> {
    let b = batch as f64;
    let vector = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
    if ex.mask.is_some() && !matches!(objective, Objective::Sft | Objective::Rwr { .. }) {
        return Err(TrainerError::Config {
            field: "data".into(),
            reason: format!(
                "segments examples (a loss on some tokens only) train with sft or rwr, not {}",
                objective.name()
            ),
        });
    }
    Ok(match *objective {
        Objective::Sft => masked_mean(output, ex, device).mul_scalar(-ex.weight / b),
        Objective::Rwr { tau } => {
            let w = match tau {
                Some(t) => (ex.reward / t).exp(),
                None => ex.weight,
            };
            masked_mean(output, ex, device).mul_scalar(-w / b)
        }
        Objective::Reward { mode } => {
            let score = output;
            match mode {
                RewardMode::Classify { threshold } => {
                    let y = if ex.reward > threshold { 1.0 } else { 0.0 };
                    // Binary cross-entropy with logits, stable form:
                    // max(s, 0) - s*y + log(1 + exp(-|s|)).
                    let loss = score.clone().clamp_min(0.0) - score.clone().mul_scalar(y)
                        + score.abs().neg().exp().add_scalar(1.0).log();
                    loss.mul_scalar(stats.class_weight / b)
                }
                RewardMode::Regress => score.sub_scalar(ex.reward).square().mul_scalar(1.0 / b),
            }
        }
        Objective::Pg { beta } => {
            let lp = output;
            let mut loss = lp.clone().mean().mul_scalar(-stats.advantage / b);
            if beta > 0.0 {
                if let Some(r) = &stats.ref_logprobs {
                    loss = loss + kl_to_base(lp, vector(r)).mul_scalar(beta / b);
                }
            }
            loss
        }
        Objective::Ppo { clip, beta, .. } => {
            let lp = output;
            let old = stats
                .old_logprobs
                .as_ref()
                .ok_or_else(|| TrainerError::Config {
                    field: "objective".into(),
                    reason: "PPO needs the log-probabilities of the old policy".into(),
                })?;
            let ratio = (lp.clone() - vector(old)).exp();
            let a = stats.advantage;
            let unclipped = ratio.clone().mul_scalar(a);
            let clipped = ratio.clamp(1.0 - clip, 1.0 + clip).mul_scalar(a);
            let surrogate = unclipped.min_pair(clipped);
            let mut loss = surrogate.mean().mul_scalar(-1.0 / b);
            if beta > 0.0 {
                if let Some(r) = &stats.ref_logprobs {
                    loss = loss + kl_to_base(lp, vector(r)).mul_scalar(beta / b);
                }
            }
            loss
        }
    })
}

/// Token-mean KL from the policy to the frozen base by the k3 estimator,
/// exp(ref - lp) - (ref - lp) - 1: zero with a zero gradient where the two agree, and its
/// gradient, (1 - pi_ref / pi) grad lp, pulls the policy back towards the base (the plain
/// lp - ref would just push every response token down).
pub fn kl_to_base(lp: Tensor<1>, reference: Tensor<1>) -> Tensor<1> {
    let d = reference - lp;
    (d.clone().exp() - d).sub_scalar(1.0).mean()
}

/// The reward model's score of a sequence, `[1]`.
pub fn reward_score(
    base: &Base,
    lora: &Adapters,
    head: &ScalarHead,
    cfg: &LoraConfig,
    tokens: &[u32],
) -> Tensor<1> {
    let n = tokens.len();
    score_of(
        head,
        base.hidden(tokens, Some((lora, cfg))).narrow(0, n - 1, 1),
    )
}

/// The scalar head on the last hidden state `[1, embd]`: the score `[1]`.
pub fn score_of(head: &ScalarHead, last: Tensor<2>) -> Tensor<1> {
    last.matmul(head.w.val()).reshape([1]) + head.b.val()
}

/// A `[m]` tensor's values.
pub fn to_vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .as_slice::<f32>()
        .expect("f32 data")
        .to_vec()
}

/// Share of `data` the reward model puts on the right side of 0 (score > 0 for rewards above
/// `threshold`).
pub fn reward_accuracy(
    base: &Base,
    state: &Trainable,
    cfg: &LoraConfig,
    data: &[Tokenized],
    threshold: f64,
) -> Option<f64> {
    let head = state.head.as_ref()?;
    if data.is_empty() {
        return None;
    }
    let right = data
        .iter()
        .filter(|e| {
            let s = to_vec1(reward_score(base, &state.lora, head, cfg, &e.tokens))[0];
            (s > 0.0) == (e.reward > threshold)
        })
        .count();
    Some(right as f64 / data.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kl_penalty_is_zero_at_the_base_and_positive_away_from_it() {
        let device = crate::backend_device(crate::Backend::Flex).unwrap();
        let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
        let same = to_vec1(kl_to_base(t(&[-1.0, -2.0]), t(&[-1.0, -2.0])))[0];
        assert!(same.abs() < 1e-7, "{same}");
        // exp(d) - d - 1 at d = 0.5 and d = -0.5, averaged.
        let away = to_vec1(kl_to_base(t(&[-1.0, -2.0]), t(&[-0.5, -2.5])))[0];
        let want = ((0.5f32.exp() - 0.5 - 1.0) + ((-0.5f32).exp() + 0.5 - 1.0)) / 2.0;
        assert!((away - want).abs() < 1e-6, "{away} vs {want}");
    }
}
