//! The crate's own state files (the outbox's, a device's followed release, the trainer's):
//! JSON with a `format_version`, written atomically; a file that does not parse or has
//! another version is an error naming it, never silently replaced by an empty state.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::SyncError;

/// The version every state file carries.
pub const FORMAT_VERSION: u32 = 1;

/// Reads `path`; `None` when it does not exist yet.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, SyncError> {
    let bad = |reason: String| SyncError::Record {
        path: path.display().to_string(),
        line: 0,
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SyncError::io(path, e)),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let version = v.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(bad(format!(
            "format_version {version:?} (this build reads {FORMAT_VERSION})"
        )));
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// Writes `value` to `path` atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), SyncError> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serialises");
    retroformer_core::fsutil::write_atomic(path, &bytes).map_err(|e| SyncError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_other_version_state_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert!(load::<serde_json::Value>(&p).unwrap().is_none());
        for text in ["{not json", r#"{"format_version": 2}"#] {
            std::fs::write(&p, text).unwrap();
            let e = load::<serde_json::Value>(&p).unwrap_err().to_string();
            assert!(e.contains("state.json"), "{e}");
        }
        save(&p, &serde_json::json!({"format_version": FORMAT_VERSION})).unwrap();
        assert!(load::<serde_json::Value>(&p).unwrap().is_some());
    }
}
