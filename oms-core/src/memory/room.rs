use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::domain::{gcra, MemberId, OmsResult, Rate, RateDecision, RoomPolicy, RoomStatus};
use crate::port::outbound::{Occupancy, RateLimiter, WaitingRoom};

#[derive(Debug)]
struct Room {
    /// The line, by arrival number.
    line: BTreeMap<u64, MemberId>,
    /// Each waiting member's arrival number.
    places: HashMap<MemberId, u64>,
    /// Admitted members and when their admission ends.
    admitted: HashMap<MemberId, (Instant, DateTime<Utc>)>,
    next_arrival: u64,
    tokens: f64,
    refilled: Instant,
}

/// A [`WaitingRoom`] in one process (the embedded default), with the same
/// rules as the Redis adapter: a token bucket of `admit_per_sec` (holding
/// at most one second of tokens) and at most `max_active` admitted.
#[derive(Debug)]
pub struct InMemoryWaitingRoom {
    policy: RoomPolicy,
    room: Mutex<Room>,
}

impl InMemoryWaitingRoom {
    /// An empty room with this policy.
    pub fn new(policy: RoomPolicy) -> Self {
        Self {
            policy,
            room: Mutex::new(Room {
                line: BTreeMap::new(),
                places: HashMap::new(),
                admitted: HashMap::new(),
                next_arrival: 0,
                tokens: 0.0,
                refilled: Instant::now(),
            }),
        }
    }

    fn status_in(&self, room: &Room, member: MemberId, now: Instant) -> Option<RoomStatus> {
        if let Some(&(until, expires_at)) = room.admitted.get(&member) {
            if until > now {
                return Some(RoomStatus::Admitted { expires_at });
            }
        }
        let arrival = *room.places.get(&member)?;
        let position = room.line.range(..=arrival).count() as u64;
        let full = room.admitted.len() as u64 >= u64::from(self.policy.max_active);
        let first_expiry = full
            .then(|| {
                room.admitted
                    .values()
                    .map(|(t, _)| t.saturating_duration_since(now))
                    .min()
            })
            .flatten();
        Some(RoomStatus::Waiting {
            position,
            estimated_wait: self.policy.estimated_wait(position, first_expiry),
        })
    }
}

#[async_trait]
impl WaitingRoom for InMemoryWaitingRoom {
    async fn enter(&self, member_id: MemberId) -> OmsResult<RoomStatus> {
        let now = Instant::now();
        let mut room = lock(&self.room);
        if let Some(status) = self.status_in(&room, member_id, now) {
            return Ok(status);
        }
        room.admitted.remove(&member_id);
        let arrival = room.next_arrival;
        room.next_arrival += 1;
        room.line.insert(arrival, member_id);
        room.places.insert(member_id, arrival);
        Ok(self
            .status_in(&room, member_id, now)
            .unwrap_or(RoomStatus::Waiting {
                position: 1,
                estimated_wait: self.policy.estimated_wait(1, None),
            }))
    }

    async fn status(&self, member_id: MemberId) -> OmsResult<Option<RoomStatus>> {
        let room = lock(&self.room);
        Ok(self.status_in(&room, member_id, Instant::now()))
    }

    async fn admit(&self) -> OmsResult<u64> {
        let now = Instant::now();
        let mut room = lock(&self.room);
        room.admitted.retain(|_, (until, _)| *until > now);
        let rate = f64::from(self.policy.admit_per_sec.max(1));
        let elapsed = now.saturating_duration_since(room.refilled).as_secs_f64();
        room.tokens = (room.tokens + elapsed * rate).min(rate);
        room.refilled = now;
        let free = u64::from(self.policy.max_active).saturating_sub(room.admitted.len() as u64);
        let mut admitted = 0;
        while admitted < free && room.tokens >= 1.0 {
            let Some((_, member)) = room.line.pop_first() else {
                break;
            };
            room.places.remove(&member);
            let expires_at = Utc::now()
                + chrono::Duration::from_std(self.policy.ttl).unwrap_or(chrono::Duration::MAX);
            let expires_at = DateTime::from_timestamp_millis(expires_at.timestamp_millis())
                .unwrap_or(expires_at);
            room.admitted
                .insert(member, (now + self.policy.ttl, expires_at));
            room.tokens -= 1.0;
            admitted += 1;
        }
        Ok(admitted)
    }

    async fn release(&self, members: &[MemberId]) -> OmsResult<()> {
        let mut room = lock(&self.room);
        for member in members {
            room.admitted.remove(member);
        }
        Ok(())
    }

    async fn occupancy(&self) -> OmsResult<Occupancy> {
        let now = Instant::now();
        let room = lock(&self.room);
        Ok(Occupancy {
            waiting: room.line.len() as u64,
            admitted: room.admitted.values().filter(|(t, _)| *t > now).count() as u64,
        })
    }
}

/// A [`RateLimiter`] in one process: GCRA per key ([`gcra`]).
#[derive(Debug)]
pub struct InMemoryRateLimiter {
    epoch: Instant,
    arrivals: Mutex<HashMap<String, u64>>,
}

impl Default for InMemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryRateLimiter {
    /// A limiter that has seen no request.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            arrivals: Mutex::default(),
        }
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn acquire(&self, key: &str, rate: Rate) -> OmsResult<RateDecision> {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut arrivals = lock(&self.arrivals);
        if arrivals.len() > 100_000 {
            // Keys whose last request is a burst's worth in the past allow a
            // full burst again: forgetting them changes nothing.
            arrivals.retain(|_, tat| *tat > now);
        }
        let (decision, tat) = gcra(rate, arrivals.get(key).copied(), now);
        if decision == RateDecision::Allowed {
            arrivals.insert(key.to_owned(), tat);
        }
        Ok(decision)
    }
}
