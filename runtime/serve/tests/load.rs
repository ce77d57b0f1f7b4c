//! The router under load and faults, against scripted models: the queue's 429, health while
//! a session stalls or after it stops, deadlines the session does not keep, many clients at
//! once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{
    AdapterHandle, ChatMessage, LanguageModel, LlmError, Session, SessionOptions, Token,
};
use retroformer_serve::{router, Adapters, Engine, Limits, ServedModel};
use serde_json::json;
use tower::ServiceExt;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after_and_the_rest_complete() {
    static OPEN: AtomicBool = AtomicBool::new(false);
    let m = gated(&OPEN, "done");
    let e = engine_with(
        m,
        Limits {
            max_queue: 1,
            ..Limits::default()
        },
        1,
    );
    let open = Release(&OPEN);
    let body = r#"{"model":"tiny","prompt":"x"}"#;
    let running = start_completion(&e);
    until("a request runs", || {
        e.metrics.running.load(Ordering::SeqCst) > 0
    })
    .await;
    let queued = start_completion(&e);
    until("a request waits", || e.models[0].waiting() > 0).await;
    let r = router(e.clone())
        .oneshot(post("/v1/completions", body))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    // A stream refused before its first token gets the status too, not an error after a 200.
    let streamed = r#"{"model":"tiny","prompt":"x","stream":true}"#;
    let (s, v) = call_json(&e, post("/v1/completions", streamed)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    error_of(&v);
    drop(open);
    assert_eq!(running.await.unwrap().0, StatusCode::OK);
    assert_eq!(queued.await.unwrap().0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_choices_do_not_all_fit_in_the_queue_is_refused_before_any_is_queued() {
    static OPEN: AtomicBool = AtomicBool::new(false);
    let m = gated(&OPEN, "done");
    let limits = Limits {
        max_queue: 1,
        ..Limits::default()
    };
    let e = engine_with(m, limits, 1);
    let open = Release(&OPEN);
    let running = start_completion(&e);
    until("a request runs", || {
        e.metrics.running.load(Ordering::SeqCst) > 0
    })
    .await;
    // Two choices, room for one.
    let two = r#"{"model":"tiny","prompt":"x","n":2}"#;
    let r = router(e.clone())
        .oneshot(post("/v1/completions", two))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        e.models[0].in_flight(),
        1,
        "no choice of the refused request was queued"
    );
    drop(open);
    assert_eq!(running.await.unwrap().0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_while_requests_wait_on_a_session_that_does_not_move() {
    static OPEN: AtomicBool = AtomicBool::new(false);
    let m = gated(&OPEN, "done");
    let limits = Limits {
        stall_after: Duration::from_millis(300),
        ..Limits::default()
    };
    let e = engine_with(m, limits, 1);
    let open = Release(&OPEN);
    let health = |e: Arc<Engine>| async move {
        call_json(&e, Request::get("/health").body(Body::empty()).unwrap()).await
    };
    // Idle for longer than `stall_after` is not a stall.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(health(e.clone()).await.0, StatusCode::OK);
    let running = start_completion(&e);
    until("a request runs", || {
        e.metrics.running.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(health(e.clone()).await.0, StatusCode::OK, "just started");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, v) = health(e.clone()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["states"][0]["state"], "stalled", "{v}");
    assert!(v["states"][0]["quiet_seconds"].as_f64().unwrap() >= 0.3);
    drop(open);
    assert_eq!(running.await.unwrap().0, StatusCode::OK);
    let (s, v) = health(e.clone()).await;
    assert_eq!(
        (s, &v["states"][0]["state"]),
        (StatusCode::OK, &json!("ready"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_its_504_even_when_the_session_does_not_end_it() {
    static OPEN: AtomicBool = AtomicBool::new(false);
    // The scripted session checks the deadline only before it starts: a session that hangs.
    let m = gated(&OPEN, "late");
    let limits = Limits {
        deadline: Some(Duration::from_millis(200)),
        ..Limits::default()
    };
    let e = engine_with(m, limits, 1);
    let open = Release(&OPEN);
    let started = std::time::Instant::now();
    let body = post("/v1/completions", r#"{"model":"tiny","prompt":"x"}"#);
    let answer = tokio::time::timeout(Duration::from_secs(10), call_json(&e, body)).await;
    let took = started.elapsed();
    drop(open);
    let (s, v) = answer.expect("no answer 10 s after a deadline of 0.2 s");
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    // The deadline, then the 2 s the route gives the session to end the request itself.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
}

/// A model whose sessions cannot be opened again once one has been: the scheduler cannot
/// recover from a failed session.
struct OneSession {
    inner: ScriptedModel,
    opened: AtomicBool,
}

impl LanguageModel for OneSession {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn tokenize(&self, text: &str, bos: bool, special: bool) -> Result<Vec<Token>, LlmError> {
        self.inner.tokenize(text, bos, special)
    }
    fn detokenize(&self, tokens: &[Token]) -> Result<String, LlmError> {
        self.inner.detokenize(tokens)
    }
    fn chat_prompt(&self, messages: &[ChatMessage], open: bool) -> Result<String, LlmError> {
        self.inner.chat_prompt(messages, open)
    }
    fn session(&self, opts: &SessionOptions) -> Result<Box<dyn Session>, LlmError> {
        if self.opened.swap(true, Ordering::SeqCst) {
            return Err(LlmError::Context("the device is gone".into()));
        }
        self.inner.session(opts)
    }
    fn load_adapter(&self, path: &std::path::Path) -> Result<AdapterHandle, LlmError> {
        self.inner.load_adapter(path)
    }
}

#[tokio::test]
async fn a_model_that_stops_serving_fails_health_and_refuses_requests_with_503() {
    // One reply: the second request finds the script empty, a failure of the session.
    let m = OneSession {
        inner: ScriptedModel::new(["fine"]),
        opened: AtomicBool::new(false),
    };
    let served = ServedModel::new(
        "tiny",
        Arc::new(m),
        Adapters::new(None, 1.0).unwrap(),
        SessionOptions::default(),
    )
    .unwrap();
    let e = Arc::new(Engine::new(vec![served], Limits::default()));
    let body = r#"{"model":"tiny","prompt":"x"}"#;
    assert_eq!(
        call(&e, post("/v1/completions", body)).await.0,
        StatusCode::OK
    );
    let (s, v) = call_json(&e, post("/v1/completions", body)).await;
    assert_eq!(
        s,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the failed request: {v}"
    );
    let mut stopped = None;
    for _ in 0..200 {
        let (s, v) = call_json(&e, Request::get("/health").body(Body::empty()).unwrap()).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            stopped = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = stopped.expect("/health still answers 200 for a model that stopped");
    assert_eq!(v["states"][0]["state"], "stopped", "{v}");
    let reason = v["states"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("the device is gone"), "{reason}");
    // A later request is refused at once, not left waiting for a thread that is gone.
    let r = router(e.clone())
        .oneshot(post("/v1/completions", body))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let (_, text) = call(&e, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        text.contains("retroformer_model_ready{model=\"tiny\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_clients_each_get_their_own_answer() {
    let m = ScriptedModel::responder(|prompt, _| {
        std::thread::sleep(Duration::from_millis(2));
        format!("echo {prompt}")
    });
    let e = engine_with(
        m,
        Limits {
            max_queue: 64,
            ..Limits::default()
        },
        4,
    );
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let e = e.clone();
            tokio::spawn(async move {
                let body =
                    json!({"model": "tiny", "prompt": format!("client {i}"), "stream": i % 2 == 0});
                (
                    i,
                    call(&e, post("/v1/completions", &body.to_string())).await,
                )
            })
        })
        .collect();
    for c in clients {
        let (i, (status, body)) = c.await.unwrap();
        assert_eq!(status, StatusCode::OK, "client {i}: {body}");
        assert!(
            body.contains(&format!("\"echo client {i}\"")),
            "client {i} got another's answer: {body}"
        );
    }
    assert_eq!(e.metrics.running.load(Ordering::SeqCst), 0);
    assert_eq!(e.models[0].waiting(), 0);
}
