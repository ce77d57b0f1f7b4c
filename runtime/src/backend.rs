//! The one place a language-model backend is picked, and models resolved and loaded.
//!
//! Everything above this crate sees a backend through [`ModelBackend`] and its models through
//! the `LanguageModel`/`Session` traits; the backend (llama.cpp today, feature `llama`) is
//! named here and nowhere else outside its own crate, except by what measures or probes it
//! ([`llama`]).

use std::path::{Path, PathBuf};

use crate::manifest::{home_dir, Manifest, ManifestError, ModelRef};
use retroformer_llm::target::{Backend as DeviceKind, TargetProfile};
use retroformer_llm::{LanguageModel, LlmError};

pub use retroformer_gguf::BasePolicy;
pub use retroformer_llm::DeviceInfo;

/// Why a model could not be resolved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The name is neither a manifest nor a file.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The model could not be fetched into the cache.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// A named model is not in the cache (and this build cannot fetch).
    #[error("model {model} is not installed at {path}; run `retroformer models fetch {model}`")]
    NotInstalled {
        /// The model.
        model: String,
        /// Where it was expected.
        path: String,
    },
    /// The backend refused the file.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// A model file: its path, and its manifest when it was named by one.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The GGUF file.
    pub path: PathBuf,
    /// The manifest it was named by, if any.
    pub manifest: Option<Manifest>,
}

/// Resolves `name` (a manifest name or alias, or a path to a GGUF file) to a file in the cache
/// under `$RETROFORMER_HOME`. A named model that is missing is fetched when `fetch` gives the
/// progress to report to, else it is an error.
pub fn resolve(
    name: &str,
    fetch: Option<&dyn crate::fetch::Progress>,
) -> Result<Resolved, BackendError> {
    match ModelRef::parse(name)? {
        ModelRef::File(path) => Ok(Resolved {
            path,
            manifest: None,
        }),
        ModelRef::Manifest(m) => {
            let home = home_dir();
            let silent = crate::fetch::Silent;
            let verified = crate::fetch::verified(&m, &home, fetch.unwrap_or(&silent))?;
            let path = match (verified, fetch) {
                (Some(p), _) => p,
                (None, Some(progress)) => crate::fetch::fetch(
                    &m,
                    &home,
                    crate::fetch::FetchOptions {
                        force: false,
                        progress,
                    },
                )?,
                (None, None) => {
                    return Err(BackendError::NotInstalled {
                        model: m.name.clone(),
                        path: m.cache_path(&home).display().to_string(),
                    })
                }
            };
            Ok(Resolved {
                path,
                manifest: Some(*m),
            })
        }
    }
}

/// A language-model backend as everything above the device runtime sees it: it lists its
/// devices, loads models behind [`LanguageModel`] and judges adapters. The build picks one
/// ([`active`]); a second backend is another implementation here, and nothing above changes.
pub trait ModelBackend: Send + Sync {
    /// Its name in reports ("llama.cpp").
    fn name(&self) -> &'static str;

    /// Whether this build can run targets of the kind `device` (a profile's `backend`).
    fn compiled_in(&self, device: DeviceKind) -> bool;

    /// The devices it can use, and its CPU feature string.
    fn devices(&self) -> Result<(Vec<DeviceInfo>, String), LlmError>;

    /// Loads `model` with `profile` (and its manifest's chat template, name and verified
    /// sha256), taking the adapters `adapter_base` allows.
    fn load(
        &self,
        model: &Resolved,
        profile: &TargetProfile,
        adapter_base: BasePolicy,
    ) -> Result<Box<dyn LanguageModel>, BackendError>;

    /// The load probe's verdict on `adapter` applied to `model` (on the CPU profile, as the
    /// adapter store checks an adapter before installing it); `Ok` when no probe is installed.
    fn probe_adapter(&self, model: &Path, adapter: &Path) -> Result<(), String>;
}

/// The backend this build runs on.
#[cfg(feature = "llama")]
pub fn active() -> &'static dyn ModelBackend {
    &LlamaCpp
}

/// llama.cpp (feature `llama`; its GPU builds through `vulkan`, `cuda`, `metal`).
#[cfg(feature = "llama")]
struct LlamaCpp;

#[cfg(feature = "llama")]
impl ModelBackend for LlamaCpp {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn compiled_in(&self, device: DeviceKind) -> bool {
        retroformer_llama::compiled_in(device)
    }

    fn devices(&self) -> Result<(Vec<DeviceInfo>, String), LlmError> {
        retroformer_llama::devices()
    }

    fn load(
        &self,
        model: &Resolved,
        profile: &TargetProfile,
        adapter_base: BasePolicy,
    ) -> Result<Box<dyn LanguageModel>, BackendError> {
        Ok(Box::new(llama::load(model, profile, adapter_base)?))
    }

    fn probe_adapter(&self, model: &Path, adapter: &Path) -> Result<(), String> {
        let profile = TargetProfile::load("cpu").map_err(|e| e.to_string())?;
        retroformer_llama::probe(model, Some(adapter), &profile).map_err(|e| match e {
            LlmError::Refused { reason, .. } => reason,
            other => other.to_string(),
        })
    }
}

/// llama.cpp's own types, for what measures or probes that backend itself (the benches, the
/// probe's child); everything else goes through [`ModelBackend`].
#[cfg(feature = "llama")]
pub mod llama {
    use super::{BackendError, BasePolicy, Resolved};
    use retroformer_llm::target::TargetProfile;

    pub use retroformer_llama::{install_probe, report_sigbus, LlamaModel, LoadOptions, LoadProbe};

    /// [`super::ModelBackend::load`], as llama.cpp's model type.
    pub fn load(
        model: &Resolved,
        profile: &TargetProfile,
        adapter_base: BasePolicy,
    ) -> Result<LlamaModel, BackendError> {
        let m = model.manifest.as_ref();
        let opts = LoadOptions {
            profile: profile.clone(),
            chat_template: m.and_then(|m| m.chat_template.override_template.clone()),
            name: m.map(|m| m.name.clone()),
            sha256: m.map(|m| m.sha256.clone()),
            adapter_base,
        };
        Ok(LlamaModel::load(&model.path, opts)?)
    }
}

/// [`resolve`], then the active backend's [`ModelBackend::load`] (adapters must record this
/// model as their base).
#[cfg(feature = "llama")]
pub fn load_named(
    name: &str,
    profile: &TargetProfile,
    fetch: Option<&dyn crate::fetch::Progress>,
) -> Result<Box<dyn LanguageModel>, BackendError> {
    active().load(&resolve(name, fetch)?, profile, BasePolicy::Recorded)
}
