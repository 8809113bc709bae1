//! The stock gate on Redis: counters per product, one Lua script per order.

use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{
    units_by_product, FailureReason, MemberId, OmsError, OmsResult, OrderCommand, OrderLine,
    OrderTrace, ProductId, Purchase, TraceState,
};
use oms_core::port::outbound::{
    decode_command, encode_command, Admission, GateLevel, HealthCheck, IntakeChecks, Refusal,
    StockGate,
};
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::Script;

use crate::rate::{gcra_args, GCRA};
use crate::{encode, now_millis, unavailable, RedisTraceStore};

/// The front door and the reservation of one order, in one atomic step:
/// checks the member's admission, then the member's rate, then the purchase
/// limits, then reserves every line or none, and writes the trace of the
/// decision. Follows [`GCRA`] (the rate is the rate limiter's Lua step);
/// reads Redis's clock once.
///
/// KEYS (n products, m limits):
/// - `[1]` the waiting room's admitted set,
/// - `[2]` the member's rate key (its TAT),
/// - `[3]` the trace key,
/// - `[4]` the PROCESSING index,
/// - `[5]` the refusal journal,
/// - `[5 + i]` the gate counter of the i-th product (i = 1 … n),
/// - `[5 + n + j]` the bought hash of the j-th limited product (j = 1 … m).
///
/// ARGV:
/// - `[1]` the member id,
/// - `[2]` check the admission (`1`) or not (`0`),
/// - `[3]` check the rate (`1`) or not (`0`),
/// - `[4]` the rate's emission interval (µs),
/// - `[5]` the rate's tolerance (µs),
/// - `[6]` the margin (ms) the rate key outlives its TAT by,
/// - `[7]` the PROCESSING trace, `[8]` its TTL (s),
/// - `[9]` the FAILED trace, `[10]` its TTL (s),
/// - `[11]` the trace id,
/// - `[12]` now (ms, the PROCESSING index's score),
/// - `[13]` the command as the order topic carries it,
/// - `[14]` n, `[15]` m,
/// - `[15 + i]` the units of the i-th product,
/// - `[15 + n + 2j − 1]` the j-th limit's `max_per_member`, and
///   `[15 + n + 2j]` the order's units of its product.
///
/// Returns `{code, detail}`; the first check that fails decides:
/// - `{4, 0}`: the member holds no admission that has not ended (nothing
///   written);
/// - `{3, µs}`: the member is over the rate, allowed again in µs (nothing
///   written);
/// - `{2, j}`: the order would take the member past the j-th limit (the
///   rate's token is taken, nothing else written);
/// - `{1, i}`: the i-th product lacks the units (the rate's token is taken,
///   trace FAILED, journaled; with the admission check, the admission ends:
///   the order is final);
/// - `{0, 0}`: reserved (trace PROCESSING, indexed).
const ADMIT: &str = r"
local admitted, rate_key, trace_key, index, journal = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member = ARGV[1]
local n = tonumber(ARGV[14])
local m = tonumber(ARGV[15])
local now = redis_now()
if ARGV[2] == '1' then
  local expiry = redis.call('ZSCORE', admitted, member)
  if not expiry or tonumber(expiry) <= math.floor(now / 1000) then
    return {4, 0}
  end
end
if ARGV[3] == '1' then
  local wait = gcra(rate_key, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), now)
  if wait > 0 then
    return {3, wait}
  end
end
for j = 1, m do
  local bought = tonumber(redis.call('HGET', KEYS[5 + n + j], member) or '0')
  local max = tonumber(ARGV[15 + n + 2 * j - 1])
  local wanted = tonumber(ARGV[15 + n + 2 * j])
  if bought + wanted > max then
    return {2, j}
  end
end
local have = {}
for i = 1, n do
  have[i] = redis.call('GET', KEYS[5 + i])
  if have[i] and tonumber(have[i]) < tonumber(ARGV[15 + i]) then
    redis.call('SET', trace_key, ARGV[9], 'EX', ARGV[10])
    redis.call('XADD', journal, '*', 'command', ARGV[13])
    if ARGV[2] == '1' then
      redis.call('ZREM', admitted, member)
    end
    return {1, i}
  end
end
for i = 1, n do
  if have[i] then
    redis.call('DECRBY', KEYS[5 + i], ARGV[15 + i])
  end
