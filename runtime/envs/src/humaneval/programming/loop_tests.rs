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
fn a_wrong_first_implementation_is_reflected_on_and_fixed_and_the_hidden_tests_run_on_each() {
    let model = ScriptedModel::new([
        // Tests: one good assert, a duplicate, one that does not parse: one candidate.
        "assert add(1, 2) == 3\nassert add(1, 2) == 3\nassert add(1,, 2) == 3",
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
    assert!(r.docstring_tests.is_empty());
    assert_eq!(r.own_tests, vec!["assert add(1, 2) == 3"]);
    assert_eq!(r.iterations.len(), 2);
    let first = &r.iterations[0];
    assert_eq!(first.own_pass_rate, 0.0);
    assert_eq!(first.tests[0].outcome, Outcome::Failed);
    assert_eq!(first.tests[0].output, "-1");
    assert_eq!(
        first.reflection.as_deref(),
        Some("It subtracts instead of adding.")
    );
    assert_eq!(r.iterations[1].own_pass_rate, 1.0);
    // The hidden tests ran on both implementations; the second is submitted.
    assert_eq!(r.iterations[0].hidden_passed, Some(false));
    assert_eq!(r.iterations[1].hidden_passed, Some(true));
    assert_eq!(r.submitted, Some(1));
    assert_eq!(r.stop, StopReason::OwnTestsPass);
    assert!(r.passed, "{:?}", r.hidden);
    // The exact prompts: tests, implementation, reflection with the feedback, retry.
    let reqs = model.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|q| q.sampling.is_greedy()));
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
    let feedback = "Tests passed:\n\nTests failed:\nassert add(1, 2) == 3 # output: -1\n";
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
    // The rating record: visible-test pass rate 0.0 -> 1.0, with the request as chat
    // messages that template back to exactly the prompt the reflection was written for.
    let who = runner::describe_reflector("scripted", "actor", None, 0.0, 0);
    let recs = records(&[r], &who);
    assert_eq!(recs.len(), 1);
    // Each record names who wrote its reflection, as the loop requires.
    assert_eq!(recs[0].reflector.as_ref(), Some(&who));
    assert!((recs[0].rating - 1.0).abs() < 1e-6);
    let m = recs[0].messages.as_ref().unwrap();
    let (last, rest) = m.split_last().unwrap();
    assert_eq!(last.role, "assistant");
    assert_eq!(last.content, "It subtracts instead of adding.");
    assert_eq!(model.chat_prompt(rest, true).unwrap(), reqs[2].prompt);
    assert_eq!(recs[0].prompt, reqs[2].prompt);
}

/// A problem whose docstring has three doctest examples; the hidden tests check one more.
fn doubling() -> Problem {
    Problem {
        task_id: "T/double".into(),
        prompt: "def double(x):\n    \"\"\"Twice x.\n    >>> double(1)\n    2\n    >>> double(2)\n    4\n    >>> double(3)\n    6\n    \"\"\"\n".into(),
        entry_point: "double".into(),
        test: "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(3) == 6\n    assert candidate(10) == 20\n".into(),
        canonical_solution: None,
    }
}

fn body(expr: &str) -> String {
    format!("def double(x):\n    return {expr}\n```")
}

