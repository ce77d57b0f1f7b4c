//! RISE: multi-turn self-correction on math problems. Inference (sequential turns and parallel
//! samples, with RISE's four metrics), rollout collection (RISE's data generation: n samples
//! per turn, keep the best, stop at a correct one) and conversion of rollouts into
//! reward-weighted training samples for the trainer.
//!
//! The feedback in sequential inference is always "incorrect", whatever the answer, so no
//! oracle leaks into the turns; rollout collection, which is allowed to use the reward, stops at
//! a correct answer. The prompts are our own wording.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{extract_answer, reward, Dataset, MathProblem};
use retroformer::agent::runner;
use retroformer::agent::{files, AgentError};
use retroformer_llm::{ChatMessage, GenerateRequest, LanguageModel, SamplingParams, Session};

/// One attempt to make: the problem, the conversation so far and the sampler.
pub type Job<'p> = (&'p MathProblem, Vec<ChatMessage>, SamplingParams);

/// Format version of every file this module writes. 2: `window` counts the turn being made, as
/// published (window 2 shows ONE earlier attempt; version 1 showed two), and sampled attempts
/// record their top-p.
pub const FORMAT_VERSION: u32 = 2;

/// RISE's published sampler for every turn (`policies.py`): temperature 1.0, top-p 1.0.
pub const PUBLISHED_TEMPERATURE: f32 = 1.0;
/// See [`PUBLISHED_TEMPERATURE`].
pub const PUBLISHED_TOP_P: f32 = 1.0;

const SYSTEM: &str = "You solve math problems. Reason step by step, then give the final answer on its own as \\boxed{ANSWER}.";
const EXAMPLE_QUESTION: &str = "A baker fills 7 trays with 12 rolls each. She sells all but 15 of the rolls at $2 each. How much money does she take in?";
const EXAMPLE_ANSWER: &str = "She bakes 7 * 12 = 84 rolls. She sells 84 - 15 = 69 of them. At $2 each she takes in 69 * 2 = 138 dollars.\n\\boxed{138}";

/// The observation after an attempt judged (or, in sequential inference, declared) wrong.
pub fn retry_message(question: &str) -> String {
    format!("The answer is incorrect. Please try again. Here's the question: {question}")
}

/// The observation after a correct attempt (rollout collection only).
pub const SUCCESS_MESSAGE: &str = "The answer is correct.";

/// The conversation for the next attempt: instruction, our worked example, the question, then
/// the last `window - 1` attempts each followed by the retry message. `window` counts the turn
/// being made, as RISE's `context_window` does: 1 shows no earlier attempt, 2 shows one.
pub fn messages(question: &str, attempts: &[String], window: usize) -> Vec<ChatMessage> {
    let mut m = vec![
        ChatMessage::new("system", SYSTEM),
        ChatMessage::new("user", EXAMPLE_QUESTION),
        ChatMessage::new("assistant", EXAMPLE_ANSWER),
        ChatMessage::new("user", question),
    ];
    let start = attempts.len().saturating_sub(window.saturating_sub(1));
    for a in &attempts[start..] {
        m.push(ChatMessage::new("assistant", a.trim()));
        m.push(ChatMessage::new("user", retry_message(question)));
    }
    m
}

/// Inference modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `turns` attempts, each seeing the last `window - 1` ones.
    Sequential,
    /// `samples` independent first attempts.
    Parallel,
    /// Both (all four metrics).
    Both,
}

impl Mode {
    /// Parse a CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sequential" => Mode::Sequential,
            "parallel" => Mode::Parallel,
            "both" => Mode::Both,
            _ => return None,
        })
    }
}

