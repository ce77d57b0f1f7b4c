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

/// What a device's NATS user may publish and subscribe to: its own two subjects, the
/// JetStream API calls that read the releases bucket and download from the adapters object
/// store, and replies on its own inbox ([`device_inbox`], set by
/// [`crate::connect_device`]). Nothing else: not another device's subjects, not a
/// release, not an object, no stream or consumer management.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// A device's inbox prefix: replies to its requests come on `<prefix>.>`.
pub fn device_inbox(device: &str) -> String {
    format!("_INBOX_{device}")
}

/// A device's permissions (the id checked by [`check_device_id`] first).
pub fn device_permissions(device: &str) -> Permissions {
    let kv = format!("KV_{RELEASES_BUCKET}");
    let obj = format!("OBJ_{ADAPTERS_BUCKET}");
    let mut publish = vec![records_subject(device), canary_subject(device)];
    publish.push("$JS.API.INFO".into());
    for s in [&kv, &obj] {
        publish.push(format!("$JS.API.STREAM.INFO.{s}"));
        publish.push(format!("$JS.API.STREAM.MSG.GET.{s}"));
        publish.push(format!("$JS.API.DIRECT.GET.{s}"));
        publish.push(format!("$JS.API.DIRECT.GET.{s}.>"));
    }
    // An object's chunks come through an ordered (ephemeral) consumer with flow control.
    publish.push(format!("$JS.API.CONSUMER.CREATE.{obj}"));
    publish.push(format!("$JS.API.CONSUMER.CREATE.{obj}.>"));
    publish.push(format!("$JS.API.CONSUMER.DELETE.{obj}.>"));
    publish.push("$JS.FC.>".into());
    Permissions {
        publish,
        subscribe: vec![format!("{}.>", device_inbox(device))],
    }
}

impl Permissions {
    /// The `permissions` block of a user in a nats-server configuration file.
    pub fn server_config(&self) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
            list(&self.publish),
            list(&self.subscribe)
        )
    }

    /// The `nsc` command that makes a user with these permissions (for credentials files
    /// under operator mode).
    pub fn nsc_command(&self, user: &str) -> String {
        format!(
            "nsc add user {user} --allow-pub '{}' --allow-sub '{}'",
            self.publish.join(","),
            self.subscribe.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_may_publish_on_its_own_subjects_and_no_other_device_s() {
        let p = device_permissions("dev-a");
        assert!(p.publish.contains(&records_subject("dev-a")));
        assert!(p.publish.contains(&canary_subject("dev-a")));
        assert!(p.publish.iter().all(|s| !s.contains("dev-b")
            && !s.starts_with("$KV")
            && !s.starts_with("$O.")
            && !s.contains('*')
            && !s.contains("STREAM.CREATE")));
        let quoted = format!("\"{}\"", records_subject("dev-a"));
        assert!(p.server_config().contains(&quoted));
    }

    #[test]
    fn a_device_id_is_one_subject_token() {
        assert!(check_device_id("pi-4_kitchen").is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(check_device_id(bad).is_err(), "{bad}");
        }
    }
}
