//! Training data: the JSONL files the runtime writes, read into prompt/response pairs and
//! tokenised by llama.cpp's tokenizer (the runtime's), so that training sees the tokens that
//! inference sees.
//!
//! One line is one example. Four shapes are accepted and told apart by their fields:
//!
//! - **generic**: `{"prompt": str, "response": str}` with optional `"reward"` (default 1),
//!   `"weight"` (default 1) and `"parse_special"` (default false);
//! - **Retroformer rating record** (`records.jsonl` of `eval`): `{"prompt": x, "reflection": y,
//!   "rating": G_{i+1} - G_i, ...}`: the response is `" " + y + "\n\n"`, as the runtime's
//!   reflector generates it (a space after `Reflection:`, stopping at a blank line), and the
//!   reward is the rating;
//! - **chat** (a RISE sample of `dataset rise`, or a rating record of a chat reflection, as
//!   HumanEval's): `{"messages": [...], "reward": r, "weight": w, ...}`: the prompt is the
//!   chat template applied to every message but the last, with the assistant prefix; the
//!   response is the rest of the templated conversation (the last assistant turn and its
//!   end-of-turn marker). The reward is `reward`, else `rating`, else 1. `messages` wins over
//!   `prompt`, whose text is in the generating model's template. A RISE sample that carries
//!   its turn's token ids (`tokens`, the server's capture) is trained on those ids when they
//!   belong to the base model ([`keep_ids_of`]): no re-tokenisation;
//! - **segments** (a multi-step episode, as the household's agent saw and wrote it):
//!   `{"segments": [{"text": str, "loss": bool}, ...]}` with optional `"reward"`, `"weight"` and
//!   `"parse_special"`: the text is the segments in order, each tokenised on its own (the agent
//!   appends them one by one), and the loss falls on the `"loss": true` segments only (the
//!   agent's actions, not the observations between them). The first segment is the prompt and
//!   carries no loss. One episode is one example instead of one example an action, each
//!   re-reading the whole history.

use std::path::Path;

use retroformer_core::records::{RatingRecord, RiseSample, Segment, TurnTokens};
use retroformer_llm::{ChatMessage, LanguageModel};
use serde::Deserialize;

use crate::TrainerError;

/// One example before tokenisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Text the model conditions on.
    pub prompt: String,
    /// Text the model is trained to produce (or scored on).
    pub response: String,
    /// Reward of the response (a rating, a RISE reward, or 1).
    pub reward: f64,
    /// Sample weight (RISE's exp(r / tau), or 1).
    pub weight: f64,
    /// Parse special-token text in the prompt (chat-templated examples).
    pub parse_special: bool,
    /// The token ids the model saw and sampled, when the record carries them.
    pub ids: Option<TurnTokens>,
    /// A segments example's text in order, each with whether the loss falls on it; empty for
    /// the other shapes (`prompt` then `response`, the loss on all of the response).
    pub segments: Vec<Segment>,
    /// Its 1-based line in the file it was read from (0 when not read from a file), so that
    /// an error found later, when it is tokenised, names it.
    pub line: usize,
}

/// A segments example as written (an [`EpisodeSample`](retroformer_core::records::EpisodeSample)
/// or a hand-written line, which may set `parse_special`).
#[derive(Deserialize)]
struct Segments {
    segments: Vec<Segment>,
    reward: Option<f64>,
    weight: Option<f64>,
    parse_special: Option<bool>,
}

/// The trainer's own shape: a prompt and the response to learn.
#[derive(Deserialize)]
struct PromptResponse {
    prompt: String,
    response: String,
    reward: Option<f64>,
    weight: Option<f64>,
    parse_special: Option<bool>,
}

/// The most malformed lines one error names: a reader goes on past a bad line, so that a
/// file's faults are found in one pass (the fleet sets aside each one's segment at once).
pub const MAX_BAD_LINES: usize = 100;

