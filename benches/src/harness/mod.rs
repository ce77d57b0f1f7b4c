//! The benchmark harness behind `retroformer bench`: one versioned JSON report per run
//! ([`BenchReport`]), with the machine's fingerprint, per-model figures (each a median of
//! repeated runs with its spread, next to a bare llama.cpp loop measured in the same run), an
//! agent-level suite on fixed tasks, optional trainer figures, and the system load during the
//! run; and [`compare`], which lines several reports up as ratios and plots.
//!
//! The report schema is plain data (this module needs no model); the measurements themselves
//! live in [`suite`] and [`agents`] (each environment's episodes, through the registry).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod agents;
pub mod suite;
pub mod system;

pub use retroformer_core::records::{Figure, TrainerFigure};

/// Version of the report schema. Readers refuse other versions with a clear error.
pub const FORMAT_VERSION: u32 = 1;

/// The `kind` field of every report.
pub const KIND: &str = "retroformer-bench";

/// Why a report could not be read, written or compared.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A report is not valid JSON or does not have the schema.
    #[error("{path}: not a retroformer bench report: {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A report of another schema version.
    #[error("{path}: bench report format_version {found}, this build reads version {expected}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// [`FORMAT_VERSION`].
        expected: u32,
    },
    /// A chart could not be written.
    #[error(transparent)]
    Chart(#[from] retroformer_report::ReportError),
    /// A model failed during the suite.
    #[error(transparent)]
    Llm(#[from] retroformer_llm::LlmError),
    /// A model could not be resolved or fetched.
    #[error(transparent)]
    Backend(#[from] retroformer::backend::BackendError),
    /// An environment's episode failed to run (not: the agent failed the task).
    #[error(transparent)]
    Env(#[from] retroformer_envs::EnvError),
    /// Bad settings.
    #[error("{0}")]
    Config(String),
}

/// The machine: enough to tell two reports' hardware and software apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Host name.
    pub host: String,
    /// CPU model name (`/proc/cpuinfo`), or the architecture when unknown.
    pub cpu_model: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// Logical cores available to this process.
    pub logical_cores: u32,
    /// Physical cores, when the OS says.
    pub physical_cores: Option<u32>,
    /// The SIMD extensions that matter to ggml that the CPU has (e.g. `avx2`, `avx512f`,
    /// `fma`, `f16c`, `neon`, `dotprod`, `i8mm`, `sve`).
    pub simd: Vec<String>,
    /// Total memory in bytes.
    pub memory_bytes: Option<u64>,
    /// GPUs that llama.cpp sees: `backend name (description, memory MB)`.
    pub gpus: Vec<String>,
    /// The backend the target profile asks for (`cpu`, `vulkan`, `cuda`, `metal`).
    pub backend: String,
    /// OS (`PRETTY_NAME` of `/etc/os-release`) and kernel.
    pub os: String,
    /// This crate's version.
    pub retroformer_version: String,
    /// The llama.cpp binding's version (`llama-cpp-2`, which pins the llama.cpp sources).
    pub llama_cpp_binding: String,
    /// llama.cpp's own build summary (`llama_print_system_info`: CPU features compiled in).
    pub llama_cpp_system_info: String,
}

/// Prefill speed at one prompt length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefillPoint {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// The runtime, tokens per second.
    pub runtime_tps: Figure,
    /// The bare llama.cpp loop in the same run, tokens per second.
    pub reference_tps: Option<Figure>,
    /// runtime / reference (medians).
    pub ratio: Option<f64>,
}

/// Decode speed after `depth` tokens of context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodePoint {
    /// Tokens already in the context.
    pub depth: u32,
    /// Tokens generated per repetition.
    pub tokens: u32,
    /// The runtime, tokens per second.
    pub runtime_tps: Figure,
    /// The bare llama.cpp loop in the same run, tokens per second.
    pub reference_tps: Option<Figure>,
    /// runtime / reference (medians).
    pub ratio: Option<f64>,
}

/// Latency of one ReAct step after the first (the prompt grows by the model's thought, an
/// action and an observation, then the model writes the next thought). Without reuse, the same
/// prompts are evaluated from an emptied cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactStep {
    /// Prompt tokens at the last step.
    pub prompt_tokens: u32,
    /// Tokens generated per step.
    pub generated_tokens: u32,
    /// Milliseconds per step in one session that keeps its KV cache.
    pub with_reuse_ms: Figure,
    /// Milliseconds per step when every step starts from an empty cache.
    pub without_reuse_ms: Figure,
    /// with / without (medians): the share of the step's time that KV reuse leaves.
    pub ratio: f64,
}

