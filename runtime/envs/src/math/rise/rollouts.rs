//! Rollout collection: for each problem, turns of sampled candidates until one is right; the
//! best candidate of a turn is kept and shown to the next (RISE's on-policy data). With one
//! model, every problem's candidates share one session's stream: none waits for another
//! problem's turn.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    attempt_of, files, messages, old_top_p, one, problem_seed, read_json, request, retry_message,
    runner, sampling, Attempt, Dataset, Job, MathAgent, MathProblem, RiseError, FORMAT_VERSION,
    SUCCESS_MESSAGE,
};

use files::file_err;
use retroformer_llm::{CancelToken, ChatMessage, GenerateRequest};

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

/// Refuses a saved rollout of another problem, or whose candidates the checker judges
/// otherwise now (a kept turn's reward is its chosen candidate's).
fn check_saved(p: &MathProblem, r: &Rollout) -> Result<(), String> {
    if r.problem_id != p.id || r.question != p.question || r.gold != p.answer {
        return Err("another problem than this run's; use another folder".into());
    }
    for t in &r.turns {
        t.candidates.iter().try_for_each(|a| super::rejudge(p, a))?;
    }
    check_turns(r)
}

/// Each turn's chosen candidate exists and carries the turn's reward.
fn check_turns(r: &Rollout) -> Result<(), String> {
    for t in &r.turns {
        if t.candidates.get(t.chosen).map(|a| a.reward) != Some(t.reward) {
            return Err(
                "a turn's reward is not its chosen candidate's: the file was edited".into(),
            );
        }
    }
    Ok(())
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
    check(cfg, solvers.len())?;
    let mut turns = Vec::new();
    for t in 0..cfg.turns {
        let i = (t as usize).min(solvers.len() - 1);
        // The n candidates go to the session together (decoded as one batch where it can).
        let candidates = solvers[i].attempts(&turn_jobs(problem, cfg, &turns), cfg.max_tokens)?;
        let turn = turn_of(cfg, i, candidates);
        let right = turn.reward >= 1.0;
        turns.push(turn);
        if right {
            break;
        }
    }
    Ok(rollout(problem, cfg, turns))
}

/// Refuses a collection without a model or a sample count.
fn check(cfg: &RolloutConfig, solvers: usize) -> Result<(), RiseError> {
    if solvers == 0 || cfg.samples.is_empty() {
        return Err(RiseError::Config(
            "rollouts need at least one model and one sample count".into(),
        ));
    }
    Ok(())
}

/// The candidates' jobs of `problem`'s next turn after `turns`.
fn turn_jobs<'p>(
    problem: &'p MathProblem,
    cfg: &RolloutConfig,
    turns: &[RolloutTurn],
) -> Vec<Job<'p>> {
    let t = turns.len() as u32;
    let n = cfg.samples[(t as usize).min(cfg.samples.len() - 1)].max(1);
    let msgs = match cfg.candidates {
        Candidates::History => {
            let kept: Vec<String> = turns
                .iter()
                .map(|t| t.candidates[t.chosen].response.clone())
                .collect();
            messages(&problem.question, &kept, cfg.window)
        }
        Candidates::Fresh => messages(&problem.question, &[], cfg.window),
    };
    (0..n)
        .map(|k| {
            let seed = problem_seed(cfg.seed, &problem.id, t * 1000 + k);
            (
                problem,
                msgs.clone(),
                sampling(cfg.temperature, cfg.top_p, seed),
            )
        })
        .collect()
}

/// A turn of model `i`'s `candidates`: the best is kept.
fn turn_of(cfg: &RolloutConfig, i: usize, candidates: Vec<Attempt>) -> RolloutTurn {
    let chosen = best_candidate(&candidates);
    RolloutTurn {
        model: cfg.models[i.min(cfg.models.len().saturating_sub(1))].clone(),
        reward: candidates[chosen].reward,
        candidates,
        chosen,
    }
}

/// `problem`'s rollout of `turns`, with the dialogue of its kept answers.
fn rollout(problem: &MathProblem, cfg: &RolloutConfig, turns: Vec<RolloutTurn>) -> Rollout {
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
    Rollout {
        format_version: FORMAT_VERSION,
        problem_id: problem.id.clone(),
        question: problem.question.clone(),
        gold: problem.answer.clone(),
        window: cfg.window,
        turns,
        dialogue,
    }
}

