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

use super::runner::{TrainingRecord, TrialSummary};
use super::AgentError;
use crate::env::humaneval::{hidden_test_program, prompt_imports, Problem};
use crate::llm::{ChatMessage, GenerateRequest, LanguageModel, Session};
use crate::sandbox::{Outcome, Pending, Pool, RunReport};

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

// ---- text handling --------------------------------------------------------------------------

/// The code in a reply: the first fenced block that defines `entry_point` (else the first
/// block, else the whole text). A bare body is completed with the prompt's signature.
pub fn extract_code(reply: &str, prompt: &str, entry_point: &str) -> String {
    let mut blocks = Vec::new();
    let mut rest = reply;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        let end = body.find("```").unwrap_or(body.len());
        blocks.push(&body[..end]);
        rest = &body[(end + 3).min(body.len())..];
    }
    let def = format!("def {entry_point}");
    let code = blocks
        .iter()
        .find(|b| b.contains(&def))
        .or(blocks.first())
        .map_or(reply, |b| b)
        .trim_matches('\n');
    if code.contains(&def) {
        format!("{}\n", code.trim_end())
    } else {
        // A body only: indent it under the prompt's signature when it is not indented.
        let indented: String = code
            .lines()
            .map(|l| {
                if l.starts_with(' ') || l.starts_with('\t') || l.is_empty() {
                    format!("{l}\n")
                } else {
                    format!("    {l}\n")
                }
            })
            .collect();
        format!("{}{}", prompt, indented)
    }
}

