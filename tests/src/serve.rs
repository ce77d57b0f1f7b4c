//! `retroformer serve` as the integration tests drive it: started on a free loopback port with
//! SmolLM2, spoken to over raw HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::{smollm2_path, workspace_bin};

/// The server serving SmolLM2 with `extra` flags, and its port (read from its banner).
pub fn start(extra: &[&str]) -> (Child, u16) {
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
        .args(extra)
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
pub fn http(port: u16, method: &str, path: &str, body: &str) -> String {
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

/// A counter or gauge from `/metrics`.
pub fn metric(port: u16, name: &str) -> u64 {
    let m = http(port, "GET", "/metrics", "");
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The JSON body of a response from [`http`].
pub fn body(response: &str) -> serde_json::Value {
    let json = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"))
}
