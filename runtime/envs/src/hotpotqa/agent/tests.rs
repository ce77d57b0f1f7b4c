use super::*;
use crate::hotpotqa::reflect::{HotpotqaReflection, ReflectionKind};
use crate::hotpotqa::Page;
use retroformer::agent::reflect::LlmReflector;
use retroformer::agent::runner::{load_task, task_path};
use retroformer_core::records::RatingRecord;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};

fn q(id: &str, answer: &str) -> Question {
    Question {
        id: id.into(),
        question: format!("Question {id}?"),
        answer: answer.into(),
        kind: "bridge".into(),
        level: "easy".into(),
        supporting_facts: vec![(format!("Page {id}"), 0)],
        pages: vec![Page {
            title: format!("Page {id}"),
            sentences: vec![format!("The answer is {answer}.")],
        }],
    }
}

fn cfg(trials: u32) -> RunConfig {
    RunConfig {
        agent: "react".into(),
        trials,
        strategy: "reflexion".into(),
        memory: 3,
        max_steps: 6,
        actor: "scripted".into(),
        reflector: "scripted".into(),
        reflector_adapter: None,
        reflector_temperature: 0.0,
        reflector_seed: 0,
        env: HotpotqaSettings::default().into_env(),
        ..Default::default()
    }
}

const ACTOR: [&str; 6] = [
    "t",
    "Finish[Pamela Hayden]",
    "t",
    "Finish[nope]",
    "t",
    "Finish[Springfield]",
];

/// Runs `questions` under `settings` with scripted actor and reflector replies.
fn run_cfg(
    out: &Path,
    settings: &RunConfig,
    questions: &[Question],
    actor_replies: &[&str],
    reflector_replies: &[&str],
) -> (Result<Vec<TrialSummary>, RunError>, ScriptedModel) {
    run_lanes(
        out,
        settings,
        questions,
        actor_replies,
        reflector_replies,
        1,
    )
}

/// [`run_cfg`] with `parallel` episodes at once.
fn run_lanes(
    out: &Path,
    settings: &RunConfig,
    questions: &[Question],
    actor_replies: &[&str],
    reflector_replies: &[&str],
    parallel: usize,
) -> (Result<Vec<TrialSummary>, RunError>, ScriptedModel) {
    let actor = ScriptedModel::new(actor_replies.iter().copied());
    let reflector_model = ScriptedModel::new(reflector_replies.iter().copied());
    let mut session = actor.session(&SessionOptions::default()).unwrap();
    let mut reflector = LlmReflector::new(
        reflector_model.session(&SessionOptions::default()).unwrap(),
        Box::new(HotpotqaReflection {
            kind: ReflectionKind::of_agent(&settings.agent),
            ..Default::default()
        }),
        64,
    );
    let r = run(
        questions,
        HotpotqaModels {
            actor: &actor,
            session: session.as_mut(),
            reflector: &mut reflector,
            parallel,
        },
        settings,
        out,
        &mut |_| {},
    );
    (r, actor)
}

fn run_with(
    out: &Path,
    actor_replies: &[&str],
    reflector_replies: &[&str],
) -> (Result<Vec<TrialSummary>, RunError>, ScriptedModel) {
    let questions = [q("q1", "Pamela Hayden"), q("q2", "Springfield")];
    run_cfg(out, &cfg(2), &questions, actor_replies, reflector_replies)
}

#[test]
fn a_two_trial_reflexion_run_writes_results_summaries_and_rating_records() {
    let dir = tempfile::tempdir().unwrap();
    let (r, actor) = run_with(dir.path(), &ACTOR, &["Search the page before answering."]);
    let sums = r.unwrap();
    assert_eq!(sums.len(), 2);
    assert_eq!(
        (sums[0].attempted, sums[0].solved_now, sums[0].solved_total),
        (2, 1, 1)
    );
    assert!((sums[0].success_rate - 0.5).abs() < 1e-9);
    assert_eq!(
        (sums[1].attempted, sums[1].solved_now, sums[1].solved_total),
        (1, 1, 2)
    );
    assert!((sums[1].success_rate - 1.0).abs() < 1e-9);

    // A solved task is not retried; the failed one carries its reflection.
    assert!(task_path(dir.path(), 0, "q1").exists());
    assert!(!task_path(dir.path(), 1, "q1").exists());
    let failed = load_task(dir.path(), 0, "q2").unwrap().unwrap();
    assert_eq!(failed.answer.as_deref(), Some("nope"));
    assert_eq!(
        failed.reflection.as_ref().unwrap().text,
        "Search the page before answering."
    );
    assert!(
        load_task(dir.path(), 1, "q2")
            .unwrap()
            .unwrap()
            .reflection
            .is_none(),
        "no reflection after the last trial"
    );

    // The retried task's prompt carries the reflection.
    let prompts: Vec<String> = actor.requests().into_iter().map(|r| r.prompt).collect();
    assert_eq!(prompts.len(), 6);
    assert!(prompts[4].contains("Reflections:\n- Search the page before answering.\nAnswers already judged incorrect (do not give them again): nope\n\nQuestion: Question q2?\nThought 1:"), "{}", prompts[4]);
    assert!(!prompts[2].contains("Reflections:"));

    // One rating record: trial 0 of q2, return 0 -> 1.
    let records = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap();
    let lines: Vec<RatingRecord> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].task_id, "q2");
    assert_eq!(lines[0].trial, 0);
    assert_eq!(lines[0].reflection, "Search the page before answering.");
    assert!(lines[0].prompt.ends_with("Reflection:"));
    assert!((lines[0].rating - 1.0).abs() < 1e-6);
    let summary: TrialSummary =
        serde_json::from_slice(&std::fs::read(dir.path().join("trial-01.json")).unwrap()).unwrap();
    assert_eq!(summary, sums[1]);
}

