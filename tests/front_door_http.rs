//! The front door of a sale through the router: unknown products, sale
//! windows, purchase limits, the per-member order rate and the waiting
//! room, each status of the contract with its problem+json body.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::Router;
use common::{auth, order_body, token};
use oms::config::FrontDoor;
use oms::domain::{ProductId, Rate, Role, RoomPolicy};
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use oms::port::outbound::StockGate;
use serde_json::{json, Value};

struct Api {
    app: Router,
    pipeline: EmbeddedPipeline,
}

fn api(front_door: FrontDoor) -> Api {
    let pipeline = EmbeddedPipeline::start_with(front_door);
    Api {
        app: router(pipeline.app_state(auth())),
        pipeline,
    }
}

fn unlimited() -> FrontDoor {
    FrontDoor {
        order_rate: None,
        ..FrontDoor::default()
    }
}

fn with_room(policy: RoomPolicy) -> FrontDoor {
    FrontDoor {
        waiting_room: Some(policy),
        order_rate: None,
        ..FrontDoor::default()
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    common::call(app, method, uri, Some(bearer), &[], body).await
}

fn admin() -> String {
    token(1, Role::Admin)
}

fn user(id: u64) -> String {
    token(id, Role::User)
}

async fn create(app: &Router, body: Value) -> (StatusCode, Value) {
    let (s, _, b) = call(app, "POST", "/api/v1/products", &admin(), Some(body)).await;
    (s, b)
}

async fn product(app: &Router, id: u64, stock: i64, rules: Value) {
    let mut body = json!({"productId": id, "name": "Tteokbokki", "price": 12900, "stock": stock});
    if let (Some(b), Some(r)) = (body.as_object_mut(), rules.as_object()) {
        b.extend(r.clone());
    }
    let (s, b) = create(app, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn order(
    app: &Router,
    member: u64,
    lines: &[(u64, u32)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    call(
        app,
        "POST",
        "/api/v1/orders",
        &user(member),
        Some(order_body(lines)),
    )
    .await
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339()
}

#[tokio::test]
async fn an_unknown_product_is_refused_at_intake_and_never_queued() {
    let api = api(unlimited());
    product(&api.app, 1, 10, json!({})).await;
    let (s, _, b) = order(&api.app, 7, &[(1, 1), (999, 1)]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["code"], "PRODUCT_NOT_FOUND");
    // Nothing reserved, nothing queued, nothing dead-lettered.
    assert_eq!(
        api.pipeline.gate.available(ProductId(1)).await.unwrap(),
        Some(10)
    );
    let (_, _, mine) = call(&api.app, "GET", "/api/v1/orders", &user(7), None).await;
    assert_eq!(mine, json!([]));
    assert!(api.pipeline.queue.dead_letters().is_empty());
}

#[tokio::test]
async fn bad_rules_are_refused_with_400() {
    let api = api(unlimited());
    let now = chrono::Utc::now();
    let base = |extra: Value| {
        let mut body = json!({"productId": 5, "name": "A", "price": 100, "stock": 1});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for bad in [
        json!({"maxPerMember": 0}),
        json!({"maxPerMember": -3}),
        json!({"saleStartsAt": rfc3339(now + chrono::Duration::hours(2)),
               "saleEndsAt": rfc3339(now + chrono::Duration::hours(1))}),
        json!({"saleEndsAt": rfc3339(now - chrono::Duration::minutes(1))}),
        json!({"saleStartsAt": "tomorrow"}),
        json!({"maxPerMember": "two"}),
    ] {
        let (s, b) = create(&api.app, base(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {b}");
    }
    // None of them created the product.
    let (s, _, _) = call(&api.app, "GET", "/api/v1/products/5", &user(2), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rules_are_shown_kept_cleared_and_set_by_updates() {
    let api = api(unlimited());
    let ends = chrono::Utc::now() + chrono::Duration::hours(1);
    product(
        &api.app,
        3,
        10,
        json!({"maxPerMember": 2, "saleEndsAt": rfc3339(ends)}),
    )
    .await;
    let (_, _, got) = call(&api.app, "GET", "/api/v1/products/3", &user(2), None).await;
    assert_eq!(got["maxPerMember"], 2);
    assert!(got["saleEndsAt"].is_string());
    assert!(got.get("saleStartsAt").is_none());
    // A rename keeps the rules; `null` clears one.
    let operator = admin();
    let put = |body: Value| call(&api.app, "PUT", "/api/v1/products/3", &operator, Some(body));
    let (s, _, kept) = put(json!({"name": "B", "price": 100})).await;
    assert_eq!(s, StatusCode::OK, "{kept}");
    assert_eq!(kept["maxPerMember"], 2);
    let (_, _, cleared) = put(json!({"name": "B", "price": 100, "maxPerMember": null})).await;
    assert!(cleared.get("maxPerMember").is_none(), "{cleared}");
    assert!(cleared["saleEndsAt"].is_string());
    let (s, _, b) = put(json!({"name": "B", "price": 100, "maxPerMember": 0})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

#[tokio::test]
async fn orders_outside_the_window_get_409() {
    let api = api(unlimited());
    let now = chrono::Utc::now();
    product(
        &api.app,
        1,
        10,
        json!({"saleStartsAt": rfc3339(now + chrono::Duration::hours(1))}),
    )
    .await;
    let (s, _, b) = order(&api.app, 7, &[(1, 1)]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("SALE_NOT_STARTED")),
        "{b}"
    );

    product(
        &api.app,
        2,
        10,
        json!({"saleEndsAt": rfc3339(now + chrono::Duration::milliseconds(1500))}),
    )
    .await;
    let (s, _, b) = order(&api.app, 7, &[(2, 1)]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, b) = order(&api.app, 8, &[(2, 1)]).await;
        if s == StatusCode::CONFLICT {
            assert_eq!(b["code"], "SALE_ENDED");
            break;
        }
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert!(Instant::now() < deadline, "the sale never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_member_gets_exactly_the_limit_from_100_concurrent_orders() {
    let api = api(unlimited());
    product(&api.app, 1, 1000, json!({"maxPerMember": 2})).await;
    let (s, _, b) = order(&api.app, 9, &[(1, 3)]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("LIMIT_EXCEEDED")),
        "{b}"
    );

    let answers = futures::future::join_all((0..100).map(|_| order(&api.app, 7, &[(1, 1)]))).await;
    let accepted = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::ACCEPTED)
        .count();
    let refused = answers
        .iter()
        .filter(|(s, _, b)| *s == StatusCode::CONFLICT && b["code"] == "LIMIT_EXCEEDED")
        .count();
    assert_eq!((accepted, refused), (2, 98));
    // Once placed, the member holds exactly 2 units; others still buy.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, mine) = call(&api.app, "GET", "/api/v1/orders", &user(7), None).await;
        let units: u64 = mine
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|o| o["items"].as_array().unwrap().clone())
            .map(|i| i["quantity"].as_u64().unwrap())
            .sum();
        if units == 2 {
            break;
        }
        assert!(units < 2, "{units} units sold to one member");
        assert!(Instant::now() < deadline, "orders never placed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _, _) = order(&api.app, 8, &[(1, 2)]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, b) = order(&api.app, 7, &[(1, 1)]).await;
    assert_eq!(b["code"], "LIMIT_EXCEEDED", "{s} {b}");
}

#[tokio::test]
async fn a_member_over_the_order_rate_gets_429_with_retry_after() {
    let api = api(FrontDoor {
        order_rate: Some(Rate::per_second(10)),
        ..FrontDoor::default()
    });
    product(&api.app, 1, 10_000, json!({})).await;
    let started = Instant::now();
    let mut accepted = 0;
    let mut limited = None;
    for _ in 0..30 {
        let (s, headers, b) = order(&api.app, 7, &[(1, 1)]).await;
        match s {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(b["code"], "RATE_LIMITED");
                limited = Some(headers[header::RETRY_AFTER].to_str().unwrap().to_owned());
            }
            other => panic!("{other}: {b}"),
        }
    }
    // A burst of 10, plus one per 100 ms that passed.
    let bound = 10 + (started.elapsed().as_millis() / 100) as usize;
    assert!((10..=bound).contains(&accepted), "{accepted} accepted");
    assert_eq!(limited.as_deref(), Some("1"));
    // Another member is not limited by the first.
    let (s, _, _) = order(&api.app, 8, &[(1, 1)]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_waiting_room_is_404_when_off() {
    let api = api(unlimited());
    let (s, _, b) = call(&api.app, "POST", "/api/v1/waiting-room", &user(1), None).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("WAITING_ROOM_OFF"))
    );
}

async fn until_admitted(app: &Router, member: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _, b) = call(app, "GET", "/api/v1/waiting-room", &user(member), None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["status"] == "ADMITTED" {
            return b;
        }
        assert_eq!(b["status"], "WAITING");
        assert!(Instant::now() < deadline, "{member} never admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_waiting_room_admits_in_order_and_guards_the_order_endpoint() {
    let api = api(with_room(RoomPolicy {
        admit_per_sec: 5,
        max_active: 1,
        ttl: Duration::from_secs(60),
    }));
    product(&api.app, 1, 100, json!({})).await;
    // Never entered: 404 on status; 429 on orders, with the place entering
    // would give (the line is empty: 1) and where to enter.
    let (s, _, b) = call(&api.app, "GET", "/api/v1/waiting-room", &user(7), None).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_IN_WAITING_ROOM"))
    );
    let (s, headers, b) = order(&api.app, 7, &[(1, 1)]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("NOT_ADMITTED"))
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(b["position"], 1, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("POST /api/v1/waiting-room"),
        "{b}"
    );

    for (member, place) in [(7, 1), (8, 2), (9, 3)] {
        let (s, _, b) = call(
            &api.app,
            "POST",
            "/api/v1/waiting-room",
            &user(member),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        if b["status"] == "WAITING" {
            assert!(b["position"].as_u64().unwrap() <= place, "{b}");
            assert!(b["estimatedWaitSecs"].is_u64());
        }
    }
    // Entering twice keeps the place.
    let (_, _, again) = call(&api.app, "POST", "/api/v1/waiting-room", &user(9), None).await;
    let (_, _, status) = call(&api.app, "GET", "/api/v1/waiting-room", &user(9), None).await;
    assert_eq!(again["position"], status["position"]);

    let first = until_admitted(&api.app, 7).await;
    assert!(first["expiresAt"].is_string());
    // One slot: the next in line waits, with a position, until 7's order is
    // final.
    let (s, headers, b) = order(&api.app, 8, &[(1, 1)]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("NOT_ADMITTED"))
    );
    assert_eq!(b["position"], 1);
    assert!(
        headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let (s, _, b) = order(&api.app, 7, &[(1, 1)]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // 7's order becomes final, the slot passes to 8, then 9.
    until_admitted(&api.app, 8).await;
    let (s, _, b) = call(&api.app, "GET", "/api/v1/waiting-room", &user(7), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _, _) = order(&api.app, 8, &[(1, 1)]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    until_admitted(&api.app, 9).await;
}

#[tokio::test]
async fn an_expired_admission_no_longer_orders() {
    let api = api(with_room(RoomPolicy {
        admit_per_sec: 50,
        max_active: 10,
        ttl: Duration::from_secs(1),
    }));
    product(&api.app, 1, 100, json!({})).await;
    call(&api.app, "POST", "/api/v1/waiting-room", &user(7), None).await;
    until_admitted(&api.app, 7).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, _) = call(&api.app, "GET", "/api/v1/waiting-room", &user(7), None).await;
        if s == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "the admission never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _, b) = order(&api.app, 7, &[(1, 1)]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("NOT_ADMITTED"))
    );
}