/// Candidate unit tests: the lines that start with `assert`, without duplicates, in order.
pub fn parse_asserts(reply: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in reply.lines() {
        let t = line.trim();
        if t.starts_with("assert ") || t.starts_with("assert(") {
            let t = t.to_string();
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Python source that decodes `text` from hex: embeds any text without quoting issues.
fn py_str(text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("bytes.fromhex('{hex}').decode('utf-8')")
}

/// The program that keeps the candidates that parse as a single Python `assert` statement.
pub fn syntax_filter_program(candidates: &[String]) -> String {
    let list: Vec<String> = candidates.iter().map(|c| py_str(c)).collect();
    format!(
        "import ast\nfor i, c in enumerate([{}]):\n    try:\n        t = ast.parse(c)\n        if len(t.body) == 1 and isinstance(t.body[0], ast.Assert):\n            print(i)\n    except Exception:\n        pass\n",
        list.join(", ")
    )
}

/// Marker of the line the test harness prints with its verdict.
const VERDICT: &str = "__retroformer_test__";

/// The program that runs one assert against an implementation and prints the left-hand side's
/// actual value when an `==` comparison fails.
pub fn test_program(imports: &str, implementation: &str, test: &str) -> String {
    format!(
        "{imports}{implementation}\n\nimport ast as __ast\n__t = {src}\ntry:\n    exec(compile(__t, '<test>', 'exec'), globals())\n    print({VERDICT:?}, 'ok')\nexcept AssertionError:\n    __out = None\n    __n = __ast.parse(__t).body[0].test\n    if isinstance(__n, __ast.Compare) and len(__n.ops) == 1 and isinstance(__n.ops[0], __ast.Eq):\n        try:\n            __out = repr(eval(compile(__ast.Expression(__n.left), '<lhs>', 'eval'), globals()))\n        except Exception as __e:\n            __out = type(__e).__name__ + ': ' + str(__e)\n    print({VERDICT:?}, 'failed', __out)\n    raise\n",
        src = py_str(test)
    )
}

/// The result of one self-test run.
pub fn test_result(test: &str, r: &RunReport) -> TestResult {
    let verdict = r
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(VERDICT))
        .map(str::trim);
    let output = match r.outcome {
        // Exit status 0 without the harness's verdict: the implementation ended the program
        // (exit(), os._exit(0)) before the test ran. That is not a pass.
        Outcome::Passed if verdict != Some("ok") => {
            return TestResult {
                test: test.to_string(),
                outcome: Outcome::Error,
                output: "the program exited before the test ran".into(),
            }
        }
        Outcome::Passed => String::new(),
        Outcome::Failed => match verdict.and_then(|v| v.strip_prefix("failed")) {
            Some(v) if !v.trim().is_empty() && v.trim() != "None" => v.trim().to_string(),
            _ => "AssertionError".into(),
        },
        Outcome::Error => r
            .exception_line()
            .unwrap_or("error")
            .chars()
            .take(300)
            .collect(),
        other => other.name().to_string(),
    };
    TestResult {
        test: test.to_string(),
        outcome: r.outcome,
        output,
    }
}

/// Feedback in Reflexion's layout: the passed asserts, then each failed one with its actual
/// output.
pub fn format_feedback(results: &[TestResult]) -> String {
    let mut s = String::from("Tests passed:\n");
    for r in results.iter().filter(|r| r.outcome == Outcome::Passed) {
        s.push_str(&r.test);
        s.push('\n');
    }
    s.push_str("\nTests failed:\n");
    for r in results.iter().filter(|r| r.outcome != Outcome::Passed) {
        s.push_str(&format!("{} # output: {}\n", r.test, r.output));
    }
    s
}

// ---- prompts --------------------------------------------------------------------------------

const TESTS_SYSTEM: &str = "You write unit tests for Python functions. Given a function's signature and docstring, reply with up to 6 short, diverse and correct test cases: one `assert` statement per line, nothing else.";
const TESTS_EXAMPLE_USER: &str = "def count_vowels(s: str) -> int:\n    \"\"\"Return how many characters of s are vowels (a, e, i, o, u, in either case).\"\"\"\n";
const TESTS_EXAMPLE_REPLY: &str = "assert count_vowels(\"\") == 0\nassert count_vowels(\"Banana\") == 3\nassert count_vowels(\"xyz\") == 0\nassert count_vowels(\"AEIOU\") == 5";
const IMPL_SYSTEM: &str = "You are a Python programmer. Reply only with Python code in one ```python block: the complete function, with its signature restated and the imports it needs. No explanations.";
const REFLECT_SYSTEM: &str = "You are a Python programming assistant. You are shown a function implementation and the results of unit tests on it. In a few sentences, explain why the implementation is wrong, as the failing tests show. This will be your hint for the next attempt. Reply with the explanation only, no code.";
const RETRY_SYSTEM: &str = "You are a Python programmer. You are given your previous implementation of a function, the results of unit tests on it and a hint about what went wrong. Reply only with the improved, complete function in one ```python block, with its signature restated. No explanations.";

/// What an implementation reply is opened with: the model continues inside a Python fence and
/// stops at the closing one, so it answers with code and nothing after it.
pub const CODE_FENCE: &str = "```python\n";

/// The chat messages that ask for unit tests.
pub fn tests_messages(prompt: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", TESTS_SYSTEM),
        ChatMessage::new("user", TESTS_EXAMPLE_USER),
        ChatMessage::new("assistant", TESTS_EXAMPLE_REPLY),
        ChatMessage::new("user", prompt),
    ]
}

/// The chat messages that ask for a first implementation.
pub fn impl_messages(prompt: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", IMPL_SYSTEM),
        ChatMessage::new("user", prompt),
    ]
}

/// The chat messages that ask for a self-reflection.
pub fn reflect_messages(implementation: &str, feedback: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", REFLECT_SYSTEM),
        ChatMessage::new(
            "user",
            format!(
                "[implementation]:\n```python\n{}\n```\n\n[unit test results]:\n{}\n[self-reflection]:",
                implementation.trim_end(),
                feedback
            ),
        ),
    ]
}

/// The chat messages that ask for a new implementation (memory 1: the newest reflection).
pub fn retry_messages(
    prompt: &str,
    previous: &str,
    feedback: &str,
    reflection: &str,
) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", RETRY_SYSTEM),
        ChatMessage::new("user", prompt),
        ChatMessage::new(
            "assistant",
            format!("```python\n{}\n```", previous.trim_end()),
        ),
        ChatMessage::new(
            "user",
            format!(
                "[unit test results from previous implementation]:\n{}\n[reflection on previous implementation]:\n{}\n\n[improved implementation]:",
                feedback,
                reflection.trim()
            ),
        ),
    ]
}

// ---- the loop -------------------------------------------------------------------------------

