//! Conditional product updates and paged order lists through the router
//! (`oneshot` on the embedded pipeline).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::Router;
use common::{auth, order_body, token};
use oms::domain::Role;
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use serde_json::{json, Value};

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    bearer: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    common::call(app, method, uri, Some(bearer), headers, body).await
}

#[tokio::test]
async fn product_stock_changes_need_the_version_or_are_relative() {
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(auth()));
    let admin = token(1, Role::Admin);
    let (status, _, created) = call(
        &app,
        "POST",
        "/api/v1/products",
        &admin,
        &[],
        Some(json!({"productId": 7, "name": "Tteokbokki", "price": 12900, "stock": 500})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["version"], 0);
    let put = |body: Value, headers: Vec<(&'static str, &'static str)>| {
        let app = app.clone();
        let admin = admin.clone();
        async move {
            call(
                &app,
                "PUT",
                "/api/v1/products/7",
                &admin,
                &headers,
                Some(body),
            )
            .await
        }
    };

    // The same stock as now, without a version: a plain rename.
    let (status, headers, body) =
        put(json!({"name": "A", "price": 12900, "stock": 500}), vec![]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ETAG], "\"1\"");
    // Another stock without a version: 428; with a stale one: 412.
    let (status, _, body) = put(json!({"name": "A", "price": 12900, "stock": 900}), vec![]).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{body}");
    assert_eq!(body["code"], "PRECONDITION_REQUIRED");
    let (status, _, body) = put(
        json!({"name": "A", "price": 12900, "stock": 900}),
        vec![("if-match", "\"0\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["code"], "PRECONDITION_FAILED");
    // The current version (header or body) sets it.
    let (status, _, body) = put(
        json!({"name": "A", "price": 12900, "stock": 900}),
        vec![("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(
        (status, body["stock"].as_i64()),
        (StatusCode::OK, Some(900))
    );
    let (status, _, body) = put(
        json!({"name": "A", "price": 12900, "stock": 800, "version": 2}),
        vec![],
    )
    .await;
    assert_eq!(
        (status, body["stock"].as_i64()),
        (StatusCode::OK, Some(800))
    );
    // Relative changes; never below zero; not both kinds at once.
    let (status, _, body) = put(
        json!({"name": "A", "price": 12900, "stockDelta": -300}),
        vec![],
    )
    .await;
    assert_eq!(
        (status, body["stock"].as_i64()),
        (StatusCode::OK, Some(500))
    );
    let (status, _, _) = put(
        json!({"name": "A", "price": 12900, "stockDelta": -501}),
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = put(
        json!({"name": "A", "price": 12900, "stock": 5, "stockDelta": 1}),
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = put(
        json!({"name": "A", "price": 12900, "stock": 5}),
        vec![("if-match", "not-a-version")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    pipeline.shutdown().await;
}

#[tokio::test]
async fn order_lists_are_paged_newest_first() {
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(auth()));
    let admin = token(1, Role::Admin);
    let buyer = token(42, Role::User);
    call(
        &app,
        "POST",
        "/api/v1/products",
        &admin,
        &[],
        Some(json!({"productId": 1, "name": "A", "price": 100, "stock": 50})),
    )
    .await;
    for _ in 0..5 {
        let (status, _, _) = call(
            &app,
            "POST",
            "/api/v1/orders",
            &buyer,
            &[],
            Some(order_body(&[(1, 1)])),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, all) = call(&app, "GET", "/api/v1/orders", &buyer, &[], None).await;
        if all.as_array().unwrap().len() == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "orders never placed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut uri = "/api/v1/orders?limit=2".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, headers, page) = call(&app, "GET", &uri, &buyer, &[], None).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        let page = page.as_array().unwrap().clone();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|o| o["orderId"].as_u64().unwrap()));
        match headers.get(header::LINK) {
            Some(link) => {
                let link = link.to_str().unwrap();
                let next = link.trim_start_matches('<').split('>').next().unwrap();
                let cursor = headers["x-next-cursor"].to_str().unwrap();
                assert!(next.ends_with(&format!("cursor={cursor}")), "{link}");
                uri = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=-1"] {
        let (status, _, body) = call(
            &app,
            "GET",
            &format!("/api/v1/orders?{bad}"),
            &buyer,
            &[],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    pipeline.shutdown().await;
}
