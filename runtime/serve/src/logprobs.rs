//! What a choice says about its tokens: OpenAI's `logprobs` (chat's `content` list, the legacy
//! completions' parallel lists) and the `return_token_ids` extension (as vLLM's: the prompt's
//! and the completion's token ids, so that an RL client never re-tokenises).
//!
//! The log-probabilities are the model's raw distribution (the logits' softmax, before
//! temperature, top-p and grammar). `logprobs` covers the tokens that make up the returned
//! text; `token_ids` lists every token sampled, including an end-of-generation token and a
//! stop string's tokens, which the text leaves out.

use std::borrow::Cow;

use retroformer_llm::{Generation, SampledToken, TokenLogprob, MAX_TOP_LOGPROBS};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::api::Sampling;
use crate::error::ApiError;

/// The most log-probabilities one request may ask for: its completions x `max_tokens` x
/// (alternatives + the sampled token). Each takes ~64 bytes in the generation and ~64 in the
/// serialised reply (more while the reply's buffer doubles), and a whole reply is built before
/// it is sent: this keeps one request's to ~100 MB, where the other limits alone allowed
/// 68 x 4096 x 21 (~1 GB). Up to 6 completions of 4096 tokens with 20 alternatives fit, and
/// any request that asks for the sampled tokens' logprobs alone.
pub const MAX_LOGPROB_ENTRIES: u64 = 1 << 19;

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

    /// Refuses logprobs for `completions` of up to `max_tokens` each (`given` by the request,
    /// else the server's cap) beyond [`MAX_LOGPROB_ENTRIES`], naming the field that asked
    /// (`chat`: `top_logprobs` when it asked for alternatives, else `logprobs`).
    pub fn check_budget(
        &self,
        completions: usize,
        max_tokens: u32,
        given: bool,
        chat: bool,
    ) -> Result<(), ApiError> {
        let Some(top) = self.logprobs else {
            return Ok(());
        };
        let entries = (completions as u64)
            .saturating_mul(u64::from(max_tokens))
            .saturating_mul(u64::from(top) + 1);
        if entries <= MAX_LOGPROB_ENTRIES {
            return Ok(());
        }
        let field = if chat && top > 0 {
            "top_logprobs"
        } else {
            "logprobs"
        };
        let cap = if given {
            ""
        } else {
            " (the server's cap: the request set none)"
        };
        Err(ApiError::invalid(
            field,
            format!(
                "{completions} completions x max_tokens {max_tokens}{cap} x ({top} alternatives \
                 + 1) = {entries} logprobs; this server returns at most {MAX_LOGPROB_ENTRIES} a \
                 request: lower max_tokens, n, the prompts or {field}"
            ),
        ))
    }

    /// `choice` (a `g`'s JSON) as sent, with the logprobs and token ids asked for.
    pub fn sent<'g>(&self, mut choice: Value, g: &'g Generation, chat: bool) -> Sent<'g> {
        if self.logprobs.is_some() {
            if let Some(c) = choice.as_object_mut() {
                c.remove("logprobs");
            }
        }
        let asked = self.logprobs.is_some() || self.token_ids;
        Sent {
            fields: choice,
            tokens: asked.then_some(Tokens {
                wanted: *self,
                g,
                chat,
            }),
        }
    }
}

/// A choice as sent: its JSON fields, then what it says about its tokens, serialised
/// straight from the generation. As a `serde_json::Value` tree a logprob took ~1.7 KB (chat's
/// shape, 20 alternatives, a counting allocator); serialised, ~64 bytes.
#[derive(Serialize)]
pub struct Sent<'g> {
    #[serde(flatten)]
    fields: Value,
    #[serde(flatten)]
    tokens: Option<Tokens<'g>>,
}

impl Sent<'_> {
    /// A choice that shows nothing of its tokens (a streamed piece).
    pub fn plain(fields: Value) -> Self {
        Self {
            fields,
            tokens: None,
        }
    }
}