/// Settings of an inference run (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiseConfig {
    /// For plots: `rise`.
    pub agent: String,
    /// `sequential`, `parallel` or `both` (recorded as the strategy).
    pub strategy: String,
    /// Which checker.
    pub dataset: Dataset,
    /// Sequential turns.
    pub turns: u32,
    /// Turns each turn's context holds, itself included (RISE's `context_window`).
    pub window: usize,
    /// Parallel samples.
    pub samples: u32,
    /// Temperature of sequential turns (0: greedy).
    pub sequential_temperature: f32,
    /// Temperature of parallel samples.
    pub parallel_temperature: f32,
    /// Top-p of every sampled attempt (runs before this setting: 0.95).
    #[serde(default = "old_top_p")]
    pub top_p: f32,
    /// Tokens per attempt.
    pub max_tokens: u32,
    /// Base seed of the samplers.
    pub seed: u32,
    /// Always 1.
    pub trials: u32,
    /// The model.
    pub actor: String,
    /// Problems solved together: each turn's attempts (and all their parallel samples) go to
    /// the session in one [`Session::generate_batch`] call. 1 (runs before this setting
    /// existed) attempts one at a time; batched results may differ in the last float bits.
    #[serde(default = "one")]
    pub batch: u32,
    /// [`FORMAT_VERSION`] of the run (1 for runs before it was recorded): a run of another
    /// version is not resumed, since `window` changed its meaning.
    #[serde(default = "one")]
    pub format_version: u32,
    /// The LoRA adapter on the model (a GGUF path), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The adapter file's sha256: a run is not resumed with another file at the same path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_sha256: Option<String>,
}

fn one() -> u32 {
    1
}

fn old_top_p() -> f32 {
    0.95
}

impl RiseConfig {
    /// RISE's evaluation settings: 5 turns, window 2 (one earlier attempt), 5 parallel samples,
    /// every attempt sampled at temperature 1.0, top-p 1.0.
    pub fn new(dataset: Dataset, mode: Mode, actor: &str) -> Self {
        Self {
            agent: "rise".into(),
            strategy: match mode {
                Mode::Sequential => "sequential",
                Mode::Parallel => "parallel",
                Mode::Both => "both",
            }
            .into(),
            dataset,
            turns: 5,
            window: 2,
            samples: 5,
            sequential_temperature: PUBLISHED_TEMPERATURE,
            parallel_temperature: PUBLISHED_TEMPERATURE,
            top_p: PUBLISHED_TOP_P,
            max_tokens: 512,
            seed: 0,
            trials: 1,
            actor: actor.into(),
            batch: 1,
            format_version: FORMAT_VERSION,
            adapter: None,
            adapter_sha256: None,
        }
    }

    fn mode(&self) -> Mode {
        Mode::parse(&self.strategy).unwrap_or(Mode::Both)
    }
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The model's text.
    pub response: String,
    /// The canonical answer (for majority votes), if one could be parsed.
    pub answer: Option<String>,
    /// The checker's reward: 1 correct, 0 wrong, -1 no parsable answer.
    pub reward: f32,
    /// Prompt tokens evaluated.
    pub evaluated_tokens: u32,
    /// Prompt tokens reused.
    pub reused_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Wall time, milliseconds.
    pub ms: f64,
}

/// The four RISE metrics for one problem (or, averaged, for a set); `None` when the mode that
/// measures it was not run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The first sequential answer is correct.
    pub m1_t1: Option<f64>,
    /// The majority of the parallel samples is correct.
    pub m5_t1: Option<f64>,
    /// The majority of the sequential turns' answers is correct.
    pub m1_t5: Option<f64>,
    /// Any sequential turn is correct (oracle stop).
    pub p1_t5: Option<f64>,
}

/// The most common answer (ties: the one seen first); attempts without an answer don't vote.
pub fn majority(attempts: &[Attempt]) -> Option<&Attempt> {
    let mut counts: Vec<(&str, usize, usize)> = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        if let Some(ans) = &a.answer {
            match counts.iter_mut().find(|c| c.0 == ans) {
                Some(c) => c.1 += 1,
                None => counts.push((ans, 1, i)),
            }
        }
    }
    let best = counts
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))?;
    attempts.get(best.2)
}

/// The metrics of one problem's attempts.
pub fn metrics(sequential: &[Attempt], parallel: &[Attempt]) -> Metrics {
    let correct = |a: Option<&Attempt>| f64::from(u8::from(a.is_some_and(|a| a.reward >= 1.0)));
    let seq = !sequential.is_empty();
    Metrics {
        m1_t1: seq.then(|| correct(sequential.first())),
        m5_t1: (!parallel.is_empty()).then(|| correct(majority(parallel))),
        m1_t5: seq.then(|| correct(majority(sequential))),
        p1_t5: seq.then(|| f64::from(u8::from(sequential.iter().any(|a| a.reward >= 1.0)))),
    }
}

