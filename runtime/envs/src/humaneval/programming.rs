//! Reflexion for programming (HumanEval, MBPP), as published: the model writes its own unit
//! tests, an implementation, runs its tests in the sandbox, and on failure reflects on the
//! implementation and the failing tests and writes a new implementation given the previous
//! one, the feedback and the newest reflection (memory 1). The hidden tests run once, on the
//! final implementation, so pass@1 stays honest. Strategy `none` is the single-shot baseline.
//!
//! The prompts are our own wording in the structure of Reflexion's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

mod text;

pub use text::*;

use super::{hidden_test_program, prompt_imports, Problem};
use retroformer::agent::runner::{self, TrialSummary};
use retroformer::agent::{files, AgentError};
use retroformer_core::records::RatingRecord;
use retroformer_llm::{ChatMessage, GenerateRequest, LanguageModel, Session};
use retroformer_sandbox::{Outcome, Pending, Pool, RunReport};

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
    /// Most self-written tests kept.
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
}

fn actor_reflects() -> String {
    "actor".into()
}

impl CodingConfig {
    /// Reflexion's settings: 5 iterations, up to 6 tests.
    pub fn new(strategy: &str, max_iters: u32, actor: &str) -> Self {
        Self {
            agent: "programming".into(),
            strategy: strategy.into(),
            max_iters,
            max_tests: 6,
            max_impl_tokens: 768,
            trials: 1,
            actor: actor.into(),
            reflector: actor_reflects(),
            reflector_adapter: None,
        }
    }

    fn reflects(&self) -> bool {
        self.strategy == "reflexion"
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
    /// Its self-written test results (empty for strategy `none`).
    pub tests: Vec<TestResult>,
    /// Share of self-written tests passed (1.0 when there are none).
    pub own_pass_rate: f32,
    /// The reflection prompt written after this iteration failed its tests, if any.
    pub reflection_prompt: Option<String>,
    /// The reflection, if any.
    pub reflection: Option<String>,
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
    /// The implementation passed all its own tests.
    OwnTestsPass,
    /// `max_iters` implementations were written.
    MaxIterations,
    /// The model repeated its previous implementation: under greedy decoding the rest of the
    /// loop would repeat it too.
    Repeated,
}

/// One task's result (`trial-00/TASK.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodingResult {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The task.
    pub task_id: String,
    /// The self-written tests kept.
    pub own_tests: Vec<String>,
    /// Every implementation, in order.
    pub iterations: Vec<Iteration>,
    /// Why the loop ended.
    pub stop: StopReason,
    /// The hidden tests' run on the final implementation.
    pub hidden: RunReport,
    /// `hidden.outcome == passed`.
    pub passed: bool,
    /// Tokens and time.
    pub usage: Usage,
    /// Wall time, milliseconds.
    pub wall_ms: f64,
}

/// The summary of a programming run (`humaneval.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodingSummary {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Tasks.
    pub tasks: usize,
    /// Tasks whose hidden tests passed.
    pub passed: usize,
    /// `passed / tasks`.
    pub pass_at_1: f64,
    /// Hidden-test outcomes by name.
    pub outcomes: std::collections::BTreeMap<String, usize>,
    /// Why the loops ended, by reason.
    pub stops: std::collections::BTreeMap<String, usize>,
    /// Share of tasks whose own tests all passed at or before iteration k (index k-1).
    pub own_tests_pass_by_iteration: Vec<f64>,
    /// Mean implementations per task.
    pub mean_iterations: f64,
    /// Mean wall time per task, seconds.
    pub mean_task_s: f64,
    /// Mean tokens (evaluated + generated) per task.
    pub mean_tokens: f64,
    /// Mean generated tokens per task.
    pub mean_generated_tokens: f64,
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

impl HumanevalAgent<'_> {
    /// One actor call. `prefill` opens the reply (e.g. a code fence, so that the model answers
    /// with code and stops at the closing fence); the text returned starts with it.
    fn ask(
        &mut self,
        messages: &[ChatMessage],
        max_tokens: u32,
        usage: &mut Usage,
        prefill: &str,
        stop: &[&str],
    ) -> Result<(String, String), AgentError> {
        ask_with(
            self.model,
            self.session,
            messages,
            max_tokens,
            usage,
            prefill,
            stop,
        )
    }

    /// One reflection call: the reflector's, or the actor's when there is none.
    fn reflect(
        &mut self,
        messages: &[ChatMessage],
        max_tokens: u32,
        usage: &mut Usage,
        stop: &[&str],
    ) -> Result<(String, String), AgentError> {
        match &mut self.reflector {
            Some(r) => ask_with(r.model, r.session, messages, max_tokens, usage, "", stop),
            None => self.ask(messages, max_tokens, usage, "", stop),
        }
    }
}

