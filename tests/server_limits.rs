//! `oms::http::serve` on a real socket: slow clients are disconnected after
//! the header-read timeout without slowing anyone else down, a full server
//! sheds load at once, and a slow request is cut off; every answer of the
//! limits is problem+json.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use common::{auth, token};
use oms::domain::Role;
use oms::embedded::EmbeddedPipeline;
use oms::http::{router, serve, ServerLimits};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start(app: Router, limits: ServerLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and checks that it returns promptly.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve did not return within 10 s of the shutdown signal");
        served.unwrap().unwrap();
    }
}

/// A client with no pooled connections: every request opens its own.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn problem(response: reqwest::Response) -> (reqwest::StatusCode, Value, Option<String>) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{status}"
    );
    // The limits' own answers carry a request id too (docs/API.md,
    // "Operations").
    assert!(
        response
            .headers()
            .get("x-request-id")
            .is_some_and(|v| !v.is_empty()),
        "{status}: no x-request-id"
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["title"].is_string() && body["type"].is_string() && body["detail"].is_string());
    (status, body, retry_after)
}

/// The time one authenticated read takes on a fresh connection.
async fn timed_read(server: &Server, bearer: &str) -> Duration {
    let started = Instant::now();
    let r = fresh_client()
        .get(server.url("/api/v1/products"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    took
}

/// Reads until the peer closes the connection (EOF or reset); any bytes it
/// sends first are ignored.
async fn closed(stream: &TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_half_open_connections_neither_slow_others_down_nor_stay_open() {
    const IDLE: usize = 500;
    let header_timeout = Duration::from_secs(4);
    let pipeline = EmbeddedPipeline::start();
    let server = Server::start(
        router(pipeline.app_state(auth())),
        ServerLimits {
            header_read_timeout: header_timeout,
            ..ServerLimits::default()
        },
    )
    .await;
    let bearer = token(7, Role::User);

    timed_read(&server, &bearer).await;
    let mut baseline = Duration::ZERO;
    for _ in 0..5 {
        baseline = baseline.max(timed_read(&server, &bearer).await);
    }

    // 500 clients connect, send part of a request's headers, and go quiet.
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let stream = TcpStream::connect(server.addr).await.unwrap_or_else(|e| {
            panic!(
                "connection {i}: {e} (is `ulimit -n` at least {})?",
                4 * IDLE
            )
        });
        let partial = b"GET /api/v1/products HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
        stream.writable().await.unwrap();
        assert_eq!(stream.try_write(partial).unwrap(), partial.len());
        idle.push((Instant::now(), stream));
    }

    let bound = (baseline * 10).max(Duration::from_secs(1));
    let took = timed_read(&server, &bearer).await;
    assert!(
        took <= bound,
        "a normal client took {took:?} beside {IDLE} idle connections (bound {bound:?}, baseline {baseline:?})"
    );

    // They were all still open while the normal client was served.
    let mut buf = [0u8; 16];
    for (i, (_, stream)) in idle.iter().enumerate() {
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("idle connection {i} ended early: {other:?}"),
        }
    }

    // The header-read timeout closes every one of them.
    let deadline = tokio::time::Instant::now() + header_timeout + Duration::from_secs(20);
    let closings = idle.iter().map(|(opened, stream)| async move {
        tokio::time::timeout_at(deadline, closed(stream))
            .await
            .map(|()| opened.elapsed())
    });
    let lifetimes = futures::future::join_all(closings).await;
    let still_open = lifetimes.iter().filter(|l| l.is_err()).count();
    assert_eq!(still_open, 0, "{still_open} idle connections still open");
    let shortest = lifetimes.iter().flatten().min().copied().unwrap();
    assert!(
        shortest >= header_timeout / 2,
        "an idle connection was closed after {shortest:?}, before the header timeout"
    );

    // The server still answers, and stops on its signal.
    timed_read(&server, &bearer).await;
    server.stop().await;
    pipeline.shutdown().await;
}

/// The oms router plus `GET /slow`, which reports that it started and then
/// waits until `release` turns true.
fn with_slow_route(entered: mpsc::UnboundedSender<()>, release: watch::Receiver<bool>) -> Router {
    let pipeline_router = router(EmbeddedPipeline::start().app_state(auth()));
    pipeline_router.merge(Router::new().route(
        "/slow",
        get(move || {
            let entered = entered.clone();
            let mut release = release.clone();
            async move {
                let _ = entered.send(());
                let _ = release.wait_for(|go| *go).await;
                "done"
            }
        }),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_sheds_load_at_once_with_a_problem() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let server = Server::start(
        with_slow_route(entered_tx, release_rx),
        ServerLimits {
            max_in_flight: 2,
            request_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        },
    )
    .await;

    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/slow");
            tokio::spawn(async move { fresh_client().get(url).send().await.unwrap().status() })
        })
        .collect();
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), entered.recv())
            .await
            .expect("slow requests did not start")
            .unwrap();
    }

    // Both slots are held until `release`: these answers cannot have waited
    // for a slot.
    for path in ["/healthz", "/api/v1/products", "/no-such-route"] {
        let id = format!("shed{}", path.replace('/', "-"));
        let r = fresh_client()
            .get(server.url(path))
            .header("x-request-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["x-request-id"],
            id.as_str(),
            "{path}: the client's id"
        );
        let (status, body, retry_after) = problem(r).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "OVERLOADED", "{path}: {body}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{path}");
    }
    assert!(slow.iter().all(|t| !t.is_finished()));

    release.send(true).unwrap();
    for t in slow {
        assert_eq!(t.await.unwrap(), 200);
    }
    let r = fresh_client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_a_problem_and_frees_its_slot() {
    let (entered_tx, _entered) = mpsc::unbounded_channel();
    let (_release, release_rx) = watch::channel(false);
    let timeout = Duration::from_millis(300);
    let server = Server::start(
        with_slow_route(entered_tx, release_rx),
        ServerLimits {
            max_in_flight: 1,
            request_timeout: timeout,
            ..ServerLimits::default()
        },
    )
    .await;

    let started = Instant::now();
    let r = fresh_client()
        .get(server.url("/slow"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let (status, body, _) = problem(r).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "TIMEOUT", "{body}");
    assert!(took >= timeout, "answered after {took:?}");

    // The one slot is free again.
    let r = fresh_client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}
