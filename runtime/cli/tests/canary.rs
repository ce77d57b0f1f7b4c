//! `retroformer adapters canary` end to end with the real SmolLM2.

mod common;

use common::{adapter2, assert_clean_failure, cli_home, install_adapter, smollm2_path};

#[test]
// long: one end-to-end scenario (install, canary, verdict, store) checked step by step.
fn adapters_canary_evaluates_both_reflectors_on_held_out_tasks_and_promotes_within_the_margin() {
    let home = tempfile::tempdir().unwrap();
    let base = smollm2_path();
    let adapter = home.path().join("refl.gguf");
    let mut w = common::smollm2_adapter(2.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[576, 2], &[0.01; 1152])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 576], &[0.01; 1152]);
    w.write(&adapter).unwrap();
    let run = |args: &[&str]| cli_home(home.path(), args);
    let b = base.to_str().unwrap();
    let id = install_adapter(home.path(), &adapter, b);
    let evals = home.path().join("canary");
    let o = run(&[
        "adapters",
        "canary",
        &id,
        "--base",
        b,
        "--env",
        "household",
        "--skip",
        "5",
        "--limit",
        "1",
        "--trials",
        "1",
        "--max-steps",
        "2",
        "--threads",
        "1",
        "--margin",
        "1",
        "--out",
        evals.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Scores are success rates in [0, 1]: a margin of 1 always promotes. This test checks the
    // command's plumbing; the policy (a worse candidate refused, a better one promoted) is
    // tests/tests/canary_policy.rs.
    assert!(stdout.contains("promoted"), "{stdout}");
    // The incumbent (the base alone) and the candidate each ran the same held-out task.
    for who in ["base", id.as_str()] {
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(evals.join(who).join("run.json")).unwrap())
                .unwrap();
        assert_eq!(run["trials"], 1);
        let trial: serde_json::Value =
            serde_json::from_slice(&std::fs::read(evals.join(who).join("trial-00.json")).unwrap())
                .unwrap();
        assert_eq!(trial["tasks"], 1);
    }
    // The first trial has no reflection yet: the candidate took the incumbent's instead of
    // running it again (its wall time too, so the files are the same bytes).
    let task_file = |who: &str| {
        let dir = evals.join(who).join("trial-00");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        std::fs::read(&files[0]).unwrap()
    };
    assert_eq!(task_file("base"), task_file(&id));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("trial 1 of 1 tasks taken from"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["adapters", "list", "--base", b, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["active"], id.as_str());
    let m = &v["adapters"][0]["metrics"];
    assert!(
        m["canary_score"].is_number() && m["canary_incumbent_score"].is_number(),
        "{v}"
    );
    assert_eq!(m["canary_promoted"], 1.0);

    // The active adapter cannot be its own canary.
    let o = run(&["adapters", "canary", &id, "--base", b]);
    assert_clean_failure(&o, &[&id, "already the active adapter"]);
    // A held-out set that --skip empties is an error, not a tie that promotes.
    let id2 = install_adapter(home.path(), &adapter2(&home), b);
    let o = run(&[
        "adapters",
        "canary",
        &id2,
        "--base",
        b,
        "--skip",
        "1000",
        "--limit",
        "1",
        "--out",
        home.path().join("canary-empty").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["--skip 1000"]);
    let o = run(&["adapters", "canary", &id, "--base", b, "--env", "alfworld"]);
    assert_clean_failure(&o, &["--env alfworld"]);
    let o = run(&[
        "adapters",
        "canary",
        &id2,
        "--base",
        b,
        "--env",
        "humaneval",
        "--first-trial-from",
        evals.join("base").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["--first-trial-from", "humaneval"]);
    let o = run(&[
        "adapters",
        "canary",
        "0123456789abcdef",
        "--base",
        b,
        "--margin",
        "0",
    ]);
    assert_clean_failure(&o, &["0123456789abcdef"]);
}

#[test]
fn the_humaneval_canary_scores_pass_at_1_on_held_out_problems_with_the_candidate_reflector() {
    let home = tempfile::tempdir().unwrap();
    let base = smollm2_path();
    let b = base.to_str().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/humaneval/tiny.jsonl");
    let adapter = adapter2(&home);
    let run = |args: &[&str]| cli_home(home.path(), args);
    let id = install_adapter(home.path(), &adapter, b);
    let evals = home.path().join("canary");
    let o = run(&[
        "adapters",
        "canary",
        &id,
        "--base",
        b,
        "--env",
        "humaneval",
        "--data",
        data.to_str().unwrap(),
        "--skip",
        "1",
        "--limit",
        "1",
        "--trials",
        "2",
        "--threads",
        "1",
        "--margin",
        "1",
        "--out",
        evals.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("promoted"), "{stdout}");
    // The adapter went onto a reflector session once: in the candidate's evaluation.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.matches("reflector adapter:").count(), 1, "{stderr}");
    // Both evaluations ran the held-out problem only (Tiny/1), the candidate with its adapter
    // on the reflector.
    for who in ["base", id.as_str()] {
        let dir = evals.join(who);
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["max_iters"], 2);
        assert_eq!(run["reflector"], b);
        assert_eq!(run["reflector_adapter"].is_string(), who != "base", "{run}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("humaneval.json")).unwrap()).unwrap();
        assert_eq!(summary["tasks"], 1);
        let files: Vec<_> = std::fs::read_dir(dir.join("trial-00"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let task: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("trial-00").join(&files[0])).unwrap())
                .unwrap();
        assert_eq!(task["task_id"], "Tiny/1");
    }
    // Nothing left after --skip is an error that names it, before any model is loaded.
    let o = run(&[
        "eval",
        "humaneval",
        "--data",
        data.to_str().unwrap(),
        "--skip",
        "2",
        "--out",
        home.path().join("he-empty").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["--skip 2"]);
}
