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

/// Connects to `url`, with a credentials file when given (TLS follows the URL's scheme and
/// the server's requirement).
pub async fn connect(
    url: &str,
    creds: Option<&std::path::Path>,
) -> Result<async_nats::Client, SyncError> {
    let mut options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .name("retroformer");
    if let Some(c) = creds {
        options = options
            .credentials_file(c)
            .await
            .map_err(|e| SyncError::io(c, e))?;
    }
    options.connect(url).await.map_err(SyncError::nats)
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
