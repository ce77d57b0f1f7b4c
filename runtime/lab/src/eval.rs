//! One evaluation of an environment: its plan checked, its models loaded, its run, its chart.

use std::path::{Path, PathBuf};

use retroformer::adapters::AdapterStore;
use retroformer::agent::runner::read_run;
use retroformer_envs::{Chart, Environment, EvalPlan, EvalReport, Models, Progress};
use retroformer_llm::{LanguageModel, SessionOptions};
use retroformer_report::{line_chart_svg, write_chart, Series};

use crate::{LabError, ModelSource};

/// An evaluation's report and the chart files written for it.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// What the environment reported.
    pub report: EvalReport,
    /// The chart's files (SVG, and PNG when the build draws them).
    pub plots: Vec<PathBuf>,
}

/// Runs (or resumes) `plan` on `env`: the plan is checked and the tasks loaded first, then the
/// models the evaluation asks for are loaded from `models` (the reflector's adapter put on the
/// reflector), the evaluation runs, and its chart is drawn into the run folder.
pub fn evaluate(
    env: &dyn Environment,
    plan: &EvalPlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<Evaluated, LabError> {
    let evaluation = env.prepare(plan)?;
    let needs = evaluation.needs();
    let actor = models.load(&needs.actor)?;
    let own = needs
        .reflector
        .as_deref()
        .map(|r| models.load(r))
        .transpose()?;
    let reflector: &dyn LanguageModel = own.as_deref().unwrap_or(actor.as_ref());
    let reflector_name = needs.reflector.as_deref().unwrap_or(&needs.actor);
    let reflector_adapter = match &needs.reflector_adapter {
        Some(spec) => {
            let path = adapter_file(spec, reflector_name)?;
            let h = reflector.load_adapter(&path).map_err(|e| {
                LabError::setting("reflector-adapter", format!("{}: {e}", path.display()))
            })?;
            progress.note(&format!("reflector adapter: {}", path.display()));
            Some(h)
        }
        None => None,
    };
    let profile = models.profile();
    let m = Models {
        actor: actor.as_ref(),
        reflector,
        reflector_adapter,
        sessions: SessionOptions {
            context_size: Some(profile.context_size.max(4096)),
            threads: models.threads(),
            sequences: None,
        },
        profile,
    };
    let report = evaluation.run(&m, progress)?;
    let plots = match &report.chart {
        Some(c) => draw(c, &plan.out)?,
        None => Vec::new(),
    };
    Ok(Evaluated { report, plots })
}

/// The adapter file `spec` names: a path, or `active`, the active adapter of `model`'s store.
pub fn adapter_file(spec: &str, model: &str) -> Result<PathBuf, LabError> {
    if spec != "active" {
        return Ok(PathBuf::from(spec));
    }
    let base = retroformer::backend::resolve(model, None)?;
    let (store, _) = AdapterStore::for_model(&base)?;
    let m = store.active()?.ok_or_else(|| {
        LabError::setting(
            "reflector-adapter",
            format!("active: no adapter is active in {}", store.root().display()),
        )
    })?;
    Ok(store.verified_adapter(&m.id)?)
}

/// Draws `chart` into `dir` (`STEM.svg`, `STEM.png`).
pub fn draw(chart: &Chart, dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    let series: Vec<Series> = chart
        .series
        .iter()
        .map(|(label, points)| Series {
            label: label.clone(),
            points: points.clone(),
        })
        .collect();
    let svg = line_chart_svg(
        &chart.title,
        &chart.x_label,
        &chart.y_label,
        (0.0, 1.0),
        &series,
    );
    Ok(write_chart(&dir.join(&chart.stem), &svg)?)
}

/// What `plot_runs` drew: each run's folder with its success rate by trial, and the files.
pub type Plotted = (Vec<(PathBuf, Vec<f64>)>, Vec<PathBuf>);

/// The success rate by trial of several run folders on one chart titled `title`, written to
/// `STEM.svg` and `STEM.png`; each run's rates, in order, are returned with its folder.
pub fn plot_runs(runs: &[PathBuf], stem: &Path, title: &str) -> Result<Plotted, LabError> {
    let mut series = Vec::new();
    let mut rates = Vec::new();
    for dir in runs {
        let (label, summaries) = read_run(dir)?;
        if summaries.is_empty() {
            return Err(LabError::file(dir, "no finished trial to plot"));
        }
        rates.push((
            dir.clone(),
            summaries.iter().map(|t| t.success_rate).collect(),
        ));
        series.push(Series {
            label: label.legend(),
            points: retroformer_envs::success_points(&summaries),
        });
    }
    let svg = line_chart_svg(title, "trial", "success rate", (0.0, 1.0), &series);
    if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| LabError::file(parent, e))?;
    }
    Ok((rates, write_chart(stem, &svg)?))
}