/// The error for the malformed `lines` of `path` (1-based line, reason; not empty): one is a
/// [`TrainerError::Data`], more a [`TrainerError::DataLines`].
fn bad_lines(path: &Path, mut lines: Vec<(usize, String)>) -> TrainerError {
    let path = path.display().to_string();
    // One line a fault, so that a reader of the message (the fleet) can tell them apart.
    for (_, reason) in &mut lines {
        *reason = reason.replace(['\r', '\n'], " ");
    }
    match lines.len() {
        1 => {
            let (line, reason) = lines.remove(0);
            TrainerError::Data { path, line, reason }
        }
        _ => TrainerError::DataLines { path, lines },
    }
}

/// Reads the examples of a JSONL file, naming the line of each malformed one (up to
/// [`MAX_BAD_LINES`]). Chat examples are templated with `model`'s chat template.
pub fn read_examples(path: &Path, model: &dyn LanguageModel) -> Result<Vec<Example>, TrainerError> {
    let file = retroformer_core::fsutil::open_regular(path).map_err(|e| TrainerError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    // Read whole: the examples are kept in memory anyway.
    let text = std::io::read_to_string(file).map_err(|e| TrainerError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let parsed = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let ex = example(line, Some(model)).and_then(checked);
            ex.map(|ex| Example { line: i + 1, ..ex })
                .map_err(|reason| (i + 1, reason))
        });
    let out = good_or_bad_lines(path, parsed)?;
    if out.is_empty() {
        return Err(TrainerError::Data {
            path: path.display().to_string(),
            line: 0,
            reason: "no examples".into(),
        });
    }
    Ok(out)
}

/// What every example must have: a finite reward and weight (weight >= 0), a response.
fn checked(ex: Example) -> Result<Example, String> {
    if !(ex.reward.is_finite() && ex.weight.is_finite() && ex.weight >= 0.0) {
        return Err("reward and weight must be finite, weight >= 0".into());
    }
    if ex.response.is_empty() {
        return Err("the response is empty".into());
    }
    Ok(ex)
}

/// Checks one JSONL line as [`read_examples`] reads it, without a model: a chat's messages are
/// checked, not templated (its response is then the last message's text). A blank line passes.
/// The fleet's trainer refuses a segment with a bad line before it stores it.
pub fn check_line(line: &str) -> Result<(), String> {
    if line.trim().is_empty() {
        return Ok(());
    }
    let ex = example(line, None).and_then(checked)?;
    // Trained in f32: a weight past its range becomes infinite there.
    if ex.weight > f64::from(f32::MAX) || ex.reward.abs() > f64::from(f32::MAX) {
        return Err("reward and weight must fit in an f32".into());
    }
    if let Some(ids) = &ex.ids {
        // What the vocabulary is only the model knows; the rest is checked here.
        if ids.prompt.is_empty() || ids.completion.is_empty() {
            return Err("a captured turn has an empty prompt or completion".into());
        }
        if ids.prompt.iter().chain(&ids.completion).any(|&t| t < 0) {
            return Err("a captured turn has a negative token id".into());
        }
    }
    Ok(())
}

