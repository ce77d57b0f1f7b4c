//! A served model's adapters: the store's versions, loaded once each, and the server's active
//! adapter with a generation that every change bumps (compare-and-swap, as mistral.rs does).
//!
//! A request resolves its adapter once, when it starts, to a [`Resolved`] that holds the
//! loaded handle: activating another adapter meanwhile does not touch a request in flight.
//! Store ids are content hashes and each id is loaded once, so a session's KV cache, keyed by
//! the handle and the scale, is never reused across different adapter contents.

use std::collections::BTreeMap;
use std::sync::Mutex;

use retroformer::adapters::{AdapterManifest, AdapterStore};
use retroformer_llm::{AdapterHandle, LanguageModel};

use crate::error::ApiError;

/// What a request's `adapter` field names.
pub const ACTIVE: &str = "active";
/// The base model without an adapter.
pub const BASE: &str = "base";

/// An adapter a request runs with, fixed when it starts.
#[derive(Clone)]
pub struct Resolved {
    /// The store id (the first 16 hex digits of the file's sha256).
    pub id: String,
    pub handle: AdapterHandle,
    pub scale: f32,
}

impl Resolved {
    /// The key a session's cache is valid for.
    pub fn key(&self) -> (u64, u32) {
        (self.handle.id, self.scale.to_bits())
    }
}

/// The active adapter and its generation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Active {
    pub id: Option<String>,
    pub generation: u64,
}

/// A model's adapter store as the server sees it.
pub struct Adapters {
    store: Option<AdapterStore>,
    scale: f32,
    loaded: Mutex<BTreeMap<String, AdapterHandle>>,
    active: Mutex<Active>,
}

impl Adapters {
    /// `store`'s adapters at `scale`; the active one starts as the store's (none without a
    /// store).
    pub fn new(store: Option<AdapterStore>, scale: f32) -> Result<Self, String> {
        let id = match &store {
            Some(s) => s.active().map_err(|e| e.to_string())?.map(|m| m.id),
            None => None,
        };
        Ok(Self {
            store,
            scale,
            loaded: Mutex::new(BTreeMap::new()),
            active: Mutex::new(Active { id, generation: 0 }),
        })
    }

    /// The store's versions (empty without a store).
    pub fn list(&self) -> Result<Vec<AdapterManifest>, ApiError> {
        match &self.store {
            Some(s) => s.list().map_err(|e| ApiError::internal(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    pub fn active(&self) -> Active {
        crate::lock(&self.active).clone()
    }

    /// Makes `id` (or no adapter) active if the generation is still `expected` (any, when
    /// `None`); loads it first so that a bad file is refused before it becomes active.
    pub fn activate(
        &self,
        model: &dyn LanguageModel,
        id: Option<&str>,
        expected: Option<u64>,
    ) -> Result<Active, ApiError> {
        if let Some(id) = id {
            self.load(model, id)?;
        }
        let mut a = crate::lock(&self.active);
        if let Some(e) = expected.filter(|&e| e != a.generation) {
            return Err(ApiError::conflict(format!(
                "expected_generation {e} is stale: the active adapter is at generation {}",
                a.generation
            )));
        }
        a.id = id.map(str::to_string);
        a.generation += 1;
        Ok(a.clone())
    }

    /// The adapter a request's `adapter` field names: `None`/`"base"` is the base model,
    /// `"active"` the active adapter (the base when none is), else a store id.
    pub fn resolve(
        &self,
        model: &dyn LanguageModel,
        name: Option<&str>,
    ) -> Result<Option<Resolved>, ApiError> {
        let id = match name {
            None | Some(BASE) => return Ok(None),
            Some(ACTIVE) => match self.active().id {
                Some(id) => id,
                None => return Ok(None),
            },
            Some(id) => id.to_string(),
        };
        let handle = self.load(model, &id)?;
        Ok(Some(Resolved {
            id,
            handle,
            scale: self.scale,
        }))
    }

    /// The loaded handle of store version `id`, loading (and verifying) it the first time.
    fn load(&self, model: &dyn LanguageModel, id: &str) -> Result<AdapterHandle, ApiError> {
        if let Some(h) = crate::lock(&self.loaded).get(id) {
            return Ok(h.clone());
        }
        let not_found = || {
            ApiError::not_found(
                "adapter",
                "adapter_not_found",
                format!("adapter {id:?} is not in this model's adapter store (GET /v1/adapters lists them)"),
            )
        };
        let store = self.store.as_ref().ok_or_else(not_found)?;
        if !store
            .list()
            .map_err(|e| ApiError::internal(e.to_string()))?
            .iter()
            .any(|m| m.id == id)
        {
            return Err(not_found());
        }
        let path = store
            .verified_adapter(id)
            .map_err(|e| ApiError::internal(format!("adapter {id}: {e}")))?;
        let handle = model
            .load_adapter(&path)
            .map_err(|e| ApiError::internal(format!("adapter {id}: {e}")))?;
        // Two requests may load the same id at once: keep the first handle, so one id has
        // one handle (and one cache key) for the server's life.
        let mut loaded = crate::lock(&self.loaded);
        Ok(loaded.entry(id.to_string()).or_insert(handle).clone())
    }
}
