//! `POST /v1/feedback {session_id, reward}`: closes a captured episode with its return and
//! writes its samples (see `capture.rs`).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiJson, AppState};
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct Feedback {
    session_id: String,
    reward: f64,
}

pub async fn handle(
    State(engine): State<AppState>,
    ApiJson(req): ApiJson<Feedback>,
) -> Result<Json<Value>, ApiError> {
    let capture = engine.capture.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "session_id",
            "trajectory capture is off: start the server with --capture DIR",
        )
    })?;
    crate::api::check_session_id(&req.session_id)?;
    let (file, samples) = capture.feedback(&req.session_id, req.reward)?;
    Ok(Json(
        json!({"session_id": req.session_id, "samples": samples, "file": file}),
    ))
}
