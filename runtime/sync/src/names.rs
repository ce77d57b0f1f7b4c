//! Subjects, streams and buckets. A device publishes only on its own subjects (a server's
//! per-user permissions can then hold it to them: `retroformer.records.<id>` and
//! `retroformer.canary.<id>`).

/// The stream of record segments (`retroformer.records.<device>`), kept until the trainer has
/// stored them (work-queue retention: a message acknowledged by the trainer is removed).
pub const RECORDS_STREAM: &str = "RETROFORMER_RECORDS";
/// The stream of canary reports (`retroformer.canary.<device>`).
pub const CANARY_STREAM: &str = "RETROFORMER_CANARY";
/// The key-value bucket of releases: key `base.<base sha256>`, value a [`crate::Release`].
pub const RELEASES_BUCKET: &str = "retroformer_releases";
/// The object store of adapter files, named `<sha256>.gguf`.
pub const ADAPTERS_BUCKET: &str = "retroformer_adapters";
/// The trainer's durable consumers.
pub const RECORDS_CONSUMER: &str = "trainer";
pub const CANARY_CONSUMER: &str = "trainer-canary";
/// A segment's payload at most (NATS's default `max_payload` is 1 MiB).
pub const MAX_SEGMENT_BYTES: usize = 512 * 1024;
/// How long the server remembers a `Nats-Msg-Id` to drop a re-sent segment (the trainer's
/// store, named by content, catches any later re-send).
pub const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// Headers a segment carries besides `Nats-Msg-Id` (its sha256).
pub const HEADER_DEVICE: &str = "Retroformer-Device";
pub const HEADER_SOURCE: &str = "Retroformer-Source";

/// The first token of every subject.
const ROOT: &str = "retroformer";

/// A device's records subject (`*`: every device's).
pub fn records_subject(device: &str) -> String {
    format!("{ROOT}.records.{device}")
}

/// A device's canary-report subject (`*`: every device's).
pub fn canary_subject(device: &str) -> String {
    format!("{ROOT}.canary.{device}")
}

/// The release key of a base model.
pub fn release_key(base_sha256: &str) -> String {
    format!("base.{base_sha256}")
}

/// A device id: 1-64 letters, digits, `-` or `_` (one subject token).
pub fn check_device_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "device id {id:?}: 1-64 letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_id_is_one_subject_token() {
        assert!(check_device_id("pi-4_kitchen").is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(check_device_id(bad).is_err(), "{bad}");
        }
    }
}
