use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::domain::throttle::{address_key, email_key};
use crate::domain::token::refreshed_role;
use crate::domain::{
    validate_password, Attempts, Caller, Email, IssuedPair, Login, Member, NewMember, OmsError,
    OmsResult, PasswordHash, Role, Rotation, SessionId, Signup, ThrottlePolicy, TokenClaims,
    TokenPair, TokenPolicy, TokenRejection, TokenType,
};
use crate::port::inbound::AuthUseCase;
use crate::port::outbound::{
    AttemptCounter, MemberStore, PasswordHasher, SessionStore, TokenCodec,
};

/// The rules of [`AuthService`]: token lifetimes, login throttling, and
/// whether access tokens are checked against revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Token lifetimes.
    pub tokens: TokenPolicy,
    /// Login throttling.
    pub throttle: ThrottlePolicy,
    /// Whether every authenticated request asks the session store if its
    /// access token (or its login) is revoked (default `true`). Off, a
    /// logged-out access token stays valid until it expires: for
    /// benchmarks only.
    pub check_revocation: bool,
    /// Whether an access token is accepted when the session store does not
    /// answer the revocation check (default `true`): its signature, type
    /// and expiry still hold, and reads that do not need the session
    /// store keep working while it is down; a logged-out token may then be
    /// used until it expires (an access token's lifetime at most). With
    /// `false`, every authenticated request fails (503) while the store is
    /// down. A warning is logged at most once a second either way. When
    /// accepting, a service whose check failed accepts without asking for
    /// the next 2 seconds, so that an outage does not add the store's
    /// timeout to every request.
    pub accept_when_unchecked: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            tokens: TokenPolicy::default(),
            throttle: ThrottlePolicy::default(),
            check_revocation: true,
            accept_when_unchecked: true,
        }
    }
}

/// What [`AuthService::ensure_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// No member had the email: an operator was created.
    Created(Member),
    /// A member had the email without the role or without this password:
    /// it is now an operator with this password.
    Promoted(Member),
    /// The member was an operator with this password already.
    Unchanged(Member),
}

