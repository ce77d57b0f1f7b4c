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

/// The largest adapter a release may offer (a device downloads at most this).
pub const MAX_ADAPTER_BYTES: u64 = 2 << 30;

impl Release {
    /// A release record as read from the bucket: this format version, sha256 fields of 64
    /// hexadecimal digits, a size a device may download.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let r: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("a release that is not a release record: {e}"))?;
        if r.format_version != FORMAT_VERSION {
            return Err(format!(
                "a release record of format_version {} (this build reads {FORMAT_VERSION})",
                r.format_version
            ));
        }
        for (field, v) in [
            ("base_sha256", &r.base_sha256),
            ("sha256", &r.sha256),
            ("data_sha256", &r.data_sha256),
        ] {
            if !(v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(format!(
                    "release {}: {field} is not 64 hexadecimal digits",
                    r.version
                ));
            }
        }
        if r.size > MAX_ADAPTER_BYTES {
            return Err(format!(
                "release {}: size {} passes the {MAX_ADAPTER_BYTES} bytes an adapter may have",
                r.version, r.size
            ));
        }
        Ok(r)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            format_version: FORMAT_VERSION,
            version: 3,
            status: ReleaseStatus::Candidate,
            base_sha256: "a".repeat(64),
            sha256: "b".repeat(64),
            data_sha256: "c".repeat(64),
            size: 10,
            object: "x.gguf".into(),
        }
    }

    #[test]
    fn a_release_record_is_read_only_with_this_version_hex_digests_and_a_bounded_size() {
        let ok = serde_json::to_vec(&release()).unwrap();
        assert_eq!(Release::parse(&ok).unwrap(), release());
        let bad = [
            Release {
                format_version: 2,
                ..release()
            },
            Release {
                sha256: "é".repeat(32),
                ..release()
            },
            Release {
                data_sha256: "c".repeat(63),
                ..release()
            },
            Release {
                size: MAX_ADAPTER_BYTES + 1,
                ..release()
            },
        ];
        for r in bad {
            let e = Release::parse(&serde_json::to_vec(&r).unwrap()).unwrap_err();
            assert!(!e.is_empty());
        }
        assert!(Release::parse(b"{}")
            .unwrap_err()
            .contains("not a release record"));
    }
}