fn normalized(out: &Path) -> Vec<TaskResult> {
    let mut all = Vec::new();
    for trial in 0..2 {
        for id in ["q1", "q2"] {
            if let Some(mut r) = load_task(out, trial, id).unwrap() {
                // Timing and KV-reuse counts depend on the process (a resumed session starts
                // with a cold cache); everything else must be identical.
                r.wall_ms = 0.0;
                for s in &mut r.steps {
                    s.reused_tokens = 0;
                    s.evaluated_tokens = 0;
                }
                all.push(r);
            }
        }
    }
    all
}

#[test]
fn resuming_an_interrupted_run_gives_the_same_results_as_an_uninterrupted_one() {
    let whole = tempfile::tempdir().unwrap();
    run_with(whole.path(), &ACTOR, &["Search the page before answering."])
        .0
        .unwrap();

    let broken = tempfile::tempdir().unwrap();
    // The actor's script runs out during trial 1: the run stops with an error.
    let (r, _) = run_with(
        broken.path(),
        &ACTOR[..4],
        &["Search the page before answering."],
    );
    assert!(r.is_err());
    assert!(load_task(broken.path(), 0, "q2").unwrap().is_some());
    assert!(load_task(broken.path(), 1, "q2").unwrap().is_none());
    // Resume with only what remains: finished tasks are neither redone nor lost.
    let (r, actor) = run_with(broken.path(), &ACTOR[4..], &[]);
    r.unwrap();
    assert_eq!(actor.remaining(), 0);
    assert_eq!(normalized(whole.path()), normalized(broken.path()));
    assert_eq!(
        std::fs::read_to_string(whole.path().join("records.jsonl")).unwrap(),
        std::fs::read_to_string(broken.path().join("records.jsonl")).unwrap()
    );
}

#[test]
fn react_episodes_run_together_give_the_same_results_prompts_and_records_as_one_at_a_time() {
    let questions = [q("q1", "Pamela Hayden"), q("q2", "Springfield")];
    let one = tempfile::tempdir().unwrap();
    let (r, actor_one) = run_lanes(
        one.path(),
        &cfg(2),
        &questions,
        &ACTOR,
        &["Search the page before answering."],
        1,
    );
    r.unwrap();
    let together = tempfile::tempdir().unwrap();
    let (r, actor_together) = run_lanes(
        together.path(),
        &cfg(2),
        &questions,
        &ACTOR,
        &["Search the page before answering."],
        4,
    );
    let sums = r.unwrap();
    assert_eq!(actor_together.remaining(), 0);
    assert_eq!(
        (sums[1].solved_total, sums[1].attempted),
        (2, 1),
        "{sums:?}"
    );
    // The scripted session runs a stream one request at a time, follow-ups first: the
    // episodes' chains must ask exactly what the one-at-a-time agent asks.
    let prompts =
        |m: &ScriptedModel| -> Vec<String> { m.requests().into_iter().map(|r| r.prompt).collect() };
    assert_eq!(prompts(&actor_one), prompts(&actor_together));
    // Trial 1's two episodes went through one stream; trial 2's one task alone, as does every
    // task of the one-at-a-time run.
    assert_eq!(actor_together.streams(), [2]);
    assert!(actor_one.streams().is_empty());
    assert_eq!(normalized(one.path()), normalized(together.path()));
    assert_eq!(
        std::fs::read_to_string(one.path().join("records.jsonl")).unwrap(),
        std::fs::read_to_string(together.path().join("records.jsonl")).unwrap()
    );
}

