//! `POST /v1/chat/completions`: the messages through the model's chat template, then
//! [`generate`](super::generate).

use axum::extract::State;
use axum::response::Response;
use retroformer_llm::ChatMessage;

use super::generate::{Plan, Shape};
use super::{ApiJson, AppState};
use crate::api::ChatRequest;
use crate::error::ApiError;

pub async fn handle(
    State(engine): State<AppState>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let model = engine.model(&req.model)?;
    if req
        .tools
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(ApiError::unsupported(
            "tools",
            "tool calls are not supported by this server yet",
        ));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // OpenAI's newer name for the system role; templates know `system`.
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            Ok(ChatMessage::new(role, m.text(i)?))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let prompt = model
        .model
        .chat_prompt(&messages, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    Plan {
        model,
        prompts: vec![prompt],
        sampling: req.sampling,
        shape: Shape::Chat,
        transcript: Some(messages),
    }
    .answer(engine)
    .await
}
