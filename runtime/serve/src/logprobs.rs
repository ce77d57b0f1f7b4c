//! What a choice says about its tokens: OpenAI's `logprobs` (chat's `content` list, the legacy
//! completions' parallel lists) and the `return_token_ids` extension (as vLLM's: the prompt's
//! and the completion's token ids, so that an RL client never re-tokenises).
//!
//! The log-probabilities are the model's raw distribution (the logits' softmax, before
//! temperature, top-p and grammar). `logprobs` covers the tokens that make up the returned
//! text; `token_ids` lists every token sampled, including an end-of-generation token and a
//! stop string's tokens, which the text leaves out.

use retroformer_llm::{Generation, SampledToken, TokenLogprob, MAX_TOP_LOGPROBS};
use serde_json::{json, Map, Value};

use crate::api::Sampling;
use crate::error::ApiError;

/// What a request asked to see of its tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Wanted {
    /// Alternatives per token, when logprobs are asked for.
    pub logprobs: Option<u32>,
    /// The prompt's and the completion's token ids.
    pub token_ids: bool,
}

impl Wanted {
    /// Reads chat's `logprobs: bool` with `top_logprobs: 0-20`, or the completions'
    /// `logprobs: 0-20`, and `return_token_ids`.
    pub fn of(s: &Sampling, chat: bool) -> Result<Self, ApiError> {
        let logprobs = if chat {
            chat_logprobs(s)?
        } else {
            text_logprobs(s)?
        };
        Ok(Self {
            logprobs,
            token_ids: s.return_token_ids,
        })
    }

    /// Adds what was asked for to a `choice` of `g`.
    pub fn add(&self, choice: &mut Value, g: &Generation, text: &str, chat: bool) {
        let Some(c) = choice.as_object_mut() else {
            return;
        };
        if self.logprobs.is_some() {
            let shown = shown(&g.tokens, text);
            let v = if chat {
                json!({"content": shown.iter().map(chat_token).collect::<Vec<_>>(), "refusal": null})
            } else {
                text_lists(shown)
            };
            c.insert("logprobs".into(), v);
        }
        if self.token_ids {
            c.insert("prompt_token_ids".into(), json!(g.prompt_ids));
            let ids: Vec<i32> = g.tokens.iter().map(|t| t.id).collect();
            c.insert("token_ids".into(), json!(ids));
        }
    }
}

fn chat_logprobs(s: &Sampling) -> Result<Option<u32>, ApiError> {
    let on = match &s.logprobs {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "logprobs",
                "logprobs must be true or false in a chat completion",
            ))
        }
    };
    let top = match &s.top_logprobs {
        None | Some(Value::Null) => None,
        Some(v) => Some(count(v, "top_logprobs")?),
    };
    match (on, top) {
        (false, Some(_)) => Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs logprobs set to true",
        )),
        (false, None) => Ok(None),
        (true, top) => Ok(Some(top.unwrap_or(0))),
    }
}

fn text_logprobs(s: &Sampling) -> Result<Option<u32>, ApiError> {
    if s.top_logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs is a chat completion field; a completion takes logprobs: N",
        ));
    }
    match &s.logprobs {
        None | Some(Value::Null) => Ok(None),
        Some(v) => count(v, "logprobs").map(Some),
    }
}

/// An integer from 0 to [`MAX_TOP_LOGPROBS`].
fn count(v: &Value, field: &str) -> Result<u32, ApiError> {
    v.as_u64()
        .filter(|&n| n <= u64::from(MAX_TOP_LOGPROBS))
        .map(|n| n as u32)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{field} must be an integer from 0 to {MAX_TOP_LOGPROBS}; got {v}"),
            )
        })
}

/// The tokens that make up `text`: those that start within it.
fn shown<'a>(tokens: &'a [SampledToken], text: &str) -> &'a [SampledToken] {
    let mut offset = 0;
    let n = tokens
        .iter()
        .take_while(|t| {
            let starts_inside = offset < text.len();
            offset += t.bytes.len();
            starts_inside
        })
        .count();
    &tokens[..n]
}

