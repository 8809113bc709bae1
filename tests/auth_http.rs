//! Members and sessions through the router (`oneshot` on the embedded
//! pipeline): every status of `/api/v1/auth/*` and `/api/v1/members/me`,
//! tokens of the wrong type, expired, revoked or forged, login throttling,
//! and a host's own authenticator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRef};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{auth, order_body, SECRET};
use http_body_util::BodyExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use oms::application::{AdminBootstrap, AuthPolicy};
use oms::domain::{Caller, Role, ThrottlePolicy};
use oms::embedded::EmbeddedPipeline;
use oms::http::{router, AppState, Auth, Authenticator, ClientIpSource, JwtAuth, Problem};
use serde_json::{json, Value};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

struct Api {
    app: Router,
    pipeline: EmbeddedPipeline,
    state: AppState,
}

fn api() -> Api {
    api_with(AuthPolicy::default())
}

fn api_with(policy: AuthPolicy) -> Api {
    let pipeline = EmbeddedPipeline::start();
    let accounts = Arc::new(pipeline.accounts(Arc::new(auth()), policy));
    let state = pipeline.app_state_with(accounts);
    Api {
        app: router(state.clone()),
        pipeline,
        state,
    }
}

type Answer = (StatusCode, HeaderMap, Value);

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let (status, headers, body) = common::send(app, req).await;
    assert!(
        !status.is_server_error(),
        "never a 5xx here: {status} {body}"
    );
    (status, headers, body)
}

