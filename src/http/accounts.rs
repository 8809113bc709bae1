//! Members and sessions: `POST /api/v1/auth/{signup,login,refresh,logout}`
//! and `GET /api/v1/members/me`.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oms_core::domain::{Login, Member, Role, Signup, TokenPair};
use serde::{Deserialize, Serialize};

use super::{bearer_token, ApiJson, AppState, Auth, Problem, SharedState};

/// Where the client's address for login throttling comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The peer of the TCP connection ([`serve`](super::serve) records it;
    /// when the router is served some other way, put an
    /// `axum::extract::ConnectInfo<SocketAddr>` in the request's extensions,
    /// e.g. with `into_make_service_with_connect_info`).
    #[default]
    Peer,
    /// The last address in this header (e.g. `x-forwarded-for`, which each
    /// proxy appends to): for a service behind a reverse proxy that sets
    /// it. Without a readable address in it, the peer counts.
    Header(HeaderName),
}

/// The client's address, by the state's [`ClientIpSource`] (extractor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// The address of the client of `parts` by `source`.
    fn of(parts: &Parts, source: &ClientIpSource) -> Self {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let from_header = match source {
            ClientIpSource::Peer => None,
            ClientIpSource::Header(name) => parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .next_back(),
        };
        Self(from_header.or(peer))
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        Ok(Self::of(parts, &state.client_ip))
    }
}

impl FromRequestParts<SharedState> for ClientAddress {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Problem> {
        Ok(Self::of(parts, &state.client_ip))
    }
}

/// The body of `POST /api/v1/auth/signup`.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct SignupBody {
    /// Email address.
    pub email: String,
    /// Password, 10 to 128 characters.
    #[schema(min_length = 10, max_length = 128)]
    pub password: String,
    /// Display name.
    pub name: String,
}

/// The body of `POST /api/v1/auth/login`.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// The body of `POST /api/v1/auth/refresh`, and the optional body of
/// `POST /api/v1/auth/logout`.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    /// A refresh token.
    pub refresh_token: String,
}

/// A member as the API shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberBody {
    /// Id.
    pub member_id: u64,
    /// Normalized email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `USER` or `ADMIN`.
    pub role: Role,
}

impl From<Member> for MemberBody {
    fn from(m: Member) -> Self {
        Self {
            member_id: m.id.0,
            email: m.email.as_str().to_owned(),
            name: m.name,
            role: m.role,
        }
    }
}

/// The answer of login and refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    /// The access token (`Authorization: Bearer`).
    pub access_token: String,
    /// The refresh token (single use).
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
}

impl From<TokenPair> for TokenBody {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: "Bearer".into(),
            expires_in: p.expires_in,
        }
    }
}

/// The answer of login and refresh, as the document shows it.
#[derive(utoipa::ToResponse)]
#[response(
    description = "A new token pair, not to be cached",
    headers(("Cache-Control" = String, description = "`no-store`"))
)]
#[allow(dead_code)]
pub(super) struct TokenAnswer(TokenBody);

/// Token answers are not to be cached by anyone (RFC 6749, 5.1).
fn no_store(body: TokenBody) -> Response {
    let mut response = ApiJson(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/signup",
    tag = "members",
    description = "Signs a buyer up (role `USER`). The email is trimmed and lowercased; the name trimmed.",
    request_body = SignupBody,
    responses(
        (status = 201, description = "The new member", body = MemberBody),
        super::openapi::SignupProblems,
    )
)]
pub(super) async fn signup(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<SignupBody>,
) -> Result<(StatusCode, ApiJson<MemberBody>), Problem> {
    let member = state
        .accounts
        .signup(Signup {
            email: body.email,
            password: body.password,
            name: body.name,
        })
        .await?;
    Ok((StatusCode::CREATED, ApiJson(member.into())))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "members",
    description = "Logs in: a new login and its first token pair. The same 401 for an unknown email and a wrong password; 429 after repeated attempts.",
    request_body = LoginBody,
    responses(
        (status = 200, response = TokenAnswer),
        super::openapi::LoginProblems,
    )
)]
pub(super) async fn login(
    State(state): State<SharedState>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, Problem> {
    let pair = state
        .accounts
        .login(Login {
            email: body.email,
            password: body.password,
            client,
        })
        .await?;
    Ok(no_store(pair.into()))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "members",
    description = "Exchanges the live refresh token of a login for a new pair; the presented token is dead from then on, and presenting a dead one revokes the login (401).",
    request_body = RefreshBody,
    responses(
        (status = 200, response = TokenAnswer),
        super::openapi::RefreshProblems,
    )
)]
pub(super) async fn refresh(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response, Problem> {
    let pair = state.accounts.refresh(&body.refresh_token).await?;
    Ok(no_store(pair.into()))
}

/// `POST /api/v1/auth/logout`: the bearer access token, and optionally a
/// JSON body `{"refreshToken"}` (an empty body is no body).
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "members",
    description = "Revokes the bearer access token and its login, and the login of `refreshToken` when given (the same member's). The body may be empty.",
    security(("bearer" = [])),
    request_body(content = Option<RefreshBody>, description = "Optional"),
    responses(
        (status = 204, description = "Logged out"),
        super::openapi::LogoutProblems,
    )
)]
pub(super) async fn logout(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    let access = bearer_token(&headers)?;
    // The token first: a caller who is not logged in learns nothing more.
    state.accounts.authenticate(access).await?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body must be at most {} bytes", super::BODY_LIMIT),
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text())
        }
    })?;
    let refresh = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON with `Content-Type: application/json`",
            ));
        }
        let parsed: RefreshBody = serde_json::from_slice(&body).map_err(|e| {
            if e.is_data() {
                Problem::validation(format!("bad logout body: {e}"))
            } else {
                Problem::new(StatusCode::BAD_REQUEST, "MALFORMED_JSON", e.to_string())
            }
        })?;
        Some(parsed.refresh_token)
    };
    state.accounts.logout(access, refresh).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/members/me",
    tag = "members",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's member record", body = MemberBody),
        super::openapi::MeProblems,
    )
)]
pub(super) async fn me(
    State(state): State<SharedState>,
    Auth(caller): Auth,
) -> Result<ApiJson<MemberBody>, Problem> {
    Ok(ApiJson(state.accounts.me(caller).await?.into()))
}