/// Switching LoRA adapters in a live session against reloading the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterSwitch {
    /// Switch plus first token, milliseconds.
    pub switch_ms: Figure,
    /// Model reload plus first token, milliseconds.
    pub reload_ms: Figure,
    /// switch / reload (medians).
    pub ratio: f64,
}

/// Everything measured on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// Manifest name or file path.
    pub name: String,
    /// The GGUF's size in bytes.
    pub file_bytes: u64,
    /// The GGUF's sha256 when a manifest gives it.
    pub sha256: Option<String>,
    /// Threads used for prompt and generation.
    pub threads: u32,
    /// Load time (validation + llama.cpp load), milliseconds.
    pub load_ms: Figure,
    /// Prefill at several prompt lengths.
    pub prefill: Vec<PrefillPoint>,
    /// Decode at several depths.
    pub decode: Vec<DecodePoint>,
    /// Time to first token from a fresh session, milliseconds, and the prompt length.
    pub ttft_ms: Figure,
    /// Prompt tokens of the time-to-first-token prompt.
    pub ttft_prompt_tokens: u32,
    /// A ReAct step with and without KV reuse.
    pub react_step: ReactStep,
    /// Adapter switch against model reload (absent when the model has no attention tensors
    /// an adapter can target).
    pub adapter_switch: Option<AdapterSwitch>,
    /// Peak resident memory over time to first token and the ReAct steps (the model and its
    /// sessions alone; the reference model is unloaded first), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the peak could be reset before that phase (else it includes what ran earlier).
    pub peak_rss_isolated: bool,
}

/// One task of the agent-level suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTask {
    /// `household`, `hotpotqa`, `gsm8k`.
    pub env: String,
    /// The task's id.
    pub task: String,
    /// The model that acted.
    pub model: String,
    /// Reached the goal / right answer.
    pub success: bool,
    /// Model calls (steps or attempts).
    pub calls: u32,
    /// Tokens evaluated (prefill).
    pub evaluated_tokens: u64,
    /// Tokens served from the KV cache.
    pub reused_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Wall time, milliseconds.
    pub wall_ms: f64,
}

/// How busy the machine was with other work while the suite ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// 1-minute load average at the start.
    pub loadavg_start: Option<f64>,
    /// 1-minute load average at the end.
    pub loadavg_end: Option<f64>,
    /// Cores' worth of CPU time that other processes used, on average, during the run.
    pub external_cores: Option<f64>,
    /// True when [`Self::external_cores`] exceeded the threshold: figures are not comparable.
    pub flagged: bool,
    /// Why it was flagged, in words.
    pub note: Option<String>,
}

/// One `retroformer bench` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// [`KIND`].
    pub kind: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// A short name for the machine or the run (`--label`; default the host name).
    pub label: String,
    /// Seconds since the Unix epoch at the start.
    pub created_unix: u64,
    /// `--quick`: fewer repetitions and shorter prompts.
    pub quick: bool,
    /// Seconds the whole suite took.
    pub wall_s: f64,
    /// The machine.
    pub fingerprint: Fingerprint,
    /// The hardware profile in use.
    pub target: retroformer_llm::target::TargetProfile,
    /// Per-model figures.
    pub models: Vec<ModelReport>,
    /// The agent-level suite.
    pub agent: Vec<AgentTask>,
    /// Trainer figures, when measured.
    pub trainer: Vec<TrainerFigure>,
    /// The system load during the run.
    pub load: LoadReport,
    /// What was skipped and why.
    pub notes: Vec<String>,
}

impl BenchReport {
    /// Reads and checks a report: its kind, then its version, then the schema.
    pub fn read(path: &Path) -> Result<Self, BenchError> {
        let bytes = std::fs::read(path).map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_slice(path, &bytes)
    }