/// One line as an example: told apart by its fields, each shape read as its own record type.
/// Without a model, a chat is checked but not templated.
fn example(line: &str, model: Option<&dyn LanguageModel>) -> Result<Example, String> {
    const EXPECTED: &str = "expected {\"prompt\", \"response\"}, a rating record {\"prompt\", \"reflection\", \"rating\"}, a RISE sample {\"messages\"} or {\"segments\"}";
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("{EXPECTED}: {e}"))?;
    let has = |k: &str| v.get(k).is_some();
    let parse = |what: &str| format!("{what}: ");
    if has("messages") && has("rating") {
        // A rating record of a chat reflection (HumanEval) carries its rating.
        let r: RatingRecord =
            serde_json::from_value(v).map_err(|e| parse("rating record") + &e.to_string())?;
        let messages = r.messages.unwrap_or_default();
        chat(&messages, f64::from(r.rating), 1.0, model)
    } else if has("messages") {
        let s: RiseSample =
            serde_json::from_value(v).map_err(|e| parse("RISE sample") + &e.to_string())?;
        let mut ex = chat(&s.messages, s.reward, s.weight, model)?;
        ex.ids = s.tokens;
        Ok(ex)
    } else if has("reflection") {
        if !has("rating") {
            return Err("a rating record needs \"rating\"".into());
        }
        let r: RatingRecord =
            serde_json::from_value(v).map_err(|e| parse("rating record") + &e.to_string())?;
        // As the runtime's reflector generates it: a space after `Reflection:`, stopping at a
        // blank line.
        Ok(Example {
            prompt: r.prompt,
            response: format!(" {}\n\n", r.reflection.trim()),
            reward: f64::from(r.rating),
            weight: 1.0,
            // As the runtime's reflector reads it by default; a chat reflection that reads its
            // template's special tokens (gsm8k-retry) comes with `messages` instead.
            parse_special: false,
            ids: None,
            segments: Vec::new(),
            line: 0,
        })
    } else if has("segments") {
        let s: Segments =
            serde_json::from_value(v).map_err(|e| parse("segments") + &e.to_string())?;
        segments(s)
    } else if has("prompt") && has("response") {
        let g: PromptResponse = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(Example {
            prompt: g.prompt,
            response: g.response,
            reward: g.reward.unwrap_or(1.0),
            weight: g.weight.unwrap_or(1.0),
            parse_special: g.parse_special.unwrap_or(false),
            ids: None,
            segments: Vec::new(),
            line: 0,
        })
    } else {
        Err(EXPECTED.into())
    }
}

/// A chat example: the prompt is `model`'s template of every message but the last, with the
/// assistant prefix; the response is the rest of the templated conversation.
fn chat(
    messages: &[ChatMessage],
    reward: f64,
    weight: f64,
    model: Option<&dyn LanguageModel>,
) -> Result<Example, String> {
    let Some((last, rest)) = messages.split_last() else {
        return Err("\"messages\" is empty".into());
    };
    if last.role != "assistant" {
        return Err(format!(
            "the last message is from '{}'; the target must be an assistant turn",
            last.role
        ));
    }
    let Some(model) = model else {
        return Ok(Example {
            prompt: String::new(),
            response: last.content.clone(),
            reward,
            weight,
            parse_special: true,
            ids: None,
            segments: Vec::new(),
            line: 0,
        });
    };
    let prompt = model.chat_prompt(rest, true).map_err(|e| e.to_string())?;
    let full = model
        .chat_prompt(messages, false)
        .map_err(|e| e.to_string())?;
    let response = match full.strip_prefix(&prompt) {
        Some(r) => r.to_string(),
        None => last.content.clone(),
    };
    Ok(Example {
        prompt,
        response,
        reward,
        weight,
        parse_special: true,
        ids: None,
        segments: Vec::new(),
        line: 0,
    })
}

/// A segments example: the prompt is the first segment, the response the rest.
fn segments(s: Segments) -> Result<Example, String> {
    let Some((first, rest)) = s.segments.split_first() else {
        return Err("\"segments\" is empty".into());
    };
    if first.loss || first.text.is_empty() {
        return Err("the first segment is the prompt: non-empty, with \"loss\": false".into());
    }
    if !rest.iter().any(|g| g.loss && !g.text.is_empty()) {
        return Err("no segment after the first has \"loss\": true and text".into());
    }
    Ok(Example {
        prompt: first.text.clone(),
        response: rest.iter().map(|g| g.text.as_str()).collect(),
        reward: s.reward.unwrap_or(1.0),
        weight: s.weight.unwrap_or(1.0),
        parse_special: s.parse_special.unwrap_or(false),
        ids: None,
        segments: s.segments,
        line: 0,
    })
}

/// Keeps the token ids of the examples whose ids belong to the model with `sha256` and drops
/// the others' (they are then tokenised from their text); returns how many were dropped.
pub fn keep_ids_of(examples: &mut [Example], sha256: &str) -> usize {
    let mut dropped = 0;
    for e in examples {
        if e.ids.as_ref().is_some_and(|t| t.model_sha256 != sha256) {
            e.ids = None;
            dropped += 1;
        }
    }
    dropped
}

