//! The held-out set of a training run: its loss, measured now and then, stops the run early and
//! chooses the state it returns.

use crate::data::Tokenized;
use crate::lora::LoraConfig;
use crate::model::Base;
use crate::objective::{example_loss, ExampleStats, Objective, Trainable};
use crate::TrainerError;
use burn::module::Module;

/// A held-out set: its mean loss is measured every `every` steps (and after the last); training
/// stops once `patience` measurements in a row bring no new lowest loss (0: never), and `keep`
/// says which state is returned. A resumed run starts its search afresh.
pub struct Heldout<'a> {
    /// The examples (none of them in the training data).
    pub data: &'a [Tokenized],
    /// Steps between measurements.
    pub every: u64,
    /// Measurements without a new lowest loss before stopping.
    pub patience: u64,
    /// The state returned.
    pub keep: Keep,
}

/// Which state a run with a held-out set returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// The state of the lowest held-out loss.
    #[default]
    LowestLoss,
    /// The state after the last step trained. The loss is still measured and logged: a model's
    /// own answers have a low loss from the start, so it can stay flat while the model changes
    /// (`benches/results/improve-gsm8k/diagnostics`).
    Last,
}

impl Keep {
    /// Every `Keep`, in the order of [`Keep::NAMES`].
    const ALL: [Keep; 2] = [Keep::LowestLoss, Keep::Last];
    /// The names `retroformer-train --keep` takes.
    pub const NAMES: [&'static str; 2] = ["lowest-loss", "last"];

    /// The name `retroformer-train --keep` takes.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The `Keep` of a name (`lowest-loss` or `last`).
    pub fn parse(name: &str) -> Option<Keep> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The lowest held-out loss so far: the loss, its step, the state.
pub(crate) struct Best {
    pub(crate) loss: f64,
    pub(crate) step: u64,
    pub(crate) state: Trainable,
}

/// Where the lowest held-out loss was measured, and the measurements since without a lower
/// one: what a checkpoint keeps of [`Best`] besides its state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct BestMark {
    pub(crate) step: u64,
    pub(crate) loss: f64,
    pub(crate) since: u64,
}

/// Refuses a held-out set the objective cannot score, an empty one, or one with an example
/// without a response token.
pub(crate) fn check_heldout(
    objective: &Objective,
    heldout: Option<&Heldout>,
) -> Result<(), TrainerError> {
    let Some(h) = heldout else {
        return Ok(());
    };
    let bad = |reason: String| {
        Err(TrainerError::Config {
            field: "eval-data".into(),
            reason,
        })
    };
    if !objective.is_likelihood() {
        return bad(format!(
            "a held-out loss is measured for sft and rwr, not {}",
            objective.name()
        ));
    }
    if h.data.is_empty() {
        return bad("no examples".into());
    }
    if let Some(i) = h
        .data
        .iter()
        .position(|d| d.tokens.len() <= d.prompt_len.max(1))
    {
        return bad(format!("example {i} has no response token"));
    }
    Ok(())
}

/// The mean loss of `data` (no dropout, no gradient step; SFT and RWR).
pub(crate) fn heldout_loss(
    objective: &Objective,
    base: &Base,
    state: &Trainable,
    cfg: &LoraConfig,
    data: &[Tokenized],
) -> Result<f64, TrainerError> {
    let stats = ExampleStats {
        class_weight: 1.0,
        ..ExampleStats::default()
    };
    // Without gradients: the autodiff graph of a forward pass never followed by a backward
    // one would hold every activation (a Qwen 0.5B example: gigabytes).
    let frozen = state.clone().no_grad();
    let mut sum = 0.0;
    for ex in data {
        let loss = example_loss(objective, base, &frozen, cfg, ex, &stats, 1)?;
        sum += loss.into_scalar::<f64>();
    }
    Ok(sum / data.len().max(1) as f64)
}
