//! `eval compare`: paired statistics between evaluation runs of one task set.
//!
//! Runs over the same tasks with the same actor seed sample the same first trial, so their
//! outcomes are paired by task: what one run solves and another does not is the effect of what
//! differs between them (the strategy, the reflector), not of which tasks each drew. For every
//! pair of runs and every trial both finished this gives the cumulative success rates (solved
//! in any trial so far, as Reflexion reports them), their difference with the exact conditional
//! interval (the one that agrees with the test), a paired bootstrap interval and Newcombe's score
//! interval, the exact McNemar test and the 2x2 table. The first run is the baseline; with more
//! than two runs every pair of arms is compared too.
//!
//! Task files are read as plain JSON (`task_id` and `success`, or HumanEval's `passed`), so any
//! environment's trial runs compare without this module knowing their result types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use retroformer::agent::runner::{trial_dir, RunLabel};
use retroformer::provenance::{one_machine, provenance_in, same_numerics, Machine};
use retroformer_core::fsutil::{read_regular, write_atomic};
use retroformer_core::text::printable;
use retroformer_report::{line_chart_svg, write_chart, Series};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LabError;

/// Format version of `compare.json`. 2: each pair is named by its arms' folders; 3: each trial
/// has its exact interval.
pub const FORMAT_VERSION: u32 = 3;
/// The `kind` of `compare.json`.
pub const KIND: &str = "retroformer-compare";
/// Bootstrap resamples per interval.
pub const RESAMPLES: u32 = 10_000;
/// The bootstrap's seed: the same runs always give the same intervals.
pub const BOOTSTRAP_SEED: u64 = 0x5EED_C0DE;
/// The intervals' confidence level.
pub const CONFIDENCE: f64 = 0.95;
/// The standard normal quantile for [`CONFIDENCE`] (two-sided).
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Most bytes of a `run.json` (settings only).
const MAX_SETTINGS_BYTES: u64 = 1 << 20;
/// Most bytes of a task file: as much as the runner itself reads back.
const MAX_TASK_BYTES: u64 = 1 << 30;
/// Task ids named in an error about task sets.
const SHOWN_IDS: usize = 3;

/// One run folder as read: its description and, by trial, which tasks were solved so far.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the report says of the run.
    pub info: RunInfo,
    /// The task ids of trial 0, sorted.
    pub tasks: Vec<String>,
    /// `solved[t][i]`: task `tasks[i]` solved in trial `t` or before, for each finished trial.
    pub solved: Vec<Vec<bool>>,
}

/// A run in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run folder.
    pub path: String,
    /// Its name in tables and charts (agent, strategy, models, actor temperature; the folder
    /// name added where two runs would otherwise share one).
    pub label: String,
    /// The agent.
    pub agent: String,
    /// The strategy.
    pub strategy: String,
    /// The actor model.
    pub actor: String,
    /// The reflector model, where the run records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflector: Option<String>,
    /// The reflector's adapter, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflector_adapter: Option<String>,
    /// The actor's sampling temperature (0: greedy).
    pub actor_temperature: f64,
    /// The actor's seed (absent in `run.json`: 0).
    pub actor_seed: u64,
    /// Tasks (those of trial 0).
    pub tasks: usize,
    /// Finished trials read (a trial with an open task lacking its file is not finished).
    pub trials: u32,
    /// Trials the run was planned with (`run.json`).
    pub planned_trials: u32,
    /// Cumulative success rate by finished trial.
    pub success_rate: Vec<f64>,
    /// The machines whose sessions wrote its results (`sessions.json`), each once; empty
    /// when the folder predates that record.
    #[serde(default)]
    pub machines: Vec<Machine>,
    /// The numerics (target profile) its sessions decoded with, each once; empty when not
    /// recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numerics: Vec<String>,
}

pub use crate::stats::{
    binomial_cdf_half, bootstrap_interval, exact_paired_interval, mcnemar_p, newcombe_interval,
    wilson_interval, Table,
};

