use super::*;

#[test]
fn code_is_taken_from_the_block_that_defines_the_function() {
    let prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n";
    let reply = "Here:\n```python\nimport math\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\nDone.";
    assert_eq!(
        extract_code(reply, prompt, "add"),
        "def add(a, b):\n    return a + b\n"
    );
    // No fence at all: the whole reply.
    assert_eq!(
        extract_code("def add(a, b):\n    return a + b", prompt, "add"),
        "def add(a, b):\n    return a + b\n"
    );
    // A bare body goes under the prompt's signature, indented.
    assert_eq!(
        extract_code("```\nreturn a + b\n```", prompt, "add"),
        format!("{prompt}    return a + b\n")
    );
    // An unterminated fence still yields its code.
    assert_eq!(
        extract_code(
            "```python\ndef add(a, b):\n    return b + a\n",
            prompt,
            "add"
        ),
        "def add(a, b):\n    return b + a\n"
    );
}

#[test]
fn asserts_are_the_assert_lines_without_duplicates() {
    let reply = "Tests:\n```python\nassert f(1) == 2\n  assert f(2) == 4\nassert f(1) == 2\nprint('x')\nassertion = 3\nassert(f(0) == 0)\n```";
    assert_eq!(
        parse_asserts(reply),
        vec!["assert f(1) == 2", "assert f(2) == 4", "assert(f(0) == 0)"]
    );
}

#[test]
fn feedback_lists_passed_then_failed_asserts_with_their_output_or_error() {
    let r = |t: &str, o, out: &str| TestResult {
        test: t.into(),
        outcome: o,
        output: out.into(),
    };
    let fb = format_feedback(&[
        r("assert f(1) == 2", Outcome::Passed, ""),
        r("assert f(2) == 5", Outcome::Failed, "4"),
        r(
            "assert f(0) == 1",
            Outcome::Error,
            "ZeroDivisionError: division by zero",
        ),
        r("assert f(-1) == 0", Outcome::Timeout, "timeout"),
    ]);
    assert_eq!(
        fb,
        "Tests passed:\nassert f(1) == 2\n\nTests failed:\nassert f(2) == 5 # output: 4\nassert f(0) == 1 # error: ZeroDivisionError: division by zero\nassert f(-1) == 0 # error: timed out\n"
    );
}

#[test]
fn embedded_text_survives_quotes_and_newlines() {
    assert_eq!(py_str("a'b\n"), "bytes.fromhex('6127620a').decode('utf-8')");
}

#[test]
fn the_reflection_prompt_states_the_failed_test_and_shows_no_example_reflection() {
    let feedback = format_feedback(&[TestResult {
        test: "assert add(1, 2) == 3".into(),
        outcome: Outcome::Failed,
        output: "-1".into(),
    }]);
    let m = reflect_messages("def add(a, b):\n    return a - b\n", &feedback);
    // A system instruction and the facts: no few-shot turns, so nothing to copy.
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].content, REFLECT_SYSTEM);
    assert!(m[1]
        .content
        .contains("Tests failed:\nassert add(1, 2) == 3 # output: -1\n"));
    assert!(!m.iter().any(|x| x.role == "assistant"));
}

#[test]
fn an_empty_reflection_leaves_the_retry_prompt_without_a_reflection_section() {
    let with = retry_messages(
        "def f():\n",
        "def f():\n    return 1\n",
        "fb\n",
        "Return 2.",
    );
    assert!(with[3].content.contains(
        "[reflection on previous implementation]:\nReturn 2.\n\n[improved implementation]:"
    ));
    let without = retry_messages("def f():\n", "def f():\n    return 1\n", "fb\n", "  ");
    assert_eq!(
        without[3].content,
        "[unit test results from previous implementation]:\nfb\n\n[improved implementation]:"
    );
}

#[test]
fn a_reflection_is_cut_where_it_starts_writing_the_next_prompt() {
    use retroformer::agent::reflect::clean;
    assert_eq!(
        clean(
            "It subtracts.\n[improved implementation]:\ndef add(a, b): ...",
            &REFLECTION_CUTS
        ),
        "It subtracts."
    );
    assert_eq!(
        clean("Tests failed:\nassert f(1) == 2", &REFLECTION_CUTS),
        ""
    );
    // The core's cleaning: a reply caught in a loop ends before its first repeat.
    assert_eq!(
        clean(
            "The loop is off by one. The loop is off by one.",
            &REFLECTION_CUTS
        ),
        "The loop is off by one."
    );
}

