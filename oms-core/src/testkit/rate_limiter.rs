//! The contract of [`RateLimiter`].

use std::time::{Duration, Instant};

use crate::domain::{Rate, RateDecision};
use crate::port::outbound::RateLimiter;

use super::random_id;

/// Runs every check of the rate limiter contract.
pub async fn run(limiter: &dyn RateLimiter) {
    a_burst_then_the_rate(limiter).await;
    concurrent_requests_never_exceed_the_burst(limiter).await;
}

pub async fn a_burst_then_the_rate(limiter: &dyn RateLimiter) {
    let rate = Rate::per_second(5);
    let key = format!("member-{}", random_id());
    for i in 0..5 {
        assert_eq!(
            limiter.acquire(&key, rate).await.unwrap(),
            RateDecision::Allowed,
            "request {i}"
        );
    }
    let RateDecision::Limited { retry_after } = limiter.acquire(&key, rate).await.unwrap() else {
        panic!("the sixth request in a burst of 5 is limited");
    };
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200));
    // Another key has its own budget.
    let other = format!("member-{}", random_id());
    assert_eq!(
        limiter.acquire(&other, rate).await.unwrap(),
        RateDecision::Allowed
    );
    // One interval later, one more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.acquire(&key, rate).await.unwrap() != RateDecision::Allowed {
        assert!(Instant::now() < deadline, "never allowed again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn concurrent_requests_never_exceed_the_burst(limiter: &dyn RateLimiter) {
    let rate = Rate::per_second(10);
    let key = format!("member-{}", random_id());
    let decisions = futures::future::join_all((0..50).map(|_| limiter.acquire(&key, rate))).await;
    let allowed = decisions
        .into_iter()
        .filter(|d| *d.as_ref().unwrap() == RateDecision::Allowed)
        .count();
    // 10 at once, and at most one more if an interval (100 ms) passed.
    assert!((10..=11).contains(&allowed), "{allowed} allowed");
}
