//! `loop.json`: the loop's settings and each round's figures, and their table and chart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use retroformer_report::{line_chart_svg, write_chart, Series};

use crate::LabError;

/// The settings `loop.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopSettings {
    /// The environment.
    pub env: String,
    /// The reflector's base model, the one trained.
    pub base: String,
    /// The (frozen) actor.
    pub actor: String,
    /// Training tasks.
    pub train_tasks: usize,
    /// Held-out tasks.
    pub eval_tasks: usize,
    /// Trials per task.
    pub trials: u32,
    /// Ratings kept for SFT.
    pub min_reward: f64,
    /// SFT steps per round.
    pub steps: u64,
    /// Canary margin.
    pub margin: f64,
    /// Collections per round (recorded when above 1, so older loops resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_samples: Option<u32>,
    /// Temperature of the sampled collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_temperature: Option<f64>,
    /// The smallest SFT set trained on (recorded when above 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sft_examples: Option<usize>,
    /// The SFT peak learning rate (recorded when set; else the trainer's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

impl LoopSettings {
    /// Collections per round.
    pub fn samples(&self) -> u32 {
        self.collect_samples.unwrap_or(1).max(1)
    }
}

/// `loop.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopReport {
    /// 1.
    pub format_version: u32,
    /// The settings.
    #[serde(flatten)]
    pub settings: LoopSettings,
    /// Every round so far.
    pub rounds: Vec<Round>,
}

/// One round's figures, as far as it got. Figures a file lacks read as absent or zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// From 1.
    pub round: u32,
    /// The reflector's adapter the round started with (`None`: the base alone).
    pub reflector_adapter: Option<String>,
    /// Collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect: Option<Collect>,
    /// Why the loop stopped in this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<Train>,
    /// Export (in the training process) and install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
    /// The canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryFigures>,
}

/// One collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectArm {
    /// Its run folder.
    pub dir: PathBuf,
    /// Reflection temperature (0: greedy).
    pub temperature: f64,
    /// Reflection seed (sampled collections).
    pub seed: Option<u32>,
    /// Success rate by trial.
    pub success_by_trial: Vec<f64>,
    /// The run its first trial came from.
    pub first_trial_from: Option<PathBuf>,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Run again after an interruption (its figures cover the last part).
    pub resumed: bool,
}

/// A round's collections: the greedy one's figures, with the time and peak of all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Collect {
    /// The greedy collection (time summed, peak the largest, over all).
    #[serde(flatten)]
    pub first: CollectArm,
    /// Every collection, when there are several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<CollectArm>,
    /// Rating records pooled over every round so far.
    #[serde(default)]
    pub records: usize,
    /// Those whose rating reached `min_reward`.
    #[serde(default)]
    pub kept: usize,
}

/// Training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Train {
    /// The exported adapter.
    pub adapter: PathBuf,
    /// SFT steps.
    pub steps: u64,
    /// First step's loss.
    pub loss_first: Option<f64>,
    /// Last step's loss.
    pub loss_last: Option<f64>,
    /// Wall time of the training process, seconds.
    pub wall_s: f64,
    /// Its peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Wall time without the export.
    pub wall_s_without_export: Option<f64>,
    /// Run again after an interruption.
    pub resumed: bool,
    /// The adapter's id in the store, once installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Export and install.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Export {
    /// The export's time (from the training log), seconds.
    pub export_s: Option<f64>,
    /// Install time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_wall_s: Option<f64>,
    /// Install's peak resident memory, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_peak_rss_bytes: Option<u64>,
}

/// The canary's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryFigures {
    /// The candidate's score.
    pub candidate: Option<f64>,
    /// The incumbent's score.
    pub incumbent: Option<f64>,
    /// The incumbent's id (`None`: the base alone).
    pub incumbent_id: Option<String>,
    /// Whether the candidate was promoted.
    pub promoted: bool,
    /// The margin.
    pub margin: f64,
    /// The run both arms took their first trial from.
    pub first_trial_from: Option<PathBuf>,
    /// Wall time, seconds (`None` when the verdict was found already recorded).
    pub wall_s: Option<f64>,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Run again after an interruption.
    pub resumed: bool,
}

impl LoopReport {
    /// The per-round table and the per-phase time and memory, as lines.
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{:>5} {:>10} {:>8} {:>10} {:>10} {:>9}",
            "round", "collected", "kept", "candidate", "incumbent", "promoted"
        )];
        let num = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.3}"));
        for r in &self.rounds {
            let c = r.canary.as_ref();
            out.push(format!(
                "{:>5} {:>10} {:>8} {:>10} {:>10} {:>9}",
                r.round,
                num(r
                    .collect
                    .as_ref()
                    .and_then(|c| c.first.success_by_trial.last().copied())),
                r.collect
                    .as_ref()
                    .map_or("-".into(), |c| c.kept.to_string()),
                num(c.and_then(|c| c.candidate)),
                num(c.and_then(|c| c.incumbent)),
                c.map_or("-".into(), |c| c.promoted.to_string()),
            ));
        }
        // Time and peak memory of each phase (the export's peak is the training process's).
        let cell = |wall: Option<f64>, rss: Option<u64>| match (wall, rss) {
            (Some(w), Some(m)) => format!("{w:.0} s/{} MB", m / 1_000_000),
            (Some(w), None) => format!("{w:.1} s"),
            _ => "-".into(),
        };
        out.push(format!(
            "{:>5} {:>16} {:>16} {:>8} {:>16} {:>16}",
            "round", "collect", "train", "export", "install", "canary"
        ));
        for r in &self.rounds {
            let (t, e, c) = (r.train.as_ref(), r.export.as_ref(), r.canary.as_ref());
            out.push(format!(
                "{:>5} {:>16} {:>16} {:>8} {:>16} {:>16}",
                r.round,
                r.collect.as_ref().map_or("-".into(), |c| cell(
                    Some(c.first.wall_s),
                    c.first.peak_rss_bytes
                )),
                cell(
                    t.and_then(|t| t.wall_s_without_export),
                    t.and_then(|t| t.peak_rss_bytes)
                ),
                cell(e.and_then(|e| e.export_s), None),
                cell(
                    e.and_then(|e| e.install_wall_s),
                    e.and_then(|e| e.install_peak_rss_bytes)
                ),
                cell(c.and_then(|c| c.wall_s), c.and_then(|c| c.peak_rss_bytes)),
            ));
        }
        out
    }

    /// Draws the rounds' scores into `OUT/loop.svg` and `.png`.
    pub fn chart(&self, out: &Path) -> Result<Vec<PathBuf>, LabError> {
        let series = |label: &str, f: &dyn Fn(&Round) -> Option<f64>| Series {
            label: label.into(),
            points: self
                .rounds
                .iter()
                .filter_map(|r| Some((f64::from(r.round), f(r)?)))
                .collect(),
        };
        let svg = line_chart_svg(
            &format!(
                "Retroformer loop, {} ({} held-out tasks)",
                self.settings.env, self.settings.eval_tasks
            ),
            "round",
            "success rate after the last trial",
            (0.0, 1.0),
            &[
                series("canary: trained reflector", &|r| {
                    r.canary.as_ref()?.candidate
                }),
                series("canary: incumbent", &|r| r.canary.as_ref()?.incumbent),
                series("collection (training tasks)", &|r| {
                    r.collect.as_ref()?.first.success_by_trial.last().copied()
                }),
            ],
        );
        Ok(write_chart(&out.join("loop"), &svg)?)
    }
}