#[test]
fn the_implementation_submitted_is_the_one_that_passed_most_visible_tests_the_latest_of_a_tie() {
    let it = |passed: usize, failed: usize| Iteration {
        implementation: String::new(),
        tests: (0..passed)
            .map(|_| Outcome::Passed)
            .chain((0..failed).map(|_| Outcome::Failed))
            .map(|outcome| TestResult {
                test: "assert t".into(),
                outcome,
                output: String::new(),
            })
            .collect(),
        own_pass_rate: 0.0,
        reflection_prompt: None,
        reflection: None,
        hidden_passed: None,
    };
    assert_eq!(best_iteration(&[it(2, 1), it(1, 2), it(0, 3)]), 0);
    assert_eq!(best_iteration(&[it(2, 1), it(1, 2), it(2, 1)]), 2);
    assert_eq!(best_iteration(&[it(0, 3), it(3, 0), it(1, 2)]), 1);
    // No visible tests at all: the last.
    assert_eq!(best_iteration(&[it(0, 0), it(0, 0)]), 1);
    assert_eq!(best_iteration(&[]), 0);
}

#[test]
fn actor_seeds_are_fixed_per_task_and_iteration_and_greedy_at_temperature_zero() {
    use retroformer::agent::runner::actor_seed;
    let greedy = CodingConfig::new("reflexion", 5, "m");
    assert!(greedy.sampling("T/1", 2, IMPL_CALL).is_greedy());
    let mut cfg = greedy.clone();
    cfg.actor_temperature = 0.7;
    cfg.actor_top_p = 0.9;
    cfg.actor_seed = 5;
    let s = cfg.sampling("T/1", 2, IMPL_CALL);
    assert_eq!(s.temperature, 0.7);
    assert_eq!(s.top_p, 0.9);
    assert_eq!(s.seed, actor_seed(5, "T/1", 2));
    assert_eq!(
        cfg.sampling("T/1", 0, TESTS_CALL).seed,
        actor_seed(5, "T/1", 0).wrapping_add(1).max(1)
    );
    // Different across iterations, tasks and run seeds; the same when asked again.
    let seeds: std::collections::BTreeSet<u32> = ["T/1", "T/2"]
        .iter()
        .flat_map(|t| (0..4).map(|k| cfg.sampling(t, k, IMPL_CALL).seed))
        .collect();
    assert_eq!(seeds.len(), 8);
    assert_eq!(
        cfg.sampling("T/1", 3, IMPL_CALL),
        cfg.sampling("T/1", 3, IMPL_CALL)
    );
    let mut other = cfg.clone();
    other.actor_seed = 6;
    assert_ne!(other.sampling("T/1", 0, IMPL_CALL).seed, s.seed);
    // Top-p 0 is off.
    cfg.actor_top_p = 0.0;
    assert_eq!(cfg.sampling("T/1", 0, IMPL_CALL).top_p, 1.0);
}

#[test]
fn one_self_written_test_is_kept_drawn_with_the_task_seed() {
    let candidates: Vec<String> = (0..4).map(|i| format!("assert f({i}) == {i}")).collect();
    let cfg = CodingConfig::new("reflexion", 5, "m");
    assert_eq!(cfg.max_tests, 1);
    let kept = cfg.pick_tests("T/1", &candidates);
    assert_eq!(kept.len(), 1);
    assert!(candidates.contains(&kept[0]));
    assert_eq!(cfg.pick_tests("T/1", &candidates), kept);
    // Other tasks and seeds draw other tests.
    let mut drawn = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let mut c = cfg.clone();
        c.actor_seed = seed;
        drawn.insert(c.pick_tests("T/1", &candidates)[0].clone());
    }
    assert!(drawn.len() > 1, "{drawn:?}");
    // One candidate is kept as it is; a run resumed with max_tests 6 keeps up to 6, in order.
    assert_eq!(cfg.pick_tests("T/1", &candidates[..1]), candidates[..1]);
    let mut six = cfg.clone();
    six.max_tests = 6;
    assert_eq!(six.pick_tests("T/1", &candidates), candidates);
}