#[test]
fn a_run_resumed_with_more_trials_reflects_on_its_last_failures_and_matches_one_run_throughout() {
    let whole = tempfile::tempdir().unwrap();
    run_with(whole.path(), &ACTOR, &["Search the page before answering."])
        .0
        .unwrap();

    let questions = [q("q1", "Pamela Hayden"), q("q2", "Springfield")];
    let grown = tempfile::tempdir().unwrap();
    // One trial: no reflection follows the last trial's failure.
    let (r, _) = run_cfg(grown.path(), &cfg(1), &questions, &ACTOR[..4], &[]);
    assert_eq!(r.unwrap().len(), 1);
    let failed = load_task(grown.path(), 0, "q2").unwrap().unwrap();
    assert!(failed.reflection.is_none());
    // The same folder with two trials: trial 0's failure gets its reflection first, then
    // trial 1 runs with it; files, records and settings end as in one two-trial run.
    let (r, actor) = run_cfg(
        grown.path(),
        &cfg(2),
        &questions,
        &ACTOR[4..],
        &["Search the page before answering."],
    );
    assert_eq!(r.unwrap().len(), 2);
    assert_eq!(actor.remaining(), 0);
    assert!(actor.requests()[0]
        .prompt
        .contains("Reflections:\n- Search the page before answering."));
    assert_eq!(normalized(whole.path()), normalized(grown.path()));
    assert_eq!(
        std::fs::read_to_string(whole.path().join("records.jsonl")).unwrap(),
        std::fs::read_to_string(grown.path().join("records.jsonl")).unwrap()
    );
    let saved: RunConfig =
        serde_json::from_slice(&std::fs::read(grown.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(saved, cfg(2));
    // Fewer trials than saved would drop trial 1 from the records: refused, nothing changed.
    let records = std::fs::read_to_string(grown.path().join("records.jsonl")).unwrap();
    let (r, actor) = run_cfg(grown.path(), &cfg(1), &questions, &[], &[]);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("holds a run of 2 trials") && e.contains("--trials 1"),
        "{e}"
    );
    assert!(actor.requests().is_empty());
    let saved: RunConfig =
        serde_json::from_slice(&std::fs::read(grown.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(saved, cfg(2));
    assert_eq!(
        std::fs::read_to_string(grown.path().join("records.jsonl")).unwrap(),
        records
    );
    let (r, _) = run_cfg(grown.path(), &cfg(0), &questions, &[], &[]);
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("--trials 0: must be 1 to"));
}

#[test]
fn a_run_extended_after_a_kill_in_its_last_trial_finishes_that_trial_then_goes_on() {
    let whole = tempfile::tempdir().unwrap();
    let questions = [q("q1", "Pamela Hayden"), q("q2", "Springfield")];
    // Three trials in one go: q2 fails twice (two reflections), then is solved.
    let actor3 = [
        "t",
        "Finish[Pamela Hayden]",
        "t",
        "Finish[nope]",
        "t",
        "Finish[still nope]",
        "t",
        "Finish[Springfield]",
    ];
    let reflections = ["First reflection.", "Second reflection."];
    run_cfg(whole.path(), &cfg(3), &questions, &actor3, &reflections)
        .0
        .unwrap();

    // Two trials, killed (the script runs out) before trial 1's attempt at q2 ends...
    let grown = tempfile::tempdir().unwrap();
    let (r, _) = run_cfg(
        grown.path(),
        &cfg(2),
        &questions,
        &actor3[..5],
        &reflections[..1],
    );
    assert!(r.is_err());
    assert!(load_task(grown.path(), 1, "q2").unwrap().is_none());
    // ...then run with three: trial 1 finishes (with its reflection, a trial follows now),
    // trial 2 runs; everything as in the uninterrupted three-trial run.
    let (r, actor) = run_cfg(
        grown.path(),
        &cfg(3),
        &questions,
        &actor3[4..],
        &reflections[1..],
    );
    assert_eq!(r.unwrap().len(), 3);
    assert_eq!(actor.remaining(), 0);
    let all = |out: &Path| {
        (0..3)
            .flat_map(|t| ["q1", "q2"].map(|id| (t, id)))
            .filter_map(|(t, id)| load_task(out, t, id).unwrap())
            .map(|mut r| {
                r.wall_ms = 0.0;
                for s in &mut r.steps {
                    s.reused_tokens = 0;
                    s.evaluated_tokens = 0;
                }
                r
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(all(whole.path()), all(grown.path()));
    assert_eq!(
        std::fs::read_to_string(whole.path().join("records.jsonl")).unwrap(),
        std::fs::read_to_string(grown.path().join("records.jsonl")).unwrap()
    );
}

#[test]
fn a_folder_holding_a_run_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &ACTOR, &["Search the page before answering."])
        .0
        .unwrap();
    let mut other = cfg(2);
    other.strategy = "none".into();
    let (r, _) = run_cfg(dir.path(), &other, &[q("q1", "x")], &["t"], &[]);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("other settings"), "{e}");
    other.strategy = "bogus".into();
    let fresh = tempfile::tempdir().unwrap();
    let (r, _) = run_cfg(fresh.path(), &other, &[q("q1", "x")], &["t"], &[]);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("unknown strategy 'bogus'"), "{e}");
}

#[test]
fn the_cot_agents_are_the_ones_the_settings_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cfg(1);
    settings.agent = "cot-context".into();
    let (r, actor) = run_cfg(
        dir.path(),
        &settings,
        &[q("q1", "Pamela Hayden")],
        &["The page says so.", "Finish[Pamela Hayden]"],
        &[],
    );
    assert!(r.unwrap()[0].solved_now == 1);
    let prompts: Vec<String> = actor.requests().into_iter().map(|r| r.prompt).collect();
    assert_eq!(prompts.len(), 2);
    assert!(
        prompts[0].ends_with(
            "Relevant Context: The answer is Pamela Hayden.\nQuestion: Question q1?\nThought:"
        ),
        "{}",
        prompts[0]
    );
    let done = load_task(dir.path(), 0, "q1").unwrap().unwrap();
    assert!(done
        .scratchpad
        .starts_with("\nThought: The page says so.\nAction: Finish[Pamela Hayden]"));
}

