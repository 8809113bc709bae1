use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::lock;
use crate::domain::token::{after_rotation, rotate};
use crate::domain::{Attempts, FamilyState, OmsResult, Rotation, SessionId, TokenId};
use crate::port::outbound::{AttemptCounter, Revocation, RevocationFeed, Revoked, SessionStore};

/// Entries that expire; expired ones are dropped as the map grows.
#[derive(Debug)]
struct Expiring<K, V> {
    entries: HashMap<K, (V, Instant)>,
    next_sweep: usize,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            next_sweep: 1024,
        }
    }
}

impl<K: Eq + Hash, V> Expiring<K, V> {
    fn get(&self, key: &K, now: Instant) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v)
    }

    fn get_mut(&mut self, key: &K, now: Instant) -> Option<&mut (V, Instant)> {
        self.entries.get_mut(key).filter(|(_, until)| *until > now)
    }

    fn insert(&mut self, key: K, value: V, until: Instant, now: Instant) {
        self.entries.insert(key, (value, until));
        if self.entries.len() >= self.next_sweep {
            self.entries.retain(|_, (_, until)| *until > now);
            self.next_sweep = (self.entries.len() * 2).max(1024);
        }
    }

    fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

#[derive(Debug, Default)]
struct Sessions {
    families: Expiring<SessionId, FamilyState>,
    revoked: Expiring<TokenId, ()>,
    /// Every revocation with its sequence number (the feed's cursor),
    /// expired ones dropped as it grows.
    log: Vec<(u64, Revocation)>,
    seq: u64,
}

impl Sessions {
    fn record(&mut self, revoked: Revoked, ttl: Duration) {
        let now_ms = unix_millis();
        if self.log.len() >= 1024 && self.log.len().is_power_of_two() {
            self.log.retain(|(_, r)| r.until_ms > now_ms);
        }
        self.seq += 1;
        let until_ms = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self.log.push((self.seq, Revocation { revoked, until_ms }));
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A [`SessionStore`] in memory (one process: the embedded default).
/// Entries expire with their TTL.
#[derive(Debug, Default)]
pub struct InMemorySessionStore {
    state: Mutex<Sessions>,
}

impl InMemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SessionStore for InMemorySessionStore {
    async fn start(&self, session: SessionId, refresh: TokenId, ttl: Duration) -> OmsResult<()> {
        let now = Instant::now();
        lock(&self.state).families.insert(
            session,
            FamilyState::Live { current: refresh },
            now + ttl,
            now,
        );
        Ok(())
    }

    async fn rotate(
        &self,
        session: SessionId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> OmsResult<Rotation> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let current = state
            .families
            .get(&session, now)
            .copied()
            .unwrap_or(FamilyState::Unknown);
        let rotation = rotate(current, presented);
        if rotation != Rotation::Dead {
            let after = after_rotation(current, rotation, next);
            state.families.insert(session, after, now + ttl, now);
        }
        if rotation == Rotation::Reused {
            state.record(Revoked::Session(session), ttl);
        }
        Ok(rotation)
    }

    async fn revoke(
        &self,
        token: Option<(TokenId, Duration)>,
        session: Option<(SessionId, Duration)>,
    ) -> OmsResult<()> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if let Some((jti, ttl)) = token {
            state.revoked.insert(jti, (), now + ttl, now);
            state.record(Revoked::Token(jti), ttl);
        }
        if let Some((sid, ttl)) = session {
            state
                .families
                .insert(sid, FamilyState::Revoked, now + ttl, now);
            state.record(Revoked::Session(sid), ttl);
        }
        Ok(())
    }

    async fn is_revoked(&self, token: TokenId, session: Option<SessionId>) -> OmsResult<bool> {
        let now = Instant::now();
        let state = lock(&self.state);
        let token_revoked = state.revoked.get(&token, now).is_some();
        let family_revoked = session
            .is_some_and(|sid| matches!(state.families.get(&sid, now), Some(FamilyState::Revoked)));
        Ok(token_revoked || family_revoked)
    }

    async fn revocations(&self, cursor: Option<String>) -> OmsResult<RevocationFeed> {
        let state = lock(&self.state);
        let now_ms = unix_millis();
        let after = cursor.and_then(|c| c.parse::<u64>().ok());
        let in_force = state
            .log
            .iter()
            .filter(|(seq, r)| r.until_ms > now_ms && after.is_none_or(|a| *seq > a))
            .map(|(_, r)| *r)
            .collect();
        Ok(RevocationFeed {
            revocations: in_force,
            cursor: Some(state.seq.to_string()),
            complete: after.is_none(),
        })
    }
}

/// An [`AttemptCounter`] in memory (one process: the embedded default).
#[derive(Debug, Default)]
pub struct InMemoryAttemptCounter {
    counts: Mutex<Expiring<String, u64>>,
}

impl InMemoryAttemptCounter {
    /// No attempts counted.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AttemptCounter for InMemoryAttemptCounter {
    async fn hit(&self, keys: &[String], window: Duration) -> OmsResult<Vec<Attempts>> {
        let now = Instant::now();
        let mut counts = lock(&self.counts);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let (count, until) = match counts.get_mut(key, now) {
                Some((count, until)) => {
                    *count += 1;
                    (*count, *until)
                }
                None => {
                    let until = now + window;
                    counts.insert(key.clone(), 1, until, now);
                    (1, until)
                }
            };
            out.push(Attempts {
                count,
                resets_in: until.saturating_duration_since(now),
            });
        }
        Ok(out)
    }

    async fn peek(&self, keys: &[String]) -> OmsResult<Vec<Attempts>> {
        let now = Instant::now();
        let mut counts = lock(&self.counts);
        Ok(keys
            .iter()
            .map(|key| match counts.get_mut(key, now) {
                Some((count, until)) => Attempts {
                    count: *count,
                    resets_in: until.saturating_duration_since(now),
                },
                None => Attempts {
                    count: 0,
                    resets_in: Duration::ZERO,
                },
            })
            .collect())
    }

    async fn clear(&self, keys: &[String]) -> OmsResult<()> {
        let mut counts = lock(&self.counts);
        for key in keys {
            counts.remove(key);
        }
        Ok(())
    }
}
