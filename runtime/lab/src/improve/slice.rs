//! A slice of a finished `improve` run evaluated again on this machine (`retroformer demo`):
//! the base and the run's adapter, greedy, on the first problems (GSM8K) or tasks (the
//! household) of the run's held-out evaluation set. It shows that the committed result
//! reproduces here and what the trained model does; a slice this small cannot tell a gain of a
//! few points from chance, so the full evaluation's figure is printed beside it.

use std::path::{Path, PathBuf};

use retroformer::agent::files::{read_json, write_json};
use retroformer::provenance::{one_machine, provenance_in, Machine};
use retroformer_envs::household::TaskSpec;
use retroformer_envs::math::{self, Dataset, MathProblem};
use retroformer_envs::{Chart, Progress};
use serde::{Deserialize, Serialize};

use super::env::Timed;
use super::{actor_store, Comparison, Ctx, ImprovePlan, ImproveReport, ImproveSettings, Score};
use crate::compare::{p_text, paired, Table, TrialComparison};
use crate::{LabError, ModelSource};

mod gsm8k;
mod household;

/// Format version of `demo.json` (2: `env`, and a household run's tasks).
pub const SLICE_FORMAT_VERSION: u32 = 2;
/// `demo.json`'s `kind`.
pub const SLICE_KIND: &str = "improve-slice";

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct SlicePlan {
    /// The finished `improve` run's folder (its `improve.json` and adapters).
    pub run: PathBuf,
    /// Problems: the first N of the run's evaluation set (`None`: 50 GSM8K problems, 12
    /// household tasks).
    pub problems: Option<usize>,
    /// Requests decoded together.
    pub parallel: u32,
    /// The output folder.
    pub out: PathBuf,
}

/// One arm on the slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceArm {
    /// `base` or the run's arm name (`r1-s1`).
    pub name: String,
    /// The adapter, relative to the run's folder (`None`: the base alone).
    pub adapter: Option<PathBuf>,
    /// The score on the slice (`run` names this folder's evaluation).
    pub score: Score,
    /// Problems whose parsed answer (or its absence) is the one the run's own evaluation
    /// saved (household tasks: whose episode took the same actions), and how many the run had
    /// saved; `None` when the run has not evaluated this arm.
    pub same_as_run: Option<(usize, usize)>,
    /// The machines of the run's own evaluation of this arm (empty: not recorded), to tell
    /// answers that changed with the CPU from answers that should not have changed.
    #[serde(default)]
    pub run_machines: Vec<Machine>,
}

/// A problem where the two arms' outcomes differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The problem or task.
    pub problem_id: String,
    /// The gold answer, or the household task's goal.
    pub gold: String,
    /// The base's parsed answer, or how its episode ended.
    pub base: Option<String>,
    /// The trained arm's parsed answer, or how its episode ended.
    pub trained: Option<String>,
}

/// `demo.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceReport {
    /// [`SLICE_FORMAT_VERSION`].
    pub format_version: u32,
    /// [`SLICE_KIND`].
    pub kind: String,
    /// The run's environment: `gsm8k` or `household`.
    #[serde(default = "gsm8k")]
    pub env: String,
    /// The run's folder.
    pub run: PathBuf,
    /// The actor.
    pub model: String,
    /// Test problems skipped before the slice (the run's `eval_skip`).
    pub skip: usize,
    /// The run's evaluation set's size.
    pub run_problems: usize,
    /// The canary's verdict on the shown adapter: promoted, kept, or not judged yet.
    pub canary: Option<bool>,
    /// `base`, then the trained arm.
    pub arms: Vec<SliceArm>,
    /// The trained arm minus the base on the slice.
    pub paired: TrialComparison,
    /// The run's own comparison of the same arms (greedy), if it has one.
    pub full: Option<Comparison>,
    /// Problems where exactly one arm is right, the first few.
    pub examples: Vec<Example>,
}

fn gsm8k() -> String {
    "gsm8k".into()
}

/// Examples kept in the report.
const EXAMPLES: usize = 3;

/// The adapter to show: the last round's `s1` the canary promoted, else round 1's `s1` (which
/// the canary then kept, or has not judged yet). Its arm name, file (relative to the run), the
/// sha256 `improve.json` records and the canary's verdict.
pub fn shown_adapter(report: &ImproveReport) -> Option<(String, PathBuf, String, Option<bool>)> {
    let promoted = report
        .rounds
        .iter()
        .rev()
        .find(|r| r.canary.as_ref().is_some_and(|c| c.promoted));
    let round = promoted.or_else(|| report.rounds.first())?;
    let t = round.train.iter().find(|t| t.name == "s1")?;
    let verdict = round.canary.as_ref().map(|c| c.promoted);
    Some((
        format!("r{}-s1", round.round),
        PathBuf::from(&t.adapter),
        t.sha256.clone(),
        verdict,
    ))
}

