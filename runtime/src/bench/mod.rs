//! The benchmark harness behind `retroformer bench`: one versioned JSON report per run
//! ([`BenchReport`]), with the machine's fingerprint, per-model figures (each a median of
//! repeated runs with its spread, next to a bare llama.cpp loop measured in the same run), an
//! agent-level suite on fixed tasks, optional trainer figures, and the system load during the
//! run; and [`compare`], which lines several reports up as ratios and plots.
//!
//! The report schema is plain data (this module needs no model); the measurements themselves
//! live in [`suite`] and [`agents`] (feature `llama`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(feature = "llama")]
pub mod agents;
#[cfg(feature = "llama")]
pub mod suite;
pub mod system;

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
    Chart(#[from] crate::report::ReportError),
    /// A model failed during the suite.
    #[cfg(feature = "llama")]
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmError),
    /// The bare llama.cpp reference failed.
    #[cfg(feature = "llama")]
    #[error("reference llama.cpp loop: {0}")]
    Reference(String),
    /// An agent task failed to run (not: the agent failed the task).
    #[cfg(feature = "llama")]
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// Bad settings.
    #[error("{0}")]
    Config(String),
}

/// One measured figure: the median of `n` repetitions and their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Median.
    pub median: f64,
    /// Smallest repetition.
    pub min: f64,
    /// Largest repetition.
    pub max: f64,
    /// Repetitions.
    pub n: u32,
}

impl Figure {
    /// The median and range of `xs` (`None` when empty or not finite).
    pub fn of(xs: &[f64]) -> Option<Self> {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n: n as u32,
        })
    }

    /// (max - min) / median: how far apart the repetitions were.
    pub fn relative_spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }
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

/// One trainer figure (from `retroformer-train bench`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerFigure {
    /// Burn backend (`flex`, `ndarray`, `wgpu`, ...).
    pub backend: String,
    /// The base model.
    pub model: String,
    /// Training tokens per second (forward + backward + optimiser step).
    pub tokens_per_s: Figure,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// LoRA rank.
    pub rank: u32,
    /// Tokens per step.
    pub tokens_per_step: u32,
    /// CPU threads the trainer used (rayon's pool; absent in reports that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
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
    pub target: crate::target::TargetProfile,
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
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(io)
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
    use crate::report::{line_chart_svg, write_chart, Series};
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
mod tests {
    use super::*;

    fn fig(x: f64) -> Figure {
        Figure::of(&[x * 0.9, x, x * 1.1]).unwrap()
    }

    pub(crate) fn sample(label: &str, model: &str, speed: f64) -> BenchReport {
        BenchReport {
            kind: KIND.into(),
            format_version: FORMAT_VERSION,
            label: label.into(),
            created_unix: 1,
            quick: true,
            wall_s: 1.0,
            fingerprint: Fingerprint::default(),
            target: crate::target::TargetProfile::load("cpu").unwrap(),
            models: vec![ModelReport {
                name: model.into(),
                file_bytes: 10,
                sha256: None,
                threads: 2,
                load_ms: fig(100.0),
                prefill: vec![PrefillPoint {
                    prompt_tokens: 64,
                    runtime_tps: fig(speed),
                    reference_tps: Some(fig(speed)),
                    ratio: Some(1.0),
                }],
                decode: vec![DecodePoint {
                    depth: 0,
                    tokens: 16,
                    runtime_tps: fig(speed / 4.0),
                    reference_tps: None,
                    ratio: None,
                }],
                ttft_ms: fig(20.0),
                ttft_prompt_tokens: 64,
                react_step: ReactStep {
                    prompt_tokens: 300,
                    generated_tokens: 8,
                    with_reuse_ms: fig(50.0),
                    without_reuse_ms: fig(500.0),
                    ratio: 0.1,
                },
                adapter_switch: None,
                peak_rss_bytes: Some(200_000_000),
                peak_rss_isolated: true,
            }],
            agent: vec![AgentTask {
                env: "household".into(),
                task: "t1".into(),
                model: model.into(),
                success: true,
                calls: 3,
                evaluated_tokens: 10,
                reused_tokens: 5,
                generated_tokens: 7,
                wall_ms: 1500.0,
            }],
            trainer: vec![],
            load: LoadReport::default(),
            notes: vec![],
        }
    }