fn ask_with(
    model: &dyn LanguageModel,
    session: &mut dyn Session,
    messages: &[ChatMessage],
    max_tokens: u32,
    usage: &mut Usage,
    prefill: &str,
    stop: &[&str],
) -> Result<(String, String), AgentError> {
    let prompt = format!("{}{prefill}", model.chat_prompt(messages, true)?);
    let mut req = GenerateRequest::new(prompt.clone(), max_tokens);
    for s in stop {
        req = req.stop(*s);
    }
    let start = Instant::now();
    let g = session.generate(&req, &mut |_| true)?;
    usage.llm_ms += start.elapsed().as_secs_f64() * 1e3;
    usage.evaluated_tokens += u64::from(g.stats.evaluated_tokens);
    usage.reused_tokens += u64::from(g.stats.reused_tokens);
    usage.generated_tokens += u64::from(g.stats.generated_tokens);
    Ok((prompt, format!("{prefill}{}", g.text)))
}

/// A task whose hidden tests are running while the model goes on.
pub struct InFlight {
    result: Box<CodingResult>,
    started: Instant,
    hidden: Pending,
    token: String,
}

impl InFlight {
    /// Wait for the hidden tests and complete the result.
    pub fn finish(self) -> CodingResult {
        let InFlight {
            result,
            started,
            hidden,
            token,
        } = self;
        complete(result, started, hidden.wait(), &token)
    }

    /// The completed result if the hidden tests have finished.
    pub fn try_finish(self) -> Result<CodingResult, InFlight> {
        match self.hidden.try_get() {
            Some(r) => Ok(complete(self.result, self.started, r, &self.token)),
            None => Err(self),
        }
    }
}

fn complete(
    mut result: Box<CodingResult>,
    started: Instant,
    mut report: RunReport,
    token: &str,
) -> CodingResult {
    if report.outcome == Outcome::Passed && !report.stdout.lines().any(|l| l.trim() == token) {
        report.outcome = Outcome::Error;
        report.detail =
            Some("the program exited with status 0 before the hidden tests ended".into());
    }
    // The token is ours, not the program's output.
    report.stdout = report
        .stdout
        .lines()
        .filter(|l| l.trim() != token)
        .map(|l| format!("{l}\n"))
        .collect();
    result.passed = report.outcome == Outcome::Passed;
    result.hidden = report;
    result.wall_ms = started.elapsed().as_secs_f64() * 1e3;
    *result
}

