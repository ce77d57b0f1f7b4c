//! `improve.json`: the settings, each round's phases in figures, each arm's evaluation and the
//! paired comparisons. Rewritten atomically as each phase ends.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use retroformer::provenance::{Machine, SessionsTime};

use crate::compare::{p_text, TrialComparison};

/// Format version of `improve.json`.
pub const FORMAT_VERSION: u32 = 1;
/// `improve.json`'s `kind`.
pub const KIND: &str = "improve";

/// A run's settings (saved in `improve.json`; a folder holding other settings is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImproveSettings {
    /// The actor (a manifest name or a GGUF path).
    pub model: String,
    /// The environment: `gsm8k` or `household` (a run from before the household: GSM8K).
    #[serde(default = "gsm8k")]
    pub env: String,
    /// A teacher collecting round 1 instead of the actor (household only; `None`: the actor).
    #[serde(default)]
    pub collect_model: Option<String>,
    /// Another GSM8K train file (JSONL).
    pub train_data: Option<PathBuf>,
    /// Another GSM8K test file.
    pub eval_data: Option<PathBuf>,
    /// The dev split: the first N train problems (held-out loss and the canary; never trained).
    pub dev_problems: usize,
    /// The train problems collected each round: the N after the dev split.
    pub train_problems: usize,
    /// Sampled chains per problem.
    pub chains: u32,
    /// Retries after a wrong answer, per chain.
    pub retries: u32,
    /// Correct answers kept per problem, at most.
    pub per_problem: usize,
    /// Temperature of collection.
    pub temperature: f32,
    /// Top-p of collection and sampled evaluation.
    pub top_p: f32,
    /// Tokens per attempt.
    pub max_tokens: u32,
    /// Seed of collection, placebo draw and evaluation.
    pub seed: u32,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha.
    pub alpha: f32,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the training samples (bounds the steps).
    pub epochs: f64,
    /// Samples per step.
    pub batch: usize,
    /// Longest training sequence in tokens.
    pub max_len: usize,
    /// The trainer's backend.
    pub backend: String,
    /// Steps between held-out loss measurements.
    pub eval_every: u64,
    /// Measurements without a new lowest held-out loss before training stops.
    pub patience: u64,
    /// The state each adapter is exported from: `lowest-loss` (the lowest held-out loss) or
    /// `last` (the last step trained). Runs from before the setting: `lowest-loss`.
    #[serde(default = "lowest_loss")]
    pub keep: String,
    /// Round 1's LoRA seeds (the first is the one installed; later rounds train it alone).
    pub lora_seeds: Vec<u64>,
    /// Round 1 also trains the placebo: as many of the model's own answers, drawn without
    /// regard to correctness, same hyperparameters.
    pub placebo: bool,
    /// The canary promotes a candidate whose dev accuracy is at least the incumbent's minus this.
    pub margin: f64,
    /// Test problems skipped before the evaluated ones (a pilot's slice).
    pub eval_skip: usize,
    /// Test problems evaluated.
    pub eval_problems: usize,
    /// Sampled answers per problem in the sampled evaluation (pass@k); 0: greedy only.
    pub eval_samples: u32,
    /// Temperature of the sampled evaluation.
    pub eval_temperature: f32,
    /// The arms also evaluated sampled (`base`, `r1-s1`, `r1-placebo`, `last`).
    pub sampled_arms: Vec<String>,
}

fn gsm8k() -> String {
    "gsm8k".into()
}

/// The names `keep` takes (`retroformer-train --keep`'s), the default first.
pub const KEEP: [&str; 2] = ["lowest-loss", "last"];

fn lowest_loss() -> String {
    KEEP[0].into()
}

