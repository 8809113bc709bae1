//! The rules of bearer tokens: access and refresh tokens, their expiry,
//! the refresh-token families (one per login) and their rotation.
//!
//! Everything here is pure: the clock is an argument (`now`, unix seconds)
//! and the signature is an adapter's business
//! ([`TokenCodec`](crate::port::outbound::TokenCodec)).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Caller, MemberId, OmsError, Role};

/// What a token may be used for (its `typ` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Presented as `Authorization: Bearer` on API calls; short-lived.
    Access,
    /// Presented only to `POST /auth/refresh` (and `/auth/logout`) to get a
    /// new pair; long-lived, single use.
    Refresh,
}

super::wire::wire_names!(TokenType, "token type", {
    Access => "access",
    Refresh => "refresh",
});

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (v4) id: unguessable.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The id of one token (its `jti` claim).
    TokenId
);
uuid_id!(
    /// The id of one login's family of refresh tokens (the `sid` claim of
    /// every token the login issued, refreshes included).
    SessionId
);

/// The claims of a token, as signed.
///
/// On the wire: `sub` is the member id as a decimal string of a positive
/// integer, `role` is `USER` or `ADMIN`, `typ` is `access` or `refresh`,
/// `jti` and `sid` are UUIDs, `iat` and `exp` are unix seconds.
///
/// `typ` and `jti` may be missing, as in the tokens of the first contract
/// (`sub`, `role`, `exp`), which any issuer with the secret may sign: such
/// a token is an access token (a refresh token always says `refresh`), and
/// its id is derived from the token itself by [`TokenClaims::identified`],
/// so that it is revocable like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The member.
    #[serde(with = "sub_claim")]
    pub sub: MemberId,
    /// The member's role when the token was issued.
    pub role: Role,
    /// Access or refresh; a token without `typ` is an access token.
    #[serde(default = "untyped")]
    pub typ: TokenType,
    /// This token's id; nil until [`TokenClaims::identified`] for a token
    /// without `jti`.
    #[serde(default = "unnamed")]
    pub jti: TokenId,
    /// The login it belongs to; always set on refresh tokens. Tokens minted
    /// outside a login (tools, tests) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Expires at: the token is dead from this second on.
    pub exp: u64,
}

/// The type of a token without `typ`.
fn untyped() -> TokenType {
    TokenType::Access
}

/// The id of a token without `jti`, before [`TokenClaims::identified`].
fn unnamed() -> TokenId {
    TokenId(Uuid::nil())
}

/// The namespace of the ids derived from tokens without `jti` (a v5 UUID
/// of the token's text in it).
const DERIVED_JTI: Uuid = Uuid::from_u128(0x6f6d_735f_6a74_695f_8d1c_2b9e_4a70_5e31);

mod sub_claim {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::MemberId;

    pub(super) fn serialize<S: Serializer>(id: &MemberId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.0.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MemberId, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_sub(&raw)
            .ok_or_else(|| serde::de::Error::custom("`sub` must be a positive integer"))
    }
}

/// A `sub` claim as a member id: a decimal string of an integer from 1 to
/// `i64::MAX`, digits only.
pub fn parse_sub(raw: &str) -> Option<MemberId> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<u64>()
        .ok()
        .filter(|&m| m > 0 && m <= i64::MAX as u64)
        .map(MemberId)
}

/// Why a well-signed token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// A refresh token where an access token is needed, or the reverse.
    #[error("a token of type `{expected}` is needed; this one is `{found}`")]
    WrongType {
        /// The type needed.
        expected: TokenType,
        /// The type presented.
        found: TokenType,
    },
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// A refresh token without a `sid`.
    #[error("refresh token has no session")]
    NoSession,
    /// Revoked: logged out, or its family was revoked.
    #[error("token revoked")]
    Revoked,
}

impl From<TokenRejection> for OmsError {
    fn from(r: TokenRejection) -> Self {
        OmsError::Unauthenticated(r.to_string())
    }
}

impl TokenClaims {
    /// Claims of an access token for `member` as `role`, valid for `ttl`
    /// from `now`, in the login `sid` (if any), with a fresh `jti`.
    pub fn access(
        member: MemberId,
        role: Role,
        sid: Option<SessionId>,
        now: u64,
        ttl: Duration,
    ) -> Self {
        Self {
            sub: member,
            role,
            typ: TokenType::Access,
            jti: TokenId::random(),
            sid,
            iat: Some(now),
            exp: now.saturating_add(ttl.as_secs()),
        }
    }

    /// Claims of a refresh token of the login `sid`, valid for `ttl` from
    /// `now`, with a fresh `jti`.
    pub fn refresh(member: MemberId, role: Role, sid: SessionId, now: u64, ttl: Duration) -> Self {
        Self {
            typ: TokenType::Refresh,
            sid: Some(sid),
            ..Self::access(member, role, Some(sid), now, ttl)
        }
    }

