//! Logins, revocations and login attempt counters on Redis, shared by every
//! `api` replica.

use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{Attempts, OmsError, OmsResult, Rotation, SessionId, TokenId};
use oms_core::port::outbound::{
    AttemptCounter, Revocation, RevocationFeed, Revoked, SessionStore, REVOCATION_FEED_WINDOW,
};
use redis::streams::StreamRangeReply;
use redis::Script;

use crate::{unavailable, RedisConnection, RedisTraceStore};

const ROTATE: &str = include_str!("lua/rotate.lua");
const HIT: &str = include_str!("lua/hit.lua");

/// The value of a revoked family's key.
const REVOKED: &str = "revoked";

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Entries of the feed read per round trip.
const FEED_PAGE: usize = 10_000;

fn now_ms() -> u64 {
    u64::try_from(crate::now_millis()).unwrap_or(0)
}

fn entry(revoked: Revoked) -> String {
    match revoked {
        Revoked::Token(jti) => format!("t:{jti}"),
        Revoked::Session(sid) => format!("s:{sid}"),
    }
}

fn parse_entry(raw: &str) -> Option<Revoked> {
    let (kind, id) = raw.split_once(':')?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    match kind {
        "t" => Some(Revoked::Token(TokenId(id))),
        "s" => Some(Revoked::Session(SessionId(id))),
        _ => None,
    }
}

/// A stream id (`<ms>-<seq>`), as a feed cursor.
fn stream_id(cursor: &str) -> Option<&str> {
    let (ms, seq) = cursor.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(ms) && digits(seq)).then_some(cursor)
}

/// The [`SessionStore`] on Redis.
///
/// Every key of it carries the hash tag `{<prefix>:sessions}`, so that on
/// a Redis Cluster they are all in one slot (the rotation script and the
/// revocation's `MULTI` name several of them).
///
/// - A family is one key, `{<prefix>:sessions}:sess:<sid>`, holding the id
///   of its live refresh token, or `revoked`; it expires with the family's
///   TTL. [`rotate`](SessionStore::rotate) is one Lua script on that key
///   (`lua/rotate.lua`): compare, then replace or revoke, atomically.
/// - A revoked access token is `{<prefix>:sessions}:jti:<jti>`, kept as
///   long as the token has to live.
/// - [`is_revoked`](SessionStore::is_revoked) is one `MGET` of the token's
///   key and its family's key: one round trip per authenticated request
///   (put `oms_core::memory::RevocationMirror`, of the feature `memory`, in
///   front to answer from memory).
/// - [`revoke`](SessionStore::revoke) writes both keys in one
///   `MULTI`/`EXEC`, with the feed of revocations: the sorted set
///   `{<prefix>:sessions}:revoked` (`t:<jti>` / `s:<sid>`, scored by the
///   unix ms until which they hold) and the stream
///   `{<prefix>:sessions}:revocations` (the same entries in order, trimmed
///   to [`REVOCATION_FEED_WINDOW`]). A revoked login is in the feed for the
///   access tokens' horizon (default 15 min,
///   [`with_access_horizon`](Self::with_access_horizon)), its family key for
///   the TTL given.
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: RedisConnection,
    prefix: String,
    rotate: Script,
    access_horizon: Duration,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .field("access_horizon", &self.access_horizon)
            .finish_non_exhaustive()
    }
}

impl RedisSessionStore {
    /// A store on a caller-owned connection (a [`RedisConnection`] or a
    /// connection it is made from), its keys under `prefix`.
    pub fn new(conn: impl Into<RedisConnection>, prefix: impl Into<String>) -> Self {
        Self {
            conn: conn.into(),
            prefix: prefix.into(),
            rotate: Script::new(ROTATE),
            access_horizon: Duration::from_secs(15 * 60),
        }
    }

    /// The longest an access token lives: how long a revoked login stays in
    /// the feed of revocations (default 15 min).
    pub fn with_access_horizon(mut self, horizon: Duration) -> Self {
        self.access_horizon = horizon;
        self
    }