/// Collection in figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectFigures {
    /// Problems (dev and train).
    pub problems: usize,
    /// Train problems with a correct answer.
    pub train_solved: usize,
    /// Train problems whose first attempt of chain 0 is correct.
    pub train_first_correct: usize,
    /// Attempts.
    pub attempts: usize,
    /// Correct attempts.
    pub correct_attempts: usize,
    /// Attempts with a parsable answer.
    pub parsable_attempts: usize,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Wall time of the collection, seconds (`None`: read back from files): the last
    /// process's part when it resumed one (see `wall_tasks`).
    pub wall_s: Option<f64>,
    /// The problems `wall_s` covers (fewer than `problems`: resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_tasks: Option<usize>,
    /// A multi-step environment's episodes in figures (the household); `None` for one-answer
    /// environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episodes: Option<EpisodeFigures>,
    /// The time its results took over every session that wrote them (`sessions.json`);
    /// `None` when a session predates that record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<SessionsTime>,
}

/// A multi-step environment's episodes in figures: what a success rate alone hides (which task
/// types moved, how the failures ended, how long the episodes ran).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeFigures {
    /// Each task type's episodes and successes, in the order the tasks first name them.
    pub by_type: Vec<TypeTally>,
    /// Failed episodes by why they stopped (`steps`: the action limit, `cycle`, `repeated`,
    /// `context`: the prompt outgrew its lane; `unrecorded`).
    pub failures: BTreeMap<String, usize>,
    /// Mean actions an episode.
    pub mean_actions: f64,
    /// Mean actions a successful episode (`None`: no success).
    pub mean_actions_success: Option<f64>,
}

/// One task type's episodes and successes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeTally {
    /// The task type (`put`, `clean`, ...).
    pub task_type: String,
    /// Episodes.
    pub episodes: usize,
    /// Successful episodes.
    pub successes: usize,
}

impl EpisodeFigures {
    /// `put 3/34, clean 0/33; failures: steps 60, cycle 4; 21.3 actions an episode (9.5 a
    /// success)`.
    pub fn line(&self) -> String {
        let types: Vec<String> = self
            .by_type
            .iter()
            .map(|t| format!("{} {}/{}", t.task_type, t.successes, t.episodes))
            .collect();
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        format!(
            "{}; failures: {}; {:.1} actions an episode{}",
            types.join(", "),
            if failures.is_empty() {
                "none".to_string()
            } else {
                failures.join(", ")
            },
            self.mean_actions,
            self.mean_actions_success
                .map_or(String::new(), |a| format!(" ({a:.1} a success)"))
        )
    }
}

/// The training sets in figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFigures {
    /// Correct answers to train on (this round's and earlier rounds').
    pub samples: usize,
    /// Of them, found by a retry.
    pub from_retries: usize,
    /// Their generated tokens.
    pub tokens: u64,
    /// Held-out samples (correct answers on dev problems).
    pub heldout: usize,
    /// Placebo samples (round 1).
    pub placebo: usize,
    /// Of them, correct.
    pub placebo_correct: usize,
    /// Their generated tokens.
    pub placebo_tokens: u64,
}

/// One trained adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainFigures {
    /// `s1`, `s2`, `placebo`.
    pub name: String,
    /// The adapter file.
    pub adapter: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Training samples.
    pub samples: usize,
    /// Steps run.
    pub steps: u64,
    /// The step exported (lowest held-out loss), if measured.
    pub best_step: Option<u64>,
    /// Loss of the first and the last step.
    pub loss: [f64; 2],
    /// Lowest held-out loss.
    pub heldout_loss: Option<f64>,
    /// Wall time, seconds (`None`: trained by an earlier run); only the last process's part
    /// when it resumed from a checkpoint (see `resumed_from`).
    pub wall_s: Option<f64>,
    /// The step the last training process resumed from (0: trained in one process).
    #[serde(default)]
    pub resumed_from: u64,
    /// The steps' own wall time summed over the trainer's log, resumed parts included (no
    /// model load, held-out loss or export): the training's cost across processes and sessions.
    #[serde(default)]
    pub steps_s: f64,
    /// The command that trained it (it rebuilds the file).
    pub command: String,
}

/// The canary in figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryFigures {
    /// The candidate's store id.
    pub candidate: String,
    /// The incumbent's store id (`None`: the base alone).
    pub incumbent: Option<String>,
    /// Greedy dev accuracy of the candidate.
    pub candidate_score: f64,
    /// Greedy dev accuracy of the incumbent.
    pub incumbent_score: f64,
    /// Promoted (now active).
    pub promoted: bool,
    /// Wall time of this process's evaluations, seconds (`None`: all were saved before).
    pub wall_s: Option<f64>,
    /// The dev tasks (of both arms) `wall_s` covers: a resumed canary's earlier part is not in
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_tasks: Option<usize>,
}

