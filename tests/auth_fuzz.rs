//! Property tests of the decoders of members and sessions: bearer tokens
//! (any bytes, any claims signed with the right key, valid tokens with one
//! byte changed) and the bodies of signup, login, refresh and logout.
//! None may panic or answer 5xx, and each accepts exactly what it should.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{auth, SECRET};
use http_body_util::BodyExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use oms::application::AuthService;
use oms::domain::{Signup, TokenClaims, TokenType};
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use oms::password::{Argon2Settings, Argon2idHasher};
use oms::port::outbound::{MemberStore, TokenCodec};
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Cases per property (each also runs its shrinking on failure).
const CASES: u32 = 1_000;

const PASSWORD: &str = "correct horse battery";

/// The id of the first member of an in-memory store.
const FIRST_MEMBER: u64 = 1;

fn any_json() -> impl Strategy<Value = Value> {
    common::any_json(3, 6)
}

/// Text that is often near an email, a password or a name: plain words,
/// unicode oddities (combining marks, zero-width and bidi characters,
/// homoglyphs, NUL), lengths around the limits.
fn texty() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-z]{1,8}@[a-z]{1,8}\\.(com|kr|co\\.kr)".prop_map(Value::from),
        2 => "[ -~]{0,20}".prop_map(Value::from),
        2 => "\\PC{0,16}".prop_map(Value::from),
        1 => prop::sample::select(vec![
            "kim@example.com\u{200b}", "kіm@example.com", "\u{202e}moc.elpmaxe@mik",
            "e\u{301}@example.com", "kim@example.com\u{0}", "ｋｉｍ@example.com",
            "", " ", "\u{feff}", "비밀번호비밀번호비밀", "correct horse battery",
        ]).prop_map(Value::from),
        1 => (0usize..140).prop_map(|n| Value::from("x".repeat(n))),
        1 => (0usize..140).prop_map(|n| Value::from("가".repeat(n))),
        1 => any_json(),
    ]
}

/// Claims near an oms access token: every field may be missing, of the
/// wrong type or just right.
fn claims_like(member: u64) -> impl Strategy<Value = Value> {
    let now = chrono::Utc::now().timestamp();
    let sub = prop_oneof![
        4 => Just(Value::from(member.to_string())),
        1 => (0u64..3).prop_map(|m| Value::from(m.to_string())),
        1 => any::<u64>().prop_map(|m| Value::from(m.to_string())),
        1 => Just(Value::from(member)),
        1 => any_json(),
    ];
    let role = prop_oneof![
        4 => Just(json!("USER")),
        1 => Just(json!("ADMIN")),
        1 => Just(json!("user")),
        1 => any_json(),
    ];
    let typ = prop_oneof![
        4 => Just(json!("access")),
        1 => Just(json!("refresh")),
        1 => Just(json!("Access")),
        1 => any_json(),
    ];
    let jti = prop_oneof![
        4 => any::<u128>().prop_map(|u| Value::from(uuid::Uuid::from_u128(u).to_string())),
        1 => any_json(),
    ];
    let exp = prop_oneof![
        4 => (now + 60..now + 100_000).prop_map(Value::from),
        1 => (0..now).prop_map(Value::from),
        1 => any_json(),
    ];
    (
        prop::option::weighted(0.9, sub),
        prop::option::weighted(0.9, role),
        prop::option::weighted(0.9, typ),
        prop::option::weighted(0.9, jti),
        prop::option::weighted(0.9, exp),
    )
        .prop_map(|(sub, role, typ, jti, exp)| {
            let mut claims = serde_json::Map::new();
            for (name, value) in [
                ("sub", sub),
                ("role", role),
                ("typ", typ),
                ("jti", jti),
                ("exp", exp),
            ] {
                if let Some(v) = value {
                    claims.insert(name.to_owned(), v);
                }
            }
            Value::Object(claims)
        })
}

struct Api {
    runtime: tokio::runtime::Runtime,
    app: Router,
    member: u64,
    access: String,
    _pipeline: EmbeddedPipeline,
}

impl Api {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (pipeline, app, member, access) = runtime.block_on(async {
            let pipeline = EmbeddedPipeline::start();
            // Cheap hashes: the properties are about decoding.
            let hasher = Argon2idHasher::with_settings(Argon2Settings::insecure_fast()).unwrap();
            let accounts = Arc::new(AuthService::new(
                pipeline.members.clone(),
                pipeline.sessions.clone(),
                pipeline.attempts.clone(),
                Arc::new(hasher),
                Arc::new(auth()),
            ));
            let app = router(pipeline.app_state_with(accounts));
            let api = (app, pipeline);
            let signed_up = post(
                &api.0,
                "/api/v1/auth/signup",
                None,
                json!({"email": "kim@example.com", "password": PASSWORD, "name": "Kim"})
                    .to_string()
                    .into_bytes(),
            )
            .await;
            assert_eq!(signed_up.0, StatusCode::CREATED);
            let member = signed_up.1["memberId"].as_u64().unwrap();
            let login = post(
                &api.0,
                "/api/v1/auth/login",
                None,
                json!({"email": "kim@example.com", "password": PASSWORD})
                    .to_string()
                    .into_bytes(),
            )
            .await;
            assert_eq!(login.0, StatusCode::OK);
            let access = login.1["accessToken"].as_str().unwrap().to_owned();
            (api.1, api.0, member, access)
        });
        Self {
            runtime,
            app,
            member,
            access,
            _pipeline: pipeline,
        }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

/// Sends a request and checks the answer's shape: never 5xx, a problem on
/// every error.
async fn answer(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!status.is_server_error(), "{status}: {bytes:?}");
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{status}: not JSON: {e}"))
    };
    if status.is_client_error() {
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["status"].as_u64(), Some(u64::from(status.as_u16())));
        assert!(body["code"].is_string(), "{body}");
    }
    (status, body)
}

