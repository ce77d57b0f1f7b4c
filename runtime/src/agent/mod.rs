//! The agent core: what every environment's agent shares, and no environment.
//!
//! [`runner`] runs trials over a task set (results, resume, rating records) and drives an
//! environment's agent through the [`runner::TrialAgent`] trait; [`reflect`] is the reflection
//! slot ([`reflect::Reflector`]) that a frozen or a learned retrospective model fills, with an
//! environment's own prompt; [`Strategy`] says what a new trial is told about earlier ones
//! (Reflexion's four options); [`run_chains`] runs many episodes through one session's
//! continuous batching; [`files`] holds the runs' JSON files.

pub mod files;
pub mod reflect;
pub mod runner;

use retroformer_llm::{GenerateRequest, Generation, LlmError, Session};

/// Runs `chains` chains of requests together through one session's
/// [`Session::generate_stream`] (continuous batching). Chain `k`'s opening request is
/// `next(k, None)`; after each reply, `next(k, Some(reply))` takes it in and gives the chain's
/// next request (`None`: the chain is done). A reply is the request's error when the session
/// refused it (its prompt outgrew the lane): `next` decides whether that ends the chain or,
/// returned, the run. A follow-up extends its chain's prompt, so it continues in the same
/// lane, on its KV. After the first error of `next` no chain gets a follow-up (requests
/// already handed over still run); a session error is returned first, else that error.
pub fn run_chains<E: From<LlmError> + Send>(
    session: &mut dyn Session,
    chains: usize,
    mut next: impl FnMut(usize, Option<Result<Generation, LlmError>>) -> Result<Option<GenerateRequest>, E>
        + Send,
) -> Result<(), E> {
    let mut first = Vec::with_capacity(chains);
    for k in 0..chains {
        if let Some(q) = next(k, None)? {
            first.push((k as u64, q));
        }
    }
    let mut failed: Option<E> = None;
    session.generate_stream(first, &mut |key, g| {
        if failed.is_some() {
            return Vec::new();
        }
        match next(key as usize, Some(g)) {
            Ok(Some(q)) => vec![(key, q)],
            Ok(None) => Vec::new(),
            Err(e) => {
                failed.get_or_insert(e);
                Vec::new()
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// What a trial is told about the previous ones (Reflexion's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Nothing about earlier trials.
    None,
    /// The previous trial's trajectory.
    LastAttempt,
    /// The reflections in memory.
    Reflexion,
    /// The previous trajectory and the newest reflection.
    LastAttemptAndReflexion,
    /// A placebo for Reflexion: reflections are written as for Reflexion, but each task is
    /// shown those written for another task of the same trial (the next failed one, in task
    /// order). Same prompt, same length and style, no information about this task: the
    /// difference between Reflexion and this arm is what a reflection's content is worth.
    Placebo,
}

impl Strategy {
    /// The CLI names.
    pub const NAMES: [&'static str; 5] = [
        "none",
        "last-attempt",
        "reflexion",
        "last-attempt-and-reflexion",
        "placebo",
    ];

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Strategy::None,
            "last-attempt" => Strategy::LastAttempt,
            "reflexion" => Strategy::Reflexion,
            "last-attempt-and-reflexion" => Strategy::LastAttemptAndReflexion,
            "placebo" => Strategy::Placebo,
            _ => return None,
        })
    }

    /// Whether a failed trial should be followed by a reflection.
    pub fn reflects(self) -> bool {
        matches!(
            self,
            Strategy::Reflexion | Strategy::LastAttemptAndReflexion | Strategy::Placebo
        )
    }

    /// Whether the reflections a trial is shown are another task's ([`Strategy::Placebo`]):
    /// they are not rated (a rating would credit a reflection with a task it was not about).
    pub fn is_placebo(self) -> bool {
        self == Strategy::Placebo
    }
}

/// Why an episode could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The LLM failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_from_their_cli_names_and_three_reflect() {
        for name in Strategy::NAMES {
            assert!(Strategy::parse(name).is_some(), "{name}");
        }
        assert_eq!(
            Strategy::parse("last-attempt-and-reflexion"),
            Some(Strategy::LastAttemptAndReflexion)
        );
        assert_eq!(Strategy::parse("Reflexion"), None);
        let reflecting: Vec<&str> = Strategy::NAMES
            .into_iter()
            .filter(|n| Strategy::parse(n).unwrap().reflects())
            .collect();
        assert_eq!(
            reflecting,
            ["reflexion", "last-attempt-and-reflexion", "placebo"]
        );
    }
}
