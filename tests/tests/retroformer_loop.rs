//! The Retroformer loop (`retroformer loop`) end to end, with the real SmolLM2 model and the
//! trainer (`retroformer-train`, spawned for training): collect Reflexion trials, train the
//! reflector (SFT), export, install into the adapter store, canary on held-out tasks, twice;
//! and the results file that records each phase.
//!
//! `cargo test --workspace` builds both binaries (`retroformer`, `retroformer-train`) before
//! any test runs; run alone, build them first with `cargo build --bins`.

use std::path::Path;
use std::process::Command;

use retroformer_e2e::{smollm2_path, workspace_bin};

/// A loop that ended well: its standard output and its `loop.json`.
fn finished(o: &std::process::Output, out: &Path) -> (String, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(out.join("loop.json")).unwrap()).unwrap();
    (stdout, report)
}

/// The task results of a run's first trial, their reflections (each run's own) left out.
fn first_trial(run: &Path) -> Vec<serde_json::Value> {
    let dir = run.join("trial-00");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}", dir.display());
    files
        .iter()
        .map(|f| {
            let mut r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            r["reflection"] = serde_json::Value::Null;
            r
        })
        .collect()
}

/// The ids of the adapters installed for `base` and the active one's.
fn installed_adapters(base: &Path, home: &Path) -> (Vec<String>, Option<String>) {
    let o = Command::new(workspace_bin("retroformer"))
        .args(["adapters", "list", "--json", "--base"])
        .arg(base)
        .env("RETROFORMER_HOME", home)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut ids: Vec<String> = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    (ids, v["active"].as_str().map(String::from))
}

#[test]
fn two_rounds_each_add_records_train_a_new_adapter_install_it_and_share_one_first_trial() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("loop");
    let base = smollm2_path();
    // The trainer is found next to the runtime's CLI.
    workspace_bin("retroformer-train");
    let o = Command::new(workspace_bin("retroformer"))
        .args(["loop", "--env", "household", "--rounds", "2"])
        // Three training tasks, all failed in two steps: SmolLM2's greedy reflection on one
        // task may be cut to nothing (it opens like a trajectory line), and which one depends
        // on the floats (threads, lanes, an adapter applied); with three, each round has
        // reflections to rate (on a 2-vCPU EPYC: two in round 1, two in round 2).
        .args(["--train-tasks", "3", "--eval-tasks", "1", "--trials", "2"])
        .args([
            "--max-steps",
            "2",
            "--steps",
            "1",
            "--threads",
            "2",
            "--parallel",
            "3",
        ])
        // Every reflection is kept (ratings are -1, 0 or 1), so that there is something to
        // train on whatever this small model does; every candidate is promoted (a margin of
        // 1), so that round 2 collects with round 1's adapter.
        .args([
            "--min-reward=-1",
            "--min-sft-examples",
            "1",
            "--margin",
            "1",
        ])
        .arg("--base")
        .arg(&base)
        .arg("--out")
        .arg(&out)
        .env("RETROFORMER_HOME", home.path())
        .output()
        .unwrap();
    let (stdout, report) = finished(&o, &out);
    assert_eq!(report["format_version"], 1);
    let r = &report["rounds"][0];
    // Two trials of three tasks: a reflection each, rated by the second trial's return, unless
    // cut to nothing.
    let own = |round: u32| {
        std::fs::read_to_string(out.join(format!("round-{round}/collect/records.jsonl")))
            .map_or(0, |t| t.lines().filter(|l| !l.trim().is_empty()).count())
    };
    let own1 = own(1);
    assert!(own1 >= 1, "round 1 rated no reflection: {r}");
    assert_eq!(r["collect"]["records"], own1, "{r}");
    assert_eq!(r["collect"]["kept"], own1);
    assert_eq!(
        r["collect"]["success_by_trial"].as_array().unwrap().len(),
        2
    );
    assert!(r["train"]["loss_first"].as_f64().unwrap().is_finite());
    assert!(r["train"]["peak_rss_bytes"].as_u64().unwrap() > 50_000_000);
    // Each phase's time: training without the export, the export, the install.
    let export_s = r["export"]["export_s"].as_f64().unwrap();
    let train_s = r["train"]["wall_s_without_export"].as_f64().unwrap();
    assert!(export_s > 0.0 && train_s > 0.0, "{r}");
    assert!(r["export"]["install_wall_s"].as_f64().unwrap() > 0.0);
    assert!(stdout.contains("install"), "{stdout}");
    let id = r["train"]["id"].as_str().unwrap();
    // The canary scored the candidate against the base alone (no adapter was active) and,
    // with a margin of 1, promoted it.
    assert!(r["canary"]["incumbent_id"].is_null());
    assert_eq!(r["canary"]["promoted"], true, "{r}");
    assert!(out.join("round-1/canary/base/run.json").is_file());
    assert!(out.join(format!("round-1/canary/{id}/run.json")).is_file());
    assert!(out.join("loop.svg").is_file() && out.join("loop.png").is_file());
    // Round 2 collected with round 1's adapter as its reflector, added records of its own,
    // pooled both rounds' and trained a new adapter on them.
    let r2 = &report["rounds"][1];
    assert_eq!(r2["round"], 2, "{report}");
    assert_eq!(r2["reflector_adapter"].as_str(), Some(id), "{r2}");
    let run2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("round-2/collect/run.json")).unwrap())
            .unwrap();
    assert!(
        run2["reflector_adapter"].as_str().unwrap().contains(id),
        "{run2}"
    );
    let own2 = own(2);
    assert!(own2 >= 1, "round 2 added no record: {r2}");
    assert_eq!(r2["collect"]["records"], own1 + own2, "{r2}");
    let id2 = r2["train"]["id"].as_str().unwrap();
    assert_ne!(id2, id, "{r2}");
    // Trial 1 has no reflection yet, so it ran once: round 2's collection took round 1's, and
    // every canary evaluation took round 1's first one (the same bytes: wall times included).
    let trial1 = |dir: &str| first_trial(&out.join(dir));
    assert_eq!(trial1("round-1/collect").len(), 3);
    assert_eq!(trial1("round-1/collect"), trial1("round-2/collect"));
    let first = trial1("round-1/canary/base");
    for arm in [
        format!("round-1/canary/{id}"),
        format!("round-2/canary/{id}"),
        format!("round-2/canary/{id2}"),
    ] {
        assert_eq!(trial1(&arm), first, "{arm}");
    }
    // The store agrees: both adapters are installed, and the active one is round 2's.
    let (ids, active) = installed_adapters(&base, home.path());
    let mut want = vec![id, id2];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(r2["canary"]["promoted"], true, "{r2}");
    assert_eq!(active.as_deref(), Some(id2), "{ids:?}");
}