/// One trial of a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialComparison {
    /// The trial index (0-based, as in `trial-NN`).
    pub trial: u32,
    /// Tasks paired.
    pub n: usize,
    /// `a`'s cumulative success rate.
    pub rate_a: f64,
    /// `b`'s cumulative success rate.
    pub rate_b: f64,
    /// `rate_b - rate_a`.
    pub difference: f64,
    /// The paired bootstrap's percentile interval of the difference.
    pub interval: [f64; 2],
    /// Newcombe's (1998, method 10) score interval of the difference.
    pub score_interval: [f64; 2],
    /// The exact conditional interval ([`exact_paired_interval`]): it excludes 0 exactly when
    /// `p_value` is below 1 - [`CONFIDENCE`], so a verdict quotes this one.
    #[serde(default)]
    pub exact_interval: [f64; 2],
    /// The exact two-sided McNemar p-value.
    pub p_value: f64,
    /// The 2x2 table.
    pub table: Table,
}

/// Runs `a` and `b` (indices into `runs`) compared trial by trial; the difference is `b - a`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// `B vs A`, each run named by its folder (`d-trained vs c-frozen`): the difference is
    /// B's success rate minus A's.
    pub name: String,
    /// The first run (the baseline in the pairs with run 0).
    pub a: usize,
    /// The second run.
    pub b: usize,
    /// The trials both runs finished.
    pub trials: Vec<TrialComparison>,
    /// Whether both runs' results come from one machine (greedy answers differ across CPUs);
    /// `None` when a folder predates the record.
    #[serde(default)]
    pub same_machine: Option<bool>,
    /// Whether both runs were decoded with the same numerics (target profile: kernels, KV
    /// type, batch sizes); `None` when a folder has no record.
    #[serde(default)]
    pub same_numerics: Option<bool>,
}

/// `compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// The intervals' confidence level.
    pub confidence: f64,
    /// Bootstrap resamples per interval.
    pub resamples: u32,
    /// The bootstrap's seed.
    pub bootstrap_seed: u64,
    /// The runs, the baseline first.
    pub runs: Vec<RunInfo>,
    /// Every pair `a < b`: the baseline against each arm, then the arms against each other.
    pub pairs: Vec<Pair>,
}

/// Reads the run folders `dirs` and compares them (the first is the baseline).
pub fn compare(dirs: &[PathBuf]) -> Result<CompareReport, LabError> {
    if dirs.len() < 2 {
        return Err(too_few(dirs.len()));
    }
    let runs = dirs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>, _>>()?;
    compare_runs(&runs)
}

fn too_few(n: usize) -> LabError {
    LabError::Config(format!(
        "compare needs at least two run folders (the first is the baseline); got {n}"
    ))
}

/// Compares runs already read: refused unless there are two or more, over one task set, with
/// one actor seed.
pub fn compare_runs(runs: &[Run]) -> Result<CompareReport, LabError> {
    if runs.len() < 2 {
        return Err(too_few(runs.len()));
    }
    for run in &runs[1..] {
        check_paired(&runs[0], run)?;
    }
    let mut pairs = Vec::new();
    for a in 0..runs.len() {
        for b in a + 1..runs.len() {
            pairs.push(compare_pair(runs, a, b));
        }
    }
    Ok(CompareReport {
        format_version: FORMAT_VERSION,
        kind: KIND.into(),
        confidence: CONFIDENCE,
        resamples: RESAMPLES,
        bootstrap_seed: BOOTSTRAP_SEED,
        runs: distinct_labels(runs),
        pairs,
    })
}

fn compare_pair(runs: &[Run], a: usize, b: usize) -> Pair {
    let (ra, rb) = (&runs[a], &runs[b]);
    let trials = ra
        .solved
        .iter()
        .zip(&rb.solved)
        .enumerate()
        .map(|(t, (sa, sb))| paired(t as u32, Table::of(sa, sb)))
        .collect();
    let arm = |r: &Run| {
        Path::new(&r.info.path)
            .file_name()
            .map_or(r.info.path.clone(), |n| n.to_string_lossy().into_owned())
    };
    Pair {
        name: format!("{} vs {}", arm(rb), arm(ra)),
        a,
        b,
        trials,
        same_machine: one_machine(&ra.info.machines, &rb.info.machines),
        same_numerics: same_numerics(&ra.info.numerics, &rb.info.numerics),
    }
}

