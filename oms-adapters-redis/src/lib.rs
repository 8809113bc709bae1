#![doc = include_str!("../README.md")]
//!
//! # Settings
//!
//! The key prefix and the TTLs are a [`RedisTraceOptions`], handed to
//! [`RedisTraceStore::with_options`]; every store made from that one (gate,
//! sessions, waiting room, rate limiter) shares them:
//!
//! ```
//! use std::time::Duration;
//! use oms_adapters_redis::RedisTraceOptions;
//!
//! let options = RedisTraceOptions {
//!     prefix: "shop".into(),
//!     final_ttl: Duration::from_secs(3600),
//!     ..RedisTraceOptions::default()
//! };
//! assert_eq!(options.processing_ttl, Duration::from_secs(24 * 3600));
//! assert_eq!(options.key_ttl, Duration::from_secs(24 * 3600));
//! ```
//!
//! This crate has no feature flags.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89, as for every oms crate.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{MemberId, OmsError, OmsResult, OrderTrace, TraceId, TraceState};
use oms_core::port::outbound::{HealthCheck, TraceStore};
use redis::AsyncCommands;

mod conn;
mod gate;
mod rate;
mod room;
mod sessions;
pub use conn::RedisConnection;
pub use gate::RedisStockGate;
pub use rate::RedisRateLimiter;
pub use room::RedisWaitingRoom;
pub use sessions::{RedisAttemptCounter, RedisSessionStore};

/// Key prefix and expiry times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTraceOptions {
    /// Prefix of every key (default `oms`). It is the hash tag of the
    /// intake keys (`{oms}:…`), and part of the sessions' and attempt
    /// counters' (`{oms:sessions}:…`, `{oms:attempts}:…`), so it must not be
    /// empty on a Redis Cluster; keep braces out of it.
    pub prefix: String,
    /// TTL of a trace whose outcome is not in the database yet: PROCESSING,
    /// and FAILED `OUT_OF_STOCK` refused by the stock gate until the keeper
    /// settles it (default 24 h, so a long consumer outage never turns a
    /// pending order into 404 nor hides it from the sweeper).
    pub processing_ttl: Duration,
    /// TTL of a COMPLETED or FAILED trace (default 10 min).
    pub final_ttl: Duration,
    /// TTL of an idempotency key (default 24 h).
    pub key_ttl: Duration,
}

impl Default for RedisTraceOptions {
    fn default() -> Self {
        Self {
            prefix: "oms".into(),
            processing_ttl: Duration::from_secs(24 * 3600),
            final_ttl: Duration::from_secs(600),
            key_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The [`TraceStore`] on Redis.
#[derive(Clone)]
pub struct RedisTraceStore {
    pub(crate) conn: RedisConnection,
    pub(crate) options: RedisTraceOptions,
}

impl std::fmt::Debug for RedisTraceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTraceStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unavailable(e: redis::RedisError) -> OmsError {
    OmsError::unavailable("redis", e)
}

impl RedisTraceStore {
    /// Connects to the Redis at `url` (see [`RedisConnection::connect`]).
    pub async fn connect(url: &str) -> OmsResult<Self> {
        Ok(Self::new(RedisConnection::connect(url).await?))
    }

    /// Connects to the Redis Cluster of `nodes` (see
    /// [`RedisConnection::connect_cluster`]).
    pub async fn connect_cluster<I>(nodes: I) -> OmsResult<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self::new(RedisConnection::connect_cluster(nodes).await?))
    }

    /// A store on a caller-owned connection: a [`RedisConnection`], or a
    /// [`redis::aio::ConnectionManager`] or
    /// [`redis::cluster_async::ClusterConnection`] made elsewhere.
    pub fn new(conn: impl Into<RedisConnection>) -> Self {
        Self {
            conn: conn.into(),
            options: RedisTraceOptions::default(),
        }
    }

    /// The connection this store and the adapters made from it share.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// Replaces the key prefix and TTLs.
    pub fn with_options(mut self, options: RedisTraceOptions) -> Self {
        self.options = options;
        self
    }

    /// A key of the intake keyspace, `{<prefix>}:<name>`: the hash tag is
    /// the prefix, so every such key is in one slot (see the README's
    /// "Redis Cluster").
    pub(crate) fn intake_key(&self, name: impl std::fmt::Display) -> String {
        format!("{{{}}}:{name}", self.options.prefix)
    }

    pub(crate) fn trace_key(&self, trace_id: impl std::fmt::Display) -> String {
        self.intake_key(format_args!("trace:{trace_id}"))
    }

    pub(crate) fn processing_key(&self) -> String {
        self.intake_key("processing")
    }

    /// An idempotency key, without a hash tag: they spread over a
    /// cluster's slots.
    fn idem_key(&self, member_id: MemberId, key: &str) -> String {
        format!("{}:idem:{member_id}:{key}", self.options.prefix)
    }

    pub(crate) fn ttl(&self, trace: &OrderTrace) -> u64 {
        let ttl = match trace.state {
            TraceState::Processing => self.options.processing_ttl,
            _ => self.options.final_ttl,
        };
        ttl.as_secs().max(1)
    }
}

pub(crate) fn encode(trace: &OrderTrace) -> OmsResult<String> {
    serde_json::to_string(trace).map_err(|e| OmsError::Internal(format!("trace encoding: {e}")))
}

#[async_trait]
impl TraceStore for RedisTraceStore {
    async fn save(&self, trace: &OrderTrace) -> OmsResult<()> {
        self.save_all(std::slice::from_ref(trace)).await
    }

