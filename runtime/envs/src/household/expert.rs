//! Expert iteration's data in the household: each train task gets `chains` sampled episodes
//! (by the actor, or a larger teacher when the actor solves too few); the successful ones,
//! distinct by their actions and at most `per_task` a task, become training examples with the
//! loss on the actions ([`episode_segments`]); a placebo of as many episodes is drawn without
//! regard to success. An episode starts without memory, as the greedy evaluation does: what is
//! being improved is the first attempt.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::agent::{examples, load_prompt_file};
use super::episode::{episode_segments, is_think, prompt_prefix, EpisodeRun, HouseholdConfig};
use super::{HouseholdEnv, TaskSpec, TaskType};
use retroformer::agent::files;
use retroformer::agent::runner::{actor_seed, task_path, RunError};
use retroformer::provenance::{note_saved, record_model_session};

use retroformer_core::records::EpisodeSample;
use retroformer_llm::{LlmError, SamplingParams, Session};

pub use super::episode::HouseholdOutcome;

/// Format version of the files this module writes.
pub const FORMAT_VERSION: u32 = 1;

/// Settings of a collection (`run.json`): a folder holding other settings is not resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdExpertConfig {
    /// The model collecting.
    pub model: String,
    /// The sha256 of the adapter on the model, if any (the policy collecting).
    pub adapter_sha256: Option<String>,
    /// Independent episodes per task.
    pub chains: u32,
    /// Sampling temperature (0: greedy, one chain is then enough).
    pub temperature: f32,
    /// Sampling top-p.
    pub top_p: f32,
    /// Base seed.
    pub seed: u32,
    /// The episodes' limits.
    pub episode: HouseholdConfig,
    /// The sha256 of every task type's few-shot examples: another prompt file is another run.
    pub examples_sha256: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
}

/// One task's episodes (`trial-00/ID.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collected {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The task.
    pub task_id: String,
    /// Each chain's episode.
    pub chains: Vec<HouseholdOutcome>,
}

impl Collected {
    /// Some episode succeeded.
    pub fn solved(&self) -> bool {
        self.chains.iter().any(|e| e.success)
    }
}

/// One episode picked for training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `correct` or `placebo`.
    pub selection: String,
    /// The task.
    pub task_id: String,
    /// The chain (from 0).
    pub chain: u32,
    /// Whether it succeeded.
    pub success: bool,
    /// Its actions (thoughts included).
    pub steps: usize,
}

/// The few-shot examples of every task type, as the episodes read them.
pub struct Examples(Vec<(TaskType, String)>);

impl Examples {
    /// The prompt file's (or the planner's, without one).
    pub fn load() -> Self {
        let prompts = load_prompt_file();
        Self(
            TaskType::ALL
                .iter()
                .map(|&t| (t, examples(t, prompts.as_ref())))
                .collect(),
        )
    }

    /// The same text for every type (tests).
    pub fn fixed(text: &str) -> Self {
        Self(
            TaskType::ALL
                .iter()
                .map(|&t| (t, text.to_string()))
                .collect(),
        )
    }

    /// `task_type`'s examples.
    pub fn of(&self, task_type: TaskType) -> &str {
        self.0
            .iter()
            .find(|(t, _)| *t == task_type)
            .map_or("", |(_, s)| s)
    }

    /// The sha256 of every type's examples in order.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for (t, s) in &self.0 {
            h.update(t.name().as_bytes());
            h.update([0]);
            h.update(s.as_bytes());
            h.update([0]);
        }
        format!("{:x}", h.finalize())
    }

    /// The prompt every request of a first attempt at `spec` starts with.
    pub fn prefix(&self, spec: &TaskSpec) -> String {
        prompt_prefix(self.of(spec.task_type), &[])
    }
}