#[test]
fn a_chain_of_thought_with_context_reflects_on_its_trial_after_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cfg(2);
    settings.agent = "cot-context".into();
    let (r, _) = run_cfg(
        dir.path(),
        &settings,
        &[q("q1", "Pamela Hayden")],
        &[
            "Guess.",
            "Finish[Nancy] END",
            "Read it.",
            "Finish[Pamela Hayden]",
        ],
        &["Read the context before answering."],
    );
    assert_eq!(r.unwrap()[1].solved_total, 1);
    let first = load_task(dir.path(), 0, "q1").unwrap().unwrap();
    let prompt = first.reflection.unwrap().prompt;
    assert!(prompt.contains("Previous trial:\nRelevant Context: The answer is Pamela Hayden.\nQuestion: Question q1?\nThought: Guess.\nAction: Finish[Nancy] END"), "{prompt}");
    assert!(
        prompt.contains("Your answer \"Nancy\" was judged incorrect."),
        "{prompt}"
    );
    assert!(!prompt.contains("Docstore"), "{prompt}");
}

/// The two-question, two-trial run of [`run_with`] in a new folder, and its tasks.
fn finished_two_trial_run() -> (tempfile::TempDir, Vec<TaskInfo>) {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &ACTOR, &["Search the page before answering."])
        .0
        .unwrap();
    let tasks = hotpotqa_tasks(&[q("q1", "Pamela Hayden"), q("q2", "Springfield")]);
    (dir, tasks)
}

#[test]
fn a_run_seeded_with_another_runs_first_trial_reflects_with_its_own_reflector_and_skips_trial_one()
{
    let questions = [q("q1", "Pamela Hayden"), q("q2", "Springfield")];
    let (incumbent, tasks) = finished_two_trial_run();
    // The candidate: the same run with another reflector, seeded with the incumbent's trial 1.
    let candidate = tempfile::tempdir().unwrap();
    let mut settings = cfg(2);
    settings.reflector = "candidate".into();
    settings.reflector_adapter = Some("candidate.gguf".into());
    // Its reflections are sampled: a setting of the reflector too.
    settings.reflector_temperature = 0.7;
    settings.reflector_seed = 3;
    assert_eq!(
        seed_first_trial(incumbent.path(), candidate.path(), &settings, &tasks).unwrap(),
        2
    );
    // Trial 1 is not run again: the actor is asked only for q2's second trial, and its prompt
    // carries the candidate's reflection, not the incumbent's.
    let (r, actor) = run_cfg(
        candidate.path(),
        &settings,
        &questions,
        &ACTOR[4..],
        &["Look up the exact name."],
    );
    let sums = r.unwrap();
    assert_eq!(actor.remaining(), 0);
    assert_eq!(
        sums.iter().map(|s| s.solved_total).collect::<Vec<_>>(),
        [1, 2]
    );
    let first = actor.requests()[0].prompt.clone();
    assert!(
        first.contains("Reflections:\n- Look up the exact name.")
            && !first.contains("Search the page before answering."),
        "{first}"
    );
    // Trial 1's results are the incumbent's, apart from the reflection.
    for id in ["q1", "q2"] {
        let mut theirs = load_task(incumbent.path(), 0, id).unwrap().unwrap();
        let ours = load_task(candidate.path(), 0, id).unwrap().unwrap();
        assert_eq!(
            ours.reflection.as_ref().map(|r| r.text.as_str()),
            theirs
                .reflection
                .as_ref()
                .map(|_| "Look up the exact name."),
        );
        theirs.reflection = ours.reflection.clone();
        assert_eq!(ours, theirs);
    }
    let records = std::fs::read_to_string(candidate.path().join("records.jsonl")).unwrap();
    assert!(
        records.contains("Look up the exact name.") && records.contains("\"rating\":1.0"),
        "{records}"
    );
    // Once the candidate's folder holds a run, seeding leaves it alone.
    assert_eq!(
        seed_first_trial(incumbent.path(), candidate.path(), &settings, &tasks).unwrap(),
        0
    );
}

