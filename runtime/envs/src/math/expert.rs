//! Expert iteration's data (STaR, rejection-sampling fine-tuning): each train problem gets
//! `chains` sampled attempts; a wrong one is retried, told that its answer was wrong, up to
//! `retries` times. The checker's verified answers become SFT samples (distinct, at most
//! `per_problem` a problem, so easy problems do not dominate), and a placebo set of the same
//! size is drawn from all the answers without regard to correctness: it catches what training
//! on one's own samples does besides teaching right answers (format, entropy).
//!
//! A sample's prompt is always the question alone (as a first attempt), whichever attempt found
//! the answer: what is being improved is the first, greedy answer.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rise::{self, Attempt, MathAgent, RiseError};
use super::{Dataset, MathProblem};
use retroformer::agent::{files, runner};
use retroformer::provenance::{note_saved, record_model_session};
use retroformer_core::records::RiseSample;
use retroformer_llm::{ChatMessage, LlmError};

/// Format version of the files this module writes.
pub const FORMAT_VERSION: u32 = 1;

/// Settings of a collection (`run.json`): a folder holding other settings is not resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertConfig {
    /// Which checker.
    pub dataset: Dataset,
    /// The model.
    pub model: String,
    /// The sha256 of the adapter on the model, if any (the policy collecting).
    pub adapter_sha256: Option<String>,
    /// Independent chains per problem.
    pub chains: u32,
    /// Retries after a wrong answer, per chain.
    pub retries: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Sampling top-p.
    pub top_p: f32,
    /// Tokens per attempt.
    pub max_tokens: u32,
    /// Base seed.
    pub seed: u32,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
}

/// One problem's attempts (`trial-00/ID.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collected {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold: String,
    /// Each chain's attempts, in order: the first sampled from the question, each later one
    /// after the previous and the message that it was wrong; a chain ends at a correct one.
    pub chains: Vec<Vec<Attempt>>,
}

impl Collected {
    /// Some attempt is correct.
    pub fn solved(&self) -> bool {
        self.chains.iter().flatten().any(correct)
    }
}

/// One answer picked for training, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `correct` or `placebo`.
    pub selection: String,
    /// The problem.
    pub problem_id: String,
    /// The chain (from 0).
    pub chain: u32,
    /// The attempt within the chain (0: the first, 1: after one "wrong").
    pub attempt: u32,
    /// The checker's reward.
    pub reward: f32,
    /// Its tokens.
    pub generated_tokens: u32,
    /// The answer.
    pub response: String,
}

fn correct(a: &Attempt) -> bool {
    a.reward >= 1.0
}

/// The request after `attempts` of one chain, or `None` when the chain is over.
fn next_prompt(
    p: &MathProblem,
    attempts: &[Attempt],
    cfg: &ExpertConfig,
) -> Option<Vec<ChatMessage>> {
    match attempts.last() {
        None => Some(rise::messages(&p.question, &[], 1)),
        Some(a) if correct(a) || attempts.len() > cfg.retries as usize => None,
        // The environment's feedback: the last answer was wrong; answer anew.
        Some(a) => Some(rise::messages(
            &p.question,
            std::slice::from_ref(&a.response),
            2,
        )),
    }
}

/// Collects every problem's chains through one session's stream (continuous batching); a
/// problem is handed to `done` with its position as soon as its last chain ends.
pub fn collect_stream<E: From<LlmError> + Send>(
    problems: &[&MathProblem],
    cfg: &ExpertConfig,
    agent: &mut MathAgent<'_>,
    done: &mut (dyn FnMut(usize, Collected) -> Result<(), E> + Send),
) -> Result<(), E> {
    let per = cfg.chains.max(1) as usize;
    let n = problems.len();
    let mut chains: Vec<Vec<Vec<Attempt>>> = vec![vec![Vec::new(); per]; n];
    let mut open = vec![per; n];
    let model = agent.model;
    retroformer::agent::run_chains::<E>(&mut *agent.session, n * per, |k, g| {
        let (i, c) = (k / per, k % per);
        let p = problems[i];
        // A refused request fails the run, as it would one request at a time.
        let g = g.transpose()?;
        let started = g.is_some();
        if let Some(g) = g {
            chains[i][c].push(rise::attempt_of(p, &g, g.stats.total_ms));
        }
        let t = chains[i][c].len() as u32;
        let next = match next_prompt(p, &chains[i][c], cfg) {
            Some(msgs) => {
                let seed = rise::problem_seed(cfg.seed, &p.id, (c as u32) * 64 + t);
                let s = rise::sampling(cfg.temperature, cfg.top_p, seed);
                Some(rise::request(model, &msgs, s, cfg.max_tokens)?)
            }
            None => None,
        };
        if next.is_none() && started {
            open[i] -= 1;
            if open[i] == 0 {
                done(
                    i,
                    Collected {
                        format_version: FORMAT_VERSION,
                        problem_id: p.id.clone(),
                        question: p.question.clone(),
                        gold: p.answer.clone(),
                        chains: std::mem::take(&mut chains[i]),
                    },
                )?;
            }
        }
        Ok(next)
    })
}

