//! OpenAI's request bodies, as far as this server reads them, and how their sampling fields
//! become a [`GenerateRequest`]. Fields a client may send that the server does not implement
//! are refused by name rather than ignored (`echo`, `suffix`, penalties other than 0,
//! `logit_bias`, `best_of` above 1); fields that change nothing here (`user`, `store`,
//! `parallel_tool_calls`, ...) are accepted.

use std::time::Instant;

use retroformer_llm::{GenerateRequest, Grammar, SamplingParams};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::Limits;
use crate::error::ApiError;
use crate::schema;

/// The longest `stop` string, in bytes (OpenAI sets none; a stop is a word or a marker).
pub const MAX_STOP_BYTES: usize = 256;
/// A `session_id`'s length at most: ids are kept as keys while their episode is open, and are
/// not counted in the capture's memory budget.
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// Refuses a `session_id` that is empty or longer than [`MAX_SESSION_ID_BYTES`].
pub fn check_session_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_SESSION_ID_BYTES {
        return Err(ApiError::invalid(
            "session_id",
            format!(
                "session_id must be 1 to {MAX_SESSION_ID_BYTES} bytes; got {}",
                id.len()
            ),
        ));
    }
    Ok(())
}

/// `stop`: one string or a list.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `response_format`.
#[derive(Deserialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaSpec },
}

#[derive(Deserialize, Clone, Debug)]
pub struct JsonSchemaSpec {
    pub schema: Value,
}

/// The sampling and control fields chat and text completions share.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct Sampling {
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<Value>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Refused unless empty: a client that sets it counts on it.
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    /// Completions: refused above 1.
    pub best_of: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    /// Extension: a GBNF grammar the output must match (root rule `root`).
    pub grammar: Option<String>,
    /// Extension: `"base"`, `"active"` or a store adapter id (default: `"active"`).
    pub adapter: Option<String>,
    /// Extension (as llama.cpp's server): generate past end-of-generation tokens, up to
    /// `max_tokens` (benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Extension: a conversation's id: its chat turns are captured for training (`--capture`)
    /// until `POST /v1/feedback` closes the episode.
    pub session_id: Option<String>,
    /// Extension (as vLLM's): each choice carries `prompt_token_ids` and `token_ids`.
    #[serde(default)]
    pub return_token_ids: bool,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

impl Sampling {
    /// Completions per request (`n`, 1 by default).
    pub fn n(&self, limits: &Limits) -> Result<u32, ApiError> {
        let n = self.n.unwrap_or(1);
        if n == 0 || n > limits.max_n {
            return Err(ApiError::invalid(
                "n",
                format!("n must be 1 to {}; got {n}", limits.max_n),
            ));
        }
        Ok(n)
    }