fn run_own_tests(
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

/// Solve one problem: the Reflexion loop (or one shot), then submit the hidden tests to the
/// pool and return without waiting for them.
pub fn solve(
    problem: &Problem,
    cfg: &CodingConfig,
    coder: &mut HumanevalAgent<'_>,
    pool: &Pool,
) -> Result<InFlight, AgentError> {
    let started = Instant::now();
    let mut usage = Usage::default();
    let imports = prompt_imports(&problem.prompt);
    let mut own_tests = Vec::new();
    if cfg.reflects() {
        let (_, reply) = coder.ask(&tests_messages(&problem.prompt), 256, &mut usage, "", &[])?;
        let candidates = parse_asserts(&reply);
        if !candidates.is_empty() {
            let start = Instant::now();
            let r = pool.submit(syntax_filter_program(&candidates)).wait();
            usage.test_ms += start.elapsed().as_secs_f64() * 1e3;
            own_tests = r
                .stdout
                .lines()
                .filter_map(|l| l.trim().parse::<usize>().ok())
                .filter_map(|i| candidates.get(i).cloned())
                .take(cfg.max_tests)
                .collect();
        }
    }
    let (_, reply) = coder.ask(
        &impl_messages(&problem.prompt),
        cfg.max_impl_tokens,
        &mut usage,
        CODE_FENCE,
        &["```"],
    )?;
    let mut implementation = extract_code(&reply, &problem.prompt, &problem.entry_point);
    let mut iterations = Vec::new();
    let mut stop;
    loop {
        let (tests, rate) = if cfg.reflects() {
            run_own_tests(pool, &imports, &implementation, &own_tests, &mut usage)
        } else {
            (Vec::new(), 1.0)
        };
        let all_pass = tests.iter().all(|t| t.outcome == Outcome::Passed);
        iterations.push(Iteration {
            implementation: implementation.clone(),
            tests,
            own_pass_rate: rate,
            reflection_prompt: None,
            reflection: None,
        });
        // With greedy decoding, an implementation identical to the previous one gets the same
        // feedback, so every later prompt, reflection and implementation would repeat too.
        let repeated = iterations.len() >= 2
            && iterations[iterations.len() - 1].implementation
                == iterations[iterations.len() - 2].implementation;
        stop = if !cfg.reflects() {
            StopReason::OneShot
        } else if all_pass {
            StopReason::OwnTestsPass
        } else if iterations.len() as u32 >= cfg.max_iters {
            StopReason::MaxIterations
        } else if repeated {
            StopReason::Repeated
        } else {
            StopReason::MaxIterations
        };
        if !cfg.reflects() || all_pass || repeated || iterations.len() as u32 >= cfg.max_iters {
            break;
        }
        let last = iterations.last_mut().expect("just pushed");
        let feedback = format_feedback(&last.tests);
        // A reflection is prose: it ends where the model starts writing code.
        let (reflect_prompt, reflection) = coder.reflect(
            &reflect_messages(&implementation, &feedback),
            256,
            &mut usage,
            &["```"],
        )?;
        let reflection = reflection.trim().to_string();
        last.reflection_prompt = Some(reflect_prompt);
        last.reflection = Some(reflection.clone());
        let (_, reply) = coder.ask(
            &retry_messages(&problem.prompt, &implementation, &feedback, &reflection),
            cfg.max_impl_tokens,
            &mut usage,
            CODE_FENCE,
            &["```"],
        )?;
        implementation = extract_code(&reply, &problem.prompt, &problem.entry_point);
    }
    let token = pass_token(&problem.task_id, &implementation);
    let hidden = pool.submit(format!(
        "{}\nprint({token:?})\n",
        hidden_test_program(problem, &implementation)
    ));
    Ok(InFlight {
        result: Box::new(CodingResult {
            format_version: FORMAT_VERSION,
            task_id: problem.task_id.clone(),
            own_tests,
            iterations,
            stop,
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
        token,
    })
}

/// A token printed after the hidden tests: a run only passes if it reached that line, so an
/// implementation that exits with status 0 early (`exit()`, `os._exit(0)`) does not pass. It
/// is derived from the clock and the task, never shown to the model.
fn pass_token(task_id: &str, implementation: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(task_id.as_bytes());
    h.write(implementation.as_bytes());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("__retroformer_hidden_tests_done_{:016x}__", h.finish())
}

// ---- the run --------------------------------------------------------------------------------

/// Why a programming run stopped: the runners share one error type.
pub type CodingRunError = runner::RunError;

use files::{file_err, read_json, write_json};

/// Where a task's result lives.
pub fn task_path(out: &Path, task_id: &str) -> PathBuf {
    runner::task_path(out, 0, task_id)
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
        if let Some(done) = read_json::<CodingResult>(&task_path(out, &p.task_id))? {
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
    write_records(out, &results)?;
    Ok((summary, results))
}

/// The Retroformer rating data of a programming run: each reflection with the share of own
/// tests passed before (G_i) and after (G_{i+1}) it.
pub fn records(results: &[CodingResult]) -> Vec<RatingRecord> {
    let mut out = Vec::new();
    for r in results {
        for (i, pair) in r.iterations.windows(2).enumerate() {
            if let (Some(x), Some(y)) = (&pair[0].reflection_prompt, &pair[0].reflection) {
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
                out.push(record);
            }
        }
    }
    out
}

fn write_records(out: &Path, results: &[CodingResult]) -> Result<(), CodingRunError> {
    Ok(files::write_jsonl(
        &out.join("records.jsonl"),
        &records(results),
    )?)
}

/// Totals over finished tasks.
pub fn summarize(results: &[CodingResult], max_iters: u32) -> CodingSummary {
    let n = results.len().max(1) as f64;
    let passed = results.iter().filter(|r| r.passed).count();
    let mut outcomes = std::collections::BTreeMap::new();
    let mut stops = std::collections::BTreeMap::new();
    for r in results {
        *outcomes
            .entry(r.hidden.outcome.name().to_string())
            .or_insert(0) += 1;
        let stop = serde_json::to_value(r.stop)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *stops.entry(stop).or_insert(0) += 1;
    }
    let own_by_iter = (1..=max_iters as usize)
        .map(|k| {
            results
                .iter()
                .filter(|r| {
                    r.iterations
                        .iter()
                        .take(k)
                        .any(|it| !it.tests.is_empty() && it.own_pass_rate >= 1.0)
                })
                .count() as f64
                / n
        })
        .collect();
    CodingSummary {
        format_version: FORMAT_VERSION,
        tasks: results.len(),
        passed,
        pass_at_1: passed as f64 / n,
        outcomes,
        stops,
        own_tests_pass_by_iteration: own_by_iter,
        mean_iterations: results
            .iter()
            .map(|r| r.iterations.len() as f64)
            .sum::<f64>()
            / n,
        mean_task_s: results.iter().map(|r| r.wall_ms).sum::<f64>() / n / 1e3,
        mean_tokens: results
            .iter()
            .map(|r| (r.usage.evaluated_tokens + r.usage.generated_tokens) as f64)
            .sum::<f64>()
            / n,
        mean_generated_tokens: results
            .iter()
            .map(|r| r.usage.generated_tokens as f64)
            .sum::<f64>()
            / n,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod loop_tests;

#[cfg(test)]
mod cheat_tests;
