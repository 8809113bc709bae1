//! The waiting room on Redis: a line, the admitted members and a token
//! bucket, each operation one Lua script on Redis time.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use oms_core::domain::{MemberId, OmsError, OmsResult, RoomPolicy, RoomStatus};
use oms_core::port::outbound::{Occupancy, WaitingRoom};
use redis::Script;

use crate::{unavailable, RedisTraceStore};

/// Where a member stands, without joining the line; shared by [`ENTER`]
/// and [`STATUS`]. Expects what [`PRELUDE`] defines.
const STAND: &str = r"
local function stand()
  local expiry = redis.call('ZSCORE', KEYS[3], member)
  if expiry and tonumber(expiry) > now then
    return {1, tonumber(expiry)}
  end
  local rank = redis.call('ZRANK', KEYS[1], member)
  if not rank then
    return nil
  end
  local active = redis.call('ZCOUNT', KEYS[3], after_now, '+inf')
  local first = -1
  if active >= max_active then
    local soonest = redis.call('ZRANGEBYSCORE', KEYS[3], after_now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if soonest[2] then
      first = math.max(0, tonumber(soonest[2]) - now)
    end
  end
  return {2, rank + 1, first}
end
";

/// Redis time (`now`, ms; `after_now`, the scores after it), the member
/// and `max_active`, for [`STAND`].
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local after_now = '(' .. string.format('%.0f', now)
local member = ARGV[1]
local max_active = tonumber(ARGV[2])
";

/// Enters a member, or answers where they stand.
///
/// KEYS: the line, the arrival counter, the admitted set. ARGV: the member
/// id, `max_active`. Returns `{1, expiry ms}` when admitted, or
/// `{2, position, ms until the first admission ends (-1 unless every slot
/// is taken)}`.
const ENTER: &str = r"
local here = stand()
if here then
  return here
end
redis.call('ZREM', KEYS[3], member)
local arrival = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], arrival, member)
return stand()
";

/// Where a member stands: as [`ENTER`], with `{0}` when they are not in
/// the room, and without joining the line.
const STATUS: &str = r"
return stand() or {0}
";

