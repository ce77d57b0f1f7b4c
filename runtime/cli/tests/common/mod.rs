//! Shared helpers of the command-line tests: the real SmolLM2 model (fetched on first use),
//! running the binary, and its adapters.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use retroformer::fetch::{self, FetchOptions};
use retroformer::manifest::{home_dir, Manifest};

/// The SmolLM2 file, fetched into the cache if missing (CI fetches it first).
pub fn smollm2_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let m = Manifest::find("smollm2-135m-instruct").unwrap();
        fetch::fetch(&m, &home_dir(), FetchOptions::default())
            .unwrap_or_else(|e| panic!("the test model is needed and could not be fetched: {e}"))
    })
    .clone()
}

use std::process::{Command, Output};

pub fn cli(args: &[&str]) -> Output {
    // Make sure the model is in the cache first (the CLI would fetch it too).
    let _ = smollm2_path();
    Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run retroformer")
}

/// Runs the CLI with `home` as its `RETROFORMER_HOME` (an adapter store of its own).
pub fn cli_home(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(args)
        .env("RETROFORMER_HOME", home)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run retroformer")
}

/// Installs `adapter` for `base` into `home`'s store; returns its id.
pub fn install_adapter(home: &std::path::Path, adapter: &std::path::Path, base: &str) -> String {
    let o = cli_home(
        home,
        &[
            "adapters",
            "install",
            adapter.to_str().unwrap(),
            "--base",
            base,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .expect("install prints the id second")
        .to_string()
}

pub fn assert_clean_failure(out: &Output, must_mention: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1, got {:?}; stderr: {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    for m in must_mention {
        assert!(err.contains(m), "stderr does not mention {m:?}: {err}");
    }
}

/// A LoRA adapter writer for SmolLM2 that records it as its base (as `retroformer-train`
/// does), without tensors yet.
pub fn smollm2_adapter(alpha: f32) -> retroformer_gguf::GgufWriter {
    let mut w = retroformer_gguf::GgufWriter::lora_adapter("llama", alpha);
    let sha = Manifest::find("smollm2-135m-instruct").unwrap().sha256;
    w.kv(retroformer::core::records::keys::BASE_SHA256, sha.as_str());
    w
}

/// A second valid adapter for SmolLM2 (other values, so another id).
pub fn adapter2(home: &tempfile::TempDir) -> std::path::PathBuf {
    let p = home.path().join("refl2.gguf");
    let mut w = smollm2_adapter(2.0);
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[576, 2], &[0.02; 1152])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 576], &[0.02; 1152]);
    w.write(&p).unwrap();
    p
}