/// Collect (or resume collecting) rollouts into `out/rollouts/ID.json`, each written as soon
/// as it ends. With one model every open problem goes to its session's stream at once
/// ([`collect_stream`]); with several, one problem after another.
pub fn collect_all(
    problems: &[MathProblem],
    cfg: &RolloutConfig,
    out: &Path,
    solvers: &mut [MathAgent<'_>],
    mut on_done: impl FnMut(&Rollout) + Send,
) -> Result<Vec<Rollout>, RiseError> {
    check(cfg, solvers.len())?;
    files::claim_run_folder(out, cfg)?.map_err(RiseError::Config)?;
    let folder = out.join("rollouts");
    std::fs::create_dir_all(&folder).map_err(|e| file_err(&folder, e))?;
    let path = |p: &MathProblem| folder.join(format!("{}.json", runner::file_stem(&p.id)));
    let mut all: Vec<Option<Rollout>> = Vec::with_capacity(problems.len());
    for p in problems {
        let r: Option<Rollout> = read_json(&path(p))?;
        if let Some(r) = &r {
            check_saved(p, r)
                .map_err(|e| RiseError::Config(format!("{}: {e}", path(p).display())))?;
            on_done(r);
        }
        all.push(r);
    }
    let open: Vec<usize> = (0..problems.len()).filter(|&i| all[i].is_none()).collect();
    let mut save = |i: usize, r: Rollout| -> Result<(), RiseError> {
        files::write_json(&path(&problems[i]), &r)?;
        on_done(&r);
        all[i] = Some(r);
        Ok(())
    };
    if let [solver] = solvers {
        let group: Vec<&MathProblem> = open.iter().map(|&i| &problems[i]).collect();
        collect_stream(&group, cfg, solver, &mut |k, r| save(open[k], r))?;
    } else {
        for &i in &open {
            save(i, collect(&problems[i], cfg, solvers)?)?;
        }
    }
    Ok(all.into_iter().flatten().collect())
}

/// Rollouts of `problems` with one model, through one [`retroformer_llm::Session::generate_stream`]:
/// every candidate is a request of its own, beside other problems'; when a turn's last
/// candidate ends, its best is kept and the next turn's candidates start (or the rollout is
/// handed to `done` with its position in `problems`). The first error cancels what runs.
fn collect_stream(
    problems: &[&MathProblem],
    cfg: &RolloutConfig,
    solver: &mut MathAgent<'_>,
    done: &mut (dyn FnMut(usize, Rollout) -> Result<(), RiseError> + Send),
) -> Result<(), RiseError> {
    /// A problem's turns so far and its current turn's candidates.
    struct Open {
        turns: Vec<RolloutTurn>,
        candidates: Vec<Option<Attempt>>,
    }
    let most = cfg.samples.iter().copied().max().unwrap_or(1).max(1) as usize;
    let model = solver.model;
    let cancel = CancelToken::new();
    // The requests of problem `i`'s next turn, keyed by problem and candidate.
    let turn =
        |i: usize, turns: &[RolloutTurn]| -> Result<Vec<(u64, GenerateRequest)>, RiseError> {
            turn_jobs(problems[i], cfg, turns)
                .into_iter()
                .enumerate()
                .map(|(k, (_, msgs, s))| {
                    let mut req = request(model, &msgs, s, cfg.max_tokens)?;
                    req.cancel = Some(cancel.clone());
                    Ok(((i * most + k) as u64, req))
                })
                .collect()
        };
    let mut open: Vec<Open> = Vec::with_capacity(problems.len());
    let mut first = Vec::new();
    for i in 0..problems.len() {
        let reqs = turn(i, &[])?;
        open.push(Open {
            turns: Vec::new(),
            candidates: vec![None; reqs.len()],
        });
        first.extend(reqs);
    }
    let mut failed: Option<RiseError> = None;
    solver.session.generate_stream(first, &mut |key, g| {
        if failed.is_some() {
            return Vec::new();
        }
        let (i, k) = (key as usize / most, key as usize % most);
        let step = g.map_err(RiseError::from).and_then(|g| {
            let o = &mut open[i];
            o.candidates[k] = Some(attempt_of(problems[i], &g, g.stats.total_ms));
            if o.candidates.iter().any(Option::is_none) {
                return Ok(Vec::new());
            }
            let made: Vec<Attempt> = o.candidates.drain(..).flatten().collect();
            o.turns.push(turn_of(cfg, 0, made));
            let right = o.turns.last().is_some_and(|t| t.reward >= 1.0);
            if right || o.turns.len() >= cfg.turns as usize {
                done(i, rollout(problems[i], cfg, std::mem::take(&mut o.turns)))?;
                return Ok(Vec::new());
            }
            let next = turn(i, &o.turns)?;
            o.candidates = vec![None; next.len()];
            Ok(next)
        });
        step.unwrap_or_else(|e| {
            cancel.cancel();
            failed = Some(e);
            Vec::new()
        })
    })?;
    failed.map_or(Ok(()), Err)
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
            check_turns(&r).map_err(|why| file_err(&p, why))?;
            if r.format_version == 1 {
                // Version 1 counted earlier attempts only.
                r.window = r.window.saturating_add(1);
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
