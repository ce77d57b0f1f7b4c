//! The records of a release (the value under a base model's key in the releases bucket) and
//! of a device's canary report. JSON, with a format version each.

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

/// Where a release stands in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Devices run the canary; each activates it only where it is not worse.
    Candidate,
    /// Enough devices agreed: every device activates it.
    Promoted,
    /// Too many devices found it worse (or could not install it): every device that activated
    /// it goes back to its previous adapter.
    RolledBack,
}

/// An adapter offered to the devices of one base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub format_version: u32,
    /// Increases with every release of this base.
    pub version: u64,
    pub status: ReleaseStatus,
    /// The base model the adapter was trained on (a device installs only on the same).
    pub base_sha256: String,
    /// The adapter file's sha256 (a device refuses any other bytes).
    pub sha256: String,
    /// The training data's sha256, as the adapter records it (`retroformer.data_sha256`).
    pub data_sha256: String,
    pub size: u64,
    /// Its name in the adapters object store.
    pub object: String,
}

/// What a device's canary found for one release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryOutcome {
    pub format_version: u32,
    pub device: String,
    pub version: u64,
    pub sha256: String,
    /// Whether the adapter passed the checks and was installed.
    pub installed: bool,
    /// Whether the canary activated it.
    pub promoted: bool,
    pub candidate_score: Option<f64>,
    pub incumbent_score: Option<f64>,
    /// Why it was not installed or not scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