    #[test]
    fn a_figure_is_the_median_and_range_of_its_repetitions() {
        let f = Figure::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert!((f.median - 2.5).abs() < 1e-12);
        assert_eq!((f.min, f.max, f.n), (1.0, 10.0, 4));
        assert!((f.relative_spread() - 3.6).abs() < 1e-12);
        assert!(Figure::of(&[]).is_none());
        assert!(Figure::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn a_report_round_trips_through_its_json_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/r.json");
        let r = sample("laptop", "smollm2", 400.0);
        r.write(&p).unwrap();
        assert_eq!(BenchReport::read(&p).unwrap(), r);
    }

    #[test]
    fn another_version_or_kind_is_refused_with_the_file_named() {
        let r = sample("a", "m", 1.0);
        let mut v = serde_json::to_value(&r).unwrap();
        v["format_version"] = 2.into();
        let p = Path::new("x/r.json");
        let e = BenchReport::from_slice(p, v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(e, BenchError::Version { found: 2, .. }), "{e}");
        assert!(e.to_string().contains("x/r.json"), "{e}");
        v["format_version"] = 1.into();
        v["kind"] = "something-else".into();
        let e = BenchReport::from_slice(p, v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("kind"), "{e}");
        v["kind"] = KIND.into();
        v.as_object_mut().unwrap().remove("models");
        let e = BenchReport::from_slice(p, v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("models"), "{e}");
        let e = BenchReport::from_slice(p, b"not json").unwrap_err();
        assert!(matches!(e, BenchError::Schema { .. }), "{e}");
    }

    #[test]
    fn compare_lines_up_different_model_sets_with_gaps_not_zeros() {
        let a = sample("laptop", "smollm2", 400.0);
        let mut b = sample("laptop", "qwen", 100.0);
        b.models
            .push(sample("x", "smollm2", 800.0).models.remove(0));
        b.models[1].adapter_switch = Some(AdapterSwitch {
            switch_ms: fig(5.0),
            reload_ms: fig(100.0),
            ratio: 0.05,
        });
        b.load.flagged = true;
        assert!(compare(&[a.clone(), b.clone()]).warnings.is_empty());
        let mut full = a.clone();
        full.quick = false;
        assert_eq!(compare(&[full, b.clone()]).warnings.len(), 1);
        let c = compare(&[a, b]);
        assert_eq!(c.labels, vec!["laptop", "laptop#2"]);
        assert_eq!(c.flagged, vec!["laptop#2"]);
        let row = |k: &str| c.rows.iter().find(|r| r.key == k).unwrap();
        let pf = row("smollm2 prefill 64 tok");
        assert_eq!(pf.values, vec![Some(400.0), Some(800.0)]);
        assert!((pf.ratios()[1].unwrap() - 2.0).abs() < 1e-9);
        let q = row("qwen prefill 64 tok");
        assert_eq!(q.values, vec![None, Some(100.0)]);
        assert_eq!(q.ratios(), vec![None, None]);
        // Only in the second report: present, with a gap for the first.
        assert_eq!(row("smollm2 adapter switch").values[0], None);
        // Absent reference figures are not rows at all.
        assert!(c
            .rows
            .iter()
            .all(|r| r.key != "smollm2 decode @0 vs llama.cpp"));
        let t = c.table();
        assert!(t.contains("laptop#2/laptop"), "{t}");
        assert!(t.contains("2.000"), "{t}");
        assert!(t.contains("warning: laptop#2"), "{t}");
    }

    #[test]
    fn plots_have_one_line_per_report_and_model() {
        let dir = tempfile::tempdir().unwrap();
        let a = sample("a", "smollm2", 400.0);
        let b = sample("b", "smollm2", 300.0);
        let files = write_plots(&[a, b], &dir.path().join("cmp")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("cmp-prefill.svg")).unwrap();
        assert!(svg.contains("a: smollm2") && svg.contains("b: smollm2"));
        assert!(files.iter().any(|f| f.ends_with("cmp-decode.svg")));
    }
}
