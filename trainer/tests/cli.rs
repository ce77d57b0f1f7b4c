//! `retroformer-train` end to end on a tiny model: train, files written, the adapter loads in
//! llama.cpp, export from the checkpoint, and clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use retroformer_gguf::TinyModel;
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rf-train-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_retroformer-train"))
}

/// `retroformer-train export` of `checkpoint` on `base` to `out`.
fn export(base: &Path, checkpoint: &Path, out: &Path) -> std::process::Output {
    bin()
        .args(["export", "--base"])
        .arg(base)
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn write_data(path: &Path, lines: &[&str]) {
    std::fs::write(path, lines.join("\n")).unwrap();
}

#[test]
fn sft_writes_an_adapter_that_llama_cpp_loads_and_export_rebuilds_it_from_the_checkpoint() {
    let d = dir();
    let base = d.join("tiny.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let data = d.join("sft.jsonl");
    write_data(
        &data,
        &[
            r#"{"prompt": "a b c", "response": " d e f"}"#,
            r#"{"prompt": "b c d", "response": " e f g"}"#,
            r#"{"prompt": "Reflection prompt", "reflection": "Search first.", "rating": 1.0}"#,
        ],
    );
    let out = d.join("a.gguf");
    let o = bin()
        .args(["sft", "--base"])
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args([
            "--steps",
            "6",
            "--batch",
            "2",
            "--rank",
            "4",
            "--lr",
            "0.01",
            "--quiet",
            "--checkpoint-every",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("sft: 6 steps"), "{stdout}");
    assert!(stderr.contains("3 examples"), "{stderr}");
    for f in [
        "a.gguf",
        "a.log.json",
        "a.loss.svg",
        "a.loss.png",
        "a.gguf.ckpt/state.json",
    ] {
        assert!(d.join(f).is_file(), "{f} missing");
    }
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("a.log.json")).unwrap()).unwrap();
    assert_eq!(log["format_version"], 1);
    assert_eq!(log["steps"].as_array().unwrap().len(), 6);

    let model =
        LlamaModel::load(&base, LoadOptions::new(TargetProfile::load("cpu").unwrap())).unwrap();
    model.load_adapter(&out).unwrap();
    let s = retroformer_trainer::inspect_adapter(&out).unwrap();
    assert_eq!(s.rank, Some(4));
    assert_eq!(s.pairs, 2 * 7);
    assert!(s
        .provenance
        .iter()
        .any(|(k, v)| k == retroformer_core::records::keys::OBJECTIVE && v.contains("sft")));

    let again = d.join("b.gguf");
    let o = export(&base, &d.join("a.gguf.ckpt"), &again);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = retroformer_gguf::validate_file(&out).unwrap();
    let b = retroformer_gguf::validate_file(&again).unwrap();
    assert_eq!(a.tensors, b.tensors);
    let bytes = |p: &Path, f: &retroformer_gguf::GgufFile| {
        let all = std::fs::read(p).unwrap();
        all[f.data_offset as usize..].to_vec()
    };
    assert_eq!(
        bytes(&out, &a),
        bytes(&again, &b),
        "exported weights differ"
    );
}

#[test]
fn export_of_a_reward_models_checkpoint_writes_its_head_beside_the_adapter() {
    let d = dir();
    let base = d.join("tiny-reward.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let data = d.join("ratings.jsonl");
    write_data(
        &data,
        &[
            r#"{"prompt": "a b c", "reflection": "Search first.", "rating": 1.0}"#,
            r#"{"prompt": "b c d", "reflection": "Guess.", "rating": -1.0}"#,
        ],
    );
    let out = d.join("rm.gguf");
    let o = bin()
        .args(["reward", "--base"])
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--steps", "4", "--batch", "2", "--rank", "4", "--quiet"])
        .args(["--checkpoint-every", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = d.join("rm-again.gguf");
    let o = export(&base, &d.join("rm.gguf.ckpt"), &again);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let head = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join(p)).unwrap()).unwrap()
    };
    let (trained, exported) = (head("rm.head.json"), head("rm-again.head.json"));
    assert_eq!(exported["format_version"], 1);
    let moved = |v: &serde_json::Value| v.as_array().unwrap().iter().any(|x| x != 0.0);
    assert!(
        moved(&trained["w"]),
        "the head was trained: {}",
        trained["w"]
    );
    assert_eq!(
        trained["w"], exported["w"],
        "the checkpoint's head is the trained one"
    );
    assert_eq!(trained["b"], exported["b"]);
}

#[test]
fn a_malformed_data_line_is_reported_with_its_file_and_line() {
    let d = dir();
    let base = d.join("tiny2.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let data = d.join("bad.jsonl");
    write_data(
        &data,
        &[r#"{"prompt": "a", "response": "b"}"#, r#"{"prompt": "a"}"#],
    );
    let o = bin()
        .args(["sft", "--base"])
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(d.join("x.gguf"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:2:"), "{err}");
    assert!(!d.join("x.gguf").exists());
}

#[test]
fn out_of_range_settings_are_refused_with_the_flag_named() {
    let d = dir();
    let base = d.join("tiny3.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    for (flag, value, needle) in [
        ("--rank", "0", "invalid rank"),
        ("--lr", "-1", "invalid lr"),
        ("--targets", "q,nope", "invalid targets"),
    ] {
        let o = bin()
            .args(["sft", "--base"])
            .arg(&base)
            .args(["--data", "/nonexistent.jsonl", "--out"])
            .arg(d.join("y.gguf"))
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{flag}: {err}");
    }
}

#[test]
fn bench_prints_a_trainer_figure_in_the_bench_report_schema() {
    let d = dir();
    let base = d.join("tiny-bench.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let out = bin()
        .args(["bench", "--quick", "--json", "--seq", "32", "--model"])
        .arg(&base)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: retroformer_core::records::TrainerFigure = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (f.backend.as_str(), f.tokens_per_step, f.rank),
        ("native", 32, 8)
    );
    // Three steps, the first one warm-up: two timed.
    assert_eq!(f.tokens_per_s.n, 2);
    assert!(f.tokens_per_s.median > 0.0);
    // The thread count it ran with is part of the figure.
    assert_eq!(f.threads, Some(1));
    let out = bin()
        .args(["bench", "--steps", "1", "--model"])
        .arg(&base)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--steps"), "{err}");
}
