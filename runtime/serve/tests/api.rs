//! The router against scripted models: OpenAI's shapes, streaming, errors for hostile input,
//! the key, adapter generations, metrics (the queue, health and faults: `load.rs`; the official `openai`
//! client against the real server and model: tests/tests/serve_openai.rs).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::SessionOptions;
use retroformer_serve::{Adapters, Engine, Limits, ServedModel};
use serde_json::{json, Value};

use common::*;

#[tokio::test]
async fn a_chat_completion_answers_in_openais_shape_with_usage() {
    let e = engine(ScriptedModel::new(["Paris is the capital."]));
    let (s, v) = call_json(
        &e,
        post(
            "/v1/chat/completions",
            r#"{"model":"tiny","messages":[{"role":"user","content":"Capital of France?"}]}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Paris is the capital."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        v["usage"]["total_tokens"].as_u64().unwrap(),
        v["usage"]["prompt_tokens"].as_u64().unwrap()
            + v["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn the_chat_template_and_sampling_fields_reach_the_model() {
    let m = ScriptedModel::new(["ok"]);
    let e = engine(m.clone());
    let body = json!({"model": "tiny", "messages": [{"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}],
        "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"], "seed": -1});
    let (s, v) = call_json(&e, post("/v1/chat/completions", &body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = &m.requests()[0];
    assert_eq!(
        r.prompt,
        "<system>Be brief.</system>\n<user>Hi!</user>\n<assistant>"
    );
    assert_eq!(
        (r.max_tokens, r.sampling.temperature, r.sampling.top_p),
        (7, 0.5, 0.9)
    );
    assert_eq!(r.stop, vec!["\n".to_string()]);
    assert_eq!(r.sampling.seed, u32::MAX, "seed -1 is taken modulo 2^32");
}

#[tokio::test]
async fn a_streamed_chat_sends_the_role_then_the_text_then_done() {
    let e = engine(ScriptedModel::new(["Hello there"]));
    let body = r#"{"model":"tiny","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#;
    let (s, text) = call(&e, post("/v1/chat/completions", body)).await;
    assert_eq!(s, StatusCode::OK);
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello there");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).map(|c| &c["finish_reason"]))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{text}");
}

#[tokio::test]
async fn logprobs_and_token_ids_come_back_in_openais_shapes_whole_and_streamed() {
    let e = engine(ScriptedModel::new(["Hello there", "Hello there", "Hi you"]));
    let chat = r#"{"model":"tiny","logprobs":true,"top_logprobs":1,"return_token_ids":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    let (s, v) = call_json(&e, post("/v1/chat/completions", chat)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let choice = &v["choices"][0];
    let content = choice["logprobs"]["content"].as_array().unwrap();
    let spelled: String = content
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(spelled, "Hello there");
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 1);
    assert_eq!(content[0]["bytes"], json!(b"Hello ".to_vec()));
    assert_eq!(choice["token_ids"].as_array().unwrap().len(), 2);
    assert!(!choice["prompt_token_ids"].as_array().unwrap().is_empty());

    let streamed = chat.replacen('{', r#"{"stream":true,"#, 1);
    let (_, text) = call(&e, post("/v1/chat/completions", &streamed)).await;
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let tokens: usize = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .map(Vec::len)
        .sum();
    assert_eq!(tokens, 2, "the last chunk carries them: {text}");

    let completion = r#"{"model":"tiny","prompt":"x","logprobs":0}"#;
    let (s, v) = call_json(&e, post("/v1/completions", completion)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"], json!(["Hi ", "you"]));
    assert_eq!(lp["text_offset"], json!([0, 3]));
    assert!(v["choices"][0].get("token_ids").is_none(), "not asked for");
}

#[tokio::test]
async fn a_text_completion_takes_a_list_of_prompts_with_n_choices_each() {
    let m = ScriptedModel::generative();
    let e = engine(m.clone());
    let body = r#"{"model":"tiny","prompt":["one","two"],"n":2,"max_tokens":3,"temperature":0.7,"seed":5}"#;
    let (s, v) = call_json(&e, post("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 3]);
    let seeds: Vec<u32> = m.requests().iter().map(|r| r.sampling.seed).collect();
    assert_eq!(seeds, [5, 6, 5, 6], "choice i samples with seed + i");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn hostile_bodies_and_absurd_parameters_get_openai_errors_naming_the_field() {
    let e = engine_with(
        ScriptedModel::generative(),
        Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        },
        1,
    );
    let cases: Vec<(&str, String, StatusCode, Option<&str>)> = vec![
        ("/v1/chat/completions", r#"{"model":"tiny","messages":[{"role":"#.into(), StatusCode::BAD_REQUEST, None),
        ("/v1/chat/completions", r#"{"model":"tiny","messages":"hi"}"#.into(), StatusCode::BAD_REQUEST, Some("messages")),
        ("/v1/chat/completions", r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":"100"}"#.into(), StatusCode::BAD_REQUEST, Some("max_tokens")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","stop":7}"#.into(), StatusCode::BAD_REQUEST, Some("stop")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","logit_bias":{"50256":-100}}"#.into(), StatusCode::BAD_REQUEST, Some("logit_bias")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","best_of":3}"#.into(), StatusCode::BAD_REQUEST, Some("best_of")),
        ("/v1/chat/completions", r#"{"model":"tiny","messages":[]}"#.into(), StatusCode::BAD_REQUEST, Some("messages")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","max_tokens":1000000000}"#.into(), StatusCode::BAD_REQUEST, Some("max_tokens")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","temperature":5}"#.into(), StatusCode::BAD_REQUEST, Some("temperature")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","n":1000}"#.into(), StatusCode::BAD_REQUEST, Some("n")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","top_p":0}"#.into(), StatusCode::BAD_REQUEST, Some("top_p")),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","logprobs":99}"#.into(), StatusCode::BAD_REQUEST, Some("logprobs")),
        // 8 x 4096 tokens x 21 logprobs: more than one reply may hold (MAX_LOGPROB_ENTRIES).
        ("/v1/chat/completions", r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":20,"n":8}"#.into(), StatusCode::BAD_REQUEST, Some("top_logprobs")),
        ("/v1/completions", format!(r#"{{"model":"tiny","prompt":"x","stop":["{}"]}}"#, "x".repeat(257)), StatusCode::BAD_REQUEST, Some("stop")),
        ("/v1/chat/completions", r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_logprobs":2}"#.into(), StatusCode::BAD_REQUEST, Some("top_logprobs")),
        ("/v1/completions", r#"{"model":"gpt-4","prompt":"x"}"#.into(), StatusCode::NOT_FOUND, Some("model")),
        ("/v1/chat/completions", r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#.into(), StatusCode::BAD_REQUEST, Some("tools[0].function.name")),
        ("/v1/completions", format!(r#"{{"model":"tiny","prompt":"{}"}}"#, "x".repeat(4096)), StatusCode::PAYLOAD_TOO_LARGE, None),
        ("/v1/completions", r#"{"model":"tiny","prompt":"x","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"date"}}}}"#.into(), StatusCode::BAD_REQUEST, Some("response_format.json_schema.schema")),
        // More completions than one lane and the queue of 64 could ever hold at once.
        ("/v1/completions", format!(r#"{{"model":"tiny","prompt":[{}]}}"#, vec!["\"a\""; 66].join(",")), StatusCode::BAD_REQUEST, Some("prompt")),
    ];
    for (path, body, status, param) in cases {
        let (s, v) = call_json(&e, post(path, &body)).await;
        assert_eq!(s, status, "{body:.80}: {v}");
        let (_, p) = error_of(&v);
        if param.is_some() {
            assert_eq!(p, param, "{body:.80}: {v}");
        }
    }
    // Not declared JSON: 415, in OpenAI's shape; `application/json; charset=utf-8` is JSON.
    let plain = Request::post("/v1/completions")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"model":"tiny","prompt":"x"}"#))
        .unwrap();
    let (s, v) = call_json(&e, plain).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    error_of(&v);
    let charset = Request::post("/v1/completions")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(
            r#"{"model":"tiny","prompt":"x","max_tokens":1}"#,
        ))
        .unwrap();
    assert_eq!(call(&e, charset).await.0, StatusCode::OK);
    let bad_query = Request::get("/v1/adapters?model=%FF")
        .body(Body::empty())
        .unwrap();
    let (s, v) = call_json(&e, bad_query).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(error_of(&v).1, Some("model"), "{v}");
    let (s, v) = call_json(&e, Request::get("/v1/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&v);
    let (s, v) = call_json(
        &e,
        Request::get("/v1/completions").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    error_of(&v);
}

#[tokio::test]
async fn a_json_schema_response_format_becomes_the_requests_grammar() {
    let m = ScriptedModel::new([r#"{"a": 1}"#]);
    let e = engine(m.clone());
    let body = json!({"model": "tiny", "prompt": "x", "response_format": {"type": "json_schema",
        "json_schema": {"name": "t", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}});
    let (s, v) = call_json(&e, post("/v1/completions", &body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let g = m.requests()[0].grammar.clone().expect("a grammar");
    assert!(
        g.text
            .starts_with("root ::= \"{\" ws \"\\\"a\\\"\" ws \":\" ws integer"),
        "{}",
        g.text
    );
}

#[tokio::test]
async fn with_a_key_every_route_but_health_needs_it() {
    let e = engine_with(
        ScriptedModel::generative(),
        Limits {
            api_key: Some("s3cret".into()),
            ..Limits::default()
        },
        1,
    );
    let (s, v) = call_json(&e, Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    error_of(&v);
    let wrong = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer s3creT")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&e, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let (s, v) = call_json(&e, right).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"][0]["id"], "tiny");
    assert_eq!(
        call(&e, Request::get("/health").body(Body::empty()).unwrap())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn adapter_activation_is_a_compare_and_swap_on_the_generation() {
    let e = engine(ScriptedModel::generative());
    let act = |body: &str| post("/v1/adapters/activate", body);
    let (s, v) = call_json(
        &e,
        act(r#"{"model":"tiny","adapter":null,"expected_generation":0}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["active"]["generation"], 1);
    let (s, v) = call_json(
        &e,
        act(r#"{"model":"tiny","adapter":null,"expected_generation":0}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "a stale generation loses: {v}");
    let (s, v) = call_json(&e, act(r#"{"model":"tiny","adapter":"0123456789abcdef"}"#)).await;
    assert_eq!(
        (s, error_of(&v).1),
        (StatusCode::NOT_FOUND, Some("adapter"))
    );
    let (s, v) = call_json(
        &e,
        post(
            "/v1/completions",
            r#"{"model":"tiny","prompt":"x","adapter":"feedbeef"}"#,
        ),
    )
    .await;
    assert_eq!(
        (s, error_of(&v).1),
        (StatusCode::NOT_FOUND, Some("adapter"))
    );
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_cache_hits_in_prometheus_text() {
    let e = engine(ScriptedModel::generative());
    for p in ["a b c d", "a b c d e"] {
        let body = json!({"model": "tiny", "prompt": p, "max_tokens": 2, "session_id": "s1"});
        assert_eq!(
            call(&e, post("/v1/completions", &body.to_string())).await.0,
            StatusCode::OK
        );
    }
    let (s, text) = call(&e, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("retroformer_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("retroformer_completion_tokens_total 4"),
        "{text}"
    );
    assert!(
        text.contains("retroformer_prompt_cache_hits_total 1"),
        "the second prompt extends the first: {text}"
    );
    assert!(
        text.contains("retroformer_adapter_generations_total{model=\"tiny\",adapter=\"base\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("retroformer_request_duration_seconds_count{endpoint=\"/v1/completions\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("retroformer_model_ready{model=\"tiny\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_sessions_chat_turns_become_training_samples_when_feedback_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let served = ServedModel::new(
        "tiny",
        Arc::new(ScriptedModel::new(["5", "4"])),
        Adapters::new(None, 1.0).unwrap(),
        SessionOptions::default(),
    )
    .unwrap()
    .with_sha256("feed".into());
    let e = Arc::new(
        Engine::new(vec![served], Limits::default())
            .with_capture(retroformer_serve::Capture::new(dir.path()).unwrap()),
    );
    let turn1 = json!({"model": "tiny", "session_id": "ep-1", "messages": [{"role": "user", "content": "2+2?"}]});
    assert_eq!(
        call(&e, post("/v1/chat/completions", &turn1.to_string()))
            .await
            .0,
        StatusCode::OK
    );
    let turn2 = json!({"model": "tiny", "session_id": "ep-1", "stream": true, "messages": [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}, {"role": "user", "content": "Wrong."}]});
    assert_eq!(
        call(&e, post("/v1/chat/completions", &turn2.to_string()))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = call_json(
        &e,
        post("/v1/feedback", r#"{"session_id":"ep-1","reward":1.0}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["samples"], 2);
    let text = std::fs::read_to_string(v["file"].as_str().unwrap()).unwrap();
    let last: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        last["messages"].as_array().unwrap().last().unwrap()["content"],
        "4"
    );
    assert_eq!(
        (last["reward"].as_f64(), last["format_version"].as_u64()),
        (Some(1.0), Some(1))
    );
    // The streamed turn's token ids, as the model saw them, for a trainer of that model.
    let ids = &last["tokens"];
    assert_eq!(ids["model_sha256"], "feed");
    assert!(ids["prompt"].as_array().unwrap().len() > 3, "{ids}");
    assert_eq!(ids["completion"].as_array().unwrap().len(), 1, "{ids}");
    let (s, v) = call_json(
        &e,
        post("/v1/feedback", r#"{"session_id":"ep-1","reward":1.0}"#),
    )
    .await;
    assert_eq!(
        (s, error_of(&v).1),
        (StatusCode::NOT_FOUND, Some("session_id"))
    );
    // An id past the bound is refused by name on both routes, before anything is kept.
    let long = "x".repeat(257); // one past `MAX_SESSION_ID_BYTES`
    let turn = json!({"model": "tiny", "session_id": long, "messages": [{"role": "user", "content": "2+2?"}]});
    let feedback = json!({"session_id": long, "reward": 1.0});
    for (path, body) in [("/v1/chat/completions", turn), ("/v1/feedback", feedback)] {
        let (s, v) = call_json(&e, post(path, &body.to_string())).await;
        assert_eq!(
            (s, error_of(&v).1),
            (StatusCode::BAD_REQUEST, Some("session_id")),
            "{path}: {v}"
        );
    }
}

/// A store with two installed adapters for a tiny base, and their ids.
fn store_with_two(dir: &std::path::Path) -> (retroformer::adapters::AdapterStore, [String; 2]) {
    use retroformer_core::records::keys;
    use retroformer_gguf::{BasePolicy, GgufWriter, TinyModel, WriteValue};
    let sha = "ab".repeat(32);
    let base = retroformer_gguf::validate_bytes(&TinyModel::llama().writer().to_bytes()).unwrap();
    let store = retroformer::adapters::AdapterStore::open(&dir.join("store"), &sha).unwrap();
    let ids = [1.0f32, 2.0].map(|fill| {
        let mut w = GgufWriter::lora_adapter("llama", 4.0);
        w.kv(keys::BASE_SHA256, sha.as_str())
            .kv(keys::OBJECTIVE, "sft")
            .kv(keys::STEP, WriteValue::U64(1))
            .tensor_f32("blk.0.attn_q.weight.lora_a", &[64, 2], &[fill; 128])
            .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[fill; 128]);
        let p = dir.join(format!("a{fill}.gguf"));
        w.write(&p).unwrap();
        store
            .install(&p, &base, "tiny", BasePolicy::Recorded, &|_| Ok(()))
            .unwrap()
            .id
    });
    (store, ids)
}

/// Answers with the store id of the session's adapter (its version folder), or "base".
fn adapter_echo() -> ScriptedModel {
    ScriptedModel::responder(|_, adapter| match adapter {
        Some(p) => p
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        None => "base".into(),
    })
}

async fn text_of(e: &Arc<Engine>, adapter: Option<&str>) -> String {
    let mut body = json!({"model": "tiny", "prompt": "same prompt", "session_id": "one"});
    if let Some(a) = adapter {
        body["adapter"] = json!(a);
    }
    let (s, v) = call_json(e, post("/v1/completions", &body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["choices"][0]["text"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn adapters_a_then_b_then_a_on_one_session_give_as_output_both_times() {
    let dir = tempfile::tempdir().unwrap();
    let (store, [a, b]) = store_with_two(dir.path());
    let served = ServedModel::new(
        "tiny",
        Arc::new(adapter_echo()),
        Adapters::new(Some(store), 1.0).unwrap(),
        SessionOptions::default(),
    )
    .unwrap();
    let e = Arc::new(Engine::new(vec![served], Limits::default()));
    assert_eq!(text_of(&e, Some(&a)).await, a);
    assert_eq!(text_of(&e, Some(&b)).await, b);
    assert_eq!(
        text_of(&e, Some(&a)).await,
        a,
        "the cache filled under B is not reused for A"
    );
    assert_eq!(text_of(&e, Some("base")).await, "base");
    assert_eq!(text_of(&e, None).await, "base", "no adapter is active yet");
    let (s, v) = call_json(
        &e,
        Request::get("/v1/adapters").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"][0]["adapters"].as_array().unwrap().len(), 2, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_keeps_the_adapter_it_started_with_when_another_is_activated() {
    static OPEN: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let (store, [a, b]) = store_with_two(dir.path());
    let m = ScriptedModel::responder(|_, adapter| {
        while !OPEN.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        adapter.map_or("base".into(), |p| {
            p.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
    });
    let served = ServedModel::new(
        "tiny",
        Arc::new(m),
        Adapters::new(Some(store), 1.0).unwrap(),
        SessionOptions::default(),
    )
    .unwrap();
    let e = Arc::new(Engine::new(vec![served], Limits::default()));
    let open = Release(&OPEN);
    let act = |id: &str, generation: u64| {
        post(
            "/v1/adapters/activate",
            &json!({"model": "tiny", "adapter": id, "expected_generation": generation}).to_string(),
        )
    };
    assert_eq!(call(&e, act(&a, 0)).await.0, StatusCode::OK);
    let e2 = e.clone();
    let in_flight = tokio::spawn(async move { text_of(&e2, Some("active")).await });
    until("a request runs", || {
        e.metrics.running.load(Ordering::SeqCst) > 0
    })
    .await;
    let (s, v) = call_json(&e, act(&b, 1)).await;
    assert_eq!(
        (s, &v["active"]["generation"]),
        (StatusCode::OK, &json!(2)),
        "{v}"
    );
    drop(open);
    assert_eq!(
        in_flight.await.unwrap(),
        a,
        "the request started on generation 1 (A)"
    );
    assert_eq!(
        text_of(&e, Some("active")).await,
        b,
        "the next request runs on B"
    );
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

#[tokio::test]
async fn a_reply_that_calls_an_offered_tool_comes_back_as_tool_calls_whole_and_streamed() {
    let reply = r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#;
    let m = ScriptedModel::new([reply, reply, "It is sunny."]);
    let e = engine(m.clone());
    let body = json!({"model": "tiny", "tools": weather_tools(), "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let (s, v) = call_json(&e, post("/v1/chat/completions", &body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert!(c["message"]["content"].is_null());
    let f = &c["message"]["tool_calls"][0]["function"];
    assert_eq!(f["name"], "get_weather");
    let args: Value = serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["city"], "Paris");
    assert!(
        m.requests()[0]
            .prompt
            .starts_with("<system>You can call these functions:"),
        "{}",
        m.requests()[0].prompt
    );
    assert!(m.requests()[0].grammar.is_none(), "auto forces no call");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (_, text) = call(&e, post("/v1/chat/completions", &streamed.to_string())).await;
    assert!(text.contains("\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\",\"name\":\"get_weather\"}"), "{text}");
    assert!(text.contains("\"finish_reason\":\"tool_calls\""), "{text}");

    // The call and its result go back in; the final answer is text.
    let follow = json!({"model": "tiny", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]});
    let (s, v) = call_json(&e, post("/v1/chat/completions", &follow.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "It is sunny.");
    let p = &m.requests()[2].prompt;
    assert!(
        p.contains(r#"<assistant>{"arguments":{"city":"Paris"},"name":"get_weather"}</assistant>"#),
        "{p}"
    );
    assert!(p.contains("<tool>sunny, 21 C</tool>"), "{p}");
}

#[tokio::test]
async fn a_required_tool_call_is_forced_by_a_grammar() {
    let m = ScriptedModel::new([r#"{"name": "get_weather", "arguments": {"city": "Oslo"}}"#]);
    let e = engine(m.clone());
    let body = json!({"model": "tiny", "tools": weather_tools(), "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather?"}]});
    let (s, v) = call_json(&e, post("/v1/chat/completions", &body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let g = m.requests()[0].grammar.clone().expect("a grammar");
    assert!(
        g.text.starts_with("root ::= \"{\" ws \"\\\"name\\\"\""),
        "{}",
        g.text
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}