/// The mean of each metric over problems (skipping `None`s).
pub fn mean_metrics(all: &[Metrics]) -> Metrics {
    let mean = |f: fn(&Metrics) -> Option<f64>| {
        let v: Vec<f64> = all.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Metrics {
        m1_t1: mean(|m| m.m1_t1),
        m5_t1: mean(|m| m.m5_t1),
        m1_t5: mean(|m| m.m1_t5),
        p1_t5: mean(|m| m.p1_t5),
    }
}

/// One problem's result (`trial-00/ID.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiseResult {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The gold answer.
    pub gold: String,
    /// Sequential turns.
    pub sequential: Vec<Attempt>,
    /// Parallel samples.
    pub parallel: Vec<Attempt>,
    /// This problem's metrics.
    pub metrics: Metrics,
    /// Wall time, milliseconds.
    pub wall_ms: f64,
}

/// A model and its session.
pub struct MathAgent<'a> {
    /// The model (chat template).
    pub model: &'a dyn LanguageModel,
    /// Its session.
    pub session: &'a mut dyn Session,
}

impl MathAgent<'_> {
    /// One attempt given the conversation so far.
    pub fn attempt(
        &mut self,
        problem: &MathProblem,
        msgs: &[ChatMessage],
        sampling: SamplingParams,
        max_tokens: u32,
    ) -> Result<Attempt, AgentError> {
        let mut a = self.attempts(&[(problem, msgs.to_vec(), sampling)], max_tokens)?;
        Ok(a.remove(0))
    }

    /// Several attempts, in order, in one [`Session::generate_batch`] call (decoded together
    /// where the session can). Each attempt's `ms` runs from the call's start to its own end.
    pub fn attempts(
        &mut self,
        jobs: &[Job<'_>],
        max_tokens: u32,
    ) -> Result<Vec<Attempt>, AgentError> {
        let mut reqs = Vec::with_capacity(jobs.len());
        for (_, msgs, sampling) in jobs {
            let mut req = GenerateRequest::new(self.model.chat_prompt(msgs, true)?, max_tokens);
            req.sampling = sampling.clone();
            reqs.push(req);
        }
        let start = Instant::now();
        let gens = self.session.generate_batch(&reqs)?;
        let batch_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(jobs
            .iter()
            .zip(gens)
            .map(|((problem, _, _), g)| {
                let response = g.text.trim().to_string();
                Attempt {
                    answer: extract_answer(problem.dataset, &response),
                    reward: reward(problem, &response),
                    response,
                    evaluated_tokens: g.stats.evaluated_tokens,
                    reused_tokens: g.stats.reused_tokens,
                    generated_tokens: g.stats.generated_tokens,
                    ms: if jobs.len() == 1 {
                        batch_ms
                    } else {
                        g.stats.total_ms
                    },
                }
            })
            .collect())
    }
}

/// Checks a RISE run's window and sampler: the flag at fault (without `--`) and why.
pub fn check_sampling(
    window: usize,
    temperature: f32,
    top_p: f32,
) -> Result<(), (&'static str, String)> {
    if window == 0 {
        return Err(("window", "0: must be at least 1 (the turn itself)".into()));
    }
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(("temperature", format!("{temperature}: must be 0 or more")));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(("top-p", format!("{top_p}: must be in (0, 1]")));
    }
    Ok(())
}

/// The sampler of one attempt: greedy at temperature 0, else `temperature` and `top_p`.
fn sampling(temperature: f32, top_p: f32, seed: u32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p: if temperature > 0.0 { top_p } else { 1.0 },
        seed,
        ..SamplingParams::default()
    }
}

/// A stable per-problem seed (FNV-1a of the id, mixed with the base seed).
fn problem_seed(base: u32, id: &str, k: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h ^ base.wrapping_mul(0x9e37_79b9) ^ k.wrapping_mul(0x85eb_ca6b)
}

/// RISE inference on one problem.
pub fn solve(
    problem: &MathProblem,
    cfg: &RiseConfig,
    solver: &mut MathAgent<'_>,
) -> Result<RiseResult, AgentError> {
    Ok(solve_many(&[problem], cfg, solver)?.remove(0))
}