/// The statistics of one trial's table.
pub fn paired(trial: u32, table: Table) -> TrialComparison {
    let n = table.n();
    let rate = |x: usize| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let rate_a = rate(table.both + table.only_a);
    let rate_b = rate(table.both + table.only_b);
    TrialComparison {
        trial,
        n,
        rate_a,
        rate_b,
        difference: rate(table.only_b) - rate(table.only_a),
        interval: bootstrap_interval(&table, RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE),
        score_interval: newcombe_interval(&table, Z_95),
        exact_interval: exact_paired_interval(&table, CONFIDENCE),
        p_value: mcnemar_p(table.only_b as u64, table.only_a as u64),
        table,
    }
}

/// Refuses `run` unless it pairs with `base`: the same actor seed (else the first trials were
/// sampled differently, and a difference would be the seed's) and the same task set.
fn check_paired(base: &Run, run: &Run) -> Result<(), LabError> {
    let (b, r) = (&base.info, &run.info);
    if b.actor_seed != r.actor_seed {
        return Err(LabError::Config(format!(
            "the runs differ in actor_seed (--seed): {} has {}, {} has {}; runs with other seeds sample other attempts, so their tasks do not pair",
            printable(&b.path, false),
            b.actor_seed,
            printable(&r.path, false),
            r.actor_seed
        )));
    }
    if base.tasks == run.tasks {
        return Ok(());
    }
    let one: BTreeSet<&String> = base.tasks.iter().collect();
    let other: BTreeSet<&String> = run.tasks.iter().collect();
    Err(LabError::Config(format!(
        "the runs hold different task sets: only in {}: {}; only in {}: {}; compare runs over the same tasks (same --data, --split, --skip, --limit, --tasks)",
        printable(&b.path, false),
        some_ids(one.difference(&other).collect()),
        printable(&r.path, false),
        some_ids(other.difference(&one).collect()),
    )))
}

/// `3 tasks ("a", "b", "c", ...)`, the first few named; `no task` for none.
fn some_ids(ids: Vec<&&String>) -> String {
    if ids.is_empty() {
        return "no task".into();
    }
    let shown: Vec<String> = ids
        .iter()
        .take(SHOWN_IDS)
        .map(|s| format!("{s:?}"))
        .collect();
    let more = if ids.len() > SHOWN_IDS { ", ..." } else { "" };
    let noun = if ids.len() == 1 { "task" } else { "tasks" };
    format!("{} {noun} ({}{more})", ids.len(), shown.join(", "))
}

/// The runs' descriptions, a label shared by several runs told apart by the folder's name.
fn distinct_labels(runs: &[Run]) -> Vec<RunInfo> {
    let mut infos: Vec<RunInfo> = runs.iter().map(|r| r.info.clone()).collect();
    let labels: Vec<String> = infos.iter().map(|i| i.label.clone()).collect();
    for info in &mut infos {
        if labels.iter().filter(|l| **l == info.label).count() > 1 {
            let name = Path::new(&info.path)
                .file_name()
                .map_or(info.path.clone(), |n| n.to_string_lossy().into_owned());
            info.label = format!("{} [{name}]", info.label);
        }
    }
    infos
}

/// Reads a run folder: `run.json` and every finished trial's task files. Trial 0 gives the task
/// set; a later trial is finished when every task still open before it has its file there (the
/// runner attempts every open task in every trial), and reading stops at the first that is not.
pub fn load_run(dir: &Path) -> Result<Run, LabError> {
    let (label, temperature, seed) = read_settings(dir)?;
    let indices = trial_indices(dir)?;
    if indices.is_empty() {
        return Err(LabError::file(
            &trial_dir(dir, 0),
            "not found: the run has no trial yet",
        ));
    }
    let first = read_trial(dir, 0)?;
    if first.is_empty() {
        return Err(LabError::file(&trial_dir(dir, 0), "no task result in it"));
    }
    check_first_summary(dir, first.len())?;
    let tasks: Vec<String> = first.keys().cloned().collect();
    let mut solved = vec![first.values().copied().collect::<Vec<bool>>()];
    for &t in &indices[1..] {
        let outcomes = read_trial(dir, t)?;
        let before = solved.last().map_or(&[][..], Vec::as_slice);
        match next_trial(dir, t, &tasks, before, &outcomes)? {
            Some(row) => solved.push(row),
            None => break,
        }
    }
    let n = tasks.len() as f64;
    let made = provenance_in(dir)?;
    let info = RunInfo {
        path: dir.to_string_lossy().into_owned(),
        label: run_label(&label, temperature),
        agent: label.agent,
        strategy: label.strategy,
        actor: label.actor,
        reflector: label.reflector,
        reflector_adapter: label.reflector_adapter,
        actor_temperature: temperature,
        actor_seed: seed,
        tasks: tasks.len(),
        trials: solved.len() as u32,
        planned_trials: label.trials,
        success_rate: solved
            .iter()
            .map(|row| row.iter().filter(|&&s| s).count() as f64 / n)
            .collect(),
        machines: made.machines,
        numerics: made.numerics,
    };
    Ok(Run {
        info,
        tasks,
        solved,
    })
}

