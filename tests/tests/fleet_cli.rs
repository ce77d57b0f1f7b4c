//! The fleet through its two commands, as a user runs them, with the real SmolLM2 model and a
//! real `nats-server -js` on loopback (`bash .ci/setup` installs Debian's): a device
//! (`retroformer sync --once`) uploads its samples, the trainer (`retroformer-train fleet
//! --once`) stores them and trains and releases an adapter, the device downloads it, installs
//! it and runs its canary on a household task, the trainer promotes it on that report, and the
//! device's adapter store ends with it active. A sample only the model can refuse is set
//! aside on the way.
//!
//! `cargo test --workspace` builds both binaries before any test runs; run alone, build them
//! first with `cargo build --release --bins`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use retroformer_e2e::{smollm2_path, workspace_bin};

/// A `nats-server -js` on a free loopback port; killed when dropped.
struct Nats(Child, u16);

impl Nats {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is needed (bash .ci/setup installs Debian's)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "no nats-server");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child, port)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.1)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a command printed on standard error, after checking that it succeeded.
fn ok(o: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{what} failed:\n{err}");
    err
}

#[test]
fn a_device_s_samples_train_an_adapter_that_comes_back_passes_its_canary_and_is_promoted() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let nats = Nats::start(&home.join("nats"));
    let base = smollm2_path();
    let runs = home.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fleet/samples.jsonl");
    std::fs::copy(&fixture, runs.join("samples.jsonl")).unwrap();
    // A sample whose fault only the model can see (a token id past its vocabulary): the
    // trainer stores it, the training names its line, and the fleet sets it aside.
    let sha = retroformer::fetch::sha256_file(&base, &retroformer::fetch::Silent).unwrap();
    let odd = serde_json::json!({
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "tokens": {"model_sha256": sha, "prompt": [1, 2], "completion": [4_000_000]},
    });
    std::fs::write(runs.join("odd.jsonl"), format!("{odd}\n")).unwrap();
    let sync = || {
        let o = Command::new(workspace_bin("retroformer"))
            .args(["sync", "--once", "--device", "dev-1", "--nats", &nats.url()])
            .arg("--base")
            .arg(&base)
            .arg("--watch")
            .arg(&runs)
            .arg("--outbox")
            .arg(home.join("outbox"))
            // The canary: one household task, one trial, base and candidate.
            .args(["--env", "household", "--limit", "1", "--trials", "1"])
            .args(["--threads", "2"])
            .env("RETROFORMER_HOME", home)
            .output()
            .unwrap();
        ok(o, "retroformer sync")
    };
    let trainer = || {
        let o = Command::new(workspace_bin("retroformer-train"))
            .args(["fleet", "--once", "--nats", &nats.url()])
            .arg("--base")
            .arg(&base)
            .arg("--dir")
            .arg(home.join("trainer"))
            .args(["--min-new", "8", "--promote-after", "1", "--"])
            .args(["sft", "--steps", "1", "--batch", "2", "--max-len", "256"])
            .env("RETROFORMER_HOME", home)
            // Its warnings are checked below, whatever the caller's log filter.
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        ok(o, "retroformer-train fleet")
    };

    // Before the trainer ever ran the server has no stream: the samples wait in the outbox.
    let d = sync();
    assert!(
        d.contains("the trainer (retroformer-train fleet) creates it"),
        "{d}"
    );
    let t = trainer();
    assert!(!t.contains("released"), "{t}");
    let d = sync();
    assert!(d.contains("uploaded 2 segments"), "{d}");
    let t = trainer();
    assert!(t.contains("stored 2 new segments"), "{t}");
    assert!(
        t.contains("set aside a segment the training cannot read (only the model could tell)"),
        "{t}"
    );
    assert!(t.contains("released v1"), "{t}");
    let set_aside = std::fs::read_dir(home.join("trainer/quarantine")).unwrap();
    assert_eq!(set_aside.count(), 1, "{t}");
    let joined: Vec<_> = std::fs::read_dir(home.join("trainer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("train-"))
        .collect();
    assert!(
        joined.is_empty(),
        "the joined data files are removed: {joined:?}"
    );
    let stored: usize = std::fs::read_dir(home.join("trainer/records"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|text| text.lines().count())
        .sum();
    assert_eq!(stored, 8, "every sample stored once");

    let d = sync();
    let report = d
        .lines()
        .find_map(|l| l.strip_prefix("[retroformer] sync: release 1 "))
        .unwrap_or_else(|| panic!("no canary report:\n{d}"));
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    // SmolLM2 solves this task neither way: not worse, so promoted at margin 0.
    assert_eq!(report["installed"], true, "{report}");
    assert_eq!(report["promoted"], true, "{report}");
    let t = trainer();
    assert!(t.contains("v1 is now Promoted"), "{t}");

    // The device's store: the release's adapter, active.
    let o = Command::new(workspace_bin("retroformer"))
        .args(["adapters", "list", "--json", "--base"])
        .arg(&base)
        .env("RETROFORMER_HOME", home)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let active = v["active"].as_str().expect("an active adapter");
    let listed = v["adapters"].as_array().unwrap();
    let sha = listed
        .iter()
        .find(|a| a["id"] == active)
        .and_then(|a| a["sha256"].as_str())
        .unwrap();
    assert_eq!(sha, report["sha256"].as_str().unwrap());
}
