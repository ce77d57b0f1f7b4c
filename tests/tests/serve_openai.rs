//! `retroformer serve` with the real SmolLM2, driven by the official `openai` Python client
//! (chat, streaming, text completion, a JSON schema, a forced tool call, errors)
//! (installed on first use into the model cache's `python/` folder, version pinned), then a
//! streaming client that goes away mid-generation, then a graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use retroformer_e2e::{smollm2_path, workspace_bin};

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

/// The server on a free loopback port, and that port.
fn start_server() -> (Child, u16) {
    smollm2_path();
    let mut child = Command::new(workspace_bin("retroformer"))
        .args([
            "serve",
            "--model",
            "smollm2-135m-instruct",
            "--no-fetch",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--threads", "1", "--ctx-size", "2048", "--parallel", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the server exited before serving")
            .unwrap();
        if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    // Keep reading so that the server never blocks on a full stderr pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

/// A raw HTTP/1.1 exchange: the status line and the rest.
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn gauge(port: u16, name: &str) -> u64 {
    let m = http(port, "GET", "/metrics", "");
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_official_openai_client_chats_streams_completes_and_gets_errors_then_the_server_stops_cleanly(
) {
    let site = openai_site();
    let (mut server, port) = start_server();
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
    while gauge(port, "retroformer_running") == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    let gone = Instant::now();
    while gauge(port, "retroformer_running") > 0 {
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
