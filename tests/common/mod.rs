//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use oms::domain::Role;
use oms::http::JwtAuth;

pub const SECRET: &[u8] = b"test-secret";

/// Whether the real services of `scripts/services.sh up` are configured;
/// when not, the calling test is reported skipped (an error under
/// `OMS_REQUIRE_SERVICES`, as in `scripts/test.sh`) and should return.
pub fn real_stack() -> bool {
    oms::core::testkit::services::services_set(&[
        "OMS_KAFKA_BROKERS",
        "OMS_REDIS_URL",
        "OMS_DATABASE_URL",
    ])
}

pub fn auth() -> JwtAuth {
    JwtAuth::new(SECRET)
}

pub fn token(member: u64, role: Role) -> String {
    auth().mint(member, role, Duration::from_secs(600)).unwrap()
}

pub fn order_body(lines: &[(u64, u32)]) -> serde_json::Value {
    serde_json::json!({
        "items": lines.iter().map(|(p, q)| serde_json::json!({"productId": p, "quantity": q})).collect::<Vec<_>>(),
        "receiverInfo": {"name": "Kim", "phone": "010-0000-0000", "address": "Seoul"}
    })
}

/// Sends `req` to `app` and returns its status, headers and JSON body
/// (`Null` when empty), checking that every error is a problem+json body
/// whose fields match its status.
pub async fn send(
    app: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (
    axum::http::StatusCode,
    axum::http::HeaderMap,
    serde_json::Value,
) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"))
    };
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(
            headers[axum::http::header::CONTENT_TYPE],
            "application/problem+json",
            "{status}"
        );
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(body["code"].is_string() && body["title"].is_string() && body["type"].is_string());
    }
    (status, headers, body)
}

/// Any JSON value, up to `depth` levels deep with up to `width` items a
/// level (for property tests of the decoders).
pub fn any_json(
    depth: u32,
    width: usize,
) -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,20}".prop_map(Value::from),
    ];
    let size = u32::try_from(width * width).unwrap_or(u32::MAX);
    let branch = u32::try_from(width).unwrap_or(u32::MAX);
    leaf.prop_recursive(depth, size, branch, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..width).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..width)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub mod stack;

/// Sends `method uri` to `app` with a bearer token (when given), extra
/// headers and a JSON body (when given), through [`send`].
pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (
    axum::http::StatusCode,
    axum::http::HeaderMap,
    serde_json::Value,
) {
    use axum::http::header;
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => req.body(axum::body::Body::empty()),
    }
    .unwrap();
    send(app, req).await
}

/// One sample of a Prometheus text page: name, labels, value.
pub type Sample = (String, std::collections::BTreeMap<String, String>, f64);

/// Parses the Prometheus text format `/metrics` serves (comments skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Default::default()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let labels = body
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        samples.push((name, labels, value));
    }
    samples
}

/// The sum of the samples named `name` whose labels include `labels`.
pub fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Every sample of the `/metrics` pages at `urls`, together.
pub async fn scrape(client: &reqwest::Client, urls: &[String]) -> Vec<Sample> {
    let mut samples = Vec::new();
    for url in urls {
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        samples.extend(parse_metrics(&r.text().await.unwrap()));
    }
    samples
}

/// Waits (up to 60 s) until the metrics at `urls` count the 네고왕 run of
/// `orders` orders against `stock` units: every order accepted, `stock`
/// COMPLETED, the rest FAILED `OUT_OF_STOCK` with a DLQ record each, and
/// asserts the counts are exact (never past them).
pub async fn assert_negowang_metrics(
    client: &reqwest::Client,
    urls: &[String],
    orders: u64,
    stock: u64,
) {
    use oms::observe::metric_names as m;
    type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);
    let expected: [Expected<'_>; 6] = [
        (m::INTAKE_ACCEPTED, &[], orders),
        ("oms_intake_seconds_count", &[], orders),
        (m::INTAKE_REFUSED, &[], 0),
        (m::ORDERS_FINAL, &[("status", "COMPLETED")], stock),
        (
            m::ORDERS_FINAL,
            &[("status", "FAILED"), ("reason", "OUT_OF_STOCK")],
            orders - stock,
        ),
        (
            m::DLQ_RECORDS,
            &[("reason", "OUT_OF_STOCK")],
            orders - stock,
        ),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let samples = scrape(client, urls).await;
        let seen: Vec<u64> = expected
            .iter()
            .map(|(name, labels, _)| metric_sum(&samples, name, labels) as u64)
            .collect();
        for ((name, labels, want), got) in expected.iter().zip(&seen) {
            assert!(
                got <= want,
                "{name}{labels:?}: {got} counted, {want} happened"
            );
        }
        if expected
            .iter()
            .zip(&seen)
            .all(|((_, _, want), got)| got == want)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never matched the run: {:?}",
            expected
                .iter()
                .zip(&seen)
                .map(|((n, l, w), g)| format!("{n}{l:?} {g}/{w}"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET uri`, with `x-request-id: request_id` when given.
pub fn get(uri: &str, request_id: Option<&str>) -> axum::http::Request<axum::body::Body> {
    let mut builder = axum::http::Request::get(uri);
    if let Some(id) = request_id {
        builder = builder.header("x-request-id", id);
    }
    builder.body(axum::body::Body::empty()).unwrap()
}