fn request(method: &str, uri: &str, bearer: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap()
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Answer {
    send(app, request(method, uri, bearer, body)).await
}

async fn signup(app: &Router, email: &str) -> Value {
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": email, "password": PASSWORD, "name": "Kim"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

async fn login(app: &Router, email: &str, password: &str) -> Answer {
    call(
        app,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

/// Signs up and logs in; returns (access, refresh).
async fn member(app: &Router, email: &str) -> (String, String) {
    signup(app, email).await;
    let (s, _, b) = login(app, email, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["accessToken"].as_str().unwrap().to_owned(),
        b["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &Router, token: &str) -> Answer {
    call(
        app,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refreshToken": token})),
    )
    .await
}

async fn me(app: &Router, bearer: &str) -> StatusCode {
    call(app, "GET", "/api/v1/members/me", Some(bearer), None)
        .await
        .0
}

#[tokio::test]
async fn signup_answers_201_and_409_for_a_taken_email() {
    let api = api();
    let app = &api.app;
    let (s, h, b) = call(
        app,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": " Kim@Example.COM ", "password": PASSWORD, "name": " 김철수 "})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(h[header::CONTENT_TYPE], "application/json");
    assert!(b["memberId"].as_u64().unwrap() > 0);
    assert_eq!(b["email"], "kim@example.com");
    assert_eq!(b["name"], "김철수");
    assert_eq!(b["role"], "USER");
    assert_eq!(
        b.as_object().unwrap().len(),
        4,
        "no password hash or anything else: {b}"
    );
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": "KIM@example.com", "password": "another password", "name": "Lee"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["code"], "EMAIL_TAKEN");
    assert_eq!(api.pipeline.members.len(), 1);
}

#[tokio::test]
async fn signup_refuses_every_bad_field_with_400() {
    let api = api();
    let app = &api.app;
    let good = json!({"email": "kim@example.com", "password": PASSWORD, "name": "Kim"});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    for body in [
        with("email", json!("kim")),
        with("email", json!("kim@")),
        with("email", json!("kim@example")),
        with("email", json!("")),
        with("email", json!("김@example.com")),
        with("email", json!("kim@example.com\u{0}")),
        with("email", json!(format!("{}@example.com", "a".repeat(300)))),
        with("email", json!(7)),
        with("email", Value::Null),
        with("password", json!("123456789")),
        with("password", json!("x".repeat(129))),
        with("password", json!("비밀번호비밀번호비".to_owned())),
        with("password", json!(1234567890)),
        with("name", json!("")),
        with("name", json!("   ")),
        with("name", json!("a\u{7}b")),
        with("name", json!("가".repeat(101))),
        with("name", json!(["Kim"])),
        without("email"),
        without("password"),
        without("name"),
        json!([]),
        json!("kim@example.com"),
    ] {
        let (s, _, b) = call(app, "POST", "/api/v1/auth/signup", None, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    // Exactly 10 and 128 characters, multi-byte included, are fine.
    for (i, password) in ["비".repeat(10), "x".repeat(128)].into_iter().enumerate() {
        let body =
            json!({"email": format!("edge{i}@example.com"), "password": password, "name": "Kim"});
        let (s, _, b) = call(app, "POST", "/api/v1/auth/signup", None, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // Not JSON, malformed JSON, a huge body.
    let text = Request::post("/api/v1/auth/signup")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(good.to_string()))
        .unwrap();
    assert_eq!(send(app, text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let broken = Request::post("/api/v1/auth/signup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"email\": "))
        .unwrap();
    assert_eq!(send(app, broken).await.0, StatusCode::BAD_REQUEST);
    let huge = with("name", json!("x".repeat(100_000)));
    let (s, _, _) = call(app, "POST", "/api/v1/auth/signup", None, Some(huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.pipeline.members.len(), 2, "only the two edge cases");
}

#[tokio::test]
async fn login_answers_a_bearer_pair_and_the_tokens_work() {
    let api = api();
    let app = &api.app;
    let created = signup(app, "kim@example.com").await;
    let (s, h, b) = login(app, "KIM@example.com ", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["tokenType"], "Bearer");
    assert_eq!(b["expiresIn"], 900);
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let access = b["accessToken"].as_str().unwrap();
    let refresh = b["refreshToken"].as_str().unwrap();
    assert_ne!(access, refresh);
    let (s, _, me) = call(app, "GET", "/api/v1/members/me", Some(access), None).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me, created);
    // The issued token places an order as that member.
    let operator = common::token(1, oms::domain::Role::Admin);
    let product = json!({"productId": 1, "name": "A", "price": 100, "stock": 5});
    let (s, _, _) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&operator),
        Some(product),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, trace) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(access),
        Some(order_body(&[(1, 1)])),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{trace}");
    // The claims: typ, jti, sid, and the contract's sub / role / exp.
    let claims = oms::port::outbound::TokenCodec::decode(&auth(), access).unwrap();
    assert_eq!(claims.sub.0, created["memberId"].as_u64().unwrap());
    assert_eq!(claims.role, Role::User);
    assert_eq!(claims.typ, oms::domain::TokenType::Access);
    assert!(claims.sid.is_some());
}

#[tokio::test]
async fn unknown_emails_and_wrong_passwords_get_the_same_401() {
    let api = api();
    let app = &api.app;
    signup(app, "kim@example.com").await;
    let (s1, h1, wrong) = login(app, "kim@example.com", "not the password").await;
    let (s2, h2, unknown) = login(app, "nobody@example.com", PASSWORD).await;
    let (s3, _, malformed) = login(app, "not-an-email", PASSWORD).await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        )
    );
    assert_eq!(wrong["code"], "BAD_CREDENTIALS");
    assert_eq!(wrong, unknown, "the same body");
    assert_eq!(wrong, malformed);
    assert_eq!(
        h1.get(header::WWW_AUTHENTICATE),
        h2.get(header::WWW_AUTHENTICATE)
    );
    for body in [
        json!({"email": "kim@example.com"}),
        json!({"password": PASSWORD}),
        json!({"email": 1, "password": PASSWORD}),
        json!({"email": "kim@example.com", "password": null}),
    ] {
        let (s, _, b) = call(app, "POST", "/api/v1/auth/login", None, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
}

#[tokio::test]
async fn repeated_failures_for_one_email_get_429_with_retry_after() {
    let api = api();
    let app = &api.app;
    signup(app, "kim@example.com").await;
    for _ in 0..5 {
        let (s, _, _) = login(app, "kim@example.com", "guess guess guess").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, b) = login(app, "kim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["code"], "TOO_MANY_ATTEMPTS");
    let wait: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    // An unknown email is throttled the same way.
    for _ in 0..5 {
        login(app, "nobody@example.com", "guess guess guess").await;
    }
    let (s, _, _) = login(app, "nobody@example.com", "guess guess guess").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // Others log in as usual.
    member(app, "lee@example.com").await;
}

#[tokio::test]
async fn one_client_address_guessing_many_emails_gets_429() {
    let api = api_with(AuthPolicy {
        throttle: ThrottlePolicy {
            per_address: 4,
            ..ThrottlePolicy::default()
        },
        ..AuthPolicy::default()
    });
    let from = |addr: &str, email: &str| {
        let mut req = request(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": "guess guess guess"})),
        );
        req.extensions_mut()
            .insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
        req
    };
    for i in 0..4 {
        let (s, _, _) = send(
            &api.app,
            from("203.0.113.5:4000", &format!("u{i}@example.com")),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, _) = send(&api.app, from("203.0.113.5:4001", "u9@example.com")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.contains_key(header::RETRY_AFTER));
    let (s, _, _) = send(&api.app, from("198.51.100.7:4000", "u9@example.com")).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "another address is not throttled"
    );

    // Behind a proxy, the last address of the configured header counts.
    let proxied = router(
        api.state
            .clone()
            .with_client_ip(ClientIpSource::Header("x-forwarded-for".parse().unwrap())),
    );
    let via = |forwarded: &str, email: &str| {
        let mut req = from("10.0.0.1:80", email);
        req.headers_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
        req
    };
    for i in 0..4 {
        let (s, _, _) = send(
            &proxied,
            via("1.1.1.1, 192.0.2.44", &format!("v{i}@example.com")),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _, _) = send(&proxied, via("9.9.9.9, 192.0.2.44", "w@example.com")).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "a spoofed first entry does not help"
    );
    let (s, _, _) = send(&proxied, via("192.0.2.45", "x@example.com")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_rotates_and_a_replayed_token_revokes_the_login() {
    let api = api();
    let app = &api.app;
    let (access1, refresh1) = member(app, "kim@example.com").await;
    let (s, h, b) = refresh(app, &refresh1).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["tokenType"], "Bearer");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let access2 = b["accessToken"].as_str().unwrap().to_owned();
    let refresh2 = b["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh1);
    assert_eq!(me(app, &access2).await, StatusCode::OK);
    assert_eq!(
        me(app, &access1).await,
        StatusCode::OK,
        "still valid until it expires"
    );
    // The rotated token is dead: presenting it again is a replay.
    let (s, _, b) = refresh(app, &refresh1).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // ... which revoked the whole login.
    assert_eq!(refresh(app, &refresh2).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(app, &access1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(app, &access2).await, StatusCode::UNAUTHORIZED);
    // A new login works.
    let (s, _, _) = login(app, "kim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    // Bad bodies and tokens.
    for body in [
        json!({}),
        json!({"refreshToken": 5}),
        json!({"token": refresh2}),
    ] {
        let (s, _, b) = call(
            app,
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    for bad in ["", "garbage", "a.b.c"] {
        assert_eq!(refresh(app, bad).await.0, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_token_is_accepted_only_as_its_type() {
    let api = api();
    let app = &api.app;
    let (access, refresh_token) = member(app, "kim@example.com").await;
    assert_eq!(me(app, &refresh_token).await, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(app, "GET", "/api/v1/orders", Some(&refresh_token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(app, &access).await.0, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(
        app,
        "POST",
        "/api/v1/auth/logout",
        Some(&refresh_token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // None of that revoked anything.
    assert_eq!(me(app, &access).await, StatusCode::OK);
    assert_eq!(refresh(app, &refresh_token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_login_at_once() {
    let api = api();
    let app = &api.app;
    let (access, refresh_token) = member(app, "kim@example.com").await;
    let (other_access, other_refresh) = {
        let (s, _, b) = login(app, "kim@example.com", PASSWORD).await;
        assert_eq!(s, StatusCode::OK);
        (
            b["accessToken"].as_str().unwrap().to_owned(),
            b["refreshToken"].as_str().unwrap().to_owned(),
        )
    };
    let (s, _, b) = call(app, "POST", "/api/v1/auth/logout", Some(&access), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(b, Value::Null);
    assert_eq!(me(app, &access).await, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(
        app,
        "POST",
        "/api/v1/orders",
        Some(&access),
        Some(order_body(&[(1, 1)])),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(app, &refresh_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, _) = call(app, "POST", "/api/v1/auth/logout", Some(&access), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "twice");
    // The other login is untouched, until it logs out naming its refresh token.
    assert_eq!(me(app, &other_access).await, StatusCode::OK);
    let (s, _, _) = call(
        app,
        "POST",
        "/api/v1/auth/logout",
        Some(&other_access),
        Some(json!({"refreshToken": other_refresh})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(app, &other_refresh).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(app, &other_access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_refuses_what_it_cannot_read() {
    let api = api();
    let app = &api.app;
    let (access, refresh_token) = member(app, "kim@example.com").await;
    let (_, lee_refresh) = member(app, "lee@example.com").await;
    let (s, _, _) = call(app, "POST", "/api/v1/auth/logout", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let text = Request::post("/api/v1/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(refresh_token.clone()))
        .unwrap();
    assert_eq!(send(app, text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let broken = Request::post("/api/v1/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"refreshToken\""))
        .unwrap();
    assert_eq!(send(app, broken).await.0, StatusCode::BAD_REQUEST);
    for body in [json!({"refreshToken": 1}), json!([])] {
        let (s, _, _) = call(
            app,
            "POST",
            "/api/v1/auth/logout",
            Some(&access),
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    for token in [access.clone(), lee_refresh.clone(), "garbage".into()] {
        let (s, _, _) = call(
            app,
            "POST",
            "/api/v1/auth/logout",
            Some(&access),
            Some(json!({"refreshToken": token})),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let huge = Request::post("/api/v1/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b' '; 100_000]))
        .unwrap();
    assert_eq!(send(app, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was revoked by the refused calls.
    assert_eq!(me(app, &access).await, StatusCode::OK);
    assert_eq!(refresh(app, &lee_refresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn me_needs_a_valid_access_token_of_a_member() {
    let api = api();
    let app = &api.app;
    let (s, h, _) = call(app, "GET", "/api/v1/members/me", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h[header::WWW_AUTHENTICATE], "Bearer");
    // A token minted for a member id nobody has.
    let minted = common::token(987_654, Role::User);
    let (s, _, b) = call(app, "GET", "/api/v1/members/me", Some(&minted), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["code"], "MEMBER_NOT_FOUND");
}

#[tokio::test]
async fn forged_and_expired_tokens_are_401() {
    let api = api();
    let app = &api.app;
    let (access, _) = member(app, "kim@example.com").await;
    let claims = oms::port::outbound::TokenCodec::decode(&auth(), &access).unwrap();
    let mut value = serde_json::to_value(claims).unwrap();
    let key = EncodingKey::from_secret(SECRET);
    let sign = |v: &Value| encode(&Header::new(Algorithm::HS256), v, &key).unwrap();
    let b64 = |bytes: &[u8]| {
        use base64_free::encode_url;
        encode_url(bytes)
    };
    // alg: none, with the same claims and no signature.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(value.to_string().as_bytes())
    );
    // HS512 with the right secret, HS256 with another secret.
    let hs512 = encode(&Header::new(Algorithm::HS512), &value, &key).unwrap();
    let foreign = encode(
        &Header::new(Algorithm::HS256),
        &value,
        &EncodingKey::from_secret(b"another secret of the same kind"),
    )
    .unwrap();
    // Refresh-typed, expired, not a member id.
    let mut as_refresh = value.clone();
    as_refresh["typ"] = json!("refresh");
    let mut expired = value.clone();
    expired["exp"] = json!(1);
    let mut bad_sub = value.clone();
    bad_sub["sub"] = json!("0");
    value["role"] = json!("ROOT");
    let tampered = {
        let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
        parts[1] = b64(bad_sub.to_string().as_bytes());
        parts.join(".")
    };
    for (what, token) in [
        ("alg none", none),
        ("HS512", hs512),
        ("another key", foreign),
        ("typ refresh", sign(&as_refresh)),
        ("expired", sign(&expired)),
        ("sub 0", sign(&bad_sub)),
        ("role ROOT", sign(&value)),
        ("tampered payload", tampered),
        ("empty", String::new()),
        ("junk", "a.b.c".into()),
    ] {
        let (s, _, b) = call(app, "GET", "/api/v1/members/me", Some(&token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {b}");
        let (s, _, _) = call(app, "GET", "/api/v1/orders", Some(&token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}");
    }
    // The minting helper of tools makes access tokens that pass.
    let minted = JwtAuth::new(SECRET)
        .mint(claims.sub.0, Role::User, Duration::from_secs(60))
        .unwrap();
    assert_eq!(me(app, &minted).await, StatusCode::OK);
}

/// The first contract's tokens: `sub`, `role` and `exp`, signed with the
/// secret by any issuer. They are access tokens, and logout revokes each
/// one alone (its id is derived from the token), not another like it.
#[tokio::test]
async fn tokens_of_the_first_contract_are_access_tokens_revoked_one_by_one() {
    let api = api();
    let app = &api.app;
    let signed_up = signup(app, "kim@example.com").await;
    let member = signed_up["memberId"].as_u64().unwrap();
    let key = EncodingKey::from_secret(SECRET);
    let exp = chrono::Utc::now().timestamp() + 600;
    let bare = |role: &str, exp: i64| {
        let claims = json!({"sub": member.to_string(), "role": role, "exp": exp});
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let token = bare("USER", exp);
    let twin = bare("USER", exp + 1);
    let (s, _, b) = call(app, "GET", "/api/v1/members/me", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["memberId"].as_u64(), Some(member));
    // USER is not ADMIN; a bare ADMIN token is.
    let product = json!({"productId": 9, "name": "Odeng", "price": 3000, "stock": 5});
    let (s, _, _) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(&token),
        Some(product.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let admin = bare("ADMIN", exp);
    let (s, _, b) = call(app, "POST", "/api/v1/products", Some(&admin), Some(product)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let order = order_body(&[(9, 1)]);
    let (s, _, b) = call(app, "POST", "/api/v1/orders", Some(&token), Some(order)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // Not a refresh token.
    let (s, _, _) = refresh(app, &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Logout revokes that token, and only that one.
    let (s, _, b) = call(app, "POST", "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(me(app, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(app, &twin).await, StatusCode::OK);
}

#[tokio::test]
async fn an_operator_bootstrapped_from_settings_manages_products() {
    let api = api();
    let app = &api.app;
    let accounts = api
        .pipeline
        .accounts(Arc::new(auth()), AuthPolicy::default());
    let created = accounts
        .ensure_admin("ops@example.com", "operator password 1")
        .await
        .unwrap();
    assert!(matches!(created, AdminBootstrap::Created(_)));
    let (s, _, b) = login(app, "ops@example.com", "operator password 1").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let admin = b["accessToken"].as_str().unwrap();
    let (_, _, me_body) = call(app, "GET", "/api/v1/members/me", Some(admin), None).await;
    assert_eq!(me_body["role"], "ADMIN");
    let product = json!({"productId": 7, "name": "Tteokbokki", "price": 12900, "stock": 5});
    let (s, _, b) = call(
        app,
        "POST",
        "/api/v1/products",
        Some(admin),
        Some(product.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (buyer, _) = member(app, "kim@example.com").await;
    let (s, _, _) = call(app, "POST", "/api/v1/products", Some(&buyer), Some(product)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// A host's own identities: a header set by its gateway.
struct GatewayIdentity;

#[async_trait::async_trait]
impl Authenticator for GatewayIdentity {
    async fn authenticate(&self, parts: &Parts) -> Result<Caller, Problem> {
        parts
            .headers
            .get("x-gateway-member")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Caller::user)
            .ok_or_else(|| Problem::unauthorized("no gateway identity"))
    }
}

#[derive(Clone)]
struct HostState {
    auth: Arc<dyn Authenticator>,
    greeting: &'static str,
}

impl FromRef<HostState> for Arc<dyn Authenticator> {
    fn from_ref(state: &HostState) -> Self {
        state.auth.clone()
    }
}

async fn hello(
    axum::extract::State(state): axum::extract::State<HostState>,
    Auth(caller): Auth,
) -> String {
    format!("{} {}", state.greeting, caller.member_id)
}

#[tokio::test]
async fn a_host_puts_its_own_authenticator_in_the_state() {
    let api = api();
    let host_auth: Arc<dyn Authenticator> = Arc::new(GatewayIdentity);
    let app = router(api.state.clone().with_authenticator(host_auth.clone())).merge(
        Router::new()
            .route("/hello", get(hello))
            .with_state(HostState {
                auth: host_auth,
                greeting: "hello",
            }),
    );
    let as_member = |uri: &str| {
        Request::get(uri)
            .header("x-gateway-member", "77")
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, b) = send(&app, as_member("/api/v1/orders")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!([]));
    let (s, _, _) = call(&app, "GET", "/api/v1/orders", None, None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the host's rule: no header, no entry"
    );
    let res = app.clone().oneshot(as_member("/hello")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"hello 77");
    // oms's own bearer tokens mean nothing to the host's authenticator.
    let bearer = common::token(77, Role::User);
    let (s, _, _) = call(&app, "GET", "/api/v1/orders", Some(&bearer), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Base64url without padding, for hand-made tokens.
mod base64_free {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode_url(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}
