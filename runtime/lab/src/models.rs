//! Where an experiment's models come from.

use retroformer::backend;
use retroformer::fetch::Progress;
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;

use crate::LabError;

/// Models by name, with the settings their sessions get.
pub trait ModelSource {
    /// Loads the model `name` (a manifest name or alias, or a GGUF path).
    fn load(&self, name: &str) -> Result<Box<dyn LanguageModel>, LabError>;
    /// The file `name` names, fetched when missing as [`Self::load`] would (by default
    /// never: a missing model is an error naming the command that fetches it).
    fn resolve(&self, name: &str) -> Result<backend::Resolved, LabError> {
        Ok(backend::resolve(name, None)?)
    }
    /// The hardware profile.
    fn profile(&self) -> &TargetProfile;
    /// Threads of a session (`None`: the profile's).
    fn threads(&self) -> Option<u32>;
}

/// Models through the device runtime's backend, fetched when missing unless `fetch` is `None`.
pub struct BackendSource<'a> {
    /// The hardware profile.
    pub profile: TargetProfile,
    /// Threads of a session (`None`: the profile's).
    pub threads: Option<u32>,
    /// Where a fetch reports its progress; `None`: never fetch.
    pub fetch: Option<&'a dyn Progress>,
}

impl ModelSource for BackendSource<'_> {
    fn load(&self, name: &str) -> Result<Box<dyn LanguageModel>, LabError> {
        let t = std::time::Instant::now();
        let m = backend::load_named(name, &self.profile, self.fetch)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        tracing::info!(model = name, ms, "model loaded");
        Ok(m)
    }

    fn resolve(&self, name: &str) -> Result<backend::Resolved, LabError> {
        Ok(backend::resolve(name, self.fetch)?)
    }

    fn profile(&self) -> &TargetProfile {
        &self.profile
    }

    fn threads(&self) -> Option<u32> {
        self.threads
    }
}
