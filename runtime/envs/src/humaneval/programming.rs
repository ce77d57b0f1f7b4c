//! Reflexion for programming (HumanEval, MBPP): the model writes an implementation, the visible
//! tests run on it in the sandbox, and on failure it reflects on the implementation and the
//! failing tests and writes a new implementation given the previous one, the feedback and the
//! newest reflection (memory 1). The visible tests are the examples of the prompt's docstring
//! ([`super::examples`]); a prompt without any gets ONE test the model writes, drawn at random
//! from the ones it proposes, as published. The submitted implementation is the one that
//! passed the most visible tests (the latest of a tie), and its hidden tests decide `passed`.
//! For analysis only, the hidden tests also run on every other implementation (never shown to
//! the model), which measures the visible tests as a verifier. With `--temperature` above 0
//! every actor call samples, with a seed per task and iteration. Strategy `none` is the
//! single-shot baseline.
//!
//! The prompts are our own wording in the structure of Reflexion's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

mod hidden;
mod summary;
mod text;

use hidden::HiddenRun;
pub use hidden::InFlight;
pub use summary::*;
pub use text::*;

use super::examples::docstring_tests;
use super::{prompt_imports, Problem};
use retroformer::agent::reflect::clean;
use retroformer::agent::runner::{self, actor_seed, TrialSummary};
use retroformer::agent::{files, AgentError};
use retroformer_core::records::{RatingRecord, ReflectorInfo};
use retroformer_llm::{ChatMessage, GenerateRequest, LanguageModel, SamplingParams, Session};
use retroformer_sandbox::{Outcome, Pool, RunReport};

/// Format version of every file this module writes.
pub const FORMAT_VERSION: u32 = 1;

/// Settings of a programming run (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodingConfig {
    /// Always `"humaneval"`-style programming: recorded for plots.
    pub agent: String,
    /// `reflexion` or `none`.
    pub strategy: String,
    /// Most implementations per task (the first plus reflections), Reflexion's `max_iters`.
    pub max_iters: u32,
    /// Most self-written tests kept (1, as published; runs written before the docstring
    /// tests kept up to 6).
    pub max_tests: usize,
    /// Tokens per implementation.
    pub max_impl_tokens: u32,
    /// Trials (always 1: the iterations happen inside a task).
    pub trials: u32,
    /// Actor model name (for the record).
    pub actor: String,
    /// The model that writes the reflections: `actor`, or another model's name.
    #[serde(default = "actor_reflects")]
    pub reflector: String,
    /// The reflector's LoRA adapter file, if one is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflector_adapter: Option<String>,
    /// The actor's sampling temperature (0: greedy). Sampled, a retry differs from the
    /// implementation before it even when the prompt does not.
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub actor_temperature: f32,
    /// The actor's nucleus (top-p) threshold when sampled (0: off).
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub actor_top_p: f32,
    /// The seed each task's and iteration's actor seed derives from ([`actor_seed`]); it also
    /// draws the self-written test that is kept.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub actor_seed: u32,
}

fn actor_reflects() -> String {
    "actor".into()
}

fn is_zero_f32(x: &f32) -> bool {
    *x == 0.0
}

fn is_zero_u32(x: &u32) -> bool {
    *x == 0
}

/// The call of an iteration that writes the implementation (its seed is the iteration's).
pub const IMPL_CALL: u32 = 0;
/// The call that writes the self-written tests (iteration 0; the seed after the first
/// implementation's).
pub const TESTS_CALL: u32 = 1;

impl CodingConfig {
    /// Reflexion's settings: 5 iterations, one self-written test, greedy.
    pub fn new(strategy: &str, max_iters: u32, actor: &str) -> Self {
        Self {
            agent: "programming".into(),
            strategy: strategy.into(),
            max_iters,
            max_tests: 1,
            max_impl_tokens: 768,
            trials: 1,
            actor: actor.into(),
            reflector: actor_reflects(),
            reflector_adapter: None,
            actor_temperature: 0.0,
            actor_top_p: 0.0,
            actor_seed: 0,
        }
    }

    fn reflects(&self) -> bool {
        self.strategy == "reflexion"
    }

    /// Whether the actor samples (temperature above 0).
    pub fn sampled(&self) -> bool {
        self.actor_temperature > 0.0
    }

