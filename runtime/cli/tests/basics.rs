//! The `retroformer` binary end to end: generation, models, files that are not what they
//! claim, sandbox, play, bench; bad input gives a clear error and a non-zero exit, never a
//! panic or an abort.

mod common;

use common::{assert_clean_failure, cli, smollm2_path};
use std::process::Command;

#[test]
fn generate_json_reports_text_and_statistics() {
    let out = cli(&[
        "generate",
        "--prompt",
        "Say hello.",
        "--max-tokens",
        "8",
        "--json",
        "--threads",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["stats"]["generated_tokens"].as_u64().unwrap() <= 8);
    assert!(v["stats"]["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(v["text"].is_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target cpu") && err.contains("backend cpu"),
        "{err}"
    );
}

#[test]
fn a_missing_model_file_is_named() {
    let out = cli(&[
        "generate",
        "--model",
        "/nonexistent/model.gguf",
        "--prompt",
        "x",
    ]);
    assert_clean_failure(&out, &["/nonexistent/model.gguf", "no such file"]);
}

#[test]
fn a_file_that_is_not_gguf_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.gguf");
    std::fs::write(&p, "these are not weights").unwrap();
    let out = cli(&["generate", "--model", p.to_str().unwrap(), "--prompt", "x"]);
    assert_clean_failure(&out, &["notes.gguf", "bad magic"]);
}

#[test]
fn a_truncated_gguf_is_rejected_by_our_validator() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("half.gguf");
    let bytes = std::fs::read(smollm2_path()).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let out = cli(&["generate", "--model", p.to_str().unwrap(), "--prompt", "x"]);
    assert_clean_failure(&out, &["half.gguf", "truncated"]);
    let out = cli(&["models", "info", p.to_str().unwrap()]);
    assert_clean_failure(&out, &["half.gguf"]);
}

#[test]
fn unknown_model_and_target_names_list_the_known_ones() {
    let out = cli(&["generate", "--model", "gpt-17", "--prompt", "x"]);
    assert_clean_failure(&out, &["unknown model 'gpt-17'", "smollm2-135m-instruct"]);
    let out = cli(&["--target", "toaster", "generate", "--prompt", "x"]);
    assert_clean_failure(&out, &["unknown target 'toaster'", "raspberry-pi-5"]);
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let long = "token ".repeat(400);
    let out = cli(&["generate", "--raw", "--ctx-size", "256", "--prompt", &long]);
    assert_clean_failure(&out, &["prompt is", "context holds 256"]);
}

#[test]
fn a_missing_or_broken_grammar_file_is_named() {
    let out = cli(&[
        "generate",
        "--prompt",
        "x",
        "--grammar",
        "/nonexistent/g.gbnf",
    ]);
    assert_clean_failure(&out, &["--grammar /nonexistent/g.gbnf"]);
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("bad.gbnf");
    std::fs::write(&g, "root ::= [unterminated").unwrap();
    let out = cli(&[
        "generate",
        "--prompt",
        "x",
        "--grammar",
        g.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["bad.gbnf"]);
}

#[test]
fn a_bad_sampling_flag_is_named() {
    let out = cli(&["generate", "--prompt", "x", "--top-p", "2"]);
    assert_clean_failure(&out, &["--top-p"]);
}

#[test]
fn a_wrong_checksum_in_the_cache_is_reported_by_verify() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("models/smollm2-135m-instruct");
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(smollm2_path()).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"), &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(["models", "verify", "smollm2"])
        .env("RETROFORMER_HOME", home.path())
        .output()
        .unwrap();
    assert_clean_failure(&out, &["sha256 mismatch"]);
}

