//! `POST /v1/completions`: raw text prompts (one or a list), then
//! [`generate`](super::generate).

use axum::extract::State;
use axum::response::Response;

use super::generate::{Plan, Shape};
use super::{ApiJson, AppState};
use crate::api::{CompletionRequest, Prompt};
use crate::error::ApiError;

pub async fn handle(
    State(engine): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let model = engine.model(&req.model)?;
    if req.echo == Some(true) {
        return Err(ApiError::unsupported(
            "echo",
            "echo is not supported by this server",
        ));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported(
            "suffix",
            "suffix is not supported by this server",
        ));
    }
    let prompts = match req.prompt {
        Prompt::One(p) => vec![p],
        Prompt::Many(v) if v.is_empty() => {
            return Err(ApiError::invalid(
                "prompt",
                "prompt must not be an empty list",
            ))
        }
        Prompt::Many(v) => v,
    };
    Plan {
        model,
        prompts,
        sampling: req.sampling,
        shape: Shape::Text,
        transcript: None,
        tools: None,
    }
    .answer(engine)
    .await
}