    /// How the actor decodes `call` ([`IMPL_CALL`], [`TESTS_CALL`]) of `iteration` (from 0) of
    /// `task_id`: greedy, or at `actor_temperature` and `actor_top_p` with the seed
    /// `actor_seed(actor_seed, task_id, iteration) + call`.
    pub fn sampling(&self, task_id: &str, iteration: u32, call: u32) -> SamplingParams {
        if !self.sampled() {
            return SamplingParams::greedy();
        }
        SamplingParams {
            temperature: self.actor_temperature,
            top_p: if self.actor_top_p > 0.0 {
                self.actor_top_p
            } else {
                1.0
            },
            seed: actor_seed(self.actor_seed, task_id, iteration)
                .wrapping_add(call)
                .max(1),
            ..Default::default()
        }
    }

    /// The self-written tests kept of `candidates`: all when there are at most `max_tests`,
    /// else `max_tests` of them drawn with the task's seed (published Reflexion samples one),
    /// in their order.
    pub fn pick_tests(&self, task_id: &str, candidates: &[String]) -> Vec<String> {
        if candidates.len() <= self.max_tests {
            return candidates.to_vec();
        }
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        let seed = u64::from(actor_seed(self.actor_seed, task_id, 0));
        retroformer_core::rng::shuffle(&mut order, seed);
        let mut kept: Vec<usize> = order.into_iter().take(self.max_tests).collect();
        kept.sort_unstable();
        kept.into_iter().map(|i| candidates[i].clone()).collect()
    }
}

/// One self-written test run against one implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The assert line.
    pub test: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// The left-hand side's actual value (`repr`), or the exception, or the outcome name.
    pub output: String,
}

/// One implementation and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Iteration {
    /// The code.
    pub implementation: String,
    /// Its visible test results: the docstring's tests, else the self-written one (empty when
    /// there are neither).
    pub tests: Vec<TestResult>,
    /// Share of visible tests passed (1.0 when there are none); the name predates the
    /// docstring tests.
    pub own_pass_rate: f32,
    /// The reflection prompt written after this iteration failed its tests, if any.
    pub reflection_prompt: Option<String>,
    /// The reflection, if any (cleaned; empty when nothing was left of it).
    pub reflection: Option<String>,
    /// Whether this implementation passes the hidden tests: for analysis only, never shown
    /// to the model (absent in older files).
    #[serde(default)]
    pub hidden_passed: Option<bool>,
}

/// Token and time totals of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens evaluated.
    pub evaluated_tokens: u64,
    /// Prompt tokens reused from the KV cache.
    pub reused_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Time in the model, milliseconds.
    pub llm_ms: f64,
    /// Time waiting for the sandbox, milliseconds.
    pub test_ms: f64,
}

/// Why a task's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Strategy `none`: one implementation.
    OneShot,
    /// The implementation passed all its visible tests (the name predates the docstring
    /// tests).
    OwnTestsPass,
    /// `max_iters` implementations were written.
    MaxIterations,
    /// The model repeated its previous implementation under greedy decoding: the rest of the
    /// loop would repeat it too (a sampled run goes on).
    Repeated,
}

/// One task's result (`trial-00/TASK.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodingResult {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The task.
    pub task_id: String,
    /// The tests out of the prompt's docstring: the visible tests when there are any
    /// (absent in older files).
    #[serde(default)]
    pub docstring_tests: Vec<String>,
    /// The self-written tests kept (none when the docstring has tests).
    pub own_tests: Vec<String>,
    /// Every implementation, in order.
    pub iterations: Vec<Iteration>,
    /// Why the loop ended.
    pub stop: StopReason,
    /// The submitted implementation's index in `iterations`: the one that passed the most
    /// visible tests, the latest of a tie (absent in older files: the last).
    #[serde(default)]
    pub submitted: Option<usize>,
    /// The hidden tests' run on the submitted implementation.
    pub hidden: RunReport,
    /// `hidden.outcome == passed`.
    pub passed: bool,
    /// Tokens and time.
    pub usage: Usage,
    /// Wall time, milliseconds.
    pub wall_ms: f64,
}

// ---- the loop -------------------------------------------------------------------------------

