//! `retroformer rise round` end to end with the real SmolLM2 model and the trainer
//! (`retroformer-train rwr`, spawned): rollouts on GSM8K train, samples, a trained LoRA, the
//! base and the adapter evaluated on GSM8K test, the paired report; then a resume that redoes
//! nothing.
//!
//! `cargo test --workspace` builds both binaries before any test runs; run alone, build them
//! first with `cargo build --bins`.

use std::process::Command;

use retroformer_e2e::workspace_bin;

fn round(out: &std::path::Path) -> std::process::Output {
    // Tiny sizes: 4 train problems (2 held out), 2 test problems, 24 tokens an answer.
    let args = "rise round --base smollm2-135m-instruct --no-fetch --train 4 --eval 2 \
        --samples 1,2 --rollout-turns 2 --turns 2 --samples-eval 2 --max-tokens 24 \
        --criteria all --heldout-every 2 --epochs 1 --batch 2 --max-len 384 --threads 2 \
        --eval-batch 2";
    Command::new(workspace_bin("retroformer"))
        .args(args.split_whitespace())
        .arg("--out")
        .arg(out)
        .env("RETROFORMER_TRAIN", workspace_bin("retroformer-train"))
        .output()
        .unwrap()
}

#[test]
fn a_small_rise_round_trains_an_adapter_evaluates_both_arms_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("round");
    let o = round(&out);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("round.json")).unwrap()).unwrap();
    assert_eq!(report["kind"], "rise-round");
    assert_eq!(report["rollouts"]["problems"], 4);
    // Two of the four problems are held out: the trainer saw the others only.
    let train = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    let held = std::fs::read_to_string(out.join("heldout.jsonl")).unwrap();
    let ids = |t: &str| -> std::collections::BTreeSet<String> {
        t.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["problem_id"].to_string()
            })
            .collect()
    };
    assert!(ids(&train).is_disjoint(&ids(&held)), "{train}\n{held}");
    assert!(report["train"]["steps"].as_u64().unwrap() >= 1);
    assert!(report["train"]["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(out.join("adapter.gguf").is_file());
    for arm in ["base", "trained"] {
        assert_eq!(report[arm]["problems"], 2, "{report}");
        for m in ["m1@t1", "m5@t1", "m1@t5", "p1@t5"] {
            let v = report[arm]["metrics"][m].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{arm} {m} {v}");
            assert!(report["paired"][m]["interval"].is_array(), "{report}");
        }
    }
    // The trained arm ran with the adapter on, the base without.
    let run = |arm: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(arm).join("run.json")).unwrap()).unwrap()
    };
    assert!(run("eval-base")["adapter"].is_null());
    assert!(run("eval-trained")["adapter"]
        .as_str()
        .unwrap()
        .ends_with("adapter.gguf"));
    // ... and names the file by its hash, so another adapter at that path is not resumed.
    let sha = run("eval-trained")["adapter_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sha.len(), 64, "{sha}");
    assert!(out.join("turns.svg").is_file());
    assert!(stdout.contains("trained - base, m1@t5"), "{stdout}");
    // A second run finds every phase done and writes the same report.
    let again = round(&out);
    assert!(again.status.success());
    let report2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("round.json")).unwrap()).unwrap();
    assert_eq!(report2["paired"], report["paired"]);
    assert_eq!(report2["train"]["steps"], report["train"]["steps"]);
}
