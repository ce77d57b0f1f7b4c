//! The records that cross a process: one type each, written by one program and read by another.
//!
//! | record | written by | read by |
//! |---|---|---|
//! | [`RatingRecord`] (`records.jsonl`) | an evaluation's trial runner | the trainer, the loop |
//! | [`RiseSample`] (`dataset rise`) | the math environment | the trainer (`rwr`) |
//! | [`AdapterProvenance`] (`retroformer.*` GGUF keys) | the trainer's export | the adapter store |
//! | [`TrainingLog`] (`OUT.log.json`) | the trainer | the loop |
//! | [`TrainerFigure`] (`retroformer-train bench --json`) | the trainer | the bench report |
//!
//! Every record carries [`FORMAT_VERSION`] (the adapter keys carry
//! [`ADAPTER_FORMAT_VERSION`] under [`keys::FORMAT_VERSION`]).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Format version of the JSON records here.
pub const FORMAT_VERSION: u32 = 1;

/// A chat message: the turns of a RISE sample or of a chat reflection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The Retroformer rating of a reflection: the change in return from this trial to the next.
pub fn rating(return_this_trial: f32, return_next_trial: f32) -> f32 {
    return_next_trial - return_this_trial
}

fn current() -> u32 {
    FORMAT_VERSION
}

fn one() -> f64 {
    1.0
}

fn last_assistant() -> String {
    LOSS_ON_LAST_ASSISTANT.into()
}

/// One line of `records.jsonl`: a reflection and the returns around it, the (x, y, G_i,
/// G_{i+1}) of the Retroformer paper. A reader takes records that leave out the bookkeeping
/// fields (version, task, trial, returns): only x, y and the rating are needed to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingRecord {
    /// [`FORMAT_VERSION`].
    #[serde(default = "current")]
    pub format_version: u32,
    /// The task id.
    #[serde(default)]
    pub task_id: String,
    /// The trial i whose failure was reflected on.
    #[serde(default)]
    pub trial: u32,
    /// Reflection prompt x.
    pub prompt: String,
    /// Reflection y.
    pub reflection: String,
    /// G_i.
    #[serde(default)]
    pub return_this_trial: f32,
    /// G_{i+1}.
    #[serde(default)]
    pub return_next_trial: f32,
    /// The Retroformer rating G_{i+1} - G_i.
    pub rating: f32,
    /// When the reflection was a chat reply: the request's messages followed by the reflection
    /// as the assistant turn. `prompt` is then that request in the reflector's chat template,
    /// and a trainer should template `messages` with its own model's (the end-of-turn token
    /// included) rather than train on `prompt` as plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Who wrote the reflection (absent in records written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflector: Option<ReflectorInfo>,
}

/// Who wrote a reflection: the model, its file's sha256, the adapter on it and the sampler.
/// A trainer or a loop that pools records can tell whose reflections they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReflectorInfo {
    /// The model as the run names it (a manifest name or a path).
    pub model: String,
    /// The sha256 of the model's file, lower-case hex (absent: the file was not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha256: Option<String>,
    /// The adapter on it, as the run names it (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The sha256 of the adapter's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_sha256: Option<String>,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Sampler seed.
    pub seed: u32,
}

impl RatingRecord {
    /// The record of reflection `reflection` (written from `prompt`) on trial `trial` of
    /// `task_id`, rated by the returns of that trial and the next.
    pub fn new(
        task_id: &str,
        trial: u32,
        prompt: &str,
        reflection: &str,
        return_this_trial: f32,
        return_next_trial: f32,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            task_id: task_id.into(),
            trial,
            prompt: prompt.into(),
            reflection: reflection.into(),
            return_this_trial,
            return_next_trial,
            rating: rating(return_this_trial, return_next_trial),
            messages: None,
            reflector: None,
        }
    }
}

/// Which messages of a [`RiseSample`] carry loss: only the final assistant turn.
pub const LOSS_ON_LAST_ASSISTANT: &str = "last_assistant";

/// One RISE training sample (a line of `dataset rise`'s JSONL). A reader takes samples that
/// leave out the bookkeeping fields (reward and weight then count as 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiseSample {
    /// [`FORMAT_VERSION`].
    #[serde(default = "current")]
    pub format_version: u32,
    /// The problem.
    #[serde(default)]
    pub problem_id: String,
    /// The turn (from 0) whose answer is the target.
    #[serde(default)]
    pub turn: u32,
    /// The conversation: instruction, example, question, the earlier kept attempts in the
    /// window with their retry messages, then the target assistant turn last.
    pub messages: Vec<ChatMessage>,
    /// Which messages carry loss: always [`LOSS_ON_LAST_ASSISTANT`].
    #[serde(default = "last_assistant")]
    pub loss_on: String,
    /// The target turn's reward.
    #[serde(default = "one")]
    pub reward: f64,
    /// exp(reward / tau).
    #[serde(default = "one")]
    pub weight: f64,
    /// The target turn's token ids as the model saw and sampled them (the server's capture):
    /// a trainer of the same model trains on these rather than on a re-tokenisation of the
    /// text, which may differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TurnTokens>,
}

