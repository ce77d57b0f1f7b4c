//! RISE's training data: the turns of rollouts a criterion keeps, weighted exp(reward / tau).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{files, messages, RiseError, Rollout, FORMAT_VERSION};
use retroformer_core::records::{RiseSample, LOSS_ON_LAST_ASSISTANT};
use retroformer_llm::ChatMessage;

/// Which turns of a rollout become training samples (RISE's criteria).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Every turn.
    All,
    /// Turns whose reward is above the previous turn's (the first turn: above -1, i.e. any
    /// parsable answer).
    Better,
    /// Turns with no earlier turn rewarded higher.
    Best,
    /// Correct turns only.
    Success,
}

impl Criterion {
    /// Parse a CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => Criterion::All,
            "better" => Criterion::Better,
            "best" => Criterion::Best,
            "success" => Criterion::Success,
            _ => return None,
        })
    }

    /// Whether turn `t` of `rewards` is kept.
    pub fn keeps(self, rewards: &[f32], t: usize) -> bool {
        let r = rewards[t];
        match self {
            Criterion::All => true,
            Criterion::Better => r > if t == 0 { -1.0 } else { rewards[t - 1] },
            Criterion::Best => rewards[..t].iter().all(|&p| p <= r),
            Criterion::Success => r >= 1.0,
        }
    }
}

/// Convert rollouts into training samples: select turns by `criterion`, weight each by
/// exp(reward / tau), drop duplicates (same messages), shuffle with `seed`. Deterministic.
pub fn to_dataset(
    rollouts: &[Rollout],
    criterion: Criterion,
    tau: f64,
    seed: u64,
) -> Result<Vec<RiseSample>, RiseError> {
    if !(tau.is_finite() && tau > 0.0) {
        return Err(RiseError::Config(format!("--tau {tau}: must be positive")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in rollouts {
        let rewards: Vec<f32> = r.turns.iter().map(|t| t.reward).collect();
        let kept: Vec<String> = r
            .turns
            .iter()
            .map(|t| {
                t.candidates[t.chosen.min(t.candidates.len().saturating_sub(1))]
                    .response
                    .clone()
            })
            .collect();
        for t in 0..r.turns.len() {
            if !criterion.keeps(&rewards, t) {
                continue;
            }
            let mut msgs = messages(&r.question, &kept[..t], r.window);
            msgs.push(ChatMessage::new("assistant", kept[t].trim()));
            let key = serde_json::to_string(&msgs).map_err(|e| RiseError::Config(e.to_string()))?;
            if !seen.insert(key) {
                continue;
            }
            out.push(RiseSample {
                format_version: FORMAT_VERSION,
                problem_id: r.problem_id.clone(),
                turn: t as u32,
                messages: msgs,
                loss_on: LOSS_ON_LAST_ASSISTANT.into(),
                reward: f64::from(rewards[t]),
                weight: (f64::from(rewards[t]) / tau).exp(),
                tokens: None,
            });
        }
    }
    shuffle(&mut out, seed);
    Ok(out)
}

pub use retroformer_core::rng::shuffle;

/// Write samples as JSONL, atomically.
pub fn write_dataset(path: &Path, samples: &[RiseSample]) -> Result<(), RiseError> {
    Ok(files::write_jsonl(path, samples)?)
}

/// Counts by criterion, for reports.
pub fn criterion_counts(rollouts: &[Rollout]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (name, c) in [
        ("all", Criterion::All),
        ("better", Criterion::Better),
        ("best", Criterion::Best),
        ("success", Criterion::Success),
    ] {
        let n = rollouts
            .iter()
            .map(|r| {
                let rw: Vec<f32> = r.turns.iter().map(|t| t.reward).collect();
                (0..rw.len()).filter(|&t| c.keeps(&rw, t)).count()
            })
            .sum();
        m.insert(name.to_string(), n);
    }
    m
}