fn run_label(label: &RunLabel, temperature: f64) -> String {
    if temperature > 0.0 {
        format!("{} T={temperature}", label.legend())
    } else {
        label.legend()
    }
}

/// Cumulative outcomes after trial `t`, or `None` when the trial is unfinished (an open task
/// has no file in it).
fn next_trial(
    dir: &Path,
    t: u32,
    tasks: &[String],
    before: &[bool],
    outcomes: &BTreeMap<String, bool>,
) -> Result<Option<Vec<bool>>, LabError> {
    if let Some(stray) = outcomes.keys().find(|id| tasks.binary_search(id).is_err()) {
        return Err(LabError::file(
            &trial_dir(dir, t),
            format!("holds task {stray:?}, which trial-00 does not: not one run's trials"),
        ));
    }
    let mut row = Vec::with_capacity(tasks.len());
    for (id, &was) in tasks.iter().zip(before) {
        row.push(match (was, outcomes.get(id)) {
            (true, _) => true,
            (false, Some(&now)) => now,
            (false, None) => return Ok(None),
        });
    }
    Ok(Some(row))
}

/// A JSON file; a missing one is named with `missing`.
fn read_value(path: &Path, max: u64, missing: &str) -> Result<Value, LabError> {
    let bytes = read_regular(path, max).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LabError::file(path, missing)
        } else {
            LabError::file(path, e)
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| LabError::file(path, format!("not JSON: {e}")))
}

/// `run.json`: the label, the actor's temperature and seed (absent: 0, as the runner writes a
/// zero setting).
fn read_settings(dir: &Path) -> Result<(RunLabel, f64, u64), LabError> {
    let path = dir.join("run.json");
    let v = read_value(
        &path,
        MAX_SETTINGS_BYTES,
        "not found: is this a run folder?",
    )?;
    let label: RunLabel = serde_json::from_value(v.clone())
        .map_err(|e| LabError::file(&path, format!("not a run's settings: {e}")))?;
    let bad = |key: &str| LabError::file(&path, format!("`{key}` is not a non-negative number"));
    // A RISE run (`agent: rise`) names its sampling `sequential_temperature` and `seed`.
    let rise = v.get("agent").and_then(Value::as_str) == Some("rise");
    let key = |ours: &'static str, theirs: &'static str| if rise { theirs } else { ours };
    let (t_key, seed_key) = (
        key("actor_temperature", "sequential_temperature"),
        key("actor_seed", "seed"),
    );
    let temperature = match v.get(t_key) {
        None | Some(Value::Null) => 0.0,
        Some(x) => x.as_f64().filter(|t| *t >= 0.0).ok_or_else(|| bad(t_key))?,
    };
    let seed = match v.get(seed_key) {
        None | Some(Value::Null) => 0,
        Some(x) => x.as_u64().ok_or_else(|| bad(seed_key))?,
    };
    Ok((label, temperature, seed))
}

/// The indices of the `trial-NN` folders, 0, 1, ... up to the first gap.
fn trial_indices(dir: &Path) -> Result<Vec<u32>, LabError> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LabError::file(dir, e))? {
        let entry = entry.map_err(|e| LabError::file(dir, e))?;
        let name = entry.file_name();
        let index = name
            .to_str()
            .and_then(|n| n.strip_prefix("trial-"))
            .filter(|d| d.len() >= 2 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok().filter(|i| format!("{i:02}") == d));
        if let Some(i) = index.filter(|_| entry.path().is_dir()) {
            found.insert(i);
        }
    }
    Ok((0..).take_while(|i| found.contains(i)).collect())
}

