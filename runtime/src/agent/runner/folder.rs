//! A run folder's layout: the file of each task and trial (names one-to-one with task ids,
//! older names still read), loading a result, and a run's label for plots and comparisons.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::super::files::{file_err, read_json};
use super::{default_agent, RunError, TaskResult, TrialSummary, FORMAT_VERSION};

/// What names a run in plots and comparisons: the fields every `run.json` has (HotPotQA,
/// programming, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLabel {
    /// The agent.
    #[serde(default = "default_agent")]
    pub agent: String,
    /// The strategy.
    pub strategy: String,
    /// The actor model.
    pub actor: String,
    /// Trials planned.
    pub trials: u32,
    /// The reflector model (`actor`: the actor itself), where the run records one.
    #[serde(default)]
    pub reflector: Option<String>,
    /// The reflector's adapter, if any.
    #[serde(default)]
    pub reflector_adapter: Option<String>,
}

impl RunLabel {
    /// The legend of this run in a chart: agent, strategy and actor, and the reflector when it
    /// is another model or carries an adapter (runs that compare reflectors differ only there).
    /// An adapter in a store (`versions/ID/adapter.gguf`) is named by its id, a file by its name.
    /// A model given as a path is named by its file name.
    pub fn legend(&self) -> String {
        let short = |m: &str| {
            if m.contains(std::path::MAIN_SEPARATOR) || m.contains('/') {
                Path::new(m)
                    .file_name()
                    .map_or(m.to_string(), |n| n.to_string_lossy().into_owned())
            } else {
                m.to_string()
            }
        };
        let mut who = short(&self.actor);
        let other = self.reflector.as_deref().filter(|r| *r != "actor");
        if other.is_some() || self.reflector_adapter.is_some() {
            who.push_str("; reflector ");
            who.push_str(&short(other.unwrap_or("actor")));
            if let Some(a) = &self.reflector_adapter {
                let p = Path::new(a);
                let name = if p.file_name().is_some_and(|n| n == "adapter.gguf") {
                    p.parent().and_then(|d| d.file_name())
                } else {
                    p.file_name()
                };
                who.push_str(" + adapter ");
                who.push_str(&name.map_or(a.clone(), |n| n.to_string_lossy().into_owned()));
            }
        }
        format!("{} + {} ({who})", self.agent, self.strategy)
    }
}

/// Read a run folder's label (from `run.json`) and the summaries of the trials finished so far
/// (`trial-NN.json`, in order, stopping at the first missing one). For plots and comparisons.
pub fn read_run(out: &Path) -> Result<(RunLabel, Vec<TrialSummary>), RunError> {
    let run_json = out.join("run.json");
    let cfg: RunLabel = read_json(&run_json)?
        .ok_or_else(|| file_err(&run_json, "not found: is this a run folder?"))?;
    let mut summaries = Vec::new();
    for trial in 0..cfg.trials {
        match read_json::<TrialSummary>(&out.join(format!("trial-{trial:02}.json")))? {
            Some(t) => summaries.push(t),
            None => break,
        }
    }
    Ok((cfg, summaries))
}

/// A task id as a file name, one-to-one: a plain id (lower-case letters, digits, `-`, `_`, at
/// most 128 bytes, not starting with `x`) is kept; any other is `x` and its hex (ids up to 100
/// bytes) or `x-` and its sha256 (longer ones). No two ids get the same name, on
/// case-insensitive file systems too.
pub fn file_stem(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('x')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if plain {
        id.to_string()
    } else if id.len() <= 100 {
        format!("x{}", hex::encode(id.as_bytes()))
    } else {
        use sha2::Digest;
        format!("x-{}", hex::encode(sha2::Sha256::digest(id.as_bytes())))
    }
}

/// The file name earlier versions gave an id (capitals kept): read on resume; the id inside the
/// file is checked, so a collision of two such names is an error, not a wrong answer.
fn legacy_stem(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        id.to_string()
    } else {
        format!("x{}", hex::encode(id.as_bytes()))
    }
}

/// The folder of trial `i`.
pub fn trial_dir(out: &Path, trial: u32) -> PathBuf {
    out.join(format!("trial-{trial:02}"))
}

/// The result file of `task_id` in trial `i`.
pub fn task_path(out: &Path, trial: u32, task_id: &str) -> PathBuf {
    trial_dir(out, trial).join(format!("{}.json", file_stem(task_id)))
}

/// Loads a task result, checking its format version.
pub fn load_task(out: &Path, trial: u32, task_id: &str) -> Result<Option<TaskResult>, RunError> {
    let mut path = task_path(out, trial, task_id);
    // Runs written before ids with capitals were encoded keep their files under the old name.
    let legacy = trial_dir(out, trial).join(format!("{}.json", legacy_stem(task_id)));
    if !path.exists() && legacy.exists() {
        path = legacy;
    }
    let r: Option<TaskResult> = read_json(&path)?;
    if let Some(r) = &r {
        if r.format_version != FORMAT_VERSION {
            return Err(RunError::from(file_err(
                &path,
                format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    r.format_version
                ),
            )));
        }
        if r.task_id != task_id || r.trial != trial {
            return Err(RunError::from(file_err(
                &path,
                format!(
                    "holds task {:?} of trial index {}, not task {task_id:?} of trial index {trial}",
                    r.task_id, r.trial
                ),
            )));
        }
    }
    Ok(r)
}