/// The `logprobs`, `prompt_token_ids` and `token_ids` fields of a choice of `g`.
pub struct Tokens<'g> {
    wanted: Wanted,
    g: &'g Generation,
    chat: bool,
}

impl Serialize for Tokens<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if self.wanted.logprobs.is_some() {
            let shown = shown(&self.g.tokens, &self.g.text);
            if self.chat {
                m.serialize_entry("logprobs", &ChatLogprobs(shown))?;
            } else {
                m.serialize_entry("logprobs", &TextLists(shown))?;
            }
        }
        if self.wanted.token_ids {
            m.serialize_entry("prompt_token_ids", &self.g.prompt_ids)?;
            let ids = each(&self.g.tokens, |t| t.id);
            m.serialize_entry("token_ids", &ids)?;
        }
        m.end()
    }
}

/// A list serialised from a slice, an item at a time, through a function.
struct Each<'a, T, F>(&'a [T], F);

/// [`Each`], with the closure's types inferred from the bound.
fn each<'a, T, R: Serialize, F: Fn(&'a T) -> R>(items: &'a [T], f: F) -> Each<'a, T, F> {
    Each(items, f)
}

impl<'a, T, R: Serialize, F: Fn(&'a T) -> R> Serialize for Each<'a, T, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
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

fn piece(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

// Logprobs are written as f64s widened from the model's f32s, as the `Value` code wrote
// them: a client reads the same numbers as before (-0.10000000149011612, not -0.1).

/// Bytes as OpenAI sends them: a list of numbers.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0)
    }
}

/// Chat's shape: `{"content": [a token each], "refusal": null}`.
struct ChatLogprobs<'a>(&'a [SampledToken]);

impl Serialize for ChatLogprobs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("content", &each(self.0, ChatToken))?;
        m.serialize_entry("refusal", &())?;
        m.end()
    }
}

/// A token with its alternatives, each `{"token", "logprob", "bytes"}`.
struct ChatToken<'a>(&'a SampledToken);

impl Serialize for ChatToken<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = s.serialize_map(Some(4))?;
        token_fields(&mut m, &t.bytes, t.logprob)?;
        m.serialize_entry("top_logprobs", &each(&t.top, Alternative))?;
        m.end()
    }
}

struct Alternative<'a>(&'a TokenLogprob);

impl Serialize for Alternative<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        token_fields(&mut m, &self.0.bytes, Some(self.0.logprob))?;
        m.end()
    }
}

/// What a token and an alternative both say: its text, logprob and bytes.
fn token_fields<M: SerializeMap>(
    m: &mut M,
    bytes: &[u8],
    logprob: Option<f32>,
) -> Result<(), M::Error> {
    m.serialize_entry("token", &piece(bytes))?;
    m.serialize_entry("logprob", &logprob.map(f64::from))?;
    m.serialize_entry("bytes", &Bytes(bytes))
}

/// The legacy completions' shape: parallel lists of tokens, their logprobs, their
/// alternatives (a token-to-logprob map each) and their offsets in the text.
struct TextLists<'a>(&'a [SampledToken]);

impl Serialize for TextLists<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tokens = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("tokens", &each(tokens, |t| piece(&t.bytes)))?;
        m.serialize_entry(
            "token_logprobs",
            &each(tokens, |t| t.logprob.map(f64::from)),
        )?;
        m.serialize_entry("top_logprobs", &each(tokens, |t| TopMap(&t.top)))?;
        // A number a token: small beside the rest, so collected rather than streamed.
        let offsets: Vec<usize> = tokens
            .iter()
            .scan(0, |offset, t| {
                let at = *offset;
                *offset += t.bytes.len();
                Some(at)
            })
            .collect();
        m.serialize_entry("text_offset", &offsets)?;
        m.end()
    }
}

/// A token's alternatives as a map from text to logprob, most likely first. Two alternatives
/// with the same text (pieces of a character, both shown as U+FFFD) keep the likelier.
struct TopMap<'a>(&'a [TokenLogprob]);

