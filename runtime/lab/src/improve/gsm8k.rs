//! GSM8K in `improve`. Splits: dev = the first `dev_problems` train problems (never trained
//! on); collection = the next `train_problems`; evaluation = test problems
//! `eval_skip..eval_skip + eval_problems`. Collection samples chains of answers (a wrong one is
//! retried after being told so); the checker keeps correct, distinct answers, at most
//! `per_problem` a problem; the examples are the question and the correct answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use retroformer::agent::files::{read_json, write_jsonl};
use retroformer::agent::runner::task_path;
use retroformer_core::records::RiseSample;
use retroformer_envs::math::env::lane_tokens;
use retroformer_envs::math::expert::{self, Collected, ExpertConfig, Selected};
use retroformer_envs::math::rise::{self, MathAgent, Mode, RiseConfig, RiseResult};
use retroformer_envs::math::{self, Dataset, MathProblem};
use retroformer_envs::Progress;

use super::env::{adapter_identity, key, Evaluation, ImproveEnv, Split, Timed};
use super::{CollectFigures, Ctx, DataFigures, ImproveSettings, Score};
use crate::LabError;

/// Held-out samples at most: each held-out measurement costs a forward pass over all of them.
pub(super) const MAX_HELDOUT: usize = 64;

/// The problems of each split.
pub(super) struct Gsm8k {
    dev: Vec<MathProblem>,
    train: Vec<MathProblem>,
    test: Vec<MathProblem>,
}

impl Gsm8k {
    pub(super) fn load(s: &ImproveSettings) -> Result<Self, LabError> {
        let all = math::env::load(Dataset::Gsm8k, s.train_data.as_deref(), "train")?;
        let need = s.dev_problems + s.train_problems;
        if all.len() < need {
            return Err(LabError::setting(
                "train",
                format!(
                    "{} dev and {} train problems: the train split has {}",
                    s.dev_problems,
                    s.train_problems,
                    all.len()
                ),
            ));
        }
        let test = math::env::load(Dataset::Gsm8k, s.eval_data.as_deref(), "test")?;
        if test.len() < s.eval_skip + s.eval_problems {
            return Err(LabError::setting(
                "eval",
                format!(
                    "{} problems after {}: the test split has {}",
                    s.eval_problems,
                    s.eval_skip,
                    test.len()
                ),
            ));
        }
        Ok(Self {
            dev: all[..s.dev_problems].to_vec(),
            train: all[s.dev_problems..need].to_vec(),
            test: test[s.eval_skip..s.eval_skip + s.eval_problems].to_vec(),
        })
    }

