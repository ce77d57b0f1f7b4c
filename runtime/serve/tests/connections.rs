//! The server on a real socket: what a connection may hold, and for how long.

mod common;

use std::time::{Duration, Instant};

use retroformer_llm::scripted::ScriptedModel;
use retroformer_serve::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// The server's address, what stops it (sent or dropped), and its task.
type Listening = (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), retroformer_serve::ServeError>>,
);

/// Serves `limits` on a loopback port.
async fn listening(limits: Limits) -> Listening {
    let e = engine_with(ScriptedModel::new(["done"]), limits, 1);
    let listener = retroformer_serve::bind("127.0.0.1:0", false).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let server = tokio::spawn(retroformer_serve::serve(listener, e, shutdown));
    (addr, stop, server)
}

/// Everything the server sends on `stream` until it closes it, within `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> String {
    let mut reply = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut reply))
        .await
        .expect("the server did not close the connection in time")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_is_closed_and_frees_its_slot() {
    let limits = Limits {
        max_connections: 1,
        header_wait: Duration::from_millis(500),
        ..Limits::default()
    };
    let (addr, _stop, _server) = listening(limits).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    let mut health = TcpStream::connect(addr).await.unwrap();
    health
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut health, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The only slot was the idle connection's until its header wait ran out.
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "{:?}",
        asked.elapsed()
    );
    read_until_closed(&mut idle, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let limits = Limits {
        body_wait: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _stop, _server) = listening(limits).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\nconnection: close\r\n\r\n{\"model\":";
    client.write_all(head.as_bytes()).await.unwrap();
    let reply = read_until_closed(&mut client, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request body"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_the_server_returns() {
    let (addr, stop, server) = listening(Limits::default()).await;
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 256];
    let n = kept.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    // The kept-alive connection is idle and the listener waits for the next one.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server did not return after shutdown")
        .unwrap()
        .unwrap();
    read_until_closed(&mut kept, Duration::from_secs(5)).await;
}
