//! The trial runner with a toy environment: a task is solved when the agent's memory holds a
//! reflection that names its answer. (HotPotQA's and the household's runs go through the same
//! runner in `retroformer-envs`.)

use super::*;
use crate::agent::reflect::Reflection;
use retroformer_core::records::RatingRecord;

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
            message: None,
        })
    }

    fn judge(&self, i: usize, saved: &TaskResult) -> Option<bool> {
        Some(saved.answer.as_deref() == Some(format!("{i}").as_str()))
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
        ..Default::default()
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
    // Each record names who wrote it: here the actor `a` (no such manifest or file, so no
    // sha256), greedy.
    let who = records[0]
        .reflector
        .as_ref()
        .expect("the reflector is recorded");
    assert_eq!(
        (who.model.as_str(), who.base_sha256.as_deref()),
        ("a", None)
    );
    assert_eq!(
        (who.adapter.as_deref(), who.temperature, who.seed),
        (None, 0.0, 0)
    );
    // Run again: everything is on disk, nothing is attempted.
    let mut again = Toy { calls: Vec::new() };
    run_trials(&tasks(2), &mut again, &cfg(3), dir.path(), &mut |_| {}).unwrap();
    assert!(again.calls.is_empty());
}

#[test]
fn trials_past_the_cap_are_refused_before_any_folder_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut agent = Toy { calls: Vec::new() };
    let err = run_trials(
        &tasks(1),
        &mut agent,
        &cfg(MAX_TRIALS + 1),
        &out,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--trials"), "{err}");
    assert!(!out.exists() && agent.calls.is_empty());
}