/// The examples whose reward is at least `min` (the Retroformer SFT set: reflections whose
/// rating G_{i+1} - G_i reached the threshold). Errors when none is left, naming the threshold.
pub fn with_min_reward(
    examples: Vec<Example>,
    min: f64,
    path: &Path,
) -> Result<Vec<Example>, TrainerError> {
    let n = examples.len();
    let kept: Vec<Example> = examples.into_iter().filter(|e| e.reward >= min).collect();
    if kept.is_empty() {
        return Err(TrainerError::Data {
            path: path.display().to_string(),
            line: 0,
            reason: format!(
                "none of the {n} examples has a reward of at least {min} (--min-reward)"
            ),
        });
    }
    Ok(kept)
}

/// A tokenised example: the loss falls on `tokens[prompt_len..]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    /// Prompt then response tokens.
    pub tokens: Vec<u32>,
    /// Number of prompt tokens.
    pub prompt_len: usize,
    /// Reward.
    pub reward: f64,
    /// Weight.
    pub weight: f64,
    /// Which of the response's tokens (`tokens[prompt_len..]`) carry the loss (a segments
    /// example); `None`: all of them.
    pub mask: Option<Vec<bool>>,
}

impl Tokenized {
    /// Number of response (loss) tokens.
    pub fn response_len(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

/// Tokenises `ex` as the runtime would: the prompt with BOS; the response as the tokens that
/// follow the prompt when the two are tokenised together (falling back to tokenising the
/// response alone when the joint tokenisation changes the prompt's last token). Sequences
/// longer than `max_len` are cut as [`fit`] says.
pub fn tokenize(
    ex: &Example,
    model: &dyn LanguageModel,
    max_len: usize,
) -> Result<Tokenized, TrainerError> {
    if !ex.segments.is_empty() {
        let (tokens, prompt_len, mask) = from_segments(ex, model)?;
        return Ok(fit(tokens, prompt_len, Some(mask), max_len, ex));
    }
    let (tokens, prompt_len) = match &ex.ids {
        Some(ids) => captured(ids, model)?,
        None => from_text(ex, model)?,
    };
    Ok(fit(tokens, prompt_len, None, max_len, ex))
}

/// Every example [`tokenize`]d, the error naming each one that fails by its file and line
/// (`path`: the file they were read from; up to [`MAX_BAD_LINES`]).
pub fn tokenize_all(
    examples: &[Example],
    model: &dyn LanguageModel,
    max_len: usize,
    path: &Path,
) -> Result<Vec<Tokenized>, TrainerError> {
    let tokenized = examples.iter().map(|ex| {
        tokenize(ex, model, max_len).map_err(|e| (ex.line, retroformer_core::text::error_chain(&e)))
    });
    good_or_bad_lines(path, tokenized)
}

/// The items of `path`'s lines, or the error naming each bad line (1-based line, reason): the
/// first [`MAX_BAD_LINES`] of them, so that a file's faults are all found in one pass.
fn good_or_bad_lines<T>(
    path: &Path,
    items: impl Iterator<Item = Result<T, (usize, String)>>,
) -> Result<Vec<T>, TrainerError> {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Ok(t) => out.push(t),
            Err(b) => bad.push(b),
        }
        if bad.len() == MAX_BAD_LINES {
            break;
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad_lines(path, bad))
    }
}