/// Each task's outcome in trial `t`: every `*.json` of `trial-NN/` (temporary files of atomic
/// writes start with a dot and are left out).
fn read_trial(dir: &Path, t: u32) -> Result<BTreeMap<String, bool>, LabError> {
    let folder = trial_dir(dir, t);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&folder).map_err(|e| LabError::file(&folder, e))? {
        let path = entry.map_err(|e| LabError::file(&folder, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.ends_with(".json") && !n.starts_with('.')) {
            files.push(path);
        }
    }
    files.sort();
    let mut outcomes = BTreeMap::new();
    for path in files {
        let (id, solved) = read_task(&path, t)?;
        if outcomes.insert(id.clone(), solved).is_some() {
            return Err(LabError::file(
                &path,
                format!("task {id:?} has another file in this trial"),
            ));
        }
    }
    Ok(outcomes)
}

/// A task file's id and outcome (`success`, or HumanEval's `passed`; a RISE result, whose id
/// is `problem_id`, is solved when one of its attempts is right).
fn read_task(path: &Path, t: u32) -> Result<(String, bool), LabError> {
    let v = read_value(path, MAX_TASK_BYTES, "not found")?;
    if let Some(solved) = rise_solved(&v) {
        let id = v.get("problem_id").and_then(Value::as_str);
        let id = id.ok_or_else(|| LabError::file(path, "no `problem_id`: not a RISE result"))?;
        return Ok((id.to_string(), solved));
    }
    let id = v
        .get("task_id")
        .and_then(Value::as_str)
        .ok_or_else(|| LabError::file(path, "no `task_id`: not a task result"))?;
    let solved = v
        .get("success")
        .and_then(Value::as_bool)
        .or_else(|| v.get("passed").and_then(Value::as_bool))
        .ok_or_else(|| {
            LabError::file(
                path,
                "neither `success` nor `passed` is true or false: not a trial run's task result",
            )
        })?;
    if let Some(other) = v.get("trial").and_then(Value::as_u64) {
        if other != u64::from(t) {
            return Err(LabError::file(
                path,
                format!("holds trial index {other}, in the folder of trial index {t}"),
            ));
        }
    }
    Ok((id.to_string(), solved))
}

/// A RISE result's outcome (`eval gsm8k`, `improve`'s evaluations): some attempt, sequential
/// or parallel, with reward 1; `None` for other files.
fn rise_solved(v: &Value) -> Option<bool> {
    let attempts = |key: &str| v.get(key).and_then(Value::as_array);
    let (seq, par) = (attempts("sequential")?, attempts("parallel")?);
    let right = |a: &Value| {
        a.get("reward")
            .and_then(Value::as_f64)
            .is_some_and(|r| r >= 1.0)
    };
    Some(seq.iter().chain(par).any(right))
}

/// Where trial 0's summary exists (the trial ended), it must count the tasks found: fewer files
/// mean some were removed, and the task set would be wrong.
fn check_first_summary(dir: &Path, found: usize) -> Result<(), LabError> {
    let path = dir.join("trial-00.json");
    if !path.exists() {
        return Ok(());
    }
    let v = read_value(&path, MAX_SETTINGS_BYTES, "not found")?;
    match v.get("tasks").and_then(Value::as_u64) {
        Some(n) if n != found as u64 => Err(LabError::file(
            &path,
            format!("counts {n} tasks, but trial-00 holds {found} task files"),
        )),
        _ => Ok(()),
    }
}

/// Writes `compare.json` and the chart (`compare.svg`, `compare.png`: success rate by trial,
/// one line per run) into `out`, made if missing; returns the files written.
pub fn write_report(report: &CompareReport, out: &Path) -> Result<Vec<PathBuf>, LabError> {
    std::fs::create_dir_all(out).map_err(|e| LabError::file(out, e))?;
    let json = out.join("compare.json");
    let mut bytes = serde_json::to_vec_pretty(report).map_err(|e| LabError::file(&json, e))?;
    bytes.push(b'\n');
    write_atomic(&json, &bytes).map_err(|e| LabError::file(&json, e))?;
    let series: Vec<Series> = report
        .runs
        .iter()
        .map(|r| Series {
            label: r.label.clone(),
            points: (1..)
                .map(f64::from)
                .zip(r.success_rate.iter().copied())
                .collect(),
        })
        .collect();
    let svg = line_chart_svg(
        "Success rate by trial",
        "trial",
        "success rate",
        (0.0, 1.0),
        &series,
    );
    let mut written = vec![json];
    written.extend(write_chart(&out.join("compare"), &svg)?);
    Ok(written)
}

