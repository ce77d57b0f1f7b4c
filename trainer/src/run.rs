//! What a training run does around the loop: load the base for its backend, and write its
//! report (the step log, the reward head, the loss chart).

use std::path::Path;

use crate::backend::Backend;
use crate::error::TrainerError;
use crate::{lora, model, objective, train};
use retroformer_core::records::{TrainingLog, FORMAT_VERSION};

/// The base model at `path` for `backend`: plain buffers for the native engine, else burn
/// tensors on `device` (from [`backend_device`]).
pub fn load_base(
    path: &Path,
    backend: Backend,
    device: &burn::tensor::Device,
) -> Result<model::Base, TrainerError> {
    match backend {
        Backend::Native => model::Base::load_native(path, device),
        _ => model::Base::load(path, device),
    }
}

/// Writes a reward model's scalar head next to its adapter `out`, as `OUT.head.json` (the
/// adapter holds the LoRA only). Returns the file.
pub fn write_head(
    out: &Path,
    h: &objective::ScalarHead,
) -> Result<std::path::PathBuf, TrainerError> {
    let path = out.with_extension("head.json");
    let (w, _) = lora::to_vec2(h.w.val());
    let b = objective::to_vec1(h.b.val());
    let j = serde_json::json!({"format_version": FORMAT_VERSION, "w": w, "b": b[0]});
    retroformer_core::fsutil::write_atomic(&path, j.to_string().as_bytes()).map_err(|e| {
        TrainerError::Io {
            path: path.display().to_string(),
            source: e,
        }
    })?;
    Ok(path)
}

/// Writes `OUT.log.json` (every step, and how long the adapter's export took) and the loss
/// curve `OUT.loss.svg`/`.png` next to the adapter; for a reward model also its scalar head,
/// `OUT.head.json`. Returns the files.
pub fn write_run_report(
    out: &Path,
    objective: &objective::Objective,
    trained: &train::Trained,
    state: &objective::Trainable,
    export_ms: f64,
) -> Result<Vec<std::path::PathBuf>, TrainerError> {
    let io = |p: &Path, e: String| TrainerError::Io {
        path: p.display().to_string(),
        source: std::io::Error::other(e),
    };
    let mut written = Vec::new();
    // `x.y.gguf` -> `x.y.log.json`: only the adapter's own extension is replaced.
    let log_path = out.with_extension("log.json");
    let log = TrainingLog {
        format_version: FORMAT_VERSION,
        objective: objective.name().into(),
        resumed_from: trained.resumed_from,
        export_ms,
        steps: trained.log.clone(),
        best_step: trained.best_step,
    };
    retroformer_core::fsutil::write_atomic(
        &log_path,
        &serde_json::to_vec_pretty(&log).map_err(|e| io(&log_path, e.to_string()))?,
    )
    .map_err(|e| io(&log_path, e.to_string()))?;
    written.push(log_path);
    if let Some(h) = &state.head {
        written.push(write_head(out, h)?);
    }
    let points: Vec<(f64, f64)> = trained
        .log
        .iter()
        .map(|l| (l.step as f64, l.loss))
        .collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let svg = retroformer_report::line_chart_svg(
        &format!("{} loss", objective.name()),
        "step",
        "loss",
        (lo - pad, hi + pad),
        &[retroformer_report::Series {
            label: objective.name().into(),
            points,
        }],
    );
    let chart = out.with_extension("loss");
    let files =
        retroformer_report::write_chart(&chart, &svg).map_err(|e| io(&chart, e.to_string()))?;
    written.extend(files);
    Ok(written)
}