/// The finished run the slice repeats: its folder and its report.
pub(super) struct TheRun<'a> {
    dir: &'a Path,
    report: &'a ImproveReport,
}

impl TheRun<'_> {
    /// The folder of the run's own greedy evaluation of `arm`, if it has one.
    fn greedy_dir(&self, arm: &str) -> Option<PathBuf> {
        let a = self.report.arms.iter().find(|a| a.name == arm)?;
        Some(self.dir.join(&a.greedy.as_ref()?.run))
    }
}

/// Reads `RUN/improve.json`, naming what is wrong.
fn read_run(run: &Path) -> Result<ImproveReport, LabError> {
    let path = run.join("improve.json");
    read_json::<ImproveReport>(&path)?.ok_or_else(|| {
        LabError::file(
            &path,
            "not found: the folder holds no `retroformer improve` run",
        )
    })
}

/// Checks the adapter's file against the sha256 `improve.json` records (a checkout without
/// the file's contents, a git LFS pointer or an edited file would otherwise be evaluated).
pub(super) fn check_adapter(file: &Path, sha256: &str) -> Result<(), LabError> {
    if !file.is_file() {
        return Err(LabError::file(file, "the run's adapter is missing"));
    }
    let got = retroformer::fetch::sha256_file(file, &retroformer::fetch::Silent)
        .map_err(|e| LabError::file(file, e))?;
    if got != sha256 {
        return Err(LabError::file(
            file,
            format!("sha256 {got}, but improve.json records {sha256}"),
        ));
    }
    Ok(())
}

/// One problem of the slice as an arm did it.
pub(super) struct Outcome {
    /// The problem's or the task's id.
    pub id: String,
    /// What is right: the gold answer, or the task's goal.
    pub gold: String,
    /// The arm's parsed answer (`None`: none), or how its episode ended.
    pub answer: Option<String>,
    /// The answer is the gold one, or the episode reached the goal.
    pub solved: bool,
}

/// An arm evaluated on the slice by its environment's module.
pub(super) struct Evaluated {
    /// The score (`run`: this evaluation's folder relative to the demo's).
    pub score: Score,
    /// This process's part (`None`: every problem was saved).
    pub timed: Option<Timed>,
    /// Each problem, in order.
    pub outcomes: Vec<Outcome>,
    /// Problems done as the run's own evaluation did them, and how many it saved (`None`: the
    /// run has not evaluated this arm).
    pub same_as_run: Option<(usize, usize)>,
}

/// The slice's problems, by environment.
enum Problems {
    Gsm8k(Vec<MathProblem>),
    Household(Vec<TaskSpec>),
}

impl Problems {
    /// The test problems of `s`, as its environment evaluates them.
    fn of(s: &ImproveSettings) -> Result<Self, LabError> {
        if s.env == "household" {
            return Ok(Self::Household(super::household::test_tasks(s)));
        }
        let test = math::env::load(Dataset::Gsm8k, s.eval_data.as_deref(), "test")?;
        let slice = test
            .get(s.eval_skip..s.eval_skip + s.eval_problems)
            .ok_or_else(|| LabError::setting("problems", "beyond the test split".to_string()))?;
        Ok(Self::Gsm8k(slice.to_vec()))
    }
}

/// The demo's default slice (or the run's whole evaluation set, if smaller): 50 GSM8K problems
/// (~5 minutes an arm on 2 cores), 12 household tasks (two of each type, each a whole episode
/// of up to 30 actions: the household run's adapter took 168 s for its 12 on 2 cores alone).
fn default_problems(env: &str) -> usize {
    if env == "household" {
        12
    } else {
        50
    }
}

