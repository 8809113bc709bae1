//! Payments and the order life cycle through the router, on the embedded
//! pipeline (in-memory gateway: `decline-…` declined, `timeout-…` charged
//! but unanswered): every status of the contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use common::{auth, order_body, token};
use oms::application::LifecyclePolicy;
use oms::config::FrontDoor;
use oms::domain::{OrderStatus, Role};
use oms::embedded::{EmbeddedOptions, EmbeddedPipeline};
use oms::http::router;
use serde_json::{json, Value};

struct Api {
    app: Router,
    pipeline: EmbeddedPipeline,
}

fn api(payment_timeout: Duration) -> Api {
    let pipeline = EmbeddedPipeline::start_with_options(EmbeddedOptions {
        front_door: FrontDoor {
            order_rate: None,
            ..FrontDoor::default()
        },
        payment_timeout: Some(payment_timeout),
        lifecycle: Some(LifecyclePolicy {
            every: Duration::from_millis(50),
            doubt_after: Duration::from_millis(200),
            ..LifecyclePolicy::default()
        }),
    });
    Api {
        app: router(pipeline.app_state(auth())),
        pipeline,
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (s, _, b) = common::call(app, method, uri, Some(bearer), &[], body).await;
    (s, b)
}

fn user(id: u64) -> String {
    token(id, Role::User)
}

async fn stock(app: &Router) -> i64 {
    call(app, "GET", "/api/v1/products/1", &user(2), None)
        .await
        .1["stock"]
        .as_i64()
        .unwrap()
}

/// Product 1 (price 100, stock 10) and one order of `units` by `member`;
/// returns the order id once placed.
async fn placed(app: &Router, member: u64, units: u32) -> u64 {
    let (s, _) = call(
        app,
        "POST",
        "/api/v1/products",
        &token(1, Role::Admin),
        Some(json!({"productId": 1, "name": "A", "price": 100, "stock": 10})),
    )
    .await;
    assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT);
    let (s, b) = call(
        app,
        "POST",
        "/api/v1/orders",
        &user(member),
        Some(order_body(&[(1, units)])),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let trace = b["traceId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, t) = call(
            app,
            "GET",
            &format!("/api/v1/orders/by-trace/{trace}"),
            &user(member),
            None,
        )
        .await;
        if t["status"] == "COMPLETED" {
            return t["orderId"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "not placed: {t}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn confirm(
    app: &Router,
    member: u64,
    order: u64,
    key: &str,
    amount: Value,
) -> (StatusCode, Value) {
    call(
        app,
        "POST",
        "/api/v1/payments/confirm",
        &user(member),
        Some(json!({"orderId": order, "paymentKey": key, "amount": amount})),
    )
    .await
}

async fn until_status(app: &Router, member: u64, order: u64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, o) = call(
            app,
            "GET",
            &format!("/api/v1/orders/{order}"),
            &user(member),
            None,
        )
        .await;
        if o["status"] == status {
            return o;
        }
        assert!(Instant::now() < deadline, "never {status}: {o}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_placed_order_is_paid_once_and_refunded() {
    let api = api(Duration::from_secs(600));
    let app = &api.app;
    let order = placed(app, 7, 2).await;
    let (_, o) = call(
        app,
        "GET",
        &format!("/api/v1/orders/{order}"),
        &user(7),
        None,
    )
    .await;
    assert_eq!(o["status"], "PENDING_PAYMENT");
    assert!(o["paymentDueAt"].is_string());
    assert_eq!(stock(app).await, 8);

    // Bad input: never the gateway, never a 500.
    for (member, key, amount, status, code) in [
        (
            7,
            "pay-7",
            json!(199),
            StatusCode::BAD_REQUEST,
            "AMOUNT_MISMATCH",
        ),
        (
            8,
            "pay-7",
            json!(200),
            StatusCode::NOT_FOUND,
            "ORDER_NOT_FOUND",
        ),
        (
            7,
            "bad key",
            json!(200),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            7,
            "pay-7",
            json!(-200),
            StatusCode::BAD_REQUEST,
            "AMOUNT_MISMATCH",
        ),
        (
            7,
            "pay-7",
            json!(0),
            StatusCode::BAD_REQUEST,
            "AMOUNT_MISMATCH",
        ),
        (
            7,
            "pay-7",
            json!(1e30),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            7,
            "pay-7",
            json!("200"),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
    ] {
        let (s, b) = confirm(app, member, order, key, amount.clone()).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (status, Some(code)),
            "{key} {amount}: {b}"
        );
    }
    let (s, paid) = confirm(app, 7, order, "pay-7", json!(200)).await;
    assert_eq!(s, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["paymentKey"], "pay-7");
    assert_eq!(paid["amount"], 200);
    assert!(paid["approvedAt"].is_string());
    // Confirming again answers the same; another key is refused.
    assert_eq!(
        confirm(app, 7, order, "pay-7", json!(200)).await,
        (StatusCode::OK, paid)
    );
    let (s, b) = confirm(app, 7, order, "pay-other", json!(200)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("ORDER_NOT_PAYABLE"))
    );
    assert_eq!(api.pipeline.gateway.charges("pay-7"), 1);

    let (s, refunded) = call(
        app,
        "POST",
        &format!("/api/v1/orders/{order}/cancel"),
        &user(7),
        None,
    )
    .await;
    assert_eq!(
        (s, refunded["status"].as_str()),
        (StatusCode::OK, Some("REFUNDED"))
    );
    assert_eq!(stock(app).await, 10);
    let (s, b) = call(
        app,
        "POST",
        &format!("/api/v1/orders/{order}/cancel"),
        &user(7),
        None,
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("ORDER_NOT_CANCELLABLE"))
    );
    let (s, b) = confirm(app, 7, order, "pay-7", json!(200)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("ORDER_NOT_PAYABLE"))
    );
    assert_eq!(stock(app).await, 10, "given back once");
}

