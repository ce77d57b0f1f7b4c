//! `GET /health` (no key needed: load balancers ask it) and `GET /metrics` (Prometheus).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

pub async fn health(State(engine): State<AppState>) -> Json<Value> {
    let models: Vec<&str> = engine.models.iter().map(|m| m.name.as_str()).collect();
    Json(json!({"status": "ok", "models": models}))
}

pub async fn metrics(State(engine): State<AppState>) -> impl IntoResponse {
    let waiting: usize = engine.models.iter().map(|m| m.waiting()).sum();
    engine
        .metrics
        .queued
        .store(waiting as u64, std::sync::atomic::Ordering::Relaxed);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        engine.metrics.render(),
    )
}