#[test]
fn the_loop_refuses_an_unknown_environment_and_a_single_trial() {
    let o = Command::new(workspace_bin("retroformer"))
        .args(["loop", "--env", "chess", "--out", "/nonexistent"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--env chess"), "{err}");
    let o = Command::new(workspace_bin("retroformer"))
        .args([
            "loop",
            "--env",
            "household",
            "--trials",
            "1",
            "--out",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--trials"), "{err}");
    // HumanEval's collections share no first trial, so they cannot sample reflections of one.
    let o = Command::new(workspace_bin("retroformer"))
        .args(["loop", "--env", "humaneval", "--collect-samples", "2"])
        .args(["--out", "/nonexistent"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--collect-samples"), "{err}");
}

#[test]
fn sampled_collections_share_the_first_trial_and_too_small_an_sft_set_stops_the_loop() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("loop");
    let o = Command::new(workspace_bin("retroformer"))
        .args(["loop", "--env", "household", "--rounds", "1"])
        .args(["--train-tasks", "1", "--eval-tasks", "1", "--trials", "2"])
        // Two threads: see the test above.
        .args(["--max-steps", "2", "--threads", "2"])
        .args(["--collect-samples", "2", "--collect-temperature", "0.9"])
        // Both reflections are kept (ratings are -1, 0 or 1), and two are too few.
        .args(["--min-reward=-1", "--min-sft-examples", "3"])
        .arg("--base")
        .arg(smollm2_path())
        .arg("--out")
        .arg(&out)
        .env("RETROFORMER_HOME", home.path())
        .output()
        .unwrap();
    let (_, report) = finished(&o, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("fewer than --min-sft-examples 3"),
        "{stderr}"
    );
    assert_eq!(report["collect_samples"], 2, "{report}");
    let r = &report["rounds"][0];
    // One failed task, two collections: two reflections of one failure, each rated.
    assert_eq!(r["collect"]["records"], 2, "{r}");
    assert_eq!(r["collect"]["kept"], 2, "{r}");
    assert!(r["stopped"]
        .as_str()
        .unwrap()
        .contains("--min-sft-examples"));
    assert!(r["train"].is_null() && r["canary"].is_null(), "{r}");
    let samples = r["collect"]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[1]["temperature"].as_f64(), Some(0.9));
    assert_eq!(samples[1]["seed"], 1);
    let wall: f64 = samples.iter().map(|x| x["wall_s"].as_f64().unwrap()).sum();
    assert!((r["collect"]["wall_s"].as_f64().unwrap() - wall).abs() < 1e-6);
    let all = std::fs::read_to_string(out.join("records-all.jsonl")).unwrap();
    assert_eq!(all.lines().count(), 2);
    // The sampled collection says how it sampled, and took the greedy one's trial 1.
    let run = |dir: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(dir).join("run.json")).unwrap()).unwrap()
    };
    assert!(run("round-1/collect")["reflector_temperature"].is_null());
    assert_eq!(run("round-1/collect-2")["reflector_seed"], 1);
    let trial1 = |dir: &str| -> serde_json::Value {
        let d = out.join(dir).join("trial-00");
        let f = std::fs::read_dir(&d)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("reflection");
        v
    };
    assert_eq!(trial1("round-1/collect"), trial1("round-1/collect-2"));
}

#[test]
fn a_loop_resumed_with_other_settings_is_refused_and_names_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let args = |trials: &str| {
        vec![
            "loop".to_string(),
            "--env".into(),
            "household".into(),
            "--base".into(),
            "smollm2-135m-instruct".into(),
            "--trials".into(),
            trials.into(),
            "--out".into(),
            dir.path().display().to_string(),
        ]
    };
    // What a loop with three trials leaves in loop.json (the settings; no round yet).
    let saved = serde_json::json!({
        "format_version": 1, "env": "household", "base": "smollm2-135m-instruct",
        "actor": "smollm2-135m-instruct", "train_tasks": 20, "eval_tasks": 20, "trials": 3,
        "min_reward": 0.5, "steps": 40, "margin": 0.0, "min_sft_examples": 32, "rounds": [],
    });
    std::fs::write(dir.path().join("loop.json"), saved.to_string()).unwrap();
    let o = Command::new(workspace_bin("retroformer"))
        .args(args("2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("loop.json holds a loop with other settings (trials: 3 there, 2 now)"),
        "{err}"
    );
}

#[test]
fn a_resumed_loop_keeps_finished_phases_and_the_reflector_each_round_started_with() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("loop");
    let base = smollm2_path();
    let b = base.display().to_string();
    let loop_args = |rounds: &str| {
        let mut cmd = Command::new(workspace_bin("retroformer"));
        cmd.args(["loop", "--env", "household", "--rounds", rounds])
            .args([
                "--base",
                &b,
                "--threads",
                "1",
                "--min-sft-examples",
                "1",
                "--out",
            ])
            .arg(&out)
            .env("RETROFORMER_HOME", home.path());
        cmd
    };
    let settings = |rounds: serde_json::Value| {
        serde_json::json!({
            "format_version": 1, "env": "household", "base": b, "actor": b,
            "train_tasks": 20, "eval_tasks": 20, "trials": 3, "min_reward": 0.5,
            "steps": 40, "margin": 0.0, "rounds": rounds,
        })
    };
    // Round 1 finished (its figures saved phase by phase): nothing of it runs again.
    let round1 = serde_json::json!({
        "round": 1, "reflector_adapter": null,
        "collect": {"success_by_trial": [0.1, 0.2, 0.25], "wall_s": 123.0,
                    "peak_rss_bytes": 1, "resumed": false},
        "train": {"id": "0123456789abcdef", "wall_s": 45.0, "loss_first": 2.0, "loss_last": 1.0},
        "export": {"export_s": 0.5, "install_wall_s": 0.25},
        "canary": {"candidate": 0.3, "incumbent": 0.25, "incumbent_id": null, "promoted": true,
                   "wall_s": 67.0},
    });
    std::fs::create_dir_all(out.join("round-1/collect")).unwrap();
    std::fs::write(
        out.join("round-1/collect/records.jsonl"),
        // Round 1 collected with the base alone: each record names its reflector, no adapter.
        concat!(
            "{\"prompt\": \"x\", \"reflection\": \"y\", \"rating\": 1.0, \"reflector\": {\"model\": \"m\", \"temperature\": 0.0, \"seed\": 0}}\n",
            "{\"prompt\": \"x\", \"reflection\": \"z\", \"rating\": 0.0, \"reflector\": {\"model\": \"m\", \"temperature\": 0.0, \"seed\": 0}}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        out.join("loop.json"),
        settings(serde_json::json!([round1])).to_string(),
    )
    .unwrap();
    let o = loop_args("1").output().unwrap();
    let (stdout, report) = finished(&o, &out);
    let r = &report["rounds"][0];
    assert_eq!(r["collect"]["wall_s"], 123.0, "{r}");
    assert_eq!(
        (
            r["collect"]["records"].clone(),
            r["collect"]["kept"].clone()
        ),
        (2.into(), 1.into())
    );
    assert_eq!(r["train"]["wall_s"], 45.0);
    assert_eq!(r["canary"]["wall_s"], 67.0);
    assert!(
        stdout.contains("0.300") && stdout.contains("123 s"),
        "{stdout}"
    );
    // Round 2 was killed after it started with adapter fedc...: resumed, it collects with that
    // adapter (which this store lacks, so the collection fails naming it, once), not with
    // whatever is active now.
    let round2 = serde_json::json!({"round": 2, "reflector_adapter": "fedcba9876543210"});
    std::fs::write(
        out.join("loop.json"),
        settings(serde_json::json!([round1, round2])).to_string(),
    )
    .unwrap();
    let o = loop_args("2").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("round 2: collect: no adapter 'fedcba9876543210' in the store"),
        "{err}"
    );
    assert_eq!(err.matches("no adapter").count(), 1, "{err}");
}
