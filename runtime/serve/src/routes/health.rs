//! `GET /health` (no key needed: load balancers ask it) and `GET /metrics` (Prometheus).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::scheduler::Health;

/// 200 while every model serves; 503 when one has stopped, or has had requests in flight
/// without progress for `Limits::stall_after`, so that a balancer or supervisor takes the
/// server out or restarts it. Each model's state is in `states`.
pub async fn health(State(engine): State<AppState>) -> impl IntoResponse {
    let stall_after = engine.limits.stall_after;
    let mut ok = true;
    let states: Vec<Value> = engine
        .models
        .iter()
        .map(|m| {
            let health = m.health(stall_after);
            ok &= health == Health::Ready;
            match health {
                Health::Ready => json!({"model": m.name, "state": "ready"}),
                Health::Stalled(quiet) => json!({
                    "model": m.name,
                    "state": "stalled",
                    "quiet_seconds": quiet.as_secs_f64(),
                }),
                Health::Stopped(why) => json!({"model": m.name, "state": "stopped", "reason": why}),
            }
        })
        .collect();
    let models: Vec<&str> = engine.models.iter().map(|m| m.name.as_str()).collect();
    let (status, word) = match ok {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (
        status,
        Json(json!({"status": word, "models": models, "states": states})),
    )
}

pub async fn metrics(State(engine): State<AppState>) -> impl IntoResponse {
    let waiting: usize = engine.models.iter().map(|m| m.waiting()).sum();
    engine
        .metrics
        .queued
        .store(waiting as u64, std::sync::atomic::Ordering::Relaxed);
    let stall_after = engine.limits.stall_after;
    let ready: Vec<(&str, bool)> = engine
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.health(stall_after) == Health::Ready))
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        engine.metrics.render(&ready),
    )
}
