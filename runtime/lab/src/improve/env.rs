//! What expert iteration needs of an environment, so that one `improve` runs rounds and arms
//! for GSM8K and for the household alike: a round's experience (collection, verification and
//! the training sets) and the evaluation of an adapter on the dev or the test tasks.

use std::path::Path;

use retroformer_envs::Progress;

use super::{CollectFigures, Ctx, DataFigures, ImproveSettings, Score};
use crate::LabError;

/// The environments `improve` knows.
pub const ENVS: [&str; 2] = ["gsm8k", "household"];

/// Which tasks an evaluation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Split {
    /// The dev tasks (the canary; never trained on).
    Dev,
    /// The held-out test tasks (the arms; used for no choice).
    Test,
}

impl Split {
    /// The folder of the split's evaluations in the run folder.
    pub(super) fn dir(self) -> &'static str {
        match self {
            Split::Dev => "dev",
            Split::Test => "eval",
        }
    }
}

/// One evaluation of an adapter (or the base).
pub(super) struct Evaluation {
    /// Each task's outcome in order: greedy solved, or (sampled) some sample solved it.
    pub outcomes: Vec<bool>,
    /// The score (`run`: the evaluation's folder relative to the run folder).
    pub score: Score,
    /// This process's part (`None`: every task was saved).
    pub timed: Option<Timed>,
}

/// The part of a phase this process ran: a resumed phase's earlier processes are not in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Timed {
    /// Wall time, seconds.
    pub wall_s: f64,
    /// The tasks it ran (fewer than the phase's when it resumed a folder).
    pub tasks: usize,
}

/// An environment's part of `improve`. Every method resumes from the files it wrote.
pub(super) trait ImproveEnv {
    /// Round `r`'s experience in round folder `dir`: the dev and train tasks collected (in
    /// `dir/collect/`) by the policy, the adapter store's `policy` (`None`: the base), then
    /// verified into the training sets: `selected.jsonl` (this round's successes, with
    /// provenance), `train.jsonl` (every round's so far), `heldout.jsonl` (dev successes) and,
    /// in round 1 with a placebo, `placebo-selected.jsonl` and `placebo.jsonl`. The collection's
    /// figures come back even when the training sets fail (no success to train on).
    fn experience(
        &self,
        ctx: &Ctx<'_>,
        dir: &Path,
        r: u32,
        policy: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<(CollectFigures, Result<DataFigures, LabError>), LabError>;

    /// Evaluates `adapter` (a file; `None`: the base) on `split`, greedy or sampled, into
    /// `OUT/SPLIT/KEY-greedy|sampled/` (resumed; a finished one loads no model).
    fn evaluate(
        &self,
        ctx: &Ctx<'_>,
        split: Split,
        adapter: Option<&Path>,
        sampled: bool,
        progress: &mut dyn Progress,
    ) -> Result<Evaluation, LabError>;

    /// The test tasks' name in charts and lines (`GSM8K test problems`).
    fn test_name(&self) -> String;
}

/// The environment of `s`, its tasks loaded.
pub(super) fn load(s: &ImproveSettings) -> Result<Box<dyn ImproveEnv>, LabError> {
    match s.env.as_str() {
        "gsm8k" => Ok(Box::new(super::gsm8k::Gsm8k::load(s)?)),
        "household" => Ok(Box::new(super::household::Household::load(s)?)),
        other => Err(LabError::setting(
            "env",
            format!("{other}: known environments are {}", ENVS.join(", ")),
        )),
    }
}

/// The evaluation folder's key for an adapter of sha256 `sha` (`None`: `base`): the start of
/// the file's sha256, so that a retrained file is another evaluation.
pub(super) fn key(sha: Option<&str>) -> String {
    sha.map_or("base".into(), |s| s[..16.min(s.len())].to_string())
}

/// `adapter` named relative to the run folder (or the store's home), so that a run folder
/// copied to another machine resumes with the same settings; and its sha256.
pub(super) fn adapter_identity(
    ctx: &Ctx<'_>,
    adapter: &Path,
) -> Result<(String, String), LabError> {
    let home = retroformer::manifest::home_dir();
    let short = adapter
        .strip_prefix(&ctx.plan.out)
        .or_else(|_| adapter.strip_prefix(&home))
        .unwrap_or(adapter);
    let sha = retroformer::fetch::sha256_file(adapter, &retroformer::fetch::Silent)
        .map_err(|e| LabError::file(adapter, e))?;
    Ok((short.display().to_string(), sha))
}
