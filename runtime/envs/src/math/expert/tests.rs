use super::*;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};

fn problem(id: &str) -> MathProblem {
    MathProblem {
        id: id.into(),
        dataset: Dataset::Gsm8k,
        question: format!("{id}: what is 2 + 3?"),
        answer: "5".into(),
        solution: None,
    }
}

fn cfg(chains: u32, retries: u32) -> ExpertConfig {
    ExpertConfig {
        dataset: Dataset::Gsm8k,
        model: "scripted".into(),
        adapter_sha256: None,
        chains,
        retries,
        temperature: 0.7,
        top_p: 0.95,
        max_tokens: 64,
        seed: 1,
        format_version: FORMAT_VERSION,
    }
}

fn attempt(response: &str, reward: f32) -> Attempt {
    Attempt {
        response: response.into(),
        answer: None,
        reward,
        evaluated_tokens: 0,
        reused_tokens: 0,
        generated_tokens: response.len() as u32,
        ms: 0.0,
    }
}

fn collected(id: &str, chains: Vec<Vec<Attempt>>) -> Collected {
    Collected {
        format_version: FORMAT_VERSION,
        problem_id: id.into(),
        question: "q".into(),
        gold: "5".into(),
        chains,
    }
}

#[test]
fn a_wrong_answer_is_retried_after_being_told_so_and_a_chain_stops_at_a_right_one() {
    // The scripted session runs follow-ups first: chain 0, its retry, then chain 1.
    let model = ScriptedModel::new(["maybe \\boxed{6}", "so \\boxed{5}", "\\boxed{5}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut agent = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let p = problem("p1");
    let mut got = Vec::new();
    collect_stream(&[&p], &cfg(2, 1), &mut agent, &mut |i, c| {
        got.push((i, c));
        Ok::<(), RiseError>(())
    })
    .unwrap();
    assert_eq!(got.len(), 1);
    let c = &got[0].1;
    let rewards: Vec<Vec<f32>> = c
        .chains
        .iter()
        .map(|ch| ch.iter().map(|a| a.reward).collect())
        .collect();
    assert_eq!(rewards, [vec![0.0, 1.0], vec![1.0]]);
    assert!(c.solved());
    let reqs = model.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].prompt.contains("maybe \\boxed{6}</assistant>"));
    assert!(reqs[1].prompt.contains("The answer is incorrect"));
    assert!(!reqs[2].prompt.contains("incorrect"));
    // Each attempt has its own seed.
    assert_ne!(reqs[0].sampling.seed, reqs[2].sampling.seed);
}

