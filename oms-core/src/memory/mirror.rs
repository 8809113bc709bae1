use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::lock;
use super::sessions::unix_millis;
use crate::domain::{OmsError, OmsResult, Rotation, SessionId, TokenId};
use crate::port::outbound::{RevocationFeed, Revoked, SessionStore, REVOCATION_FEED_WINDOW};

#[derive(Debug, Default)]
struct Copy {
    tokens: HashMap<TokenId, u64>,
    sessions: HashMap<SessionId, u64>,
    cursor: Option<String>,
    /// The last successful sync.
    synced: Option<Instant>,
    /// The last sync attempt, successful or not.
    attempted: Option<Instant>,
    /// The last complete load.
    loaded: Option<Instant>,
    /// The last warning about a failed sync.
    warned: Option<Instant>,
    /// Revocations made through this mirror lately, with when: a complete
    /// load read before one of them was written must not drop it.
    local: Vec<(Instant, Revoked, u64)>,
}

impl Copy {
    /// Applies a feed read from `started` on.
    fn apply(&mut self, feed: RevocationFeed, started: Instant, now: Instant) {
        if feed.complete {
            self.tokens.clear();
            self.sessions.clear();
            self.loaded = Some(now);
            self.local.retain(|(at, _, _)| *at >= started);
            for (_, revoked, until_ms) in self.local.clone() {
                self.add(revoked, until_ms);
            }
        }
        for r in feed.revocations {
            self.add(r.revoked, r.until_ms);
        }
        let now_ms = unix_millis();
        self.tokens.retain(|_, until| *until > now_ms);
        self.sessions.retain(|_, until| *until > now_ms);
        self.cursor = feed.cursor;
        self.synced = Some(now);
    }

    fn add(&mut self, revoked: Revoked, until_ms: u64) {
        match revoked {
            Revoked::Token(jti) => self.add_token(jti, until_ms),
            Revoked::Session(sid) => self.add_session(sid, until_ms),
        }
    }

    /// A revocation made through the mirror: in the copy at once, and kept
    /// across the next complete load.
    fn add_local(&mut self, revoked: Revoked, until_ms: u64) {
        self.add(revoked, until_ms);
        let now = Instant::now();
        self.local
            .retain(|(at, _, _)| now.duration_since(*at) < Duration::from_secs(60));
        self.local.push((now, revoked, until_ms));
    }

    fn add_token(&mut self, jti: TokenId, until_ms: u64) {
        let until = self.tokens.entry(jti).or_default();
        *until = (*until).max(until_ms);
    }

    fn add_session(&mut self, sid: SessionId, until_ms: u64) {
        let until = self.sessions.entry(sid).or_default();
        *until = (*until).max(until_ms);
    }
}

/// A [`SessionStore`] whose revocation check is answered from memory: a
/// copy of the revocations of a shared store, kept in sync by reading the
/// store's feed ([`SessionStore::revocations`]) at most once per `interval`
/// (default 250 ms), on demand.
///
/// Every authenticated request asks [`is_revoked`](SessionStore::is_revoked),
/// so with a remote store each would cost a round trip; behind a mirror, one
/// round trip per `interval` serves them all. Revocations made through the
/// mirror take effect at once in its process; those made by other
/// processes within `interval` (plus one round trip). A copy older than
/// `stale_after` (default 5 s: the store has not answered) is not trusted:
/// the check fails [`OmsError::Unavailable`] until a sync succeeds. Every 5
/// minutes, and after a gap longer than half of
/// [`REVOCATION_FEED_WINDOW`], the copy is loaded whole again.
///
/// Everything else is the wrapped store's.
pub struct RevocationMirror {
    inner: Arc<dyn SessionStore>,
    interval: Duration,
    stale_after: Duration,
    horizon: Duration,
    copy: Mutex<Copy>,
    sync: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RevocationMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationMirror")
            .field("interval", &self.interval)
            .field("stale_after", &self.stale_after)
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

/// How often the copy is loaded whole.
const RELOAD_EVERY: Duration = Duration::from_secs(300);

impl RevocationMirror {
    /// A mirror of `inner`'s revocations.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            interval: Duration::from_millis(250),
            stale_after: Duration::from_secs(5),
            horizon: Duration::from_secs(15 * 60),
            copy: Mutex::new(Copy::default()),
            sync: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the store's feed at most once per `interval` (zero: before
    /// every check).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Distrusts a copy older than this (at least the interval).
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// The longest an access token lives (default 15 min): a login revoked
    /// through the mirror is kept in the copy this long, after which none
    /// of its access tokens is left.
    pub fn with_horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon;
        self
    }