    fn problems(&self, split: Split) -> &[MathProblem] {
        match split {
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }
}

impl ImproveEnv for Gsm8k {
    fn experience(
        &self,
        ctx: &Ctx<'_>,
        dir: &Path,
        r: u32,
        policy: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<(CollectFigures, Result<DataFigures, LabError>), LabError> {
        let (collected, timed) = self.collect(ctx, dir, policy, progress)?;
        let figures = collect_figures(&collected, self.dev.len(), timed);
        let (dev, train) = collected.split_at(self.dev.len());
        Ok((figures, data(ctx, dir, r, dev, train)))
    }

    fn evaluate(
        &self,
        ctx: &Ctx<'_>,
        split: Split,
        adapter: Option<&Path>,
        sampled: bool,
        progress: &mut dyn Progress,
    ) -> Result<Evaluation, LabError> {
        let problems = self.problems(split);
        let (results, timed, run) =
            evaluate(ctx, problems, adapter, sampled, split.dir(), progress)?;
        Ok(Evaluation {
            outcomes: results.iter().map(solved).collect(),
            score: Score {
                run,
                ..score(&results, sampled)
            },
            timed,
        })
    }

    fn test_name(&self) -> String {
        format!("GSM8K test problems ({})", self.test.len())
    }
}

impl Gsm8k {
    /// Dev and train problems collected with the policy (`round-R/collect/`, resumed); their
    /// results in order (dev first) and this process's part (`None` when all were saved).
    fn collect(
        &self,
        ctx: &Ctx<'_>,
        dir: &Path,
        policy: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<Collected>, Option<Timed>), LabError> {
        let s = &ctx.plan.settings;
        let (adapter, sha) = ctx.adapter(policy)?;
        let cfg = ExpertConfig {
            dataset: Dataset::Gsm8k,
            model: s.model.clone(),
            adapter_sha256: sha,
            chains: s.chains,
            retries: s.retries,
            temperature: s.temperature,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            seed: s.seed,
            format_version: expert::FORMAT_VERSION,
        };
        let problems: Vec<MathProblem> = self.dev.iter().chain(&self.train).cloned().collect();
        let out = dir.join("collect");
        let found = expert::saved(&problems, &cfg, &out)?;
        let saved = found.iter().flatten().count();
        progress.note(&format!(
            "collect: {} problems ({} dev), {} chains, {} retries, into {} ({saved} saved)",
            problems.len(),
            self.dev.len(),
            s.chains,
            s.retries,
            out.display()
        ));
        progress.total(problems.len() as u64);
        if saved == problems.len() {
            // A finished collection needs no model.
            let all: Vec<Collected> = found.into_iter().flatten().collect();
            all.iter().for_each(|c| progress.done(&chains_line(c)));
            return Ok((all, None));
        }
        let start = Instant::now();
        let wanted = ctx
            .plan
            .parallel
            .min((problems.len() * s.chains as usize) as u32);
        let (model, mut session) = ctx.session(
            &s.model,
            adapter.as_deref(),
            wanted,
            lane_tokens(2, s.max_tokens),
            progress,
        )?;
        let mut agent = MathAgent {
            model: model.as_ref(),
            session: session.as_mut(),
        };
        let all = expert::collect(&problems, &cfg, &out, &mut agent, |c| {
            progress.done(&chains_line(c))
        })?;
        let timed = Timed {
            wall_s: start.elapsed().as_secs_f64(),
            tasks: problems.len() - saved,
        };
        Ok((all, Some(timed)))
    }
}

/// A problem's rewards, chain by chain (`0>1 1 -1>0`).
fn chains_line(c: &Collected) -> String {
    let r: Vec<String> = c
        .chains
        .iter()
        .map(|ch| {
            ch.iter()
                .map(|a| a.reward.to_string())
                .collect::<Vec<_>>()
                .join(">")
        })
        .collect();
    format!("{}: {}", c.problem_id, r.join(" "))
}

/// Collection in figures (`dev` problems first in `all`).
pub(super) fn collect_figures(
    all: &[Collected],
    dev: usize,
    timed: Option<Timed>,
) -> CollectFigures {
    let attempts = all.iter().flat_map(|c| c.chains.iter().flatten());
    let (mut n, mut correct, mut parsable, mut tokens) = (0, 0, 0, 0u64);
    for a in attempts {
        n += 1;
        correct += usize::from(a.reward >= 1.0);
        parsable += usize::from(a.answer.is_some());
        tokens += u64::from(a.generated_tokens);
    }
    let train = all.get(dev..).unwrap_or_default();
    CollectFigures {
        problems: all.len(),
        train_solved: train.iter().filter(|c| c.solved()).count(),
        train_first_correct: train
            .iter()
            .filter(|c| {
                c.chains
                    .first()
                    .and_then(|ch| ch.first())
                    .is_some_and(|a| a.reward >= 1.0)
            })
            .count(),
        attempts: n,
        correct_attempts: correct,
        parsable_attempts: parsable,
        generated_tokens: tokens,
        wall_s: timed.map(|t| t.wall_s),
        wall_tasks: timed.map(|t| t.tasks),
        episodes: None,
        time: None,
    }
}

/// The lines of a JSONL file as `T`s, naming the file and line of a bad one.
pub(super) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, LabError> {
    let text = std::fs::read_to_string(path).map_err(|e| LabError::file(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| LabError::file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

fn samples(
    selected: &[Selected],
    questions: &BTreeMap<String, String>,
) -> Result<Vec<RiseSample>, LabError> {
    selected
        .iter()
        .map(|s| {
            let q = questions.get(&s.problem_id).ok_or_else(|| {
                LabError::Config(format!(
                    "{}: a selected answer of an unknown problem",
                    s.problem_id
                ))
            })?;
            Ok(expert::to_sample(q, s))
        })
        .collect()
}

/// Round `r`'s training sets from its collection (`dev` and `train` problems). Rebuilt from
/// the collection each time: the same collection gives the same files.
fn data(
    ctx: &Ctx<'_>,
    dir: &Path,
    r: u32,
    dev: &[Collected],
    train: &[Collected],
) -> Result<DataFigures, LabError> {
    let s = &ctx.plan.settings;
    let mut questions = BTreeMap::new();
    for c in dev.iter().chain(train) {
        questions.insert(c.problem_id.clone(), c.question.clone());
    }
    let mine = expert::select_correct(train, s.per_problem);
    write_jsonl(&dir.join("selected.jsonl"), &mine)?;
    let mut all = Vec::new();
    for k in 1..r {
        all.extend(read_lines::<Selected>(
            &ctx.plan.out.join(format!("round-{k}/selected.jsonl")),
        )?);
    }
    all.extend(mine.iter().cloned());
    let train_samples = samples(&all, &questions)?;
    if train_samples.is_empty() {
        return Err(LabError::Config(
            "no correct answer to train on: collect more problems (--train) or chains (--chains)"
                .into(),
        ));
    }
    write_jsonl(&dir.join("train.jsonl"), &train_samples)?;
    let mut held = expert::select_correct(dev, s.per_problem);
    held.truncate(MAX_HELDOUT);
    write_jsonl(&dir.join("heldout.jsonl"), &samples(&held, &questions)?)?;
    let mut placebo = Vec::new();
    if r == 1 && s.placebo {
        placebo = expert::select_placebo(train, all.len(), s.per_problem, u64::from(s.seed));
        write_jsonl(&dir.join("placebo-selected.jsonl"), &placebo)?;
        write_jsonl(&dir.join("placebo.jsonl"), &samples(&placebo, &questions)?)?;
    }
    let tokens = |v: &[Selected]| v.iter().map(|x| u64::from(x.generated_tokens)).sum();
    Ok(DataFigures {
        samples: all.len(),
        from_retries: all.iter().filter(|x| x.attempt > 0).count(),
        tokens: tokens(&all),
        heldout: held.len(),
        placebo: placebo.len(),
        placebo_correct: placebo.iter().filter(|x| x.reward >= 1.0).count(),
        placebo_tokens: tokens(&placebo),
    })
}

/// The RISE settings of an evaluation: one greedy answer, or `eval_samples` sampled ones.
fn config(ctx: &Ctx<'_>, adapter: Option<&Path>, sampled: bool) -> Result<RiseConfig, LabError> {
    let s = &ctx.plan.settings;
    let mode = if sampled {
        Mode::Parallel
    } else {
        Mode::Sequential
    };
    let mut cfg = RiseConfig::new(Dataset::Gsm8k, mode, &s.model);
    cfg.turns = 1;
    cfg.window = 1;
    cfg.samples = if sampled { s.eval_samples } else { 1 };
    cfg.sequential_temperature = 0.0;
    cfg.parallel_temperature = s.eval_temperature;
    cfg.top_p = s.top_p;
    cfg.max_tokens = s.max_tokens;
    cfg.seed = s.seed;
    cfg.batch = ctx.plan.parallel;
    if let Some(p) = adapter {
        let (name, sha) = adapter_identity(ctx, p)?;
        cfg.adapter = Some(name);
        cfg.adapter_sha256 = Some(sha);
    }
    Ok(cfg)
}

/// Evaluates the actor with `adapter` on `problems` into `OUT/SPLIT/KEY-greedy|sampled/`
/// (resumed; a finished one loads no model): the results in order, this process's part and
/// the folder relative to `OUT`.
pub(super) fn evaluate(
    ctx: &Ctx<'_>,
    problems: &[MathProblem],
    adapter: Option<&Path>,
    sampled: bool,
    split: &str,
    progress: &mut dyn Progress,
) -> Result<(Vec<RiseResult>, Option<Timed>, PathBuf), LabError> {
    let cfg = config(ctx, adapter, sampled)?;
    let kind = if sampled { "sampled" } else { "greedy" };
    let run = Path::new(split).join(format!("{}-{kind}", key(cfg.adapter_sha256.as_deref())));
    let out = ctx.plan.out.join(&run);
    retroformer::agent::files::claim_run_folder(&out, &cfg)?.map_err(LabError::Config)?;
    let mut timed = None;
    let pending = problems
        .iter()
        .filter(|p| !task_path(&out, 0, &p.id).exists())
        .count();
    if pending > 0 {
        let per = if sampled { cfg.samples } else { 1 };
        let wanted = ctx.plan.parallel.min(
            u32::try_from(problems.len())
                .unwrap_or(u32::MAX)
                .saturating_mul(per),
        );
        let (model, mut session) = ctx.session(
            &ctx.plan.settings.model,
            adapter,
            wanted,
            lane_tokens(1, cfg.max_tokens),
            progress,
        )?;
        let mut agent = MathAgent {
            model: model.as_ref(),
            session: session.as_mut(),
        };
        progress.note(&format!(
            "evaluate {kind} {} on {} {split} problems into {}",
            adapter.map_or("base".into(), |p| p.display().to_string()),
            problems.len(),
            out.display()
        ));
        progress.total(problems.len() as u64);
        let start = Instant::now();
        rise::run(problems, &cfg, &out, &mut agent, |r| {
            let all: Vec<&rise::Attempt> = r.sequential.iter().chain(&r.parallel).collect();
            let right = all.iter().filter(|a| a.reward >= 1.0).count();
            progress.done(&format!("{}: {right}/{} right", r.problem_id, all.len()));
        })?;
        timed = Some(Timed {
            wall_s: start.elapsed().as_secs_f64(),
            tasks: pending,
        });
    }
    let mut results = Vec::with_capacity(problems.len());
    for p in problems {
        let path = task_path(&out, 0, &p.id);
        let r: RiseResult =
            read_json(&path)?.ok_or_else(|| LabError::file(&path, "missing after the run"))?;
        results.push(r);
    }
    Ok((results, timed, run))
}

fn answers(r: &RiseResult) -> impl Iterator<Item = &rise::Attempt> {
    r.sequential.iter().chain(&r.parallel)
}

/// The score of one evaluation's results.
pub(crate) fn score(results: &[RiseResult], sampled: bool) -> Score {
    let all: Vec<&rise::Attempt> = results.iter().flat_map(answers).collect();
    let n = all.len().max(1) as f64;
    let right = all.iter().filter(|a| a.reward >= 1.0).count();
    let parsable = all.iter().filter(|a| a.answer.is_some()).count();
    let tokens: u64 = all.iter().map(|a| u64::from(a.generated_tokens)).sum();
    Score {
        problems: results.len(),
        answers: all.len(),
        accuracy: right as f64 / n,
        parsable: parsable as f64 / n,
        accuracy_parsable: right as f64 / parsable.max(1) as f64,
        pass_at_k: sampled.then(|| {
            results.iter().filter(|r| solved(r)).count() as f64 / results.len().max(1) as f64
        }),
        mean_tokens: tokens as f64 / n,
        wall_s: None,
        wall_tasks: None,
        run: PathBuf::new(),
        machines: Vec::new(),
        numerics: Vec::new(),
        episodes: None,
        time: None,
    }
}

/// Some answer of `r` is correct.
pub(super) fn solved(r: &RiseResult) -> bool {
    answers(r).any(|a| a.reward >= 1.0)
}
