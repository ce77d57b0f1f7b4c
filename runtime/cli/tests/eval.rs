//! `retroformer eval` and `demo` end to end with the real SmolLM2: every environment writes
//! its files, resumes, and refuses bad flags clearly.

mod common;

use common::{assert_clean_failure, cli};

#[test]
// long: one end-to-end scenario (run, files, resume, extension) checked step by step.
fn a_short_real_hotpotqa_run_writes_every_file_and_reuses_the_kv_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../envs/data/hotpotqa/hotpot-qa-distractor-sample.jsonl.gz");
    // Two questions, `trials` trials of at most two steps; `extra` adds flags.
    let run = |folder: &std::path::Path, trials: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "hotpotqa",
            "--limit",
            "2",
            "--trials",
            trials,
            "--max-steps",
            "2",
            "--threads",
            "1",
            "--data",
            data.to_str().unwrap(),
            "--out",
            folder.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let o = run(&out, "2", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "run.json",
        "trial-00.json",
        "trial-01.json",
        "records.jsonl",
        "success.svg",
        "success.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let tasks: Vec<_> = std::fs::read_dir(out.join("trial-00")).unwrap().collect();
    assert_eq!(tasks.len(), 2);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("trial-00.json")).unwrap()).unwrap();
    assert_eq!(summary["tasks"], 2);
    assert_eq!(summary["format_version"], 1);
    // The instruction and examples are evaluated once and reused for every later call.
    let reused = summary["reused_tokens"].as_u64().unwrap();
    let evaluated = summary["evaluated_tokens"].as_u64().unwrap();
    assert!(reused > evaluated, "reused {reused}, evaluated {evaluated}");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("success") && table.contains("records.jsonl"),
        "{table}"
    );
    // Running again with the same folder resumes: nothing is redone.
    let again = cli(&[
        "eval",
        "hotpotqa",
        "--resume",
        out.to_str().unwrap(),
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "2",
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Running again with a third trial extends the run: a question still open after trial 2
    // now has its reflection, and trial 3 ran.
    let trial1: Vec<serde_json::Value> = std::fs::read_dir(out.join("trial-01"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let records_before = std::fs::read_to_string(out.join("records.jsonl"))
        .unwrap()
        .lines()
        .count();
    let o = run(&out, "3", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["trials"], 3);
    let open: Vec<_> = trial1.iter().filter(|r| r["success"] == false).collect();
    // SmolLM2 in two steps solves neither question (the check below needs an open one).
    assert!(!open.is_empty(), "{trial1:?}");
    // Trial 2 was the last one: no reflection then.
    assert!(open.iter().all(|r| r["reflection"].is_null()), "{open:?}");
    for r in &open {
        let id = r["task_id"].as_str().unwrap();
        let path = std::fs::read_dir(out.join("trial-01"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                v["task_id"] == id
            })
            .unwrap();
        let now: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(now["reflection"]["text"].is_string(), "{now}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("trial-02.json")).unwrap()).unwrap();
    assert_eq!(summary["attempted"].as_u64().unwrap(), open.len() as u64);
    // Each of those reflections is rated by trial 3's return: one record more each.
    let records_after = std::fs::read_to_string(out.join("records.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(records_after, records_before + open.len());
    // Running again without --trials resumes the three-trial run (the default, 5, would
    // extend it); fewer trials are refused, naming the folder.
    let again = cli(&[
        "eval",
        "hotpotqa",
        "--limit",
        "2",
        "--max-steps",
        "2",
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(!out.join("trial-03.json").exists());
    let fewer = run(&out, "2", &[]);
    assert_clean_failure(&fewer, &["holds a run of 3 trials", "--trials 2"]);
    // The same run with both episodes at once (continuous batching, two lanes): every file,
    // both tasks, the reflections written together. Its text may differ from the run above
    // in near-ties (batched logits differ in the last bits), so only the layout is compared.
    let lanes = dir.path().join("lanes");
    let o = run(&lanes, "2", &["--parallel", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lanes.join("trial-00.json")).unwrap()).unwrap();
    assert_eq!(summary["tasks"], 2);
    for entry in std::fs::read_dir(lanes.join("trial-00")).unwrap() {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        let steps = r["steps"].as_array().unwrap();
        assert!(!steps.is_empty(), "{r}");
        if r["success"] == false {
            assert!(r["reflection"]["text"].is_string(), "{r}");
        }
    }
    assert!(lanes.join("records.jsonl").is_file());
    // Two runs on one chart: both series drawn, SVG and PNG written (into a new folder).
    let stem = dir.path().join("charts").join("both");
    let plot = cli(&[
        "eval",
        "plot",
        out.to_str().unwrap(),
        out.to_str().unwrap(),
        "--out",
        stem.to_str().unwrap(),
    ]);
    assert!(
        plot.status.success(),
        "{}",
        String::from_utf8_lossy(&plot.stderr)
    );
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    assert!(std::fs::read(stem.with_extension("png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    // A folder that is not a run is named in the error.
    let bad = cli(&[
        "eval",
        "plot",
        dir.path().to_str().unwrap(),
        "--out",
        stem.to_str().unwrap(),
    ]);
    assert_clean_failure(&bad, &["run.json"]);
}

#[test]
fn eval_flags_are_checked_with_clear_errors() {
    let o = cli(&[
        "eval",
        "hotpotqa",
        "--out",
        "/tmp/x",
        "--strategy",
        "magic",
        "--limit",
        "1",
    ]);
    assert_clean_failure(&o, &["--strategy magic", "reflexion"]);
    let o = cli(&["eval", "hotpotqa", "--limit", "1"]);
    assert_clean_failure(&o, &["--out DIR is required"]);
    let o = cli(&["eval", "hotpotqa", "--out", "/tmp/x", "--agent", "tot"]);
    assert_clean_failure(&o, &["--agent tot", "cot-context"]);
    let o = cli(&[
        "eval",
        "hotpotqa",
        "--out",
        "/tmp/x",
        "--data",
        "/no/such.jsonl",
    ]);
    assert_clean_failure(&o, &["/no/such.jsonl"]);
    for (env, t) in [("hotpotqa", "-1"), ("household", "inf")] {
        let flag = format!("--reflector-temperature={t}");
        let o = cli(&["eval", env, "--out", "/tmp/x", &flag]);
        assert_clean_failure(&o, &[&format!("--reflector-temperature {t}")]);
    }
}

#[test]
fn a_short_real_humaneval_run_writes_every_file_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("he");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../envs/data/humaneval/HumanEval.jsonl.gz");
    let args = [
        "eval",
        "humaneval",
        "--limit",
        "1",
        "--max-iters",
        "2",
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = cli(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "run.json",
        "humaneval.json",
        "trial-00.json",
        "records.jsonl",
        "success.svg",
        "success.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let results: Vec<_> = std::fs::read_dir(out.join("trial-00")).unwrap().collect();
    assert_eq!(results.len(), 1);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("humaneval.json")).unwrap()).unwrap();
    assert_eq!(summary["tasks"], 1);
    assert_eq!(summary["format_version"], 1);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("pass@1"), "{stdout}");
    // The same command again finds the task done and redoes nothing: the task file is
    // untouched and the summary rebuilt from it is the same.
    let task_file = std::fs::read_dir(out.join("trial-00"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let task_before = std::fs::read(&task_file).unwrap();
    let summary_before = std::fs::read(out.join("humaneval.json")).unwrap();
    let again = cli(&args);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(&task_file).unwrap(), task_before);
    assert_eq!(
        std::fs::read(out.join("humaneval.json")).unwrap(),
        summary_before
    );
    let bad = cli(&[
        "eval",
        "humaneval",
        "--strategy",
        "last-attempt",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&bad, &["--strategy last-attempt"]);
}

#[test]
fn a_short_real_household_run_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hh");
    let args = [
        "eval",
        "household",
        "--limit",
        "1",
        "--trials",
        "2",
        "--max-steps",
        "4",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = cli(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "run.json",
        "trial-00.json",
        "trial-01.json",
        "records.jsonl",
        "success.svg",
        "success.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let t: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(out.join("trial-00"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(t["scratchpad"]
        .as_str()
        .unwrap()
        .contains("Your task is to: "));
    assert!(t["steps"].as_array().unwrap().len() <= 4);
    let bad = cli(&[
        "eval",
        "household",
        "--split",
        "dev",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&bad, &["--split dev"]);
}

#[test]
fn the_reflexion_demo_runs_the_baseline_and_reflexion_on_household_with_a_live_view() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = cli(&[
        "-v",
        "demo",
        "--reflexion",
        "--model",
        "smollm2-135m-instruct",
        "--env",
        "household",
        "--tasks",
        "1",
        "--trials",
        "2",
        "--max-steps",
        "3",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("Reflexion against retries without information after trial 2"),
        "{stdout}"
    );
    assert!(out.join("compare.png").is_file() && out.join("compare.json").is_file());
    assert!(out.join("none/run.json").is_file() && out.join("reflexion/run.json").is_file());
    // The live view shows each action and its observation.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("\n> "), "{stderr}");
    assert!(stderr.contains("[trial 1 put-"), "{stderr}");
}

#[test]
fn the_reflexion_demo_on_hotpotqa_pairs_the_arms_over_the_first_questions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = cli(&[
        "demo",
        "--reflexion",
        "--model",
        "smollm2-135m-instruct",
        "--tasks",
        "2",
        "--trials",
        "2",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(report["runs"][0]["strategy"], "none");
    assert_eq!(report["runs"][1]["strategy"], "reflexion");
    assert_eq!(report["runs"][0]["tasks"], 2);
    assert_eq!(report["pairs"][0]["trials"].as_array().unwrap().len(), 2);
    // Both arms share the first trial: the same outcome on every question.
    let t0 = &report["pairs"][0]["trials"][0]["table"];
    assert_eq!(t0["only_a"], 0);
    assert_eq!(t0["only_b"], 0);
}

#[test]
fn the_reflector_runs_with_its_own_adapter_and_the_run_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("refl.gguf");
    let mut w = common::smollm2_adapter(2.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[576, 2], &[0.01; 1152])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 576], &[0.01; 1152]);
    w.write(&adapter).unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../envs/data/hotpotqa/hotpot-qa-distractor-sample.jsonl.gz");
    let out = dir.path().join("run");
    let args = |adapter: &str| {
        vec![
            "eval".to_string(),
            "hotpotqa".into(),
            "--limit".into(),
            "1".into(),
            "--trials".into(),
            "2".into(),
            "--max-steps".into(),
            "2".into(),
            "--threads".into(),
            "1".into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--reflector-adapter".into(),
            adapter.into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let a: Vec<String> = args(adapter.to_str().unwrap());
    let o = cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reflector adapter"));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["reflector_adapter"], adapter.to_str().unwrap());

    let missing = dir.path().join("missing.gguf");
    let _ = std::fs::remove_dir_all(&out);
    let a: Vec<String> = args(missing.to_str().unwrap());
    let o = cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_clean_failure(&o, &["--reflector-adapter", "missing.gguf"]);
}

#[test]
fn a_short_real_rise_run_then_rollouts_then_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envs/data/gsm8k/test.jsonl.gz");
    let out = dir.path().join("rise");
    let eval_args = [
        "eval",
        "gsm8k",
        "--mode",
        "both",
        "--turns",
        "2",
        "--samples",
        "2",
        "--max-tokens",
        "48",
        "--limit",
        "2",
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = cli(&[&eval_args[..], &["--batch", "2"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let metrics = ["m1@t1", "m5@t1", "m1@t5", "p1@t5"];
    assert!(metrics.iter().all(|m| stdout.contains(m)), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("rise.json")).unwrap()).unwrap();
    // Both problems went through one batch: their turns, then their four samples, together.
    assert_eq!(summary["problems"], 2);
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["batch"], 2, "{run}");
    // Resuming without --batch takes the run's own batch: nothing is left to generate.
    let again = cli(&eval_args);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again_summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("rise.json")).unwrap()).unwrap();
    assert_eq!(again_summary, summary);
    assert!(summary["metrics"]["m5_t1"].is_number());
    a_resume_under_other_numerics_is_refused(&out, &eval_args);
    let task: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(out.join("trial-00"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(task["sequential"].as_array().unwrap().len(), 2);
    assert_eq!(task["parallel"].as_array().unwrap().len(), 2);

    let roll = dir.path().join("roll");
    let o = cli(&[
        "rollouts",
        "gsm8k",
        "--samples",
        "1,2",
        "--turns",
        "2",
        "--max-tokens",
        "48",
        "--limit",
        "2",
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--out",
        roll.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_dir(roll.join("rollouts")).unwrap().count(), 2);
    let ds = dir.path().join("rise.jsonl");
    let o = cli(&[
        "dataset",
        "rise",
        "--criteria",
        "all",
        "--in",
        roll.to_str().unwrap(),
        "--out",
        ds.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ds)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["loss_on"], "last_assistant");
        let w = l["weight"].as_f64().unwrap();
        let r = l["reward"].as_f64().unwrap();
        assert!((w - (r / 0.4).exp()).abs() < 1e-9);
    }
    let bad = cli(&[
        "dataset",
        "rise",
        "--criteria",
        "most",
        "--in",
        roll.to_str().unwrap(),
        "--out",
        ds.to_str().unwrap(),
    ]);
    assert_clean_failure(&bad, &["--criteria most"]);
}

/// The folder `eval_args` wrote (two problems) records how its answers were decoded; going
/// on under another profile (a third problem with the reference kernels) is refused, not
/// mixed in.
fn a_resume_under_other_numerics_is_refused(out: &std::path::Path, eval_args: &[&str]) {
    let sessions: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sessions.json")).unwrap()).unwrap();
    let numerics = sessions["sessions"][0]["numerics"].as_str().unwrap();
    assert!(numerics.contains("fast kernels"), "{sessions}");
    let mut other = eval_args.to_vec();
    let limit = other.iter().position(|a| *a == "--limit").unwrap();
    other[limit + 1] = "3";
    let o = cli(&[&other[..], &["--target", "cpu-batch-invariant"]].concat());
    assert_clean_failure(
        &o,
        &["sessions.json", numerics, "reference kernels", "--target"],
    );
    assert_eq!(std::fs::read_dir(out.join("trial-00")).unwrap().count(), 2);
}

/// A run folder written by hand: `run.json` (a sampled ReAct run with `strategy` and actor
/// seed 7) and, per trial, one result file per (task, success) given.
fn hand_made_run(dir: &std::path::Path, strategy: &str, trials: &[&[(&str, bool)]]) {
    std::fs::create_dir_all(dir).unwrap();
    let settings = serde_json::json!({
        "agent": "react", "trials": trials.len(), "strategy": strategy, "memory": 3,
        "max_steps": 6, "actor": "smollm2-135m-instruct", "reflector": "actor",
        "actor_temperature": 0.7, "actor_seed": 7,
    });
    std::fs::write(dir.join("run.json"), settings.to_string()).unwrap();
    for (t, tasks) in trials.iter().enumerate() {
        let folder = dir.join(format!("trial-{t:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        for (id, ok) in tasks.iter() {
            let r =
                serde_json::json!({"format_version": 1, "task_id": id, "trial": t, "success": ok});
            std::fs::write(folder.join(format!("{id}.json")), r.to_string()).unwrap();
        }
    }
}

const FIRST_TRIAL: [(&str, bool); 5] = [
    ("q1", true),
    ("q2", false),
    ("q3", false),
    ("q4", false),
    ("q5", false),
];

#[test]
fn eval_compare_pairs_two_hand_made_runs_task_by_task() {
    let dir = tempfile::tempdir().unwrap();
    let (base, arm, out) = (
        dir.path().join("none"),
        dir.path().join("reflexion"),
        dir.path().join("cmp"),
    );
    // One first trial (same seed); q1, solved in it, has no file in trial 1.
    let retry = |q2, q3, q4| [("q2", q2), ("q3", q3), ("q4", q4), ("q5", false)];
    hand_made_run(&base, "none", &[&FIRST_TRIAL, &retry(true, false, false)]);
    hand_made_run(&arm, "reflexion", &[&FIRST_TRIAL, &retry(true, true, true)]);
    let (b, a, o) = (
        base.to_str().unwrap(),
        arm.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    // No model is needed: the home is an empty folder.
    let json = common::cli_home(dir.path(), &["eval", "compare", b, a, "--out", o, "--json"]);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["kind"], "retroformer-compare");
    assert_eq!(report["format_version"], 3);
    assert_eq!(report["pairs"][0]["name"], "reflexion vs none");
    assert_eq!(report["runs"][1]["actor_seed"], 7);
    assert_eq!(
        report["runs"][1]["success_rate"],
        serde_json::json!([0.2, 0.8])
    );
    let t1 = &report["pairs"][0]["trials"][1];
    assert_eq!((t1["trial"].as_u64(), t1["n"].as_u64()), (Some(1), Some(5)));
    assert_eq!(
        t1["table"],
        serde_json::json!({"both": 2, "only_a": 0, "only_b": 2, "neither": 1})
    );
    assert!(
        (t1["difference"].as_f64().unwrap() - 0.4).abs() < 1e-12,
        "{t1}"
    );
    // Two discordant pairs, both one way: 2 * (1/2)^2.
    assert!(
        (t1["p_value"].as_f64().unwrap() - 0.5).abs() < 1e-12,
        "{t1}"
    );
    // Its exact interval holds 0 as the test says: 2 of 2 discordant pairs give pi from
    // 0.025^(1/2) to 1, so the difference runs from 0.4 (2 sqrt(0.025) - 1) to 0.4.
    let exact = &t1["exact_interval"];
    let lo = 0.4 * (2.0 * 0.025f64.sqrt() - 1.0);
    assert!(
        (exact[0].as_f64().unwrap() - lo).abs() < 1e-9
            && (exact[1].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{t1}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(written, report);
    // The files written are named on stderr (stdout is the JSON alone): the report and the
    // chart (its PNG copy too when the build draws PNGs).
    let err = String::from_utf8_lossy(&json.stderr);
    let named: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("wrote "))
        .collect();
    assert!(named.len() >= 2, "{err}");
    assert!(
        named.iter().all(|f| std::path::Path::new(f).is_file()),
        "{err}"
    );
    assert!(out.join("compare.svg").is_file());
    // The table for people: nothing written without --out.
    let table = common::cli_home(dir.path(), &["eval", "compare", b, a]);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("[1] vs [0]") && text.contains("+40.0"),
        "{text}"
    );
    assert!(!text.contains("wrote"), "{text}");
}

#[test]
fn eval_compare_refuses_runs_over_different_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (base, arm) = (dir.path().join("none"), dir.path().join("other"));
    hand_made_run(&base, "none", &[&FIRST_TRIAL]);
    hand_made_run(&arm, "reflexion", &[&FIRST_TRIAL[..4]]);
    let o = common::cli_home(
        dir.path(),
        &[
            "eval",
            "compare",
            base.to_str().unwrap(),
            arm.to_str().unwrap(),
        ],
    );
    assert_clean_failure(&o, &["different task sets", "1 task (\"q5\")", "no task"]);
    let one = common::cli_home(dir.path(), &["eval", "compare", base.to_str().unwrap()]);
    assert_clean_failure(&one, &["at least two run folders"]);
}