end
for j = 1, m do
  local wanted = ARGV[15 + n + 2 * j]
  if tonumber(wanted) ~= 0 then
    redis.call('HINCRBY', KEYS[5 + n + j], member, wanted)
  end
end
redis.call('SET', trace_key, ARGV[7], 'EX', ARGV[8])
redis.call('ZADD', index, ARGV[12], ARGV[11])
return {0, 0}
";

/// [`ADMIT`]'s code: reserved.
const RESERVED: i64 = 0;
/// [`ADMIT`]'s code: a product lacks the units.
const OUT_OF_STOCK: i64 = 1;
/// [`ADMIT`]'s code: over a purchase limit.
const OVER_LIMIT: i64 = 2;
/// [`ADMIT`]'s code: over the member's rate.
const RATE_LIMITED: i64 = 3;
/// [`ADMIT`]'s code: the member holds no admission.
const NOT_ADMITTED: i64 = 4;

/// The Lua function `give_back(bought, member, units)`, which lowers a
/// member's purchases of a product by `units`, never below 0 (a count that
/// reaches 0 is removed). [`RELEASE`] and [`GIVE_BACK_PURCHASES`] start
/// with it.
const GIVE_BACK: &str = include_str!("lua/give_back.lua");

/// Gives units back to the counters that exist, and to the member's
/// purchases where they are counted; follows [`GIVE_BACK`].
///
/// KEYS: the counter and the bought hash of each product. ARGV: the member
/// id, then the units of each product.
const RELEASE: &str = r"
local member = ARGV[1]
for i = 1, #KEYS / 2 do
  local count, bought = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('EXISTS', count) == 1 then
    redis.call('INCRBY', count, ARGV[i + 1])
  end
  give_back(bought, member, tonumber(ARGV[i + 1]))
end
return 0
";

/// Gives units back to the member's purchases only (the counters are left
/// as they are); follows [`GIVE_BACK`].
///
/// KEYS: the bought hash of each product. ARGV: the member id, then the
/// units of each product.
const GIVE_BACK_PURCHASES: &str = r"
local member = ARGV[1]
for i = 1, #KEYS do
  give_back(KEYS[i], member, tonumber(ARGV[i + 1]))
end
return 0
";

/// Fields written per `HSET` when the purchases of a product are replaced.
const PURCHASES_PER_HSET: usize = 1000;

/// Sets levels as a compare-and-set on the product version kept beside
/// each counter (`{counter}:v`; a counter without one is older than any).
///
/// KEYS: counter and version key of each product. ARGV: overwrite (0/1),
/// then units and version of each product.
const SET_LEVELS: &str = r"
local overwrite = ARGV[1] == '1'
for i = 1, #KEYS / 2 do
  local count, ver = KEYS[2 * i - 1], KEYS[2 * i]
  local units, version = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local exists = redis.call('EXISTS', count) == 1
  local seen = tonumber(redis.call('GET', ver) or '-1')
  if (not exists) or (overwrite and seen <= version) then
    redis.call('SET', count, units)
    redis.call('SET', ver, version)
  end
end
return 0
";

/// Applies an operator's stock change once (see [`StockGate::adjust`]).
///
/// KEYS: the counter and its version key. ARGV: the level's units, its
/// version, the delta.
const ADJUST: &str = r"
local version = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], version)
  return 1
end
local seen = tonumber(redis.call('GET', KEYS[2]) or '-1')
if seen < version then
  redis.call('INCRBY', KEYS[1], ARGV[3])
  redis.call('SET', KEYS[2], version)
  return 1
end
return 0
";

const GROUP: &str = "settlers";

