//! HS256 bearer tokens: `sub` = member id, `role` = `USER` | `ADMIN`, `exp`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oms_core::domain::{Caller, MemberId, Role};
use serde::{Deserialize, Serialize};

use super::{AppState, Problem};

/// The claims oms reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Member id, a decimal string of a positive integer.
    pub sub: String,
    /// `USER` or `ADMIN`.
    pub role: String,
    /// Expiry, unix seconds.
    pub exp: u64,
}

/// Verifies (and, for tools and tests, mints) tokens with one HS256 secret.
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

impl JwtAuth {
    /// Keys for this shared secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `member_id` with `role`, valid for `ttl`.
    pub fn mint(&self, member_id: u64, role: Role, ttl: Duration) -> Result<String, Problem> {
        let exp = SystemTime::now()
            .checked_add(ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        let claims = Claims {
            sub: member_id.to_string(),
            role: match role {
                Role::User => "USER".into(),
                Role::Admin => "ADMIN".into(),
            },
            exp,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Problem::unauthorized(format!("cannot sign token: {e}")))
    }

    /// The caller a bearer token stands for.
    pub fn verify(&self, token: &str) -> Result<Caller, Problem> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => Problem::unauthorized("token expired"),
                ErrorKind::InvalidSignature => Problem::unauthorized("token signature is invalid"),
                _ => Problem::unauthorized(format!("token is invalid: {e}")),
            }
        })?;
        let member = data
            .claims
            .sub
            .parse::<u64>()
            .ok()
            .filter(|&m| m > 0 && m <= i64::MAX as u64)
            .ok_or_else(|| Problem::unauthorized("token `sub` must be a positive integer"))?;
        let role = match data.claims.role.as_str() {
            "USER" => Role::User,
            "ADMIN" => Role::Admin,
            _ => return Err(Problem::unauthorized("token `role` must be USER or ADMIN")),
        };
        Ok(Caller {
            member_id: MemberId(member),
            role,
        })
    }
}

/// The authenticated caller of a request (extractor).
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("missing Authorization header"))?;
        let value = header
            .to_str()
            .map_err(|_| Problem::unauthorized("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Problem::unauthorized("Authorization must be `Bearer <token>`"))?;
        state.auth.verify(token).map(Auth)
    }
}
