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

/// Runs `tests/data/serve/SCRIPT` with the pinned client against the server on `port`; its
/// stdout, one JSON object.
fn run_client(script: &str, port: u16) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(retroformer_e2e::data_dir().join("serve").join(script))
        .env("PYTHONPATH", openai_site())
        .env(
            "RETROFORMER_BASE_URL",
            format!("http://127.0.0.1:{port}/v1"),
        )
        .env("RETROFORMER_MODEL", "smollm2-135m-instruct")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_official_openai_client_chats_streams_completes_and_gets_errors_then_the_server_stops_cleanly(
) {
    let (mut server, port) = start(&["--threads", "1", "--ctx-size", "2048", "--parallel", "2"]);
    let v = run_client("openai_client.py", port);
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
    logprobs_are_the_greedy_tokens_and_ids_are_the_models(&v["logprobs"]);
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

/// The chat's logprobs, as the `openai` client read them: the tokens spell the reply, greedy
/// picked the most likely of each step, and the ids are the model's own tokenisation of the
/// templated prompt and of the reply.
fn logprobs_are_the_greedy_tokens_and_ids_are_the_models(lp: &serde_json::Value) {
    use retroformer_llm::{ChatMessage, LanguageModel};
    let content = lp["content"].as_str().unwrap();
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), content, "{lp}");
    for (p, top) in lp["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lp["top"].as_array().unwrap())
    {
        let (p, best) = (p.as_f64().unwrap(), top[0].as_f64().unwrap());
        assert!(p <= 1e-6 && (p - best).abs() < 1e-4, "{lp}");
        assert!(top[1].as_f64().unwrap() <= best, "{lp}");
    }
    let model = retroformer_e2e::smollm2();
    let ids = |v: &serde_json::Value| -> Vec<i32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap() as i32)
            .collect()
    };
    let prompt = model
        .chat_prompt(&[ChatMessage::new("user", "Name three colours.")], true)
        .unwrap();
    assert_eq!(
        ids(&lp["prompt_token_ids"]),
        model.tokenize(&prompt, true, true).unwrap()
    );
    let reply = model.detokenize(&ids(&lp["token_ids"])).unwrap();
    assert!(reply.starts_with(content), "{reply:?} vs {content:?}");
}

/// A captured turn's ids: its prompt is the model's tokenisation of the templated
/// conversation before the reply, its completion decodes to the reply (and maybe an
/// end-of-turn token), and they are tagged with the served file's hash.
fn turn_ids_are_what_the_model_saw_and_said(
    sample: &serde_json::Value,
    model: &retroformer_llama::LlamaModel,
    sha: &str,
) {
    use retroformer_llm::{ChatMessage, LanguageModel};
    let t = &sample["tokens"];
    assert_eq!(t["model_sha256"].as_str(), Some(sha), "{sample}");
    let messages: Vec<ChatMessage> = serde_json::from_value(sample["messages"].clone()).unwrap();
    let (reply, before) = messages.split_last().unwrap();
    let ids: Vec<i32> = serde_json::from_value(t["prompt"].clone()).unwrap();
    let prompt = model.chat_prompt(before, true).unwrap();
    assert_eq!(
        ids,
        model.tokenize(&prompt, true, true).unwrap(),
        "{sample}"
    );
    let completion: Vec<i32> = serde_json::from_value(t["completion"].clone()).unwrap();
    let said = model.detokenize(&completion).unwrap();
    assert!(
        said.starts_with(&reply.content),
        "{said:?} vs {:?}",
        reply.content
    );
}

/// Kills the server when dropped (a failed assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_unmodified_openai_agent_loops_episodes_become_samples_that_the_trainer_trains_an_adapter_on()
{
    let capture = tempfile::tempdir().unwrap();
    let dir = capture.path().to_str().unwrap();
    let flags = [
        "--threads",
        "1",
        "--ctx-size",
        "1024",
        "--parallel",
        "2",
        "--capture",
        dir,
    ];
    let (server, port) = start(&flags);
    let _server = Killed(server);
    let seen = run_client("agent_loop.py", port);
    assert_eq!(seen["episodes"].as_array().unwrap().len(), 2, "{seen}");

    // Every closed episode is a file of samples, one per assistant turn, with its ids.
    let model = retroformer_e2e::smollm2();
    let sha = retroformer::fetch::sha256_file(
        &retroformer_e2e::smollm2_path(),
        &retroformer::fetch::Silent,
    )
    .unwrap();
    let mut data = String::new();
    for (episode, answer) in seen["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(seen["feedback"].as_array().unwrap())
    {
        let file = answer["file"].as_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let replies = episode["replies"].as_u64().unwrap();
        assert_eq!(text.lines().count() as u64, replies, "{file}: {text}");
        for line in text.lines() {
            let s: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(s["reward"], episode["return"], "{line}");
            turn_ids_are_what_the_model_saw_and_said(&s, &model, &sha);
        }
        data.push_str(&text);
    }
    let data_file = capture.path().join("all.jsonl");
    std::fs::write(&data_file, data).unwrap();

    // The trainer reads them as they are and writes an adapter llama.cpp loads on the base.
    let adapter = capture.path().join("agent.gguf");
    let train = Command::new(retroformer_e2e::workspace_bin("retroformer-train"))
        .args(["rwr", "--base", "smollm2-135m-instruct", "--data"])
        .arg(&data_file)
        .args([
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch",
            "1",
            "--rank",
            "2",
            "--max-len",
            "256",
        ])
        .arg("--out")
        .arg(&adapter)
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&train.stderr).contains("another model"),
        "the captured ids belong to the base the trainer trains"
    );
    use retroformer_llm::LanguageModel;
    retroformer_e2e::smollm2().load_adapter(&adapter).unwrap();
}
