//! `retroformer adapters` end to end on a tiny model: install, activate, list, roll back, clear
//! errors; and a kill -9 in the middle of an install leaves the store consistent with the
//! previous adapter still active.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use retroformer_gguf::{GgufWriter, TinyModel};

fn cli(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retroformer"))
        .args(args)
        .env("RETROFORMER_HOME", home)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The sha256 of the tiny llama every test here installs adapters for.
fn tiny_sha256() -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(
        TinyModel::llama().writer().to_bytes(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A rank-`rank` adapter for the tiny llama that records it as its base.
fn adapter(dir: &Path, name: &str, fill: f32, rank: u64) -> PathBuf {
    let mut w = GgufWriter::lora_adapter("llama", 4.0);
    w.kv(
        retroformer::core::records::keys::BASE_SHA256,
        tiny_sha256().as_str(),
    );
    let n = (64 * rank) as usize;
    w.tensor_f32("blk.0.attn_q.weight.lora_a", &[64, rank], &vec![fill; n])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[rank, 64], &vec![fill; n]);
    let p = dir.join(name);
    w.write(&p).unwrap();
    p
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn active(home: &Path, base: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&cli(
        home,
        &["adapters", "list", "--base", base, "--json"],
    )))
    .unwrap();
    v["active"].as_str().map(str::to_string)
}

#[test]
fn install_activate_list_and_roll_back_through_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let base = d.path().join("tiny.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let b = base.to_str().unwrap();
    let a1 = adapter(d.path(), "a1.gguf", 0.1, 2);
    let a2 = adapter(d.path(), "a2.gguf", 0.2, 2);
    let out = ok(&cli(
        &home,
        &[
            "adapters",
            "install",
            a1.to_str().unwrap(),
            "--base",
            b,
            "--activate",
        ],
    ));
    let id1 = out.split_whitespace().nth(1).unwrap().to_string();
    let out = ok(&cli(
        &home,
        &["adapters", "install", a2.to_str().unwrap(), "--base", b],
    ));
    let id2 = out.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(active(&home, b), Some(id1.clone()));
    ok(&cli(&home, &["adapters", "activate", &id2, "--base", b]));
    assert_eq!(active(&home, b), Some(id2.clone()));
    let listing = ok(&cli(&home, &["adapters", "list", "--base", b]));
    assert!(listing.contains(&format!("* {id2}")), "{listing}");
    ok(&cli(&home, &["adapters", "rollback", "--base", b]));
    assert_eq!(active(&home, b), Some(id1));

    // Bad input: a non-adapter, an unknown id, nothing to roll back to.
    let o = cli(&home, &["adapters", "install", b, "--base", b]);
    assert_eq!(o.status.code(), Some(1));
    let o = cli(
        &home,
        &["adapters", "activate", "0123456789abcdef", "--base", b],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no adapter '0123456789abcdef'"));
    let o = cli(&home, &["adapters", "rollback", "--base", b]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to roll back"));
}

/// Every listed version is whole (its file hashes to its manifest's sha256); returns the
/// active id.
fn check_store(home: &Path, base: &str) -> Option<String> {
    use sha2::Digest;
    let v: serde_json::Value = serde_json::from_str(&ok(&cli(
        home,
        &["adapters", "list", "--base", base, "--json"],
    )))
    .unwrap();
    for m in v["adapters"].as_array().unwrap() {
        let bytes = std::fs::read(m["path"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            m["sha256"].as_str().unwrap(),
            "a listed version is torn"
        );
    }
    v["active"].as_str().map(str::to_string)
}

#[test]
fn a_crash_at_any_step_of_install_or_activation_leaves_the_previous_adapter_active() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let base = d.path().join("tiny.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let b = base.to_str().unwrap();
    let first = adapter(d.path(), "first.gguf", 0.1, 2);
    let out = ok(&cli(
        &home,
        &[
            "adapters",
            "install",
            first.to_str().unwrap(),
            "--base",
            b,
            "--activate",
        ],
    ));
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    for (i, point) in [
        "install-before-rename",
        "install-after-rename",
        "activate-before-state",
    ]
    .into_iter()
    .enumerate()
    {
        let next = adapter(d.path(), &format!("next{i}.gguf"), 0.2 + i as f32, 4);
        let o = Command::new(env!("CARGO_BIN_EXE_retroformer"))
            .args([
                "adapters",
                "install",
                next.to_str().unwrap(),
                "--base",
                b,
                "--activate",
            ])
            .env("RETROFORMER_HOME", &home)
            .env("RETROFORMER_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{point}: the failpoint did not fire");
        assert_eq!(check_store(&home, b), Some(id.clone()), "{point}");
    }
    // A later install completes (and clears what the crashes left behind).
    let last = adapter(d.path(), "last.gguf", 0.9, 2);
    ok(&cli(
        &home,
        &[
            "adapters",
            "install",
            last.to_str().unwrap(),
            "--base",
            b,
            "--activate",
        ],
    ));
    assert_ne!(check_store(&home, b), Some(id));
    let versions = std::fs::read_dir(home.join("adapters"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("versions");
    assert!(std::fs::read_dir(versions).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".tmp-")));
}

#[test]
fn a_kill_during_install_leaves_the_store_consistent_and_the_old_adapter_active() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let base = d.path().join("tiny.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let b = base.to_str().unwrap();
    let small = adapter(d.path(), "small.gguf", 0.1, 2);
    let out = ok(&cli(
        &home,
        &[
            "adapters",
            "install",
            small.to_str().unwrap(),
            "--base",
            b,
            "--activate",
        ],
    ));
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    // A large adapter (rank 64 on one projection is small; use many copies of the tensor data by
    // a high rank) so that installing it takes a while.
    for (i, delay_ms) in [5u64, 15, 30, 60, 120].into_iter().enumerate() {
        let big = adapter(d.path(), &format!("big{i}.gguf"), 0.01 * i as f32 + 0.5, 64);
        let mut child = Command::new(env!("CARGO_BIN_EXE_retroformer"))
            .args([
                "adapters",
                "install",
                big.to_str().unwrap(),
                "--base",
                b,
                "--activate",
            ])
            .env("RETROFORMER_HOME", &home)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        // Whatever happened, the store reads back and every listed version is whole.
        let v: serde_json::Value = serde_json::from_str(&ok(&cli(
            &home,
            &["adapters", "list", "--base", b, "--json"],
        )))
        .unwrap();
        for m in v["adapters"].as_array().unwrap() {
            assert!(
                retroformer_gguf::validate_file(Path::new(m["source"].as_str().unwrap())).is_ok()
            );
        }
        let now = v["active"].as_str().map(str::to_string);
        if status.success() {
            assert_ne!(
                now,
                Some(id.clone()),
                "a finished install --activate switches"
            );
            ok(&cli(&home, &["adapters", "activate", &id, "--base", b]));
        } else {
            // Killed: either before activation (old one active) or just after it.
            assert!(now.is_some());
            if now.as_deref() != Some(id.as_str()) {
                ok(&cli(&home, &["adapters", "activate", &id, "--base", b]));
            }
        }
        assert_eq!(active(&home, b), Some(id.clone()));
    }
}