/// Evaluates the slice (resumed from `out` if it was started), writes `demo.json` and the
/// chart; the report and the files written.
pub fn run_slice(
    plan: &SlicePlan,
    models: &dyn ModelSource,
    progress: &mut dyn Progress,
) -> Result<(SliceReport, Vec<PathBuf>), LabError> {
    let report = read_run(&plan.run)?;
    let s = &report.settings;
    if !["gsm8k", "household"].contains(&s.env.as_str()) {
        return Err(LabError::file(
            &plan.run.join("improve.json"),
            format!("a {} run: the demo shows GSM8K and household runs", s.env),
        ));
    }
    if same_folder(&plan.out, &plan.run) {
        return Err(LabError::setting(
            "out",
            "the run's own folder: the demo's evaluations would be taken for the run's; choose another",
        ));
    }
    let n = plan
        .problems
        .unwrap_or(default_problems(&s.env).min(s.eval_problems));
    if n == 0 || n > s.eval_problems {
        return Err(LabError::setting(
            "problems",
            format!("must be 1 to {}, the run's evaluation set", s.eval_problems),
        ));
    }
    let (name, rel, sha, canary) = shown_adapter(&report).ok_or_else(|| {
        LabError::file(
            &plan.run.join("improve.json"),
            "no round has trained an adapter yet",
        )
    })?;
    let adapter = plan.run.join(&rel);
    check_adapter(&adapter, &sha)?;
    // The run's settings but for the test slice: an environment evaluates all its test tasks.
    let settings = ImproveSettings {
        eval_problems: n,
        ..s.clone()
    };
    // Loaded first: it checks the settings' task ranges before they are used.
    let env = super::env::load(&settings)?;
    let problems = Problems::of(&settings)?;
    let improve_plan = ImprovePlan {
        settings,
        rounds: 0,
        parallel: plan.parallel,
        out: plan.out.clone(),
    };
    let base = models.resolve(&s.model)?;
    let (store, base_header) = actor_store(&base)?;
    let ctx = Ctx {
        plan: &improve_plan,
        env: env.as_ref(),
        models,
        store,
        base_path: base.path.clone(),
        base_header,
    };
    let the_run = TheRun {
        dir: &plan.run,
        report: &report,
    };
    let mut arms = Vec::new();
    let mut outcomes = Vec::new();
    for (arm, file) in [("base".to_string(), None), (name, Some(adapter))] {
        let e = match &problems {
            Problems::Gsm8k(p) => {
                gsm8k::evaluate_arm(&ctx, p, &the_run, &arm, file.as_deref(), progress)
            }
            Problems::Household(t) => {
                household::evaluate_arm(&ctx, t, &the_run, &arm, file.as_deref(), progress)
            }
        }
        .map_err(|e| e.during(format!("evaluate {arm}")))?;
        let made = provenance_in(&plan.out.join(&e.score.run))?;
        arms.push(SliceArm {
            adapter: file.as_ref().map(|_| rel.clone()),
            score: Score {
                wall_s: e.timed.map(|t| t.wall_s),
                wall_tasks: e.timed.map(|t| t.tasks),
                machines: made.machines,
                numerics: made.numerics,
                time: made.time,
                ..e.score
            },
            same_as_run: e.same_as_run,
            run_machines: report.machines(&arm, false).to_vec(),
            name: arm,
        });
        outcomes.push(e.outcomes);
    }
    let solved = |o: &[Outcome]| o.iter().map(|x| x.solved).collect::<Vec<bool>>();
    let table = Table::of(&solved(&outcomes[0]), &solved(&outcomes[1]));
    let full_name = format!("{} - base", arms[1].name);
    let slice = SliceReport {
        format_version: SLICE_FORMAT_VERSION,
        kind: SLICE_KIND.into(),
        env: s.env.clone(),
        run: plan.run.clone(),
        model: s.model.clone(),
        skip: s.eval_skip,
        run_problems: s.eval_problems,
        canary,
        paired: paired(0, table),
        full: report
            .comparisons
            .iter()
            .find(|c| c.name == full_name && c.metric == "greedy")
            .cloned(),
        examples: examples(&outcomes[0], &outcomes[1]),
        arms,
    };
    let mut files = vec![plan.out.join("demo.json")];
    write_json(&files[0], &slice)?;
    files.extend(crate::eval::draw(&chart(&slice, &report), &plan.out)?);
    Ok((slice, files))
}

/// Whether `a` is folder `b` (`a` may not exist yet, and then it is not).
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The first problems where exactly one arm is right.
fn examples(base: &[Outcome], trained: &[Outcome]) -> Vec<Example> {
    base.iter()
        .zip(trained)
        .filter(|(b, t)| b.solved != t.solved)
        .take(EXAMPLES)
        .map(|(b, t)| Example {
            problem_id: b.id.clone(),
            gold: b.gold.clone(),
            base: b.answer.clone(),
            trained: t.answer.clone(),
        })
        .collect()
}

