//! `eval gsm8k-retry` end to end with the real SmolLM2: reflect and retry on GSM8K, the arms
//! sharing one first trial, and `eval compare` over them.

mod common;

use common::{assert_clean_failure, cli};

fn read(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_reflexion_run_and_a_sampled_retry_share_a_first_trial_and_are_compared_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (refl, none, cmp) = (
        dir.path().join("reflexion"),
        dir.path().join("none"),
        dir.path().join("cmp"),
    );
    let run = |strategy: &str, out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "gsm8k-retry",
            "--limit",
            "3",
            "--trials",
            "2",
            "--max-tokens",
            "40",
            "--temperature",
            "0.8",
            "--seed",
            "3",
            "--parallel",
            "3",
            "--threads",
            "2",
            "--strategy",
            strategy,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = cli(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run("reflexion", &refl, &[]);
    for f in ["run.json", "trial-00.json", "records.jsonl", "success.png"] {
        assert!(refl.join(f).is_file(), "missing {f}");
    }
    let cfg = read(&refl.join("run.json"));
    assert_eq!(cfg["agent"], "gsm8k-retry");
    // The environment's settings sit at the top level of run.json.
    assert_eq!(cfg["max_tokens"], 40);
    // Every failure of trial 1 was reflected on and rated by its retry; each record carries
    // the bare message for a trainer's own template.
    let first = read(&refl.join("trial-00.json"));
    let failed = 3 - first["solved_now"].as_u64().unwrap();
    let records = std::fs::read_to_string(refl.join("records.jsonl")).unwrap();
    assert_eq!(records.lines().count() as u64, failed);
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let m = &r["messages"];
        assert!(m[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are an advanced reasoning agent"));
        assert_eq!(m[1]["content"], r["reflection"]);
        assert!(r["prompt"].as_str().unwrap().contains("<|im_start|>user"));
    }
    // The sampled retry takes the same first trial.
    run(
        "none",
        &none,
        &["--first-trial-from", refl.to_str().unwrap()],
    );
    let task = "test-1.json";
    let (a, b) = (
        read(&refl.join("trial-00").join(task)),
        read(&none.join("trial-00").join(task)),
    );
    assert_eq!(a["scratchpad"], b["scratchpad"]);
    let o = cli(&[
        "eval",
        "compare",
        none.to_str().unwrap(),
        refl.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = read(&cmp.join("compare.json"));
    assert_eq!(report["pairs"][0]["name"], "reflexion vs none");
    assert_eq!(report["pairs"][0]["trials"][1]["n"], 3);
}

#[test]
fn gsm8k_retry_refuses_an_unknown_split_and_a_zero_token_budget() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    let bad = cli(&["eval", "gsm8k-retry", "--split", "dev", "--out", o]);
    assert_clean_failure(&bad, &["--split dev"]);
    let bad = cli(&["eval", "gsm8k-retry", "--max-tokens", "0", "--out", o]);
    assert_clean_failure(&bad, &["--max-tokens"]);
    let bad = cli(&[
        "eval",
        "gsm8k-retry",
        "--strategy",
        "last-attempt",
        "--out",
        o,
    ]);
    assert_clean_failure(&bad, &["--strategy last-attempt"]);
}