/// The model and its session, with token accounting.
pub struct Coder<'a> {
    /// The model (chat template).
    pub model: &'a dyn LanguageModel,
    /// Its session (KV cache reused across calls).
    pub session: &'a mut dyn Session,
    /// The retrospective model that writes the reflections (Retroformer's reflector, possibly
    /// with its own LoRA adapter); `None`: the actor reflects in its own session.
    pub reflector: Option<Reflector<'a>>,
}

/// A reflector: its model and its own session.
pub struct Reflector<'a> {
    /// The model (chat template).
    pub model: &'a dyn LanguageModel,
    /// Its session.
    pub session: &'a mut dyn Session,
}

impl Coder<'_> {
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
    coder: &mut Coder<'_>,
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
pub type CodingRunError = super::runner::RunError;

use super::files::{file_err, read_json, write_json};

/// Where a task's result lives.
pub fn task_path(out: &Path, task_id: &str) -> PathBuf {
    super::runner::task_path(out, 0, task_id)
}

/// Run (or resume) the programming benchmark: each task once, results written as each task's
/// hidden tests finish, the model moving on to the next task meanwhile. `on_done` is called
/// with each finished (or, on resume, already finished) task.
pub fn run(
    problems: &[Problem],
    cfg: &CodingConfig,
    out: &Path,
    coder: &mut Coder<'_>,
    pool: &Pool,
    mut on_done: impl FnMut(&CodingResult),
) -> Result<(CodingSummary, Vec<CodingResult>), CodingRunError> {
    super::files::claim_run_folder(out, cfg)?.map_err(CodingRunError::Config)?;
    let trials = super::runner::trial_dir(out, 0);
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
            format_version: super::runner::FORMAT_VERSION,
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
pub fn records(results: &[CodingResult]) -> Vec<TrainingRecord> {
    let mut out = Vec::new();
    for r in results {
        for (i, pair) in r.iterations.windows(2).enumerate() {
            if let (Some(x), Some(y)) = (&pair[0].reflection_prompt, &pair[0].reflection) {
                out.push(TrainingRecord {
                    format_version: super::runner::FORMAT_VERSION,
                    task_id: r.task_id.clone(),
                    trial: i as u32,
                    prompt: x.clone(),
                    reflection: y.clone(),
                    return_this_trial: pair[0].own_pass_rate,
                    return_next_trial: pair[1].own_pass_rate,
                    rating: pair[1].own_pass_rate - pair[0].own_pass_rate,
                    // The request as it was made (`solve` reflects on this implementation
                    // and the feedback of its tests), then the reply.
                    messages: Some({
                        let mut m = reflect_messages(
                            &pair[0].implementation,
                            &format_feedback(&pair[0].tests),
                        );
                        m.push(ChatMessage::new("assistant", y.clone()));
                        m
                    }),
                });
            }
        }
    }
    out
}

fn write_records(out: &Path, results: &[CodingResult]) -> Result<(), CodingRunError> {
    Ok(super::files::write_jsonl(
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
mod tests {
    use super::*;

    #[test]
    fn code_is_taken_from_the_block_that_defines_the_function() {
        let prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n";
        let reply = "Here:\n```python\nimport math\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\nDone.";
        assert_eq!(
            extract_code(reply, prompt, "add"),
            "def add(a, b):\n    return a + b\n"
        );
        // No fence at all: the whole reply.
        assert_eq!(
            extract_code("def add(a, b):\n    return a + b", prompt, "add"),
            "def add(a, b):\n    return a + b\n"
        );
        // A bare body goes under the prompt's signature, indented.
        assert_eq!(
            extract_code("```\nreturn a + b\n```", prompt, "add"),
            format!("{prompt}    return a + b\n")
        );
        // An unterminated fence still yields its code.
        assert_eq!(
            extract_code(
                "```python\ndef add(a, b):\n    return b + a\n",
                prompt,
                "add"
            ),
            "def add(a, b):\n    return b + a\n"
        );
    }

    #[test]
    fn asserts_are_the_assert_lines_without_duplicates() {
        let reply = "Tests:\n```python\nassert f(1) == 2\n  assert f(2) == 4\nassert f(1) == 2\nprint('x')\nassertion = 3\nassert(f(0) == 0)\n```";
        assert_eq!(
            parse_asserts(reply),
            vec!["assert f(1) == 2", "assert f(2) == 4", "assert(f(0) == 0)"]
        );
    }

    #[test]
    fn feedback_lists_passed_then_failed_asserts_with_their_output() {
        let r = |t: &str, o, out: &str| TestResult {
            test: t.into(),
            outcome: o,
            output: out.into(),
        };
        let fb = format_feedback(&[
            r("assert f(1) == 2", Outcome::Passed, ""),
            r("assert f(2) == 5", Outcome::Failed, "4"),
            r(
                "assert f(0) == 1",
                Outcome::Error,
                "ZeroDivisionError: division by zero",
            ),
            r("assert f(-1) == 0", Outcome::Timeout, "timeout"),
        ]);
        assert_eq!(
            fb,
            "Tests passed:\nassert f(1) == 2\n\nTests failed:\nassert f(2) == 5 # output: 4\nassert f(0) == 1 # output: ZeroDivisionError: division by zero\nassert f(-1) == 0 # output: timeout\n"
        );
    }

    #[test]
    fn embedded_text_survives_quotes_and_newlines() {
        assert_eq!(py_str("a'b\n"), "bytes.fromhex('6127620a').decode('utf-8')");
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;
    use crate::llm::scripted::ScriptedModel;
    use crate::llm::{LanguageModel, SessionOptions};
    use crate::sandbox::{Sandbox, SandboxConfig};

    fn problem() -> Problem {
        Problem {
            task_id: "T/add".into(),
            prompt: "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n".into(),
            entry_point: "add".into(),
            test: "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n".into(),
            canonical_solution: None,
        }
    }

    fn pool() -> Pool {
        let sandbox = Sandbox::new(SandboxConfig {
            wall_ms: 5_000,
            ..SandboxConfig::default()
        })
        .expect("python3 in the sandbox");
        Pool::new(sandbox, 2).unwrap()
    }

    #[test]
    fn a_wrong_first_implementation_is_reflected_on_and_fixed_and_the_hidden_tests_run_once() {
        let model = ScriptedModel::new([
            // Tests: two good asserts, a duplicate, one that does not parse.
            "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(1, 2) == 3\nassert add(1,, 2) == 3",
            // First implementation: wrong (the reply continues the opened fence).
            "def add(a, b):\n    return a - b\n```\nThis subtracts.",
            // Reflection, cut where code starts.
            "It subtracts instead of adding.\n```python\ndef add(a, b): ...",
            // Second implementation: right.
            "def add(a, b):\n    return a + b\n```",
        ]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &model,
            session: session.as_mut(),
            reflector: None,
        };
        let cfg = CodingConfig::new("reflexion", 5, "scripted");
        let pool = pool();
        let r = solve(&problem(), &cfg, &mut coder, &pool).unwrap().finish();
        assert_eq!(model.remaining(), 0);
        assert_eq!(
            r.own_tests,
            vec!["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
        );
        assert_eq!(r.iterations.len(), 2);
        let first = &r.iterations[0];
        assert_eq!(first.own_pass_rate, 0.5);
        assert_eq!(first.tests[0].outcome, Outcome::Failed);
        assert_eq!(first.tests[0].output, "-1");
        assert_eq!(
            first.reflection.as_deref(),
            Some("It subtracts instead of adding.")
        );
        assert_eq!(r.iterations[1].own_pass_rate, 1.0);
        assert!(r.passed, "{:?}", r.hidden);
        // The exact prompts: tests, implementation, reflection with the feedback, retry.
        let reqs = model.requests();
        assert_eq!(reqs.len(), 4);
        assert!(reqs[0]
            .prompt
            .starts_with(&format!("<system>{TESTS_SYSTEM}</system>\n")));
        assert!(reqs[0]
            .prompt
            .ends_with(&format!("<user>{}</user>\n<assistant>", problem().prompt)));
        assert_eq!(
            reqs[1].prompt,
            format!(
                "<system>{IMPL_SYSTEM}</system>\n<user>{}</user>\n<assistant>```python\n",
                problem().prompt
            )
        );
        let feedback = "Tests passed:\nassert add(0, 0) == 0\n\nTests failed:\nassert add(1, 2) == 3 # output: -1\n";
        assert_eq!(
            reqs[2].prompt,
            format!(
                "<system>{REFLECT_SYSTEM}</system>\n<user>[implementation]:\n```python\ndef add(a, b):\n    return a - b\n```\n\n[unit test results]:\n{feedback}\n[self-reflection]:</user>\n<assistant>"
            )
        );
        assert!(reqs[3].prompt.contains("[reflection on previous implementation]:\nIt subtracts instead of adding.\n\n[improved implementation]:"));
        assert!(reqs[3]
            .prompt
            .contains("<assistant>```python\ndef add(a, b):\n    return a - b\n```</assistant>"));
        // The rating record: own-test pass rate 0.5 -> 1.0, with the request as chat messages
        // that template back to exactly the prompt the reflection was written for.
        let recs = records(&[r]);
        assert_eq!(recs.len(), 1);
        assert!((recs[0].rating - 0.5).abs() < 1e-6);
        let m = recs[0].messages.as_ref().unwrap();
        let (last, rest) = m.split_last().unwrap();
        assert_eq!(last.role, "assistant");
        assert_eq!(last.content, "It subtracts instead of adding.");
        assert_eq!(model.chat_prompt(rest, true).unwrap(), reqs[2].prompt);
        assert_eq!(recs[0].prompt, reqs[2].prompt);
    }

    #[test]
    fn a_separate_reflector_writes_the_reflections_and_the_actor_the_code() {
        let actor = ScriptedModel::new([
            "assert add(1, 2) == 3",
            "def add(a, b):\n    return a - b\n```",
            "def add(a, b):\n    return a + b\n```",
        ]);
        let reflector = ScriptedModel::new(["Use + instead of -."]);
        let mut session = actor.session(&SessionOptions::default()).unwrap();
        let mut r_session = reflector.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &actor,
            session: session.as_mut(),
            reflector: Some(Reflector {
                model: &reflector,
                session: r_session.as_mut(),
            }),
        };
        let cfg = CodingConfig::new("reflexion", 5, "scripted");
        let r = solve(&problem(), &cfg, &mut coder, &pool())
            .unwrap()
            .finish();
        assert_eq!(actor.remaining(), 0);
        assert_eq!(reflector.remaining(), 0);
        assert_eq!(actor.requests().len(), 3);
        let asked = reflector.requests();
        assert_eq!(asked.len(), 1);
        assert!(asked[0].prompt.contains("[self-reflection]:"));
        assert_eq!(
            r.iterations[0].reflection.as_deref(),
            Some("Use + instead of -.")
        );
        assert_eq!(
            r.iterations[0].reflection_prompt.as_deref(),
            Some(asked[0].prompt.as_str())
        );
        assert!(actor.requests()[2]
            .prompt
            .contains("[reflection on previous implementation]:\nUse + instead of -."));
        assert!(r.passed, "{:?}", r.hidden);
    }

    #[test]
    fn an_old_run_json_without_a_reflector_reads_as_the_actor_reflecting() {
        let mut v = serde_json::to_value(CodingConfig::new("reflexion", 5, "m")).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("reflector");
        assert!(!o.contains_key("reflector_adapter"));
        let back: CodingConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, CodingConfig::new("reflexion", 5, "m"));
    }

    #[test]
    fn strategy_none_is_one_shot_and_a_wrong_answer_fails_the_hidden_tests() {
        let model = ScriptedModel::new(["def add(a, b):\n    return a * b\n```"]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &model,
            session: session.as_mut(),
            reflector: None,
        };
        let cfg = CodingConfig::new("none", 5, "scripted");
        let r = solve(&problem(), &cfg, &mut coder, &pool())
            .unwrap()
            .finish();
        assert_eq!(r.iterations.len(), 1);
        assert!(r.own_tests.is_empty());
        assert_eq!(r.hidden.outcome, Outcome::Failed);
        assert!(!r.passed);
    }

    #[test]
    fn the_loop_stops_after_max_iters_implementations() {
        let wrong = |k: u32| format!("def add(a, b):\n    return {k}\n```");
        let model = ScriptedModel::new([
            "assert add(1, 2) == 3".to_string(),
            wrong(0),
            "r1".into(),
            wrong(1),
            "r2".into(),
            wrong(2),
        ]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &model,
            session: session.as_mut(),
            reflector: None,
        };
        let cfg = CodingConfig::new("reflexion", 3, "scripted");
        let r = solve(&problem(), &cfg, &mut coder, &pool())
            .unwrap()
            .finish();
        assert_eq!(model.remaining(), 0);
        assert_eq!(r.iterations.len(), 3);
        assert!(r.iterations[2].reflection.is_none());
        assert_eq!(r.stop, StopReason::MaxIterations);
        assert_eq!(r.hidden.outcome, Outcome::Failed);
    }

    #[test]
    fn a_repeated_implementation_ends_the_loop_early() {
        let wrong = "def add(a, b):\n    return 0\n```";
        let model = ScriptedModel::new(["assert add(1, 2) == 3", wrong, "r1", wrong]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &model,
            session: session.as_mut(),
            reflector: None,
        };
        let cfg = CodingConfig::new("reflexion", 5, "scripted");
        let r = solve(&problem(), &cfg, &mut coder, &pool())
            .unwrap()
            .finish();
        assert_eq!(model.remaining(), 0);
        assert_eq!(r.iterations.len(), 2);
        assert_eq!(r.stop, StopReason::Repeated);
    }

    #[test]
    fn a_run_writes_every_file_and_resumes_without_redoing_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let mut p2 = problem();
        p2.task_id = "T/add2".into();
        let problems = [problem(), p2];
        let right = "def add(a, b):\n    return a + b\n```";
        let model = ScriptedModel::new([right, right]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &model,
            session: session.as_mut(),
            reflector: None,
        };
        let cfg = CodingConfig::new("none", 5, "scripted");
        let pool = pool();
        let (summary, results) =
            run(&problems, &cfg, dir.path(), &mut coder, &pool, |_| {}).unwrap();
        assert_eq!(summary.passed, 2);
        assert!((summary.pass_at_1 - 1.0).abs() < 1e-9);
        assert_eq!(results.len(), 2);
        for f in [
            "run.json",
            "humaneval.json",
            "trial-00.json",
            "records.jsonl",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        assert!(task_path(dir.path(), "T/add2").is_file());
        // Again: nothing left in the script, so any model call would fail.
        let (again, _) = run(&problems, &cfg, dir.path(), &mut coder, &pool, |_| {}).unwrap();
        assert_eq!(again, summary);
        // Other settings in the same folder are refused.
        let other = CodingConfig::new("reflexion", 5, "scripted");
        let err = run(&problems, &other, dir.path(), &mut coder, &pool, |_| {}).unwrap_err();
        assert!(err.to_string().contains("other settings"), "{err}");
    }
}

#[cfg(test)]
mod cheat_tests {
    use super::*;
    use crate::llm::scripted::ScriptedModel;
    use crate::llm::{LanguageModel, SessionOptions};
    use crate::sandbox::{Sandbox, SandboxConfig};

    #[test]
    fn an_implementation_that_exits_early_with_status_zero_passes_nothing() {
        let problem = Problem {
            task_id: "T/exit".into(),
            prompt: "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n".into(),
            entry_point: "add".into(),
            test: "def check(candidate):\n    assert candidate(2, 3) == 5\n".into(),
            canonical_solution: None,
        };
        let cheat = "import os\nos._exit(0)\ndef add(a, b):\n    return 0\n```";
        let model = ScriptedModel::new(["assert add(2, 3) == 5", cheat]);
        let mut session = model.session(&SessionOptions::default()).unwrap();
        let mut coder = Coder {
            model: &model,
            session: session.as_mut(),
            reflector: None,
        };
        let pool = Pool::new(Sandbox::new(SandboxConfig::default()).unwrap(), 1).unwrap();
        let cfg = CodingConfig::new("reflexion", 1, "scripted");
        let r = solve(&problem, &cfg, &mut coder, &pool).unwrap().finish();
        assert_eq!(r.iterations[0].tests[0].outcome, Outcome::Error);
        assert_eq!(r.iterations[0].own_pass_rate, 0.0);
        assert!(!r.passed);
        assert_eq!(r.hidden.outcome, Outcome::Error);
    }
}