/// One round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundFigures {
    /// From 1.
    pub round: u32,
    /// The adapter collecting (a store id; `None`: the base alone).
    pub policy: Option<String>,
    /// Collection.
    pub collect: Option<CollectFigures>,
    /// The training sets.
    pub data: Option<DataFigures>,
    /// The adapters trained.
    pub train: Vec<TrainFigures>,
    /// The installed candidate's store id.
    pub installed: Option<String>,
    /// The canary.
    pub canary: Option<CanaryFigures>,
}

/// One arm's score on the test problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Problems.
    pub problems: usize,
    /// Answers scored (problems times samples).
    pub answers: usize,
    /// Share correct.
    pub accuracy: f64,
    /// Share with a parsable answer.
    pub parsable: f64,
    /// Share correct among the parsable.
    pub accuracy_parsable: f64,
    /// Problems with some correct sample (sampled only): pass@k.
    pub pass_at_k: Option<f64>,
    /// Mean generated tokens per answer.
    pub mean_tokens: f64,
    /// Wall time of the evaluation, seconds: the last process's part when it resumed one
    /// (see `wall_tasks`).
    pub wall_s: Option<f64>,
    /// The problems `wall_s` covers (fewer than `problems`: the evaluation was resumed, the
    /// earlier processes' time is not in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_tasks: Option<usize>,
    /// The evaluation's folder.
    pub run: PathBuf,
    /// The machines whose sessions wrote its results (its `sessions.json`), each once; empty
    /// when the folder predates that record.
    #[serde(default)]
    pub machines: Vec<Machine>,
    /// The numerics (target profile) its sessions decoded with, each once; empty when not
    /// recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numerics: Vec<String>,
    /// A multi-step environment's episodes in figures (the household); `None` for one-answer
    /// environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episodes: Option<EpisodeFigures>,
    /// The time its results took over every session that wrote them (`sessions.json`);
    /// `None` when a session predates that record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<SessionsTime>,
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmFigures {
    /// `base`, `r1-s1`, `r1-s2`, `r1-placebo`, `r2-s1`, ...
    pub name: String,
    /// The adapter (`None`: the base alone).
    pub adapter: Option<PathBuf>,
    /// Greedy.
    pub greedy: Option<Score>,
    /// Sampled.
    pub sampled: Option<Score>,
}

/// One paired comparison of two arms on the test problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `B - A`.
    pub name: String,
    /// `greedy` or `pass@K`.
    pub metric: String,
    /// B's rate minus A's, intervals and McNemar.
    pub paired: TrialComparison,
    /// Holm-adjusted p over the comparisons of the same metric.
    pub p_holm: f64,
    /// Whether both arms were evaluated on one machine (greedy answers differ across CPUs);
    /// `None` when a folder predates the record.
    #[serde(default)]
    pub same_machine: Option<bool>,
    /// Whether both arms were decoded with the same numerics (target profile); `None` when a
    /// folder has no record.
    #[serde(default)]
    pub same_numerics: Option<bool>,
}

/// `improve.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImproveReport {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// The settings.
    pub settings: ImproveSettings,
    /// The rounds.
    pub rounds: Vec<RoundFigures>,
    /// The arms.
    pub arms: Vec<ArmFigures>,
    /// The comparisons, the primary first.
    pub comparisons: Vec<Comparison>,
}

impl ImproveReport {
    /// Arm `name`'s greedy (or sampled) score.
    pub fn score(&self, name: &str, sampled: bool) -> Option<&Score> {
        let arm = self.arms.iter().find(|a| a.name == name)?;
        if sampled { &arm.sampled } else { &arm.greedy }.as_ref()
    }

    /// The machines of arm `name`'s greedy (or sampled) evaluation; empty when not recorded.
    pub fn machines(&self, name: &str, sampled: bool) -> &[Machine] {
        self.score(name, sampled).map_or(&[], |s| &s.machines)
    }

