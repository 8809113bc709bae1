//! The front door of a sale: the waiting room's policy and answers, and the
//! per-member request rate.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{MemberId, ProductId};

/// How the waiting room lets members in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    /// Members admitted per second, first come first served (> 0).
    pub admit_per_sec: u32,
    /// Most members admitted at once (> 0).
    pub max_active: u32,
    /// How long an admission lasts unless its holder's order is final
    /// first.
    pub ttl: Duration,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            admit_per_sec: 100,
            max_active: 1000,
            ttl: Duration::from_secs(120),
        }
    }
}

impl RoomPolicy {
    /// The estimated wait of the member at `position` (1 = next): the
    /// admissions ahead of them at the admission rate, plus, when every
    /// slot is taken, the time until the first admission ends by its TTL
    /// (`first_expiry_in`). Admissions that end early (an order final)
    /// only make the wait shorter.
    pub fn estimated_wait(&self, position: u64, first_expiry_in: Option<Duration>) -> Duration {
        let rate = u64::from(self.admit_per_sec.max(1));
        // The admitter works in ticks; a member is let in at the tick that
        // has a token for them.
        let ahead = Duration::from_millis(position.saturating_mul(1000).div_ceil(rate));
        ahead + first_expiry_in.unwrap_or_default()
    }
}

/// Where a member stands in the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    /// In line.
    Waiting {
        /// Place in the line, 1 = next.
        position: u64,
        /// Computed from the position, the admission rate and the free
        /// slots (see [`RoomPolicy::estimated_wait`]).
        estimated_wait: Duration,
    },
    /// Admitted: may order until `expires_at`.
    Admitted {
        /// When the admission ends unless the member's order is final
        /// before.
        expires_at: DateTime<Utc>,
    },
}

/// A request rate: `per_sec` requests per second on average, at most
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second (> 0).
    pub per_sec: u32,
    /// Requests allowed back to back (≥ 1).
    pub burst: u32,
}

impl Rate {
    /// `per_sec` a second, with a burst of as many.
    pub fn per_second(per_sec: u32) -> Self {
        Self {
            per_sec,
            burst: per_sec,
        }
    }

    /// The time one request "costs" (GCRA's emission interval), in µs.
    pub fn interval_micros(&self) -> u64 {
        1_000_000 / u64::from(self.per_sec.max(1))
    }
}

/// What the rate limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the rate.
    Allowed,
    /// Over it: try again after this long.
    Limited {
        /// How long until a request would be allowed.
        retry_after: Duration,
    },
}

/// One step of GCRA (the generic cell rate algorithm): given the key's
/// theoretical arrival time `tat` and `now` (µs), the decision and the new
/// TAT to store. The Redis adapter runs the same arithmetic in Lua.
pub fn gcra(rate: Rate, tat: Option<u64>, now: u64) -> (RateDecision, u64) {
    let interval = rate.interval_micros();
    let tolerance = interval.saturating_mul(u64::from(rate.burst.max(1)) - 1);
    let tat = tat.unwrap_or(now).max(now);
    let allow_at = tat.saturating_sub(tolerance);
    if now < allow_at {
        let retry_after = Duration::from_micros(allow_at - now);
        (RateDecision::Limited { retry_after }, tat)
    } else {
        (RateDecision::Allowed, tat + interval)
    }
}

/// A product's purchase limit, as intake hands it to the stock gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseLimit {
    /// The product.
    pub product_id: ProductId,
    /// Units one member may buy in total.
    pub max_per_member: i64,
}

/// Units a member has bought of a product (orders placed and not given
/// back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purchase {
    /// The member.
    pub member_id: MemberId,
    /// The product.
    pub product_id: ProductId,
    /// Units bought.
    pub units: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let rate = Rate::per_second(10);
        let mut tat = None;
        for _ in 0..10 {
            let (d, t) = gcra(rate, tat, 0);
            assert_eq!(d, RateDecision::Allowed);
            tat = Some(t);
        }
        let (d, t) = gcra(rate, tat, 0);
        assert_eq!(
            d,
            RateDecision::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        // After one interval, exactly one more.
        let (d, t) = gcra(rate, Some(t), 100_000);
        assert_eq!(d, RateDecision::Allowed);
        assert!(matches!(
            gcra(rate, Some(t), 100_000).0,
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn a_rate_of_one_has_no_burst() {
        let rate = Rate::per_second(1);
        let (d, t) = gcra(rate, None, 5);
        assert_eq!(d, RateDecision::Allowed);
        assert!(matches!(
            gcra(rate, Some(t), 6).0,
            RateDecision::Limited { .. }
        ));
        assert_eq!(gcra(rate, Some(t), 1_000_005).0, RateDecision::Allowed);
    }

    #[test]
    fn the_estimate_counts_the_line_and_the_full_room() {
        let policy = RoomPolicy {
            admit_per_sec: 50,
            max_active: 10,
            ttl: Duration::from_secs(60),
        };
        assert_eq!(policy.estimated_wait(1, None), Duration::from_millis(20));
        assert_eq!(policy.estimated_wait(100, None), Duration::from_secs(2));
        assert_eq!(
            policy.estimated_wait(100, Some(Duration::from_secs(3))),
            Duration::from_secs(5)
        );
    }
}