    /// [`Self::read`] from bytes (`path` names them in errors).
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, BenchError> {
        let schema = |reason: String| BenchError::Schema {
            path: path.to_path_buf(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| schema(e.to_string()))?;
        if v.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Err(schema(format!("field `kind` is not \"{KIND}\"")));
        }
        let found = v
            .get("format_version")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| schema("field `format_version` is missing".into()))?;
        if found != u64::from(FORMAT_VERSION) {
            return Err(BenchError::Version {
                path: path.to_path_buf(),
                found,
                expected: FORMAT_VERSION,
            });
        }
        serde_json::from_value(v).map_err(|e| schema(e.to_string()))
    }

    /// Writes the report atomically (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        let io = |source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).expect("a report serialises");
        retroformer_core::fsutil::write_atomic(path, text.as_bytes()).map_err(io)
    }

    /// Every figure of the report under a stable key, with its unit and direction.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        let mut put = |key: String, unit: &'static str, value: f64, higher_is_better: bool| {
            if value.is_finite() {
                out.push(Metric {
                    key,
                    unit,
                    value,
                    higher_is_better,
                });
            }
        };
        for m in &self.models {
            let n = &m.name;
            put(format!("{n} load"), "ms", m.load_ms.median, false);
            for p in &m.prefill {
                let k = format!("{n} prefill {} tok", p.prompt_tokens);
                put(k.clone(), "tok/s", p.runtime_tps.median, true);
                if let Some(r) = p.ratio {
                    put(format!("{k} vs llama.cpp"), "ratio", r, true);
                }
            }
            for d in &m.decode {
                let k = format!("{n} decode @{}", d.depth);
                put(k.clone(), "tok/s", d.runtime_tps.median, true);
                if let Some(r) = d.ratio {
                    put(format!("{k} vs llama.cpp"), "ratio", r, true);
                }
            }
            put(
                format!("{n} time to first token"),
                "ms",
                m.ttft_ms.median,
                false,
            );
            put(
                format!("{n} ReAct step, KV reuse"),
                "ms",
                m.react_step.with_reuse_ms.median,
                false,
            );
            put(
                format!("{n} ReAct step, no reuse"),
                "ms",
                m.react_step.without_reuse_ms.median,
                false,
            );
            if let Some(a) = &m.adapter_switch {
                put(
                    format!("{n} adapter switch"),
                    "ms",
                    a.switch_ms.median,
                    false,
                );
            }
            if let Some(b) = m.peak_rss_bytes {
                put(format!("{n} peak RSS"), "MB", b as f64 / 1e6, false);
            }
        }
        let mut by_env: BTreeMap<(&str, &str), (u32, u32, f64, u64)> = BTreeMap::new();
        for t in &self.agent {
            let e = by_env.entry((&t.env, &t.model)).or_default();
            e.0 += u32::from(t.success);
            e.1 += 1;
            e.2 += t.wall_ms;
            e.3 += t.generated_tokens;
        }
        for ((env, model), (ok, n, ms, generated)) in by_env {
            put(
                format!("agent {env} {model} solved"),
                "tasks",
                f64::from(ok),
                true,
            );
            put(
                format!("agent {env} {model} wall per task"),
                "s",
                ms / 1e3 / f64::from(n),
                false,
            );
            put(
                format!("agent {env} {model} generated"),
                "tok",
                generated as f64,
                false,
            );
        }
        for t in &self.trainer {
            put(
                format!("train {} {} r{}", t.backend, t.model, t.rank),
                "tok/s",
                t.tokens_per_s.median,
                true,
            );
            if let Some(b) = t.peak_rss_bytes {
                put(
                    format!("train {} {} peak RSS", t.backend, t.model),
                    "MB",
                    b as f64 / 1e6,
                    false,
                );
            }
        }
        out
    }
}

/// One figure of a report, flattened for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Stable key (model and measurement), e.g. `smollm2-135m-instruct decode @0`.
    pub key: String,
    /// Unit.
    pub unit: &'static str,
    /// The value (a median).
    pub value: f64,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
}

/// Several reports lined up: one row per figure any of them has.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Each report's label (with a suffix when two are equal).
    pub labels: Vec<String>,
    /// Rows in the first report's order, then figures only later reports have.
    pub rows: Vec<ComparisonRow>,
    /// Labels of reports whose run was flagged as under load.
    pub flagged: Vec<String>,
    /// Why some rows do not compare like with like (quick and full reports mixed).
    pub warnings: Vec<String>,
}

/// One figure across reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    /// The figure's key.
    pub key: String,
    /// Its unit.
    pub unit: &'static str,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// The value in each report (`None` where the report lacks it).
    pub values: Vec<Option<f64>>,
}

impl ComparisonRow {
    /// Each value divided by the first report's (`None` where either is missing or the
    /// baseline is zero).
    pub fn ratios(&self) -> Vec<Option<f64>> {
        let base = self.values.first().copied().flatten();
        self.values
            .iter()
            .map(|v| match (base, v) {
                (Some(b), Some(v)) if b != 0.0 => Some(v / b),
                _ => None,
            })
            .collect()
    }
}

