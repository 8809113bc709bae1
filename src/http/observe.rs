//! Request ids, request spans, request metrics and `/metrics`.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use metrics::Histogram;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::Problem;
use crate::observe::{metric_names, Metrics};

/// The header that carries a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `GET /metrics`: every metric in the Prometheus text format; 404 when
/// the process records none.
pub(super) async fn metrics(State(metrics): State<Option<Metrics>>) -> Response {
    metrics_page(metrics.as_ref())
}

/// The answer of `GET /metrics` for a process recording into `metrics`
/// (404 problem when it records none): what a host serving its own
/// `/metrics` (e.g. `examples/consumer`) answers.
pub fn metrics_page(metrics: Option<&Metrics>) -> Response {
    match metrics {
        Some(m) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            m.render(),
        )
            .into_response(),
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "this process records no metrics (OMS_METRICS=off)",
        )
        .into_response(),
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The histogram of each route, method and status seen, registered once
/// (a request then costs a read lock and a map lookup, no allocation).
type Series = HashMap<Box<str>, HashMap<(&'static str, u16), Histogram>>;

static SERIES: OnceLock<RwLock<Series>> = OnceLock::new();

fn series(route: &str, method: &'static str, status: StatusCode) -> Histogram {
    let series = SERIES.get_or_init(RwLock::default);
    let key = (method, status.as_u16());
    if let Some(h) = series
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(route)
        .and_then(|m| m.get(&key))
    {
        return h.clone();
    }
    let mut series = series.write().unwrap_or_else(|p| p.into_inner());
    series
        .entry(route.into())
        .or_default()
        .entry(key)
        .or_insert_with(|| {
            metrics::histogram!(
                metric_names::HTTP_SECONDS,
                "method" => method,
                "route" => route.to_owned(),
                "status" => status.as_str().to_owned(),
            )
        })
        .clone()
}

/// Times every request into `oms_http_request_seconds` by method, matched
/// route (not the raw path, so ids do not multiply the series) and status.
async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    series(route, method, response.status()).record(started.elapsed().as_secs_f64());
    response
}

/// Adds the observability layers to `router`: request metrics (when
/// `measured`), a span per request carrying its `x-request-id` (kept when
/// the client sent one, else a new UUID) and the id in the response.
pub(super) fn layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    measured: bool,
) -> Router<S> {
    let router = if measured {
        router.route_layer(axum::middleware::from_fn(track))
    } else {
        router
    };
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