/// One piece of an [`EpisodeSample`]: text, and whether the loss falls on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The text, as the agent appended it to its prompt or generated it.
    pub text: String,
    /// Whether the loss falls on its tokens (the agent's own output).
    pub loss: bool,
}

/// One multi-step episode as a training example (a line of the trainer's `segments` shape):
/// the prompt the agent started from, then its outputs with the loss and the environment's
/// replies without, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeSample {
    /// [`FORMAT_VERSION`].
    #[serde(default = "current")]
    pub format_version: u32,
    /// The task.
    #[serde(default)]
    pub task_id: String,
    /// The prompt (first, no loss), then outputs and replies.
    pub segments: Vec<Segment>,
    /// The episode's return.
    #[serde(default = "one")]
    pub reward: f64,
    /// The sample's weight.
    #[serde(default = "one")]
    pub weight: f64,
}

/// A turn's token ids (see [`RiseSample::tokens`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnTokens {
    /// The sha256 of the model file the ids belong to: other models ignore them.
    pub model_sha256: String,
    /// The prompt, as the model evaluated it (template, special tokens and BOS included).
    pub prompt: Vec<i32>,
    /// Every token sampled, including an end-of-generation token and a stop string's tokens.
    pub completion: Vec<i32>,
    /// Each completion token's log-probability under the sampling model's raw distribution,
    /// when the request asked for logprobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<f32>>,
}

/// Version of the `retroformer.*` keys in exported adapters.
pub const ADAPTER_FORMAT_VERSION: u32 = 1;

/// The GGUF keys of an adapter's provenance, as the trainer writes them and the store reads them.
pub mod keys {
    /// What every provenance key starts with.
    pub const PREFIX: &str = "retroformer.";
    /// [`super::ADAPTER_FORMAT_VERSION`] (u32).
    pub const FORMAT_VERSION: &str = "retroformer.format_version";
    /// sha256 of the base GGUF file (string).
    pub const BASE_SHA256: &str = "retroformer.base_sha256";
    /// sha256 of the training data file (string).
    pub const DATA_SHA256: &str = "retroformer.data_sha256";
    /// Optimiser steps taken (u64).
    pub const STEP: &str = "retroformer.step";
    /// `sft`, `reward`, `pg`, `ppo` or `rwr` (string).
    pub const OBJECTIVE: &str = "retroformer.objective";
    /// LoRA rank (u32).
    pub const RANK: &str = "retroformer.lora.rank";
    /// Adapted projections, comma-separated (string).
    pub const TARGETS: &str = "retroformer.lora.targets";
    /// llama.cpp's own LoRA alpha (f32).
    pub const ALPHA: &str = "adapter.lora.alpha";
}

/// Where an adapter came from, stored in its GGUF header under [`keys`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterProvenance {
    /// sha256 of the base GGUF file.
    pub base_sha256: String,
    /// sha256 of the training data file.
    pub data_sha256: String,
    /// Optimiser steps taken.
    pub step: u64,
    /// `sft`, `reward`, `pg`, `ppo` or `rwr`.
    pub objective: String,
    /// LoRA rank.
    pub rank: u32,
    /// Adapted projections, comma-separated (`q,k,v,o,gate,up,down`).
    pub targets: String,
}

/// A provenance value as a GGUF header holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvenanceValue<'a> {
    /// A u32.
    U32(u32),
    /// A u64.
    U64(u64),
    /// A string.
    Str(&'a str),
}

impl AdapterProvenance {
    /// The header entries to write, [`keys::FORMAT_VERSION`] first.
    pub fn entries(&self) -> [(&'static str, ProvenanceValue<'_>); 7] {
        use ProvenanceValue::{Str, U32, U64};
        [
            (keys::FORMAT_VERSION, U32(ADAPTER_FORMAT_VERSION)),
            (keys::BASE_SHA256, Str(&self.base_sha256)),
            (keys::DATA_SHA256, Str(&self.data_sha256)),
            (keys::STEP, U64(self.step)),
            (keys::OBJECTIVE, Str(&self.objective)),
            (keys::RANK, U32(self.rank)),
            (keys::TARGETS, Str(&self.targets)),
        ]
    }