    fn needs_sync(&self, now: Instant) -> bool {
        lock(&self.copy)
            .attempted
            .is_none_or(|t| now.duration_since(t) >= self.interval)
    }

    fn trusted(&self, now: Instant) -> bool {
        lock(&self.copy)
            .synced
            .is_some_and(|t| now.duration_since(t) < self.stale_after.max(self.interval))
    }

    /// Reads the feed once, unless someone tried within the interval.
    async fn sync(&self) {
        let now = Instant::now();
        if !self.needs_sync(now) {
            return;
        }
        let cursor = {
            let mut copy = lock(&self.copy);
            copy.attempted = Some(now);
            let fresh_load = copy
                .loaded
                .is_some_and(|t| now.duration_since(t) < RELOAD_EVERY);
            let no_gap = copy
                .synced
                .is_some_and(|t| now.duration_since(t) < REVOCATION_FEED_WINDOW / 2);
            if fresh_load && no_gap {
                copy.cursor.clone()
            } else {
                None
            }
        };
        let answer = self.inner.revocations(cursor).await;
        // A slow failure counts from its end, so that callers waiting for
        // it do not each try again at once.
        lock(&self.copy).attempted = Some(Instant::now());
        match answer {
            Ok(feed) => lock(&self.copy).apply(feed, now, Instant::now()),
            Err(e) => {
                let mut copy = lock(&self.copy);
                if copy
                    .warned
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    copy.warned = Some(now);
                    tracing::warn!(error = %e, "revocations not synced; the copy keeps its last state");
                }
            }
        }
    }

    fn until(ttl: Duration) -> u64 {
        unix_millis().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    }
}

#[async_trait]
impl SessionStore for RevocationMirror {
    async fn start(&self, session: SessionId, refresh: TokenId, ttl: Duration) -> OmsResult<()> {
        self.inner.start(session, refresh, ttl).await
    }

