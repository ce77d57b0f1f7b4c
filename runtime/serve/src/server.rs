//! Binding and running: loopback unless a key is set, graceful shutdown on Ctrl-C or SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::engine::Engine;
use crate::error::ServeError;

/// Binds `addr`; an address other machines can reach is refused without an API key.
pub async fn bind(addr: &str, has_key: bool) -> Result<TcpListener, ServeError> {
    let parsed: SocketAddr = addr.parse().map_err(|e| ServeError::Bind {
        addr: addr.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")),
    })?;
    if !parsed.ip().is_loopback() && !has_key {
        return Err(ServeError::NeedsKey {
            addr: addr.to_string(),
        });
    }
    TcpListener::bind(parsed)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `engine` on `listener` until `shutdown` completes; requests in flight finish first.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, crate::routes::router(engine))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