/// How chain `chain` of `task_id` samples.
fn sampling(cfg: &HouseholdExpertConfig, task_id: &str, chain: u32) -> SamplingParams {
    if cfg.temperature <= 0.0 {
        return SamplingParams::greedy();
    }
    SamplingParams {
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        // Hashed per chain: consecutive seeds would repeat one another a step apart, since
        // each step adds its index to the seed.
        seed: actor_seed(cfg.seed, task_id, chain),
        ..Default::default()
    }
}

/// Runs every task's chains through one session's stream (continuous batching); a task is
/// handed to `done` with its position as soon as its last episode ends.
pub fn collect_stream<E: From<LlmError> + Send>(
    specs: &[&TaskSpec],
    cfg: &HouseholdExpertConfig,
    examples: &Examples,
    session: &mut dyn Session,
    done: &mut (dyn FnMut(usize, Collected) -> Result<(), E> + Send),
) -> Result<(), E> {
    let per = cfg.chains.max(1) as usize;
    let mut envs = Vec::with_capacity(specs.len() * per);
    let mut runs = Vec::with_capacity(specs.len() * per);
    for s in specs {
        for c in 0..per {
            let mut env = HouseholdEnv::new(s);
            let sampling = sampling(cfg, &s.id(), c as u32);
            runs.push(Some(EpisodeRun::start(
                &mut env,
                examples.of(s.task_type),
                &[],
                sampling,
            )));
            envs.push(env);
        }
    }
    let mut finished: Vec<Vec<Option<HouseholdOutcome>>> = vec![vec![None; per]; specs.len()];
    retroformer::agent::run_chains::<E>(session, runs.len(), |k, g| {
        let run = runs[k]
            .as_mut()
            .expect("a chain asks nothing after its end");
        if let Some(g) = g {
            run.answer(&mut envs[k], g, &cfg.episode, &mut |_, _| {})?;
        }
        let next = run.request(&envs[k], &cfg.episode);
        if next.is_none() {
            let (i, c) = (k / per, k % per);
            let run = runs[k].take().expect("the chain's run");
            finished[i][c] = Some(run.finish(&envs[k]));
            if finished[i].iter().all(Option::is_some) {
                let chains = finished[i]
                    .iter_mut()
                    .map(|o| o.take().expect("ended"))
                    .collect();
                done(
                    i,
                    Collected {
                        format_version: FORMAT_VERSION,
                        task_id: specs[i].id(),
                        chains,
                    },
                )?;
            }
        }
        Ok(next)
    })
}

/// Claims `out` for a collection with `cfg` (`run.json`: other settings are refused) and reads
/// each task's saved episodes, if any.
pub fn saved(
    specs: &[TaskSpec],
    cfg: &HouseholdExpertConfig,
    out: &Path,
) -> Result<Vec<Option<Collected>>, RunError> {
    files::claim_run_folder(out, cfg)?.map_err(RunError::Config)?;
    let trials = out.join("trial-00");
    std::fs::create_dir_all(&trials).map_err(|e| files::file_err(&trials, e))?;
    let mut all = Vec::with_capacity(specs.len());
    for s in specs {
        let path = task_path(out, 0, &s.id());
        let c: Option<Collected> = files::read_json(&path)?;
        if let Some(c) = &c {
            if c.format_version != FORMAT_VERSION || c.task_id != s.id() {
                return Err(RunError::Config(format!(
                    "{}: another format or task than this run's; use another folder",
                    path.display()
                )));
            }
        }
        all.push(c);
    }
    Ok(all)
}

