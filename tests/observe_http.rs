//! What the API shows of itself: `x-request-id` on every answer and in the
//! request's log lines, and `/metrics` in the Prometheus text format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use common::{auth, metric_sum, parse_metrics, send, token};
use oms::domain::Role;
use oms::embedded::EmbeddedPipeline;
use oms::http::router;

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn get(uri: &str, request_id: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(uri);
    if let Some(id) = request_id {
        builder = builder.header("x-request-id", id);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn every_answer_has_a_request_id_that_its_log_lines_carry() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(auth()));

    // None sent: a new UUID per request.
    let (s1, h1, _) = send(&app, get("/healthz", None)).await;
    let (_, h2, _) = send(&app, get("/healthz", None)).await;
    assert_eq!(s1, 200);
    let id1 = h1["x-request-id"].to_str().unwrap().to_owned();
    let id2 = h2["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id1).is_ok(), "{id1}");
    assert_ne!(id1, id2);

    // One sent: kept, on errors too, and in the request's log lines.
    let (s, h, _) = send(
        &app,
        get("/api/v1/products/987654", Some("client-chosen-7")),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(h["x-request-id"], "client-chosen-7");
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let tagged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request_id=client-chosen-7"))
        .collect();
    assert!(
        tagged.iter().any(|l| l.contains("/api/v1/products/987654")),
        "no log line of the request carries its id:\n{log}"
    );
    assert!(log.contains(&format!("request_id={id1}")), "{log}");
    pipeline.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_when_recorded_and_time_requests_by_route() {
    let pipeline = EmbeddedPipeline::start();
    // Without a recorder: 404 problem.
    let app = router(pipeline.app_state(auth()));
    let (s, _, body) = send(&app, get("/metrics", None)).await;
    assert_eq!(
        (s.as_u16(), body["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );

    let metrics = oms::observe::Metrics::install().unwrap();
    let app = router(pipeline.app_state(auth()).with_metrics(metrics.clone()));
    let admin = token(1, Role::Admin);
    for id in [11, 12, 13] {
        let r = Request::get(format!("/api/v1/products/{id}"))
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, r).await.0, 404);
    }
    let r = scrape(&app).await;
    assert!(r.0.starts_with("text/plain"), "{}", r.0);
    let samples = parse_metrics(&r.1);
    // One series for the route, not one per product id.
    let by_route = metric_sum(
        &samples,
        "oms_http_request_seconds_count",
        &[
            ("route", "/api/v1/products/{product_id}"),
            ("method", "GET"),
            ("status", "404"),
        ],
    );
    assert_eq!(by_route, 3.0);
    assert!(!samples
        .iter()
        .any(|(_, l, _)| l.get("route").is_some_and(|r| r.contains("/11"))));
    // Every metric oms records is described.
    assert!(r.1.contains("# HELP oms_http_request_seconds"), "{}", r.1);
    pipeline.shutdown().await;
}

/// `GET /metrics` of `app`: its content type and text.
async fn scrape(app: &axum::Router) -> (String, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let res = app.clone().oneshot(get("/metrics", None)).await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The dashboard in `docs/grafana` asks only for metrics oms records, and
/// shows every one of them.
#[test]
fn the_dashboard_shows_exactly_the_recorded_metrics() {
    use std::collections::BTreeSet;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/oms-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["description"].as_str().is_some_and(|d| !d.is_empty()));
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("oms_") {
                    let name = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    used.insert(name.to_owned());
                }
            }
        }
    }
    let recorded: BTreeSet<String> = oms::observe::metric_names::ALL
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(used, recorded);
}