/// `accuracy.svg`/`.png`: the two arms' greedy accuracy on the slice here and, beside, in the
/// run's full evaluation.
fn chart(slice: &SliceReport, report: &ImproveReport) -> Chart {
    let round = |name: &str| {
        name.strip_prefix('r')
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let here = slice
        .arms
        .iter()
        .map(|a| (round(&a.name), a.score.accuracy))
        .collect();
    let full = slice
        .arms
        .iter()
        .filter_map(|a| {
            let arm = report.arms.iter().find(|x| x.name == a.name)?;
            Some((round(&a.name), arm.greedy.as_ref()?.accuracy))
        })
        .collect::<Vec<_>>();
    let noun = slice.noun();
    let mut series = vec![(format!("this machine, {} {noun}", slice.paired.n), here)];
    if full.len() == 2 {
        series.push((format!("the run, {} {noun}", slice.run_problems), full));
    }
    let title = if slice.is_household() {
        format!(
            "Household greedy success, {}: base and trained",
            slice.model
        )
    } else {
        format!("GSM8K greedy accuracy, {}: base and trained", slice.model)
    };
    Chart {
        stem: "accuracy".into(),
        title,
        x_label: "round (0: base)".into(),
        y_label: if slice.is_household() {
            "success rate"
        } else {
            "accuracy"
        }
        .into(),
        series,
    }
}

impl SliceReport {
    fn is_household(&self) -> bool {
        self.env == "household"
    }

    /// What the slice is made of: `problems` (GSM8K) or `tasks` (the household).
    fn noun(&self) -> &'static str {
        if self.is_household() {
            "tasks"
        } else {
            "problems"
        }
    }

    /// The report as the demo prints it: each arm, the paired difference, what the slice can
    /// tell, the full evaluation's figure and a few problems where the arms differ.
    pub fn lines(&self) -> Vec<String> {
        let d = &self.paired;
        let trained = &self.arms[1].name;
        let mut out: Vec<String> = self.arms.iter().map(arm_line).collect();
        out.push(format!(
            "{trained} - base on these {} {}: {} points (95 % exact interval {} to {}, McNemar p = {})",
            d.n,
            self.noun(),
            points(d.difference),
            points(d.exact_interval[0]),
            points(d.exact_interval[1]),
            p_text(d.p_value, 3)
        ));
        out.push(self.what_it_tells());
        out.push(self.full_line());
        if !self.examples.is_empty() {
            out.push(if self.is_household() {
                "Tasks where exactly one of them reaches the goal (how each episode ended):".into()
            } else {
                "Problems where exactly one of them is right (parsed answers):".into()
            });
        }
        out.extend(self.examples.iter().map(|e| self.example_line(e)));
        out
    }

    fn example_line(&self, e: &Example) -> String {
        let trained = &self.arms[1].name;
        let a = |x: &Option<String>| x.clone().unwrap_or_else(|| "no answer".into());
        if self.is_household() {
            format!(
                "  {} ({}): base {}; {trained} {}",
                e.problem_id,
                e.gold,
                a(&e.base),
                a(&e.trained)
            )
        } else {
            format!(
                "  {}: gold {}, base {}, {trained} {}",
                e.problem_id,
                e.gold,
                a(&e.base),
                a(&e.trained)
            )
        }
    }

    /// One sentence on what this slice can and cannot tell; it agrees with the exact
    /// interval, which excludes 0 exactly when p < 0.05.
    fn what_it_tells(&self) -> String {
        let (n, noun) = (self.paired.n, self.noun());
        if self.paired.p_value < 0.05 {
            format!("On {n} {noun} this difference is one chance rarely gives (p < 0.05), but a slice this small says little about its size; the full evaluation below is the measure.")
        } else {
            format!("{n} {noun} cannot tell a difference of this size from chance (the interval holds 0); whether training helps is the full evaluation's question, below.")
        }
    }

    fn full_line(&self) -> String {
        let verdict = match self.canary {
            Some(true) => "promoted by the run's canary",
            Some(false) => "kept out by the run's canary",
            None => "not yet judged by the run's canary",
        };
        let head = format!(
            "The full experiment, {} {}-{} ({}/improve.json; adapter {}, {verdict})",
            if self.is_household() {
                "evaluation tasks"
            } else {
                "test problems"
            },
            self.skip + 1,
            self.skip + self.run_problems,
            self.run.display(),
            self.arms[1]
                .adapter
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
        );
        match &self.full {
            Some(c) => format!(
                "{head}: {} {} points (95 % exact interval {} to {}, bootstrap {} to {}), McNemar p = {}, Holm-adjusted {}. {}.",
                c.name,
                points(c.paired.difference),
                points(c.paired.exact_interval[0]),
                points(c.paired.exact_interval[1]),
                points(c.paired.interval[0]),
                points(c.paired.interval[1]),
                p_text(c.paired.p_value, 3),
                p_text(c.p_holm, 3),
                full_verdict(c, self.noun())
            ),
            None => format!("{head}: not evaluated yet; its figures appear here once the run has evaluated both arms."),
        }
    }
}

