//! What the API shows of itself: `/metrics` in the Prometheus text format,
//! and the dashboard that reads it (`x-request-id`: tests/request_id.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{auth, get, metric_sum, parse_metrics, send, token};
use oms::domain::Role;
use oms::embedded::EmbeddedPipeline;
use oms::http::router;

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