    /// The report in a few lines.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rounds {
            // A teacher collects round 1 when one is set.
            let teacher = self
                .settings
                .collect_model
                .as_deref()
                .filter(|_| r.round == 1);
            out.extend(round_lines(r, teacher, self.settings.env == "household"));
        }
        for a in &self.arms {
            for (kind, s) in [("greedy", &a.greedy), ("sampled", &a.sampled)] {
                if let Some(s) = s {
                    out.push(arm_line(&a.name, kind, s));
                    if let Some(e) = &s.episodes {
                        out.push(format!("  {} {kind} episodes: {}", a.name, e.line()));
                    }
                }
            }
        }
        for c in &self.comparisons {
            let p = &c.paired;
            out.push(format!(
                "{} ({}): {:+.3}, exact [{:+.3}, {:+.3}], bootstrap [{:+.3}, {:+.3}], Newcombe [{:+.3}, {:+.3}], McNemar p {}, Holm p {} ({} {})",
                c.name,
                c.metric,
                p.difference,
                p.exact_interval[0],
                p.exact_interval[1],
                p.interval[0],
                p.interval[1],
                p.score_interval[0],
                p.score_interval[1],
                p_text(p.p_value, 4),
                p_text(c.p_holm, 4),
                p.n,
                if self.settings.env == "household" {
                    "tasks"
                } else {
                    "problems"
                }
            ));
            match c.same_machine {
                Some(false) => out.push(format!(
                    "  {}: the two arms were evaluated on different machines, whose kernels round differently; the difference mixes that noise in",
                    c.name
                )),
                None => out.push(format!(
                    "  {}: machine not recorded for an arm (evaluated before sessions.json)",
                    c.name
                )),
                Some(true) => {}
            }
            if c.same_numerics == Some(false) {
                out.push(format!(
                    "  {}: the two arms were not all decoded with the same numerics (another --target or --kv-type; see each folder's sessions.json); the difference mixes the settings in",
                    c.name
                ));
            }
        }
        out
    }
}

/// `, on MACHINE[; MACHINE]` (nothing when not recorded).
fn machines_part(machines: &[Machine]) -> String {
    if machines.is_empty() {
        return String::new();
    }
    let labels: Vec<String> = machines.iter().map(Machine::label).collect();
    format!(", on {}", labels.join("; "))
}

/// `W s`, or `W s for N of M (resumed)` when the time covers only the part this process ran.
pub(super) fn part_secs(w: f64, tasks: Option<usize>, of: usize) -> String {
    match tasks {
        Some(n) if n < of => format!("{w:.0} s for {n} of {of} (resumed)"),
        _ => format!("{w:.0} s"),
    }
}

/// `, 7h 12m over 5 sessions` when several sessions wrote a folder's results (each counted to
/// its last save), else nothing: the time one process measured is only its own part.
fn in_all(t: Option<SessionsTime>) -> String {
    match t {
        Some(t) if t.sessions > 1 => format!(
            ", {} over {} sessions",
            retroformer_report::progress::duration(t.seconds as f64),
            t.sessions
        ),
        _ => String::new(),
    }
}

/// A training's wall time, the part a resumed process ran named, and its steps' time in all.
fn train_secs(t: &TrainFigures) -> String {
    let wall = match t.wall_s {
        Some(w) if t.resumed_from > 0 => format!(
            "{w:.0} s for steps {}-{} (resumed)",
            t.resumed_from + 1,
            t.steps
        ),
        w => secs(w),
    };
    if t.steps_s > 0.0 {
        format!("{wall}, steps {:.0} s in all", t.steps_s)
    } else {
        wall
    }
}

/// The canary's wall time and the dev tasks of both arms this process evaluated in it.
fn canary_secs(c: &CanaryFigures) -> String {
    match (c.wall_s, c.wall_tasks) {
        (Some(w), Some(n)) => format!("{w:.0} s for the {n} dev tasks evaluated by this process"),
        (w, _) => secs(w),
    }
}

fn secs(w: Option<f64>) -> String {
    w.map_or("resumed".into(), |w| format!("{w:.0} s"))
}