/// Lines `reports` up by figure. Figures missing from some reports (other models, skipped
/// environments, older runs) are `None` there, never zero.
pub fn compare(reports: &[BenchReport]) -> Comparison {
    let mut labels: Vec<String> = Vec::new();
    for r in reports {
        let mut l = r.label.clone();
        let mut k = 2;
        while labels.contains(&l) {
            l = format!("{}#{k}", r.label);
            k += 1;
        }
        labels.push(l);
    }
    let mut rows: Vec<ComparisonRow> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        for m in r.metrics() {
            let at = *index.entry(m.key.clone()).or_insert_with(|| {
                rows.push(ComparisonRow {
                    key: m.key.clone(),
                    unit: m.unit,
                    higher_is_better: m.higher_is_better,
                    values: vec![None; reports.len()],
                });
                rows.len() - 1
            });
            rows[at].values[i] = Some(m.value);
        }
    }
    let flagged = reports
        .iter()
        .zip(&labels)
        .filter(|(r, _)| r.load.flagged)
        .map(|(_, l)| l.clone())
        .collect();
    let mut warnings = Vec::new();
    if reports.iter().any(|r| r.quick) && reports.iter().any(|r| !r.quick) {
        warnings.push("quick and full reports are mixed: decode, time to first token, ReAct step, agent and trainer rows measure different amounts of work".to_string());
    }
    Comparison {
        labels,
        rows,
        flagged,
        warnings,
    }
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

impl Comparison {
    /// A plain-text table: figure, unit, each report's value, then each later report's ratio
    /// to the first (`-` where a figure is missing).
    pub fn table(&self) -> String {
        let mut head = vec!["figure".to_string(), "unit".to_string()];
        head.extend(self.labels.iter().cloned());
        for l in self.labels.iter().skip(1) {
            head.push(format!("{l}/{}", self.labels[0]));
        }
        let mut lines: Vec<Vec<String>> = vec![head];
        for r in &self.rows {
            let mut line = vec![
                r.key.clone(),
                format!("{}{}", r.unit, if r.higher_is_better { " ^" } else { " v" }),
            ];
            line.extend(r.values.iter().map(|v| fmt_value(*v)));
            line.extend(
                r.ratios()
                    .iter()
                    .skip(1)
                    .map(|x| x.map_or("-".into(), |x| format!("{x:.3}"))),
            );
            lines.push(line);
        }
        let cols = lines[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut s = String::new();
        for (i, l) in lines.iter().enumerate() {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(c, x)| {
                    if c == 0 {
                        format!("{x:<w$}", w = widths[c])
                    } else {
                        format!("{x:>w$}", w = widths[c])
                    }
                })
                .collect();
            s.push_str(cells.join("  ").trim_end());
            s.push('\n');
            if i == 0 {
                s.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
                s.push('\n');
            }
        }
        s.push_str(
            "(^ higher is better, v lower is better; ratios are each report over the first)\n",
        );
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        for l in &self.flagged {
            s.push_str(&format!(
                "warning: {l} ran under external load; its figures are not comparable\n"
            ));
        }
        s
    }
}

/// Throughput against prompt length (prefill) and against depth (decode), one line per
/// report and model: `STEM-prefill.svg/.png` and `STEM-decode.svg/.png`. Returns the files.
pub fn write_plots(reports: &[BenchReport], stem: &Path) -> Result<Vec<PathBuf>, BenchError> {
    use retroformer_report::{line_chart_svg, write_chart, Series};
    let labels = compare(reports).labels;
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for (r, label) in reports.iter().zip(&labels) {
        for m in &r.models {
            let short = m.name.rsplit('/').next().unwrap_or(&m.name);
            prefill.push(Series {
                label: format!("{label}: {short}"),
                points: m
                    .prefill
                    .iter()
                    .map(|p| (f64::from(p.prompt_tokens), p.runtime_tps.median))
                    .collect(),
            });
            decode.push(Series {
                label: format!("{label}: {short}"),
                points: m
                    .decode
                    .iter()
                    .map(|d| (f64::from(d.depth), d.runtime_tps.median))
                    .collect(),
            });
        }
    }
    let top = |s: &[Series]| {
        let m = s
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        if m > 0.0 {
            m * 1.1
        } else {
            1.0
        }
    };
    let mut written = Vec::new();
    let base = stem.to_string_lossy().to_string();
    let svg = line_chart_svg(
        "Prefill throughput",
        "prompt tokens",
        "tokens/s",
        (0.0, top(&prefill)),
        &prefill,
    );
    written.extend(write_chart(Path::new(&format!("{base}-prefill")), &svg)?);
    let svg = line_chart_svg(
        "Decode throughput",
        "tokens already in context",
        "tokens/s",
        (0.0, top(&decode)),
        &decode,
    );
    written.extend(write_chart(Path::new(&format!("{base}-decode")), &svg)?);
    Ok(written)
}

#[cfg(test)]
mod tests;