/// The [`StockGate`] on Redis, sharing the keyspace and connection of a
/// [`RedisTraceStore`] (made by [`RedisTraceStore::stock_gate`]).
///
/// A product's counter is `{<prefix>}:gate:<productId>`; a product without
/// one passes. What each member bought of a product with a purchase limit
/// is the hash `{<prefix>}:gate:<productId>:bought` (field: the member id,
/// value: units). [`admit`](StockGate::admit) is one Lua script, the whole
/// front door of an order in one atomic step and one round trip, on
/// Redis's clock (`TIME`, read once): when asked ([`IntakeChecks`]), it
/// checks that the member holds an admission of the
/// [waiting room](crate::RedisWaitingRoom) of the same keyspace (a score
/// after now in `{<prefix>}:wr:admitted`), then counts the order against the
/// member's rate on `{<prefix>}:rate:<memberId>` with the
/// [rate limiter](crate::RedisRateLimiter)'s GCRA step (the same Lua, so
/// both keep one budget per member); it checks the member's purchases
/// against the limits (over one: nothing is reserved or written), then
/// checks and decrements the counters of all lines, counts the units
/// against the member's purchases, and writes the trace (PROCESSING, or
/// FAILED `OUT_OF_STOCK` plus an entry in the journal stream
/// `{<prefix>}:refusals`). The first check that fails decides and changes
/// nothing, except that an order refused for a limit or for stock has
/// taken its token of the rate, and one refused for stock ends the member's
/// admission (its order is final).
/// [`release`](StockGate::release) gives an order's units back to the
/// counters and to the member's purchases, and
/// [`give_back_purchases`](StockGate::give_back_purchases) to the member's
/// purchases alone, each in one script that never takes a count below 0;
/// [`set_purchases`](StockGate::set_purchases) replaces a product's hash in
/// one `MULTI`/`EXEC`. The journal is read through the consumer group
/// `settlers`, so each refusal is handed to one settler, and one whose
/// settler died is claimed again after the redelivery time (`XAUTOCLAIM`).
///
/// Every key it names (counters, versions, purchases, the journal, and the
/// room's, rate's and traces' keys its script reads and writes) carries the
/// hash tag `{<prefix>}`: an order may name any products, and its script
/// must see all of them, so on a Redis Cluster the whole intake keyspace of
/// a prefix is one slot, on one node (see the README's "Redis Cluster").
#[derive(Clone)]
pub struct RedisStockGate {
    store: RedisTraceStore,
    admit: Script,
    release: Script,
    give_back: Script,
    set_levels: Script,
    adjust: Script,
    consumer: String,
    redeliver_after: Duration,
}

impl std::fmt::Debug for RedisStockGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStockGate")
            .field("store", &self.store)
            .field("consumer", &self.consumer)
            .field("redeliver_after", &self.redeliver_after)
            .finish_non_exhaustive()
    }
}

impl RedisTraceStore {
    /// The stock gate on this store's connection and keyspace; refusals
    /// handed out are handed out again after 10 s unless settled.
    pub fn stock_gate(&self) -> RedisStockGate {
        RedisStockGate {
            store: self.clone(),
            admit: Script::new(&format!("{GCRA}{ADMIT}")),
            release: Script::new(&format!("{GIVE_BACK}{RELEASE}")),
            give_back: Script::new(&format!("{GIVE_BACK}{GIVE_BACK_PURCHASES}")),
            set_levels: Script::new(SET_LEVELS),
            adjust: Script::new(ADJUST),
            consumer: format!("settler-{}", uuid::Uuid::new_v4()),
            redeliver_after: Duration::from_secs(10),
        }
    }
}

/// The gate answers with its store; warming loads the scripts intake runs
/// (admit, release) so that the first orders do not each load them.
#[async_trait]
impl HealthCheck for RedisStockGate {
    fn name(&self) -> &'static str {
        "stock-gate"
    }

    async fn check(&self) -> OmsResult<()> {
        self.store.check().await
    }

    async fn warm(&self) -> OmsResult<()> {
        let mut conn = self.store.conn.clone();
        for script in [&self.admit, &self.release] {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

impl RedisStockGate {
    /// Replaces the redelivery time of the refusal journal.
    pub fn with_redeliver_after(mut self, after: Duration) -> Self {
        self.redeliver_after = after;
        self
    }

    fn gate_key(&self, product_id: ProductId) -> String {
        self.store.intake_key(format_args!("gate:{product_id}"))
    }

    fn bought_key(&self, product_id: ProductId) -> String {
        self.store
            .intake_key(format_args!("gate:{product_id}:bought"))
    }

    fn version_key(&self, product_id: ProductId) -> String {
        self.store.intake_key(format_args!("gate:{product_id}:v"))
    }

    fn journal_key(&self) -> String {
        self.store.intake_key("refusals")
    }

    async fn ensure_group(&self) -> OmsResult<()> {
        let mut conn = self.store.conn.clone();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.journal_key())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(unavailable(e)),
            _ => Ok(()),
        }
    }

    /// The refusal of a journal entry; an unreadable entry (never written
    /// by this gate) is put in `unreadable`, to be dropped.
    fn refusal(entry: redis::streams::StreamId, unreadable: &mut Vec<String>) -> Option<Refusal> {
        let decoded = entry
            .get::<Vec<u8>>("command")
            .ok_or_else(|| "no command field".to_owned())
            .and_then(|bytes| decode_command(&bytes).map_err(|e| e.to_string()));
        match decoded {
            Ok(command) => Some(Refusal {
                id: entry.id,
                command,
            }),
            Err(e) => {
                tracing::warn!(id = %entry.id, error = %e, "unreadable entry dropped from the refusal journal");
                unreadable.push(entry.id);
                None
            }
        }
    }
}