#[test]
fn docstring_examples_are_the_visible_tests_and_the_model_writes_none() {
    let model = ScriptedModel::new([body("x + 1"), "Multiply by 2.".into(), body("2 * x")]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("reflexion", 5, "scripted");
    let r = solve(&doubling(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(model.remaining(), 0);
    // No test-writing call: the first request asks for the implementation.
    let reqs = model.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0]
        .prompt
        .starts_with(&format!("<system>{IMPL_SYSTEM}")));
    assert!(r.own_tests.is_empty());
    assert_eq!(
        r.docstring_tests,
        vec![
            "assert double(1) == 2",
            "assert double(2) == 4",
            "assert double(3) == 6"
        ]
    );
    // x + 1 passes double(1) only; the feedback names the failed examples with their output.
    assert_eq!(r.iterations[0].tests.len(), 3);
    assert!((r.iterations[0].own_pass_rate - 1.0 / 3.0).abs() < 1e-6);
    assert!(reqs[1].prompt.contains(
        "Tests failed:\nassert double(2) == 4 # output: 3\nassert double(3) == 6 # output: 4\n"
    ));
    assert_eq!(r.iterations[1].own_pass_rate, 1.0);
    assert_eq!(r.submitted, Some(1));
    assert!(r.passed, "{:?}", r.hidden);
}

#[test]
fn the_submitted_implementation_is_the_one_that_passed_most_visible_tests() {
    // 2 of 3, 1 of 3, then 2 of 3 again: the latest of the tie is submitted, and its hidden
    // result is the task's. Every implementation's hidden result is recorded.
    let model = ScriptedModel::new([
        body("{1: 2, 2: 4}.get(x, 0)"),
        "r1".into(),
        body("x + 1"),
        "r2".into(),
        body("2 * x if x < 3 else 5"),
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("reflexion", 3, "scripted");
    let r = solve(&doubling(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(model.remaining(), 0);
    let passed: Vec<usize> = r
        .iterations
        .iter()
        .map(|it| {
            it.tests
                .iter()
                .filter(|t| t.outcome == Outcome::Passed)
                .count()
        })
        .collect();
    assert_eq!(passed, vec![2, 1, 2]);
    assert_eq!(r.stop, StopReason::MaxIterations);
    assert_eq!(r.submitted, Some(2));
    assert_eq!(r.hidden.outcome, Outcome::Failed);
    assert!(!r.passed);
    assert!(r
        .iterations
        .iter()
        .all(|it| it.hidden_passed == Some(false)));
}

#[test]
fn a_sampled_run_uses_a_seed_per_task_and_iteration_and_goes_on_after_a_repeat() {
    use retroformer::agent::runner::actor_seed;
    let wrong = "def add(a, b):\n    return 0\n```";
    let model = ScriptedModel::new([
        "assert add(1, 2) == 3",
        wrong,
        "r1",
        wrong,
        "r2",
        "def add(a, b):\n    return a + b\n```",
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let mut cfg = CodingConfig::new("reflexion", 5, "scripted");
    cfg.actor_temperature = 0.8;
    cfg.actor_top_p = 0.95;
    cfg.actor_seed = 7;
    let r = solve(&problem(), &cfg, &mut coder, &pool())
        .unwrap()
        .finish();
    assert_eq!(model.remaining(), 0);
    // A repeated implementation does not end a sampled loop: the third one is right.
    assert_eq!(r.iterations.len(), 3);
    assert_eq!(r.stop, StopReason::OwnTestsPass);
    assert!(r.passed);
    let reqs = model.requests();
    let seed = |k| actor_seed(7, "T/add", k);
    // Tests (iteration 0, call 1), implementation 0, reflection (greedy), implementation 1,
    // reflection, implementation 2.
    assert_eq!(reqs[0].sampling.seed, seed(0).wrapping_add(1));
    assert_eq!(reqs[1].sampling.seed, seed(0));
    assert!(reqs[2].sampling.is_greedy());
    assert_eq!(reqs[3].sampling.seed, seed(1));
    assert!(reqs[4].sampling.is_greedy());
    assert_eq!(reqs[5].sampling.seed, seed(2));
    for q in [&reqs[0], &reqs[1], &reqs[3], &reqs[5]] {
        assert_eq!(q.sampling.temperature, 0.8);
        assert_eq!(q.sampling.top_p, 0.95);
    }
}

#[test]
fn an_empty_reflection_is_not_shown_to_the_actor_nor_rated() {
    let model = ScriptedModel::new([
        "assert add(1, 2) == 3",
        "def add(a, b):\n    return a - b\n```",
        // Nothing but the next prompt's section: cleaned to nothing.
        "[improved implementation]:\ndef add(a, b): return a + b",
        "def add(a, b):\n    return a + b\n```",
    ]);
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
    assert_eq!(r.iterations[0].reflection.as_deref(), Some(""));
    let reqs = model.requests();
    assert!(!reqs[3]
        .prompt
        .contains("[reflection on previous implementation]"));
    let who = runner::describe_reflector("scripted", "actor", None, 0.0, 0);
    assert!(records(&[r], &who).is_empty());
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
fn greedy_settings_write_no_sampling_keys_and_sampled_ones_are_recorded() {
    let greedy = serde_json::to_value(CodingConfig::new("reflexion", 5, "m")).unwrap();
    for k in ["actor_temperature", "actor_top_p", "actor_seed"] {
        assert!(greedy.get(k).is_none(), "{k}");
    }
    let mut cfg = CodingConfig::new("reflexion", 5, "m");
    cfg.actor_temperature = 0.7;
    cfg.actor_seed = 3;
    let v = serde_json::to_value(&cfg).unwrap();
    assert!((v["actor_temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert_eq!(v["actor_seed"], 3);
    assert!(v.get("actor_top_p").is_none());
    assert_eq!(serde_json::from_value::<CodingConfig>(v).unwrap(), cfg);
}

#[test]
fn a_run_json_written_before_the_one_test_rule_resumes_with_its_own_max_tests() {
    let dir = tempfile::tempdir().unwrap();
    // The run.json of a run made before the sampling settings and the one-test rule.
    std::fs::write(
        dir.path().join("run.json"),
        r#"{"agent": "programming", "strategy": "none", "max_iters": 5, "max_tests": 6,
            "max_impl_tokens": 768, "trials": 1, "actor": "scripted"}"#,
    )
    .unwrap();
    let model = ScriptedModel::new(["def add(a, b):\n    return a + b\n```"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut coder = HumanevalAgent {
        model: &model,
        session: session.as_mut(),
        reflector: None,
    };
    let cfg = CodingConfig::new("none", 5, "scripted");
    let (summary, _) = run(&[problem()], &cfg, dir.path(), &mut coder, &pool(), |_| {}).unwrap();
    assert_eq!(summary.passed, 1);
    let saved: CodingConfig =
        serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(saved.max_tests, 6);
    // Sampling settings are other settings: refused.
    let mut sampled = cfg.clone();
    sampled.actor_temperature = 0.5;
    let err = run(
        &[problem()],
        &sampled,
        dir.path(),
        &mut coder,
        &pool(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
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
    assert_eq!(r.iterations[0].hidden_passed, Some(false));
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

#[test]
fn a_failed_float_test_reports_the_value_its_call_had() {
    let pool = pool();
    let run = |implementation: &str| {
        let test = "assert abs(half(1) - 0.5) < 1e-6";
        let r = pool
            .run_all(vec![test_program("", implementation, test)])
            .remove(0);
        test_result(test, &r)
    };
    let wrong = run("def half(x):\n    return x / 4\n");
    assert_eq!(wrong.outcome, Outcome::Failed);
    assert_eq!(wrong.output, "0.25");
    // Within the tolerance: (0.1 + 0.2) / 0.6 is 0.5000000000000001, and passes.
    assert_eq!(
        run("def half(x):\n    return x * (0.1 + 0.2) / 0.6\n").outcome,
        Outcome::Passed
    );
    assert_eq!(
        run("def half(x):\n    return None\n").outcome,
        Outcome::Error
    );
}