/// What a pair's difference mixes in besides the arms: another machine's kernels, another
/// target profile's numerics, or a run with no record of either.
fn provenance_lines(report: &CompareReport, p: &Pair) -> Vec<String> {
    let (ra, rb) = (&report.runs[p.a], &report.runs[p.b]);
    let mut out = Vec::new();
    match p.same_machine {
        Some(false) => out.push(format!(
            "[{}] and [{}] ran on different machines, whose kernels round differently: greedy answers differ across CPUs, and that noise is in the difference",
            p.b, p.a
        )),
        // Said only when the other run has a record: most environments keep none.
        None if !(ra.machines.is_empty() && rb.machines.is_empty()) => out.push(format!(
            "[{}] and [{}]: one run's machine is not recorded (it has no sessions.json)",
            p.b, p.a
        )),
        _ => {}
    }
    if p.same_numerics == Some(false) {
        out.push(format!(
            "[{}] and [{}] were not all decoded with the same numerics ([{}]: {}; [{}]: {}): the difference mixes the settings in",
            p.b,
            p.a,
            p.b,
            rb.numerics.join(" then "),
            p.a,
            ra.numerics.join(" then ")
        ));
    }
    out
}

/// The report as a table for people: the runs, then per pair and trial (counted from 1) the
/// rates, the difference in percentage points with both intervals, the p-value and the table.
pub fn lines(report: &CompareReport) -> Vec<String> {
    let mut lines = vec![
        "runs (run 0 is the baseline; success is cumulative: solved in this trial or before):"
            .to_string(),
    ];
    for (i, r) in report.runs.iter().enumerate() {
        lines.push(format!(
            "  [{i}] {}: {} tasks, {} of {} trials ({})",
            printable(&r.label, false),
            r.tasks,
            r.trials,
            r.planned_trials,
            printable(&r.path, false)
        ));
    }
    for (i, r) in report.runs.iter().enumerate() {
        let on: Vec<String> = r.machines.iter().map(Machine::label).collect();
        if !on.is_empty() {
            lines.push(format!("  [{i}] ran on {}", on.join("; ")));
        }
    }
    let pct = (report.confidence * 100.0).round();
    for p in &report.pairs {
        lines.push(String::new());
        lines.extend(provenance_lines(report, p));
        lines.push(format!(
            "[{b}] vs [{a}]: difference = [{b}] - [{a}] in points; {pct}% intervals: exact (conditional, agrees with the test), paired bootstrap ({} resamples), Newcombe score; exact McNemar p",
            report.resamples,
            a = p.a,
            b = p.b
        ));
        lines.push(format!(
            "{:>5} {:>5} {:>7} {:>7} {:>7}  {:<16} {:<16} {:<16} {:>9} {:>5} {:>7} {:>7} {:>7}",
            "trial",
            "n",
            format!("rate[{}]", p.a),
            format!("rate[{}]", p.b),
            "diff",
            "exact",
            "bootstrap",
            "score",
            "p",
            "both",
            format!("only[{}]", p.b),
            format!("only[{}]", p.a),
            "neither"
        ));
        lines.extend(p.trials.iter().map(trial_line));
    }
    lines
}

/// A p-value with `decimals` decimals, or two significant digits below 0.001 (`5.4e-9`), where
/// the decimals would print zeros.
pub(crate) fn p_text(p: f64, decimals: usize) -> String {
    if p >= 0.001 {
        format!("{p:.decimals$}")
    } else {
        format!("{p:.1e}")
    }
}

fn trial_line(t: &TrialComparison) -> String {
    let pts = |x: f64| format!("{:+.1}", x * 100.0);
    let interval = |[lo, hi]: [f64; 2]| format!("[{}, {}]", pts(lo), pts(hi));
    let p = p_text(t.p_value, 4);
    format!(
        "{:>5} {:>5} {:>7.3} {:>7.3} {:>7}  {:<16} {:<16} {:<16} {:>9} {:>5} {:>7} {:>7} {:>7}",
        t.trial + 1,
        t.n,
        t.rate_a,
        t.rate_b,
        pts(t.difference),
        interval(t.exact_interval),
        interval(t.interval),
        interval(t.score_interval),
        p,
        t.table.both,
        t.table.only_b,
        t.table.only_a,
        t.table.neither
    )
}

#[cfg(test)]
mod tests;