    /// A key of the sessions' slot, `{<prefix>:sessions}:<name>`.
    fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{{{}:sessions}}:{name}", self.prefix)
    }

    fn revoked_key(&self) -> String {
        self.key("revoked")
    }

    fn feed_key(&self) -> String {
        self.key("revocations")
    }

    /// The oldest stream id the feed keeps.
    fn feed_min_id(&self) -> String {
        let window = u64::try_from(REVOCATION_FEED_WINDOW.as_millis()).unwrap_or(u64::MAX);
        format!("{}-0", now_ms().saturating_sub(window))
    }

    async fn whole_feed(&self) -> OmsResult<RevocationFeed> {
        let now = now_ms();
        let mut conn = self.conn.clone();
        let (entries, last): (Vec<(String, f64)>, StreamRangeReply) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.revoked_key())
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZRANGE")
            .arg(self.revoked_key())
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES")
            .cmd("XREVRANGE")
            .arg(self.feed_key())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let revocations = entries
            .into_iter()
            .filter_map(|(member, until)| {
                Some(Revocation {
                    revoked: parse_entry(&member)?,
                    until_ms: until.max(0.0) as u64,
                })
            })
            .collect();
        Ok(RevocationFeed {
            revocations,
            cursor: Some(
                last.ids
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()),
            ),
            complete: true,
        })
    }

    fn family_key(&self, sid: SessionId) -> String {
        self.key(format_args!("sess:{sid}"))
    }

    fn token_key(&self, jti: TokenId) -> String {
        self.key(format_args!("jti:{jti}"))
    }
}

impl RedisTraceStore {
    /// The session store on this store's connection and key prefix.
    pub fn session_store(&self) -> RedisSessionStore {
        RedisSessionStore::new(self.conn.clone(), self.options.prefix.clone())
    }