#[test]
fn a_first_trial_run_with_other_settings_or_other_questions_is_not_taken_and_nothing_is_written() {
    let (source, tasks) = finished_two_trial_run();
    let to = tempfile::tempdir().unwrap();
    let untouched = |to: &Path| {
        assert!(!to.join("run.json").exists() && !to.join("trial-00").exists());
    };
    let mut other = cfg(2);
    other.max_steps = 4;
    let e = seed_first_trial(source.path(), to.path(), &other, &tasks)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other settings") && e.contains("max_steps: 6 there, 4 here"),
        "{e}"
    );
    untouched(to.path());
    let mut global = cfg(2);
    global.env.insert("global_docstore".into(), true.into());
    let e = seed_first_trial(source.path(), to.path(), &global, &tasks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--global-docstore"), "{e}");
    let e = seed_first_trial(
        to.path(),
        source.path().join("new").as_path(),
        &cfg(2),
        &tasks,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no run there"), "{e}");
    // q2 matches, q1 does not: refused before q2 is copied.
    let changed = hotpotqa_tasks(&[q("q2", "Springfield"), q("q1", "Someone else")]);
    let e = seed_first_trial(source.path(), to.path(), &cfg(2), &changed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("task q1") && e.contains("another question or gold answer"),
        "{e}"
    );
    untouched(to.path());
    // A folder holding another run is refused, and left as it was.
    let mut none = cfg(2);
    none.strategy = "none".into();
    retroformer::agent::files::write_json(&to.path().join("run.json"), &none).unwrap();
    let e = seed_first_trial(source.path(), to.path(), &cfg(2), &tasks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds a run with other settings"), "{e}");
    // It names the setting that differs rather than printing the whole saved run.
    assert!(e.contains(r#"strategy: "none" there"#), "{e}");
    assert!(!to.path().join("trial-00").exists());
}

#[test]
fn an_arm_with_another_strategy_and_memory_takes_the_first_trial_of_the_none_arm() {
    let (source, tasks) = finished_two_trial_run();
    let to = tempfile::tempdir().unwrap();
    for (strategy, memory) in [("none", 1), ("placebo", 3)] {
        let mut arm = cfg(2);
        arm.strategy = strategy.into();
        arm.memory = memory;
        let to = to.path().join(strategy);
        assert_eq!(
            seed_first_trial(source.path(), &to, &arm, &tasks).unwrap(),
            2
        );
    }
}

#[test]
fn seeding_again_after_a_kill_copies_only_the_results_still_missing() {
    let (source, tasks) = finished_two_trial_run();
    let to = tempfile::tempdir().unwrap();
    // The folder is claimed before anything is copied.
    assert_eq!(
        seed_first_trial(source.path(), to.path(), &cfg(2), &tasks).unwrap(),
        2
    );
    let saved: RunConfig =
        serde_json::from_slice(&std::fs::read(to.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(saved, cfg(2));
    // As if killed before q2's copy was written: seeding again copies q2 alone.
    std::fs::remove_file(task_path(to.path(), 0, "q2")).unwrap();
    assert_eq!(
        seed_first_trial(source.path(), to.path(), &cfg(3), &tasks).unwrap(),
        1
    );
    assert!(load_task(to.path(), 0, "q2")
        .unwrap()
        .unwrap()
        .reflection
        .is_none());
    // Claiming did not shrink or grow the saved run: the trial count is the run's to change.
    let saved: RunConfig =
        serde_json::from_slice(&std::fs::read(to.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(saved, cfg(2));
}