/// One round of the admitter: ends the admissions past their expiry,
/// refills the bucket, and admits the head of the line.
///
/// KEYS: the line, the admitted set, the bucket. ARGV: the rate (per
/// second), `max_active`, the TTL of an admission (ms). Returns how many it
/// admitted. Members are moved 1000 per `ZADD` (Lua's `unpack` has a
/// bounded stack).
const ADMIT: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local rate = tonumber(ARGV[1])
local max_active = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
local bucket = redis.call('HMGET', KEYS[3], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or 0
local ts = tonumber(bucket[2]) or now_us
local elapsed = math.max(0, now_us - ts) / 1000000
tokens = math.min(rate, tokens + elapsed * rate)
local free = max_active - redis.call('ZCARD', KEYS[2])
local waiting = redis.call('ZCARD', KEYS[1])
local n = math.max(0, math.min(math.floor(tokens), free, waiting))
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  local expiry = string.format('%.0f', now + ttl)
  local args = {}
  for i = 1, #popped, 2 do
    args[#args + 1] = expiry
    args[#args + 1] = popped[i]
    if #args >= 2000 then
      redis.call('ZADD', KEYS[2], unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('ZADD', KEYS[2], unpack(args))
  end
  n = #popped / 2
end
tokens = tokens - n
redis.call('HSET', KEYS[3], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.0f', now_us))
return n
";

/// How many wait and how many are admitted now.
///
/// KEYS: the line, the admitted set. Returns `{waiting, admitted}`.
const OCCUPANCY: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local after_now = '(' .. string.format('%.0f', now)
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCOUNT', KEYS[2], after_now, '+inf')}
";

/// The [`WaitingRoom`] on Redis, sharing the keyspace and connection of a
/// [`RedisTraceStore`] (made by [`RedisTraceStore::waiting_room`]).
///
/// - The line is the sorted set `{<prefix>}:wr:line`, each member scored by
///   its arrival number, taken from the counter `{<prefix>}:wr:seq` (`INCR`):
///   first come first served across processes, without trusting their
///   clocks. A place is `ZRANK` + 1.
/// - The admitted members are the sorted set `{<prefix>}:wr:admitted`, each
///   scored by the unix ms at which the admission ends. The
///   [stock gate](crate::RedisStockGate) of the same keyspace reads it to
///   check an order's admission in the script that reserves.
/// - The admission rate is a token bucket, the hash `{<prefix>}:wr:bucket`
///   (`tokens`, a float; `ts`, unix µs of the last refill): it starts empty
///   and holds at most one second of tokens.
///
/// Every operation is one Lua script (one round trip, atomic) on Redis's
/// clock (`TIME`), never the caller's. [`admit`](WaitingRoom::admit) drops
/// the ended admissions, refills the bucket by the time elapsed since the
/// last round (of any process), and moves as many from the head of the
/// line to the admitted set as the tokens, the free slots and the line
/// allow. The rate lives in Redis, so the admitter needs no leader: any
/// number of processes may call `admit` at any time, and together they
/// never admit faster than the policy's rate.
///
/// Its keys are in the slot of the intake keyspace (hash tag `{<prefix>}`),
/// with the stock gate's, whose script reads the admitted set: on a Redis
/// Cluster every script of the room, and the gate's, runs on one node.
#[derive(Clone)]
pub struct RedisWaitingRoom {
    store: RedisTraceStore,
    policy: RoomPolicy,
    enter: Script,
    status: Script,
    admit: Script,
    occupancy: Script,
}

impl std::fmt::Debug for RedisWaitingRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWaitingRoom")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisTraceStore {
    /// The waiting room on this store's connection and keyspace, admitting
    /// by `policy`. Every room on the same prefix is the same room.
    pub fn waiting_room(&self, policy: RoomPolicy) -> RedisWaitingRoom {
        let stand = |body: &str| format!("{PRELUDE}{STAND}{body}");
        RedisWaitingRoom {
            store: self.clone(),
            policy,
            enter: Script::new(&stand(ENTER)),
            status: Script::new(&stand(STATUS)),
            admit: Script::new(ADMIT),
            occupancy: Script::new(OCCUPANCY),
        }
    }
}

impl RedisTraceStore {
    /// The key `name` of the waiting room on this store's keyspace (the
    /// stock gate reads `admitted`).
    pub(crate) fn room_key(&self, name: &str) -> String {
        self.intake_key(format_args!("wr:{name}"))
    }
}

impl RedisWaitingRoom {
    /// The room's policy.
    pub fn policy(&self) -> RoomPolicy {
        self.policy
    }

    fn key(&self, name: &str) -> String {
        self.store.room_key(name)
    }

    async fn stand(&self, script: &Script, member_id: MemberId) -> OmsResult<Option<RoomStatus>> {
        let mut conn = self.store.conn.clone();
        let reply: Vec<i64> = script
            .key(self.key("line"))
            .key(self.key("seq"))
            .key(self.key("admitted"))
            .arg(member_id.0)
            .arg(self.policy.max_active)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [0] => Ok(None),
            &[1, expiry] => DateTime::<Utc>::from_timestamp_millis(expiry)
                .map(|expires_at| Some(RoomStatus::Admitted { expires_at }))
                .ok_or_else(|| malformed(&reply)),
            &[2, position, first] => {
                let position = u64::try_from(position).map_err(|_| malformed(&reply))?;
                let first_expiry_in = u64::try_from(first).ok().map(Duration::from_millis);
                Ok(Some(RoomStatus::Waiting {
                    position,
                    estimated_wait: self.policy.estimated_wait(position, first_expiry_in),
                }))
            }
            _ => Err(malformed(&reply)),
        }
    }
}

fn malformed(reply: &[i64]) -> OmsError {
    OmsError::Internal(format!("waiting room script answered {reply:?}"))
}

#[async_trait]
impl WaitingRoom for RedisWaitingRoom {
    async fn enter(&self, member_id: MemberId) -> OmsResult<RoomStatus> {
        self.stand(&self.enter, member_id)
            .await?
            .ok_or_else(|| OmsError::Internal(format!("{member_id} entered nowhere")))
    }

    async fn status(&self, member_id: MemberId) -> OmsResult<Option<RoomStatus>> {
        self.stand(&self.status, member_id).await
    }

    async fn admit(&self) -> OmsResult<u64> {
        let mut conn = self.store.conn.clone();
        let ttl = u64::try_from(self.policy.ttl.as_millis()).unwrap_or(u64::MAX);
        self.admit
            .key(self.key("line"))
            .key(self.key("admitted"))
            .key(self.key("bucket"))
            .arg(self.policy.admit_per_sec.max(1))
            .arg(self.policy.max_active)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn release(&self, members: &[MemberId]) -> OmsResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let ids: Vec<u64> = members.iter().map(|m| m.0).collect();
        let mut conn = self.store.conn.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(self.key("admitted"))
            .arg(ids)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn occupancy(&self) -> OmsResult<Occupancy> {
        let mut conn = self.store.conn.clone();
        let reply: Vec<u64> = self
            .occupancy
            .key(self.key("line"))
            .key(self.key("admitted"))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            &[waiting, admitted] => Ok(Occupancy { waiting, admitted }),
            _ => Err(OmsError::Internal(format!(
                "occupancy script answered {reply:?}"
            ))),
        }
    }
}