#[test]
fn a_chain_gives_up_after_its_retries() {
    let model = ScriptedModel::new(["\\boxed{1}", "\\boxed{2}", "no box"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut agent = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let p = problem("p1");
    let mut out = None;
    collect_stream(&[&p], &cfg(1, 2), &mut agent, &mut |_, c| {
        out = Some(c);
        Ok::<(), RiseError>(())
    })
    .unwrap();
    let c = out.unwrap();
    assert_eq!(c.chains[0].len(), 3);
    assert!(!c.solved());
    assert_eq!(model.remaining(), 0);
}

#[test]
fn a_stopped_collection_resumes_from_its_files_without_asking_again() {
    let dir = tempfile::tempdir().unwrap();
    let problems = [problem("p1"), problem("p2")];
    let model = ScriptedModel::new(["\\boxed{5}", "\\boxed{5}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut agent = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    let first = collect(&problems, &cfg(1, 1), dir.path(), &mut agent, |_| {}).unwrap();
    assert_eq!(first.len(), 2);
    let empty = ScriptedModel::new(Vec::<String>::new());
    let mut s2 = empty.session(&SessionOptions::default()).unwrap();
    let mut agent = MathAgent {
        model: &empty,
        session: s2.as_mut(),
    };
    let again = collect(&problems, &cfg(1, 1), dir.path(), &mut agent, |_| {}).unwrap();
    assert_eq!(again, first);
    assert!(empty.requests().is_empty());
    // Other settings in the same folder are refused, not mixed.
    let err = collect(&problems, &cfg(2, 1), dir.path(), &mut agent, |_| {}).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
}

#[test]
fn correct_answers_are_distinct_capped_per_problem_and_first_attempts_come_first() {
    let all = [
        collected(
            "a",
            vec![
                vec![attempt("x", 0.0), attempt("retry right", 1.0)],
                vec![attempt("first right", 1.0)],
                vec![attempt("first  right", 1.0)],
                vec![attempt("other right", 1.0)],
            ],
        ),
        collected("b", vec![vec![attempt("wrong", 0.0), attempt("no", -1.0)]]),
    ];
    let s = select_correct(&all, 2);
    let picked: Vec<(&str, u32, u32)> = s
        .iter()
        .map(|x| (x.response.as_str(), x.chain, x.attempt))
        .collect();
    // "first  right" differs only in spacing: the same answer. Retries come after.
    assert_eq!(picked, [("first right", 1, 0), ("other right", 3, 0)]);
    assert!(s
        .iter()
        .all(|x| x.selection == "correct" && x.reward >= 1.0));
    assert_eq!(select_correct(&all, 5).len(), 3);
}

#[test]
fn the_placebo_draws_the_same_count_whatever_the_reward_and_keeps_the_cap() {
    let many: Vec<Collected> = (0..10)
        .map(|i| {
            collected(
                &format!("p{i}"),
                vec![
                    vec![
                        attempt(&format!("w{i}"), 0.0),
                        attempt(&format!("r{i}"), 1.0),
                    ],
                    vec![attempt(&format!("n{i}"), -1.0)],
                ],
            )
        })
        .collect();
    let s = select_placebo(&many, 12, 2, 7);
    assert_eq!(s.len(), 12);
    for id in many.iter().map(|c| &c.problem_id) {
        assert!(s.iter().filter(|x| &x.problem_id == id).count() <= 2);
    }
    // Not only correct answers: with 20 of 30 attempts wrong, twelve draws all right would
    // be a selection by reward.
    assert!(s.iter().any(|x| x.reward < 1.0));
    assert_eq!(s, select_placebo(&many, 12, 2, 7), "seeded");
    assert_ne!(s, select_placebo(&many, 12, 2, 8));
    // Asked for more than there is: all there is under the cap.
    assert_eq!(select_placebo(&many, 100, 2, 7).len(), 20);
}

#[test]
fn a_sample_is_the_first_attempt_prompt_with_the_answer_as_its_reply() {
    let s = &select_correct(
        &[collected(
            "a",
            vec![vec![attempt("w", 0.0), attempt(" so 5 ", 1.0)]],
        )],
        1,
    )[0];
    let x = to_sample("What is 2 + 3?", s);
    let m = &x.messages;
    assert_eq!(m.len(), rise::messages("What is 2 + 3?", &[], 1).len() + 1);
    assert_eq!(m[m.len() - 2].content, "What is 2 + 3?");
    assert_eq!(m.last().unwrap().role, "assistant");
    assert_eq!(m.last().unwrap().content, "so 5");
    assert!(!m.iter().any(|c| c.content.contains("incorrect")));
    assert_eq!((x.problem_id.as_str(), x.turn, x.weight), ("a", 0, 1.0));
}

#[test]
fn a_saved_attempt_edited_to_be_correct_or_a_changed_question_stops_the_resume() {
    let dir = tempfile::tempdir().unwrap();
    let problems = [problem("p1")];
    let model = ScriptedModel::new(["\\boxed{6}", "\\boxed{7}"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut agent = MathAgent {
        model: &model,
        session: session.as_mut(),
    };
    collect(&problems, &cfg(1, 1), dir.path(), &mut agent, |_| {}).unwrap();
    let path = runner::task_path(dir.path(), 0, "p1");
    let honest = std::fs::read(&path).unwrap();
    let mut c: Collected = serde_json::from_slice(&honest).unwrap();
    assert!(!c.solved());
    c.chains[0][0].reward = 1.0;
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    let resume = |problems: &[MathProblem]| saved(problems, &cfg(1, 1), dir.path());
    let e = resume(&problems).unwrap_err().to_string();
    assert!(e.contains("p1.json") && e.contains("edited"), "{e}");
    std::fs::write(&path, &honest).unwrap();
    let mut changed = problem("p1");
    changed.answer = "6".into();
    let e = resume(&[changed]).unwrap_err().to_string();
    assert!(e.contains("another format or problem"), "{e}");
    assert!(
        resume(&problems).unwrap()[0].is_some(),
        "the honest file resumes"
    );
}