    async fn save_all(&self, traces: &[OrderTrace]) -> OmsResult<()> {
        if traces.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        let index = self.processing_key();
        for trace in traces {
            pipe.set_ex(
                self.trace_key(trace.trace_id),
                encode(trace)?,
                self.ttl(trace),
            )
            .ignore();
            if trace.state.is_final() {
                pipe.zrem(&index, trace.trace_id.to_string()).ignore();
            } else {
                pipe.zadd(&index, trace.trace_id.to_string(), now_millis())
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn
            .get(self.trace_key(trace_id))
            .await
            .map_err(unavailable)?;
        match raw {
            None => Ok(None),
            Some(raw) => match serde_json::from_str::<OrderTrace>(&raw) {
                Ok(trace) => Ok(Some(trace)),
                Err(e) => {
                    tracing::warn!(%trace_id, error = %e, "unreadable trace in redis ignored");
                    Ok(None)
                }
            },
        }
    }

    async fn remove(&self, trace_id: TraceId) -> OmsResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .del(self.trace_key(trace_id))
            .ignore()
            .zrem(self.processing_key(), trace_id.to_string())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim_key(
        &self,
        member_id: MemberId,
        key: &str,
        trace_id: TraceId,
    ) -> OmsResult<Option<TraceId>> {
        let redis_key = self.idem_key(member_id, key);
        let mut conn = self.conn.clone();
        // SET NX, and GET the holder if it is taken; a holder that expires in
        // between is claimed on the next round.
        for _ in 0..3 {
            let set: Option<String> = redis::cmd("SET")
                .arg(&redis_key)
                .arg(trace_id.to_string())
                .arg("NX")
                .arg("EX")
                .arg(self.options.key_ttl.as_secs().max(1))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                return Ok(None);
            }
            let holder: Option<String> = conn.get(&redis_key).await.map_err(unavailable)?;
            if let Some(holder) = holder {
                return holder.parse().map(Some);
            }
        }
        Err(OmsError::Conflict(format!(
            "idempotency key {key:?} is changing hands"
        )))
    }

    async fn release_key(&self, member_id: MemberId, key: &str) -> OmsResult<()> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .del(self.idem_key(member_id, key))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn stale_processing(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.processing_key();
        let cutoff =
            now_millis().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrangebyscore_limit(
                &index,
                "-inf",
                cutoff,
                0,
                isize::try_from(limit).unwrap_or(isize::MAX),
            )
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.trace_key(id)).collect();
        let bodies: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut stale = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, body) in ids.iter().zip(bodies) {
            match body.map(|b| serde_json::from_str::<OrderTrace>(&b)) {
                Some(Ok(trace)) if !trace.state.is_final() => stale.push(trace),
                Some(Ok(_)) => gone.push(id),
                Some(Err(e)) => {
                    tracing::warn!(trace_id = %id, error = %e, "unreadable trace in redis dropped from the PROCESSING index");
                    gone.push(id);
                }
                None => {
                    tracing::warn!(trace_id = %id, "PROCESSING trace expired before it was resolved; the database answers for it");
                    gone.push(id);
                }
            }
        }
        if !gone.is_empty() {
            let _: () = conn.zrem(&index, gone).await.map_err(unavailable)?;
        }
        Ok(stale)
    }
}

pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl HealthCheck for RedisTraceStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> OmsResult<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
