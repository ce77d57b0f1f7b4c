//! The load probe: a hook through which a file is loaded first in a child process, so that what
//! the validators cannot rule out (an abort or a fault inside llama.cpp) takes down the child and
//! not this process. The hook is process-wide and installed once by the binary (`retroformer`
//! installs one that re-runs itself); without one, files go to llama.cpp after the validators
//! only, which is what a library embedding us gets unless it installs its own.

use std::path::Path;
use std::sync::OnceLock;

use retroformer_llm::target::TargetProfile;
use retroformer_llm::LlmError;

/// Loads a model (and an adapter on it) somewhere this process survives, and says whether that
/// worked.
pub trait LoadProbe: Send + Sync {
    /// `Ok` when `model` (with `adapter` applied) loaded and decoded under `profile`; otherwise
    /// what went wrong, in words naming the signal or exit.
    fn check(
        &self,
        model: &Path,
        adapter: Option<&Path>,
        profile: &TargetProfile,
    ) -> Result<(), String>;
}

static PROBE: OnceLock<Box<dyn LoadProbe>> = OnceLock::new();

/// Installs the process's load probe; `false` when one was installed already (the first stays).
pub fn install_probe(probe: Box<dyn LoadProbe>) -> bool {
    PROBE.set(probe).is_ok()
}

/// Runs the installed probe on `model` (and `adapter`); `Ok` when none is installed.
pub fn probe(
    model: &Path,
    adapter: Option<&Path>,
    profile: &TargetProfile,
) -> Result<(), LlmError> {
    probe_shown(model, adapter, profile, adapter.unwrap_or(model))
}

/// [`probe`], a refusal naming `shown` (the file as the user gave it, when it is read through
/// a pinned path).
pub(crate) fn probe_shown(
    model: &Path,
    adapter: Option<&Path>,
    profile: &TargetProfile,
    shown: &Path,
) -> Result<(), LlmError> {
    let Some(p) = PROBE.get() else {
        return Ok(());
    };
    p.check(model, adapter, profile)
        .map_err(|reason| LlmError::Refused {
            path: shown.display().to_string(),
            reason,
        })
}