impl Serialize for TopMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut seen: Vec<Cow<'_, str>> = Vec::with_capacity(self.0.len());
        for a in self.0 {
            let key = piece(&a.bytes);
            if !seen.contains(&key) {
                m.serialize_entry(&key, &f64::from(a.logprob))?;
                seen.push(key);
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn logprobs_are_bounded_per_request_by_completions_tokens_and_alternatives() {
        let top20 = Wanted {
            logprobs: Some(20),
            token_ids: false,
        };
        assert!(top20.check_budget(6, 4096, true, true).is_ok());
        let e = top20.check_budget(7, 4096, true, true).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "top_logprobs");
        let message = |e: &ApiError| e.body()["error"]["message"].as_str().unwrap().to_string();
        assert!(!message(&e).contains("server's cap"), "{e:?}");
        let e = top20.check_budget(1, 32768, false, true).unwrap_err();
        assert!(message(&e).contains("the server's cap"), "{e:?}");
        let e = top20.check_budget(68, 4096, true, false).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "logprobs");
        let sampled_only = Wanted {
            logprobs: Some(0),
            ..top20
        };
        assert!(sampled_only.check_budget(128, 4096, true, true).is_ok());
        let e = sampled_only
            .check_budget(129, 4096, true, true)
            .unwrap_err();
        assert_eq!(e.body()["error"]["param"], "logprobs");
        assert!(Wanted::default()
            .check_budget(usize::MAX, u32::MAX, true, true)
            .is_ok());
    }

    #[test]
    fn a_choice_is_sent_in_openais_shape_with_only_what_was_asked() {
        let mut hi = token("Hi", -0.1);
        // Two pieces of one character both read as U+FFFD: the likelier is kept.
        hi.top = [(b"\xe2".to_vec(), -0.5f32), (b"\xe2\x82".to_vec(), -0.9)]
            .into_iter()
            .map(|(bytes, logprob)| TokenLogprob {
                id: 7,
                bytes,
                logprob,
            })
            .collect();
        let g = Generation {
            text: "Hi".into(),
            finish: retroformer_llm::FinishReason::EndOfGeneration,
            stats: Default::default(),
            prompt_ids: vec![1, 2],
            tokens: vec![hi, token("", -0.2)],
        };
        let choice = || json!({"index": 0, "logprobs": null, "text": "Hi"});
        let sent = |w: Wanted, chat| serde_json::to_value(w.sent(choice(), &g, chat)).unwrap();
        let both = Wanted {
            logprobs: Some(2),
            token_ids: true,
        };
        let chat = sent(both, true);
        assert_eq!(chat["index"], 0);
        assert_eq!(chat["logprobs"]["refusal"], Value::Null);
        let t = &chat["logprobs"]["content"];
        assert_eq!(t.as_array().unwrap().len(), 1, "the end token is not shown");
        assert_eq!(t[0]["token"], "Hi");
        assert!((t[0]["logprob"].as_f64().unwrap() + 0.1).abs() < 1e-6);
        assert_eq!(t[0]["bytes"], json!([72, 105]));
        assert_eq!(t[0]["top_logprobs"][1]["bytes"], json!([0xe2, 0x82]));
        assert_eq!(chat["prompt_token_ids"], json!([1, 2]));
        assert_eq!(chat["token_ids"], json!([2, 0]));
        let text = sent(both, false);
        let top = text["logprobs"]["top_logprobs"][0].as_object().unwrap();
        assert_eq!(top.len(), 1);
        assert!((top["\u{fffd}"].as_f64().unwrap() + 0.5).abs() < 1e-6);
        let none = sent(Wanted::default(), true);
        assert_eq!(none, choice(), "nothing asked, nothing added");
        let text = serde_json::to_string(&both.sent(choice(), &g, true)).unwrap();
        assert_eq!(text.matches("\"logprobs\"").count(), 1, "{text}");
        assert!(
            text.contains("-0.10000000149011612"),
            "the f32 widened, as before: {text}"
        );
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
        let v = serde_json::to_value(TextLists(&[token("a", -0.5), token("bc", -1.0)])).unwrap();
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