#[tokio::test]
async fn declined_unknown_and_cancelled_payments() {
    let api = api(Duration::from_secs(600));
    let app = &api.app;
    let order = placed(app, 7, 1).await;
    let (s, b) = confirm(app, 7, order, "decline-1", json!(100)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("PAYMENT_DECLINED")),
        "{b}"
    );
    assert_eq!(b["gatewayCode"], "REJECT_CARD_COMPANY");
    // Declined leaves it payable; a lost answer leaves it in doubt.
    let (s, b) = confirm(app, 7, order, "timeout-1", json!(100)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("PAYMENT_UNKNOWN")),
        "{b}"
    );
    let (s, b) = call(
        app,
        "POST",
        &format!("/api/v1/orders/{order}/cancel"),
        &user(7),
        None,
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("ORDER_NOT_CANCELLABLE"))
    );
    // The keeper asks the gateway: it was charged, so the order is PAID.
    let paid = until_status(app, 7, order, "PAID").await;
    assert_eq!(paid["payment"]["paymentKey"], "timeout-1");
    assert_eq!(api.pipeline.gateway.charges("timeout-1"), 1);

    // An operator cancels an unpaid order of someone else.
    let other = placed(app, 8, 3).await;
    assert_eq!(stock(app).await, 6);
    let (s, b) = call(
        app,
        "POST",
        &format!("/api/v1/orders/{other}/cancel"),
        &token(1, Role::Admin),
        None,
    )
    .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED")),
        "{b}"
    );
    assert_eq!(stock(app).await, 9);
    let (s, _) = call(
        app,
        "POST",
        &format!("/api/v1/orders/{other}/cancel"),
        &user(7),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another buyer's order");
    let (s, _) = call(
        app,
        "POST",
        "/api/v1/orders/not-a-number/cancel",
        &user(7),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unpaid_order_expires_and_gives_its_units_back() {
    let api = api(Duration::from_secs(1));
    let app = &api.app;
    let order = placed(app, 7, 4).await;
    assert_eq!(stock(app).await, 6);
    until_status(app, 7, order, "EXPIRED").await;
    assert_eq!(stock(app).await, 10);
    let (s, b) = confirm(app, 7, order, "pay-late", json!(400)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("ORDER_NOT_PAYABLE"))
    );
    // One event per transition, in order.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = api.pipeline.queue.events();
        let mine: Vec<_> = events.iter().filter(|e| e.order_id.0 == order).collect();
        if !mine.is_empty() {
            assert_eq!(mine.len(), 1);
            assert_eq!(
                (mine[0].from, mine[0].to),
                (OrderStatus::PendingPayment, OrderStatus::Expired)
            );
            break;
        }
        assert!(Instant::now() < deadline, "no event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