    /// The most tokens each completion may generate: `max_completion_tokens`, `max_tokens`, or
    /// (as OpenAI's, without a bound the reply ends at its end, the context's or) the server's
    /// cap.
    pub fn max_tokens(&self, limits: &Limits) -> Result<u32, ApiError> {
        let max_tokens = self
            .max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(limits.max_tokens);
        if max_tokens == 0 || max_tokens > limits.max_tokens {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "max_tokens must be 1 to {}; got {max_tokens}",
                    limits.max_tokens
                ),
            ));
        }
        Ok(max_tokens)
    }

    /// Refuses what the server does not implement, by field, and a `session_id` out of bounds.
    pub fn check_supported(&self) -> Result<(), ApiError> {
        for (field, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(ApiError::unsupported(
                    field,
                    format!("{field} is not supported (only 0)"),
                ));
            }
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::unsupported(
                "logit_bias",
                "logit_bias is not supported (only {})",
            ));
        }
        if self.best_of.is_some_and(|b| b > 1) {
            return Err(ApiError::unsupported(
                "best_of",
                "best_of is not supported (only 1)",
            ));
        }
        self.session_id.as_deref().map_or(Ok(()), check_session_id)
    }

    /// The generation request for `prompt`, choice `index` (`n` > 1 draws each with seed +
    /// index), ending at `deadline`, under `grammar` (this request's [`Self::grammar`], made
    /// once for all its choices).
    pub fn request(
        &self,
        prompt: String,
        index: u32,
        limits: &Limits,
        deadline: Option<Instant>,
        grammar: Option<Grammar>,
    ) -> Result<GenerateRequest, ApiError> {
        let max_tokens = self.max_tokens(limits)?;
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                "temperature",
                format!("temperature must be 0 to 2; got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("top_p must be above 0 and at most 1; got {top_p}"),
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        // Each is looked for in the text at every token, on the thread all lanes share.
        if stop.len() > 4
            || stop
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(ApiError::invalid(
                "stop",
                format!("stop takes at most 4 non-empty strings of at most {MAX_STOP_BYTES} bytes"),
            ));
        }
        // OpenAI's seed is any integer; the sampler's is 32 bits.
        let seed = (self.seed.unwrap_or(0).rem_euclid(1 << 32) as u32).wrapping_add(index);
        let mut r = GenerateRequest::new(prompt, max_tokens);
        r.stop = stop;
        r.sampling = SamplingParams {
            temperature,
            top_p,
            seed,
            ..SamplingParams::default()
        };
        r.grammar = grammar;
        r.ignore_eos = self.ignore_eos;
        r.deadline = deadline;
        Ok(r)
    }

    /// The grammar the output must match: `grammar`, or one made from `response_format`.
    pub fn grammar(&self) -> Result<Option<Grammar>, ApiError> {
        let (text, origin) = match (&self.grammar, &self.response_format) {
            (Some(_), Some(f)) if !matches!(f, ResponseFormat::Text) => {
                return Err(ApiError::invalid(
                    "grammar",
                    "give either grammar or response_format, not both",
                ))
            }
            (Some(g), _) => (g.clone(), "the request's grammar"),
            (None, Some(ResponseFormat::JsonObject)) => {
                (schema::JSON_GBNF.to_string(), "response_format json_object")
            }
            (None, Some(ResponseFormat::JsonSchema { json_schema })) => (
                schema::to_gbnf(&json_schema.schema).map_err(|e| {
                    ApiError::invalid("response_format.json_schema.schema", e.to_string())
                })?,
                "response_format json_schema",
            ),
            _ => return Ok(None),
        };
        if text.len() > schema::MAX_GRAMMAR_BYTES {
            return Err(ApiError::invalid(
                "grammar",
                format!(
                    "a grammar may have at most {} bytes; got {}",
                    schema::MAX_GRAMMAR_BYTES,
                    text.len()
                ),
            ));
        }
        Ok(Some(Grammar {
            text,
            root: "root".into(),
            origin: origin.into(),
        }))
    }
}

/// One message of a chat: `content` is a string or a list of parts of which text is read.
#[derive(Deserialize, Clone, Debug)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// An earlier assistant turn's calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize, Clone, Debug)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl Message {
    /// The message's text; parts other than text are refused.
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(self
                .tool_calls
                .as_deref()
                .map(crate::tools::call_text)
                .unwrap_or_default()),
            Some(Content::Text(s)) => Ok(s.clone()),
            Some(Content::Parts(parts)) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    (kind, _) => Err(ApiError::unsupported(
                        &format!("messages[{index}].content"),
                        format!("content parts of type {kind:?} are not supported (text only)"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| t.join("")),
        }
    }
}

/// `POST /v1/chat/completions`.
#[derive(Deserialize, Clone, Debug)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
}

/// `prompt`: one text or a list (a choice set per text).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Deserialize, Clone, Debug)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
}

/// OpenAI's `finish_reason` for a generation's end.
pub fn finish_reason(f: &retroformer_llm::FinishReason) -> &'static str {
    use retroformer_llm::FinishReason::*;
    match f {
        MaxTokens | ContextFull => "length",
        Stop(_) | EndOfGeneration => "stop",
        Cancelled | Deadline => "cancelled",
    }
}