/// The model and its session, with token accounting.
pub struct HumanevalAgent<'a> {
    /// The model (chat template).
    pub model: &'a dyn LanguageModel,
    /// Its session (KV cache reused across calls).
    pub session: &'a mut dyn Session,
    /// The retrospective model that writes the reflections (Retroformer's reflector, possibly
    /// with its own LoRA adapter); `None`: the actor reflects in its own session.
    pub reflector: Option<ReflectorSession<'a>>,
}

/// A reflecting model in a session of its own.
pub struct ReflectorSession<'a> {
    /// The model (chat template).
    pub model: &'a dyn LanguageModel,
    /// Its session.
    pub session: &'a mut dyn Session,
}

/// One model call: the messages, the tokens allowed, what opens the reply (`prefill`, e.g. a
/// code fence, so that the model answers with code and stops at the closing fence; the text
/// returned starts with it), the stop strings and the sampling.
struct Call<'m> {
    messages: &'m [ChatMessage],
    max_tokens: u32,
    prefill: &'m str,
    stop: &'m [&'m str],
    sampling: SamplingParams,
}

impl HumanevalAgent<'_> {
    /// One actor call; the prompt and the reply.
    fn ask(&mut self, call: &Call<'_>, usage: &mut Usage) -> Result<(String, String), AgentError> {
        ask_with(self.model, self.session, call, usage)
    }

    /// One reflection call (greedy): the reflector's, or the actor's when there is none.
    fn reflect(
        &mut self,
        messages: &[ChatMessage],
        usage: &mut Usage,
    ) -> Result<(String, String), AgentError> {
        // A reflection is prose: it ends where the model starts writing code.
        let call = Call {
            messages,
            max_tokens: 256,
            prefill: "",
            stop: &["```"],
            sampling: SamplingParams::greedy(),
        };
        match &mut self.reflector {
            Some(r) => ask_with(r.model, r.session, &call, usage),
            None => self.ask(&call, usage),
        }
    }
}

fn ask_with(
    model: &dyn LanguageModel,
    session: &mut dyn Session,
    call: &Call<'_>,
    usage: &mut Usage,
) -> Result<(String, String), AgentError> {
    let prompt = format!(
        "{}{}",
        model.chat_prompt(call.messages, true)?,
        call.prefill
    );
    let mut req = GenerateRequest::new(prompt.clone(), call.max_tokens);
    for s in call.stop {
        req = req.stop(*s);
    }
    req.sampling = call.sampling.clone();
    let start = Instant::now();
    let g = session.generate(&req, &mut |_| true)?;
    usage.llm_ms += start.elapsed().as_secs_f64() * 1e3;
    usage.evaluated_tokens += u64::from(g.stats.evaluated_tokens);
    usage.reused_tokens += u64::from(g.stats.reused_tokens);
    usage.generated_tokens += u64::from(g.stats.generated_tokens);
    Ok((prompt, format!("{}{}", call.prefill, g.text)))
}

fn run_visible_tests(
    pool: &Pool,
    imports: &str,
    implementation: &str,
    tests: &[String],
    usage: &mut Usage,
) -> (Vec<TestResult>, f32) {
    if tests.is_empty() {
        return (Vec::new(), 1.0);
    }
    let start = Instant::now();
    let reports = pool.run_all(
        tests
            .iter()
            .map(|t| test_program(imports, implementation, t))
            .collect(),
    );
    usage.test_ms += start.elapsed().as_secs_f64() * 1e3;
    let results: Vec<TestResult> = tests
        .iter()
        .zip(&reports)
        .map(|(t, r)| test_result(t, r))
        .collect();
    let passed = results
        .iter()
        .filter(|r| r.outcome == Outcome::Passed)
        .count();
    (results, passed as f32 / tests.len() as f32)
}

/// The submitted implementation: the one that passed the most visible tests, the latest of a
/// tie (so with no visible tests, the last). 0 for no iterations.
pub fn best_iteration(iterations: &[Iteration]) -> usize {
    let passed = |it: &Iteration| {
        it.tests
            .iter()
            .filter(|t| t.outcome == Outcome::Passed)
            .count()
    };
    (0..iterations.len())
        .max_by_key(|&i| (passed(&iterations[i]), i))
        .unwrap_or(0)
}

