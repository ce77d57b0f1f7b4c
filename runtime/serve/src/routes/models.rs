//! `GET /v1/models`: the served models, in OpenAI's list shape.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::ids::now;

pub async fn list(State(engine): State<AppState>) -> Json<Value> {
    let created = now();
    let data: Vec<Value> = engine
        .models
        .iter()
        .map(|m| json!({"id": m.name, "object": "model", "created": created, "owned_by": "retroformer"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}
