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
            if !crate::is_sha256_hex(v) {
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

/// The most of a canary's `reason` a trainer keeps (it is stored in the trainer's state).
pub const MAX_REASON_BYTES: usize = 1024;

impl CanaryOutcome {
    /// A report as a trainer reads it: JSON of this format version, its `reason` cut to
    /// [`MAX_REASON_BYTES`] (at a character boundary).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut o: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if o.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {}; this build reads {FORMAT_VERSION}",
                o.format_version
            ));
        }
        if let Some(r) = o.reason.as_mut().filter(|r| r.len() > MAX_REASON_BYTES) {
            let mut end = MAX_REASON_BYTES;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
            r.push_str(" [...]");
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(format_version: u32, reason: &str) -> Vec<u8> {
        let o = CanaryOutcome {
            format_version,
            device: "dev-a".into(),
            version: 1,
            sha256: "a".repeat(64),
            installed: false,
            promoted: false,
            candidate_score: None,
            incumbent_score: None,
            reason: Some(reason.into()),
        };
        serde_json::to_vec(&o).unwrap()
    }

    #[test]
    fn a_canary_report_of_another_format_version_is_refused_and_a_long_reason_cut() {
        let e = CanaryOutcome::parse(&outcome(FORMAT_VERSION + 1, "x")).unwrap_err();
        assert!(e.contains("format_version"), "{e}");
        // Two-byte characters: the cut must not fall inside one.
        let long = "\u{e9}".repeat(MAX_REASON_BYTES);
        let o = CanaryOutcome::parse(&outcome(FORMAT_VERSION, &long)).unwrap();
        let r = o.reason.unwrap();
        assert!(
            r.len() <= MAX_REASON_BYTES + 6 && r.ends_with(" [...]"),
            "{}",
            r.len()
        );
        let short = CanaryOutcome::parse(&outcome(FORMAT_VERSION, "refused")).unwrap();
        assert_eq!(short.reason.as_deref(), Some("refused"));
    }

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
