//! Authentication of the API: HS256 bearer tokens ([`JwtAuth`]), the
//! pluggable [`Authenticator`] the router asks for every authenticated
//! request, and the [`Auth`] extractor.
//!
//! Tokens carry `sub` (member id), `role` (`USER` | `ADMIN`), `typ`
//! (`access` | `refresh`), `jti`, `exp`, `iat` and, when a login issued
//! them, `sid` (the login). Only access tokens are accepted as bearer
//! tokens: `typ: "access"`, or no `typ` at all (the first contract's
//! tokens, `sub`, `role` and `exp` signed with the secret by any issuer).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oms_core::domain::{Caller, MemberId, OmsError, OmsResult, Role, TokenClaims, TokenType};
use oms_core::port::inbound::AuthUseCase;
use oms_core::port::outbound::TokenCodec;

use super::Problem;

/// The claims of a token (see [`TokenClaims`]).
pub type Claims = TokenClaims;

/// Signs and verifies tokens with one HS256 secret: the [`TokenCodec`] of
/// the built-in authentication, and a minter of access tokens for tools
/// and tests.
///
/// Only HS256 is accepted (a token with `alg: none` or any other algorithm
/// is refused), and the claims must decode as [`TokenClaims`].
#[derive(Clone)]
pub struct JwtAuth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("secret", &"<hidden>")
            .finish()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtAuth {
    /// Keys for this shared secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // Expiry and type are the domain's rules (`TokenClaims::check`),
        // so that logout can name an expired refresh token.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// An access token (`typ: "access"`, a random `jti`, no login) for
    /// `member_id` with `role`, valid for `ttl`: what tools and tests use
    /// instead of logging in. It is checked like any access token,
    /// revocation included.
    pub fn mint(&self, member_id: u64, role: Role, ttl: Duration) -> Result<String, Problem> {
        let claims = TokenClaims::access(MemberId(member_id), role, None, unix_now(), ttl);
        self.encode(&claims).map_err(Problem::from)
    }

    /// The caller an access token stands for: signature, type and expiry
    /// checked, but not revocation (the [`Authenticator`] of the router
    /// checks that too).
    pub fn verify(&self, token: &str) -> Result<Caller, Problem> {
        let claims = self.decode(token)?;
        claims
            .check(TokenType::Access, unix_now())
            .map_err(OmsError::from)?;
        Ok(claims.caller())
    }
}

impl TokenCodec for JwtAuth {
    fn encode(&self, claims: &TokenClaims) -> OmsResult<String> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| OmsError::Internal(format!("cannot sign a token: {e}")))
    }

    fn decode(&self, token: &str) -> OmsResult<TokenClaims> {
        decode::<TokenClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                OmsError::Unauthenticated(match e.kind() {
                    ErrorKind::InvalidSignature => "token signature is invalid".into(),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "token must be signed with HS256".into()
                    }
                    ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => {
                        "token claims are not those of an oms token".into()
                    }
                    _ => "token is malformed".into(),
                })
            })
    }
}

/// Who is calling, decided from a request's head: the router asks it for
/// every authenticated route.
///
/// The built-in one is [`BearerAuthenticator`] (oms's own access tokens,
/// revocation checked). A host service puts its own in
/// [`AppState::auth`](super::AppState::auth) — its own tokens, a session
/// cookie, a client certificate's identity forwarded by a proxy — and
/// answers with a [`Problem`] (401, 403, 503…) when it refuses.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The caller of the request whose head is `parts`.
    async fn authenticate(&self, parts: &Parts) -> Result<Caller, Problem>;
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Problem> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("missing Authorization header"))?;
    let value = header
        .to_str()
        .map_err(|_| Problem::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| Problem::unauthorized("Authorization must be `Bearer <token>`"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Problem::unauthorized(
            "Authorization must be `Bearer <token>`",
        ));
    }
    Ok(token)
}

/// The built-in [`Authenticator`]: the bearer token must be a valid
/// access token of [`AuthUseCase::authenticate`] (signature, `typ`,
/// expiry, and not revoked).
#[derive(Clone)]
pub struct BearerAuthenticator {
    accounts: Arc<dyn AuthUseCase>,
}

impl fmt::Debug for BearerAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthenticator")
            .finish_non_exhaustive()
    }
}

impl BearerAuthenticator {
    /// Checks tokens with `accounts`.
    pub fn new(accounts: Arc<dyn AuthUseCase>) -> Self {
        Self { accounts }
    }
}

#[async_trait]
impl Authenticator for BearerAuthenticator {
    async fn authenticate(&self, parts: &Parts) -> Result<Caller, Problem> {
        let token = bearer_token(&parts.headers)?;
        self.accounts
            .authenticate(token)
            .await
            .map_err(Problem::from)
    }
}

/// The authenticated caller of a request (extractor), as the state's
/// [`Authenticator`] decides.
///
/// Works with any state `S` that gives an `Arc<dyn Authenticator>` by
/// [`FromRef`], so a host's own handlers can use it with the host's state:
///
/// ```rust
/// use std::sync::Arc;
/// use axum::extract::FromRef;
/// use oms::http::{Auth, Authenticator};
///
/// #[derive(Clone)]
/// struct HostState {
///     auth: Arc<dyn Authenticator>,
/// }
///
/// impl FromRef<HostState> for Arc<dyn Authenticator> {
///     fn from_ref(state: &HostState) -> Self {
///         state.auth.clone()
///     }
/// }
///
/// async fn whoami(Auth(caller): Auth) -> String {
///     caller.member_id.to_string()
/// }
///
/// # fn main() {
/// # fn app(state: HostState) -> axum::Router {
/// axum::Router::new()
///     .route("/whoami", axum::routing::get(whoami))
///     .with_state(state)
/// # }
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Caller);

impl<S> FromRequestParts<S> for Auth
where
    Arc<dyn Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let authenticator = Arc::<dyn Authenticator>::from_ref(state);
        authenticator.authenticate(parts).await.map(Auth)
    }
}

/// The caller of an operator's route: [`Auth`], then 403 `FORBIDDEN`
/// unless the caller is ADMIN — before the path, query or body is read, so
/// a member without the role learns nothing from the answers to bad input.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth(pub Caller);

impl<S> FromRequestParts<S> for AdminAuth
where
    Arc<dyn Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Auth(caller) = Auth::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Self(caller))
    }
}