/// A task's result with iterations given as (visible tests passed, failed, hidden passed), the
/// submitted one chosen as `solve` chooses it.
fn task(id: &str, docstring: bool, its: &[(usize, usize, Option<bool>)]) -> CodingResult {
    let iterations: Vec<Iteration> = its
        .iter()
        .map(|&(p, f, hidden)| Iteration {
            implementation: String::new(),
            tests: (0..p)
                .map(|_| Outcome::Passed)
                .chain((0..f).map(|_| Outcome::Failed))
                .map(|outcome| TestResult {
                    test: "assert t".into(),
                    outcome,
                    output: String::new(),
                })
                .collect(),
            own_pass_rate: if p + f == 0 {
                1.0
            } else {
                p as f32 / (p + f) as f32
            },
            reflection_prompt: None,
            reflection: None,
            hidden_passed: hidden,
        })
        .collect();
    let submitted = best_iteration(&iterations);
    let passed = iterations[submitted].hidden_passed == Some(true);
    let tests = vec!["assert t".to_string()];
    CodingResult {
        format_version: FORMAT_VERSION,
        task_id: id.into(),
        docstring_tests: if docstring { tests.clone() } else { Vec::new() },
        own_tests: if docstring { Vec::new() } else { tests },
        iterations,
        stop: StopReason::MaxIterations,
        submitted: Some(submitted),
        hidden: RunReport {
            outcome: if passed {
                Outcome::Passed
            } else {
                Outcome::Failed
            },
            exit_code: Some(i32::from(!passed)),
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            wall_ms: 1.0,
            detail: None,
        },
        passed,
        usage: Usage::default(),
        wall_ms: 1.0,
    }
}

#[test]
fn the_verifier_statistics_count_false_alarms_misses_regressions_and_fixes() {
    let results = [
        // Right first, but a (wrong) visible test fails it; the retry passes the visible
        // tests and fails the hidden ones: a false alarm, a miss, a regression.
        task("a", true, &[(1, 1, Some(true)), (2, 0, Some(false))]),
        // Wrong, caught; then right and passing: a fix.
        task("b", true, &[(0, 2, Some(false)), (2, 0, Some(true))]),
        // Right and passing at once.
        task("c", false, &[(1, 0, Some(true))]),
        // Wrong, caught, wrong again with fewer passed: the first is submitted, no change.
        task("d", false, &[(1, 1, Some(false)), (0, 2, Some(false))]),
        // An older file without hidden results per iteration: not measured.
        task("e", true, &[(1, 0, None)]),
    ];
    let v = verifier_stats(&results);
    assert_eq!(v.implementations, 7);
    assert_eq!((v.hidden_passed, v.false_alarms), (3, 1));
    assert_eq!(v.false_alarm_rate, Some(1.0 / 3.0));
    assert_eq!((v.hidden_failed, v.misses), (4, 1));
    assert_eq!(v.miss_rate, Some(0.25));
    assert_eq!((v.tasks, v.first_passed), (4, 2));
    assert_eq!((v.regressions, v.fixes), (1, 1));
    let s = summarize(&results, 2);
    assert_eq!(s.verifier, v);
    assert_eq!(s.passed, 2);
    assert_eq!(s.submitted_earlier, 1);
    assert_eq!(s.visible_tests["docstring"], 3);
    assert_eq!(s.visible_tests["model"], 2);
    assert_eq!(s.hidden_pass_any_by_iteration, vec![0.4, 0.6]);
    assert_eq!(s.own_tests_pass_by_iteration, vec![0.4, 0.8]);
    let doc = &s.verifier_by_source["docstring"];
    assert_eq!(
        (doc.implementations, doc.false_alarms, doc.regressions),
        (4, 1, 1)
    );
    let own = &s.verifier_by_source["model"];
    assert_eq!((own.implementations, own.misses, own.fixes), (3, 0, 0));
    // No implementation measured: the rates are undefined, not zero.
    let none = verifier_stats(&[]);
    assert_eq!((none.false_alarm_rate, none.miss_rate), (None, None));
}

#[test]
fn an_older_summary_and_result_without_the_new_fields_still_read() {
    let r = task("a", false, &[(1, 0, Some(true))]);
    let mut v = serde_json::to_value(&r).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("docstring_tests");
    o.remove("submitted");
    for it in o["iterations"].as_array_mut().unwrap() {
        it.as_object_mut().unwrap().remove("hidden_passed");
    }
    let back: CodingResult = serde_json::from_value(v).unwrap();
    assert!(back.docstring_tests.is_empty() && back.submitted.is_none());
    assert_eq!(back.iterations[0].hidden_passed, None);
    let s = summarize(&[r], 1);
    let mut v = serde_json::to_value(&s).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in [
        "visible_tests",
        "hidden_pass_any_by_iteration",
        "submitted_earlier",
        "verifier",
        "verifier_by_source",
    ] {
        o.remove(k);
    }
    let old: CodingSummary = serde_json::from_value(v).unwrap();
    assert_eq!(old.passed, 1);
}
