use super::*;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::SessionOptions;

fn att(answer: Option<&str>, reward: f32) -> Attempt {
    Attempt {
        response: String::new(),
        answer: answer.map(str::to_string),
        reward,
        evaluated_tokens: 0,
        reused_tokens: 0,
        generated_tokens: 0,
        ms: 0.0,
    }
}

#[test]
fn the_four_metrics_follow_their_definitions() {
    // Turn 1 wrong, turn 3 right, majority wrong ("5" twice vs "7" once).
    let seq = [
        att(Some("5"), 0.0),
        att(Some("5"), 0.0),
        att(Some("7"), 1.0),
        att(None, -1.0),
        att(None, -1.0),
    ];
    // Parallel: "7" three times of five: the majority is right.
    let par = [
        att(Some("7"), 1.0),
        att(Some("4"), 0.0),
        att(Some("7"), 1.0),
        att(Some("7"), 1.0),
        att(Some("4"), 0.0),
    ];
    let m = metrics(&seq, &par);
    assert_eq!(m.m1_t1, Some(0.0));
    assert_eq!(m.m5_t1, Some(1.0));
    assert_eq!(m.m1_t5, Some(0.0));
    assert_eq!(m.p1_t5, Some(1.0));
    // A tie goes to the answer seen first; unparsable answers never win.
    let tie = [
        att(Some("2"), 1.0),
        att(Some("3"), 0.0),
        att(Some("3"), 0.0),
        att(Some("2"), 1.0),
    ];
    assert_eq!(majority(&tie).unwrap().answer.as_deref(), Some("2"));
    assert!(majority(&[att(None, -1.0)]).is_none());
    // Only sequential: no m5@t1.
    assert_eq!(metrics(&seq, &[]).m5_t1, None);
    let mean = mean_metrics(&[m.clone(), metrics(&[att(Some("1"), 1.0)], &[])]);
    assert!((mean.m1_t1.unwrap() - 0.5).abs() < 1e-12);
    assert!((mean.m5_t1.unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn the_window_keeps_only_the_last_attempts_and_the_question_stays() {
    // Window 3 (RISE's context_window): the turn being made and two earlier attempts.
    let m = messages("Q?", &["a1".into(), "a2".into(), "a3".into()], 3);
    let roles: Vec<&str> = m.iter().map(|x| x.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "user"
        ]
    );
    assert_eq!(m[3].content, "Q?");
    assert_eq!(m[4].content, "a2");
    assert_eq!(m[6].content, "a3");
    assert_eq!(
        m[7].content,
        "The answer is incorrect. Please try again. Here's the question: Q?"
    );
}

#[test]
fn window_one_shows_no_earlier_attempt_and_window_two_shows_one() {
    let attempts = ["a1".to_string(), "a2".to_string()];
    assert_eq!(messages("Q?", &attempts, 1).len(), 4);
    let two = messages("Q?", &attempts, 2);
    assert_eq!(two.len(), 6);
    assert_eq!(two[4].content, "a2");
}

#[test]
fn sequential_turns_are_sampled_with_the_published_settings_by_default() {
    let model = ScriptedModel::new(["\\boxed{4}", "\\boxed{6}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solver = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let mut cfg = RiseConfig::new(Dataset::Gsm8k, Mode::Sequential, "scripted");
    cfg.turns = 2;
    solve(&problem(), &cfg, &mut solver).unwrap();
    let reqs = model.requests();
    for r in &reqs {
        assert!((r.sampling.temperature - 1.0).abs() < 1e-6);
        assert!((r.sampling.top_p - 1.0).abs() < 1e-6);
    }
    // Each turn has its own seed, so two turns are two different draws.
    assert_ne!(reqs[0].sampling.seed, reqs[1].sampling.seed);
}

#[test]
fn a_version_one_rollout_is_read_with_its_window_counting_the_turn_itself() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rollouts")).unwrap();
    let mut old = rollout("p0", &[0.0, 1.0]);
    old.format_version = 1;
    old.window = 1;
    let text = serde_json::to_string(&old).unwrap();
    std::fs::write(dir.path().join("rollouts/p0.json"), text).unwrap();
    let read = read_rollouts(dir.path()).unwrap();
    assert_eq!(
        (read[0].window, read[0].format_version),
        (2, FORMAT_VERSION)
    );
    old.format_version = 99;
    let text = serde_json::to_string(&old).unwrap();
    std::fs::write(dir.path().join("rollouts/p0.json"), text).unwrap();
    let err = read_rollouts(dir.path()).unwrap_err().to_string();
    assert!(err.contains("format_version 99"), "{err}");
}

#[test]
fn a_rollout_file_whose_turn_has_no_candidates_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rollouts")).unwrap();
    let mut bad = rollout("p0", &[0.0, 1.0]);
    bad.turns[1].candidates.clear();
    let text = serde_json::to_string(&bad).unwrap();
    std::fs::write(dir.path().join("rollouts/p0.json"), text).unwrap();
    let err = read_rollouts(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("p0.json") && err.contains("chosen candidate"),
        "{err}"
    );
}

#[test]
fn turns_samples_and_answer_tokens_are_counted_from_1_to_their_caps() {
    assert!(check_counts(1, 1).is_ok() && check_counts(MAX_TURNS, MAX_SAMPLES).is_ok());
    assert_eq!(check_counts(0, 1).unwrap_err().0, "turns");
    assert_eq!(check_counts(MAX_TURNS + 1, 1).unwrap_err().0, "turns");
    assert_eq!(check_counts(1, 0).unwrap_err().0, "samples");
    assert_eq!(check_counts(1, 4_000_000_000).unwrap_err().0, "samples");
    assert!(check_max_tokens(512).is_ok() && check_max_tokens(MAX_ANSWER_TOKENS).is_ok());
    assert_eq!(check_max_tokens(600_000).unwrap_err().0, "max-tokens");
}

fn problem() -> MathProblem {
    MathProblem {
        id: "p1".into(),
        dataset: Dataset::Gsm8k,
        question: "What is 2 + 3?".into(),
        answer: "5".into(),
        solution: None,
    }
}

#[test]
fn sequential_turns_are_always_told_incorrect_even_after_a_right_answer() {
    let model = ScriptedModel::new(["2 + 3 = 5 \\boxed{5}", "maybe \\boxed{6}", "no box"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solver = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let mut cfg = RiseConfig::new(Dataset::Gsm8k, Mode::Sequential, "scripted");
    cfg.turns = 3;
    cfg.window = 2;
    let r = solve(&problem(), &cfg, &mut solver).unwrap();
    let rewards: Vec<f32> = r.sequential.iter().map(|a| a.reward).collect();
    assert_eq!(rewards, [1.0, 0.0, -1.0]);
    assert_eq!(r.metrics.m1_t1, Some(1.0));
    assert_eq!(r.metrics.p1_t5, Some(1.0));
    let reqs = model.requests();
    assert_eq!(reqs.len(), 3);
    // Turn 2 sees turn 1's right answer followed by "incorrect".
    assert!(reqs[1].prompt.contains(
        "<assistant>2 + 3 = 5 \\boxed{5}</assistant>\n<user>The answer is incorrect. Please try again. Here's the question: What is 2 + 3?</user>"
    ));
    // Window 2 (one earlier attempt): turn 3 no longer sees turn 1.
    assert!(!reqs[2].prompt.contains("\\boxed{5}</assistant>"));
    assert!(reqs[2].prompt.contains("maybe \\boxed{6}"));
}

#[test]
fn a_batched_run_gives_each_problem_its_own_turns_and_samples_and_resumes() {
    let p2 = MathProblem {
        id: "p2".into(),
        question: "What is 4 + 4?".into(),
        answer: "8".into(),
        ..problem()
    };
    let problems = [problem(), p2];
    // Stream order on one lane: a problem's turns (a follow-up goes first), then its two
    // samples; then the next problem.
    let model = ScriptedModel::new([
        "p1 first \\boxed{4}",
        "p1 second \\boxed{5}",
        "p1 sample \\boxed{5}",
        "p1 sample \\boxed{5}",
        "p2 first \\boxed{8}",
        "p2 second \\boxed{9}",
        "p2 sample \\boxed{7}",
        "p2 sample \\boxed{8}",
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solver = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let mut cfg = RiseConfig::new(Dataset::Gsm8k, Mode::Both, "scripted");
    cfg.turns = 2;
    cfg.samples = 2;
    cfg.batch = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut done = Vec::new();
    let summary = run(&problems, &cfg, dir.path(), &mut solver, |r| {
        done.push(r.problem_id.clone())
    })
    .unwrap();
    assert_eq!(done, ["p1", "p2"]);
    assert_eq!(model.remaining(), 0);
    let reqs = model.requests();
    // Turn 2 of each problem sees its own first answer and its own question only.
    assert!(reqs[1].prompt.contains("p1 first") && !reqs[1].prompt.contains("p2 first"));
    assert!(reqs[5].prompt.contains("p2 first") && !reqs[5].prompt.contains("p1 first"));
    assert!(reqs[5].prompt.contains("What is 4 + 4?"));
    let r1: RiseResult = read_json(&super::runner::task_path(dir.path(), 0, "p1"))
        .unwrap()
        .unwrap();
    let r2: RiseResult = read_json(&super::runner::task_path(dir.path(), 0, "p2"))
        .unwrap()
        .unwrap();
    let rewards = |a: &[Attempt]| a.iter().map(|a| a.reward).collect::<Vec<_>>();
    assert_eq!(rewards(&r1.sequential), [0.0, 1.0]);
    assert_eq!(rewards(&r2.sequential), [1.0, 0.0]);
    assert_eq!(rewards(&r1.parallel), [1.0, 1.0]);
    assert_eq!(rewards(&r2.parallel), [0.0, 1.0]);
    // p1: first wrong, some turn right, majority of turns a tie (first seen: 4, wrong),
    // samples agree on 5. p2: first right, samples tie 7/8 (first seen: 7, wrong).
    assert_eq!(r1.metrics.m1_t1, Some(0.0));
    assert_eq!(r1.metrics.p1_t5, Some(1.0));
    assert_eq!(r1.metrics.m5_t1, Some(1.0));
    assert_eq!(r2.metrics.m1_t1, Some(1.0));
    assert_eq!(r2.metrics.m5_t1, Some(0.0));
    assert_eq!(summary.problems, 2);
    assert!((summary.metrics.m1_t1.unwrap() - 0.5).abs() < 1e-12);
    // A second run resumes: nothing more is asked of the model.
    let again = run(&problems, &cfg, dir.path(), &mut solver, |_| {}).unwrap();
    assert_eq!(again, summary);
    assert_eq!(model.requests().len(), 8);
}

#[test]
fn a_streamed_run_saves_each_problem_as_it_ends_resumes_after_a_failure_and_records_each_session() {
    let p2 = MathProblem {
        id: "p2".into(),
        question: "What is 4 + 4?".into(),
        answer: "8".into(),
        ..problem()
    };
    let problems = [problem(), p2];
    let mut cfg = RiseConfig::new(Dataset::Gsm8k, Mode::Sequential, "scripted");
    cfg.turns = 2;
    cfg.batch = 2;
    let dir = tempfile::tempdir().unwrap();
    // Replies for p1's two turns only: the stream fails on p2's first request.
    let model = ScriptedModel::new(["p1 a \\boxed{4}", "p1 b \\boxed{5}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solver = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    assert!(run(&problems, &cfg, dir.path(), &mut solver, |_| {}).is_err());
    let saved =
        |id: &str| read_json::<RiseResult>(&super::runner::task_path(dir.path(), 0, id)).unwrap();
    assert_eq!(saved("p1").map(|r| r.sequential.len()), Some(2));
    assert!(saved("p2").is_none());
    // Resumed: only p2 is asked for.
    let model = ScriptedModel::new(["p2 a \\boxed{8}", "p2 b \\boxed{9}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solver = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let summary = run(&problems, &cfg, dir.path(), &mut solver, |_| {}).unwrap();
    assert_eq!(summary.problems, 2);
    assert!(model.requests().iter().all(|r| r.prompt.contains("4 + 4")));
    assert!((summary.metrics.m1_t1.unwrap() - 0.5).abs() < 1e-12);
    // Each session that wrote results is on record with its machine, a third that found
    // everything saved is not.
    run(&problems, &cfg, dir.path(), &mut solver, |_| {}).unwrap();
    let sessions = retroformer::provenance::read_sessions(dir.path())
        .unwrap()
        .unwrap();
    let before: Vec<usize> = sessions.sessions.iter().map(|s| s.saved_before).collect();
    assert_eq!(before, vec![0, 1]);
    let this = retroformer::provenance::Machine::this();
    assert!(sessions.sessions.iter().all(|s| s.machine == this));
    assert!(sessions
        .sessions
        .iter()
        .all(|s| s.numerics.as_deref() == Some("scripted")));
}

fn rollout(id: &str, rewards: &[f32]) -> Rollout {
    Rollout {
        format_version: FORMAT_VERSION,
        problem_id: id.into(),
        question: format!("question {id}"),
        gold: "1".into(),
        window: 3,
        turns: rewards
            .iter()
            .enumerate()
            .map(|(t, &r)| RolloutTurn {
                model: "m".into(),
                candidates: vec![att(None, -1.0), {
                    let mut a = att(None, r);
                    a.response = format!("{id} turn {t}");
                    a
                }],
                chosen: 1,
                reward: r,
            })
            .collect(),
        dialogue: Vec::new(),
    }
}

#[test]
fn each_criterion_keeps_exactly_the_turns_it_names_with_exp_reward_over_tau_weights() {
    let log = [
        rollout("a", &[-1.0, 0.0, 0.0, 1.0]),
        rollout("b", &[0.0, -1.0, 0.0]),
    ];
    let picked = |c| {
        let mut v: Vec<(String, u32, f64, f64)> = to_dataset(&log, c, 0.4, 7)
            .unwrap()
            .into_iter()
            .map(|s| (s.problem_id, s.turn, s.reward, s.weight))
            .collect();
        v.sort_by(|x, y| (x.0.as_str(), x.1).cmp(&(y.0.as_str(), y.1)));
        v.into_iter()
            .map(|(p, t, r, _)| (p, t, r))
            .collect::<Vec<_>>()
    };
    let s = |p: &str, t: u32, r: f64| (p.to_string(), t, r);
    assert_eq!(
        picked(Criterion::All),
        [
            s("a", 0, -1.0),
            s("a", 1, 0.0),
            s("a", 2, 0.0),
            s("a", 3, 1.0),
            s("b", 0, 0.0),
            s("b", 1, -1.0),
            s("b", 2, 0.0)
        ]
    );
    assert_eq!(
        picked(Criterion::Better),
        [
            s("a", 1, 0.0),
            s("a", 3, 1.0),
            s("b", 0, 0.0),
            s("b", 2, 0.0)
        ]
    );
    assert_eq!(
        picked(Criterion::Best),
        [
            s("a", 0, -1.0),
            s("a", 1, 0.0),
            s("a", 2, 0.0),
            s("a", 3, 1.0),
            s("b", 0, 0.0),
            s("b", 2, 0.0)
        ]
    );
    assert_eq!(picked(Criterion::Success), [s("a", 3, 1.0)]);
    let d = to_dataset(&log, Criterion::Success, 0.4, 7).unwrap();
    assert!((d[0].weight - (1.0f64 / 0.4).exp()).abs() < 1e-9);
    assert_eq!(d[0].loss_on, "last_assistant");
    // The target is the last message; the earlier kept turns (window 3: two of them) come
    // before it.
    let last = d[0].messages.last().unwrap();
    assert_eq!(
        (last.role.as_str(), last.content.as_str()),
        ("assistant", "a turn 3")
    );
    assert_eq!(d[0].messages[4].content, "a turn 1");
    assert_eq!(d[0].messages[6].content, "a turn 2");
    let zero = to_dataset(&log, Criterion::All, 0.4, 7).unwrap();
    let w0 = zero.iter().find(|x| x.reward == 0.0).unwrap().weight;
    let wm = zero.iter().find(|x| x.reward == -1.0).unwrap().weight;
    assert!((w0 - 1.0).abs() < 1e-12 && (wm - (-2.5f64).exp()).abs() < 1e-12);
}

#[test]
fn conversion_is_deterministic_per_seed_and_drops_duplicates() {
    let log: Vec<Rollout> = (0..20)
        .map(|i| rollout(&format!("p{i}"), &[0.0, 1.0]))
        .collect();
    let a = to_dataset(&log, Criterion::All, 0.4, 1).unwrap();
    let b = to_dataset(&log, Criterion::All, 0.4, 1).unwrap();
    let c = to_dataset(&log, Criterion::All, 0.4, 2).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 40);
    let twice: Vec<Rollout> = log.iter().chain(&log).cloned().collect();
    assert_eq!(
        to_dataset(&twice, Criterion::All, 0.4, 1).unwrap().len(),
        40
    );
    assert!(to_dataset(&log, Criterion::All, 0.0, 1).is_err());
}

#[test]
fn rollouts_keep_the_best_candidate_and_stop_at_a_correct_one() {
    let model = ScriptedModel::new([
        // Turn 1: two samples, both wrong; the parsable one is kept.
        "no answer",
        "\\boxed{4}",
        // Turn 2: the second sample is right: stop.
        "\\boxed{6}",
        "\\boxed{5}",
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solvers = [MathAgent {
        model: &model,
        session: session.as_mut(),
    }];
    let cfg = RolloutConfig {
        dataset: Dataset::Gsm8k,
        models: vec!["scripted".into()],
        samples: vec![2],
        turns: 5,
        window: 2,
        temperature: 0.7,
        top_p: 1.0,
        max_tokens: 64,
        seed: 0,
        format_version: FORMAT_VERSION,
        candidates: Candidates::History,
    };
    let r = collect(&problem(), &cfg, &mut solvers).unwrap();
    assert_eq!(model.remaining(), 0);
    assert_eq!(r.turns.len(), 2);
    assert_eq!((r.turns[0].chosen, r.turns[0].reward), (1, 0.0));
    assert_eq!((r.turns[1].chosen, r.turns[1].reward), (1, 1.0));
    // Turn 2 saw the kept turn-1 answer.
    assert!(model.requests()[2]
        .prompt
        .contains("<assistant>\\boxed{4}</assistant>"));
    // The dialogue logs the kept answers and what each was told.
    let d = &r.dialogue;
    assert_eq!(d[d.len() - 1].content, SUCCESS_MESSAGE);
    assert_eq!(d[d.len() - 2].content, "\\boxed{5}");
    assert_eq!(d[d.len() - 3].content, retry_message("What is 2 + 3?"));
}

#[test]
fn fresh_candidates_are_sampled_from_the_question_alone_but_kept_after_the_history() {
    let model = ScriptedModel::new(["\\boxed{4}", "\\boxed{6}", "\\boxed{5}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solvers = [MathAgent {
        model: &model,
        session: session.as_mut(),
    }];
    let cfg = RolloutConfig {
        dataset: Dataset::Gsm8k,
        models: vec!["scripted".into()],
        samples: vec![1, 2],
        turns: 3,
        window: 2,
        temperature: 1.0,
        top_p: 1.0,
        max_tokens: 64,
        seed: 0,
        format_version: FORMAT_VERSION,
        candidates: Candidates::Fresh,
    };
    let r = collect(&problem(), &cfg, &mut solvers).unwrap();
    let reqs = model.requests();
    // Turn 2's candidates never saw turn 1's answer.
    assert!(reqs[1..].iter().all(|q| !q.prompt.contains("\\boxed{4}")));
    assert_eq!((r.turns.len(), r.turns[1].chosen), (2, 1));
    // The training sample of turn 2 still follows turn 1's answer and the retry message.
    let d = to_dataset(&[r], Criterion::Success, 0.4, 0).unwrap();
    let m = &d[0].messages;
    assert_eq!(m[m.len() - 3].content, "\\boxed{4}");
    assert_eq!(m[m.len() - 1].content, "\\boxed{5}");
}

#[test]
fn streamed_rollouts_of_one_model_equal_one_at_a_time_and_each_is_saved_as_it_ends() {
    let p2 = MathProblem {
        id: "p2".into(),
        question: "What is 4 + 4?".into(),
        answer: "8".into(),
        ..problem()
    };
    let problems = [problem(), p2];
    let cfg = RolloutConfig {
        dataset: Dataset::Gsm8k,
        models: vec!["scripted".into()],
        samples: vec![2],
        turns: 3,
        window: 2,
        temperature: 0.7,
        top_p: 1.0,
        max_tokens: 64,
        seed: 0,
        format_version: FORMAT_VERSION,
        candidates: Candidates::History,
    };
    // On one lane: p1's turn 1 (wrong), its turn 2 (a follow-up goes first; right), then p2's
    // turn 1 (right).
    let replies = [
        "\\boxed{4}",
        "no answer",
        "\\boxed{6}",
        "\\boxed{5}",
        "\\boxed{8}",
        "\\boxed{1}",
    ];
    let model = ScriptedModel::new(replies);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut solvers = [MathAgent {
        model: &model,
        session: session.as_mut(),
    }];
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let all = collect_all(&problems, &cfg, dir.path(), &mut solvers, |r| {
        seen.push(r.problem_id.clone())
    })
    .unwrap();
    assert_eq!(seen, ["p1", "p2"]);
    assert_eq!(model.remaining(), 0);
    // The same rollouts as one problem at a time.
    let alone = ScriptedModel::new(replies);
    let mut session = alone.session(&SessionOptions::default()).unwrap();
    let mut solvers = [MathAgent {
        model: &alone,
        session: session.as_mut(),
    }];
    let one = collect(&problems[0], &cfg, &mut solvers).unwrap();
    let two = collect(&problems[1], &cfg, &mut solvers).unwrap();
    let strip = |mut r: Rollout| {
        for t in &mut r.turns {
            for c in &mut t.candidates {
                c.ms = 0.0;
            }
        }
        r
    };
    assert_eq!(
        all.into_iter().map(strip).collect::<Vec<_>>(),
        [strip(one), strip(two)]
    );
    // Each was saved: a second call resumes without asking the model.
    let none = ScriptedModel::new(Vec::<&str>::new());
    let mut session = none.session(&SessionOptions::default()).unwrap();
    let mut solvers = [MathAgent {
        model: &none,
        session: session.as_mut(),
    }];
    let again = collect_all(&problems, &cfg, dir.path(), &mut solvers, |_| {}).unwrap();
    assert_eq!(again.len(), 2);
    assert!(none.requests().is_empty());
}