async fn post(app: &Router, uri: &str, bearer: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    answer(app, req.body(Body::from(body)).unwrap()).await
}

async fn me(app: &Router, authorization: &[u8]) -> StatusCode {
    let req = Request::get("/api/v1/members/me");
    let req = match axum::http::HeaderValue::from_bytes(authorization) {
        Ok(v) => req.header(header::AUTHORIZATION, v),
        Err(_) => req,
    };
    answer(app, req.body(Body::empty()).unwrap()).await.0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_authorization_header_is_refused_with_401(
        header in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            "Bearer [ -~]{0,200}".prop_map(String::into_bytes),
            "Bearer [A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{1,80}\\.[A-Za-z0-9_-]{0,43}".prop_map(String::into_bytes),
        ]
    ) {
        thread_local!(static API: Api = Api::new());
        let status = API.with(|api| api.run(me(&api.app, &header)));
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn signed_claims_pass_exactly_when_they_are_a_live_access_token(claims in claims_like(FIRST_MEMBER)) {
        thread_local!(static API: Api = Api::new());
        API.with(|api| {
            prop_assert_eq!(api.member, FIRST_MEMBER);
            let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap();
            let status = api.run(me(&api.app, format!("Bearer {token}").as_bytes()));
            let now = chrono::Utc::now().timestamp().unsigned_abs();
            let live = serde_json::from_value::<TokenClaims>(claims.clone())
                .ok()
                .filter(|c| c.check(TokenType::Access, now).is_ok());
            match live {
                Some(c) if c.sub.0 == api.member => prop_assert_eq!(status, StatusCode::OK, "{}", claims),
                Some(_) => prop_assert_eq!(status, StatusCode::NOT_FOUND, "{}", claims),
                None => prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", claims),
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_valid_token_with_one_byte_changed_is_refused(at in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        thread_local!(static API: Api = Api::new());
        API.with(|api| {
            let mut token = api.access.clone().into_bytes();
            let i = at.index(token.len());
            let unchanged = token[i] == byte;
            token[i] = byte;
            let status = api.run(me(&api.app, &[b"Bearer ".as_slice(), &token].concat()));
            if unchanged {
                prop_assert_eq!(status, StatusCode::OK);
            } else {
                prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", String::from_utf8_lossy(&token));
            }
            Ok(())
        })?;
    }

    #[test]
    fn signup_bodies_are_created_exactly_when_every_rule_holds(
        email in texty(), password in texty(), name in texty(), drop in 0usize..6,
    ) {
        thread_local!(static API: Api = Api::new());
        let mut body = json!({"email": email, "password": password, "name": name});
        if let Some(field) = ["email", "password", "name"].get(drop) {
            body.as_object_mut().unwrap().remove(*field);
        }
        let signup = serde_json::from_value::<oms::http::SignupBody>(body.clone()).ok().map(|b| Signup {
            email: b.email,
            password: b.password,
            name: b.name,
        });
        let valid = signup.as_ref().and_then(|s| s.validate().ok());
        API.with(|api| {
            let taken = valid.as_ref().is_some_and(|(email, _)| {
                api.run(api._pipeline.members.find_by_email(email)).unwrap().is_some()
            });
            let (status, answer) = api.run(post(&api.app, "/api/v1/auth/signup", None, body.to_string().into_bytes()));
            match (&valid, taken) {
                (Some((email, name)), false) => {
                    prop_assert_eq!(status, StatusCode::CREATED, "{}: {}", body, answer);
                    prop_assert_eq!(answer["email"].as_str(), Some(email.as_str()));
                    prop_assert_eq!(answer["name"].as_str(), Some(name.as_str()));
                }
                (Some(_), true) => prop_assert_eq!(status, StatusCode::CONFLICT),
                (None, _) => prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {}", body, answer),
            }
            Ok(())
        })?;
    }

    #[test]
    fn login_refresh_and_logout_bodies_never_fail_the_server(
        body in prop_oneof![
            any_json().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..256),
            (texty(), texty()).prop_map(|(e, p)| json!({"email": e, "password": p}).to_string().into_bytes()),
            texty().prop_map(|t| json!({"refreshToken": t}).to_string().into_bytes()),
        ],
        path in prop::sample::select(vec!["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"]),
    ) {
        thread_local!(static API: Api = Api::new());
        API.with(|api| {
            let bearer = (path == "/api/v1/auth/logout").then_some("not-a-token");
            let (status, answer) = api.run(post(&api.app, path, bearer, body.clone()));
            let allowed: &[u16] = match path {
                "/api/v1/auth/login" => &[200, 400, 401, 429],
                "/api/v1/auth/refresh" => &[400, 401],
                _ => &[401],
            };
            prop_assert!(allowed.contains(&status.as_u16()), "{} {}: {}", path, status, answer);
            Ok(())
        })?;
    }
}

#[test]
fn the_codec_round_trips_what_it_signs() {
    let codec = auth();
    let claims = TokenClaims::access(
        oms::domain::MemberId(42),
        oms::domain::Role::Admin,
        Some(oms::domain::SessionId::random()),
        chrono::Utc::now().timestamp().unsigned_abs(),
        std::time::Duration::from_secs(60),
    );
    let token = codec.encode(&claims).unwrap();
    assert_eq!(codec.decode(&token).unwrap(), claims);
}
