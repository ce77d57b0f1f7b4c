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
/// Bytes of turns kept by default, all open episodes together (each turn holds the whole
/// conversation so far, so a long one grows quadratically); the oldest episodes are dropped
/// (with a warning) past this. One episode keeps at most an eighth of it; its later turns are
/// not kept (with a warning).
pub const DEFAULT_OPEN_BYTES: usize = 1 << 30;

/// One captured turn: the conversation up to the reply, and its token ids when known.
type Turn = (Vec<ChatMessage>, Option<TurnTokens>);

/// The turns of one open episode and their bytes.
#[derive(Default)]
struct Episode {
    turns: Vec<Turn>,
    bytes: usize,
}

/// Each open episode by session id, the ids oldest first, and their bytes together.
#[derive(Default)]
struct Open {
    episodes: BTreeMap<String, Episode>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Open {
    /// Drops the oldest episode but `keep`; whether one was dropped.
    fn drop_oldest(&mut self, keep: &str, why: &str) -> bool {
        let Some(at) = self.order.iter().position(|s| s != keep) else {
            return false;
        };
        let old = self.order.remove(at).unwrap_or_default();
        if let Some(e) = self.episodes.remove(&old) {
            self.bytes -= e.bytes;
        }
        tracing::warn!("capture: dropped session {old:?} (no feedback; {why})");
        true
    }
}

/// About the memory a turn holds.
fn turn_bytes((messages, tokens): &Turn) -> usize {
    let text: usize = messages
        .iter()
        .map(|m| m.role.len() + m.content.len() + 48)
        .sum();
    let ids = tokens.as_ref().map_or(0, |t| {
        t.model_sha256.len()
            + 4 * (t.prompt.len() + t.completion.len() + t.logprobs.as_ref().map_or(0, Vec::len))
    });
    text + ids
}

/// Captured episodes, by session id, waiting for their return.
pub struct Capture {
    dir: PathBuf,
    open: Mutex<Open>,
    /// Bytes of open episodes kept at most.
    budget: usize,
}

impl Capture {
    /// Episodes are written under `dir`, one file per session id and feedback.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open: Mutex::new(Open::default()),
            budget: DEFAULT_OPEN_BYTES,
        })
    }

    /// Keeps at most `bytes` of open episodes (default [`DEFAULT_OPEN_BYTES`]).
    pub fn with_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
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
        let turn = (messages, tokens);
        let bytes = turn_bytes(&turn);
        let mut open = crate::lock(&self.open);
        if !open.episodes.contains_key(session) {
            if open.episodes.len() >= MAX_OPEN {
                open.drop_oldest(session, &format!("{MAX_OPEN} open"));
            }
            open.order.push_back(session.to_string());
        }
        let share = self.budget / 8;
        let episode = open.episodes.entry(session.to_string()).or_default();
        if episode.turns.len() >= MAX_TURNS || episode.bytes + bytes > share {
            tracing::warn!(
                "capture: session {session:?} keeps no more turns ({MAX_TURNS} turns or \
                 {share} bytes at most)"
            );
            return;
        }
        episode.turns.push(turn);
        episode.bytes += bytes;
        open.bytes += bytes;
        while open.bytes > self.budget {
            if !open.drop_oldest(session, &format!("{} bytes open", self.budget)) {
                break;
            }
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
            let mut open = crate::lock(&self.open);
            open.order.retain(|s| s != session);
            let episode = open.episodes.remove(session);
            open.bytes -= episode.as_ref().map_or(0, |e| e.bytes);
            episode.map(|e| e.turns)
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

    #[test]
    fn open_episodes_past_the_byte_budget_drop_the_oldest_and_a_huge_one_stops_growing() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 8 << 20;
        let c = Capture::new(dir.path()).unwrap().with_budget(budget);
        let big = || vec![ChatMessage::new("user", "x".repeat(budget / 8 / 3))];
        // 16 episodes of two turns, each two-thirds of its share: twice the budget.
        for s in 0..16 {
            c.turn(&format!("s{s}"), big(), "a", None);
            c.turn(&format!("s{s}"), big(), "b", None);
        }
        {
            let open = crate::lock(&c.open);
            assert!(open.bytes <= budget, "{}", open.bytes);
            assert!(!open.episodes.contains_key("s0"), "the oldest went first");
            assert!(open.episodes.contains_key("s15"));
        }
        // A third turn of that size would pass one episode's share: not kept.
        c.turn("s15", big(), "c", None);
        assert_eq!(c.feedback("s15", 1.0).unwrap().1, 2);
        assert!(crate::lock(&c.open).bytes <= budget);
    }
}