/// [`AuthUseCase`] on the member store, the session store, the attempt
/// counter, a password hasher and a token codec.
///
/// - Passwords are stored only as hashes of the [`PasswordHasher`]. A login
///   with an unknown email verifies the password against a dummy hash, so
///   it takes about as long as one with a wrong password, and both answer
///   [`OmsError::BadCredentials`].
/// - Every login attempt is counted per email before the password is
///   checked, and every failure per client address ([`ThrottlePolicy`]);
///   past a limit the answer is [`OmsError::Throttled`] without checking
///   the password.
/// - A login starts a family ([`SessionId`]) whose live refresh token is
///   kept in the [`SessionStore`]; a refresh rotates it, and a replayed
///   dead token revokes the family, access tokens included (they carry
///   its `sid`).
pub struct AuthService {
    members: Arc<dyn MemberStore>,
    sessions: Arc<dyn SessionStore>,
    attempts: Arc<dyn AttemptCounter>,
    hasher: Arc<dyn PasswordHasher>,
    codec: Arc<dyn TokenCodec>,
    policy: AuthPolicy,
    dummy: OnceCell<PasswordHash>,
    /// Unix second of the last warning about an unchecked token.
    warned_at: AtomicU64,
    /// Until this unix second, access tokens are accepted without asking
    /// the session store (it did not answer).
    unchecked_until: AtomicU64,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AuthService {
    /// A service on these ports, with the default [`AuthPolicy`].
    pub fn new(
        members: Arc<dyn MemberStore>,
        sessions: Arc<dyn SessionStore>,
        attempts: Arc<dyn AttemptCounter>,
        hasher: Arc<dyn PasswordHasher>,
        codec: Arc<dyn TokenCodec>,
    ) -> Self {
        Self {
            members,
            sessions,
            attempts,
            hasher,
            codec,
            policy: AuthPolicy::default(),
            dummy: OnceCell::new(),
            warned_at: AtomicU64::new(0),
            unchecked_until: AtomicU64::new(0),
        }
    }

    /// Replaces the policy.
    pub fn with_policy(mut self, policy: AuthPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy.
    pub fn policy(&self) -> AuthPolicy {
        self.policy
    }

    /// Makes the dummy hash that logins with an unknown email are verified
    /// against (done by the first such login otherwise, which then takes
    /// one hash longer).
    pub async fn prepare(&self) -> OmsResult<()> {
        self.dummy_hash().await.map(|_| ())
    }

    async fn dummy_hash(&self) -> OmsResult<&PasswordHash> {
        self.dummy
            .get_or_try_init(|| async {
                let filler = format!("{}{}", SessionId::random(), SessionId::random());
                self.hasher.hash(&filler).await
            })
            .await
    }

    /// Makes sure the member with `email` is an operator whose password is
    /// `password` (the operator's bootstrap, `OMS_ADMIN_EMAIL` /
    /// `OMS_ADMIN_PASSWORD`): creates it, or promotes it and sets its
    /// password. Setting the password matters: whoever signed up with the
    /// email before does not get an operator account with their own
    /// password; their tokens keep the role they had (a refresh never
    /// promotes).
    pub async fn ensure_admin(&self, email: &str, password: &str) -> OmsResult<AdminBootstrap> {
        let email = Email::parse(email)?;
        validate_password(password)?;
        for _ in 0..3 {
            match self.members.find_by_email(&email).await? {
                Some(member) => {
                    if member.role == Role::Admin
                        && self.hasher.verify(password, &member.password_hash).await?
                    {
                        return Ok(AdminBootstrap::Unchanged(member));
                    }
                    let hash = self.hasher.hash(password).await?;
                    self.members
                        .set_credentials(member.id, Role::Admin, &hash)
                        .await?;
                    return Ok(AdminBootstrap::Promoted(Member {
                        role: Role::Admin,
                        password_hash: hash,
                        ..member
                    }));
                }
                None => {
                    let new = NewMember {
                        email: email.clone(),
                        name: "Administrator".into(),
                        role: Role::Admin,
                        password_hash: self.hasher.hash(password).await?,
                    };
                    match self.members.create(&new).await {
                        Ok(member) => return Ok(AdminBootstrap::Created(member)),
                        // Another replica created it at the same time.
                        Err(OmsError::EmailTaken) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(OmsError::Conflict(format!(
            "the member {email} keeps changing; try again"
        )))
    }

    fn sign(&self, pair: &IssuedPair) -> OmsResult<TokenPair> {
        Ok(TokenPair {
            access_token: self.codec.encode(&pair.access)?,
            refresh_token: self.codec.encode(&pair.refresh)?,
            expires_in: self.policy.tokens.access_ttl.as_secs(),
        })
    }

    /// Decodes a token; one without `jti` gets the id derived from it.
    fn decode(&self, token: &str) -> OmsResult<TokenClaims> {
        Ok(self.codec.decode(token)?.identified(token))
    }

    /// Decodes a token and checks it is usable as `typ` at `now`.
    fn claims(&self, token: &str, typ: TokenType, now: u64) -> OmsResult<TokenClaims> {
        let claims = self.decode(token)?;
        claims.check(typ, now)?;
        Ok(claims)
    }

    async fn check_password(&self, member: Option<&Member>, password: &str) -> OmsResult<bool> {
        match member {
            Some(m) => self.hasher.verify(password, &m.password_hash).await,
            None => {
                // The same work as for a member, and the same answer as a
                // wrong password.
                let dummy = self.dummy_hash().await?;
                self.hasher.verify(password, dummy).await?;
                Ok(false)
            }
        }
    }
}

#[async_trait]
impl AuthUseCase for AuthService {
    async fn signup(&self, signup: Signup) -> OmsResult<Member> {
        let (email, name) = signup.validate()?;
        if self.members.find_by_email(&email).await?.is_some() {
            return Err(OmsError::EmailTaken);
        }
        let password_hash = self.hasher.hash(&signup.password).await?;
        let member = self
            .members
            .create(&NewMember {
                email,
                name,
                role: Role::User,
                password_hash,
            })
            .await?;
        tracing::info!(member_id = %member.id, "member signed up");
        Ok(member)
    }

    async fn login(&self, login: Login) -> OmsResult<TokenPair> {
        let email = Email::parse(&login.email).ok();
        let email_key = email.as_ref().map(email_key);
        let address_key = login.client.map(address_key);
        let window = self.policy.throttle.window;
        // The email's attempts are counted now (a success clears them); the
        // address's failures are read now and counted on failure, so that
        // many buyers logging in at once behind one address are not held.
        let email_hit = async {
            match &email_key {
                Some(k) => Ok(self
                    .attempts
                    .hit(std::slice::from_ref(k), window)
                    .await?
                    .pop()),
                None => Ok::<_, OmsError>(None),
            }
        };
        let address_read = async {
            match &address_key {
                Some(k) => Ok(self.attempts.peek(std::slice::from_ref(k)).await?.pop()),
                None => Ok::<_, OmsError>(None),
            }
        };
        let (email_count, address_failures) = futures::try_join!(email_hit, address_read)?;
        let email_count = email_count.unwrap_or(Attempts {
            count: 0,
            resets_in: window,
        });
        // This attempt would be the address's next failure.
        let address_count = address_failures.map(|a| Attempts {
            count: a.count + 1,
            ..a
        });
        if let Err(retry_after) = self.policy.throttle.verdict(email_count, address_count) {
            tracing::warn!(email = ?email.as_ref().map(Email::as_str), client = ?login.client, "login throttled");
            return Err(OmsError::Throttled { retry_after });
        }
        let member = match &email {
            Some(e) => self.members.find_by_email(e).await?,
            None => None,
        };
        if !self
            .check_password(member.as_ref(), &login.password)
            .await?
        {
            tracing::info!(client = ?login.client, "login refused: bad credentials");
            if let Some(key) = &address_key {
                self.attempts.hit(std::slice::from_ref(key), window).await?;
            }
            return Err(OmsError::BadCredentials);
        }
        let Some(member) = member else {
            return Err(OmsError::BadCredentials);
        };
        if let Some(key) = email_key {
            if let Err(e) = self.attempts.clear(&[key]).await {
                tracing::warn!(error = %e, "login attempts of the email not cleared");
            }
        }
        let sid = SessionId::random();
        let pair = self
            .policy
            .tokens
            .issue(member.id, member.role, sid, unix_now());
        let tokens = self.sign(&pair)?;
        self.sessions
            .start(sid, pair.refresh.jti, self.policy.tokens.family_ttl())
            .await?;
        tracing::info!(member_id = %member.id, session = %sid, "member logged in");
        Ok(tokens)
    }

    async fn refresh(&self, refresh_token: &str) -> OmsResult<TokenPair> {
        let now = unix_now();
        let claims = self.claims(refresh_token, TokenType::Refresh, now)?;
        let sid = claims.sid.ok_or(TokenRejection::NoSession)?;
        let Some(member) = self.members.get(claims.sub).await? else {
            self.sessions
                .revoke(None, Some((sid, self.policy.tokens.family_ttl())))
                .await?;
            return Err(OmsError::Unauthenticated(
                "the member of this token no longer exists".into(),
            ));
        };
        let role = refreshed_role(claims.role, member.role);
        let pair = self.policy.tokens.issue(member.id, role, sid, now);
        let tokens = self.sign(&pair)?;
        match self
            .sessions
            .rotate(
                sid,
                claims.jti,
                pair.refresh.jti,
                self.policy.tokens.family_ttl(),
            )
            .await?
        {
            Rotation::Rotated => Ok(tokens),
            Rotation::Reused => {
                tracing::warn!(member_id = %member.id, session = %sid, "a rotated refresh token was presented again; the login is revoked");
                Err(OmsError::Unauthenticated(
                    "this refresh token was already used; every token of this login is revoked"
                        .into(),
                ))
            }
            Rotation::Dead => Err(OmsError::Unauthenticated(
                "this login has ended (logged out, revoked or expired)".into(),
            )),
        }
    }

    async fn logout(&self, access_token: &str, refresh_token: Option<String>) -> OmsResult<()> {
        let now = unix_now();
        let access = self.claims(access_token, TokenType::Access, now)?;
        if self.sessions.is_revoked(access.jti, access.sid).await? {
            return Err(TokenRejection::Revoked.into());
        }
        let other = match refresh_token {
            None => None,
            Some(token) => {
                let refresh = self.decode(&token)?;
                if refresh.typ != TokenType::Refresh {
                    return Err(TokenRejection::WrongType {
                        expected: TokenType::Refresh,
                        found: refresh.typ,
                    }
                    .into());
                }
                if refresh.sub != access.sub {
                    return Err(OmsError::Unauthenticated(
                        "the refresh token belongs to another member".into(),
                    ));
                }
                refresh.sid.filter(|sid| Some(*sid) != access.sid)
            }
        };
        let family_ttl = self.policy.tokens.family_ttl();
        self.sessions
            .revoke(
                Some((access.jti, access.remaining(now))),
                access.sid.map(|sid| (sid, family_ttl)),
            )
            .await?;
        if let Some(sid) = other {
            self.sessions.revoke(None, Some((sid, family_ttl))).await?;
        }
        tracing::info!(member_id = %access.sub, "member logged out");
        Ok(())
    }

    async fn me(&self, caller: Caller) -> OmsResult<Member> {
        self.members
            .get(caller.member_id)
            .await?
            .ok_or(OmsError::MemberNotFound {
                member_id: caller.member_id,
            })
    }

    async fn authenticate(&self, access_token: &str) -> OmsResult<Caller> {
        let now = unix_now();
        let claims = self.claims(access_token, TokenType::Access, now)?;
        if !self.policy.check_revocation
            || (self.policy.accept_when_unchecked
                && now < self.unchecked_until.load(Ordering::Relaxed))
        {
            return Ok(claims.caller());
        }
        match self.sessions.is_revoked(claims.jti, claims.sid).await {
            Ok(false) => Ok(claims.caller()),
            Ok(true) => Err(TokenRejection::Revoked.into()),
            Err(e) if e.is_retryable() => {
                let last = self.warned_at.swap(now, Ordering::Relaxed);
                if last != now {
                    tracing::warn!(error = %e, accepted = self.policy.accept_when_unchecked, "revocation check unavailable");
                }
                if self.policy.accept_when_unchecked {
                    self.unchecked_until.store(now + 2, Ordering::Relaxed);
                    Ok(claims.caller())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::{InMemoryAttemptCounter, InMemoryMemberStore, InMemorySessionStore};
    use crate::password::{Argon2Settings, Argon2idHasher};
    use crate::port::outbound::{MockAttemptCounter, MockSessionStore};

    /// Claims as JSON behind a marker: enough to drive the service (the
    /// real codec signs).
    struct PlainCodec;

    impl TokenCodec for PlainCodec {
        fn encode(&self, claims: &TokenClaims) -> OmsResult<String> {
            Ok(format!(
                "plain.{}",
                serde_json::to_string(claims).map_err(|e| OmsError::Internal(e.to_string()))?
            ))
        }

        fn decode(&self, token: &str) -> OmsResult<TokenClaims> {
            token
                .strip_prefix("plain.")
                .and_then(|json| serde_json::from_str(json).ok())
                .ok_or_else(|| OmsError::Unauthenticated("malformed token".into()))
        }
    }

    struct Fixture {
        members: Arc<InMemoryMemberStore>,
        sessions: Arc<InMemorySessionStore>,
        attempts: Arc<InMemoryAttemptCounter>,
        hasher: Arc<Argon2idHasher>,
    }

    fn fixture() -> Fixture {
        Fixture {
            members: Arc::new(InMemoryMemberStore::new()),
            sessions: Arc::new(InMemorySessionStore::new()),
            attempts: Arc::new(InMemoryAttemptCounter::new()),
            hasher: Arc::new(
                Argon2idHasher::with_settings(Argon2Settings::insecure_fast()).unwrap(),
            ),
        }
    }

    impl Fixture {
        fn service(&self) -> AuthService {
            AuthService::new(
                self.members.clone(),
                self.sessions.clone(),
                self.attempts.clone(),
                self.hasher.clone(),
                Arc::new(PlainCodec),
            )
        }
    }

    fn signup(email: &str) -> Signup {
        Signup {
            email: email.into(),
            password: "correct horse battery".into(),
            name: " Kim ".into(),
        }
    }

    fn login(email: &str, password: &str) -> Login {
        Login {
            email: email.into(),
            password: password.into(),
            client: Some("203.0.113.9".parse().unwrap()),
        }
    }

    fn decode(token: &str) -> TokenClaims {
        PlainCodec.decode(token).unwrap()
    }

    #[tokio::test]
    async fn signup_stores_a_normalized_user_with_a_hash() {
        let f = fixture();
        let auth = f.service();
        let m = auth.signup(signup("Kim@Example.com")).await.unwrap();
        assert_eq!(m.email.as_str(), "kim@example.com");
        assert_eq!(m.name, "Kim");
        assert_eq!(m.role, Role::User);
        assert!(m.password_hash.as_str().starts_with("$argon2id$"));
        assert!(matches!(
            auth.signup(signup("KIM@example.com ")).await,
            Err(OmsError::EmailTaken)
        ));
        let mut short = signup("lee@example.com");
        short.password = "123456789".into();
        assert!(matches!(
            auth.signup(short).await,
            Err(OmsError::Validation(e)) if e.fields() == ["password"]
        ));
        assert_eq!(f.members.len(), 1);
    }

    #[tokio::test]
    async fn login_issues_a_pair_of_one_family_and_me_reads_the_member() {
        let f = fixture();
        let auth = f.service();
        let m = auth.signup(signup("kim@example.com")).await.unwrap();
        let pair = auth
            .login(login(" KIM@example.com", "correct horse battery"))
            .await
            .unwrap();
        assert_eq!(pair.expires_in, 900);
        let access = decode(&pair.access_token);
        let refresh = decode(&pair.refresh_token);
        assert_eq!(
            (access.typ, refresh.typ),
            (TokenType::Access, TokenType::Refresh)
        );
        assert_eq!(access.sid, refresh.sid);
        let caller = auth.authenticate(&pair.access_token).await.unwrap();
        assert_eq!(caller, Caller::user(m.id.0));
        assert_eq!(auth.me(caller).await.unwrap(), m);
        assert!(matches!(
            auth.me(Caller::user(9999)).await,
            Err(OmsError::MemberNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn unknown_emails_and_wrong_passwords_get_the_same_error() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        for (email, password) in [
            ("kim@example.com", "wrong password!"),
            ("nobody@example.com", "correct horse battery"),
            ("not an email", "correct horse battery"),
        ] {
            let e = auth.login(login(email, password)).await.unwrap_err();
            assert!(matches!(e, OmsError::BadCredentials), "{email}: {e:?}");
        }
    }

    #[tokio::test]
    async fn repeated_failures_for_one_email_are_throttled_until_the_window_ends() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        for _ in 0..5 {
            assert!(matches!(
                auth.login(login("kim@example.com", "guess guess guess"))
                    .await,
                Err(OmsError::BadCredentials)
            ));
        }
        // Even the right password waits now.
        let e = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap_err();
        let OmsError::Throttled { retry_after } = e else {
            panic!("{e:?}")
        };
        assert!(retry_after > Duration::from_secs(800), "{retry_after:?}");
        // Another email from another address is not affected.
        auth.signup(signup("lee@example.com")).await.unwrap();
        let mut other = login("lee@example.com", "correct horse battery");
        other.client = Some("198.51.100.1".parse().unwrap());
        auth.login(other).await.unwrap();
    }

    #[tokio::test]
    async fn one_address_guessing_many_emails_is_throttled() {
        let f = fixture();
        let auth = f.service().with_policy(AuthPolicy {
            throttle: ThrottlePolicy {
                per_address: 3,
                ..ThrottlePolicy::default()
            },
            ..AuthPolicy::default()
        });
        for i in 0..3 {
            let e = auth
                .login(login(&format!("user{i}@example.com"), "guess guess guess"))
                .await
                .unwrap_err();
            assert!(matches!(e, OmsError::BadCredentials));
        }
        let e = auth
            .login(login("user9@example.com", "guess guess guess"))
            .await
            .unwrap_err();
        assert!(matches!(e, OmsError::Throttled { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn many_buyers_behind_one_address_log_in_at_once() {
        let f = fixture();
        let auth = Arc::new(f.service().with_policy(AuthPolicy {
            throttle: ThrottlePolicy {
                per_address: 3,
                ..ThrottlePolicy::default()
            },
            ..AuthPolicy::default()
        }));
        for i in 0..20 {
            auth.signup(signup(&format!("buyer{i}@example.com")))
                .await
                .unwrap();
        }
        let logins = (0..20).map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                auth.login(login(
                    &format!("buyer{i}@example.com"),
                    "correct horse battery",
                ))
                .await
            })
        });
        for done in futures::future::join_all(logins).await {
            done.unwrap().unwrap();
        }
        // Failures still count: three, and the address waits.
        for _ in 0..3 {
            let e = auth
                .login(login("buyer0@example.com", "guess guess guess"))
                .await
                .unwrap_err();
            assert!(matches!(e, OmsError::BadCredentials), "{e:?}");
        }
        let e = auth
            .login(login("buyer1@example.com", "correct horse battery"))
            .await
            .unwrap_err();
        assert!(matches!(e, OmsError::Throttled { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_success_clears_the_email_count() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        for _ in 0..3 {
            for _ in 0..4 {
                let _ = auth
                    .login(login("kim@example.com", "guess guess guess"))
                    .await;
            }
            auth.login(login("kim@example.com", "correct horse battery"))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_throttle_that_does_not_answer_refuses_the_login() {
        let f = fixture();
        let mut attempts = MockAttemptCounter::new();
        attempts
            .expect_hit()
            .returning(|_, _| Err(OmsError::unavailable("redis", "down")));
        attempts
            .expect_peek()
            .returning(|_| Err(OmsError::unavailable("redis", "down")));
        let auth = AuthService::new(
            f.members.clone(),
            f.sessions.clone(),
            Arc::new(attempts),
            f.hasher.clone(),
            Arc::new(PlainCodec),
        );
        auth.signup(signup("kim@example.com")).await.unwrap();
        assert!(matches!(
            auth.login(login("kim@example.com", "correct horse battery"))
                .await,
            Err(OmsError::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn refresh_rotates_and_a_replay_revokes_the_whole_login() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        let first = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        let second = auth.refresh(&first.refresh_token).await.unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert_eq!(
            decode(&second.access_token).sid,
            decode(&first.access_token).sid
        );
        auth.authenticate(&second.access_token).await.unwrap();
        let third = auth.refresh(&second.refresh_token).await.unwrap();
        // Replaying the first (dead) refresh token revokes the family.
        let e = auth.refresh(&first.refresh_token).await.unwrap_err();
        assert!(matches!(e, OmsError::Unauthenticated(_)), "{e:?}");
        for access in [
            &first.access_token,
            &second.access_token,
            &third.access_token,
        ] {
            assert!(auth.authenticate(access).await.is_err());
        }
        assert!(auth.refresh(&third.refresh_token).await.is_err());
        // Another login of the same member is not affected.
        let other = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        auth.authenticate(&other.access_token).await.unwrap();
        auth.refresh(&other.refresh_token).await.unwrap();
    }

    #[tokio::test]
    async fn tokens_are_used_only_as_their_type() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        let pair = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        assert!(auth.authenticate(&pair.refresh_token).await.is_err());
        assert!(auth.refresh(&pair.access_token).await.is_err());
        assert!(auth.logout(&pair.refresh_token, None).await.is_err());
        assert!(auth
            .logout(&pair.access_token, Some(pair.access_token.clone()))
            .await
            .is_err());
        // None of that revoked anything.
        auth.authenticate(&pair.access_token).await.unwrap();
        auth.refresh(&pair.refresh_token).await.unwrap();
    }

    #[tokio::test]
    async fn logout_revokes_the_access_token_and_the_login() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        let pair = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        let other = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        auth.logout(&pair.access_token, Some(other.refresh_token.clone()))
            .await
            .unwrap();
        assert!(auth.authenticate(&pair.access_token).await.is_err());
        assert!(auth.refresh(&pair.refresh_token).await.is_err());
        // The other login named by its refresh token ended too.
        assert!(auth.refresh(&other.refresh_token).await.is_err());
        assert!(auth.authenticate(&other.access_token).await.is_err());
        // Logging out twice is refused: the token is revoked.
        assert!(auth.logout(&pair.access_token, None).await.is_err());
    }

    #[tokio::test]
    async fn logout_refuses_another_members_refresh_token() {
        let f = fixture();
        let auth = f.service();
        auth.signup(signup("kim@example.com")).await.unwrap();
        auth.signup(signup("lee@example.com")).await.unwrap();
        let kim = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        let lee = auth
            .login(login("lee@example.com", "correct horse battery"))
            .await
            .unwrap();
        assert!(auth
            .logout(&kim.access_token, Some(lee.refresh_token.clone()))
            .await
            .is_err());
        auth.refresh(&lee.refresh_token).await.unwrap();
        auth.authenticate(&kim.access_token).await.unwrap();
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let f = fixture();
        let auth = f.service();
        let m = auth.signup(signup("kim@example.com")).await.unwrap();
        let past = unix_now() - 10;
        let pair = TokenPolicy {
            access_ttl: Duration::from_secs(5),
            refresh_ttl: Duration::from_secs(5),
        }
        .issue(m.id, m.role, SessionId::random(), past);
        f.sessions
            .start(
                pair.refresh.sid.unwrap(),
                pair.refresh.jti,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let signed = auth.sign(&pair).unwrap();
        assert!(auth.authenticate(&signed.access_token).await.is_err());
        assert!(auth.refresh(&signed.refresh_token).await.is_err());
    }

    #[tokio::test]
    async fn the_revocation_check_can_be_turned_off_and_costs_one_call() {
        let f = fixture();
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_is_revoked()
            .times(1)
            .returning(|_, _| Ok(true));
        let checked = AuthService::new(
            f.members.clone(),
            Arc::new(sessions),
            f.attempts.clone(),
            f.hasher.clone(),
            Arc::new(PlainCodec),
        );
        let claims = TokenClaims::access(
            crate::domain::MemberId(5),
            Role::User,
            None,
            unix_now(),
            Duration::from_secs(60),
        );
        let token = PlainCodec.encode(&claims).unwrap();
        assert!(checked.authenticate(&token).await.is_err());
        let unchecked = AuthService::new(
            f.members.clone(),
            Arc::new(MockSessionStore::new()),
            f.attempts.clone(),
            f.hasher.clone(),
            Arc::new(PlainCodec),
        )
        .with_policy(AuthPolicy {
            check_revocation: false,
            ..AuthPolicy::default()
        });
        assert_eq!(
            unchecked.authenticate(&token).await.unwrap(),
            Caller::user(5)
        );
    }

    #[tokio::test]
    async fn a_session_store_that_does_not_answer_keeps_valid_tokens_valid_unless_told_otherwise() {
        let f = fixture();
        let down = |calls: usize| {
            let mut sessions = MockSessionStore::new();
            sessions
                .expect_is_revoked()
                .times(calls)
                .returning(|_, _| Err(OmsError::unavailable("redis", "down")));
            Arc::new(sessions)
        };
        let token = PlainCodec
            .encode(&TokenClaims::access(
                crate::domain::MemberId(5),
                Role::User,
                None,
                unix_now(),
                Duration::from_secs(60),
            ))
            .unwrap();
        // Asked once; the next requests of the outage do not wait for it.
        let open = AuthService::new(
            f.members.clone(),
            down(1),
            f.attempts.clone(),
            f.hasher.clone(),
            Arc::new(PlainCodec),
        );
        assert_eq!(open.authenticate(&token).await.unwrap(), Caller::user(5));
        assert!(
            open.authenticate("plain.junk").await.is_err(),
            "still checked"
        );
        let closed = AuthService::new(
            f.members.clone(),
            down(2),
            f.attempts.clone(),
            f.hasher.clone(),
            Arc::new(PlainCodec),
        )
        .with_policy(AuthPolicy {
            accept_when_unchecked: false,
            ..AuthPolicy::default()
        });
        for _ in 0..2 {
            assert!(matches!(
                closed.authenticate(&token).await,
                Err(OmsError::Unavailable { .. })
            ));
        }
    }

    #[tokio::test]
    async fn a_refresh_follows_a_demotion_but_never_a_promotion() {
        let f = fixture();
        let auth = f.service();
        let m = auth.signup(signup("kim@example.com")).await.unwrap();
        let pair = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        f.members
            .set_credentials(m.id, Role::Admin, &m.password_hash)
            .await
            .unwrap();
        let refreshed = auth.refresh(&pair.refresh_token).await.unwrap();
        assert_eq!(decode(&refreshed.access_token).role, Role::User);
        let admin = auth
            .login(login("kim@example.com", "correct horse battery"))
            .await
            .unwrap();
        assert_eq!(decode(&admin.access_token).role, Role::Admin);
        f.members
            .set_credentials(m.id, Role::User, &m.password_hash)
            .await
            .unwrap();
        let demoted = auth.refresh(&admin.refresh_token).await.unwrap();
        assert_eq!(decode(&demoted.access_token).role, Role::User);
    }

    #[tokio::test]
    async fn the_admin_bootstrap_creates_promotes_and_resets_the_password() {
        let f = fixture();
        let auth = f.service();
        let created = auth
            .ensure_admin("Ops@Example.com", "operator password")
            .await
            .unwrap();
        let AdminBootstrap::Created(admin) = created else {
            panic!("{created:?}")
        };
        assert_eq!(admin.role, Role::Admin);
        assert!(matches!(
            auth.ensure_admin("ops@example.com", "operator password")
                .await
                .unwrap(),
            AdminBootstrap::Unchanged(_)
        ));
        // Someone signed up with the operator's email first.
        auth.signup(signup("boss@example.com")).await.unwrap();
        let promoted = auth
            .ensure_admin("boss@example.com", "the operator's own")
            .await
            .unwrap();
        assert!(matches!(promoted, AdminBootstrap::Promoted(ref m) if m.role == Role::Admin));
        assert!(matches!(
            auth.login(login("boss@example.com", "correct horse battery"))
                .await,
            Err(OmsError::BadCredentials)
        ));
        let pair = auth
            .login(login("boss@example.com", "the operator's own"))
            .await
            .unwrap();
        assert_eq!(decode(&pair.access_token).role, Role::Admin);
        assert!(matches!(
            auth.ensure_admin("ops@example.com", "short").await,
            Err(OmsError::Validation(e)) if e.fields() == ["password"]
        ));
    }
}
