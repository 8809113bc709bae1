//! The operators' views through the router, on the embedded pipeline:
//! `GET /api/v1/admin/orders` (filters, pages) and
//! `GET /api/v1/admin/products/{productId}/stock`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use common::{auth, order_body, token};
use oms::config::FrontDoor;
use oms::domain::Role;
use oms::embedded::{EmbeddedOptions, EmbeddedPipeline};
use oms::http::router;
use serde_json::{json, Value};

fn api() -> (Router, EmbeddedPipeline) {
    let pipeline = EmbeddedPipeline::start_with_options(EmbeddedOptions {
        front_door: FrontDoor {
            order_rate: None,
            ..FrontDoor::default()
        },
        ..EmbeddedOptions::default()
    });
    (router(pipeline.app_state(auth())), pipeline)
}

fn admin() -> String {
    token(1, Role::Admin)
}

async fn get(app: &Router, uri: &str, bearer: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    common::call(app, "GET", uri, bearer, &[], None).await
}

async fn post(app: &Router, uri: &str, bearer: &str, body: Value) -> (StatusCode, Value) {
    let (s, _, b) = common::call(app, "POST", uri, Some(bearer), &[], Some(body)).await;
    (s, b)
}

async fn create_product(app: &Router, id: u64, stock: i64) {
    let body = json!({"productId": id, "name": format!("P{id}"), "price": 100, "stock": stock});
    let (s, b) = post(app, "/api/v1/products", &admin(), body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// Orders `lines` as `member` and waits until the order is placed.
async fn order(app: &Router, member: u64, lines: &[(u64, u32)]) -> u64 {
    let buyer = token(member, Role::User);
    let (s, b) = post(app, "/api/v1/orders", &buyer, order_body(lines)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let uri = format!("/api/v1/orders/by-trace/{}", b["traceId"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, t) = get(app, &uri, Some(&buyer)).await;
        if let Some(id) = t["orderId"].as_u64() {
            return id;
        }
        assert!(Instant::now() < deadline, "not placed: {t}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ids(orders: &Value) -> Vec<u64> {
    orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_u64().unwrap())
        .collect()
}

/// Follows `Link: <…>; rel="next"` from `uri` on; every page's ids.
async fn pages(app: &Router, uri: &str) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut next = Some(uri.to_owned());
    while let Some(uri) = next.take() {
        let (s, headers, body) = get(app, &uri, Some(&admin())).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {body}");
        out.push(ids(&body));
        if let Some(link) = headers.get("link") {
            let link = link.to_str().unwrap();
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("bad Link: {link}"));
            let cursor = headers["x-next-cursor"].to_str().unwrap();
            assert!(target.ends_with(&format!("cursor={cursor}")), "{link}");
            next = Some(target.to_owned());
        }
    }
    out
}

/// Six orders of five members: products 1 and 2, one paid, one
/// cancelled. Returns the ids in placement order.
async fn sale(app: &Router) -> Vec<u64> {
    create_product(app, 1, 10).await;
    create_product(app, 2, 10).await;
    let mut placed = Vec::new();
    for (member, lines) in [
        (11, vec![(1, 1)]),
        (12, vec![(1, 2), (2, 1)]),
        (13, vec![(2, 3)]),
        (14, vec![(1, 1)]),
        (15, vec![(1, 2)]),
        (11, vec![(2, 1)]),
    ] {
        placed.push(order(app, member, &lines).await);
    }
    // The second order is paid (2 × 100 + 100), the fourth cancelled.
    let pay = json!({"orderId": placed[1], "paymentKey": "pay-admin", "amount": 300});
    let (s, b) = post(app, "/api/v1/payments/confirm", &token(12, Role::User), pay).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let cancel = format!("/api/v1/orders/{}/cancel", placed[3]);
    let (s, b) = post(app, &cancel, &token(14, Role::User), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    placed
}

#[tokio::test]
async fn the_views_are_for_operators_only() {
    let (app, _pipeline) = api();
    let user = token(5, Role::User);
    for uri in [
        "/api/v1/admin/orders",
        "/api/v1/admin/orders?status=SHIPPED",
        "/api/v1/admin/products/1/stock",
        "/api/v1/admin/products/0/stock",
    ] {
        let (s, h, b) = get(&app, uri, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(b["code"], "UNAUTHORIZED");
        assert_eq!(h["www-authenticate"], "Bearer");
        // A buyer learns nothing, not even that the query is bad.
        let (s, _, b) = get(&app, uri, Some(&user)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(b["code"], "FORBIDDEN");
    }
}

#[tokio::test]
async fn bad_queries_are_answered_400_and_unknown_products_404() {
    let (app, _pipeline) = api();
    for uri in [
        "/api/v1/admin/orders?status=SHIPPED",
        "/api/v1/admin/orders?status=paid",
        "/api/v1/admin/orders?status=ORDERED",
        "/api/v1/admin/orders?status=",
        "/api/v1/admin/orders?productId=0",
        "/api/v1/admin/orders?productId=abc",
        "/api/v1/admin/orders?productId=-1",
        "/api/v1/admin/orders?limit=0",
        "/api/v1/admin/orders?limit=101",
        "/api/v1/admin/orders?cursor=x",
        "/api/v1/admin/products/0/stock",
        "/api/v1/admin/products/abc/stock",
    ] {
        let (s, _, b) = get(&app, uri, Some(&admin())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {b}");
        assert_eq!(b["code"], "VALIDATION_FAILED", "{uri}");
    }
    let (s, _, b) = get(&app, "/api/v1/admin/products/77/stock", Some(&admin())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["code"], "PRODUCT_NOT_FOUND");
    let (s, _, b) = get(&app, "/api/v1/admin/orders", Some(&admin())).await;
    assert_eq!((s, b), (StatusCode::OK, json!([])), "no orders yet");
}

#[tokio::test]
async fn operators_see_every_members_orders_filtered_and_paged() {
    let (app, _pipeline) = api();
    let placed = sale(&app).await;
    let newest_first =
        |keep: &[usize]| -> Vec<u64> { keep.iter().rev().map(|&i| placed[i]).collect() };

    let (s, h, all) = get(&app, "/api/v1/admin/orders", Some(&admin())).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("link").is_none(), "one page");
    assert_eq!(ids(&all), newest_first(&[0, 1, 2, 3, 4, 5]));
    // Each order as GET /api/v1/orders/{id} shows it, byte for byte.
    for o in all.as_array().unwrap() {
        let uri = format!("/api/v1/orders/{}", o["orderId"]);
        let (_, _, one) = get(&app, &uri, Some(&admin())).await;
        assert_eq!(o, &one);
    }

    for (query, expected) in [
        ("status=PAID", newest_first(&[1])),
        ("status=CANCELLED", newest_first(&[3])),
        ("status=PENDING_PAYMENT", newest_first(&[0, 2, 4, 5])),
        ("status=REFUNDED", vec![]),
        ("status=EXPIRED", vec![]),
        ("productId=1", newest_first(&[0, 1, 3, 4])),
        ("productId=2", newest_first(&[1, 2, 5])),
        ("productId=3", vec![]),
        ("status=PENDING_PAYMENT&productId=2", newest_first(&[2, 5])),
        ("productId=1&status=PAID", newest_first(&[1])),
    ] {
        let uri = format!("/api/v1/admin/orders?{query}");
        let (s, _, body) = get(&app, &uri, Some(&admin())).await;
        assert_eq!(s, StatusCode::OK, "{query}: {body}");
        assert_eq!(ids(&body), expected, "{query}");
    }

    // Pages of 1, 2 and 4, following Link: disjoint, newest first, all of
    // them, and the filters carried from page to page.
    for (query, expected) in [
        ("", newest_first(&[0, 1, 2, 3, 4, 5])),
        ("status=PENDING_PAYMENT&", newest_first(&[0, 2, 4, 5])),
        ("productId=1&", newest_first(&[0, 1, 3, 4])),
    ] {
        for limit in [1, 2, 4] {
            let found = pages(&app, &format!("/api/v1/admin/orders?{query}limit={limit}")).await;
            assert!(found.iter().all(|p| p.len() <= limit));
            let flat: Vec<u64> = found.concat();
            assert_eq!(flat, expected, "{query} by {limit}");
            let distinct: BTreeSet<u64> = flat.iter().copied().collect();
            assert_eq!(distinct.len(), flat.len(), "disjoint pages");
        }
    }
}

#[tokio::test]
async fn the_stock_view_adds_up() {
    let (app, _pipeline) = api();
    sale(&app).await;
    // Product 1: 10 − (1 + 2 + 2) left (the cancelled order's unit is
    // back); 1 + 2 units waiting for payment, 2 paid.
    let (s, _, body) = get(&app, "/api/v1/admin/products/1/stock", Some(&admin())).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, _, product) = get(&app, "/api/v1/products/1", Some(&admin())).await;
    assert_eq!(
        body,
        json!({
            "productId": 1,
            "stock": 5,
            "version": product["version"],
            "gateLevel": 5,
            "held": {"pendingPayment": 3, "paid": 2}
        })
    );
    let (_, _, body) = get(&app, "/api/v1/admin/products/2/stock", Some(&admin())).await;
    assert_eq!(body["stock"], 5);
    assert_eq!(body["gateLevel"], 5);
    assert_eq!(body["held"], json!({"pendingPayment": 4, "paid": 1}));
}