#[test]
fn the_reflector_info_hashes_a_model_and_an_adapter_given_as_files() {
    let dir = tempfile::tempdir().unwrap();
    let (model, adapter) = (dir.path().join("m.gguf"), dir.path().join("a.gguf"));
    std::fs::write(&model, b"abc").unwrap();
    std::fs::write(&adapter, b"").unwrap();
    let mut c = cfg(2);
    c.reflector = model.display().to_string();
    c.reflector_adapter = Some(adapter.display().to_string());
    c.reflector_temperature = 0.7;
    c.reflector_seed = 4;
    let who = reflector_info(&c);
    // sha256("abc") and sha256("").
    assert_eq!(
        who.base_sha256.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(
        who.adapter_sha256.as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!((who.temperature, who.seed), (0.7, 4));
    // A manifest name takes the manifest's sha256.
    c.reflector = "smollm2-135m-instruct".into();
    let m = crate::manifest::Manifest::find("smollm2-135m-instruct").unwrap();
    assert_eq!(reflector_info(&c).base_sha256, Some(m.sha256));
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
        &cfg(MAX_TRIALS),
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

#[test]
fn the_placebo_shows_each_task_another_tasks_reflection_and_rates_none() {
    let dir = tempfile::tempdir().unwrap();
    let placebo = RunConfig {
        strategy: "placebo".into(),
        ..cfg(3)
    };
    let mut toy = Toy { calls: Vec::new() };
    let s = run_trials(&tasks(3), &mut toy, &placebo, dir.path(), &mut |_| {}).unwrap();
    // Task i is solved only by "answer i"; it is shown "answer i+1": nothing is solved.
    assert!(s.iter().all(|t| t.solved_total == 0), "{s:?}");
    // Its own reflection is still written (about itself) and saved.
    let r = load_task(dir.path(), 0, "t1").unwrap().unwrap();
    assert_eq!(r.reflection.unwrap().text, "answer 1");
    assert!(std::fs::read_to_string(dir.path().join("records.jsonl")).is_err());
    // The same run with Reflexion solves every task in its second trial.
    let dir = tempfile::tempdir().unwrap();
    let s = run_trials(
        &tasks(3),
        &mut Toy { calls: Vec::new() },
        &cfg(3),
        dir.path(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s[1].solved_total, 3);
}

#[test]
fn the_placebo_view_takes_the_next_failed_tasks_reflection_of_the_same_trial() {
    let result = |i: usize, trial: u32, refl: Option<&str>| TaskResult {
        format_version: FORMAT_VERSION,
        task_id: format!("t{i}"),
        trial,
        question: String::new(),
        gold: String::new(),
        answer: None,
        success: false,
        halted: false,
        episode_return: 0.0,
        steps: Vec::new(),
        scratchpad: String::new(),
        reflection: refl.map(|t| Reflection {
            prompt: String::new(),
            text: t.into(),
            message: None,
        }),
        wall_ms: 0.0,
    };
    let history = vec![
        vec![result(0, 0, Some("r0")), result(0, 1, Some("r0b"))],
        vec![result(1, 0, None)],
        vec![result(2, 0, Some("r2")), result(2, 1, Some("r2b"))],
        vec![result(3, 0, Some("r3"))],
    ];
    let text = |v: &Vec<Vec<TaskResult>>, i: usize, t: usize| {
        v[i][t].reflection.as_ref().map(|r| r.text.clone())
    };
    let view = placebo_view(&history);
    assert_eq!(text(&view, 0, 0).as_deref(), Some("r2"));
    assert_eq!(text(&view, 2, 0).as_deref(), Some("r3"));
    assert_eq!(text(&view, 3, 0).as_deref(), Some("r0"));
    assert_eq!(text(&view, 1, 0), None);
    assert_eq!(text(&view, 0, 1).as_deref(), Some("r2b"));
    assert_eq!(text(&view, 2, 1).as_deref(), Some("r0b"));
    // An empty reflection is shown to nobody, under any strategy.
    let mut with_empty = history.clone();
    with_empty[3][0].reflection.as_mut().unwrap().text = " ".into();
    let shown = shown_history(&with_empty, Strategy::Reflexion);
    assert_eq!(text(&shown.to_vec(), 3, 0), None);
    assert_eq!(text(&shown.to_vec(), 0, 0).as_deref(), Some("r0"));
}

#[test]
fn actor_seeds_are_fixed_per_task_and_trial_and_differ_between_them() {
    let sampled = RunConfig {
        actor_temperature: 0.8,
        actor_top_p: 0.9,
        actor_seed: 3,
        ..cfg(2)
    };
    let a = sampled.actor_sampling("t1", 0);
    assert_eq!(a, sampled.actor_sampling("t1", 0));
    assert!((a.temperature - 0.8).abs() < 1e-6 && (a.top_p - 0.9).abs() < 1e-6);
    let seeds: std::collections::HashSet<u32> = ["t1", "t2"]
        .iter()
        .flat_map(|t| (0..3).map(move |k| actor_seed(3, t, k)))
        .collect();
    assert_eq!(seeds.len(), 6);
    assert_ne!(actor_seed(3, "t1", 0), actor_seed(4, "t1", 0));
    assert!(cfg(2).actor_sampling("t1", 1).is_greedy());
    // Unset sampling settings leave run.json as older versions wrote it.
    let json = serde_json::to_value(cfg(2)).unwrap();
    assert!(json.get("actor_temperature").is_none() && json.get("actor_seed").is_none());
}

/// A streaming agent: it ends its tasks in reverse order, and can fail after `fail_after`
/// attempts (as a killed run would) or skip the last task (a broken agent).
struct Stream {
    toy: Toy,
    fail_after: Option<usize>,
    skip_last: bool,
}

impl TrialAgent for Stream {
    fn attempt(&mut self, i: usize, e: &[TaskResult], t: u32) -> Result<Attempt, RunError> {
        self.toy.attempt(i, e, t)
    }
    fn reflect(&mut self, i: usize, a: &Attempt, e: &[TaskResult]) -> Result<Reflection, RunError> {
        self.toy.reflect(i, a, e)
    }
    fn parallelism(&self) -> usize {
        4
    }
    fn attempt_stream(
        &mut self,
        tasks: &[(usize, &[TaskResult])],
        trial: u32,
        done: &mut AttemptDone<'_>,
    ) -> Result<(), RunError> {
        let last = usize::from(self.skip_last);
        for (n, k) in (last..tasks.len()).rev().enumerate() {
            if self.fail_after == Some(n) {
                return Err(RunError::Config("killed".into()));
            }
            let (i, earlier) = tasks[k];
            done(k, self.toy.attempt(i, earlier, trial)?)?;
        }
        Ok(())
    }
}

#[test]
fn a_streamed_attempt_is_saved_as_it_ends_and_a_killed_run_resumes_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut killed = Stream {
        toy: Toy { calls: Vec::new() },
        fail_after: Some(2),
        skip_last: false,
    };
    let mut seen = Vec::new();
    let err = run_trials(&tasks(4), &mut killed, &cfg(2), dir.path(), &mut |r| {
        seen.push(r.task_id.clone())
    });
    assert!(matches!(err, Err(RunError::Config(m)) if m == "killed"));
    // The two attempts that ended (tasks 3 and 2, in that order) are on disk, unreflected.
    assert_eq!(seen, ["t3", "t2"]);
    for id in ["t3", "t2"] {
        let saved = load_task(dir.path(), 0, id).unwrap().expect("saved");
        assert!(saved.reflection.is_none());
    }
    assert!(load_task(dir.path(), 0, "t1").unwrap().is_none());
    let mut rest = Stream {
        toy: Toy { calls: Vec::new() },
        fail_after: None,
        skip_last: false,
    };
    let sums = run_trials(&tasks(4), &mut rest, &cfg(2), dir.path(), &mut |_| {}).unwrap();
    // Only tasks 0 and 1 are attempted in trial 0; every failure got its reflection, so all
    // four are solved in trial 1.
    assert_eq!(&rest.toy.calls[..2], [(1, 0), (0, 0)]);
    assert_eq!(sums[1].solved_total, 4);
    let saved = load_task(dir.path(), 0, "t3").unwrap().expect("saved");
    assert_eq!(
        saved.reflection.map(|r| r.text).as_deref(),
        Some("answer 3")
    );
}

#[test]
fn an_agent_whose_stream_leaves_out_a_task_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = Stream {
        toy: Toy { calls: Vec::new() },
        fail_after: None,
        skip_last: true,
    };
    let err = run_trials(&tasks(3), &mut broken, &cfg(1), dir.path(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("\"t0\""), "{err}");
}

#[test]
fn a_parallel_agent_without_a_stream_runs_groups_of_eight_lanes_worth() {
    struct Groups(Vec<usize>);
    impl TrialAgent for Groups {
        fn attempt(&mut self, i: usize, _: &[TaskResult], _: u32) -> Result<Attempt, RunError> {
            Ok(Attempt {
                answer: Some(i.to_string()),
                success: true,
                halted: false,
                episode_return: 1.0,
                steps: Vec::new(),
                scratchpad: String::new(),
            })
        }
        fn reflect(
            &mut self,
            _: usize,
            _: &Attempt,
            _: &[TaskResult],
        ) -> Result<Reflection, RunError> {
            unreachable!("every attempt succeeds")
        }
        fn parallelism(&self) -> usize {
            2
        }
        fn attempt_many(
            &mut self,
            tasks: &[(usize, &[TaskResult])],
            trial: u32,
        ) -> Result<Vec<Attempt>, RunError> {
            self.0.push(tasks.len());
            tasks
                .iter()
                .map(|(i, e)| self.attempt(*i, e, trial))
                .collect()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Groups(Vec::new());
    run_trials(&tasks(40), &mut agent, &cfg(1), dir.path(), &mut |_| {}).unwrap();
    assert_eq!(agent.0, [16, 16, 8]);
}

#[test]
fn a_resumed_run_refuses_a_result_edited_to_say_solved_or_written_for_another_question() {
    let dir = tempfile::tempdir().unwrap();
    let run = |tasks: &[TaskInfo], trials: u32| {
        run_trials(
            tasks,
            &mut Toy { calls: Vec::new() },
            &cfg(trials),
            dir.path(),
            &mut |_| {},
        )
    };
    run(&tasks(2), 1).unwrap();
    let path = task_path(dir.path(), 0, "t0");
    let honest = std::fs::read(&path).unwrap();
    let mut r: TaskResult = serde_json::from_slice(&honest).unwrap();
    assert!(!r.success, "the toy fails every first trial");
    r.success = true;
    std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
    let e = run(&tasks(2), 2).unwrap_err().to_string();
    assert!(e.contains("t0.json") && e.contains("edited"), "{e}");
    std::fs::write(&path, &honest).unwrap();
    let mut changed = tasks(2);
    changed[1].question = "another question".into();
    let e = run(&changed, 2).unwrap_err().to_string();
    assert!(
        e.contains("t1.json") && e.contains("another question or gold"),
        "{e}"
    );
    let summaries = run(&tasks(2), 2).unwrap();
    assert_eq!(summaries[1].solved_total, 2, "the honest files resume");
}
