//! The rate limiter on Redis: GCRA, one Lua script per request.

use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult, Rate, RateDecision};
use oms_core::port::outbound::RateLimiter;
use redis::Script;

use crate::{unavailable, RedisTraceStore};

/// The GCRA step in Lua (`redis_now()` and `gcra(key, interval, tolerance,
/// margin_ms, now)`), which every script that counts a rate starts with:
/// the rate limiter's and the stock gate's, so that both keep one budget
/// per key with the same arithmetic.
pub(crate) const GCRA: &str = include_str!("lua/gcra.lua");

/// One step of [`gcra`](oms_core::domain::gcra) on Redis time (µs); follows
/// [`GCRA`].
///
/// KEYS: the key's TAT. ARGV: the emission interval and the tolerance (µs),
/// the margin (ms) the key outlives its TAT by. Returns 0 when allowed (the
/// TAT is moved on), or the µs until a request would be allowed (nothing
/// is written).
const ACQUIRE: &str = r"
return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), redis_now())
";

/// How long a key outlives its TAT (a key whose TAT is past allows a full
/// burst, as a missing one does).
const MARGIN_MS: u64 = 1000;

/// The arguments of the Lua `gcra` step for `rate`: the emission interval
/// and the tolerance (µs), and the margin (ms).
pub(crate) fn gcra_args(rate: Rate) -> (u64, u64, u64) {
    let interval = rate.interval_micros();
    let tolerance = interval.saturating_mul(u64::from(rate.burst.max(1)) - 1);
    (interval, tolerance, MARGIN_MS)
}

impl RedisTraceStore {
    /// The key holding the TAT of a rate-limited `key`.
    pub(crate) fn rate_key(&self, key: &str) -> String {
        self.intake_key(format_args!("rate:{key}"))
    }
}

/// The [`RateLimiter`] on Redis, sharing the keyspace and connection of a
/// [`RedisTraceStore`] (made by [`RedisTraceStore::rate_limiter`]).
///
/// GCRA (the generic cell rate algorithm, the arithmetic of
/// [`gcra`](oms_core::domain::gcra)): a key is one string,
/// `{<prefix>}:rate:<key>`, holding its theoretical arrival time (unix µs of
/// Redis's clock). Each request is one Lua script reading `TIME`, so every
/// process shares one budget per key whatever their clocks. A key expires
/// shortly after its TAT, when it would allow a full burst anyway, so idle
/// keys take no memory. The rate is the caller's, per request.
///
/// The [stock gate](crate::RedisStockGate) of the same store counts the
/// order rate of a member (its `IntakeChecks::rate`) on the key of the
/// member's id with the same Lua step, so a limiter and a gate sharing a
/// store share one budget per member.
#[derive(Clone)]
pub struct RedisRateLimiter {
    store: RedisTraceStore,
    acquire: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl RedisTraceStore {
    /// A rate limiter on this store's connection and keyspace.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter {
            store: self.clone(),
            acquire: Script::new(&format!("{GCRA}{ACQUIRE}")),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, rate: Rate) -> OmsResult<RateDecision> {
        let (interval, tolerance, margin) = gcra_args(rate);
        let mut conn = self.store.conn.clone();
        let wait: i64 = self
            .acquire
            .key(self.store.rate_key(key))
            .arg(interval)
            .arg(tolerance)
            .arg(margin)
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