#[test]
fn sandbox_run_prints_the_outcome_and_the_layers_and_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("p.py");
    std::fs::write(&prog, "print('hello from the sandbox')\nassert 1 == 2\n").unwrap();
    let o = cli(&[
        "sandbox",
        "run",
        prog.to_str().unwrap(),
        "--wall-ms",
        "5000",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("hello from the sandbox"), "{out}");
    assert!(out.contains("outcome: failed, exit 1"), "{out}");
    assert!(
        out.contains("network namespace") || out.contains("network"),
        "{out}"
    );
    let json = cli(&["sandbox", "run", prog.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["report"]["outcome"], "failed");
    // A program's terminal control codes are shown, not obeyed: it cannot erase or fake the
    // outcome line.
    let fake = dir.path().join("fake.py");
    std::fs::write(
        &fake,
        "import sys\nsys.stdout.write('outcome: passed\\n\\x1b[1A\\x1b[2K')\nsys.exit(3)\n",
    )
    .unwrap();
    let o = cli(&["sandbox", "run", fake.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(out.contains("\\u{1b}[1A\\u{1b}[2K"), "{out:?}");
    assert!(out.contains("outcome: error, exit 3"), "{out:?}");
    // Framed: the program's lines begin with "| ", so the only line that begins with
    // "outcome:" is the sandbox's.
    assert!(out.contains("| outcome: passed"), "{out:?}");
    let outcomes: Vec<&str> = out.lines().filter(|l| l.starts_with("outcome:")).collect();
    assert_eq!(outcomes.len(), 1, "{out:?}");
    assert!(outcomes[0].starts_with("outcome: error, exit 3"), "{out:?}");
    let missing = cli(&["sandbox", "run", "/nonexistent/p.py"]);
    assert_clean_failure(&missing, &["/nonexistent/p.py"]);
    let bad_python = cli(&[
        "sandbox",
        "run",
        prog.to_str().unwrap(),
        "--python",
        "/nonexistent/python3",
    ]);
    assert_clean_failure(&bad_python, &["--python", "/nonexistent/python3"]);
}

#[test]
fn play_household_takes_actions_on_stdin_and_says_when_the_task_is_solved() {
    use retroformer_envs::household::{plan, HouseholdEnv, TaskSpec, TaskType};
    use std::io::Write as _;
    let actions = plan(&HouseholdEnv::new(&TaskSpec::new(7, TaskType::Clean))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(["play", "household", "--seed", "7", "--type", "clean"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::from("help\nfly away\n");
    for a in &actions {
        input.push_str(a);
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Your task is to: "), "{text}");
    assert!(text.contains("valid actions: "), "{text}");
    assert!(text.contains("Nothing happens."), "{text}");
    assert!(
        text.contains(&format!("Task solved in {} steps.", actions.len() + 1)),
        "{text}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(["play", "household", "--type", "juggle"])
        .output()
        .unwrap();
    assert_clean_failure(&bad, &["--type juggle"]);
}

#[test]
fn bench_quick_writes_a_versioned_report_that_compare_lines_up() {
    use retroformer_benches::harness::BenchReport;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let out = cli(&[
        "bench",
        "--quick",
        "--threads",
        "1",
        "--label",
        "ci",
        "--out",
        a.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = BenchReport::read(&a).unwrap();
    assert_eq!(
        r.format_version,
        retroformer_benches::harness::FORMAT_VERSION
    );
    assert!(r.quick && r.label == "ci");
    assert!(r.fingerprint.logical_cores >= 1);
    assert!(!r.fingerprint.llama_cpp_system_info.is_empty());
    let m = &r.models[0];
    assert_eq!(m.name, "smollm2-135m-instruct");
    assert_eq!(m.prefill.len(), 2);
    for p in &m.prefill {
        assert!(p.runtime_tps.median > 0.0 && p.runtime_tps.n == 3);
        // The bare llama.cpp loop ran in the same process, on the same prompts.
        assert!(p.ratio.unwrap() > 0.0);
    }
    assert!(
        (m.prefill[1].prompt_tokens as i64 - 128).abs() <= 2,
        "{:?}",
        m.prefill[1]
    );
    assert_eq!(m.decode.len(), 2);
    assert!(m.decode.iter().all(|d| d.runtime_tps.median > 0.0));
    // Evaluating ~100 new tokens on a cached ~700-token prefix is far cheaper than all of it.
    assert!(m.react_step.ratio < 0.8, "{:?}", m.react_step);
    assert!(m.adapter_switch.as_ref().unwrap().ratio > 0.0);
    assert!(m.peak_rss_bytes.unwrap() > 50_000_000);
    assert_eq!(r.agent.len(), 1);
    assert!(r.agent[0].calls >= 1 && r.agent[0].generated_tokens > 0);
    assert!(
        stdout.contains("smollm2-135m-instruct decode @0"),
        "{stdout}"
    );

    // A second report with another model set and a missing figure.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    v["label"] = "other".into();
    v["models"][0]["name"] = "qwen".into();
    v["models"][0]["adapter_switch"] = serde_json::Value::Null;
    let b = dir.path().join("b.json");
    std::fs::write(&b, v.to_string()).unwrap();
    let stem = dir.path().join("cmp");
    let out = cli(&[
        "bench",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        stem.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("other/ci"), "{table}");
    let line = table
        .lines()
        .find(|l| {
            l.starts_with("qwen adapter switch")
                || l.starts_with("smollm2-135m-instruct adapter switch")
        })
        .unwrap();
    assert!(
        line.contains(" -"),
        "a missing figure is shown as '-': {line}"
    );
    assert!(dir.path().join("cmp-prefill.svg").is_file());
    assert!(dir.path().join("cmp-decode.png").is_file());

    // Not a report: a clean error naming the file.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"kind\": \"x\"}").unwrap();
    let out = cli(&[
        "bench",
        "compare",
        a.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["bad.json", "kind"]);
    let out = cli(&["bench", "--reps", "0"]);
    assert_clean_failure(&out, &["--reps"]);
}
