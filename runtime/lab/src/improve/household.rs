//! The household in `improve`: a multi-step agent learning from its own successful episodes.
//! Splits: dev = the first `dev_problems` tasks of the generator's train split, collection =
//! the next `train_problems`, evaluation = tasks `eval_skip..` of a held-out set of unseen
//! worlds, the task types in turn ([`eval_tasks`]). Every episode is a first attempt without
//! memory, as the greedy evaluation is. A success, distinct by its actions and at most
//! `per_problem` a task, becomes one example: the whole episode, the loss on its actions.
//!
//! When the actor solves too few tasks to learn from, a larger model (`collect_model`) collects
//! round 1 as a teacher (distillation, as FireAct and AgentTuning train small agents); later
//! rounds collect with the actor and the adapter the canary promoted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use retroformer::agent::files::{read_json, write_jsonl};
use retroformer::agent::runner::task_path;
use retroformer_core::records::EpisodeSample;
use retroformer_envs::household::env::LANE_TOKENS;
use retroformer_envs::household::episode::HouseholdConfig;
use retroformer_envs::household::expert::{
    self, Collected, Examples, HouseholdExpertConfig, Selected,
};
use retroformer_envs::household::{eval_tasks, train_split, TaskSpec, MAX_EVAL_TASKS};
use retroformer_envs::Progress;

use super::env::{adapter_identity, key, Evaluation, ImproveEnv, Split, Timed};
use super::gsm8k::read_lines;
use super::{CollectFigures, Ctx, DataFigures, EpisodeFigures, ImproveSettings, Score, TypeTally};
use crate::LabError;

/// Held-out episodes at most: each is ~2k tokens, and every held-out measurement runs a
/// forward pass over all of them.
const MAX_HELDOUT: usize = 16;

/// The household's tasks of each split and the few-shot examples every prompt starts with.
pub(super) struct Household {
    dev: Vec<TaskSpec>,
    train: Vec<TaskSpec>,
    test: Vec<TaskSpec>,
    examples: Examples,
}

/// The evaluation tasks of `s`: `eval_skip..eval_skip + eval_problems` of the held-out set
/// (the caller has checked the range against [`MAX_EVAL_TASKS`]).
pub(super) fn test_tasks(s: &ImproveSettings) -> Vec<TaskSpec> {
    eval_tasks(s.eval_skip + s.eval_problems).split_off(s.eval_skip)
}

impl Household {
    pub(super) fn load(s: &ImproveSettings) -> Result<Self, LabError> {
        let end = s.eval_skip + s.eval_problems;
        if end > MAX_EVAL_TASKS {
            return Err(LabError::setting(
                "eval",
                format!(
                    "{} tasks after {}: the household has {MAX_EVAL_TASKS} held-out worlds",
                    s.eval_problems, s.eval_skip
                ),
            ));
        }
        let mut all = train_split(s.dev_problems + s.train_problems);
        let train = all.split_off(s.dev_problems);
        Ok(Self {
            dev: all,
            train,
            test: test_tasks(s),
            examples: Examples::load(),
        })
    }

