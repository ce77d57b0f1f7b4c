//! The one place a language-model backend is picked, and models resolved and loaded.
//!
//! Everything above this crate sees models through the `LanguageModel`/`Session` traits; the
//! backend (llama.cpp today, feature `llama`; its GPU builds through `vulkan`, `cuda`, `metal`)
//! is named here and nowhere else outside its own crate.

use std::path::PathBuf;

use crate::manifest::{home_dir, Manifest, ManifestError, ModelRef};
#[cfg(feature = "llama")]
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LlmError;

pub use retroformer_gguf::BasePolicy;
#[cfg(feature = "llama")]
pub use retroformer_llama::{
    compiled_in, devices, install_probe, report_sigbus, DeviceInfo, LoadOptions, LoadProbe,
};

/// The backend's model type.
#[cfg(feature = "llama")]
pub type Model = retroformer_llama::LlamaModel;

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
    #[error("model {model} is not installed at {path}")]
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

/// Loads a resolved model with `profile` (and its manifest's chat template, name and verified
/// sha256); it takes only adapters that record it as their base.
#[cfg(feature = "llama")]
pub fn load(model: &Resolved, profile: &TargetProfile) -> Result<Model, BackendError> {
    load_with(model, profile, BasePolicy::Recorded)
}

/// [`load`], taking the adapters `adapter_base` allows.
#[cfg(feature = "llama")]
pub fn load_with(
    model: &Resolved,
    profile: &TargetProfile,
    adapter_base: BasePolicy,
) -> Result<Model, BackendError> {
    let m = model.manifest.as_ref();
    let opts = retroformer_llama::LoadOptions {
        profile: profile.clone(),
        chat_template: m.and_then(|m| m.chat_template.override_template.clone()),
        name: m.map(|m| m.name.clone()),
        sha256: m.map(|m| m.sha256.clone()),
        adapter_base,
    };
    Ok(Model::load(&model.path, opts)?)
}

/// [`resolve`], then [`load`].
#[cfg(feature = "llama")]
pub fn load_named(
    name: &str,
    profile: &TargetProfile,
    fetch: Option<&dyn crate::fetch::Progress>,
) -> Result<Model, BackendError> {
    load(&resolve(name, fetch)?, profile)
}

/// The installed load probe's verdict on `adapter` applied to `model` (on the CPU profile, as
/// the adapter store checks an adapter before installing it); `Ok` when no probe is installed.
#[cfg(feature = "llama")]
pub fn probe_adapter(model: &std::path::Path, adapter: &std::path::Path) -> Result<(), String> {
    let profile = TargetProfile::load("cpu").map_err(|e| e.to_string())?;
    retroformer_llama::probe(model, Some(adapter), &profile).map_err(|e| match e {
        LlmError::Refused { reason, .. } => reason,
        other => other.to_string(),
    })
}