/// An arm's line: GSM8K's answers with their parsable rate, or the household's episodes, whose
/// every action is admissible (the grammar), so that a parsable rate would say nothing.
fn arm_line(name: &str, kind: &str, s: &Score) -> String {
    let pass = s
        .pass_at_k
        .map_or(String::new(), |p| format!(", pass@k {p:.3}"));
    let tail = format!(
        "{}{}{}",
        s.wall_s.map_or(String::new(), |w| format!(
            ", {}",
            part_secs(w, s.wall_tasks, s.problems)
        )),
        in_all(s.time),
        machines_part(&s.machines),
    );
    match s.episodes {
        Some(_) => format!(
            "{name} {kind}: {:.3} of {} episodes succeeded ({} tasks){pass}, {:.0} tokens an episode{tail}",
            s.accuracy, s.answers, s.problems, s.mean_tokens
        ),
        None => format!(
            "{name} {kind}: {:.3} of {} answers ({} problems), parsable {:.3}, correct among parsable {:.3}{pass}, {:.0} tokens an answer{tail}",
            s.accuracy, s.answers, s.problems, s.parsable, s.accuracy_parsable, s.mean_tokens
        ),
    }
}

/// A round's lines; `household`: its examples are whole episodes that reached the goal.
fn round_lines(r: &RoundFigures, teacher: Option<&str>, household: bool) -> Vec<String> {
    let mut out = Vec::new();
    let n = r.round;
    if let Some(c) = &r.collect {
        let who = teacher.map_or_else(
            || r.policy.as_deref().unwrap_or("base").to_string(),
            |t| format!("teacher {t}"),
        );
        let time = format!(
            "{}{}",
            c.wall_s
                .map_or("resumed".into(), |w| part_secs(w, c.wall_tasks, c.problems)),
            in_all(c.time)
        );
        out.push(match c.episodes {
            Some(_) => format!(
                "round {n} collect ({who}): {} tasks, {} episodes ({} succeeded), {} train tasks solved ({} by their first episode), {} tokens, {time}",
                c.problems, c.attempts, c.correct_attempts, c.train_solved,
                c.train_first_correct, c.generated_tokens
            ),
            None => format!(
                "round {n} collect ({who}): {} problems, {} attempts ({} correct, {} parsable), {} train problems solved ({} on the first try), {} tokens, {time}",
                c.problems, c.attempts, c.correct_attempts, c.parsable_attempts,
                c.train_solved, c.train_first_correct, c.generated_tokens
            ),
        });
        if let Some(e) = &c.episodes {
            out.push(format!("  round {n} collect episodes: {}", e.line()));
        }
    }
    if let Some(d) = &r.data {
        out.push(if household {
            format!(
                "round {n} data: {} episodes that reached the goal ({} tokens), {} held out; placebo {} episodes ({} reached it, {} tokens)",
                d.samples, d.tokens, d.heldout, d.placebo, d.placebo_correct, d.placebo_tokens
            )
        } else {
            format!(
                "round {n} data: {} correct samples ({} from retries, {} tokens), {} held out; placebo {} ({} correct, {} tokens)",
                d.samples, d.from_retries, d.tokens, d.heldout, d.placebo, d.placebo_correct, d.placebo_tokens
            )
        });
    }
    for t in &r.train {
        out.push(format!(
            "round {n} train {}: {} samples, {} steps (best {:?}), loss {:.3} -> {:.3}, held-out {:?}, {:.1} MB, {}",
            t.name, t.samples, t.steps, t.best_step, t.loss[0], t.loss[1], t.heldout_loss,
            t.bytes as f64 / 1e6, train_secs(t)
        ));
    }
    if let Some(c) = &r.canary {
        out.push(format!(
            "round {n} canary: candidate {:.3} vs incumbent {:.3} ({}) on dev, greedy: {}, {}",
            c.candidate_score,
            c.incumbent_score,
            c.incumbent.as_deref().unwrap_or("base"),
            if c.promoted {
                "promoted"
            } else {
                "kept the incumbent"
            },
            canary_secs(c)
        ));
    }
    out
}