    /// The login attempt counter on this store's connection and key prefix.
    pub fn attempt_counter(&self) -> RedisAttemptCounter {
        RedisAttemptCounter::new(self.conn.clone(), self.options.prefix.clone())
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn start(&self, session: SessionId, refresh: TokenId, ttl: Duration) -> OmsResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.family_key(session))
            .arg(refresh.to_string())
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn rotate(
        &self,
        session: SessionId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> OmsResult<Rotation> {
        let mut conn = self.conn.clone();
        let until = now_ms().saturating_add(millis(ttl.min(self.access_horizon)));
        let outcome: i64 = self
            .rotate
            .key(self.family_key(session))
            .key(self.revoked_key())
            .key(self.feed_key())
            .arg(presented.to_string())
            .arg(next.to_string())
            .arg(millis(ttl))
            .arg(entry(Revoked::Session(session)))
            .arg(until)
            .arg(self.feed_min_id())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match outcome {
            1 => Ok(Rotation::Rotated),
            2 => Ok(Rotation::Reused),
            0 => Ok(Rotation::Dead),
            other => Err(OmsError::Internal(format!(
                "rotation script answered {other}"
            ))),
        }
    }

    async fn revoke(
        &self,
        token: Option<(TokenId, Duration)>,
        session: Option<(SessionId, Duration)>,
    ) -> OmsResult<()> {
        if token.is_none() && session.is_none() {
            return Ok(());
        }
        let now = now_ms();
        let (revoked, feed, min_id) = (self.revoked_key(), self.feed_key(), self.feed_min_id());
        let mut pipe = redis::pipe();
        pipe.atomic();
        let listed = |pipe: &mut redis::Pipeline, what: Revoked, until: u64| {
            pipe.cmd("ZADD")
                .arg(&revoked)
                .arg(until)
                .arg(entry(what))
                .ignore()
                .cmd("XADD")
                .arg(&feed)
                .arg("MINID")
                .arg("~")
                .arg(&min_id)
                .arg("*")
                .arg("r")
                .arg(entry(what))
                .arg("u")
                .arg(until)
                .ignore();
        };
        if let Some((jti, ttl)) = token {
            pipe.cmd("SET")
                .arg(self.token_key(jti))
                .arg("1")
                .arg("PX")
                .arg(millis(ttl))
                .ignore();
            listed(
                &mut pipe,
                Revoked::Token(jti),
                now.saturating_add(millis(ttl)),
            );
        }
        if let Some((sid, ttl)) = session {
            pipe.cmd("SET")
                .arg(self.family_key(sid))
                .arg(REVOKED)
                .arg("PX")
                .arg(millis(ttl))
                .ignore();
            let until = now.saturating_add(millis(ttl.min(self.access_horizon)));
            listed(&mut pipe, Revoked::Session(sid), until);
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&revoked)
            .arg("-inf")
            .arg(now)
            .ignore();
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn is_revoked(&self, token: TokenId, session: Option<SessionId>) -> OmsResult<bool> {
        let mut conn = self.conn.clone();
        match session {
            None => {
                let revoked: bool = redis::cmd("EXISTS")
                    .arg(self.token_key(token))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok(revoked)
            }
            Some(sid) => {
                let (token_mark, family): (Option<String>, Option<String>) = redis::cmd("MGET")
                    .arg(self.token_key(token))
                    .arg(self.family_key(sid))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok(token_mark.is_some() || family.as_deref() == Some(REVOKED))
            }
        }
    }

    async fn revocations(&self, cursor: Option<String>) -> OmsResult<RevocationFeed> {
        let Some(mut after) = cursor.as_deref().and_then(stream_id).map(str::to_owned) else {
            return self.whole_feed().await;
        };
        let mut revocations = Vec::new();
        let mut conn = self.conn.clone();
        loop {
            let page: StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.feed_key())
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(FEED_PAGE)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let full = page.ids.len() == FEED_PAGE;
            for e in page.ids {
                let revoked = e.get::<String>("r").as_deref().and_then(parse_entry);
                let until_ms = e.get::<u64>("u");
                if let (Some(revoked), Some(until_ms)) = (revoked, until_ms) {
                    revocations.push(Revocation { revoked, until_ms });
                }
                after = e.id;
            }
            if !full {
                break;
            }
        }
        Ok(RevocationFeed {
            revocations,
            cursor: Some(after),
            complete: false,
        })
    }
}

/// The [`AttemptCounter`] on Redis: a counter key per throttling key,
/// `{<prefix>:attempts}:<key>`, whose TTL is its window. Counting is one Lua
/// script for all keys (`lua/hit.lua`: `INCR`, and `PEXPIRE` on a new
/// counter), so concurrent attempts are each counted once, on every
/// replica; [`peek`](AttemptCounter::peek) is a pipeline of `GET` and
/// `PTTL`. The hash tag `{<prefix>:attempts}` keeps every counter in one
/// slot of a Redis Cluster, as one script or pipeline names several.
#[derive(Clone)]
pub struct RedisAttemptCounter {
    conn: RedisConnection,
    prefix: String,
    hit: Script,
}

impl std::fmt::Debug for RedisAttemptCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAttemptCounter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisAttemptCounter {
    /// A counter on a caller-owned connection (a [`RedisConnection`] or a
    /// connection it is made from), its keys under `prefix`.
    pub fn new(conn: impl Into<RedisConnection>, prefix: impl Into<String>) -> Self {
        Self {
            conn: conn.into(),
            prefix: prefix.into(),
            hit: Script::new(HIT),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{{{}:attempts}}:{key}", self.prefix)
    }
}

#[async_trait]
impl AttemptCounter for RedisAttemptCounter {
    async fn hit(&self, keys: &[String], window: Duration) -> OmsResult<Vec<Attempts>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.hit.prepare_invoke();
        for k in keys {
            invocation.key(self.key(k));
        }
        invocation.arg(millis(window));
        let mut conn = self.conn.clone();
        let raw: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if raw.len() != keys.len() * 2 {
            return Err(OmsError::Internal(format!(
                "attempt script answered {} numbers for {} keys",
                raw.len(),
                keys.len()
            )));
        }
        Ok(raw
            .chunks_exact(2)
            .map(|pair| Attempts {
                count: u64::try_from(pair[0]).unwrap_or(0),
                resets_in: Duration::from_millis(u64::try_from(pair[1]).unwrap_or(0)),
            })
            .collect())
    }

    async fn peek(&self, keys: &[String]) -> OmsResult<Vec<Attempts>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            let key = self.key(k);
            pipe.get(&key).pttl(&key);
        }
        let mut conn = self.conn.clone();
        let raw: Vec<(Option<u64>, i64)> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(raw
            .into_iter()
            .map(|(count, left)| Attempts {
                count: count.unwrap_or(0),
                resets_in: Duration::from_millis(u64::try_from(left).unwrap_or(0)),
            })
            .collect())
    }

    async fn clear(&self, keys: &[String]) -> OmsResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("DEL")
            .arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
