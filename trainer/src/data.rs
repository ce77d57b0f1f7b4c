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
mod tests {
    use super::*;
    use retroformer_llm::scripted::ScriptedModel;

    fn file(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("d.jsonl");
        std::fs::write(&p, lines.join("\n")).unwrap();
        (d, p)
    }

    #[test]
    fn the_three_text_shapes_become_prompt_response_pairs() {
        let (_d, p) = file(&[
            r#"{"prompt": "P", "response": "R", "reward": 0.5}"#,
            "",
            r#"{"task_id": "t", "trial": 0, "prompt": "X\nReflection:", "reflection": " plan ", "rating": 1.0}"#,
            r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "reward": 1.0, "weight": 2.5}"#,
        ]);
        let ex = read_examples(&p, &ScriptedModel::new(Vec::<String>::new())).unwrap();
        assert_eq!(ex.len(), 3);
        assert_eq!(
            (ex[0].prompt.as_str(), ex[0].response.as_str(), ex[0].reward),
            ("P", "R", 0.5)
        );
        assert!(!ex[0].parse_special);
        assert_eq!(ex[1].response, " plan\n\n");
        assert_eq!(ex[1].reward, 1.0);
        assert!(
            !ex[1].parse_special,
            "as the runtime's reflector reads it by default"
        );
        assert_eq!(ex[2].prompt, "<user>Q</user>\n<assistant>");
        assert_eq!(ex[2].response, "A</assistant>\n");
        assert_eq!(ex[2].weight, 2.5);
        assert!(ex[2].parse_special);
    }

    #[test]
    fn a_segments_example_puts_the_loss_on_its_loss_segments_only_even_when_cut_to_fit() {
        let (_d, p) = file(&[
            r#"{"segments": [{"text": "a b c", "loss": false}, {"text": " go x", "loss": true}, {"text": " you see y z", "loss": false}, {"text": " take y", "loss": true}], "weight": 2.0}"#,
        ]);
        let m = ScriptedModel::new(Vec::<String>::new());
        let ex = read_examples(&p, &m).unwrap();
        assert_eq!(ex[0].prompt, "a b c");
        assert_eq!(ex[0].response, " go x you see y z take y");
        assert_eq!(ex[0].weight, 2.0);
        let t = tokenize(&ex[0], &m, 100).unwrap();
        let n = |s: &str| m.tokenize(s, false, false).unwrap().len();
        assert_eq!(t.prompt_len, n("a b c"));
        let mut want = vec![true; n(" go x")];
        want.extend(vec![false; n(" you see y z")]);
        want.extend(vec![true; n(" take y")]);
        assert_eq!(t.mask.as_deref(), Some(&want[..]));
        assert_eq!(t.response_len(), want.len());
        // Cut to fit: the end of the prompt, the response's start, the mask cut with it.
        let short = tokenize(&ex[0], &m, t.prompt_len + 3).unwrap();
        assert_eq!(short.tokens.len(), t.prompt_len + 3);
        let kept = short.response_len();
        assert_eq!(short.mask.as_deref(), Some(&want[..kept]));
        // The other shapes carry no mask.
        let plain = tokenize(
            &example(r#"{"prompt": "P", "response": "R"}"#, Some(&m)).unwrap(),
            &m,
            9,
        );
        assert_eq!(plain.unwrap().mask, None);
    }

    #[test]
    fn a_segments_example_without_a_prompt_or_without_a_loss_segment_is_refused() {
        let m = ScriptedModel::new(Vec::<String>::new());
        for (line, why) in [
            (r#"{"segments": []}"#, "empty"),
            (
                r#"{"segments": [{"text": "a", "loss": true}]}"#,
                "first segment",
            ),
            (
                r#"{"segments": [{"text": "a", "loss": false}, {"text": "b", "loss": false}]}"#,
                "no segment after the first",
            ),
            (r#"{"segments": [{"text": "a"}]}"#, "loss"),
        ] {
            let err = example(line, Some(&m)).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn a_cut_keeps_half_the_length_for_the_prompt_its_first_token_and_the_responses_start() {
        let ex = Example {
            prompt: String::new(),
            response: String::new(),
            reward: 1.0,
            weight: 1.0,
            parse_special: false,
            ids: None,
            segments: Vec::new(),
            line: 0,
        };
        let seq = |p: i32, r: i32| -> Vec<i32> { (0..p).chain(1000..1000 + r).collect() };
        // A long response: the whole short prompt stays, the response's tail goes.
        let t = fit(seq(10, 100), 10, Some(vec![true; 100]), 20, &ex);
        assert_eq!(t.prompt_len, 10);
        assert_eq!(
            t.tokens,
            seq(10, 10).iter().map(|&x| x as u32).collect::<Vec<_>>()
        );
        assert_eq!(t.mask, Some(vec![true; 10]));
        // A long prompt: its first token and its end, then the whole short response.
        let t = fit(seq(100, 5), 100, None, 20, &ex);
        assert_eq!(t.prompt_len, 15);
        let want: Vec<u32> = [0].into_iter().chain(86..100).chain(1000..1005).collect();
        assert_eq!(t.tokens, want);
        // Both long: half each.
        let t = fit(seq(100, 100), 100, None, 20, &ex);
        assert_eq!((t.prompt_len, t.tokens.len()), (10, 20));
        assert_eq!(t.tokens[10], 1000, "the response starts where it did");
    }

    #[test]
    fn a_line_is_checked_without_a_model_as_the_trainer_would_read_it() {
        for ok in [
            "",
            r#"{"prompt": "P", "response": "R"}"#,
            r#"{"prompt": "P", "reflection": "y", "rating": 0.5}"#,
            r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "reward": 1.0, "weight": 1.0}"#,
            r#"{"segments": [{"text": "a", "loss": false}, {"text": "b", "loss": true}]}"#,
        ] {
            assert_eq!(check_line(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            (r#"{"i": 1}"#, "expected"),
            (r#"{"prompt": "P", "response": ""}"#, "empty"),
            (
                r#"{"prompt": "P", "response": "R", "weight": -1}"#,
                "weight",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "q"}], "reward": 1.0, "weight": 1.0}"#,
                "assistant",
            ),
            ("not json", "expected"),
        ] {
            let e = check_line(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_chat_rating_record_is_templated_by_the_trainers_model_and_keeps_its_rating() {
        // As HumanEval writes it: `prompt` in the generating model's template, `messages`
        // template-free, the reflection as the last assistant turn.
        let (_d, p) = file(&[
            r#"{"task_id": "HumanEval/0", "trial": 0, "prompt": "<|im_start|>user\nI<|im_end|>\n<|im_start|>assistant\n", "reflection": "Use +.", "rating": 0.5, "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "I"}, {"role": "assistant", "content": "Use +."}]}"#,
        ]);
        let ex = read_examples(&p, &ScriptedModel::new(Vec::<String>::new())).unwrap();
        assert_eq!(
            ex[0].prompt,
            "<system>S</system>\n<user>I</user>\n<assistant>"
        );
        assert_eq!(ex[0].response, "Use +.</assistant>\n");
        assert_eq!(ex[0].reward, 0.5);
        assert!(ex[0].parse_special);
    }

    #[test]
    fn a_captured_turn_trains_on_its_own_token_ids_only_under_the_model_they_belong_to() {
        let line = r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "reward": 1.0, "tokens": {"model_sha256": "base", "prompt": [5, 6, 7], "completion": [8, 2]}}"#;
        let (_d, p) = file(&[line, line]);
        let model = ScriptedModel::new(Vec::<String>::new());
        let mut ex = read_examples(&p, &model).unwrap();
        assert_eq!(keep_ids_of(&mut ex[..1], "base"), 0);
        assert_eq!(keep_ids_of(&mut ex[1..], "other"), 1);
        let ids = tokenize(&ex[0], &model, 64).unwrap();
        assert_eq!((ids.tokens, ids.prompt_len), (vec![5, 6, 7, 8, 2], 3));
        let text = tokenize(&ex[1], &model, 64).unwrap();
        assert_ne!(
            text.tokens,
            vec![5, 6, 7, 8, 2],
            "another model's ids are not used"
        );
        let cut = tokenize(&ex[0], &model, 3).unwrap();
        assert_eq!((cut.tokens, cut.prompt_len), (vec![7, 8, 2], 1));
    }

    #[test]
    fn an_example_that_fails_to_tokenise_is_named_by_its_file_and_line() {
        // Whitespace tokenises to nothing under the scripted model; the blank line counts.
        let (_d, p) = file(&[
            r#"{"prompt": "P", "response": "R"}"#,
            "",
            r#"{"prompt": "P", "response": " "}"#,
        ]);
        let model = ScriptedModel::new(Vec::<String>::new());
        let ex = read_examples(&p, &model).unwrap();
        assert_eq!((ex[0].line, ex[1].line), (1, 3));
        assert_eq!(tokenize_all(&ex[..1], &model, 64, &p).unwrap().len(), 1);
        let err = tokenize_all(&ex, &model, 64, &p).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:3: ", p.display())), "{err}");
        assert!(err.contains("tokenises to nothing"), "{err}");
    }

    #[test]
    fn every_malformed_line_is_named_in_one_pass_each_on_a_line_of_its_own() {
        let (_d, p) = file(&[
            "not json",
            r#"{"prompt": "P", "response": "R"}"#,
            r#"{"prompt": "P", "response": ""}"#,
            r#"{"prompt": "P", "response": " "}"#,
            r#"{"prompt": "P", "response": " "}"#,
        ]);
        let model = ScriptedModel::new(Vec::<String>::new());
        let err = read_examples(&p, &model).unwrap_err();
        let TrainerError::DataLines { lines, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 3]);
        let text = err.to_string();
        let named: Vec<&str> = text.lines().collect();
        assert_eq!(named.len(), 2, "{text}");
        assert!(
            named[1].starts_with(&format!("{}:3: ", p.display())),
            "{text}"
        );
        // The parsable lines are read; the two that tokenise to nothing are both named.
        std::fs::write(&p, [r#"{"prompt": "P", "response": " "}"#; 3].join("\n")).unwrap();
        let ex = read_examples(&p, &model).unwrap();
        let err = tokenize_all(&ex, &model, 64, &p).unwrap_err();
        assert!(
            matches!(&err, TrainerError::DataLines { lines, .. } if lines.len() == 3),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_of_bad_lines_is_named_up_to_the_cap_and_crlf_lines_read_as_plain_ones() {
        let (_d, p) = file(&vec!["not json"; MAX_BAD_LINES + 50]);
        let model = ScriptedModel::new(Vec::<String>::new());
        let err = read_examples(&p, &model).unwrap_err();
        let TrainerError::DataLines { lines, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(lines.len(), MAX_BAD_LINES);
        assert_eq!(lines.last().map(|l| l.0), Some(MAX_BAD_LINES));
        let line = r#"{"prompt": "P", "response": "R"}"#;
        std::fs::write(&p, format!("{line}\r\n\r\n{line}\r\n")).unwrap();
        let ex = read_examples(&p, &model).unwrap();
        assert_eq!(ex.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn the_sft_set_keeps_the_reflections_rated_at_or_above_the_threshold() {
        let (_d, p) = file(&[
            r#"{"prompt": "x1", "reflection": "y1", "rating": 1.0}"#,
            r#"{"prompt": "x2", "reflection": "y2", "rating": 0.0}"#,
            r#"{"prompt": "x3", "reflection": "y3", "rating": -1.0}"#,
            r#"{"prompt": "x4", "reflection": "y4", "rating": 0.5}"#,
        ]);
        let all = read_examples(&p, &ScriptedModel::new(Vec::<String>::new())).unwrap();
        let kept = with_min_reward(all.clone(), 0.5, &p).unwrap();
        let prompts: Vec<&str> = kept.iter().map(|e| e.prompt.as_str()).collect();
        assert_eq!(prompts, ["x1", "x4"]);
        assert_eq!(with_min_reward(all.clone(), -1.0, &p).unwrap().len(), 4);
        let err = with_min_reward(all, 2.0, &p).unwrap_err().to_string();
        assert!(err.contains("--min-reward"), "{err}");
    }

    #[test]
    fn malformed_lines_are_named_by_line_number() {
        for (line, needle) in [
            (r#"{"prompt": "P"}"#, "expected"),
            (r#"{"prompt": "P", "reflection": "y"}"#, "needs \"rating\""),
            (
                r#"{"messages": [{"role": "user", "content": "Q"}]}"#,
                "assistant turn",
            ),
            (r#"{"prompt": "P", "response": ""}"#, "response is empty"),
            (
                r#"{"prompt": "P", "response": "R", "weight": -1}"#,
                "weight",
            ),
            ("not json", "expected"),
        ] {
            let (_d, p) = file(&[r#"{"prompt": "P", "response": "R"}"#, line]);
            let err = read_examples(&p, &ScriptedModel::new(Vec::<String>::new()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("d.jsonl:2:"), "{err}");
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
