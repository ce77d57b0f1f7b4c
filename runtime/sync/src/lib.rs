//! The fleet: devices send their run records to a trainer and receive adapters back, over
//! NATS JetStream (durable streams, acknowledgements, de-duplication by `Nats-Msg-Id`, a
//! key-value bucket for the newest release, an object store for adapter files).
//!
//! - [`outbox`] and [`segment`] (no network): a device's finished record files cut into
//!   segments of whole lines, named by their sha256, kept on disk until the server has
//!   acknowledged them, so nothing is lost while offline or across restarts.
//! - [`device`]: uploads the outbox; watches the bucket for its base model's newest release,
//!   downloads it (digest and provenance verified), installs it through the adapter store,
//!   runs the canary, activates or keeps the incumbent, reports; rolls back on a fleet-wide
//!   rollback.
//! - [`trainer`]: consumes records with a durable consumer, stores each segment once (named
//!   by its sha256) before acknowledging it, trains when enough new records arrived, publishes
//!   the adapter and its release, and promotes or rolls back fleet-wide from the canary
//!   reports.
//!
//! Names, limits and record schemas: [`names`], and ARCHITECTURE.md. tokio enters here and in
//! the CLI, never in the device runtime (`retroformer`).

pub mod device;
pub mod names;
pub mod outbox;
pub mod release;
pub mod segment;
mod state;
pub mod trainer;

pub use device::{Device, DeviceConfig};
pub use outbox::Outbox;
pub use release::{CanaryOutcome, Release, ReleaseStatus};
pub use trainer::{Consumed, FleetTrainer, TrainerConfig};

/// What stops a fleet operation.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Record {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("release {version}: {reason}")]
    Release { version: u64, reason: String },
    #[error("adapter store: {0}")]
    Store(#[from] retroformer::adapters::StoreError),
    #[error("training: {0}")]
    Train(String),
}

impl SyncError {
    fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn nats(e: impl std::fmt::Display) -> Self {
        Self::Nats(e.to_string())
    }
}

/// Connects to `url` (`nats://[user:password@]host:port`, `tls://...`; a user alone is a
/// token), with a credentials file when given; TLS follows the URL's scheme and the server's
/// requirement. A server that cannot be reached is retried in the background (a device works
/// offline); one that refuses the credentials is an error now.
pub async fn connect(
    url: &str,
    creds: Option<&std::path::Path>,
) -> Result<async_nats::Client, SyncError> {
    connect_with(url, creds, None).await
}

/// [`connect`] as device `id`: replies come to its own inbox (`names::device_inbox`), the
/// one subject a device's user may subscribe to.
pub async fn connect_device(
    url: &str,
    creds: Option<&std::path::Path>,
    id: &str,
) -> Result<async_nats::Client, SyncError> {
    names::check_device_id(id).map_err(SyncError::Nats)?;
    connect_with(url, creds, Some(names::device_inbox(id))).await
}

async fn connect_with(
    url: &str,
    creds: Option<&std::path::Path>,
    inbox: Option<String>,
) -> Result<async_nats::Client, SyncError> {
    use async_nats::ConnectErrorKind as Kind;
    let addr: async_nats::ServerAddr = url
        .parse()
        .map_err(|e| SyncError::Nats(format!("{}: {e}", redacted(url))))?;
    match options(&addr, creds, inbox.as_deref())
        .await?
        .connect(addr.clone())
        .await
    {
        Ok(client) => Ok(client),
        Err(e) if matches!(e.kind(), Kind::Io | Kind::TimedOut | Kind::Dns) => {
            tracing::warn!(
                "{} unreachable ({e}); retrying in the background",
                redacted(url)
            );
            options(&addr, creds, inbox.as_deref())
                .await?
                .retry_on_initial_connect()
                .connect(addr)
                .await
                .map_err(SyncError::nats)
        }
        Err(e) => Err(SyncError::Nats(format!("{}: {e}", redacted(url)))),
    }
}

/// The client's options: its name, and the URL's user (async-nats leaves a URL's user
/// information unused) or the credentials file.
async fn options(
    addr: &async_nats::ServerAddr,
    creds: Option<&std::path::Path>,
    inbox: Option<&str>,
) -> Result<async_nats::ConnectOptions, SyncError> {
    let mut options = async_nats::ConnectOptions::new().name("retroformer");
    if let Some(prefix) = inbox {
        options = options.custom_inbox_prefix(prefix);
    }
    match (addr.username(), addr.password()) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.into(), password.into())
        }
        (Some(token), None) => options = options.token(token.into()),
        _ => {}
    }
    if let Some(c) = creds {
        options = options
            .credentials_file(c)
            .await
            .map_err(|e| SyncError::io(c, e))?;
    }
    Ok(options)
}

/// `url` without its password or token, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_in_a_message_hides_its_password() {
        assert_eq!(
            super::redacted("nats://dev-a:secret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(super::redacted("tls://host:4222"), "tls://host:4222");
    }
}