/// The self-written tests (strategy `reflexion`, a prompt without docstring tests): the model
/// proposes some, those that parse as one `assert` are candidates, and
/// [`CodingConfig::pick_tests`] keeps `max_tests` of them.
fn write_own_tests(
    problem: &Problem,
    cfg: &CodingConfig,
    coder: &mut HumanevalAgent<'_>,
    pool: &Pool,
    usage: &mut Usage,
) -> Result<Vec<String>, AgentError> {
    let messages = tests_messages(&problem.prompt);
    let call = Call {
        messages: &messages,
        max_tokens: 256,
        prefill: "",
        stop: &[],
        sampling: cfg.sampling(&problem.task_id, 0, TESTS_CALL),
    };
    let (_, reply) = coder.ask(&call, usage)?;
    let candidates = parse_asserts(&reply);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let start = Instant::now();
    let r = pool.submit(syntax_filter_program(&candidates)).wait();
    usage.test_ms += start.elapsed().as_secs_f64() * 1e3;
    let valid: Vec<String> = r
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .filter_map(|i| candidates.get(i).cloned())
        .collect();
    Ok(cfg.pick_tests(&problem.task_id, &valid))
}

/// Why the loop ends after `iterations`, if it does.
fn stop_reason(cfg: &CodingConfig, iterations: &[Iteration]) -> Option<StopReason> {
    let last = iterations.last()?;
    let all_pass = last.tests.iter().all(|t| t.outcome == Outcome::Passed);
    // With greedy decoding, an implementation identical to the previous one gets the same
    // feedback, so every later prompt, reflection and implementation would repeat too.
    let n = iterations.len();
    let repeated = n >= 2 && iterations[n - 1].implementation == iterations[n - 2].implementation;
    if !cfg.reflects() {
        Some(StopReason::OneShot)
    } else if all_pass {
        Some(StopReason::OwnTestsPass)
    } else if n as u32 >= cfg.max_iters {
        Some(StopReason::MaxIterations)
    } else if repeated && !cfg.sampled() {
        Some(StopReason::Repeated)
    } else {
        None
    }
}

/// Line openings that mean a reflection has gone on to write the next prompt's sections or
/// test listings: it is cut before the first (see [`clean`]).
pub const REFLECTION_CUTS: [&str; 7] = [
    "[implementation]",
    "[unit test",
    "[self-reflection]",
    "[reflection on",
    "[improved implementation]",
    "Tests passed:",
    "Tests failed:",
];

/// After `last` failed its visible tests: the reflection on it (recorded in it) and the next
/// implementation, iteration `next`.
fn reflect_and_retry(
    problem: &Problem,
    cfg: &CodingConfig,
    coder: &mut HumanevalAgent<'_>,
    last: &mut Iteration,
    next: u32,
    usage: &mut Usage,
) -> Result<String, AgentError> {
    let feedback = format_feedback(&last.tests);
    let (prompt, reply) =
        coder.reflect(&reflect_messages(&last.implementation, &feedback), usage)?;
    let reflection = clean(&reply, &REFLECTION_CUTS);
    last.reflection_prompt = Some(prompt);
    last.reflection = Some(reflection.clone());
    let messages = retry_messages(
        &problem.prompt,
        &last.implementation,
        &feedback,
        &reflection,
    );
    let call = Call {
        messages: &messages,
        max_tokens: cfg.max_impl_tokens,
        prefill: CODE_FENCE,
        stop: &["```"],
        sampling: cfg.sampling(&problem.task_id, next, IMPL_CALL),
    };
    let (_, reply) = coder.ask(&call, usage)?;
    Ok(extract_code(&reply, &problem.prompt, &problem.entry_point))
}

/// Refuses a saved result of another task or format, or whose `passed` is not its hidden
/// tests' outcome (an edited file; running the hidden tests again is what a fresh run does).
fn check_saved(p: &Problem, r: &CodingResult) -> Result<(), String> {
    if r.format_version != FORMAT_VERSION || r.task_id != p.task_id {
        return Err(format!(
            "holds format {} of task {:?}, not format {FORMAT_VERSION} of {:?}; use another --out folder",
            r.format_version, r.task_id, p.task_id
        ));
    }
    if r.passed != (r.hidden.outcome == Outcome::Passed) {
        return Err(format!(
            "says passed {} but its hidden tests' outcome is {:?}: the file was edited; delete it",
            r.passed, r.hidden.outcome
        ));
    }
    Ok(())
}

