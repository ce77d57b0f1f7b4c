use super::*;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};
use retroformer_sandbox::{Sandbox, SandboxConfig};

fn problem() -> Problem {
    Problem {
        task_id: "T/add".into(),
        prompt: "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n".into(),
        entry_point: "add".into(),
        test: "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n".into(),
        canonical_solution: None,
    }
}

fn pool() -> Pool {
    let sandbox = Sandbox::new(SandboxConfig {
        wall_ms: 5_000,
        ..SandboxConfig::default()
    })
    .expect("python3 in the sandbox");
    Pool::new(sandbox, 2).unwrap()
}

#[test]
fn a_wrong_first_implementation_is_reflected_on_and_fixed_and_the_hidden_tests_run_once() {
    let model = ScriptedModel::new([
        // Tests: two good asserts, a duplicate, one that does not parse.
        "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(1, 2) == 3\nassert add(1,, 2) == 3",
        // First implementation: wrong (the reply continues the opened fence).
        "def add(a, b):\n    return a - b\n```\nThis subtracts.",
        // Reflection, cut where code starts.
        "It subtracts instead of adding.\n```python\ndef add(a, b): ...",
        // Second implementation: right.
        "def add(a, b):\n    return a + b\n```",
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("reflexion", 5, "scripted");
    let pool = pool();
    let r = solve(&problem(), &cfg, &mut coder, &pool).unwrap().finish();
    assert_eq!(model.remaining(), 0);
    assert_eq!(
        r.own_tests,
        vec!["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    );
    assert_eq!(r.iterations.len(), 2);
    let first = &r.iterations[0];
    assert_eq!(first.own_pass_rate, 0.5);
    assert_eq!(first.tests[0].outcome, Outcome::Failed);
    assert_eq!(first.tests[0].output, "-1");
    assert_eq!(
        first.reflection.as_deref(),
        Some("It subtracts instead of adding.")
    );
    assert_eq!(r.iterations[1].own_pass_rate, 1.0);
    assert!(r.passed, "{:?}", r.hidden);
    // The exact prompts: tests, implementation, reflection with the feedback, retry.
    let reqs = model.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs[0]
        .prompt
        .starts_with(&format!("<system>{TESTS_SYSTEM}</system>\n")));
    assert!(reqs[0]
        .prompt
        .ends_with(&format!("<user>{}</user>\n<assistant>", problem().prompt)));
    assert_eq!(
        reqs[1].prompt,
        format!(
            "<system>{IMPL_SYSTEM}</system>\n<user>{}</user>\n<assistant>```python\n",
            problem().prompt
        )
    );
    let feedback = "Tests passed:\nassert add(0, 0) == 0\n\nTests failed:\nassert add(1, 2) == 3 # output: -1\n";
    assert_eq!(
        reqs[2].prompt,
        format!(
            "<system>{REFLECT_SYSTEM}</system>\n<user>[implementation]:\n```python\ndef add(a, b):\n    return a - b\n```\n\n[unit test results]:\n{feedback}\n[self-reflection]:</user>\n<assistant>"
        )
    );
    assert!(reqs[3].prompt.contains("[reflection on previous implementation]:\nIt subtracts instead of adding.\n\n[improved implementation]:"));
    assert!(reqs[3]
        .prompt
        .contains("<assistant>```python\ndef add(a, b):\n    return a - b\n```</assistant>"));
    // The rating record: own-test pass rate 0.5 -> 1.0, with the request as chat messages
    // that template back to exactly the prompt the reflection was written for.
    let recs = records(&[r]);
    assert_eq!(recs.len(), 1);
    assert!((recs[0].rating - 0.5).abs() < 1e-6);
    let m = recs[0].messages.as_ref().unwrap();
    let (last, rest) = m.split_last().unwrap();
    assert_eq!(last.role, "assistant");
    assert_eq!(last.content, "It subtracts instead of adding.");
    assert_eq!(model.chat_prompt(rest, true).unwrap(), reqs[2].prompt);
    assert_eq!(recs[0].prompt, reqs[2].prompt);
}

#[test]
fn a_separate_reflector_writes_the_reflections_and_the_actor_the_code() {
    let actor = ScriptedModel::new([
        "assert add(1, 2) == 3",
        "def add(a, b):\n    return a - b\n```",
        "def add(a, b):\n    return a + b\n```",
    ]);
    let reflector = ScriptedModel::new(["Use + instead of -."]);
    let mut session = actor.session(&SessionOptions::default()).unwrap();
    let mut r_session = reflector.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &actor,
        session: session.as_mut(),
        reflector: Some(ReflectorSession {
            model: &reflector,
            session: r_session.as_mut(),
        }),
    };
    let cfg = CodingConfig::new("reflexion", 5, "scripted");
    let r = solve(&problem(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(actor.remaining(), 0);
    assert_eq!(reflector.remaining(), 0);
    assert_eq!(actor.requests().len(), 3);
    let asked = reflector.requests();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].prompt.contains("[self-reflection]:"));
    assert_eq!(
        r.iterations[0].reflection.as_deref(),
        Some("Use + instead of -.")
    );
    assert_eq!(
        r.iterations[0].reflection_prompt.as_deref(),
        Some(asked[0].prompt.as_str())
    );
    assert!(actor.requests()[2]
        .prompt
        .contains("[reflection on previous implementation]:\nUse + instead of -."));
    assert!(r.passed, "{:?}", r.hidden);
}

#[test]
fn an_old_run_json_without_a_reflector_reads_as_the_actor_reflecting() {
    let mut v = serde_json::to_value(CodingConfig::new("reflexion", 5, "m")).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("reflector");
    assert!(!o.contains_key("reflector_adapter"));
    let back: CodingConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back, CodingConfig::new("reflexion", 5, "m"));
}

#[test]
fn strategy_none_is_one_shot_and_a_wrong_answer_fails_the_hidden_tests() {
    let model = ScriptedModel::new(["def add(a, b):\n    return a * b\n```"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("none", 5, "scripted");
    let r = solve(&problem(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(r.iterations.len(), 1);
    assert!(r.own_tests.is_empty());
    assert_eq!(r.hidden.outcome, Outcome::Failed);
    assert!(!r.passed);
}

#[test]
fn the_loop_stops_after_max_iters_implementations() {
    let wrong = |k: u32| format!("def add(a, b):\n    return {k}\n```");
    let model = ScriptedModel::new([
        "assert add(1, 2) == 3".to_string(),
        wrong(0),
        "r1".into(),
        wrong(1),
        "r2".into(),
        wrong(2),
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("reflexion", 3, "scripted");
    let r = solve(&problem(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(model.remaining(), 0);
    assert_eq!(r.iterations.len(), 3);
    assert!(r.iterations[2].reflection.is_none());
    assert_eq!(r.stop, StopReason::MaxIterations);
    assert_eq!(r.hidden.outcome, Outcome::Failed);
}

#[test]
fn a_repeated_implementation_ends_the_loop_early() {
    let wrong = "def add(a, b):\n    return 0\n```";
    let model = ScriptedModel::new(["assert add(1, 2) == 3", wrong, "r1", wrong]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("reflexion", 5, "scripted");
    let r = solve(&problem(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(model.remaining(), 0);
    assert_eq!(r.iterations.len(), 2);
    assert_eq!(r.stop, StopReason::Repeated);
}

#[test]
fn a_run_writes_every_file_and_resumes_without_redoing_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let mut p2 = problem();
    p2.task_id = "T/add2".into();
    let problems = [problem(), p2];
    let right = "def add(a, b):\n    return a + b\n```";
    let model = ScriptedModel::new([right, right]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("none", 5, "scripted");
    let pool = pool();
    let (summary, results) = run(&problems, &cfg, dir.path(), &mut coder, &pool, |_| {}).unwrap();
    assert_eq!(summary.passed, 2);
    assert!((summary.pass_at_1 - 1.0).abs() < 1e-9);
    assert_eq!(results.len(), 2);
    for f in [
        "run.json",
        "humaneval.json",
        "trial-00.json",
        "records.jsonl",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    assert!(task_path(dir.path(), "T/add2").is_file());
    // Again: nothing left in the script, so any model call would fail.
    let (again, _) = run(&problems, &cfg, dir.path(), &mut coder, &pool, |_| {}).unwrap();
    assert_eq!(again, summary);
    // Other settings in the same folder are refused.
    let other = CodingConfig::new("reflexion", 5, "scripted");
    let err = run(&problems, &other, dir.path(), &mut coder, &pool, |_| {}).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
}