/// Claims `out` for a collection with `cfg` (`run.json`: other settings are refused) and reads
/// each problem's saved result, if any.
pub fn saved(
    problems: &[MathProblem],
    cfg: &ExpertConfig,
    out: &Path,
) -> Result<Vec<Option<Collected>>, RiseError> {
    files::claim_run_folder(out, cfg)?.map_err(RiseError::Config)?;
    let trials = out.join("trial-00");
    std::fs::create_dir_all(&trials).map_err(|e| files::file_err(&trials, e))?;
    let mut all = Vec::with_capacity(problems.len());
    for p in problems {
        let path = runner::task_path(out, 0, &p.id);
        let c: Option<Collected> = files::read_json(&path)?;
        if let Some(c) = &c {
            check_saved(p, c).map_err(|e| RiseError::Config(format!("{}: {e}", path.display())))?;
        }
        all.push(c);
    }
    Ok(all)
}

/// Refuses a saved problem that is another format or problem (its id, question or gold answer
/// differ) or whose attempts the checker judges otherwise now.
fn check_saved(p: &MathProblem, c: &Collected) -> Result<(), String> {
    if c.format_version != FORMAT_VERSION
        || c.problem_id != p.id
        || c.question != p.question
        || c.gold != p.answer
    {
        return Err("another format or problem than this run's; use another folder".into());
    }
    c.chains
        .iter()
        .flatten()
        .try_for_each(|a| rise::rejudge(p, a))
}

/// Collects (or resumes) `problems` into `out` (`run.json`, one `trial-00/ID.json` a problem,
/// written atomically as each ends); all of them, in order. `on_done` sees each one, saved
/// ones first.
pub fn collect(
    problems: &[MathProblem],
    cfg: &ExpertConfig,
    out: &Path,
    agent: &mut MathAgent<'_>,
    mut on_done: impl FnMut(&Collected) + Send,
) -> Result<Vec<Collected>, RiseError> {
    let mut all = saved(problems, cfg, out)?;
    all.iter().flatten().for_each(&mut on_done);
    let pending: Vec<usize> = (0..problems.len()).filter(|&i| all[i].is_none()).collect();
    let done = problems.len() - pending.len();
    record_model_session(out, done, pending.len(), &*agent.session)?;
    let group: Vec<&MathProblem> = pending.iter().map(|&i| &problems[i]).collect();
    collect_stream(&group, cfg, agent, &mut |k, c| {
        let i = pending[k];
        files::write_json(&runner::task_path(out, 0, &problems[i].id), &c)?;
        note_saved(out)?;
        on_done(&c);
        all[i] = Some(c);
        Ok::<(), RiseError>(())
    })?;
    Ok(all.into_iter().flatten().collect())
}

/// Whitespace-collapsed text: two answers that differ only in spacing are one.
fn normalized(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn selected(c: &Collected, chain: usize, attempt: usize, selection: &str) -> Selected {
    let a = &c.chains[chain][attempt];
    Selected {
        format_version: FORMAT_VERSION,
        selection: selection.into(),
        problem_id: c.problem_id.clone(),
        chain: chain as u32,
        attempt: attempt as u32,
        reward: a.reward,
        generated_tokens: a.generated_tokens,
        response: a.response.clone(),
    }
}

/// Every problem's correct answers, distinct, at most `per_problem` each, first attempts
/// before retries' (then by chain).
pub fn select_correct(all: &[Collected], per_problem: usize) -> Vec<Selected> {
    let mut out = Vec::new();
    for c in all {
        let mut found: Vec<(usize, usize)> = Vec::new();
        for (ci, chain) in c.chains.iter().enumerate() {
            for (ai, a) in chain.iter().enumerate() {
                if correct(a) {
                    found.push((ai, ci));
                }
            }
        }
        found.sort();
        let mut seen = BTreeSet::new();
        for (ai, ci) in found {
            if seen.len() == per_problem {
                break;
            }
            if seen.insert(normalized(&c.chains[ci][ai].response)) {
                out.push(selected(c, ci, ai, "correct"));
            }
        }
    }
    out
}

/// `count` answers drawn at random (seeded) from every attempt of every problem, whatever its
/// reward: distinct, at most `per_problem` a problem, as the correct set is. Fewer when there
/// are not enough.
pub fn select_placebo(
    all: &[Collected],
    count: usize,
    per_problem: usize,
    seed: u64,
) -> Vec<Selected> {
    let mut pool: Vec<(usize, usize, usize)> = Vec::new();
    for (pi, c) in all.iter().enumerate() {
        for (ci, chain) in c.chains.iter().enumerate() {
            pool.extend((0..chain.len()).map(|ai| (pi, ci, ai)));
        }
    }
    retroformer_core::rng::shuffle(&mut pool, seed);
    let mut taken = vec![BTreeSet::new(); all.len()];
    let mut out = Vec::new();
    for (pi, ci, ai) in pool {
        if out.len() == count {
            break;
        }
        let c = &all[pi];
        if taken[pi].len() < per_problem && taken[pi].insert(normalized(&c.chains[ci][ai].response))
        {
            out.push(selected(c, ci, ai, "placebo"));
        }
    }
    out
}

/// The SFT sample of `s`: the first-attempt conversation of `question` with `s`'s answer as
/// the reply (the loss is on that reply only).
pub fn to_sample(question: &str, s: &Selected) -> RiseSample {
    let mut messages = rise::messages(question, &[], 1);
    messages.push(ChatMessage::new("assistant", s.response.trim()));
    RiseSample {
        format_version: retroformer_core::records::FORMAT_VERSION,
        problem_id: s.problem_id.clone(),
        turn: 0,
        messages,
        loss_on: retroformer_core::records::LOSS_ON_LAST_ASSISTANT.into(),
        reward: f64::from(s.reward),
        weight: 1.0,
        tokens: None,
    }
}

#[cfg(test)]
mod tests;
