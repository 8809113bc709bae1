//! The router of `oms::http`, driven with `oneshot`: every status code of the
//! API contract, always with a problem+json body on errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{auth, order_body, token};
use oms::application::ProductService;
use oms::domain::{OmsError, Role};
use oms::embedded::EmbeddedPipeline;
use oms::http::{router, AppState};
use oms::port::inbound::MockRequestOrderUseCase;
use oms::port::outbound::{HealthCheck, MockHealthCheck, MockProductStore};
use serde_json::{json, Value};

struct Api {
    app: Router,
    _pipeline: EmbeddedPipeline,
    state: AppState,
}

fn api() -> Api {
    let pipeline = EmbeddedPipeline::start();
    let state = pipeline.app_state(auth());
    Api {
        app: router(state.clone()),
        _pipeline: pipeline,
        state,
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    common::call(app, method, uri, bearer, &[], body).await
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    common::send(app, req).await
}

fn admin() -> String {
    token(1, Role::Admin)
}

fn user(id: u64) -> String {
    token(id, Role::User)
}

async fn add_product(app: &Router, id: u64, stock: i64) {
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&admin()),
        Some(json!({"productId": id, "name": "Tteokbokki", "price": 12900, "stock": stock})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn final_trace(app: &Router, trace: &str, bearer: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, b) = call(
            app,
            "GET",
            &format!("/api/v1/orders/by-trace/{trace}"),
            Some(bearer),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["status"] != "PROCESSING" {
            return b;
        }
        assert!(Instant::now() < deadline, "trace {trace} still PROCESSING");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let api = api();
    let (s, _, _) = call(&api.app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = call(&api.app, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn products_crud_and_statuses() {
    let api = api();
    let app = &api.app;
    let body = json!({"productId": 1, "name": "Tteokbokki", "price": 12900, "stock": 500});
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&admin()),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut created = body.clone();
    created["version"] = json!(0);
    assert_eq!(b, created);
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&admin()),
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("PRODUCT_EXISTS"))
    );
    let (s, _, _) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&user(5)),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The role is checked before the input: a member without it gets 403
    // whatever the body, path or query.
    for (method, path, body) in [
        ("POST", "/api/v1/products", json!({"productId": "x"})),
        ("PUT", "/api/v1/products/1", json!({"name": ""})),
        (
            "PUT",
            "/api/v1/products/%FF",
            json!({"name": "x", "price": 1}),
        ),
        ("GET", "/api/v1/admin/products/abc/stock", Value::Null),
        ("GET", "/api/v1/admin/orders?limit=x", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, _, b) = call(app, method, path, Some(&user(5)), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {b}");
    }
    let (s, _, _) = call(app, "POST", "/api/v1/products", None, Some(body)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for bad in [
        json!({"productId": 2, "name": "x", "price": 0, "stock": 1}),
        json!({"productId": 2, "name": "x", "price": 10, "stock": -1}),
        json!({"productId": 2, "name": "", "price": 10, "stock": 1}),
        json!({"productId": 2, "name": "x", "price": "ten", "stock": 1}),
        json!({"productId": 0, "name": "x", "price": 10, "stock": 1}),
    ] {
        let (s, _, b) = call(app, "POST", "/api/v1/products", Some(&admin()), Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    }

    let (s, _, b) = call(app, "GET", "/api/v1/products/1", Some(&user(5)), None).await;
    assert_eq!((s, b["stock"].as_i64()), (StatusCode::OK, Some(500)));
    let (s, _, _) = call(app, "GET", "/api/v1/products/9", Some(&user(5)), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(app, "GET", "/api/v1/products/abc", Some(&user(5)), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A segment that is not UTF-8 once decoded: a problem like any bad id
    // (`call` checks the problem+json body).
    for (method, path) in [
        ("GET", "/api/v1/products/%FF"),
        ("PUT", "/api/v1/products/%FF"),
        ("GET", "/api/v1/orders/%C3%28"),
        ("GET", "/api/v1/orders/by-trace/%FF"),
        ("POST", "/api/v1/orders/%FF/cancel"),
        ("GET", "/api/v1/admin/products/%FF/stock"),
    ] {
        let body = (method == "PUT").then(|| json!({"name": "x", "price": 1}));
        let (s, _, b) = call(app, method, path, Some(&admin()), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {b}");
        assert_eq!(b["code"], "VALIDATION_FAILED", "{method} {path}");
    }
    let (s, _, _) = call(app, "GET", "/api/v1/products", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Setting the stock names the version read (see docs/API.md).
    let update = json!({"name": "Rabokki", "price": 9900, "stock": 7, "version": 0});
    let (s, _, b) = call(
        app,
        "PUT",
        "/api/v1/products/1",
        Some(&admin()),
        Some(update.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!({"productId": 1, "name": "Rabokki", "price": 9900, "stock": 7, "version": 1})
    );
    let (s, _, _) = call(
        app,
        "PUT",
        "/api/v1/products/9",
        Some(&admin()),
        Some(update.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        app,
        "PUT",
        "/api/v1/products/1",
        Some(&user(3)),
        Some(update),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, b) = call(app, "GET", "/api/v1/products", Some(&user(5)), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!([{"productId": 1, "name": "Rabokki", "price": 9900, "stock": 7, "version": 1}])
    );
}

#[tokio::test]
async fn an_order_is_accepted_processed_and_readable_by_its_owner_only() {
    let api = api();
    let app = &api.app;
    add_product(app, 1, 5).await;
    let (s, headers, b) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&user(42)),
        Some(order_body(&[(1, 2)])),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let trace = b["traceId"].as_str().unwrap().to_owned();
    assert_eq!(
        headers[header::LOCATION],
        format!("/api/v1/orders/by-trace/{trace}").as_str()
    );
    let done = final_trace(app, &trace, &user(42)).await;
    assert_eq!(done["status"], "COMPLETED");
    let order_id = done["orderId"].as_u64().unwrap();
    assert!(done.get("reason").is_none());

    let (s, _, order) = call(
        app,
        "GET",
        &format!("/api/v1/orders/{order_id}"),
        Some(&user(42)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(order["memberId"], 42);
    assert_eq!(order["totalPrice"], 25800);
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert!(order["orderDate"].is_string());
    assert_eq!(order["items"][0]["productName"], "Tteokbokki");
    assert_eq!(order["receiverInfo"]["name"], "Kim");

    // Another member: 404 for the trace and the order, and an empty list.
    let (s, _, _) = call(
        app,
        "GET",
        &format!("/api/v1/orders/by-trace/{trace}"),
        Some(&user(7)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        app,
        "GET",
        &format!("/api/v1/orders/{order_id}"),
        Some(&user(7)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, _, list) = call(app, "GET", "/api/v1/orders", Some(&user(7)), None).await;
    assert_eq!(list, json!([]));
    // ADMIN reads everything.
    let (s, _, _) = call(
        app,
        "GET",
        &format!("/api/v1/orders/{order_id}"),
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        app,
        "GET",
        &format!("/api/v1/orders/by-trace/{trace}"),
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, list) = call(app, "GET", "/api/v1/orders", Some(&user(42)), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Stock as committed.
    let (_, _, p) = call(app, "GET", "/api/v1/products/1", Some(&user(42)), None).await;
    assert_eq!(p["stock"], 3);

    // Out of stock ends FAILED with its reason.
    let (_, _, b) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&user(42)),
        Some(order_body(&[(1, 4)])),
    )
    .await;
    let failed = final_trace(app, b["traceId"].as_str().unwrap(), &user(42)).await;
    assert_eq!(
        (failed["status"].as_str(), failed["reason"].as_str()),
        (Some("FAILED"), Some("OUT_OF_STOCK"))
    );
    // An unknown product is refused at intake: 404, no trace.
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&user(42)),
        Some(order_body(&[(99, 1)])),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PRODUCT_NOT_FOUND"))
    );
    assert!(b.get("traceId").is_none());

    // Unknown or malformed ids.
    let (s, _, _) = call(
        app,
        "GET",
        &format!("/api/v1/orders/by-trace/{}", uuid::Uuid::new_v4()),
        Some(&user(42)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        app,
        "GET",
        "/api/v1/orders/by-trace/not-a-uuid",
        Some(&user(42)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = call(app, "GET", "/api/v1/orders/999", Some(&user(42)), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(app, "GET", "/api/v1/orders/x1", Some(&user(42)), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_order_requests_are_problems() {
    let api = api();
    let app = &api.app;
    let receiver = json!({"name": "Kim", "phone": "010", "address": "Seoul"});
    let too_many: Vec<_> = (1..=101)
        .map(|p| json!({"productId": p, "quantity": 1}))
        .collect();
    for (bad, why) in [
        (
            json!({"items": [], "receiverInfo": receiver}),
            "empty items",
        ),
        (
            json!({"items": too_many, "receiverInfo": receiver}),
            "101 items",
        ),
        (
            json!({"items": [{"productId": 1, "quantity": 0}], "receiverInfo": receiver}),
            "quantity 0",
        ),
        (
            json!({"items": [{"productId": 1, "quantity": -1}], "receiverInfo": receiver}),
            "quantity -1",
        ),
        (
            json!({"items": [{"productId": 1, "quantity": 1001}], "receiverInfo": receiver}),
            "quantity 1001",
        ),
        (
            json!({"items": [{"productId": 1, "quantity": 1}], "receiverInfo": {"name": "", "phone": "1", "address": "a"}}),
            "empty name",
        ),
        (
            json!({"items": [{"productId": 1, "quantity": 1}], "receiverInfo": {"name": "a", "phone": " ", "address": "a"}}),
            "blank phone",
        ),
        (
            json!({"items": [{"productId": 1, "quantity": 1}]}),
            "no receiver",
        ),
        (
            json!({"items": [{"productId": "x", "quantity": 1}], "receiverInfo": receiver}),
            "string id",
        ),
        (json!([1, 2]), "not an object"),
    ] {
        let (s, _, b) = call(app, "POST", "/api/v1/orders", Some(&user(1)), Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{why}: {b}");
    }

    let malformed = Request::post("/api/v1/orders")
        .header(header::AUTHORIZATION, format!("Bearer {}", user(1)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"items\": ["))
        .unwrap();
    assert_eq!(send(app, malformed).await.0, StatusCode::BAD_REQUEST);

    let text = Request::post("/api/v1/orders")
        .header(header::AUTHORIZATION, format!("Bearer {}", user(1)))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(order_body(&[(1, 1)]).to_string()))
        .unwrap();
    assert_eq!(send(app, text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024));
    let huge = Request::post("/api/v1/orders")
        .header(header::AUTHORIZATION, format!("Bearer {}", user(1)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    assert_eq!(send(app, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    for key in ["", "with space", &"k".repeat(65), "tab\tkey"] {
        let req = Request::post("/api/v1/orders")
            .header(header::AUTHORIZATION, format!("Bearer {}", user(1)))
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .body(Body::from(order_body(&[(1, 1)]).to_string()))
            .unwrap();
        assert_eq!(
            send(app, req).await.0,
            StatusCode::BAD_REQUEST,
            "key {key:?}"
        );
    }
    assert!(api._pipeline.traces.is_empty(), "nothing was accepted");
}

#[tokio::test]
async fn tokens_are_checked() {
    let api = api();
    let app = &api.app;
    let expired = auth().mint(5, Role::User, Duration::ZERO).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let foreign = oms::http::JwtAuth::new(b"other")
        .mint(5, Role::User, Duration::from_secs(60))
        .unwrap();
    for bad in ["", "garbage", "a.b.c", &expired, &foreign] {
        let (s, h, b) = call(app, "GET", "/api/v1/orders", Some(bad), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}: {b}");
        assert_eq!(h[header::WWW_AUTHENTICATE], "Bearer");
    }
    let basic = Request::get("/api/v1/orders")
        .header(header::AUTHORIZATION, "Basic Zm9vOmJhcg==")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app, basic).await.0, StatusCode::UNAUTHORIZED);
    // Claims that do not name a positive member or a known role.
    use jsonwebtoken::{encode, EncodingKey, Header};
    let exp = chrono::Utc::now().timestamp() + 600;
    for claims in [
        json!({"sub": "0", "role": "USER", "exp": exp}),
        json!({"sub": "abc", "role": "USER", "exp": exp}),
        json!({"sub": "5", "role": "ROOT", "exp": exp}),
        json!({"sub": "5", "role": "USER"}),
    ] {
        let t = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(common::SECRET),
        )
        .unwrap();
        let (s, _, b) = call(app, "GET", "/api/v1/orders", Some(&t), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{claims}: {b}");
    }
}

#[tokio::test]
async fn idempotency_key_returns_the_same_trace_and_one_order() {
    let api = api();
    let app = &api.app;
    add_product(app, 1, 10).await;
    let post = |member: u64| {
        Request::post("/api/v1/orders")
            .header(header::AUTHORIZATION, format!("Bearer {}", user(member)))
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", "checkout-123")
            .body(Body::from(order_body(&[(1, 1)]).to_string()))
            .unwrap()
    };
    let (s1, _, a) = send(app, post(42)).await;
    let (s2, _, b) = send(app, post(42)).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a["traceId"], b["traceId"]);
    let (_, _, c) = send(app, post(43)).await;
    assert_ne!(a["traceId"], c["traceId"]);
    final_trace(app, a["traceId"].as_str().unwrap(), &user(42)).await;
    final_trace(app, c["traceId"].as_str().unwrap(), &user(43)).await;
    let (_, _, list) = call(app, "GET", "/api/v1/orders", Some(&user(42)), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, _, p) = call(app, "GET", "/api/v1/products/1", Some(&admin()), None).await;
    assert_eq!(p["stock"], 8);
}

#[tokio::test]
async fn an_unavailable_broker_is_503() {
    let api = api();
    let mut intake = MockRequestOrderUseCase::new();
    intake
        .expect_request_order()
        .returning(|_, _, _| Err(OmsError::unavailable("kafka", "broker down")));
    let state = AppState {
        intake: Arc::new(intake),
        ..api.state.clone()
    };
    let app = router(state);
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/orders",
        Some(&user(1)),
        Some(order_body(&[(1, 1)])),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["code"], "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let api = api();
    let (s, _, _) = call(&api.app, "GET", "/nope", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(&api.app, "DELETE", "/api/v1/orders", Some(&user(1)), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_server_error_names_the_dependency_but_never_its_error_text() {
    let api = api();
    let mut intake = MockRequestOrderUseCase::new();
    intake.expect_request_order().returning(|_, _, _| {
        Err(OmsError::unavailable(
            "kafka",
            "Local: Message timed out (broker 10.1.2.3:9092)",
        ))
    });
    let app = router(AppState {
        intake: Arc::new(intake),
        ..api.state.clone()
    });
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/orders",
        Some(&user(1)),
        Some(order_body(&[(1, 1)])),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    let text = b.to_string();
    assert!(b["detail"].as_str().unwrap().contains("kafka"), "{b}");
    for secret in ["Message timed out", "10.1.2.3", "9092"] {
        assert!(!text.contains(secret), "{secret:?} leaked: {b}");
    }
}

#[tokio::test]
async fn a_bad_order_body_lists_every_failing_field() {
    let api = api();
    let app = &api.app;
    let body = json!({
        "items": [
            {"productId": 1, "quantity": 1},
            {"productId": 2, "quantity": 0},
            {"productId": 0, "quantity": 1001},
        ],
        "receiverInfo": {"name": "", "phone": "010-0000-0000", "address": "a".repeat(256)},
    });
    let (s, headers, b) = call(app, "POST", "/api/v1/orders", Some(&user(1)), Some(body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(b["code"], "VALIDATION_FAILED", "{b}");
    assert_eq!(
        b["errors"],
        json!([
            {"field": "items[1].quantity", "code": "out_of_range", "message": "must be between 1 and 1000"},
            {"field": "items[2].quantity", "code": "out_of_range", "message": "must be between 1 and 1000"},
            {"field": "items[2].productId", "code": "out_of_range", "message": "must be a positive integer"},
            {"field": "receiverInfo.name", "code": "required", "message": "must not be empty"},
            {"field": "receiverInfo.address", "code": "too_long", "message": "must be at most 255 characters"},
        ]),
        "{b}"
    );
    let detail = b["detail"].as_str().unwrap();
    for field in b["errors"].as_array().unwrap() {
        let field = field["field"].as_str().unwrap();
        assert!(
            detail.contains(field),
            "{field} not in the detail: {detail}"
        );
    }

    // One failing field: the detail reads as it always did, one error listed.
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&user(1)),
        Some(order_body(&[(1, 0)])),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["detail"],
        "invalid input: items[0].quantity must be between 1 and 1000"
    );
    assert_eq!(
        b["errors"],
        json!([{"field": "items[0].quantity", "code": "out_of_range", "message": "must be between 1 and 1000"}])
    );

    // A body of the wrong shape, a bad header: no field list.
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&user(1)),
        Some(json!({"items": [{"productId": "x", "quantity": 1}]})),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_FAILED"))
    );
    assert!(b.get("errors").is_none(), "{b}");
    let (s, _, b) = common::call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&user(1)),
        &[("Idempotency-Key", "with space")],
        Some(order_body(&[(1, 1)])),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.get("errors").is_none(), "{b}");
    assert!(api._pipeline.traces.is_empty(), "nothing was accepted");
}

#[tokio::test]
async fn signup_and_product_bodies_list_every_failing_field() {
    let api = api();
    let app = &api.app;
    let fields = |b: &Value| -> Vec<(String, String)> {
        b["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors: {b}"))
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
            .collect()
    };

    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": "kim@", "password": "short", "name": " "})),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_FAILED")),
        "{b}"
    );
    assert_eq!(
        fields(&b),
        pairs(&[
            ("email", "malformed"),
            ("password", "too_short"),
            ("name", "required")
        ])
    );

    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&admin()),
        Some(json!({"productId": 0, "name": "", "price": 0, "stock": -1, "maxPerMember": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        fields(&b),
        pairs(&[
            ("productId", "out_of_range"),
            ("name", "required"),
            ("price", "out_of_range"),
            ("stock", "out_of_range"),
            ("maxPerMember", "out_of_range"),
        ])
    );

    add_product(app, 1, 10).await;
    let (s, _, b) = call(
        app,
        "PUT",
        "/api/v1/products/1",
        Some(&admin()),
        Some(json!({"name": " ", "price": -5})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        fields(&b),
        pairs(&[("name", "required"), ("price", "out_of_range")])
    );
    let (s, _, b) = call(
        app,
        "PUT",
        "/api/v1/products/1",
        Some(&admin()),
        Some(json!({"name": "Tteokbokki", "price": 12900, "stock": 5, "stockDelta": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(fields(&b), pairs(&[("stockDelta", "conflicting")]));
}

#[tokio::test]
async fn an_internal_failure_is_500_internal_error_and_keeps_its_cause_to_the_log() {
    let api = api();
    let cause = "cannot encode order: column pw_hash of 10.1.2.3";
    let mut intake = MockRequestOrderUseCase::new();
    intake
        .expect_request_order()
        .returning(move |_, _, _| Err(OmsError::Internal(cause.into())));
    let mut store = MockProductStore::new();
    store
        .expect_list()
        .returning(move || Err(OmsError::Internal(cause.into())));
    let app = router(AppState {
        intake: Arc::new(intake),
        products: Arc::new(ProductService::new(Arc::new(store))),
        ..api.state.clone()
    });
    let buyer = user(1);
    let place = call(
        &app,
        "POST",
        "/api/v1/orders",
        Some(&buyer),
        Some(order_body(&[(1, 1)])),
    )
    .await;
    let list = call(&app, "GET", "/api/v1/products", Some(&buyer), None).await;
    for (s, headers, b) in [place, list] {
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(b["code"], "INTERNAL_ERROR", "{b}");
        assert_eq!(b["type"], "https://oms.dev/problems/internal-error");
        assert_eq!(
            b["detail"],
            "the request could not be handled; the error was logged"
        );
        assert!(b.get("errors").is_none(), "{b}");
        let text = b.to_string();
        for secret in ["encode", "pw_hash", "10.1.2.3"] {
            assert!(!text.contains(secret), "{secret:?} leaked: {b}");
        }
    }
}

fn failing_check(name: &'static str, error: &'static str) -> Arc<dyn HealthCheck> {
    let mut check = MockHealthCheck::new();
    check.expect_name().return_const(name);
    check
        .expect_check()
        .returning(move || Err(OmsError::unavailable(name, error)));
    Arc::new(check)
}

#[tokio::test]
async fn readyz_names_the_failing_dependencies_but_not_their_errors() {
    let api = api();
    let mut healthy = MockHealthCheck::new();
    healthy.expect_name().return_const("redis");
    healthy.expect_check().returning(|| Ok(()));
    let app = router(AppState {
        checks: vec![
            failing_check("mysql", "Access denied for user 'oms'@'10.9.8.7'"),
            Arc::new(healthy),
            failing_check("kafka", "Local: Broker transport failure"),
        ],
        ..api.state.clone()
    });
    let (s, _, b) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["code"], "NOT_READY");
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("mysql") && detail.contains("kafka"), "{b}");
    assert!(!detail.contains("redis"), "{b}");
    let text = b.to_string();
    for secret in ["Access denied", "10.9.8.7", "Broker transport"] {
        assert!(!text.contains(secret), "{secret:?} leaked: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_checks_once_for_a_flood_and_again_when_its_answer_is_old() {
    let api = api();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut check = MockHealthCheck::new();
    check.expect_name().return_const("mysql");
    let counter = calls.clone();
    check.expect_check().returning(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let app = router(AppState {
        checks: vec![Arc::new(check)],
        ..api.state.clone()
    });
    let flood = (0..64).map(|_| call(&app, "GET", "/readyz", None, None));
    for (s, _, b) in futures::future::join_all(flood).await {
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["checked"], json!(["mysql"]));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one round for the flood");

    // The answer is kept for about a second, then checked again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "readyz never checked again");
        let (s, _, _) = call(&app, "GET", "/readyz", None, None).await;
        assert_eq!(s, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