/// RISE inference on several problems together: each sequential turn of all of them is one
/// batch, and so are all their parallel samples. Each problem's `wall_ms` is the batch's wall
/// time divided by its problems.
pub fn solve_many(
    problems: &[&MathProblem],
    cfg: &RiseConfig,
    solver: &mut MathAgent<'_>,
) -> Result<Vec<RiseResult>, AgentError> {
    let start = Instant::now();
    let mode = cfg.mode();
    let mut sequential: Vec<Vec<Attempt>> = vec![Vec::new(); problems.len()];
    if matches!(mode, Mode::Sequential | Mode::Both) {
        for t in 0..cfg.turns {
            // The feedback is always "incorrect": the turns never learn the reward.
            let jobs: Vec<Job<'_>> = problems
                .iter()
                .zip(&sequential)
                .map(|(p, done)| {
                    let texts: Vec<String> = done.iter().map(|a| a.response.clone()).collect();
                    (
                        *p,
                        messages(&p.question, &texts, cfg.window),
                        sampling(
                            cfg.sequential_temperature,
                            cfg.top_p,
                            problem_seed(cfg.seed, &p.id, t),
                        ),
                    )
                })
                .collect();
            let made = solver.attempts(&jobs, cfg.max_tokens)?;
            for (s, a) in sequential.iter_mut().zip(made) {
                s.push(a);
            }
        }
    }
    let mut parallel: Vec<Vec<Attempt>> = vec![Vec::new(); problems.len()];
    if matches!(mode, Mode::Parallel | Mode::Both) {
        let jobs: Vec<Job<'_>> = problems
            .iter()
            .flat_map(|p| {
                (0..cfg.samples).map(move |k| {
                    (
                        *p,
                        messages(&p.question, &[], cfg.window),
                        sampling(
                            cfg.parallel_temperature,
                            cfg.top_p,
                            problem_seed(cfg.seed, &p.id, 1000 + k),
                        ),
                    )
                })
            })
            .collect();
        let mut made = solver.attempts(&jobs, cfg.max_tokens)?.into_iter();
        for par in &mut parallel {
            par.extend(made.by_ref().take(cfg.samples as usize));
        }
    }
    let wall_ms = start.elapsed().as_secs_f64() * 1e3 / problems.len().max(1) as f64;
    Ok(problems
        .iter()
        .zip(sequential.into_iter().zip(parallel))
        .map(|(p, (sequential, parallel))| RiseResult {
            format_version: FORMAT_VERSION,
            problem_id: p.id.clone(),
            gold: p.answer.clone(),
            metrics: metrics(&sequential, &parallel),
            sequential,
            parallel,
            wall_ms,
        })
        .collect())
}

// ---- files ----------------------------------------------------------------------------------

/// Why a RISE run, rollout collection or conversion stopped: the runners share one error type.
pub type RiseError = runner::RunError;

use files::{file_err, read_json, write_json};

/// Claim `out` for a run with `cfg` (see [`files::claim_run_folder`]).
fn claim_folder<T>(out: &Path, cfg: &T) -> Result<(), RiseError>
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    files::claim_run_folder(out, cfg)?.map_err(RiseError::Config)?;
    let trials = out.join("trial-00");
    std::fs::create_dir_all(&trials).map_err(|e| file_err(&trials, e))?;
    Ok(())
}

/// Summary of an inference run (`rise.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiseSummary {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Problems.
    pub problems: usize,
    /// The four metrics over the problems.
    pub metrics: Metrics,
    /// Sequential accuracy at each turn (share of problems whose turn-t answer is correct).
    pub accuracy_by_turn: Vec<f64>,
    /// Mean wall time per problem, seconds.
    pub mean_problem_s: f64,
    /// Mean generated tokens per problem.
    pub mean_generated_tokens: f64,
}

/// Run (or resume) RISE inference over `problems`; one atomically written file per problem.
pub fn run(
    problems: &[MathProblem],
    cfg: &RiseConfig,
    out: &Path,
    solver: &mut MathAgent<'_>,
    mut on_done: impl FnMut(&RiseResult),
) -> Result<RiseSummary, RiseError> {
    claim_folder(out, cfg)?;
    let mut results: Vec<Option<RiseResult>> = Vec::with_capacity(problems.len());
    for p in problems {
        let r: Option<RiseResult> = read_json(&runner::task_path(out, 0, &p.id))?;
        if let Some(r) = &r {
            on_done(r);
        }
        results.push(r);
    }
    let pending: Vec<usize> = (0..problems.len())
        .filter(|&i| results[i].is_none())
        .collect();
    for chunk in pending.chunks(cfg.batch.max(1) as usize) {
        let group: Vec<&MathProblem> = chunk.iter().map(|&i| &problems[i]).collect();
        for (&i, r) in chunk.iter().zip(solve_many(&group, cfg, solver)?) {
            write_json(&runner::task_path(out, 0, &problems[i].id), &r)?;
            on_done(&r);
            results[i] = Some(r);
        }
    }
    let results: Vec<RiseResult> = results.into_iter().flatten().collect();
    let summary = summarize(&results, cfg.turns);
    write_json(&out.join("rise.json"), &summary)?;
    Ok(summary)
}

