//! The trial runner with a toy environment: a task is solved when the agent's memory holds a
//! reflection that names its answer. (HotPotQA's and the household's runs go through the same
//! runner in `retroformer-envs`.)

use super::*;
use crate::agent::reflect::Reflection;

/// Task `i` is solved once a reflection says `answer i`; a failed attempt's reflection says
/// `answer i` from the second trial on (so one reflection makes the next trial succeed).
struct Toy {
    calls: Vec<(usize, u32)>,
}

impl TrialAgent for Toy {
    fn attempt(
        &mut self,
        i: usize,
        earlier: &[TaskResult],
        trial: u32,
    ) -> Result<Attempt, RunError> {
        self.calls.push((i, trial));
        let told = earlier
            .iter()
            .filter_map(|r| r.reflection.as_ref())
            .any(|r| r.text == format!("answer {i}"));
        Ok(Attempt {
            answer: Some(if told { format!("{i}") } else { "?".into() }),
            success: told,
            halted: false,
            episode_return: if told { 1.0 } else { 0.0 },
            steps: Vec::new(),
            scratchpad: format!("tried {i} in trial {trial}"),
        })
    }

    fn reflect(
        &mut self,
        i: usize,
        attempt: &Attempt,
        _: &[TaskResult],
    ) -> Result<Reflection, RunError> {
        Ok(Reflection {
            prompt: attempt.scratchpad.clone(),
            text: format!("answer {i}"),
        })
    }
}

fn cfg(trials: u32) -> RunConfig {
    RunConfig {
        agent: "toy".into(),
        trials,
        strategy: "reflexion".into(),
        memory: 3,
        max_steps: 1,
        actor: "a".into(),
        reflector: "actor".into(),
        reflector_adapter: None,
        reflector_temperature: 0.0,
        reflector_seed: 0,
        env: BTreeMap::new(),
    }
}

fn tasks(n: usize) -> Vec<TaskInfo> {
    (0..n)
        .map(|i| TaskInfo {
            id: format!("t{i}"),
            question: format!("task {i}"),
            gold: format!("{i}"),
        })
        .collect()
}

#[test]
fn a_reflection_that_helps_is_rated_plus_one_and_solved_tasks_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Toy { calls: Vec::new() };
    let sums = run_trials(&tasks(2), &mut agent, &cfg(3), dir.path(), &mut |_| {}).unwrap();
    let rates: Vec<f64> = sums.iter().map(|s| s.success_rate).collect();
    assert_eq!(rates, [0.0, 1.0, 1.0]);
    assert_eq!(agent.calls, [(0, 0), (1, 0), (0, 1), (1, 1)]);
    let records: Vec<RatingRecord> = std::fs::read_to_string(dir.path().join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| (r.rating - 1.0).abs() < 1e-6 && r.trial == 0));
    // Run again: everything is on disk, nothing is attempted.
    let mut again = Toy { calls: Vec::new() };
    run_trials(&tasks(2), &mut again, &cfg(3), dir.path(), &mut |_| {}).unwrap();
    assert!(again.calls.is_empty());
}