/// Solve one problem: the Reflexion loop (or one shot), each implementation's hidden tests
/// queued in the pool as it is written; returns without waiting for them.
pub fn solve(
    problem: &Problem,
    cfg: &CodingConfig,
    coder: &mut HumanevalAgent<'_>,
    pool: &Pool,
) -> Result<InFlight, AgentError> {
    let started = Instant::now();
    let mut usage = Usage::default();
    let imports = prompt_imports(&problem.prompt);
    let docstring = docstring_tests(&problem.prompt, &problem.entry_point);
    let own_tests = if cfg.reflects() && docstring.is_empty() {
        write_own_tests(problem, cfg, coder, pool, &mut usage)?
    } else {
        Vec::new()
    };
    let visible = if docstring.is_empty() {
        &own_tests
    } else {
        &docstring
    };
    let messages = impl_messages(&problem.prompt);
    let first = Call {
        messages: &messages,
        max_tokens: cfg.max_impl_tokens,
        prefill: CODE_FENCE,
        stop: &["```"],
        sampling: cfg.sampling(&problem.task_id, 0, IMPL_CALL),
    };
    let (_, reply) = coder.ask(&first, &mut usage)?;
    let mut implementation = extract_code(&reply, &problem.prompt, &problem.entry_point);
    let mut iterations: Vec<Iteration> = Vec::new();
    let mut hidden = Vec::new();
    let stop = loop {
        let (tests, rate) = run_visible_tests(pool, &imports, &implementation, visible, &mut usage);
        // Queued after the visible tests, so that they do not wait behind it.
        hidden.push(HiddenRun::submit(pool, problem, &implementation));
        iterations.push(Iteration {
            implementation: std::mem::take(&mut implementation),
            tests,
            own_pass_rate: rate,
            reflection_prompt: None,
            reflection: None,
            hidden_passed: None,
        });
        if let Some(stop) = stop_reason(cfg, &iterations) {
            break stop;
        }
        let next = iterations.len() as u32;
        let last = iterations.last_mut().expect("just pushed");
        implementation = reflect_and_retry(problem, cfg, coder, last, next, &mut usage)?;
    };
    let submitted = best_iteration(&iterations);
    Ok(InFlight {
        result: Box::new(CodingResult {
            format_version: FORMAT_VERSION,
            task_id: problem.task_id.clone(),
            docstring_tests: docstring,
            own_tests,
            iterations,
            stop,
            submitted: Some(submitted),
            hidden: RunReport {
                outcome: Outcome::SandboxFailure,
                exit_code: None,
                signal: None,
                stdout: String::new(),
                stderr: String::new(),
                truncated: false,
                wall_ms: 0.0,
                detail: Some("not run yet".into()),
            },
            passed: false,
            usage,
            wall_ms: 0.0,
        }),
        started,
        hidden,
    })
}

// ---- the run --------------------------------------------------------------------------------

/// Why a programming run stopped: the runners share one error type.
pub type CodingRunError = runner::RunError;

use files::{file_err, read_json, write_json};

/// Where a task's result lives.
pub fn task_path(out: &Path, task_id: &str) -> PathBuf {
    runner::task_path(out, 0, task_id)
}

/// The settings to run in `out`: `cfg`, or, when `out` holds a run written before the
/// one-test rule that differs from `cfg` in `max_tests` only, `cfg` with the saved `max_tests`,
/// so that the run resumes as it began.
fn resumed_settings(out: &Path, cfg: &CodingConfig) -> Result<CodingConfig, CodingRunError> {
    let saved = read_json::<CodingConfig>(&out.join("run.json"))?;
    Ok(match saved {
        Some(s) if s.max_tests != cfg.max_tests => {
            let mut c = cfg.clone();
            c.max_tests = s.max_tests;
            if c == s {
                c
            } else {
                cfg.clone()
            }
        }
        _ => cfg.clone(),
    })
}

