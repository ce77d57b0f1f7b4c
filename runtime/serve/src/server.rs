//! Binding and running: loopback unless a key is set, graceful shutdown on Ctrl-C or SIGTERM.
//!
//! The accept loop is ours rather than `axum::serve`'s because that one sets hyper no timer,
//! which silently turns off hyper's header-read timeout: a client that connected and sent
//! nothing held its connection (and a file descriptor) for ever, no key needed, and enough of
//! them stopped the server from accepting anything, `/health` included.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

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
/// At most `limits.max_connections` connections are open at once, and each is closed when it
/// takes longer than `limits.header_wait` to send a request's headers.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let slots = Arc::new(Semaphore::new(engine.limits.max_connections.max(1)));
    let header_wait = engine.limits.header_wait;
    let app = crate::routes::router(engine);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let mut connections = tokio::task::JoinSet::new();
    while let Some((stream, slot)) = next_connection(&listener, &slots, stopped.clone()).await {
        let serving = connection(stream, app.clone(), header_wait, stopped.clone(), slot);
        connections.spawn(serving);
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The next accepted connection with its slot, or `None` once shutdown began.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        let slot = tokio::select! {
            () = until_stopped(&mut stopped) => return None,
            slot = slots.clone().acquire_owned() => slot.ok()?,
        };
        // Raced with shutdown too: with a slot free, the wait is here.
        let accepted = tokio::select! {
            () = until_stopped(&mut stopped) => return None,
            accepted = listener.accept() => accepted.map(|(stream, _)| (stream, slot)),
        };
        match accepted {
            Ok(pair) => return Some(pair),
            // Out of file descriptors, or a connection reset before it was accepted: waiting
            // is all that helps, and the listener itself is fine.
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Serves one connection until it closes, or finishes its request in flight once `stopped`.
async fn connection(
    stream: TcpStream,
    app: Router,
    header_wait: Duration,
    mut stopped: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    // Streamed tokens go out as they come rather than waiting on Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_wait);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection: {e}");
            }
            return;
        }
        () = until_stopped(&mut stopped) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!("connection: {e}");
    }
}

/// Completes once shutdown began (the value's guard is not held across an await: it is not
/// `Send`).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
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
