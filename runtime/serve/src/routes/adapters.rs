//! `GET /v1/adapters` lists each model's store versions and its active adapter with the
//! generation; `POST /v1/adapters/activate` changes the active adapter if the generation is
//! still the one the client saw (compare-and-swap; 409 otherwise).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiJson, ApiQuery, AppState};
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct ListQuery {
    model: Option<String>,
}

pub async fn list(
    State(engine): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut data = Vec::new();
    for m in &engine.models {
        if q.model.as_ref().is_some_and(|n| n != &m.name) {
            continue;
        }
        // The store's folder is read from disk: off the runtime.
        let served = m.clone();
        let versions = tokio::task::spawn_blocking(move || served.adapters.list())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        data.push(json!({"model": m.name, "active": m.adapters.active(), "adapters": versions}));
    }
    if let (Some(name), true) = (&q.model, data.is_empty()) {
        engine.model(name)?;
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Deserialize)]
pub struct Activate {
    model: String,
    /// A store id, or `null` for the base model.
    adapter: Option<String>,
    /// The generation the client last saw; the change happens only if it is still current.
    expected_generation: Option<u64>,
}

pub async fn activate(
    State(engine): State<AppState>,
    ApiJson(req): ApiJson<Activate>,
) -> Result<Json<Value>, ApiError> {
    let m = engine.model(&req.model)?;
    let served = m.clone();
    // Loading an adapter the first time verifies its hash and probes it: off the runtime.
    let active = tokio::task::spawn_blocking(move || {
        served.adapters.activate(
            served.model.as_ref(),
            req.adapter.as_deref(),
            req.expected_generation,
        )
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(json!({"model": m.name, "active": active})))
}
