//! `retroformer serve` with the real SmolLM2, driven by the official `openai` Python client
//! (chat, streaming, text completion, a JSON schema, a forced tool call, errors)
//! (installed on first use into the model cache's `python/` folder, version pinned), then a
//! streaming client that goes away mid-generation, then a graceful shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use retroformer_e2e::serve::{metric, start};

const OPENAI: &str = "openai==3.57.0";

/// A folder holding the pinned `openai` package, installed with pip the first time.
fn openai_site() -> PathBuf {
    let home = retroformer::manifest::home_dir();
    let dir = home.join("python").join(OPENAI.replace("==", "-"));
    if !dir.join("openai").is_dir() {
        let ok = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg(OPENAI)
            .status()
            .expect("python3 is needed (bash .ci/setup installs it)");
        assert!(
            ok.success(),
            "pip could not install {OPENAI} into {}",
            dir.display()
        );
    }
    dir
}

#[test]
fn the_official_openai_client_chats_streams_completes_and_gets_errors_then_the_server_stops_cleanly(
) {
    let site = openai_site();
    let (mut server, port) = start(&["--threads", "1", "--ctx-size", "2048", "--parallel", "2"]);
    let script = retroformer_e2e::data_dir().join("serve/openai_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", &site)
        .env(
            "RETROFORMER_BASE_URL",
            format!("http://127.0.0.1:{port}/v1"),
        )
        .env("RETROFORMER_MODEL", "smollm2-135m-instruct")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["models"], serde_json::json!(["smollm2-135m-instruct"]));
    let chat = v["chat"].as_str().unwrap();
    assert!(!chat.trim().is_empty(), "{v}");
    assert_eq!(
        v["stream"], v["chat"],
        "greedy: streamed text equals the whole answer"
    );
    assert_eq!(v["stream_usage"], v["chat_usage"], "{v}");
    assert!(v["stream_chunks"].as_u64().unwrap() >= 3, "{v}");
    assert!(!v["text"].as_str().unwrap().is_empty(), "{v}");
    let json: serde_json::Value = serde_json::from_str(v["json"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("response_format json_schema gave no JSON ({e}): {v}"));
    assert!(
        ["red", "green", "blue"].contains(&json["colour"].as_str().unwrap()),
        "{json}"
    );
    assert!(json["count"].is_i64(), "{json}");
    assert_eq!(
        (&v["tool_name"], &v["tool_finish"]),
        (
            &serde_json::json!("get_weather"),
            &serde_json::json!("tool_calls")
        )
    );
    assert!(v["tool_arguments"]["city"].is_string(), "{v}");
    assert_eq!(v["unknown_model"], 404);
    assert_eq!(v["bad_temperature"], 400);

    // A streaming client that goes away: the generation (which a grammar keeps from ever
    // ending by itself, ~15 s for its 1500 tokens) stops within a few tokens.
    let body = r#"{"model":"smollm2-135m-instruct","prompt":"a","max_tokens":1500,"stream":true,"grammar":"root ::= \"a\" root"}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut first = [0u8; 512];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    while metric(port, "retroformer_running") == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    let gone = Instant::now();
    while metric(port, "retroformer_running") > 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the generation went on after its client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // SIGTERM: the server finishes and exits 0.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