/// Totals over problems.
pub fn summarize(results: &[RiseResult], turns: u32) -> RiseSummary {
    let n = results.len().max(1) as f64;
    let by_turn = (0..turns as usize)
        .map(|t| {
            results
                .iter()
                .filter(|r| r.sequential.get(t).is_some_and(|a| a.reward >= 1.0))
                .count() as f64
                / n
        })
        .collect();
    let all: Vec<Metrics> = results.iter().map(|r| r.metrics.clone()).collect();
    RiseSummary {
        format_version: FORMAT_VERSION,
        problems: results.len(),
        metrics: mean_metrics(&all),
        accuracy_by_turn: if results.iter().any(|r| !r.sequential.is_empty()) {
            by_turn
        } else {
            Vec::new()
        },
        mean_problem_s: results.iter().map(|r| r.wall_ms).sum::<f64>() / n / 1e3,
        mean_generated_tokens: results
            .iter()
            .flat_map(|r| r.sequential.iter().chain(&r.parallel))
            .map(|a| f64::from(a.generated_tokens))
            .sum::<f64>()
            / n,
    }
}

// ---- rollouts -------------------------------------------------------------------------------

/// Settings of rollout collection (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutConfig {
    /// Which checker.
    pub dataset: Dataset,
    /// Model per turn (the last repeats): e.g. a larger model first (distillation) or the
    /// learner itself (self-distillation).
    pub models: Vec<String>,
    /// Samples per turn (the last repeats), e.g. `[1, 16]`.
    pub samples: Vec<u32>,
    /// Most turns.
    pub turns: u32,
    /// Turns each turn's context holds, itself included (RISE's `context_window`).
    pub window: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Sampling top-p (runs before this setting: 0.95).
    #[serde(default = "old_top_p")]
    pub top_p: f32,
    /// Tokens per attempt.
    pub max_tokens: u32,
    /// Base seed.
    pub seed: u32,
    /// [`FORMAT_VERSION`] (1 for runs before it was recorded): another version is not resumed.
    #[serde(default = "one")]
    pub format_version: u32,
    /// Where a later turn's candidates are sampled: `History` (RISE: after the kept attempts
    /// and the retry messages) or `Fresh` (from the question alone, as a first attempt). The
    /// kept candidate goes into the dialogue after the history either way, so the training
    /// sample is the same shape; `Fresh` only changes how candidates are found. It exists
    /// because a small learner told "incorrect" mostly repeats its answer (see the README).
    #[serde(default, skip_serializing_if = "Candidates::is_history")]
    pub candidates: Candidates,
}

/// See [`RolloutConfig::candidates`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Candidates {
    /// After the history (RISE).
    #[default]
    History,
    /// From the question alone.
    Fresh,
}

impl Candidates {
    /// Parse a CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "history" => Some(Candidates::History),
            "fresh" => Some(Candidates::Fresh),
            _ => None,
        }
    }

    fn is_history(&self) -> bool {
        *self == Candidates::History
    }
}

/// One turn of a rollout: every candidate, and the one kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutTurn {
    /// The model that sampled this turn.
    pub model: String,
    /// The candidates.
    pub candidates: Vec<Attempt>,
    /// Index of the kept candidate (the best reward; the first among equals).
    pub chosen: usize,
    /// Its reward.
    pub reward: f32,
}

/// One problem's rollout (`rollouts/ID.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold: String,
    /// The context window the turns were generated with (counting the turn being made; a
    /// version-1 file's is converted when read).
    pub window: usize,
    /// The turns, until a correct one or the limit.
    pub turns: Vec<RolloutTurn>,
    /// The whole dialogue of kept answers: instruction, example, question, then each kept
    /// answer followed by the observation it got (the retry message, or the success message).
    pub dialogue: Vec<ChatMessage>,
}

/// The index of the best candidate (highest reward, first among equals).
pub fn best_candidate(c: &[Attempt]) -> usize {
    let mut best = 0;
    for (i, a) in c.iter().enumerate() {
        if a.reward > c[best].reward {
            best = i;
        }
    }
    best
}