/// Collects (or resumes) `specs` into `out` (`run.json`, one `trial-00/ID.json` a task,
/// written atomically as each ends); all of them, in order. `on_done` sees each one, saved
/// ones first.
pub fn collect(
    specs: &[TaskSpec],
    cfg: &HouseholdExpertConfig,
    examples: &Examples,
    out: &Path,
    session: &mut dyn Session,
    mut on_done: impl FnMut(&Collected) + Send,
) -> Result<Vec<Collected>, RunError> {
    if cfg.examples_sha256 != examples.sha256() {
        return Err(RunError::Config(
            "the settings' examples_sha256 is not the examples' (another prompt file)".into(),
        ));
    }
    let mut all = saved(specs, cfg, out)?;
    all.iter().flatten().for_each(&mut on_done);
    let pending: Vec<usize> = (0..specs.len()).filter(|&i| all[i].is_none()).collect();
    record_model_session(out, specs.len() - pending.len(), pending.len(), &*session)?;
    let group: Vec<&TaskSpec> = pending.iter().map(|&i| &specs[i]).collect();
    collect_stream(&group, cfg, examples, session, &mut |k, c| {
        let i = pending[k];
        files::write_json(&task_path(out, 0, &specs[i].id()), &c)?;
        note_saved(out)?;
        on_done(&c);
        all[i] = Some(c);
        Ok::<(), RunError>(())
    })?;
    Ok(all.into_iter().flatten().collect())
}

/// An episode's actions, thoughts left out: two episodes that differ only in what they
/// thought teach the same acts.
fn acts(e: &HouseholdOutcome) -> Vec<&str> {
    e.steps
        .iter()
        .map(|s| s.action.as_str())
        .filter(|a| !is_think(a))
        .collect()
}

fn selected(c: &Collected, chain: usize, selection: &str) -> Selected {
    let e = &c.chains[chain];
    Selected {
        format_version: FORMAT_VERSION,
        selection: selection.into(),
        task_id: c.task_id.clone(),
        chain: chain as u32,
        success: e.success,
        steps: e.steps.len(),
    }
}

/// Every task's successful episodes, distinct by their actions, at most `per_task` each, in
/// chain order.
pub fn select_correct(all: &[Collected], per_task: usize) -> Vec<Selected> {
    let mut out = Vec::new();
    for c in all {
        let mut seen = BTreeSet::new();
        for (ci, e) in c.chains.iter().enumerate() {
            if e.success && seen.len() < per_task && seen.insert(acts(e)) {
                out.push(selected(c, ci, "correct"));
            }
        }
    }
    out
}

/// `count` episodes drawn at random (seeded) from every task's, whatever their outcome:
/// distinct by their actions, at most `per_task` a task, as the correct set is. Fewer when there
/// are not enough. (Failed episodes run longer, so the placebo has more action tokens than the
/// correct set; both counts are reported.)
pub fn select_placebo(
    all: &[Collected],
    count: usize,
    per_task: usize,
    seed: u64,
) -> Vec<Selected> {
    let mut pool: Vec<(usize, usize)> = Vec::new();
    for (ti, c) in all.iter().enumerate() {
        pool.extend((0..c.chains.len()).map(|ci| (ti, ci)));
    }
    retroformer_core::rng::shuffle(&mut pool, seed);
    let mut taken = vec![BTreeSet::new(); all.len()];
    let mut out = Vec::new();
    for (ti, ci) in pool {
        if out.len() == count {
            break;
        }
        let c = &all[ti];
        if taken[ti].len() < per_task && taken[ti].insert(acts(&c.chains[ci])) {
            out.push(selected(c, ci, "placebo"));
        }
    }
    out
}

/// The training example of `s`: its episode's segments from the first request's prompt
/// (`prefix`, [`Examples::prefix`]), the loss on the actions. `None` when the saved episode
/// does not rebuild (an edited file).
pub fn to_sample(prefix: &str, c: &Collected, s: &Selected) -> Option<EpisodeSample> {
    let e = c.chains.get(s.chain as usize)?;
    Some(EpisodeSample {
        format_version: retroformer_core::records::FORMAT_VERSION,
        task_id: s.task_id.clone(),
        segments: episode_segments(prefix, e)?,
        reward: if e.success { 1.0 } else { 0.0 },
        weight: 1.0,
    })
}

#[cfg(test)]
mod tests;
