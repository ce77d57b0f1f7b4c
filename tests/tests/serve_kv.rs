//! `retroformer serve --kv-dir`: a conversation's KV cache survives kill -9, and a saved file
//! that does not fit (another context size) or is damaged is ignored, never trusted.

use std::path::{Path, PathBuf};

use retroformer_e2e::serve::{body, http, metric, start};
use serde_json::{json, Value};

const SESSION: &str = "agent-7";

fn chat(port: u16, messages: &Value) -> Value {
    let req = json!({"model": "smollm2-135m-instruct", "messages": messages, "max_tokens": 16,
        "temperature": 0, "session_id": SESSION});
    let r = http(port, "POST", "/v1/chat/completions", &req.to_string());
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    body(&r)
}

/// A server killed with SIGKILL when dropped, a failed assertion included.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(kv: &Path, ctx: &str) -> (Server, u16) {
    let dir = kv.to_str().unwrap();
    let flags = [
        "--threads",
        "1",
        "--parallel",
        "2",
        "--ctx-size",
        ctx,
        "--kv-dir",
        dir,
    ];
    let (child, port) = start(&flags);
    (Server(child), port)
}

fn saved(kv: &Path) -> Vec<PathBuf> {
    let dir = kv.join("smollm2-135m-instruct");
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// Waits until the session's file was written after `since` (the server writes it on a
/// thread of its own, just after answering) and no write is under way.
fn written_after(kv: &Path, since: std::time::SystemTime) {
    let start = std::time::Instant::now();
    loop {
        let files = saved(kv);
        let temp = files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "tmp"));
        let fresh = files.iter().any(|f| {
            f.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        });
        if fresh && !temp {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no KV file written: {files:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Kills the server once the turn that started at `since` has its file.
fn kill_9(server: Server, kv: &Path, since: std::time::SystemTime) {
    written_after(kv, since);
    drop(server);
}

#[test]
fn a_conversation_resumes_from_its_saved_cache_after_kill_9_and_a_file_that_does_not_fit_is_ignored(
) {
    let kv = tempfile::tempdir().unwrap();
    let mut messages = json!([
        {"role": "system", "content": "You are a careful agent exploring an old house. Report what you see in each room, briefly, and say where you go next."},
        {"role": "user", "content": "You are in the hall. There is a door to the north and a staircase."}
    ]);
    let (server, port) = serve(kv.path(), "1024");
    let since = std::time::SystemTime::now();
    let first = chat(port, &messages);
    written_after(kv.path(), since);
    let prompt_tokens = first["usage"]["prompt_tokens"].as_u64().unwrap();
    let files = saved(kv.path());
    assert_eq!(files.len(), 1, "one file per session: {files:?}");
    kill_9(server, kv.path(), since);

    // A new process: nothing cached but the file.
    let reply = first["choices"][0]["message"]["content"].clone();
    let next = |m: &mut Value, text: &str| {
        let a = m.as_array_mut().unwrap();
        a.push(json!({"role": "assistant", "content": reply}));
        a.push(json!({"role": "user", "content": text}));
    };
    next(&mut messages, "You go north. You see a kitchen.");
    let (server, port) = serve(kv.path(), "1024");
    let since = std::time::SystemTime::now();
    chat(port, &messages);
    let reused = metric(port, "retroformer_prompt_cache_reused_tokens_total");
    assert!(
        reused >= prompt_tokens,
        "the second turn reused {reused} tokens; the first turn's prompt had {prompt_tokens}"
    );
    kill_9(server, kv.path(), since);

    // Another context size: the cells would not fit; the file is ignored (and replaced).
    let (server, port) = serve(kv.path(), "2048");
    let since = std::time::SystemTime::now();
    chat(port, &messages);
    assert_eq!(
        metric(port, "retroformer_prompt_cache_reused_tokens_total"),
        0
    );
    kill_9(server, kv.path(), since);

    // A damaged file is refused by its hash before llama.cpp reads it.
    let file = &saved(kv.path())[0];
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(file, &bytes).unwrap();
    let (server, port) = serve(kv.path(), "2048");
    let since = std::time::SystemTime::now();
    chat(port, &messages);
    assert_eq!(
        metric(port, "retroformer_prompt_cache_reused_tokens_total"),
        0
    );
    kill_9(server, kv.path(), since);
}