    /// These claims of `token`, with an id if the token has no `jti`: a
    /// name-based (v5) UUID of the token's text, so the same token always
    /// has the same id and revoking it holds.
    #[must_use]
    pub fn identified(mut self, token: &str) -> Self {
        if self.jti.0.is_nil() {
            self.jti = TokenId(Uuid::new_v5(&DERIVED_JTI, token.as_bytes()));
        }
        self
    }

    /// Whether the token is past its expiry at `now` (`exp` itself is
    /// already too late).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.exp
    }

    /// Checks that the token may be used as `expected` at `now`: the right
    /// type, not expired, and a refresh token names its login.
    pub fn check(&self, expected: TokenType, now: u64) -> Result<(), TokenRejection> {
        if self.typ != expected {
            return Err(TokenRejection::WrongType {
                expected,
                found: self.typ,
            });
        }
        if self.is_expired(now) {
            return Err(TokenRejection::Expired);
        }
        if expected == TokenType::Refresh && self.sid.is_none() {
            return Err(TokenRejection::NoSession);
        }
        Ok(())
    }

    /// How long the token has to live at `now`, at least one second (a
    /// revocation is kept this long: after it the token is refused as
    /// expired anyway).
    pub fn remaining(&self, now: u64) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(now).max(1))
    }

    /// The caller the token stands for.
    pub fn caller(&self) -> Caller {
        Caller {
            member_id: self.sub,
            role: self.role,
        }
    }
}

/// Lifetimes of the tokens a login issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Lifetime of an access token (default 15 min).
    pub access_ttl: Duration,
    /// Lifetime of a refresh token (default 14 days). Every refresh issues
    /// a new one with the full lifetime, so a login that is used stays
    /// alive, and one left alone this long ends.
    pub refresh_ttl: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// The claims of a new access and refresh token of one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedPair {
    /// The access token.
    pub access: TokenClaims,
    /// The refresh token.
    pub refresh: TokenClaims,
}

impl TokenPolicy {
    /// A new pair of the login `sid` for `member` as `role` at `now`.
    pub fn issue(&self, member: MemberId, role: Role, sid: SessionId, now: u64) -> IssuedPair {
        IssuedPair {
            access: TokenClaims::access(member, role, Some(sid), now, self.access_ttl),
            refresh: TokenClaims::refresh(member, role, sid, now, self.refresh_ttl),
        }
    }

    /// How long a login's family must be remembered from now, once issued
    /// or revoked: long enough to outlive every token it issued.
    pub fn family_ttl(&self) -> Duration {
        self.refresh_ttl
            .max(self.access_ttl)
            .max(Duration::from_secs(1))
    }
}

/// The role a refresh gives: the stored role, but never more than the
/// refreshed token had. A demotion takes effect at the next refresh; a
/// promotion only at the next login, with the password.
pub fn refreshed_role(token_role: Role, stored_role: Role) -> Role {
    match (token_role, stored_role) {
        (Role::Admin, Role::Admin) => Role::Admin,
        _ => Role::User,
    }
}

/// A login's refresh-token family as a session store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyState {
    /// Alive; `current` is the one refresh token that may be used.
    Live {
        /// The live refresh token.
        current: TokenId,
    },
    /// Revoked (logged out, or a dead refresh token was replayed).
    Revoked,
    /// Never started, or expired.
    Unknown,
}

/// What presenting a refresh token to its family does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// It was the live token: the next one replaces it.
    Rotated,
    /// It was a token the family had already replaced: someone replays a
    /// stolen or leaked token (or a client retried). The whole family is
    /// revoked.
    Reused,
    /// The family is revoked or unknown: refused, nothing changes.
    Dead,
}

/// The rotation rule: only the live token of a live family rotates; any
/// other token of a live family is a reuse, which revokes it.
pub fn rotate(state: FamilyState, presented: TokenId) -> Rotation {
    match state {
        FamilyState::Live { current } if current == presented => Rotation::Rotated,
        FamilyState::Live { .. } => Rotation::Reused,
        FamilyState::Revoked | FamilyState::Unknown => Rotation::Dead,
    }
}

/// The state a family is in after [`rotate`] decided `rotation` for
/// `next` (the refresh token issued in exchange).
pub fn after_rotation(state: FamilyState, rotation: Rotation, next: TokenId) -> FamilyState {
    match rotation {
        Rotation::Rotated => FamilyState::Live { current: next },
        Rotation::Reused => FamilyState::Revoked,
        Rotation::Dead => state,
    }
}