#[test]
fn environment_settings_that_are_zero_match_runs_saved_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut saved = cfg(1);
    saved
        .env
        .insert("max_prompt_tokens".into(), serde_json::Value::from(0));
    saved.env.insert("global_docstore".into(), false.into());
    run_trials(
        &tasks(1),
        &mut Toy { calls: Vec::new() },
        &saved,
        dir.path(),
        &mut |_| {},
    )
    .unwrap();
    // Environment settings are saved at the top level of run.json, as before.
    let text = std::fs::read_to_string(dir.path().join("run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["global_docstore"], false);
    assert_eq!(v["max_steps"], 1);
    // The same run without the zero-valued settings resumes (and may add trials).
    run_trials(
        &tasks(1),
        &mut Toy { calls: Vec::new() },
        &cfg(2),
        dir.path(),
        &mut |_| {},
    )
    .unwrap();
    let mut other = cfg(2);
    other.env.insert("global_docstore".into(), true.into());
    let e = run_trials(
        &tasks(1),
        &mut Toy { calls: Vec::new() },
        &other,
        dir.path(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("other settings"), "{e}");
}

#[test]
fn task_ids_become_file_names_one_to_one() {
    assert_eq!(file_stem("a/b"), "x612f62");
    assert_eq!(
        file_stem("5a8b57f25542995d1e6f1371"),
        "5a8b57f25542995d1e6f1371"
    );
    // An id that looks like another's encoding, and ids that differ in case only, get names
    // of their own.
    let ids = [
        "a/b",
        "x612f62",
        "Q1",
        "q1",
        "",
        "x",
        &"y".repeat(300),
        &"y".repeat(301),
    ];
    let stems: std::collections::HashSet<String> = ids.iter().map(|i| file_stem(i)).collect();
    assert_eq!(stems.len(), ids.len(), "{stems:?}");
    let lower: std::collections::HashSet<String> = stems.iter().map(|s| s.to_lowercase()).collect();
    assert_eq!(lower.len(), ids.len());
    assert!(stems.iter().all(|s| !s.is_empty() && s.len() <= 130));
}

#[test]
fn duplicate_ids_an_empty_task_set_and_a_result_file_of_another_task_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut twice = tasks(2);
    twice[1].id = twice[0].id.clone();
    let e = run_trials(
        &twice,
        &mut Toy { calls: Vec::new() },
        &cfg(1),
        dir.path(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");
    let e = run_trials(
        &[],
        &mut Toy { calls: Vec::new() },
        &cfg(1_000_000),
        dir.path(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("no task"), "{e}");
    assert!(!trial_dir(dir.path(), 0).exists());
    // A result file that says it is another task's is not credited to this one.
    run_trials(
        &tasks(2),
        &mut Toy { calls: Vec::new() },
        &cfg(1),
        dir.path(),
        &mut |_| {},
    )
    .unwrap();
    std::fs::copy(
        task_path(dir.path(), 0, "t1"),
        task_path(dir.path(), 0, "t0"),
    )
    .unwrap();
    let e = load_task(dir.path(), 0, "t0").unwrap_err().to_string();
    assert!(e.contains("holds task \"t1\""), "{e}");
}

#[test]
fn a_result_saved_under_the_old_name_of_an_id_with_capitals_still_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = vec![TaskInfo {
        id: "Task-A".into(),
        question: "q".into(),
        gold: "g".into(),
    }];
    run_trials(
        &tasks,
        &mut Toy { calls: Vec::new() },
        &cfg(1),
        dir.path(),
        &mut |_| {},
    )
    .unwrap();
    let new = task_path(dir.path(), 0, "Task-A");
    assert!(new.ends_with(format!("{}.json", file_stem("Task-A"))));
    let old = trial_dir(dir.path(), 0).join("Task-A.json");
    std::fs::rename(&new, &old).unwrap();
    let r = load_task(dir.path(), 0, "Task-A").unwrap().unwrap();
    assert_eq!(r.task_id, "Task-A");
}

#[test]
fn a_runs_legend_names_the_reflector_only_when_it_is_not_the_plain_actor() {
    let mut label = RunLabel {
        agent: "react".into(),
        strategy: "reflexion".into(),
        actor: "qwen".into(),
        trials: 3,
        reflector: Some("actor".into()),
        reflector_adapter: None,
    };
    assert_eq!(label.legend(), "react + reflexion (qwen)");
    label.reflector = None;
    assert_eq!(label.legend(), "react + reflexion (qwen)");
    label.reflector = Some("smollm2".into());
    assert_eq!(
        label.legend(),
        "react + reflexion (qwen; reflector smollm2)"
    );
    label.reflector_adapter =
        Some("/home/a/adapters/b1/versions/50abf14192561941/adapter.gguf".into());
    assert_eq!(
        label.legend(),
        "react + reflexion (qwen; reflector smollm2 + adapter 50abf14192561941)"
    );
    label.reflector_adapter = Some("runs/refl.gguf".into());
    assert_eq!(
        label.legend(),
        "react + reflexion (qwen; reflector smollm2 + adapter refl.gguf)"
    );
    // A run.json without the reflector fields (older runs, other agents) still reads.
    let old: RunLabel =
        serde_json::from_str(r#"{"agent":"react","strategy":"none","actor":"qwen","trials":1}"#)
            .unwrap();
    assert_eq!(old.legend(), "react + none (qwen)");
}