/// A segments example tokenised segment by segment (the first with BOS): the tokens, the
/// prompt's length (the tokens before the first loss token) and the response's loss mask.
fn from_segments(
    ex: &Example,
    model: &dyn LanguageModel,
) -> Result<(Vec<i32>, usize, Vec<bool>), TrainerError> {
    let mut tokens = Vec::new();
    let mut loss = Vec::new();
    for (i, g) in ex.segments.iter().enumerate() {
        let t = model.tokenize(&g.text, i == 0, ex.parse_special)?;
        loss.extend(std::iter::repeat_n(g.loss, t.len()));
        tokens.extend(t);
    }
    let Some(prompt_len) = loss.iter().position(|&l| l).filter(|&p| p > 0) else {
        return Err(TrainerError::Config {
            field: "data".into(),
            reason: "a segments example's loss segments tokenise to nothing".into(),
        });
    };
    let mask = loss.split_off(prompt_len);
    Ok((tokens, prompt_len, mask))
}

/// A captured turn's ids, checked against the vocabulary (the model decodes them).
fn captured(
    ids: &TurnTokens,
    model: &dyn LanguageModel,
) -> Result<(Vec<i32>, usize), TrainerError> {
    let bad = |reason: String| TrainerError::Config {
        field: "data".into(),
        reason,
    };
    if ids.prompt.is_empty() || ids.completion.is_empty() {
        return Err(bad(
            "a captured turn has an empty prompt or completion".into()
        ));
    }
    let tokens = [ids.prompt.as_slice(), ids.completion.as_slice()].concat();
    model
        .detokenize(&tokens)
        .map_err(|e| bad(format!("a captured turn's token ids: {e}")))?;
    Ok((tokens, ids.prompt.len()))
}

/// The example's text tokenised: see [`tokenize`].
fn from_text(ex: &Example, model: &dyn LanguageModel) -> Result<(Vec<i32>, usize), TrainerError> {
    let p = model.tokenize(&ex.prompt, true, ex.parse_special)?;
    let joint = model.tokenize(
        &format!("{}{}", ex.prompt, ex.response),
        true,
        ex.parse_special,
    )?;
    let tokens: Vec<i32> = if joint.starts_with(&p) && joint.len() > p.len() {
        joint
    } else {
        let mut t = p.clone();
        t.extend(model.tokenize(&ex.response, false, ex.parse_special)?);
        t
    };
    if tokens.len() <= p.len() {
        return Err(TrainerError::Config {
            field: "data".into(),
            reason: format!(
                "the response {:?} tokenises to nothing",
                ex.response.chars().take(40).collect::<String>()
            ),
        });
    }
    Ok((tokens, p.len()))
}

/// Fits a sequence into `max_len`. The prompt keeps at least half of it (all of it when it is
/// shorter): a response is learned in its context, not after the prompt's last token alone.
/// A prompt cut keeps its first token (BOS, or the template's start) and its end; a response
/// cut keeps its start (the mask cut with it), so its first token, which carries the loss,
/// always stays.
fn fit(
    mut tokens: Vec<i32>,
    mut prompt_len: usize,
    mut mask: Option<Vec<bool>>,
    max_len: usize,
    ex: &Example,
) -> Tokenized {
    if tokens.len() > max_len {
        let max_len = max_len.max(2);
        let resp_len = tokens.len() - prompt_len;
        let keep_prompt = prompt_len.min((max_len / 2).max(max_len - resp_len.min(max_len)));
        let keep_resp = resp_len.min(max_len - keep_prompt);
        let mut kept = Vec::with_capacity(keep_prompt + keep_resp);
        if keep_prompt < prompt_len && keep_prompt >= 2 {
            kept.push(tokens[0]);
            kept.extend_from_slice(&tokens[prompt_len - (keep_prompt - 1)..prompt_len]);
        } else {
            kept.extend_from_slice(&tokens[prompt_len - keep_prompt..prompt_len]);
        }
        kept.extend_from_slice(&tokens[prompt_len..prompt_len + keep_resp]);
        tokens = kept;
        prompt_len = keep_prompt;
        if let Some(m) = &mut mask {
            m.truncate(keep_resp);
        }
    }
    Tokenized {
        tokens: tokens.iter().map(|&t| t as u32).collect(),
        prompt_len,
        reward: ex.reward,
        weight: ex.weight,
        mask,
    }
}

#[cfg(test)]
mod tests;