/// What `POST /auth/login` and `/auth/refresh` answer: a signed pair.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"<hidden>")
            .field("refresh_token", &"<hidden>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn pair() -> IssuedPair {
        TokenPolicy::default().issue(MemberId(7), Role::User, SessionId::random(), NOW)
    }

    #[test]
    fn a_login_issues_an_access_and_a_refresh_token_of_one_family() {
        let p = pair();
        assert_eq!(p.access.typ, TokenType::Access);
        assert_eq!(p.refresh.typ, TokenType::Refresh);
        assert_eq!(p.access.sid, p.refresh.sid);
        assert!(p.access.sid.is_some());
        assert_ne!(p.access.jti, p.refresh.jti);
        assert_eq!(p.access.exp, NOW + 900);
        assert_eq!(p.refresh.exp, NOW + 14 * 24 * 3600);
        assert_eq!(p.access.caller(), Caller::user(7));
    }

    #[test]
    fn claims_of_the_first_contract_are_an_access_token_named_by_the_token() {
        let bare = serde_json::json!({"sub": "7", "role": "USER", "exp": NOW + 60});
        let claims: TokenClaims = serde_json::from_value(bare).unwrap();
        assert_eq!(claims.typ, TokenType::Access);
        assert_eq!(claims.check(TokenType::Access, NOW), Ok(()));
        assert_eq!(claims.caller(), Caller::user(7));
        let a = claims.identified("header.claims.signature-a");
        let b = claims.identified("header.claims.signature-b");
        assert!(!a.jti.0.is_nil());
        assert_ne!(a.jti, b.jti, "two tokens, two ids");
        assert_eq!(a, claims.identified("header.claims.signature-a"), "stable");
        // A named token keeps its id; a typed one its type.
        let p = pair();
        assert_eq!(p.refresh.identified("any").jti, p.refresh.jti);
        let refresh: TokenClaims = serde_json::from_value(
            serde_json::json!({"sub": "7", "role": "USER", "exp": NOW + 60, "typ": "refresh"}),
        )
        .unwrap();
        assert!(refresh.check(TokenType::Access, NOW).is_err());
    }

    #[test]
    fn a_token_is_used_only_as_its_type() {
        let p = pair();
        assert_eq!(p.access.check(TokenType::Access, NOW), Ok(()));
        assert_eq!(p.refresh.check(TokenType::Refresh, NOW), Ok(()));
        assert_eq!(
            p.refresh.check(TokenType::Access, NOW),
            Err(TokenRejection::WrongType {
                expected: TokenType::Access,
                found: TokenType::Refresh
            })
        );
        assert!(matches!(
            p.access.check(TokenType::Refresh, NOW),
            Err(TokenRejection::WrongType { .. })
        ));
    }

    #[test]
    fn a_token_dies_at_its_exp() {
        let p = pair();
        assert_eq!(p.access.check(TokenType::Access, p.access.exp - 1), Ok(()));
        assert_eq!(
            p.access.check(TokenType::Access, p.access.exp),
            Err(TokenRejection::Expired)
        );
        assert_eq!(p.access.remaining(NOW), Duration::from_secs(900));
        assert_eq!(p.access.remaining(p.access.exp + 5), Duration::from_secs(1));
    }

    #[test]
    fn a_refresh_token_names_its_login() {
        let mut refresh = pair().refresh;
        refresh.sid = None;
        assert_eq!(
            refresh.check(TokenType::Refresh, NOW),
            Err(TokenRejection::NoSession)
        );
    }

    #[test]
    fn rotation_kills_the_old_token_and_a_replay_revokes_the_family() {
        let first = TokenId::random();
        let second = TokenId::random();
        let third = TokenId::random();
        let live = FamilyState::Live { current: first };
        assert_eq!(rotate(live, first), Rotation::Rotated);
        let live = after_rotation(live, Rotation::Rotated, second);
        assert_eq!(live, FamilyState::Live { current: second });
        // The first token is dead: presenting it again is a reuse.
        assert_eq!(rotate(live, first), Rotation::Reused);
        let revoked = after_rotation(live, Rotation::Reused, third);
        assert_eq!(revoked, FamilyState::Revoked);
        // Nothing rotates a revoked or unknown family, not even its last token.
        assert_eq!(rotate(revoked, second), Rotation::Dead);
        assert_eq!(rotate(FamilyState::Unknown, second), Rotation::Dead);
        assert_eq!(
            after_rotation(revoked, Rotation::Dead, third),
            FamilyState::Revoked
        );
    }

    #[test]
    fn a_refresh_never_promotes() {
        assert_eq!(refreshed_role(Role::User, Role::Admin), Role::User);
        assert_eq!(refreshed_role(Role::Admin, Role::User), Role::User);
        assert_eq!(refreshed_role(Role::Admin, Role::Admin), Role::Admin);
        assert_eq!(refreshed_role(Role::User, Role::User), Role::User);
    }

    #[test]
    fn the_family_outlives_its_tokens() {
        let policy = TokenPolicy::default();
        assert!(policy.family_ttl() >= policy.refresh_ttl);
        assert!(policy.family_ttl() >= policy.access_ttl);
    }

    #[test]
    fn claims_have_the_wire_shape() {
        let p = pair();
        let v = serde_json::to_value(p.access).unwrap();
        assert_eq!(v["sub"], "7");
        assert_eq!(v["role"], "USER");
        assert_eq!(v["typ"], "access");
        assert!(v["jti"].is_string() && v["sid"].is_string());
        assert_eq!(v["exp"], NOW + 900);
        let back: TokenClaims = serde_json::from_value(v).unwrap();
        assert_eq!(back, p.access);
    }

    #[test]
    fn claims_with_a_bad_type_role_sub_id_or_expiry_do_not_decode() {
        let jti = TokenId::random().to_string();
        for bad in [
            serde_json::json!({"sub": "7", "typ": "access", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": "7", "role": "USER", "typ": "access", "jti": jti}),
            serde_json::json!({"sub": "7", "role": "USER", "typ": "id", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": "7", "role": "ROOT", "typ": "access", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": "0", "role": "USER", "typ": "access", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": 7, "role": "USER", "typ": "access", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": "+7", "role": "USER", "typ": "access", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": "9223372036854775808", "role": "USER", "typ": "access", "jti": jti, "exp": NOW}),
            serde_json::json!({"sub": "7", "role": "USER", "typ": "access", "jti": "x", "exp": NOW}),
            serde_json::json!({"sub": "7", "role": "USER", "typ": "access", "jti": jti, "exp": -1}),
            serde_json::json!({"sub": "7", "role": "USER", "typ": "access", "jti": jti, "exp": 1.5}),
        ] {
            assert!(
                serde_json::from_value::<TokenClaims>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    fn family() -> impl Strategy<Value = FamilyState> {
        prop_oneof![
            any::<u128>().prop_map(|u| FamilyState::Live {
                current: TokenId(Uuid::from_u128(u))
            }),
            Just(FamilyState::Revoked),
            Just(FamilyState::Unknown),
        ]
    }

    proptest! {
        #[test]
        fn only_the_live_token_of_a_live_family_rotates(state in family(), presented in any::<u128>(), next in any::<u128>()) {
            let presented = TokenId(Uuid::from_u128(presented));
            let next = TokenId(Uuid::from_u128(next));
            let rotation = rotate(state, presented);
            let after = after_rotation(state, rotation, next);
            match state {
                FamilyState::Live { current } if current == presented => {
                    prop_assert_eq!(rotation, Rotation::Rotated);
                    prop_assert_eq!(after, FamilyState::Live { current: next });
                }
                FamilyState::Live { .. } => {
                    prop_assert_eq!(rotation, Rotation::Reused);
                    prop_assert_eq!(after, FamilyState::Revoked);
                }
                _ => {
                    prop_assert_eq!(rotation, Rotation::Dead);
                    prop_assert_eq!(after, state);
                }
            }
            // A token that rotated once never rotates again.
            if rotation == Rotation::Rotated && next != presented {
                prop_assert_eq!(rotate(after, presented), Rotation::Reused);
            }
        }

        #[test]
        fn a_token_is_accepted_exactly_before_its_exp_and_as_its_type(
            member in 1u64..=i64::MAX as u64,
            admin in any::<bool>(),
            issued in 0u64..4_000_000_000,
            ttl in 0u64..100_000_000,
            at in 0u64..8_000_000_000,
            refresh in any::<bool>(),
            used_as_refresh in any::<bool>(),
        ) {
            let role = if admin { Role::Admin } else { Role::User };
            let claims = if refresh {
                TokenClaims::refresh(MemberId(member), role, SessionId::random(), issued, Duration::from_secs(ttl))
            } else {
                TokenClaims::access(MemberId(member), role, None, issued, Duration::from_secs(ttl))
            };
            let expected = if used_as_refresh { TokenType::Refresh } else { TokenType::Access };
            let ok = claims.check(expected, at).is_ok();
            prop_assert_eq!(ok, refresh == used_as_refresh && at < issued + ttl);
            // The wire form decodes to the same claims.
            let back: TokenClaims = serde_json::from_str(&serde_json::to_string(&claims).unwrap()).unwrap();
            prop_assert_eq!(back, claims);
        }

        #[test]
        fn sub_accepts_exactly_the_positive_i64_range(raw in "\\PC{0,24}") {
            let parsed = parse_sub(&raw);
            let expected = raw.bytes().all(|b| b.is_ascii_digit())
                && !raw.is_empty()
                && raw.parse::<u64>().is_ok_and(|m| m > 0 && m <= i64::MAX as u64);
            prop_assert_eq!(parsed.is_some(), expected);
        }
    }
}