fn piece(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn alternative(t: &TokenLogprob) -> Value {
    json!({"token": piece(&t.bytes), "logprob": t.logprob, "bytes": t.bytes})
}

fn chat_token(t: &SampledToken) -> Value {
    json!({"token": piece(&t.bytes), "logprob": t.logprob, "bytes": t.bytes,
        "top_logprobs": t.top.iter().map(alternative).collect::<Vec<_>>()})
}

/// The legacy completions' shape: parallel lists of tokens, their logprobs, their
/// alternatives (a token-to-logprob map each) and their offsets in the text.
fn text_lists(tokens: &[SampledToken]) -> Value {
    let mut offset = 0;
    let offsets: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let at = offset;
            offset += t.bytes.len();
            at
        })
        .collect();
    let top: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let m: Map<String, Value> = t
                .top
                .iter()
                .map(|a| (piece(&a.bytes), json!(a.logprob)))
                .collect();
            Value::Object(m)
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| piece(&t.bytes)).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str, logprob: f32) -> SampledToken {
        SampledToken {
            id: text.len() as i32,
            bytes: text.as_bytes().to_vec(),
            logprob: Some(logprob),
            top: vec![TokenLogprob {
                id: 1,
                bytes: text.as_bytes().to_vec(),
                logprob,
            }],
        }
    }

    #[test]
    fn the_tokens_shown_are_those_that_start_inside_the_text() {
        // "Hi there" then a stop string "\n\n" and an end-of-generation token.
        let t = [
            token("Hi", -0.1),
            token(" there", -0.2),
            token("\n\n", -0.3),
            token("", -0.4),
        ];
        assert_eq!(shown(&t, "Hi there").len(), 2);
        assert_eq!(shown(&t, "Hi th").len(), 2, "a token cut by the text's end");
        assert!(shown(&t, "").is_empty());
    }

    #[test]
    fn completions_logprobs_are_parallel_lists_with_offsets() {
        let v = text_lists(&[token("a", -0.5), token("bc", -1.0)]);
        assert_eq!(v["tokens"], json!(["a", "bc"]));
        assert_eq!(v["token_logprobs"], json!([-0.5, -1.0]));
        assert_eq!(v["text_offset"], json!([0, 1]));
        assert_eq!(v["top_logprobs"][1]["bc"], json!(-1.0));
    }

    #[test]
    fn chat_asks_with_a_bool_and_a_count_and_completions_with_a_count() {
        let s = |l: Value, t: Value| Sampling {
            logprobs: Some(l),
            top_logprobs: Some(t),
            ..Sampling::default()
        };
        let chat = |x: &Sampling| Wanted::of(x, true).map(|w| w.logprobs);
        let text = |x: &Sampling| Wanted::of(x, false).map(|w| w.logprobs);
        assert_eq!(chat(&s(json!(true), json!(3))).unwrap(), Some(3));
        assert_eq!(chat(&s(json!(true), Value::Null)).unwrap(), Some(0));
        assert_eq!(chat(&s(json!(false), Value::Null)).unwrap(), None);
        for (bad, field) in [
            (s(json!(false), json!(2)), "top_logprobs"),
            (s(json!(true), json!(21)), "top_logprobs"),
            (s(json!(3), Value::Null), "logprobs"),
        ] {
            let e = chat(&bad).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{e:?}");
        }
        assert_eq!(text(&s(json!(5), Value::Null)).unwrap(), Some(5));
        assert_eq!(
            text(&s(json!(true), Value::Null))
                .unwrap_err()
                .param
                .as_deref(),
            Some("logprobs")
        );
        assert_eq!(
            text(&s(json!(1), json!(1))).unwrap_err().param.as_deref(),
            Some("top_logprobs")
        );
    }
}
