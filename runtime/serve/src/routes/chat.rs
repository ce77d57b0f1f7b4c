//! `POST /v1/chat/completions`: the messages through the model's chat template, then
//! [`generate`](super::generate).

use axum::extract::State;
use axum::response::Response;
use retroformer_llm::ChatMessage;

use super::generate::{Plan, Shape};
use super::{ApiJson, AppState};
use crate::api::ChatRequest;
use crate::error::ApiError;
use crate::tools::Tools;

pub async fn handle(
    State(engine): State<AppState>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let model = engine.model(&req.model)?;
    let tools = Tools::parse(req.tools.as_ref(), req.tool_choice.as_ref())?;
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
    let mut sampling = req.sampling;
    let mut prompted = messages.clone();
    if let Some(t) = &tools {
        describe(&mut prompted, t.instructions());
        if let Some(g) = t.grammar()? {
            if sampling.grammar.is_some() || sampling.response_format.is_some() {
                return Err(ApiError::invalid(
                    "tool_choice",
                    "a forced tool call cannot be combined with grammar or response_format",
                ));
            }
            sampling.grammar = Some(g);
        }
    }
    let prompt = model
        .model
        .chat_prompt(&prompted, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    Plan {
        model,
        prompts: vec![prompt],
        sampling,
        shape: Shape::Chat,
        transcript: Some(messages),
        tools,
    }
    .answer(engine)
    .await
}

/// Adds the tools' description to the system message (a first one if there is none).
fn describe(messages: &mut Vec<ChatMessage>, instructions: String) {
    match messages.first_mut() {
        Some(m) if m.role == "system" => m.content = format!("{}\n\n{instructions}", m.content),
        _ => messages.insert(0, ChatMessage::new("system", instructions)),
    }
}