fn failed(command: &OrderCommand) -> OrderTrace {
    OrderTrace {
        trace_id: command.trace_id,
        member_id: command.member_id,
        state: TraceState::Failed {
            reason: FailureReason::OutOfStock,
        },
    }
}

#[async_trait]
impl StockGate for RedisStockGate {
    async fn admit(&self, command: &OrderCommand, checks: &IntakeChecks) -> OmsResult<Admission> {
        let limits = &checks.limits;
        let units = command.units_by_product();
        let wanted = |product: ProductId| {
            units
                .iter()
                .find(|(p, _)| *p == product)
                .map_or(0, |(_, n)| *n)
        };
        let processing = OrderTrace::processing(command.trace_id, command.member_id);
        let refused = failed(command);
        let member = command.member_id;
        let (interval, tolerance, margin) = checks.rate.map_or((0, 0, 0), gcra_args);
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .key(self.store.room_key("admitted"))
            .key(self.store.rate_key(&member.to_string()))
            .key(self.store.trace_key(command.trace_id))
            .key(self.store.processing_key())
            .key(self.journal_key());
        for (product, _) in &units {
            invocation.key(self.gate_key(*product));
        }
        for limit in limits {
            invocation.key(self.bought_key(limit.product_id));
        }
        invocation
            .arg(member.0)
            .arg(u8::from(checks.admission))
            .arg(u8::from(checks.rate.is_some()))
            .arg(interval)
            .arg(tolerance)
            .arg(margin)
            .arg(encode(&processing)?)
            .arg(self.store.ttl(&processing))
            .arg(encode(&refused)?)
            // Not durable until the keeper settles it: kept as long as a
            // PROCESSING trace.
            .arg(self.store.ttl(&processing))
            .arg(command.trace_id.to_string())
            .arg(now_millis())
            .arg(encode_command(command)?)
            .arg(units.len())
            .arg(limits.len());
        for (_, n) in &units {
            invocation.arg(*n);
        }
        for limit in limits {
            invocation
                .arg(limit.max_per_member)
                .arg(wanted(limit.product_id));
        }
        let mut conn = self.store.conn.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let nth = |i: i64| usize::try_from(i).ok()?.checked_sub(1);
        let admission = match *reply.as_slice() {
            [RESERVED, _] => Some(Admission::Reserved),
            [OUT_OF_STOCK, i] => nth(i)
                .and_then(|i| units.get(i))
                .map(|&(product_id, _)| Admission::Refused { product_id }),
            [OVER_LIMIT, j] => {
                nth(j)
                    .and_then(|j| limits.get(j))
                    .map(|limit| Admission::OverLimit {
                        product_id: limit.product_id,
                    })
            }
            [RATE_LIMITED, micros] => {
                u64::try_from(micros)
                    .ok()
                    .map(|micros| Admission::RateLimited {
                        retry_after: Duration::from_micros(micros),
                    })
            }
            [NOT_ADMITTED, _] => Some(Admission::NotAdmitted),
            _ => None,
        };
        admission.ok_or_else(|| OmsError::Internal(format!("admission script answered {reply:?}")))
    }

