//! The rate limiter on Redis: GCRA, one Lua script per request.

use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult, Rate, RateDecision};
use oms_core::port::outbound::RateLimiter;
use redis::Script;

use crate::{unavailable, RedisTraceStore};

/// One step of [`gcra`](oms_core::domain::gcra) on Redis time (µs).
///
/// KEYS: the key's TAT. ARGV: the emission interval and the tolerance (µs),
/// the margin (ms) the key outlives its TAT by. Returns 0 when allowed (the
/// TAT is moved on), or the µs until a request would be allowed (nothing
/// is written).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then
  tat = now
end
local allow_at = math.max(0, tat - tolerance)
if now < allow_at then
  return allow_at - now
end
tat = tat + interval
local ttl = math.ceil((tat - now) / 1000) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', ttl))
return 0
";

/// How long a key outlives its TAT (a key whose TAT is past allows a full
/// burst, as a missing one does).
const MARGIN_MS: u64 = 1000;

/// The [`RateLimiter`] on Redis, sharing the keyspace and connection of a
/// [`RedisTraceStore`] (made by [`RedisTraceStore::rate_limiter`]).
///
/// GCRA (the generic cell rate algorithm, the arithmetic of
/// [`gcra`](oms_core::domain::gcra)): a key is one string,
/// `{prefix}:rate:{key}`, holding its theoretical arrival time (unix µs of
/// Redis's clock). Each request is one Lua script reading `TIME`, so every
/// process shares one budget per key whatever their clocks. A key expires
/// shortly after its TAT, when it would allow a full burst anyway, so idle
/// keys take no memory.
#[derive(Clone)]
pub struct RedisRateLimiter {
    store: RedisTraceStore,
    rate: Rate,
    acquire: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("store", &self.store)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl RedisTraceStore {
    /// A rate limiter of `rate` per key on this store's connection and
    /// keyspace.
    pub fn rate_limiter(&self, rate: Rate) -> RedisRateLimiter {
        RedisRateLimiter {
            store: self.clone(),
            rate,
            acquire: Script::new(ACQUIRE),
        }
    }
}

impl RedisRateLimiter {
    /// The limiter's rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str) -> OmsResult<RateDecision> {
        let interval = self.rate.interval_micros();
        let tolerance = interval.saturating_mul(u64::from(self.rate.burst.max(1)) - 1);
        let mut conn = self.store.conn.clone();
        let wait: i64 = self
            .acquire
            .key(format!("{}:rate:{key}", self.store.options.prefix))
            .arg(interval)
            .arg(tolerance)
            .arg(MARGIN_MS)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match u64::try_from(wait) {
            Ok(0) => Ok(RateDecision::Allowed),
            Ok(micros) => Ok(RateDecision::Limited {
                retry_after: Duration::from_micros(micros),
            }),
            Err(_) => Err(OmsError::Internal(format!(
                "rate limiter script answered {wait}"
            ))),
        }
    }
}