/// What the full evaluation says, in words that agree with its exact interval (which excludes
/// 0 exactly when p < 0.05) and with Holm's correction across the run's comparisons: a user
/// reading "+1.0 points" should not take it for a gain, nor p = 0.04 among six tests for an
/// established one.
pub(super) fn full_verdict(c: &Comparison, noun: &str) -> String {
    let p = &c.paired;
    let direction = if p.difference > 0.0 {
        "better"
    } else {
        "worse"
    };
    match (p.p_value < 0.05, c.p_holm < 0.05) {
        (true, true) => format!(
            "The adapter is {direction} than the base beyond chance, also after Holm's correction across the run's comparisons"
        ),
        (true, false) => format!(
            "The adapter is {direction} than the base by this test alone (p < 0.05), not after Holm's correction across the run's comparisons: suggestive, not established"
        ),
        (false, _) => format!(
            "The interval holds 0: on {} {noun} the run cannot tell the adapter from the base",
            p.n
        ),
    }
}

fn points(x: f64) -> String {
    format!("{:+.1}", 100.0 * x)
}

/// An arm's line; an arm with episode figures is the household's, whose every action is
/// admissible (the grammar), so it has no parsable rate to report.
pub(super) fn arm_line(a: &SliceArm) -> String {
    let s = &a.score;
    let right = (s.accuracy * s.answers as f64).round() as usize;
    let what = Words::of(a);
    let same = a.same_as_run.map_or(String::new(), |(same, n)| {
        format!(
            ", the same {} as the run's evaluation on {same} of {n}{}",
            what.output,
            if same < n {
                machines_note(a, &what)
            } else {
                String::new()
            }
        )
    });
    let wall = s.wall_s.map_or(String::new(), |w| {
        format!(
            ", {}",
            super::report::part_secs(w, s.wall_tasks, s.problems)
        )
    });
    match &s.episodes {
        Some(e) => format!(
            "{:<10} greedy success {:.3} ({right} of {}), {:.1} actions and {:.0} tokens an episode{same}{wall}",
            a.name, s.accuracy, s.answers, e.mean_actions, s.mean_tokens
        ),
        None => format!(
            "{:<10} greedy accuracy {:.3} ({right} of {}), parsable answers {:.3}, accuracy among parsable {:.3}, {:.0} tokens an answer{same}{wall}",
            a.name, s.accuracy, s.answers, s.parsable, s.accuracy_parsable, s.mean_tokens
        ),
    }
}

/// What an arm's evaluation is made of, in words: GSM8K's answers to problems, the
/// household's episodes on tasks.
struct Words {
    output: &'static str,
    unit: &'static str,
}

impl Words {
    fn of(a: &SliceArm) -> Self {
        match a.score.episodes {
            Some(_) => Words {
                output: "episode",
                unit: "task",
            },
            None => Words {
                output: "answer",
                unit: "problem",
            },
        }
    }
}

/// Why outputs may differ from the run's: the two evaluations' machines, when recorded.
fn machines_note(a: &SliceArm, w: &Words) -> String {
    let (output, unit) = (w.output, w.unit);
    let labels = |m: &[Machine]| m.iter().map(Machine::label).collect::<Vec<_>>().join("; ");
    let (there, here) = (&a.run_machines, &a.score.machines);
    match one_machine(there, here) {
        None => format!(" (the run's machine is not recorded; greedy {output}s may differ across CPUs, whose kernels round differently, and beside other {unit}s than in the run)"),
        // Measured (benches/results/improve-gsm8k/README.md): on one Xeon with one executable,
        // three of the slice's problems decoded alone got other greedy answers than beside
        // the slice's other 49, and the slice's 50 answers were reproduced exactly.
        Some(true) => format!(
            " (both on {}: llama.cpp's batched CPU kernels are not batch-invariant, and a {unit} decoded beside other {unit}s than in the run, as the slice's last ones or a resumed run's are, may get another greedy {output})",
            labels(here)
        ),
        Some(false) => format!(
            " (the run's on {}, this on {}: greedy {output}s may differ across CPUs, whose kernels round differently, and for a {unit} decoded beside other {unit}s than in the run)",
            labels(there),
            labels(here)
        ),
    }
}

#[cfg(test)]
mod tests;
