//! Trajectory capture: the chat turns of a `session_id`, kept until `POST /v1/feedback` gives
//! the episode's return, then written as the RISE samples the trainer reads (one per assistant
//! turn, each with the conversation up to that turn and the episode's reward), so that an
//! unmodified OpenAI-client agent produces training data (`retroformer-train rwr --data`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use retroformer_core::records::{RiseSample, TurnTokens, FORMAT_VERSION, LOSS_ON_LAST_ASSISTANT};
use retroformer_llm::ChatMessage;

use crate::error::ApiError;

/// Open episodes kept at most; the oldest is dropped (with a warning) past this.
const MAX_OPEN: usize = 4096;
/// Turns one episode keeps at most.
const MAX_TURNS: usize = 256;

/// One captured turn: the conversation up to the reply, and its token ids when known.
type Turn = (Vec<ChatMessage>, Option<TurnTokens>);

/// Each open episode's turns by session id, and the ids oldest first.
type Open = (BTreeMap<String, Vec<Turn>>, VecDeque<String>);

/// Captured episodes, by session id, waiting for their return.
pub struct Capture {
    dir: PathBuf,
    open: Mutex<Open>,
}

impl Capture {
    /// Episodes are written under `dir`, one file per session id and feedback.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open: Mutex::new((BTreeMap::new(), VecDeque::new())),
        })
    }

    /// One turn of `session`: the request's messages, the model's reply and its token ids.
    pub fn turn(
        &self,
        session: &str,
        mut messages: Vec<ChatMessage>,
        reply: &str,
        tokens: Option<TurnTokens>,
    ) {
        messages.push(ChatMessage::new("assistant", reply));
        let mut guard = crate::lock(&self.open);
        let (episodes, order) = &mut *guard;
        if !episodes.contains_key(session) {
            if episodes.len() >= MAX_OPEN {
                if let Some(old) = order.pop_front() {
                    episodes.remove(&old);
                    tracing::warn!(
                        "capture: dropped session {old:?} (no feedback; {MAX_OPEN} open)"
                    );
                }
            }
            order.push_back(session.to_string());
        }
        let turns = episodes.entry(session.to_string()).or_default();
        if turns.len() < MAX_TURNS {
            turns.push((messages, tokens));
        }
    }

    /// Closes `session` with `reward`: writes its samples and returns the file and their count.
    pub fn feedback(&self, session: &str, reward: f64) -> Result<(PathBuf, usize), ApiError> {
        if !reward.is_finite() {
            return Err(ApiError::invalid(
                "reward",
                "reward must be a finite number",
            ));
        }
        let turns = {
            let mut guard = crate::lock(&self.open);
            let (episodes, order) = &mut *guard;
            order.retain(|s| s != session);
            episodes.remove(session)
        }
        .ok_or_else(|| {
            ApiError::not_found(
                "session_id",
                "session_not_found",
                format!("no captured turns for session {session:?}"),
            )
        })?;
        let samples: Vec<RiseSample> = turns
            .into_iter()
            .enumerate()
            .map(|(turn, (messages, tokens))| RiseSample {
                format_version: FORMAT_VERSION,
                problem_id: session.to_string(),
                turn: turn as u32,
                messages,
                loss_on: LOSS_ON_LAST_ASSISTANT.to_string(),
                reward,
                weight: 1.0,
                tokens,
            })
            .collect();
        let path = self.dir.join(format!(
            "{}-{}.jsonl",
            file_name(session),
            crate::ids::id("ep")
        ));
        let mut text = String::new();
        for s in &samples {
            text.push_str(
                &serde_json::to_string(s).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            text.push('\n');
        }
        retroformer_core::fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
        Ok((path, samples.len()))
    }
}

/// A session id as a safe file name (anything but letters, digits, `-` and `_` becomes `_`).
fn file_name(session: &str) -> String {
    session
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_writes_one_sample_per_turn_with_the_episodes_reward() {
        let dir = tempfile::tempdir().unwrap();
        let c = Capture::new(dir.path()).unwrap();
        c.turn("../s 1", vec![ChatMessage::new("user", "2+2?")], "5", None);
        c.turn(
            "../s 1",
            vec![
                ChatMessage::new("user", "2+2?"),
                ChatMessage::new("assistant", "5"),
                ChatMessage::new("user", "Wrong."),
            ],
            "4",
            Some(TurnTokens {
                model_sha256: "ab".into(),
                prompt: vec![1, 2, 3],
                completion: vec![4, 0],
                logprobs: None,
            }),
        );
        let (path, n) = c.feedback("../s 1", 1.0).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            path.parent().unwrap(),
            dir.path(),
            "the id cannot leave the folder"
        );
        let lines: Vec<RiseSample> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[1].messages.last().unwrap().content, "4");
        assert_eq!((lines[1].turn, lines[1].reward), (1, 1.0));
        assert_eq!(lines[0].tokens, None);
        assert_eq!(lines[1].tokens.as_ref().unwrap().completion, vec![4, 0]);
        assert!(c.feedback("../s 1", 1.0).is_err(), "an episode closes once");
        assert!(c.feedback("other", f64::NAN).is_err());
    }
}
