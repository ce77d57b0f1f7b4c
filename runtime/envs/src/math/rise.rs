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
use retroformer::provenance::{note_saved, other_machine_warning, record_model_session};
use retroformer_llm::{
    CancelToken, ChatMessage, GenerateRequest, Generation, LanguageModel, LlmError, SamplingParams,
    Session,
};

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
    /// Problems in flight together: the session's lanes hold this many problems' attempts (and
    /// all their parallel samples), continuously refilled. 1 (runs before this setting
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
        let reqs = self.requests(jobs, max_tokens)?;
        let start = Instant::now();
        let gens = self.session.generate_batch(&reqs)?;
        let batch_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(jobs
            .iter()
            .zip(gens)
            .map(|((problem, _, _), g)| {
                let ms = if jobs.len() == 1 {
                    batch_ms
                } else {
                    g.stats.total_ms
                };
                attempt_of(problem, &g, ms)
            })
            .collect())
    }

    /// Several attempts through one [`Session::generate_stream`], each handed to `done` with
    /// its position in `jobs` as soon as it ends. The first error (a request's, or `done`'s)
    /// cancels the requests still running and is returned.
    pub fn attempt_stream<E: From<LlmError> + Send>(
        &mut self,
        jobs: &[Job<'_>],
        max_tokens: u32,
        done: &mut (dyn FnMut(usize, Attempt) -> Result<(), E> + Send),
    ) -> Result<(), E> {
        let cancel = CancelToken::new();
        let first = self
            .requests(jobs, max_tokens)
            .map_err(|AgentError::Llm(e)| E::from(e))?
            .into_iter()
            .enumerate()
            .map(|(k, mut req)| {
                req.cancel = Some(cancel.clone());
                (k as u64, req)
            })
            .collect();
        let mut failed: Option<E> = None;
        self.session.generate_stream(first, &mut |key, g| {
            if failed.is_some() {
                return Vec::new();
            }
            let k = key as usize;
            let r = g
                .map_err(E::from)
                .and_then(|g| done(k, attempt_of(jobs[k].0, &g, g.stats.total_ms)));
            if let Err(e) = r {
                cancel.cancel();
                failed = Some(e);
            }
            Vec::new()
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// The requests of `jobs`: each one's chat prompt and sampler.
    fn requests(
        &self,
        jobs: &[Job<'_>],
        max_tokens: u32,
    ) -> Result<Vec<GenerateRequest>, AgentError> {
        let mut reqs = Vec::with_capacity(jobs.len());
        for (_, msgs, sampling) in jobs {
            reqs.push(request(self.model, msgs, sampling.clone(), max_tokens)?);
        }
        Ok(reqs)
    }
}

/// The attempt at `problem` that generation `g` makes, `ms` long.
pub(crate) fn attempt_of(problem: &MathProblem, g: &Generation, ms: f64) -> Attempt {
    let response = g.text.trim().to_string();
    Attempt {
        answer: extract_answer(problem.dataset, &response),
        reward: reward(problem, &response),
        response,
        evaluated_tokens: g.stats.evaluated_tokens,
        reused_tokens: g.stats.reused_tokens,
        generated_tokens: g.stats.generated_tokens,
        ms,
    }
}

/// Refuses a saved result of another problem or format, or whose attempts or metrics the
/// checker makes otherwise now.
fn check_saved(p: &MathProblem, r: &RiseResult) -> Result<(), String> {
    if r.format_version != FORMAT_VERSION || r.problem_id != p.id || r.gold != p.answer {
        return Err("another format or problem than this run's; use another folder".into());
    }
    r.sequential
        .iter()
        .chain(&r.parallel)
        .try_for_each(|a| rejudge(p, a))?;
    if r.metrics != metrics(&r.sequential, &r.parallel) {
        return Err("its metrics are not its attempts': the file was edited; delete it".into());
    }
    Ok(())
}

/// Whether a saved attempt's answer and reward are what the checker makes of its response now:
/// a resumed run must not count an edited "correct" as correct. Says what differs.
pub(crate) fn rejudge(problem: &MathProblem, a: &Attempt) -> Result<(), String> {
    let (answer, reward) = (
        extract_answer(problem.dataset, &a.response),
        reward(problem, &a.response),
    );
    if answer != a.answer || reward != a.reward {
        return Err(format!(
            "an attempt says answer {:?} and reward {}, but its response judges as {answer:?} \
             and {reward}: the file was edited; delete it to redo the problem",
            a.answer, a.reward
        ));
    }
    Ok(())
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

/// The most turns of one problem's attempt chain.
pub const MAX_TURNS: u32 = 100;
/// The most samples drawn of one turn (each is kept in memory with its text).
pub const MAX_SAMPLES: u32 = 1024;

/// The most tokens one answer may take (`--max-tokens`): each lane holds the prompt and the
/// window's answers, so far more would ask for contexts no device has.
pub const MAX_ANSWER_TOKENS: u32 = 32_768;

/// Checks `--max-tokens`: 1 to [`MAX_ANSWER_TOKENS`].
pub fn check_max_tokens(n: u32) -> Result<(), (&'static str, String)> {
    if !(1..=MAX_ANSWER_TOKENS).contains(&n) {
        return Err((
            "max-tokens",
            format!("{n}: must be 1 to {MAX_ANSWER_TOKENS}"),
        ));
    }
    Ok(())
}

/// Checks `--turns` and `--samples`: at least 1, at most [`MAX_TURNS`] and [`MAX_SAMPLES`].
pub fn check_counts(turns: u32, samples: u32) -> Result<(), (&'static str, String)> {
    if !(1..=MAX_TURNS).contains(&turns) {
        return Err(("turns", format!("{turns}: must be 1 to {MAX_TURNS}")));
    }
    if !(1..=MAX_SAMPLES).contains(&samples) {
        return Err(("samples", format!("{samples}: must be 1 to {MAX_SAMPLES}")));
    }
    Ok(())
}

/// The sampler of one attempt: greedy at temperature 0, else `temperature` and `top_p`.
pub(crate) fn sampling(temperature: f32, top_p: f32, seed: u32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p: if temperature > 0.0 { top_p } else { 1.0 },
        seed,
        ..SamplingParams::default()
    }
}

/// A stable per-problem seed (FNV-1a of the id, mixed with the base seed).
pub(crate) fn problem_seed(base: u32, id: &str, k: u32) -> u32 {
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

/// RISE inference on several problems together (see [`solve_stream`]), in order.
pub fn solve_many(
    problems: &[&MathProblem],
    cfg: &RiseConfig,
    solver: &mut MathAgent<'_>,
) -> Result<Vec<RiseResult>, AgentError> {
    let mut out: Vec<Option<RiseResult>> = vec![None; problems.len()];
    solve_stream(problems, cfg, solver, &mut |i, r| {
        out[i] = Some(r);
        Ok::<(), AgentError>(())
    })?;
    Ok(out.into_iter().flatten().collect())
}

/// RISE inference on several problems through one [`Session::generate_stream`] (continuous
/// batching): each problem's sequential turns are a chain of requests (a turn's prompt extends
/// the last one's, so it continues in its lane, on its KV) and each parallel sample a request
/// of its own; none waits for another problem's. A problem is handed to `done` with its
/// position in `problems` as soon as its last attempt ends; its `wall_ms` is the time since the
/// previous problem ended. The first error (a request's, or `done`'s) stops the stream.
pub fn solve_stream<E: From<LlmError> + Send>(
    problems: &[&MathProblem],
    cfg: &RiseConfig,
    solver: &mut MathAgent<'_>,
    done: &mut (dyn FnMut(usize, RiseResult) -> Result<(), E> + Send),
) -> Result<(), E> {
    let mode = cfg.mode();
    let turns = if matches!(mode, Mode::Sequential | Mode::Both) {
        cfg.turns as usize
    } else {
        0
    };
    let samples = if matches!(mode, Mode::Parallel | Mode::Both) {
        cfg.samples as usize
    } else {
        0
    };
    // Chain 0 of a problem is its sequential turns, chains 1..=samples its parallel samples.
    let per = 1 + samples;
    let n = problems.len();
    let mut sequential: Vec<Vec<Attempt>> = vec![Vec::new(); n];
    let mut parallel: Vec<Vec<Option<Attempt>>> = vec![vec![None; samples]; n];
    let mut open: Vec<usize> = vec![usize::from(turns > 0) + samples; n];
    let model = solver.model;
    let mut last = Instant::now();
    retroformer::agent::run_chains::<E>(&mut *solver.session, n * per, |k, g| {
        let (i, c) = (k / per, k % per);
        let p = problems[i];
        // A refused request fails the run, as it would one request at a time.
        let g = g.transpose()?;
        let started = g.is_some();
        if let Some(g) = g {
            let a = attempt_of(p, &g, g.stats.total_ms);
            if c == 0 {
                sequential[i].push(a);
            } else {
                parallel[i][c - 1] = Some(a);
            }
        }
        let next = if c == 0 && sequential[i].len() < turns {
            // The feedback is always "incorrect": the turns never learn the reward.
            let t = sequential[i].len();
            let texts: Vec<String> = sequential[i].iter().map(|a| a.response.clone()).collect();
            let seed = problem_seed(cfg.seed, &p.id, t as u32);
            let s = sampling(cfg.sequential_temperature, cfg.top_p, seed);
            Some(request(
                model,
                &messages(&p.question, &texts, cfg.window),
                s,
                cfg.max_tokens,
            )?)
        } else if c > 0 && !started {
            let seed = problem_seed(cfg.seed, &p.id, 1000 + (c - 1) as u32);
            let s = sampling(cfg.parallel_temperature, cfg.top_p, seed);
            Some(request(
                model,
                &messages(&p.question, &[], cfg.window),
                s,
                cfg.max_tokens,
            )?)
        } else {
            None
        };
        if next.is_none() && started {
            open[i] -= 1;
            if open[i] == 0 {
                let now = Instant::now();
                let wall_ms = now.duration_since(last).as_secs_f64() * 1e3;
                last = now;
                let sequential = std::mem::take(&mut sequential[i]);
                let parallel: Vec<Attempt> = parallel[i].drain(..).flatten().collect();
                done(
                    i,
                    RiseResult {
                        format_version: FORMAT_VERSION,
                        problem_id: p.id.clone(),
                        gold: p.answer.clone(),
                        metrics: metrics(&sequential, &parallel),
                        sequential,
                        parallel,
                        wall_ms,
                    },
                )?;
            }
        }
        Ok(next)
    })
}

/// The request for one attempt: `msgs` in `model`'s chat template, sampled with `sampling`.
pub(crate) fn request(
    model: &dyn LanguageModel,
    msgs: &[ChatMessage],
    sampling: SamplingParams,
    max_tokens: u32,
) -> Result<GenerateRequest, LlmError> {
    let mut req = GenerateRequest::new(model.chat_prompt(msgs, true)?, max_tokens);
    req.sampling = sampling;
    Ok(req)
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
    mut on_done: impl FnMut(&RiseResult) + Send,
) -> Result<RiseSummary, RiseError> {
    claim_folder(out, cfg)?;
    let mut results: Vec<Option<RiseResult>> = Vec::with_capacity(problems.len());
    for p in problems {
        let path = runner::task_path(out, 0, &p.id);
        let r: Option<RiseResult> = read_json(&path)?;
        if let Some(r) = &r {
            check_saved(p, r).map_err(|e| RiseError::Config(format!("{}: {e}", path.display())))?;
            on_done(r);
        }
        results.push(r);
    }
    let pending: Vec<usize> = (0..problems.len())
        .filter(|&i| results[i].is_none())
        .collect();
    if !pending.is_empty() {
        if let Some(w) = other_machine_warning(out)? {
            tracing::warn!("{w}");
        }
    }
    let done = problems.len() - pending.len();
    record_model_session(out, done, pending.len(), &*solver.session)?;
    // Every open problem goes to the stream at once; the session's lanes (`batch` problems'
    // worth) bound how many run together. Each is saved as soon as it ends.
    let group: Vec<&MathProblem> = pending.iter().map(|&i| &problems[i]).collect();
    solve_stream(&group, cfg, solver, &mut |k, r| {
        let i = pending[k];
        write_json(&runner::task_path(out, 0, &problems[i].id), &r)?;
        note_saved(out)?;
        on_done(&r);
        results[i] = Some(r);
        Ok::<(), RiseError>(())
    })?;
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

mod rollouts;
pub use rollouts::{
    best_candidate, collect, collect_all, read_rollouts, Candidates, Rollout, RolloutConfig,
    RolloutTurn,
};

mod data;
pub use data::{criterion_counts, shuffle, to_dataset, write_dataset, Criterion};

#[cfg(test)]
mod tests;
