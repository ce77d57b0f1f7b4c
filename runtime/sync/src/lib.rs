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
//! Names, limits and record schemas: [`names`], and ARCHITECTURE.md. tokio enters here (as in
//! serve, the CLI, the trainer's fleet and the benches), never in the device runtime
//! (`retroformer`).

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
pub use trainer::{BadLine, Consumed, FleetTrainer, TrainFailure, TrainerConfig, WhenFull};

use std::path::PathBuf;

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
    /// Command-line flags that do not go together.
    #[error("{flag}: {reason}")]
    Flags {
        flag: &'static str,
        reason: &'static str,
    },
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

/// Runs blocking work (a training, an install's probe, a canary's evaluation) from async code:
/// on a multi-thread runtime the worker hands its other tasks away first (`block_in_place`);
/// on a current-thread runtime, where `block_in_place` panics, the work simply runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// How a client proves who it is and checks the server, beside the URL's user and password.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// A NATS credentials file (user JWT and seed).
    pub creds: Option<PathBuf>,
    /// Certificates (PEM) of the authorities that signed the server's: TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate and key (PEM), for servers that verify clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

impl Security {
    /// From a command line's flags: a client certificate needs its key and a key its
    /// certificate.
    pub fn from_flags(
        creds: Option<PathBuf>,
        tls_ca: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
    ) -> Result<Self, SyncError> {
        let alone = |flag, reason| Err(SyncError::Flags { flag, reason });
        let tls_client = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return alone("--tls-cert", "needs --tls-key"),
            (None, Some(_)) => return alone("--tls-key", "needs --tls-cert"),
        };
        Ok(Self {
            creds,
            tls_ca,
            tls_client,
        })
    }
}

/// Connects to `url` (`nats://[user:password@]host:port`, `tls://...`; a user alone is a
/// token) with `security`; TLS follows the URL's scheme, the server's requirement and
/// `security`. A server that cannot be reached is retried in the background (a device works
/// offline); one that refuses the credentials is an error now.
pub async fn connect(url: &str, security: &Security) -> Result<async_nats::Client, SyncError> {
    connect_with(url, security, None).await
}

/// [`connect`] as device `id`: replies come to its own inbox (`names::device_inbox`), the
/// one subject a device's user may subscribe to.
pub async fn connect_device(
    url: &str,
    security: &Security,
    id: &str,
) -> Result<async_nats::Client, SyncError> {
    names::check_device_id(id).map_err(SyncError::Nats)?;
    connect_with(url, security, Some(names::device_inbox(id))).await
}

async fn connect_with(
    url: &str,
    security: &Security,
    inbox: Option<String>,
) -> Result<async_nats::Client, SyncError> {
    use async_nats::ConnectErrorKind as Kind;
    let addr: async_nats::ServerAddr = url
        .parse()
        .map_err(|e| SyncError::Nats(format!("{}: {e}", redacted(url))))?;
    match options(&addr, security, inbox.as_deref())
        .await?
        .connect(addr.clone())
        .await
    {
        Ok(client) => Ok(client),
        Err(e) if matches!(e.kind(), Kind::Io | Kind::TimedOut | Kind::Dns) && !is_tls(&e) => {
            tracing::warn!(
                "{} unreachable ({e}); retrying in the background",
                redacted(url)
            );
            options(&addr, security, inbox.as_deref())
                .await?
                .retry_on_initial_connect()
                .connect(addr)
                .await
                .map_err(SyncError::nats)
        }
        Err(e) => Err(SyncError::Nats(format!("{}: {e}", redacted(url)))),
    }
}

/// Whether a connection failed in the TLS handshake (async-nats reports that as I/O): a
/// certificate refused either way is not fixed by retrying.
fn is_tls(e: &async_nats::ConnectError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if inner.is_some_and(|i| i.is::<async_nats::rustls::Error>()) {
            return true;
        }
        source = s.source();
    }
    false
}

/// The client's options: its name, inbox, the URL's user (async-nats leaves a URL's user
/// information unused) or the credentials file, and TLS.
async fn options(
    addr: &async_nats::ServerAddr,
    security: &Security,
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
    if let Some(c) = &security.creds {
        options = options
            .credentials_file(c)
            .await
            .map_err(|e| SyncError::io(c, e))?;
    }
    for file in security
        .tls_ca
        .iter()
        .chain(security.tls_client.iter().flat_map(|(c, k)| [c, k]))
    {
        // Read here so that a missing file is named, not a TLS failure later.
        std::fs::metadata(file).map_err(|e| SyncError::io(file, e))?;
    }
    if let Some(ca) = &security.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &security.tls_client {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
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
/// Whether `s` reads as a sha256: 64 hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_runs_on_a_current_thread_runtime_where_block_in_place_would_panic() {
        assert_eq!(super::blocking(|| 2 + 2), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_runs_on_a_multi_thread_runtime() {
        assert_eq!(super::blocking(|| 2 + 2), 4);
    }

    #[test]
    fn a_url_in_a_message_hides_its_password() {
        assert_eq!(
            super::redacted("nats://dev-a:secret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(super::redacted("tls://host:4222"), "tls://host:4222");
    }

    #[test]
    fn a_client_certificate_without_its_key_or_a_key_without_its_certificate_names_the_flag() {
        let p = || Some(std::path::PathBuf::from("x.pem"));
        let flag = |r: Result<super::Security, super::SyncError>| match r {
            Err(super::SyncError::Flags { flag, .. }) => flag,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            flag(super::Security::from_flags(None, None, p(), None)),
            "--tls-cert"
        );
        assert_eq!(
            flag(super::Security::from_flags(None, None, None, p())),
            "--tls-key"
        );
        let both = super::Security::from_flags(None, p(), p(), p()).unwrap();
        assert!(both.tls_client.is_some() && both.tls_ca.is_some());
    }
}