    /// Reads the provenance through a header's lookups (`text` for strings, `number` for
    /// integers); a key that is absent reads as empty or 0.
    pub fn read(
        text: impl Fn(&str) -> Option<String>,
        number: impl Fn(&str) -> Option<u64>,
    ) -> Self {
        Self {
            base_sha256: text(keys::BASE_SHA256).unwrap_or_default(),
            data_sha256: text(keys::DATA_SHA256).unwrap_or_default(),
            step: number(keys::STEP).unwrap_or(0),
            objective: text(keys::OBJECTIVE).unwrap_or_default(),
            rank: number(keys::RANK)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(0),
            targets: text(keys::TARGETS).unwrap_or_default(),
        }
    }
}

/// One optimiser step of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingStep {
    /// Step (from 1).
    pub step: u64,
    /// Mean loss over the batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens evaluated.
    pub tokens: u64,
    /// Wall time of the step in seconds.
    pub seconds: f64,
    /// Mean loss on the held-out examples after this step, where they were evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_loss: Option<f64>,
}

/// A training run's log (`OUT.log.json`), written by the trainer and read by the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `sft`, `reward`, `pg`, `ppo` or `rwr`.
    pub objective: String,
    /// The step the run resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// How long the adapter's export took, milliseconds.
    pub export_ms: f64,
    /// Every step, those before a resume included.
    pub steps: Vec<TrainingStep>,
    /// The step whose state was exported: the lowest held-out loss, where a held-out set was
    /// given (absent: the last step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_step: Option<u64>,
}

/// One measured figure: the median of `n` repetitions and their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Median.
    pub median: f64,
    /// Smallest repetition.
    pub min: f64,
    /// Largest repetition.
    pub max: f64,
    /// Repetitions.
    pub n: u32,
}

impl Figure {
    /// The median and range of `xs` (`None` when empty or not finite).
    pub fn of(xs: &[f64]) -> Option<Self> {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n: n as u32,
        })
    }

    /// (max - min) / median: how far apart the repetitions were.
    pub fn relative_spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / abs(self.median)
        }
    }
}

fn abs(x: f64) -> f64 {
    if x < 0.0 {
        -x
    } else {
        x
    }
}

/// One trainer figure (`retroformer-train bench --json`, a row of the bench report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerFigure {
    /// Burn backend (`flex`, `ndarray`, `wgpu`, ...).
    pub backend: String,
    /// The base model.
    pub model: String,
    /// Training tokens per second (forward + backward + optimiser step).
    pub tokens_per_s: Figure,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// LoRA rank.
    pub rank: u32,
    /// Tokens per step.
    pub tokens_per_step: u32,
    /// CPU threads the trainer used (rayon's pool; absent in reports that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_rating_record_rates_the_change_in_return() {
        let r = RatingRecord::new("t1", 0, "x", "y", 0.25, 1.0);
        assert!((r.rating - 0.75).abs() < 1e-6);
        assert_eq!(r.format_version, FORMAT_VERSION);
        assert!(r.messages.is_none());
    }

    #[test]
    fn rating_is_next_return_minus_this_return() {
        assert!((rating(0.0, 1.0) - 1.0).abs() < 1e-6);
        assert!((rating(1.0, 0.0) + 1.0).abs() < 1e-6);
        assert!(rating(0.5, 0.5).abs() < 1e-6);
    }

    #[test]
    fn provenance_written_as_entries_reads_back_the_same() {
        let p = AdapterProvenance {
            base_sha256: "ab".into(),
            data_sha256: "cd".into(),
            step: 7,
            objective: "sft".into(),
            rank: 8,
            targets: "q,v".into(),
        };
        let entries = p.entries();
        assert_eq!(entries[0], (keys::FORMAT_VERSION, ProvenanceValue::U32(1)));
        let text = |k: &str| {
            entries.iter().find(|e| e.0 == k).and_then(|e| match e.1 {
                ProvenanceValue::Str(s) => Some(s.to_string()),
                _ => None,
            })
        };
        let number = |k: &str| {
            entries.iter().find(|e| e.0 == k).and_then(|e| match e.1 {
                ProvenanceValue::U32(n) => Some(u64::from(n)),
                ProvenanceValue::U64(n) => Some(n),
                _ => None,
            })
        };
        assert_eq!(AdapterProvenance::read(text, number), p);
        assert_eq!(
            AdapterProvenance::read(|_| None, |_| None),
            AdapterProvenance::default()
        );
    }

    #[test]
    fn a_figure_is_the_median_and_range_of_finite_repetitions() {
        let f = Figure::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert!((f.median - 2.5).abs() < 1e-12);
        assert_eq!((f.min, f.max, f.n), (1.0, 10.0, 4));
        assert!((f.relative_spread() - 9.0 / 2.5).abs() < 1e-12);
        assert!(Figure::of(&[]).is_none());
        assert!(Figure::of(&[1.0, f64::NAN]).is_none());
    }
}
