//! The agent-level suite of `retroformer bench`: a fixed small set of tasks from each
//! environment, greedy decoding, no reflections, so that two machines or two commits can be
//! compared on the same work (success, tokens, wall time per task).
//!
//! The household tasks need no data files (their examples are made by the planner, never read
//! from ALFWorld's prompt file, so every machine sees the same prompt). HotPotQA and GSM8K run
//! when their data files are found, and are listed as skipped otherwise.

use std::time::Instant;

use super::{AgentTask, BenchError};
use crate::agent::household::{self, HouseholdConfig};
use crate::agent::react::{self, ReactConfig};
use crate::agent::rise::{self, Solver};
use crate::env::household::{eval_split, HouseholdEnv};
use crate::env::{hotpotqa, math};
use crate::llm::{LanguageModel, SamplingParams, SessionOptions};

/// How many tasks of each environment, and their limits.
#[derive(Debug, Clone)]
pub struct AgentSuite {
    /// Household tasks, spread over the task types.
    pub household: usize,
    /// Most actions per household task.
    pub household_steps: u32,
    /// HotPotQA questions (the first of the sample).
    pub hotpotqa: usize,
    /// GSM8K problems (the first of the test split), one greedy attempt each.
    pub gsm8k: usize,
}

impl AgentSuite {
    /// The full suite (3 household tasks of 30 steps, 2 HotPotQA questions, 2 GSM8K problems),
    /// or (`quick`) one household task of 6 steps.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                household: 1,
                household_steps: 6,
                hotpotqa: 0,
                gsm8k: 0,
            }
        } else {
            Self {
                household: 3,
                household_steps: 30,
                hotpotqa: 2,
                gsm8k: 2,
            }
        }
    }
}

/// Runs the suite with `model` as the actor. Environments whose data is missing are noted in
/// `notes` and skipped.
pub fn run(
    model: &dyn LanguageModel,
    name: &str,
    threads: u32,
    suite: &AgentSuite,
    notes: &mut Vec<String>,
    progress: &dyn Fn(&str),
) -> Result<Vec<AgentTask>, BenchError> {
    let mut out = Vec::new();
    let opts = SessionOptions {
        context_size: Some(4096),
        threads: Some(threads),
        ..Default::default()
    };
    // Household: tasks spread evenly over the 134-task evaluation split.
    let specs = eval_split();
    let cfg = HouseholdConfig {
        max_steps: suite.household_steps,
        ..HouseholdConfig::default()
    };
    for i in 0..suite.household.min(specs.len()) {
        let spec = &specs[i * specs.len() / suite.household];
        progress(&format!("household {}", spec.id()));
        let mut env = HouseholdEnv::new(spec);
        let examples = household::planner_examples(spec.task_type);
        let mut session = model.session(&opts)?;
        let t = Instant::now();
        let o = household::run_episode(session.as_mut(), &mut env, &examples, &[], &cfg)?;
        out.push(AgentTask {
            env: "household".into(),
            task: spec.id(),
            model: name.into(),
            success: o.success,
            calls: o.steps.len() as u32,
            evaluated_tokens: o.steps.iter().map(|s| u64::from(s.evaluated_tokens)).sum(),
            reused_tokens: o.steps.iter().map(|s| u64::from(s.reused_tokens)).sum(),
            generated_tokens: o.steps.iter().map(|s| u64::from(s.generated_tokens)).sum(),
            wall_ms: t.elapsed().as_secs_f64() * 1e3,
        });
    }
    // HotPotQA: ReAct on the first questions, each with its own docstore.
    if suite.hotpotqa > 0 {
        match hotpotqa::default_path().and_then(|p| hotpotqa::load(&p)) {
            Err(e) => notes.push(format!("agent suite: HotPotQA skipped ({e})")),
            Ok(questions) => {
                for q in questions.iter().take(suite.hotpotqa) {
                    progress(&format!("hotpotqa {}", q.id));
                    let store = hotpotqa::Docstore::for_question(q);
                    let mut ep = hotpotqa::Episode::new(q, &store);
                    let mut session = model.session(&opts)?;
                    let t = Instant::now();
                    let o = react::run_episode(
                        model,
                        session.as_mut(),
                        &mut ep,
                        "",
                        0,
                        &ReactConfig::default(),
                    )?;
                    let steps = &o.trajectory.steps;
                    out.push(AgentTask {
                        env: "hotpotqa".into(),
                        task: q.id.clone(),
                        model: name.into(),
                        success: ep.success(),
                        calls: 2 * steps.len() as u32,
                        evaluated_tokens: steps.iter().map(|s| u64::from(s.evaluated_tokens)).sum(),
                        reused_tokens: steps.iter().map(|s| u64::from(s.reused_tokens)).sum(),
                        generated_tokens: steps.iter().map(|s| u64::from(s.generated_tokens)).sum(),
                        wall_ms: t.elapsed().as_secs_f64() * 1e3,
                    });
                }
            }
        }
    }
    // GSM8K: one greedy attempt at each of the first problems.
    if suite.gsm8k > 0 {
        match math::default_gsm8k_path("test").and_then(|p| math::load_gsm8k(&p)) {
            Err(e) => notes.push(format!("agent suite: GSM8K skipped ({e})")),
            Ok(problems) => {
                for p in problems.iter().take(suite.gsm8k) {
                    progress(&format!("gsm8k {}", p.id));
                    let mut session = model.session(&opts)?;
                    let mut solver = Solver {
                        model,
                        session: session.as_mut(),
                    };
                    let msgs = rise::messages(&p.question, &[], 2);
                    let a = solver.attempt(p, &msgs, SamplingParams::greedy(), 384)?;
                    out.push(AgentTask {
                        env: "gsm8k".into(),
                        task: p.id.clone(),
                        model: name.into(),
                        success: a.reward > 0.0,
                        calls: 1,
                        evaluated_tokens: u64::from(a.evaluated_tokens),
                        reused_tokens: u64::from(a.reused_tokens),
                        generated_tokens: u64::from(a.generated_tokens),
                        wall_ms: a.ms,
                    });
                }
            }
        }
    }
    Ok(out)
}