/// Run (or resume) the programming benchmark: each task once, results written as each task's
/// hidden tests finish, the model moving on to the next task meanwhile. `on_done` is called
/// with each finished (or, on resume, already finished) task.
pub fn run(
    problems: &[Problem],
    cfg: &CodingConfig,
    out: &Path,
    coder: &mut HumanevalAgent<'_>,
    pool: &Pool,
    mut on_done: impl FnMut(&CodingResult),
) -> Result<(CodingSummary, Vec<CodingResult>), CodingRunError> {
    let cfg = &resumed_settings(out, cfg)?;
    files::claim_run_folder(out, cfg)?.map_err(CodingRunError::Config)?;
    let trials = runner::trial_dir(out, 0);
    std::fs::create_dir_all(&trials).map_err(|e| file_err(&trials, e))?;
    let mut results = Vec::with_capacity(problems.len());
    let mut in_flight: std::collections::VecDeque<InFlight> = Default::default();
    let save = |r: CodingResult,
                results: &mut Vec<CodingResult>,
                on_done: &mut dyn FnMut(&CodingResult)|
     -> Result<(), CodingRunError> {
        write_json(&task_path(out, &r.task_id), &r)?;
        on_done(&r);
        results.push(r);
        Ok(())
    };
    for p in problems {
        let path = task_path(out, &p.task_id);
        if let Some(done) = read_json::<CodingResult>(&path)? {
            check_saved(p, &done).map_err(|e| file_err(&path, e))?;
            on_done(&done);
            results.push(done);
            continue;
        }
        // Collect hidden-test results that have arrived, in order.
        while let Some(f) = in_flight.pop_front() {
            match f.try_finish() {
                Ok(r) => save(r, &mut results, &mut on_done)?,
                Err(f) => {
                    in_flight.push_front(f);
                    break;
                }
            }
        }
        in_flight.push_back(solve(p, cfg, coder, pool)?);
    }
    for f in in_flight {
        save(f.finish(), &mut results, &mut on_done)?;
    }
    let order: std::collections::HashMap<&str, usize> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| (p.task_id.as_str(), i))
        .collect();
    results.sort_by_key(|r| order.get(r.task_id.as_str()).copied().unwrap_or(usize::MAX));
    let summary = summarize(&results, cfg.max_iters);
    write_json(&out.join("humaneval.json"), &summary)?;
    write_json(
        &out.join("trial-00.json"),
        &TrialSummary {
            format_version: runner::FORMAT_VERSION,
            trial: 0,
            tasks: results.len(),
            attempted: results.len(),
            solved_now: summary.passed,
            solved_total: summary.passed,
            success_rate: summary.pass_at_1,
            evaluated_tokens: results.iter().map(|r| r.usage.evaluated_tokens).sum(),
            reused_tokens: results.iter().map(|r| r.usage.reused_tokens).sum(),
            generated_tokens: results.iter().map(|r| r.usage.generated_tokens).sum(),
        },
    )?;
    write_records(out, &results, cfg)?;
    Ok((summary, results))
}

/// The Retroformer rating data of a programming run: each reflection with the share of
/// visible tests passed before (G_i) and after (G_{i+1}) it, and who wrote it (`reflector`).
/// An empty reflection (nothing left after cleaning) was not shown to the actor and is not
/// rated.
pub fn records(results: &[CodingResult], reflector: &ReflectorInfo) -> Vec<RatingRecord> {
    let mut out = Vec::new();
    for r in results {
        for (i, pair) in r.iterations.windows(2).enumerate() {
            if let (Some(x), Some(y)) = (&pair[0].reflection_prompt, &pair[0].reflection) {
                if y.is_empty() {
                    continue;
                }
                let mut record = RatingRecord::new(
                    &r.task_id,
                    i as u32,
                    x,
                    y,
                    pair[0].own_pass_rate,
                    pair[1].own_pass_rate,
                );
                // The request as it was made (`solve` reflects on this implementation and the
                // feedback of its tests), then the reply.
                let mut m =
                    reflect_messages(&pair[0].implementation, &format_feedback(&pair[0].tests));
                m.push(ChatMessage::new("assistant", y.clone()));
                record.messages = Some(m);
                record.reflector = Some(reflector.clone());
                out.push(record);
            }
        }
    }
    out
}

fn write_records(
    out: &Path,
    results: &[CodingResult],
    cfg: &CodingConfig,
) -> Result<(), CodingRunError> {
    // Reflections are greedy (`Solver::reflect`): temperature 0, seed 0.
    let reflector = runner::describe_reflector(
        &cfg.actor,
        &cfg.reflector,
        cfg.reflector_adapter.as_deref(),
        0.0,
        0,
    );
    Ok(files::write_jsonl(
        &out.join("records.jsonl"),
        &records(results, &reflector),
    )?)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod loop_tests;

#[cfg(test)]
mod cheat_tests;
