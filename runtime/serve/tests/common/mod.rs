//! What the router tests share: engines over scripted models, calls, and gates that hold a
//! lane.

#![allow(dead_code)] // each test file uses some of these

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::SessionOptions;
use retroformer_serve::{router, Adapters, Engine, Limits, ServedModel};
use serde_json::Value;
use tower::ServiceExt;

/// `model` served with `lanes` requests decoded together (the scripted model's session runs
/// them one at a time; the lanes count toward the queue's bound).
pub fn engine_with(model: ScriptedModel, limits: Limits, lanes: u32) -> Arc<Engine> {
    let options = SessionOptions {
        sequences: Some(lanes),
        ..SessionOptions::default()
    };
    let served = ServedModel::new(
        "tiny",
        Arc::new(model),
        Adapters::new(None, 1.0).unwrap(),
        options,
    )
    .unwrap();
    Arc::new(Engine::new(vec![served], limits))
}

pub fn engine(model: ScriptedModel) -> Arc<Engine> {
    engine_with(model, Limits::default(), 1)
}

pub fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub async fn call(e: &Arc<Engine>, req: Request<Body>) -> (StatusCode, String) {
    let r = router(e.clone()).oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

pub async fn call_json(e: &Arc<Engine>, req: Request<Body>) -> (StatusCode, Value) {
    let (s, body) = call(e, req).await;
    (
        s,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

/// The error body's message, after checking OpenAI's shape.
pub fn error_of(v: &Value) -> (&str, Option<&str>) {
    let e = &v["error"];
    assert!(
        e["type"].is_string() && e["message"].is_string(),
        "not OpenAI's error shape: {v}"
    );
    (e["message"].as_str().unwrap(), e["param"].as_str())
}

/// Sets its flag when dropped. A test whose responder waits on a flag holds one, declared after
/// the engine: should the test fail before it opens the flag, the session is released, the
/// engine's drop (which waits for the session) returns, and the test fails instead of hanging.
pub struct Release(pub &'static AtomicBool);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A model whose session answers `reply` only once `open` is set: the request it runs holds
/// its lane until then.
pub fn gated(open: &'static AtomicBool, reply: &'static str) -> ScriptedModel {
    ScriptedModel::responder(move |_, _| {
        while !open.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        reply.into()
    })
}

/// A one-choice completion on `e`, in the background.
pub fn start_completion(e: &Arc<Engine>) -> tokio::task::JoinHandle<(StatusCode, String)> {
    let e = e.clone();
    tokio::spawn(async move {
        call(
            &e,
            post("/v1/completions", r#"{"model":"tiny","prompt":"x"}"#),
        )
        .await
    })
}

/// Waits until `cond` holds; fails the test after 10 s.
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
