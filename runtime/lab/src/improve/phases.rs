//! The phases after collection: the training sets, installation and the canary.

use std::path::Path;
use std::time::Instant;

use retroformer::agent::files::write_jsonl;
use retroformer_core::records::RiseSample;
use retroformer_envs::math::expert::{self, Collected, Selected};
use retroformer_envs::Progress;

use super::{arms, Ctx, DataFigures, Splits};
use crate::LabError;

/// Held-out samples at most: each held-out measurement costs a forward pass over all of them.
const MAX_HELDOUT: usize = 64;

/// Collection in figures (`dev` problems first in `all`).
pub(super) fn collect_figures(
    all: &[Collected],
    dev: usize,
    wall_s: Option<f64>,
) -> super::CollectFigures {
    let attempts = all.iter().flat_map(|c| c.chains.iter().flatten());
    let (mut n, mut correct, mut parsable, mut tokens) = (0, 0, 0, 0u64);
    for a in attempts {
        n += 1;
        correct += usize::from(a.reward >= 1.0);
        parsable += usize::from(a.answer.is_some());
        tokens += u64::from(a.generated_tokens);
    }
    let train = all.get(dev..).unwrap_or_default();
    super::CollectFigures {
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
        wall_s,
    }
}

fn read_selected(path: &Path) -> Result<Vec<Selected>, LabError> {
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
    questions: &std::collections::BTreeMap<String, String>,
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

impl Ctx<'_> {
    /// Round `r`'s training sets from its collection (`dev` and `train` problems):
    /// `selected.jsonl` (this round's correct answers, with provenance), `train.jsonl` (every
    /// round's so far), `heldout.jsonl` (dev problems' correct answers) and, in round 1,
    /// `placebo-selected.jsonl` and `placebo.jsonl`. Rebuilt from the collection each time:
    /// the same collection gives the same files.
    pub(super) fn data(
        &self,
        dir: &Path,
        r: u32,
        dev: &[Collected],
        train: &[Collected],
    ) -> Result<DataFigures, LabError> {
        let s = &self.plan.settings;
        let mut questions = std::collections::BTreeMap::new();
        for c in dev.iter().chain(train) {
            questions.insert(c.problem_id.clone(), c.question.clone());
        }
        let mine = expert::select_correct(train, s.per_problem);
        write_jsonl(&dir.join("selected.jsonl"), &mine)?;
        let mut all = Vec::new();
        for k in 1..r {
            all.extend(read_selected(
                &self.plan.out.join(format!("round-{k}/selected.jsonl")),
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

    /// Installs `adapter` in the actor's store (validated, load-probed in a child process);
    /// its id. The same file again gives the same id.
    pub(super) fn install(&self, adapter: &Path) -> Result<String, LabError> {
        let m = self.store.install(
            adapter,
            &self.base_header,
            &self.plan.settings.model,
            // Our trainer records the base: an adapter that does not is not ours.
            retroformer_gguf::BasePolicy::Recorded,
            &|p| retroformer::backend::active().probe_adapter(&self.base_path, p),
        )?;
        Ok(m.id)
    }

    /// The store's canary: the active adapter (or the base) and candidate `id`, greedy on the
    /// dev problems (`OUT/dev/KEY/`, reused across rounds); the store promotes or keeps.
    pub(super) fn canary(
        &self,
        id: &str,
        splits: &Splits,
        progress: &mut dyn Progress,
    ) -> Result<super::CanaryFigures, LabError> {
        let start = Instant::now();
        let mut ran = false;
        let mut eval = |adapter: Option<&Path>| -> Result<f64, String> {
            let (results, wall) =
                arms::evaluate(self, &splits.dev, adapter, false, "dev", progress)
                    .map_err(|e| e.to_string())?;
            ran |= wall.is_some();
            Ok(arms::score(&results, false).accuracy)
        };
        let c = self
            .store
            .canary(id, self.plan.settings.margin, &mut eval)?;
        Ok(super::CanaryFigures {
            candidate: c.candidate,
            incumbent: c.incumbent,
            candidate_score: c.candidate_score,
            incumbent_score: c.incumbent_score,
            promoted: c.promoted,
            wall_s: ran.then(|| start.elapsed().as_secs_f64()),
        })
    }
}