    async fn release(&self, member_id: MemberId, lines: &[OrderLine]) -> OmsResult<()> {
        let units = units_by_product(lines);
        if units.is_empty() {
            return Ok(());
        }
        let mut invocation = self.release.prepare_invoke();
        invocation.arg(member_id.0);
        for (product, n) in &units {
            invocation
                .key(self.gate_key(*product))
                .key(self.bought_key(*product))
                .arg(*n);
        }
        let mut conn = self.store.conn.clone();
        let _: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn give_back_purchases(
        &self,
        member_id: MemberId,
        units: &[(ProductId, i64)],
    ) -> OmsResult<()> {
        if units.is_empty() {
            return Ok(());
        }
        let mut invocation = self.give_back.prepare_invoke();
        invocation.arg(member_id.0);
        for (product, n) in units {
            invocation.key(self.bought_key(*product)).arg(*n);
        }
        let mut conn = self.store.conn.clone();
        let _: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_purchases(&self, product_id: ProductId, purchases: &[Purchase]) -> OmsResult<()> {
        let key = self.bought_key(product_id);
        let fields: Vec<(u64, i64)> = purchases
            .iter()
            .filter(|p| p.product_id == product_id)
            .map(|p| (p.member_id.0, p.units))
            .collect();
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for chunk in fields.chunks(PURCHASES_PER_HSET) {
            pipe.hset_multiple(&key, chunk).ignore();
        }
        let mut conn = self.store.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn set_available(&self, levels: &[GateLevel], overwrite: bool) -> OmsResult<()> {
        let mut conn = self.store.conn.clone();
        for chunk in levels.chunks(500) {
            let mut invocation = self.set_levels.prepare_invoke();
            invocation.arg(if overwrite { 1 } else { 0 });
            for level in chunk {
                invocation
                    .key(self.gate_key(level.product_id))
                    .key(self.version_key(level.product_id))
                    .arg(level.available)
                    .arg(level.version);
            }
            let _: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn adjust(&self, level: GateLevel, delta: i64) -> OmsResult<()> {
        let mut conn = self.store.conn.clone();
        let _: i64 = self
            .adjust
            .key(self.gate_key(level.product_id))
            .key(self.version_key(level.product_id))
            .arg(level.available)
            .arg(level.version)
            .arg(delta)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn available(&self, product_id: ProductId) -> OmsResult<Option<i64>> {
        let mut conn = self.store.conn.clone();
        redis::cmd("GET")
            .arg(self.gate_key(product_id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn refusals(&self, limit: usize) -> OmsResult<Vec<Refusal>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.ensure_group().await?;
        let mut conn = self.store.conn.clone();
        let idle = u64::try_from(self.redeliver_after.as_millis()).unwrap_or(u64::MAX);
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.journal_key())
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(idle)
            .arg("0-0")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut unreadable = Vec::new();
        let mut out: Vec<Refusal> = claimed
            .claimed
            .into_iter()
            .filter_map(|e| Self::refusal(e, &mut unreadable))
            .collect();
        if out.len() < limit {
            let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(limit - out.len())
                .arg("STREAMS")
                .arg(self.journal_key())
                .arg(">")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for key in fresh.map(|r| r.keys).unwrap_or_default() {
                out.extend(
                    key.ids
                        .into_iter()
                        .filter_map(|e| Self::refusal(e, &mut unreadable)),
                );
            }
        }
        self.settled(&unreadable).await?;
        Ok(out)
    }

    async fn settled(&self, ids: &[String]) -> OmsResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let journal = self.journal_key();
        let mut conn = self.store.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&journal)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&journal)
            .arg(ids)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn refusals_waiting(&self) -> OmsResult<u64> {
        let mut conn = self.store.conn.clone();
        redis::cmd("XLEN")
            .arg(self.journal_key())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    async fn scripts_known(gate: &RedisStockGate) -> Vec<bool> {
        let mut conn = gate.store.conn.clone();
        redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(gate.admit.get_hash())
            .arg(gate.release.get_hash())
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// On the Redis of `scripts/services.sh up`.
    #[tokio::test]
    async fn warming_loads_the_scripts_of_intake() {
        let Some(url) = oms_core::testkit::services::service_env("OMS_REDIS_URL") else {
            return;
        };
        let gate = RedisTraceStore::connect(&url).await.unwrap().stock_gate();
        let mut conn = gate.store.conn.clone();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(scripts_known(&gate).await, [false, false]);
        gate.warm().await.unwrap();
        assert_eq!(scripts_known(&gate).await, [true, true]);
        gate.check().await.unwrap();
    }
}
