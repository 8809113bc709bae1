//! Serving the router with limits: a deadline for every request, a deadline
//! for reading request headers (slow clients), a cap on requests in flight
//! that sheds load at once instead of queueing, and a cap on open
//! connections.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::MapRequest;
use tower::{BoxError, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use super::{Problem, REQUEST_ID};
use crate::config::{self, Settings};

/// The limits [`serve`] and [`with_limits`] enforce.
///
/// Every error they produce is `application/problem+json`, except where the
/// client never sent a complete request (a header-read timeout closes the
/// connection without an answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest time from a request's headers being read to its response
    /// being ready, body reading included. Past it the handler is dropped
    /// and the client gets 503 `TIMEOUT`. Keep it above the 5 s send bound
    /// of order intake, so that intake always answers first. Default 15 s.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's headers, counted
    /// from the moment the connection opens or its previous response was
    /// written (so it is also the idle timeout of kept-alive connections).
    /// Past it the connection is closed. Default 10 s.
    pub header_read_timeout: Duration,
    /// Most requests handled at once. A request over it is answered 503
    /// `OVERLOADED` with `Retry-After: 1` at once; nothing queues.
    /// Default 1024.
    pub max_in_flight: usize,
    /// Most connections open at once. While at the cap, new connections
    /// wait in the listen backlog of the operating system (keep it below the
    /// process's open-file limit). Default 8192.
    pub max_connections: usize,
    /// How long a shutdown waits for open connections to finish their
    /// requests before [`serve`] returns anyway. Default 30 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            request_timeout: config::DEFAULT_HTTP_REQUEST_TIMEOUT,
            header_read_timeout: config::DEFAULT_HTTP_HEADER_TIMEOUT,
            max_in_flight: config::DEFAULT_HTTP_MAX_IN_FLIGHT,
            max_connections: config::DEFAULT_HTTP_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServerLimits {
    /// The limits of the `OMS_HTTP_*` settings (see
    /// [`Settings`]), with the default shutdown grace.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            request_timeout: settings.http_request_timeout,
            header_read_timeout: settings.http_header_timeout,
            max_in_flight: settings.http_max_in_flight,
            max_connections: settings.http_max_connections,
            ..Self::default()
        }
    }
}

/// Seconds a shed client is asked to wait (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";

/// `router` with the request deadline and the in-flight cap of `limits`
/// (every route and the fallback share one cap). [`serve`] applies this
/// itself; use it when serving the router some other way.
///
/// The answers of these limits carry an `x-request-id` like every other
/// (the client's, or a new one the router's own layers then keep).
pub fn with_limits(router: Router, limits: &ServerLimits) -> Router {
    let timeout = limits.request_timeout;
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                limit_problem(e, timeout)
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(
                limits.max_in_flight.max(1),
            ))
            .timeout(timeout),
    )
}

fn limit_problem(e: BoxError, timeout: Duration) -> Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        tracing::debug!("request shed: too many requests in flight");
        let mut response = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "the server is handling as many requests as it can; try again shortly",
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
        response
    } else if e.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(?timeout, "request timed out");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TIMEOUT",
            format!(
                "the request was not handled within {} ms; try again later",
                timeout.as_millis()
            ),
        )
        .into_response()
    } else {
        tracing::error!(error = %e, "request failed in the server's limits");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "the request could not be handled",
        )
        .into_response()
    }
}

/// Serves `router` on `listener` over HTTP/1.1 with `limits` (see
/// [`ServerLimits`]) until `shutdown` completes; then stops accepting,
/// lets open requests finish (up to [`ServerLimits::shutdown_grace`]) and
/// returns.
///
/// Unlike a bare `axum::serve`, a client that opens a connection and sends
/// its headers slowly, or never, is disconnected after
/// [`ServerLimits::header_read_timeout`]. Every request carries its
/// connection's peer address as `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = with_limits(router, &limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Usually out of file descriptors: wait for some to close.
                tracing::error!(error = %e, "accept failed; retrying in 1 s");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // Handlers see the peer as `ConnectInfo` (login throttling).
        let service = TowerToHyperService::new(MapRequest::new(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        ));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "open connections did not finish in time");
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
