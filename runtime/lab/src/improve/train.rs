//! Training one adapter: `retroformer-train sft` in a child process, run in the output folder
//! with paths relative to it, so that the recorded command rebuilds the file from a clone of
//! the run folder.

use std::path::Path;

use retroformer::agent::files::read_json;
use retroformer_core::records::TrainingLog;
use retroformer_envs::Progress;

use super::{Ctx, ImproveSettings, TrainFigures};
use crate::child::{run_child, trainer};
use crate::LabError;

fn lines(path: &Path) -> Result<usize, LabError> {
    let text = std::fs::read_to_string(path).map_err(|e| LabError::file(path, e))?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).count())
}

/// The trainer's arguments for adapter `name` of round folder `round` (relative to the
/// output folder) on `data`.jsonl: SFT on the last assistant turn, held-out loss on
/// `heldout.jsonl` when it has samples, early stop, the state `--keep` names exported.
pub(super) fn args(
    s: &ImproveSettings,
    round: &str,
    name: &str,
    data: &str,
    samples: usize,
    heldout: usize,
) -> Vec<String> {
    let steps = ((s.epochs * samples as f64) / s.batch as f64)
        .ceil()
        .max(1.0) as u64;
    // The placebo trains with s1's seed: only its data differs.
    let seed = match name.strip_prefix('s').and_then(|i| i.parse::<usize>().ok()) {
        Some(i) => s.lora_seeds[i - 1],
        None => s.lora_seeds[0],
    };
    // A model named by a path is given whole: the trainer runs in the output folder.
    let base = std::fs::canonicalize(&s.model)
        .map_or_else(|_| s.model.clone(), |p| p.display().to_string());
    let mut a: Vec<String> = vec!["sft".into(), "--base".into(), base];
    let mut kv = |k: &str, v: String| {
        a.push(format!("--{k}"));
        a.push(v);
    };
    kv("data", format!("{round}/{data}.jsonl"));
    kv("steps", steps.to_string());
    kv("warmup", (steps / 10).to_string());
    kv("batch", s.batch.to_string());
    kv("rank", s.rank.to_string());
    kv("alpha", s.alpha.to_string());
    kv("lr", s.lr.to_string());
    kv("max-len", s.max_len.to_string());
    kv("seed", seed.to_string());
    kv("backend", s.backend.clone());
    kv("checkpoint-every", "10".into());
    if heldout > 0 {
        kv("eval-data", format!("{round}/heldout.jsonl"));
        kv("eval-every", s.eval_every.to_string());
        kv("patience", s.patience.to_string());
        // Named only when not the trainer's default, so that the commands recorded by runs
        // from before the setting still rebuild their adapters as written.
        if s.keep != super::KEEP[0] {
            kv("keep", s.keep.clone());
        }
    }
    kv("out", format!("{round}/{name}.gguf"));
    a
}

/// Trains adapter `name` on `data`.jsonl in round folder `dir` (skipped when the adapter and
/// its log exist; a stopped training resumes from its checkpoint).
pub(super) fn train(
    ctx: &Ctx<'_>,
    dir: &Path,
    name: &str,
    data: &str,
    progress: &mut dyn Progress,
) -> Result<TrainFigures, LabError> {
    let out = &ctx.plan.out;
    let round = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let adapter = dir.join(format!("{name}.gguf"));
    let log_path = dir.join(format!("{name}.log.json"));
    let samples = lines(&dir.join(format!("{data}.jsonl")))?;
    let heldout = lines(&dir.join("heldout.jsonl"))?;
    let a = args(&ctx.plan.settings, &round, name, data, samples, heldout);
    let command = format!("retroformer-train {}", a.join(" "));
    let mut wall_s = None;
    if !(adapter.exists() && log_path.exists()) {
        let mut cmd = trainer();
        // The trainer's own progress (a bar, or a line a minute in a log) shows the hours.
        cmd.args(&a).current_dir(out);
        progress.note(&format!(
            "train {round}/{name}: {samples} samples ({command})"
        ));
        wall_s = Some(run_child(&format!("train {round}/{name}"), &mut cmd)?.0);
    }
    let log: TrainingLog = read_json(&log_path)?
        .ok_or_else(|| LabError::file(&log_path, "the trainer wrote no log"))?;
    let sha256 = retroformer::fetch::sha256_file(&adapter, &retroformer::fetch::Silent)
        .map_err(|e| LabError::file(&adapter, e))?;
    let bytes = std::fs::metadata(&adapter)
        .map_err(|e| LabError::file(&adapter, e))?
        .len();
    let heldout_loss = log
        .steps
        .iter()
        .filter_map(|t| t.heldout_loss)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    Ok(TrainFigures {
        name: name.into(),
        adapter: Path::new(&round).join(format!("{name}.gguf")),
        sha256,
        bytes,
        samples,
        steps: log.steps.last().map_or(0, |t| t.step),
        best_step: log.best_step,
        loss: [
            log.steps.first().map_or(f64::NAN, |t| t.loss),
            log.steps.last().map_or(f64::NAN, |t| t.loss),
        ],
        heldout_loss,
        wall_s,
        resumed_from: log.resumed_from,
        steps_s: log.steps.iter().map(|t| t.seconds).sum(),
        command,
    })
}