    async fn rotate(
        &self,
        session: SessionId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> OmsResult<Rotation> {
        let rotation = self.inner.rotate(session, presented, next, ttl).await?;
        if rotation == Rotation::Reused {
            lock(&self.copy).add_local(
                Revoked::Session(session),
                Self::until(ttl.min(self.horizon)),
            );
        }
        Ok(rotation)
    }

    async fn revoke(
        &self,
        token: Option<(TokenId, Duration)>,
        session: Option<(SessionId, Duration)>,
    ) -> OmsResult<()> {
        self.inner.revoke(token, session).await?;
        let mut copy = lock(&self.copy);
        if let Some((jti, ttl)) = token {
            copy.add_local(Revoked::Token(jti), Self::until(ttl));
        }
        if let Some((sid, ttl)) = session {
            copy.add_local(Revoked::Session(sid), Self::until(ttl.min(self.horizon)));
        }
        Ok(())
    }

    async fn is_revoked(&self, token: TokenId, session: Option<SessionId>) -> OmsResult<bool> {
        let now = Instant::now();
        if self.needs_sync(now) {
            match self.sync.try_lock() {
                Ok(_syncing) => self.sync().await,
                Err(_) => {
                    // Someone is syncing: a copy that is still trusted
                    // answers now; an untrusted one waits for that sync.
                    if !self.trusted(now) {
                        let _syncing = self.sync.lock().await;
                        self.sync().await;
                    }
                }
            }
        }
        if !self.trusted(Instant::now()) {
            return Err(OmsError::unavailable(
                "revocation list",
                "the session store has not answered lately",
            ));
        }
        let copy = lock(&self.copy);
        let now_ms = unix_millis();
        let token_revoked = copy.tokens.get(&token).is_some_and(|u| *u > now_ms);
        let session_revoked = session
            .and_then(|sid| copy.sessions.get(&sid))
            .is_some_and(|u| *u > now_ms);
        Ok(token_revoked || session_revoked)
    }

    async fn revocations(&self, cursor: Option<String>) -> OmsResult<RevocationFeed> {
        self.inner.revocations(cursor).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemorySessionStore;
    use crate::port::outbound::MockSessionStore;

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn a_complete_load_read_before_a_local_revocation_keeps_it() {
        let mut copy = Copy::default();
        let read_from = Instant::now();
        let sid = SessionId::random();
        let until = unix_millis() + 60_000;
        // Revoked here while a complete load (read before it) was on its way.
        copy.add_local(Revoked::Session(sid), until);
        let empty = || RevocationFeed {
            revocations: Vec::new(),
            cursor: None,
            complete: true,
        };
        copy.apply(empty(), read_from, Instant::now());
        assert!(
            copy.sessions.contains_key(&sid),
            "the local revocation was dropped"
        );
        // A load read after it is the store's word.
        copy.apply(empty(), Instant::now(), Instant::now());
        assert!(!copy.sessions.contains_key(&sid));
    }

    #[tokio::test]
    async fn a_revocation_reaches_every_mirror_of_the_store() {
        let store: Arc<dyn SessionStore> = Arc::new(InMemorySessionStore::new());
        let here = RevocationMirror::new(store.clone()).with_interval(Duration::from_secs(3600));
        let there = RevocationMirror::new(store.clone()).with_interval(Duration::ZERO);
        let (jti, sid) = (TokenId::random(), SessionId::random());
        assert!(!here.is_revoked(jti, Some(sid)).await.unwrap());
        assert!(!there.is_revoked(jti, Some(sid)).await.unwrap());
        here.revoke(Some((jti, TTL)), None).await.unwrap();
        assert!(
            here.is_revoked(jti, None).await.unwrap(),
            "at once where it was made, without a sync"
        );
        assert!(
            there.is_revoked(jti, None).await.unwrap(),
            "at the next sync"
        );
        // A login revoked by a replay, on the store itself.
        let live = TokenId::random();
        store.start(sid, live, TTL).await.unwrap();
        store
            .rotate(sid, live, TokenId::random(), TTL)
            .await
            .unwrap();
        assert_eq!(
            store
                .rotate(sid, live, TokenId::random(), TTL)
                .await
                .unwrap(),
            Rotation::Reused
        );
        assert!(there
            .is_revoked(TokenId::random(), Some(sid))
            .await
            .unwrap());
        assert!(
            !here.is_revoked(TokenId::random(), Some(sid)).await.unwrap(),
            "not before its next sync"
        );
    }

    #[tokio::test]
    async fn a_store_that_never_answered_is_not_trusted() {
        let mut store = MockSessionStore::new();
        store
            .expect_revocations()
            .returning(|_| Err(OmsError::unavailable("redis", "down")));
        let mirror = RevocationMirror::new(Arc::new(store)).with_interval(Duration::ZERO);
        assert!(matches!(
            mirror.is_revoked(TokenId::random(), None).await,
            Err(OmsError::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn a_store_that_does_not_answer_is_asked_once_per_interval() {
        let mut store = MockSessionStore::new();
        store
            .expect_revocations()
            .times(1)
            .returning(|_| Err(OmsError::unavailable("redis", "down")));
        let mirror =
            RevocationMirror::new(Arc::new(store)).with_interval(Duration::from_secs(3600));
        let checks = (0..20).map(|_| mirror.is_revoked(TokenId::random(), None));
        for answer in futures::future::join_all(checks).await {
            assert!(matches!(answer, Err(OmsError::Unavailable { .. })));
        }
    }

    #[tokio::test]
    async fn the_copy_is_read_once_per_interval_and_followed_by_cursor() {
        let mut store = MockSessionStore::new();
        let jti = TokenId::random();
        let mut seq = mockall::Sequence::new();
        store
            .expect_revocations()
            .withf(|cursor| cursor.is_none())
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| {
                Ok(RevocationFeed {
                    revocations: Vec::new(),
                    cursor: Some("7".into()),
                    complete: true,
                })
            });
        store
            .expect_revocations()
            .withf(|cursor| cursor.as_deref() == Some("7"))
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| {
                Ok(RevocationFeed {
                    revocations: vec![crate::port::outbound::Revocation {
                        revoked: Revoked::Token(jti),
                        until_ms: unix_millis() + 60_000,
                    }],
                    cursor: Some("8".into()),
                    complete: false,
                })
            });
        let mirror =
            RevocationMirror::new(Arc::new(store)).with_interval(Duration::from_secs(3600));
        for _ in 0..100 {
            assert!(!mirror.is_revoked(jti, None).await.unwrap());
        }
        let mirror = mirror.with_interval(Duration::ZERO);
        assert!(mirror.is_revoked(jti, None).await.unwrap());
    }
}
