use super::*;
use retroformer_envs::math::rise::{metrics, Attempt, Rollout, RolloutTurn};

fn attempt(answer: &str, right: bool) -> Attempt {
    Attempt {
        response: format!("\\boxed{{{answer}}}"),
        answer: Some(answer.into()),
        reward: if right { 1.0 } else { 0.0 },
        evaluated_tokens: 10,
        reused_tokens: 0,
        generated_tokens: 20,
        ms: 100.0,
    }
}

/// A problem whose sequential answers are `turns` (the gold answer is "1").
fn result(id: &str, turns: &[&str]) -> RiseResult {
    let sequential: Vec<Attempt> = turns.iter().map(|a| attempt(a, *a == "1")).collect();
    let parallel = vec![attempt("1", true)];
    RiseResult {
        format_version: rise::FORMAT_VERSION,
        problem_id: id.into(),
        gold: "1".into(),
        metrics: metrics(&sequential, &parallel),
        sequential,
        parallel,
        wall_ms: 1.0,
    }
}

pub(super) fn settings() -> RoundSettings {
    RoundSettings {
        model: "m".into(),
        teacher: None,
        train_problems: 4,
        eval_problems: 2,
        train_data: None,
        eval_data: None,
        samples: vec![1, 4],
        rollout_turns: 3,
        window: 2,
        temperature: 1.0,
        top_p: 1.0,
        candidates: Candidates::History,
        rollout_sampling: None,
        max_tokens: 64,
        seed: 0,
        criterion: "better".into(),
        tau: 0.4,
        heldout_every: 2,
        rank: 8,
        alpha: 16.0,
        lr: 1e-4,
        epochs: 1.0,
        batch: 2,
        max_len: 256,
        backend: "flex".into(),
        turns: 3,
        parallel_samples: 1,
        eval_batch: 2,
    }
}

#[test]
fn an_arm_counts_answer_changes_and_flips_over_consecutive_turns() {
    // p1: 2 -> 1 -> 1 (one change, wrong->right); p2: 1 -> 3 -> 3 (one change, right->wrong).
    let r = [
        result("p1", &["2", "1", "1"]),
        result("p2", &["1", "3", "3"]),
    ];
    let a = arm(&r, Path::new("x"));
    assert_eq!(a.problems, 2);
    assert!((a.changed - 0.5).abs() < 1e-12);
    assert!((a.wrong_to_right - 0.25).abs() < 1e-12);
    assert!((a.right_to_wrong - 0.25).abs() < 1e-12);
    let by_turn: Vec<f64> = a.accuracy_by_turn.clone();
    assert_eq!(by_turn.len(), 3);
    assert!((by_turn[0] - 0.5).abs() < 1e-12 && (by_turn[1] - 0.5).abs() < 1e-12);
    assert!((a.metrics["m1@t1"] - 0.5).abs() < 1e-12);
    // p1's majority is "1" (right), p2's is "3" (wrong).
    assert!((a.metrics["m1@t5"] - 0.5).abs() < 1e-12);
    assert!((a.metrics["p1@t5"] - 1.0).abs() < 1e-12);
}

#[test]
fn the_paired_metrics_are_trained_minus_base_problem_by_problem() {
    let base = [
        result("p1", &["2", "2", "2"]),
        result("p2", &["1", "1", "1"]),
    ];
    let trained = [
        result("p1", &["2", "1", "1"]),
        result("p2", &["1", "1", "1"]),
    ];
    let p = paired_metrics(&base, &trained).unwrap();
    assert!((p["m1@t5"].difference - 0.5).abs() < 1e-12);
    assert_eq!((p["m1@t5"].table.only_b, p["m1@t5"].table.only_a), (1, 0));
    assert!(p["m1@t1"].difference.abs() < 1e-12);
    let s = self_correction(&trained);
    assert!((s.difference - 0.5).abs() < 1e-12);
    let other = [result("p1", &["1"]), result("p3", &["1"])];
    assert!(paired_metrics(&base, &other).is_err());
}

fn rollout(id: &str, rewards: &[f32]) -> Rollout {
    let turns = rewards
        .iter()
        .enumerate()
        .map(|(t, &r)| RolloutTurn {
            model: "m".into(),
            candidates: vec![Attempt {
                response: format!("{id} turn {t}"),
                reward: r,
                ms: 200.0,
                ..attempt("x", false)
            }],
            chosen: 0,
            reward: r,
        })
        .collect();
    Rollout {
        format_version: rise::FORMAT_VERSION,
        problem_id: id.into(),
        question: format!("question {id}"),
        gold: "1".into(),
        window: 2,
        turns,
        dialogue: Vec::new(),
    }
}

#[test]
fn rollout_figures_count_each_turn_batch_once() {
    let all = [rollout("a", &[0.0, 1.0]), rollout("b", &[0.0, 0.0, 0.0])];
    let f = rollout_figures(&all);
    assert_eq!((f.problems, f.solved, f.attempts), (2, 1, 5));
    assert_eq!(f.generated_tokens, 100);
    assert!((f.decode_s - 1.0).abs() < 1e-9);
    assert!((f.tokens_per_s - 100.0).abs() < 1e-9);
}

#[test]
fn the_data_split_holds_out_whole_problems() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("rollouts/rollouts");
    std::fs::create_dir_all(&folder).unwrap();
    for (i, id) in ["p0", "p1", "p2", "p3"].iter().enumerate() {
        let r = rollout(id, &[0.0, if i % 2 == 0 { 1.0 } else { 0.0 }]);
        write_json(&folder.join(format!("{id}.json")), &r).unwrap();
    }
    let plan = RoundPlan {
        settings: settings(),
        out: dir.path().to_path_buf(),
    };
    let (train, heldout) = dataset(&plan).unwrap();
    assert!(dir.path().join("train.jsonl").is_file() && dir.path().join("heldout.jsonl").is_file());
    let held: std::collections::BTreeSet<&str> =
        heldout.iter().map(|s| s.problem_id.as_str()).collect();
    // Every second problem (p1, p3) is held out; none of their turns is trained on.
    assert_eq!(held, ["p1", "p3"].into_iter().collect());
    assert!(train.iter().all(|s| !held.contains(s.problem_id.as_str())));
    assert!(train.iter().any(|s| s.problem_id == "p0" && s.turn == 1));
}

#[test]
fn settings_that_cannot_run_are_refused_naming_the_flag() {
    let mut s = settings();
    s.window = 0;
    assert!(check(&s).unwrap_err().to_string().contains("--window"));
    let mut s = settings();
    s.top_p = 0.0;
    assert!(check(&s).unwrap_err().to_string().contains("--top-p"));
    let mut s = settings();
    s.criterion = "most".into();
    assert!(check(&s).unwrap_err().to_string().contains("--criteria"));
    assert!(check(&settings()).is_ok());
}