    fn tasks(&self, split: Split) -> &[TaskSpec] {
        match split {
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// A collection's settings: `model` with the adapter of sha256 `adapter_sha256`.
    fn config(
        &self,
        s: &ImproveSettings,
        model: &str,
        adapter_sha256: Option<String>,
        chains: u32,
        temperature: f32,
    ) -> HouseholdExpertConfig {
        HouseholdExpertConfig {
            model: model.into(),
            adapter_sha256,
            chains,
            temperature,
            top_p: s.top_p,
            seed: s.seed,
            episode: HouseholdConfig {
                max_tokens_per_action: s.max_tokens,
                ..HouseholdConfig::default()
            },
            examples_sha256: self.examples.sha256(),
            format_version: expert::FORMAT_VERSION,
        }
    }

    /// `specs` collected with `cfg` into `out` (resumed; a finished one loads no model): every
    /// task's episodes in order and this process's part (`None` when all were saved).
    fn run(
        &self,
        ctx: &Ctx<'_>,
        specs: &[TaskSpec],
        cfg: &HouseholdExpertConfig,
        adapter: Option<&Path>,
        out: &Path,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<Collected>, Option<Timed>), LabError> {
        let found = expert::saved(specs, cfg, out)?;
        let saved = found.iter().flatten().count();
        progress.note(&format!(
            "{}: {} tasks, {} episodes each (T {}), into {} ({saved} saved)",
            cfg.model,
            specs.len(),
            cfg.chains,
            cfg.temperature,
            out.display()
        ));
        progress.total(specs.len() as u64);
        if saved == specs.len() {
            let all: Vec<Collected> = found.into_iter().flatten().collect();
            all.iter().for_each(|c| progress.done(&episodes_line(c)));
            return Ok((all, None));
        }
        let start = Instant::now();
        let wanted = ctx
            .plan
            .parallel
            .min((specs.len() * cfg.chains as usize) as u32);
        let (_model, mut session) =
            ctx.session(&cfg.model, adapter, wanted, LANE_TOKENS, progress)?;
        let all = expert::collect(specs, cfg, &self.examples, out, session.as_mut(), |c| {
            progress.done(&episodes_line(c))
        })?;
        let timed = Timed {
            wall_s: start.elapsed().as_secs_f64(),
            tasks: specs.len() - saved,
        };
        Ok((all, Some(timed)))
    }

    /// The prompt prefix of every task the run collects, by task id.
    fn prefixes(&self) -> BTreeMap<String, String> {
        self.dev
            .iter()
            .chain(&self.train)
            .map(|s| (s.id(), self.examples.prefix(s)))
            .collect()
    }
}

impl ImproveEnv for Household {
    fn experience(
        &self,
        ctx: &Ctx<'_>,
        dir: &Path,
        r: u32,
        policy: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<(CollectFigures, Result<DataFigures, LabError>), LabError> {
        let s = &ctx.plan.settings;
        let teacher = s.collect_model.as_deref().filter(|_| r == 1);
        let (adapter, sha) = match teacher {
            Some(_) => (None, None),
            None => ctx.adapter(policy)?,
        };
        let model = teacher.unwrap_or(&s.model);
        let cfg = self.config(s, model, sha, s.chains, s.temperature);
        let specs: Vec<TaskSpec> = self.dev.iter().chain(&self.train).copied().collect();
        let (collected, timed) = self.run(
            ctx,
            &specs,
            &cfg,
            adapter.as_deref(),
            &dir.join("collect"),
            progress,
        )?;
        let mut figures = collect_figures(&collected, self.dev.len(), timed);
        figures.episodes = Some(episode_figures(&specs, &collected));
        let data = data(
            s,
            &ctx.plan.out,
            dir,
            r,
            &self.prefixes(),
            collected.split_at(self.dev.len()),
        );
        Ok((figures, data))
    }

    fn evaluate(
        &self,
        ctx: &Ctx<'_>,
        split: Split,
        adapter: Option<&Path>,
        sampled: bool,
        progress: &mut dyn Progress,
    ) -> Result<Evaluation, LabError> {
        let s = &ctx.plan.settings;
        let identity = adapter.map(|a| adapter_identity(ctx, a)).transpose()?;
        let sha = identity.map(|(_, sha)| sha);
        let folder = format!(
            "{}-{}",
            key(sha.as_deref()),
            if sampled { "sampled" } else { "greedy" }
        );
        let cfg = if sampled {
            self.config(s, &s.model, sha, s.eval_samples, s.eval_temperature)
        } else {
            self.config(s, &s.model, sha, 1, 0.0)
        };
        let run = Path::new(split.dir()).join(folder);
        let out = ctx.plan.out.join(&run);
        let specs = self.tasks(split);
        let (results, timed) = self.run(ctx, specs, &cfg, adapter, &out, progress)?;
        Ok(Evaluation {
            outcomes: results.iter().map(Collected::solved).collect(),
            score: Score {
                run,
                episodes: Some(episode_figures(specs, &results)),
                ..score(&results, sampled)
            },
            timed,
        })
    }

    fn test_name(&self) -> String {
        format!("household tasks in unseen worlds ({})", self.test.len())
    }
}

/// A task's episodes: `1` a success, `0` a failure and why it stopped (`0:steps 1 0:cycle`).
fn episodes_line(c: &Collected) -> String {
    let e: Vec<String> = c
        .chains
        .iter()
        .map(|e| match (&e.stopped, e.success) {
            (_, true) => "1".to_string(),
            (Some(why), false) => format!("0:{why}"),
            (None, false) => "0".to_string(),
        })
        .collect();
    format!("{}: {}", c.task_id, e.join(" "))
}

fn episode_tokens(c: &Collected, chain: usize) -> u64 {
    c.chains.get(chain).map_or(0, |e| {
        e.steps.iter().map(|s| u64::from(s.generated_tokens)).sum()
    })
}

/// Tokens generated in all of a task's episodes.
fn task_tokens(c: &Collected) -> u64 {
    (0..c.chains.len()).map(|i| episode_tokens(c, i)).sum()
}

/// Collection in figures (`dev` tasks first in `all`). Every action is one of the admissible
/// ones (the grammar constrains it), so every episode counts as parsable.
fn collect_figures(all: &[Collected], dev: usize, timed: Option<Timed>) -> CollectFigures {
    let train = all.get(dev..).unwrap_or_default();
    let episodes = all.iter().map(|c| c.chains.len()).sum();
    CollectFigures {
        problems: all.len(),
        train_solved: train.iter().filter(|c| c.solved()).count(),
        train_first_correct: train
            .iter()
            .filter(|c| c.chains.first().is_some_and(|e| e.success))
            .count(),
        attempts: episodes,
        correct_attempts: all
            .iter()
            .flat_map(|c| &c.chains)
            .filter(|e| e.success)
            .count(),
        parsable_attempts: episodes,
        generated_tokens: all.iter().map(task_tokens).sum(),
        wall_s: timed.map(|t| t.wall_s),
        wall_tasks: timed.map(|t| t.tasks),
        episodes: None,
        time: None,
    }
}

/// The episodes of `results` (each task's, in the order of `specs`) by task type and ending.
fn episode_figures(specs: &[TaskSpec], results: &[Collected]) -> EpisodeFigures {
    let mut f = EpisodeFigures::default();
    let (mut actions, mut episodes, mut success_actions, mut successes) = (0, 0, 0, 0);
    for (spec, c) in specs.iter().zip(results) {
        let name = spec.task_type.name();
        let at = match f.by_type.iter().position(|t| t.task_type == name) {
            Some(at) => at,
            None => {
                f.by_type.push(TypeTally {
                    task_type: name.into(),
                    episodes: 0,
                    successes: 0,
                });
                f.by_type.len() - 1
            }
        };
        for e in &c.chains {
            f.by_type[at].episodes += 1;
            episodes += 1;
            actions += e.steps.len();
            if e.success {
                f.by_type[at].successes += 1;
                successes += 1;
                success_actions += e.steps.len();
            } else {
                let why = e.stopped.clone().unwrap_or_else(|| "unrecorded".into());
                *f.failures.entry(why).or_default() += 1;
            }
        }
    }
    f.mean_actions = actions as f64 / episodes.max(1) as f64;
    f.mean_actions_success = (successes > 0).then(|| success_actions as f64 / successes as f64);
    f
}

/// An evaluation's score: success per episode, pass@k per task (sampled), tokens an episode.
fn score(results: &[Collected], sampled: bool) -> Score {
    let n = results.iter().map(|c| c.chains.len()).sum::<usize>();
    let wins = results
        .iter()
        .flat_map(|c| &c.chains)
        .filter(|e| e.success)
        .count();
    let tokens: u64 = results.iter().map(task_tokens).sum();
    let accuracy = wins as f64 / n.max(1) as f64;
    Score {
        problems: results.len(),
        answers: n,
        accuracy,
        parsable: 1.0,
        accuracy_parsable: accuracy,
        pass_at_k: sampled.then(|| {
            results.iter().filter(|c| c.solved()).count() as f64 / results.len().max(1) as f64
        }),
        mean_tokens: tokens as f64 / n.max(1) as f64,
        wall_s: None,
        wall_tasks: None,
        run: PathBuf::new(),
        machines: Vec::new(),
        numerics: Vec::new(),
        episodes: None,
        time: None,
    }
}

/// The examples of `selected` (episodes of `collected`, by task id).
fn samples(
    selected: &[Selected],
    collected: &BTreeMap<&str, &Collected>,
    prefixes: &BTreeMap<String, String>,
) -> Result<Vec<EpisodeSample>, LabError> {
    selected
        .iter()
        .map(|s| {
            let unknown = || {
                LabError::Config(format!(
                    "{} chain {}: a selected episode this run did not collect",
                    s.task_id, s.chain
                ))
            };
            let c = collected.get(s.task_id.as_str()).ok_or_else(unknown)?;
            let prefix = prefixes.get(&s.task_id).ok_or_else(unknown)?;
            expert::to_sample(prefix, c, s).ok_or_else(|| {
                LabError::Config(format!(
                    "{} chain {}: the saved episode does not rebuild its prompts",
                    s.task_id, s.chain
                ))
            })
        })
        .collect()
}

/// Round `k`'s collected episodes of `selected` (earlier rounds' successes train round `r`).
fn earlier(run: &Path, k: u32, selected: &[Selected]) -> Result<Vec<Collected>, LabError> {
    let dir = run.join(format!("round-{k}/collect"));
    selected
        .iter()
        .map(|s| {
            let path = task_path(&dir, 0, &s.task_id);
            read_json(&path)?.ok_or_else(|| LabError::file(&path, "missing"))
        })
        .collect()
}

// long: the four training sets in turn, each a few lines; one place for their shared inputs.
/// Round `r`'s training sets in `run`'s round folder `dir` from its collection (`dev` and
/// `train` tasks), as GSM8K's are; rebuilt from the collection each time.
fn data(
    s: &ImproveSettings,
    run: &Path,
    dir: &Path,
    r: u32,
    prefixes: &BTreeMap<String, String>,
    (dev, train): (&[Collected], &[Collected]),
) -> Result<DataFigures, LabError> {
    let mine = expert::select_correct(train, s.per_problem);
    write_jsonl(&dir.join("selected.jsonl"), &mine)?;
    let mut examples = Vec::new();
    let mut tokens = 0;
    for k in 1..=r {
        let (sel, eps) = if k == r {
            (mine.clone(), train.to_vec())
        } else {
            let sel: Vec<Selected> = read_lines(&run.join(format!("round-{k}/selected.jsonl")))?;
            let eps = earlier(run, k, &sel)?;
            (sel, eps)
        };
        let by_id: BTreeMap<&str, &Collected> =
            eps.iter().map(|c| (c.task_id.as_str(), c)).collect();
        tokens += sel
            .iter()
            .map(|x| {
                by_id
                    .get(x.task_id.as_str())
                    .map_or(0, |c| episode_tokens(c, x.chain as usize))
            })
            .sum::<u64>();
        examples.extend(samples(&sel, &by_id, prefixes)?);
    }
    if examples.is_empty() {
        let n: usize = train.iter().map(|c| c.chains.len()).sum();
        return Err(LabError::Config(format!(
            "no successful episode to train on: {n} episodes on {} train tasks, none solved; \
             collect round 1 with a larger model (--collect-model), or more tasks (--train) \
             or chains (--chains)",
            train.len()
        )));
    }
    write_jsonl(&dir.join("train.jsonl"), &examples)?;
    let dev_ids: BTreeMap<&str, &Collected> = dev.iter().map(|c| (c.task_id.as_str(), c)).collect();
    let mut held = expert::select_correct(dev, s.per_problem);
    held.truncate(MAX_HELDOUT);
    write_jsonl(
        &dir.join("heldout.jsonl"),
        &samples(&held, &dev_ids, prefixes)?,
    )?;
    let mut placebo = Vec::new();
    let train_ids: BTreeMap<&str, &Collected> =
        train.iter().map(|c| (c.task_id.as_str(), c)).collect();
    if r == 1 && s.placebo {
        placebo = expert::select_placebo(train, examples.len(), s.per_problem, u64::from(s.seed));
        write_jsonl(&dir.join("placebo-selected.jsonl"), &placebo)?;
        write_jsonl(
            &dir.join("placebo.jsonl"),
            &samples(&placebo, &train_ids, prefixes)?,
        )?;
    }
    Ok(DataFigures {
        samples: examples.len(),
        from_retries: 0,
        tokens,
        heldout: held.len(),
        placebo: placebo.len(),
        placebo_correct: placebo.iter().filter(|x| x.success).count(),
        placebo_tokens: placebo
            .iter()
            .map(|x| {
                train_ids
                    .get(x.task_id.as_str())
                    .map_or(0, |c| episode_tokens(c, x.chain as usize))
            })
            .sum(),
    })
}

#[cfg(test)]
mod tests;