/// Collect one rollout. `solvers[i]` samples turn i (the last repeats).
pub fn collect(
    problem: &MathProblem,
    cfg: &RolloutConfig,
    solvers: &mut [MathAgent<'_>],
) -> Result<Rollout, RiseError> {
    if solvers.is_empty() || cfg.samples.is_empty() {
        return Err(RiseError::Config(
            "rollouts need at least one model and one sample count".into(),
        ));
    }
    let mut kept: Vec<String> = Vec::new();
    let mut turns = Vec::new();
    for t in 0..cfg.turns {
        let i = (t as usize).min(solvers.len() - 1);
        let n = cfg.samples[(t as usize).min(cfg.samples.len() - 1)].max(1);
        let msgs = match cfg.candidates {
            Candidates::History => messages(&problem.question, &kept, cfg.window),
            Candidates::Fresh => messages(&problem.question, &[], cfg.window),
        };
        // The n candidates go to the session together (decoded as one batch where it can).
        let jobs: Vec<Job<'_>> = (0..n)
            .map(|k| {
                let s = sampling(
                    cfg.temperature,
                    cfg.top_p,
                    problem_seed(cfg.seed, &problem.id, t * 1000 + k),
                );
                (problem, msgs.clone(), s)
            })
            .collect();
        let candidates = solvers[i].attempts(&jobs, cfg.max_tokens)?;
        let chosen = best_candidate(&candidates);
        let reward = candidates[chosen].reward;
        kept.push(candidates[chosen].response.clone());
        turns.push(RolloutTurn {
            model: cfg.models[i.min(cfg.models.len() - 1)].clone(),
            candidates,
            chosen,
            reward,
        });
        if reward >= 1.0 {
            break;
        }
    }
    let mut dialogue = messages(&problem.question, &[], cfg.window);
    for t in &turns {
        dialogue.push(ChatMessage::new(
            "assistant",
            t.candidates[t.chosen].response.trim(),
        ));
        dialogue.push(ChatMessage::new(
            "user",
            if t.reward >= 1.0 {
                SUCCESS_MESSAGE.to_string()
            } else {
                retry_message(&problem.question)
            },
        ));
    }
    Ok(Rollout {
        format_version: FORMAT_VERSION,
        problem_id: problem.id.clone(),
        question: problem.question.clone(),
        gold: problem.answer.clone(),
        window: cfg.window,
        turns,
        dialogue,
    })
}

/// Collect (or resume collecting) rollouts into `out/rollouts/ID.json`.
pub fn collect_all(
    problems: &[MathProblem],
    cfg: &RolloutConfig,
    out: &Path,
    solvers: &mut [MathAgent<'_>],
    mut on_done: impl FnMut(&Rollout),
) -> Result<Vec<Rollout>, RiseError> {
    files::claim_run_folder(out, cfg)?.map_err(RiseError::Config)?;
    let folder = out.join("rollouts");
    std::fs::create_dir_all(&folder).map_err(|e| file_err(&folder, e))?;
    let mut all = Vec::new();
    for p in problems {
        let path = out
            .join("rollouts")
            .join(format!("{}.json", runner::file_stem(&p.id)));
        let r: Rollout = files::load_or_make(&path, || collect(p, cfg, solvers))?;
        on_done(&r);
        all.push(r);
    }
    Ok(all)
}

/// Read every rollout in `dir/rollouts`, sorted by problem id.
pub fn read_rollouts(dir: &Path) -> Result<Vec<Rollout>, RiseError> {
    let folder = dir.join("rollouts");
    let entries = std::fs::read_dir(&folder).map_err(|e| file_err(&folder, e))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| file_err(&folder, e))?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let mut r: Rollout = read_json(&p)?.ok_or_else(|| file_err(&p, "vanished"))?;
            if r.format_version == 1 {
                // Version 1 counted earlier attempts only.
                r.window += 1;
                r.format_version = FORMAT_VERSION;
            } else if r.format_version != FORMAT_VERSION {
                return Err(file_err(
                    &p,
                    format!(
                        "format_version {}: this build reads 1 and {FORMAT_VERSION}",
                        r.format_version
                    ),
                )
                .into());
            }
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.problem_id.cmp(&b.problem_id));
    Ok(out)
}

mod data;
pub use data::{criterion_counts, shuffle, to_dataset, write_dataset, Criterion};

#[cfg(test)]
mod tests;
