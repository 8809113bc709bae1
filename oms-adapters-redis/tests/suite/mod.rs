//! The Redis adapters' suite, written once and run against a single Redis
//! (`tests/conformance.rs`, `OMS_REDIS_URL`) and against a Redis Cluster
//! (`tests/cluster.rs`, `OMS_REDIS_CLUSTER_NODES`): the `oms_core::testkit`
//! conformance suites of every port, and what the adapters promise beyond
//! them (key layout, TTLs, shared budgets). `redis_suite!(Kind::…)` makes one
//! `#[tokio::test]` per test below; a test whose service is not set reports
//! itself skipped (`oms_core::testkit::services`).

// Each test crate uses one `Kind` and some of the helpers.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_adapters_redis::{RedisConnection, RedisTraceOptions, RedisTraceStore};
use oms_core::domain::{MemberId, OrderTrace, RoomPolicy, TraceId};
use oms_core::port::outbound::{
    HealthCheck, IntakeChecks, RateLimiter, StockGate, TraceStore, WaitingRoom,
};
use oms_core::testkit;

/// Which Redis a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One node: `OMS_REDIS_URL` (`scripts/services.sh up`).
    Node,
    /// A Redis Cluster: `OMS_REDIS_CLUSTER_NODES`, its nodes' URLs separated
    /// by commas (`scripts/services.sh up-cluster`).
    Cluster,
}

impl Kind {
    /// The variable that locates this kind of Redis.
    pub fn var(self) -> &'static str {
        match self {
            Kind::Node => "OMS_REDIS_URL",
            Kind::Cluster => "OMS_REDIS_CLUSTER_NODES",
        }
    }
}

/// The Redis of a test run.
#[derive(Debug, Clone)]
pub struct Target {
    /// Single node or cluster.
    pub kind: Kind,
    /// The URL, or the nodes' URLs separated by commas.
    pub locator: String,
}

impl Target {
    /// The nodes' URLs of a cluster (the URL of a single node).
    pub fn nodes(&self) -> Vec<String> {
        self.locator
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A connection of its own.
    pub async fn raw(&self) -> RedisConnection {
        match self.kind {
            Kind::Node => RedisConnection::connect(&self.locator).await,
            Kind::Cluster => RedisConnection::connect_cluster(self.nodes()).await,
        }
        .unwrap()
    }

    /// A store on a connection of its own.
    pub async fn store(&self) -> RedisTraceStore {
        RedisTraceStore::new(self.raw().await)
    }
}

/// Runs `test` against the Redis of `kind`, or reports it skipped when that
/// Redis is not set.
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Target) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(locator) = testkit::services::service_env(kind.var()) {
        test(Target { kind, locator }).await;
    }
}

/// One `#[tokio::test]` per test of the suite, against the Redis of
/// `$kind`.
macro_rules! redis_suite {
    ($kind:expr) => {
        redis_suite!($kind; redis_trace_store_conforms,
            redis_session_store_conforms,
            a_revocation_mirror_of_redis_conforms,
            two_mirrors_of_one_redis_see_each_others_revocations,
            redis_attempt_counter_conforms,
            a_family_and_a_revocation_are_one_key_each_with_their_ttl,
            traces_expire_with_their_ttl,
            health_check_pings,
            redis_stock_gate_conforms,
            a_refused_trace_outlives_the_final_ttl_until_it_is_settled,
            redis_waiting_room_conforms,
            redis_rate_limiter_conforms,
            the_gate_checks_the_front_door_of_its_room_first,
            the_gate_and_the_rate_limiter_share_a_members_budget,
            an_order_refused_for_its_limit_or_for_stock_takes_a_token_of_the_rate,
            two_replicas_admitting_at_once_share_the_rate,
            purchases_are_replaced_whole_however_many,
            given_back_purchases_let_the_member_buy_again_and_never_go_below_zero,
            a_rate_key_holds_its_tat_and_vanishes_when_idle);
    };
    ($kind:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                suite::run($kind, suite::$name).await;
            }
        )*
    };
}

/// A key prefix of its own.
fn fresh_prefix(what: &str) -> String {
    format!("oms-{what}-{}", TraceId::new())
}

/// `store` on the keyspace `prefix`.
fn on_prefix(store: &RedisTraceStore, prefix: &str) -> RedisTraceStore {
    store.clone().with_options(RedisTraceOptions {
        prefix: prefix.to_owned(),
        ..RedisTraceOptions::default()
    })
}

/// `store` on a keyspace of its own.
fn fresh(store: &RedisTraceStore, what: &str) -> RedisTraceStore {
    on_prefix(store, &fresh_prefix(what))
}

pub async fn redis_trace_store_conforms(target: Target) {
    testkit::trace_store::run(&target.store().await).await;
}

pub async fn redis_session_store_conforms(target: Target) {
    testkit::session_store::run(&target.store().await.session_store()).await;
}

pub async fn a_revocation_mirror_of_redis_conforms(target: Target) {
    for interval in [Duration::ZERO, Duration::from_secs(3600)] {
        let mirror =
            oms_core::memory::RevocationMirror::new(Arc::new(target.store().await.session_store()))
                .with_interval(interval);
        testkit::session_store::run(&mirror).await;
    }
}

pub async fn two_mirrors_of_one_redis_see_each_others_revocations(target: Target) {
    use oms_core::domain::{SessionId, TokenId};
    use oms_core::memory::RevocationMirror;
    use oms_core::port::outbound::SessionStore;
    // A keyspace of its own, so the copies start empty.
    let sessions = target
        .store()
        .await
        .with_options(RedisTraceOptions {
            prefix: format!("oms-mirror-{}", TraceId::new()),
            ..RedisTraceOptions::default()
        })
        .session_store();
    let a = RevocationMirror::new(Arc::new(sessions.clone())).with_interval(Duration::ZERO);
    let b = RevocationMirror::new(Arc::new(sessions.clone())).with_interval(Duration::ZERO);
    let ttl = Duration::from_secs(600);
    let (jti, sid) = (TokenId::random(), SessionId::random());
    assert!(!b.is_revoked(jti, Some(sid)).await.unwrap());
    a.revoke(Some((jti, ttl)), None).await.unwrap();
    assert!(b.is_revoked(jti, None).await.unwrap());
    // A replay through b revokes the login for a.
    let live = TokenId::random();
    b.start(sid, live, ttl).await.unwrap();
    b.rotate(sid, live, TokenId::random(), ttl).await.unwrap();
    b.rotate(sid, live, TokenId::random(), ttl).await.unwrap();
    assert!(a.is_revoked(TokenId::random(), Some(sid)).await.unwrap());
    // A new mirror loads everything in force.
    let c = RevocationMirror::new(Arc::new(sessions)).with_interval(Duration::from_secs(3600));
    assert!(c.is_revoked(jti, None).await.unwrap());
    assert!(c.is_revoked(TokenId::random(), Some(sid)).await.unwrap());
    assert!(!c.is_revoked(TokenId::random(), None).await.unwrap());
}

pub async fn redis_attempt_counter_conforms(target: Target) {
    testkit::session_store::run_attempts(&target.store().await.attempt_counter()).await;
}

pub async fn a_family_and_a_revocation_are_one_key_each_with_their_ttl(target: Target) {
    use oms_core::domain::{SessionId, TokenId};
    use oms_core::port::outbound::SessionStore;
    let prefix = format!("oms-sess-{}", TraceId::new());
    let sessions = target
        .store()
        .await
        .with_options(RedisTraceOptions {
            prefix: prefix.clone(),
            ..RedisTraceOptions::default()
        })
        .session_store();
    let sid = SessionId::random();
    let live = TokenId::random();
    let jti = TokenId::random();
    sessions
        .start(sid, live, Duration::from_secs(3600))
        .await
        .unwrap();
    sessions
        .revoke(Some((jti, Duration::from_secs(60))), None)
        .await
        .unwrap();
    let mut conn = target.raw().await;
    let family: String = redis::cmd("GET")
        .arg(format!("{{{prefix}:sessions}}:sess:{sid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(family, live.to_string());
    let family_ttl: i64 = redis::cmd("TTL")
        .arg(format!("{{{prefix}:sessions}}:sess:{sid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((3590..=3600).contains(&family_ttl), "{family_ttl}");
    let token_ttl: i64 = redis::cmd("TTL")
        .arg(format!("{{{prefix}:sessions}}:jti:{jti}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (50..=60).contains(&token_ttl),
        "a revocation lives as long as its token: {token_ttl}"
    );
}

pub async fn traces_expire_with_their_ttl(target: Target) {
    let store = target.store().await.with_options(RedisTraceOptions {
        prefix: format!("oms-ttl-{}", TraceId::new()),
        processing_ttl: Duration::from_secs(1),
        ..RedisTraceOptions::default()
    });
    let trace = OrderTrace::processing(TraceId::new(), MemberId(1));
    store.save(&trace).await.unwrap();
    assert_eq!(store.get(trace.trace_id).await.unwrap(), Some(trace));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.get(trace.trace_id).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn health_check_pings(target: Target) {
    target.store().await.check().await.unwrap();
}

pub async fn redis_stock_gate_conforms(target: Target) {
    // A keyspace of its own: the journal is shared by everything on a prefix.
    let store = target.store().await.with_options(RedisTraceOptions {
        prefix: format!("oms-gate-{}", TraceId::new()),
        ..RedisTraceOptions::default()
    });
    let redeliver = Duration::from_millis(300);
    let gate = store.stock_gate().with_redeliver_after(redeliver);
    testkit::stock_gate::run(&gate, &store, redeliver).await;
}

pub async fn a_refused_trace_outlives_the_final_ttl_until_it_is_settled(target: Target) {
    let prefix = format!("oms-refused-ttl-{}", TraceId::new());
    let store = target.store().await.with_options(RedisTraceOptions {
        prefix: prefix.clone(),
        final_ttl: Duration::from_secs(5),
        processing_ttl: Duration::from_secs(3600),
        ..RedisTraceOptions::default()
    });
    let gate = store.stock_gate();
    let product = oms_core::domain::ProductId(1);
    gate.set_available(
        &[oms_core::port::outbound::GateLevel {
            product_id: product,
            available: 0,
            version: 0,
        }],
        true,
    )
    .await
    .unwrap();
    let order = testkit::command(MemberId(1), &[(product, 1)]);
    assert!(matches!(
        gate.admit(&order, &IntakeChecks::default()).await.unwrap(),
        oms_core::port::outbound::Admission::Refused { .. }
    ));
    let mut conn = target.raw().await;
    let key = format!("{{{prefix}}}:trace:{}", order.trace_id);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 5,
        "a refusal not yet in the database keeps its trace: ttl {ttl}"
    );
}

pub async fn redis_waiting_room_conforms(target: Target) {
    let store = target.store().await;
    testkit::waiting_room::run(|policy| {
        Arc::new(fresh(&store, "room").waiting_room(policy)) as Arc<dyn WaitingRoom>
    })
    .await;
}

pub async fn redis_rate_limiter_conforms(target: Target) {
    testkit::rate_limiter::run(&fresh(&target.store().await, "rate").rate_limiter()).await;
}

pub async fn the_gate_checks_the_front_door_of_its_room_first(target: Target) {
    let store = fresh(&target.store().await, "front-door");
    let room = store.waiting_room(RoomPolicy {
        admit_per_sec: 100,
        max_active: 100,
        ttl: Duration::from_secs(60),
    });
    testkit::stock_gate::front_door_checks_come_first(&store.stock_gate(), &store, &room).await;
}

pub async fn the_gate_and_the_rate_limiter_share_a_members_budget(target: Target) {
    use oms_core::domain::{Rate, RateDecision};
    use oms_core::port::outbound::{Admission, GateLevel};
    let store = fresh(&target.store().await, "rate-shared");
    let (gate, limiter) = (store.stock_gate(), store.rate_limiter());
    let rate = Rate {
        per_sec: 1,
        burst: 2,
    };
    let checks = IntakeChecks {
        rate: Some(rate),
        ..IntakeChecks::default()
    };
    let product = testkit::random_product_id();
    gate.set_available(
        &[GateLevel {
            product_id: product,
            available: 100,
            version: 0,
        }],
        true,
    )
    .await
    .unwrap();
    let member = testkit::random_member_id();
    let order = || testkit::command(member, &[(product, 1)]);
    assert_eq!(
        gate.admit(&order(), &checks).await.unwrap(),
        Admission::Reserved
    );
    assert_eq!(
        limiter.acquire(&member.to_string(), rate).await.unwrap(),
        RateDecision::Allowed
    );
    // The burst of 2 is spent, whoever asks next.
    assert!(matches!(
        gate.admit(&order(), &checks).await.unwrap(),
        Admission::RateLimited { retry_after } if retry_after <= Duration::from_secs(1)
    ));
    assert!(matches!(
        limiter.acquire(&member.to_string(), rate).await.unwrap(),
        RateDecision::Limited { retry_after } if retry_after <= Duration::from_secs(1)
    ));
    assert_eq!(gate.available(product).await.unwrap(), Some(99));
    // Another member has a budget of their own.
    let other = testkit::random_member_id();
    assert_eq!(
        limiter.acquire(&other.to_string(), rate).await.unwrap(),
        RateDecision::Allowed
    );
}

pub async fn an_order_refused_for_its_limit_or_for_stock_takes_a_token_of_the_rate(target: Target) {
    use oms_core::domain::{PurchaseLimit, Rate, RateDecision};
    use oms_core::port::outbound::{Admission, GateLevel};
    let store = fresh(&target.store().await, "rate-refused");
    let (gate, limiter) = (store.stock_gate(), store.rate_limiter());
    let rate = Rate {
        per_sec: 1,
        burst: 3,
    };
    let (limited, sold_out) = (testkit::random_product_id(), testkit::random_product_id());
    gate.set_available(
        &[
            GateLevel {
                product_id: limited,
                available: 100,
                version: 0,
            },
            GateLevel {
                product_id: sold_out,
                available: 0,
                version: 0,
            },
        ],
        true,
    )
    .await
    .unwrap();
    let checks = IntakeChecks {
        rate: Some(rate),
        limits: vec![PurchaseLimit {
            product_id: limited,
            max_per_member: 1,
        }],
        ..IntakeChecks::default()
    };
    let member = testkit::random_member_id();
    assert_eq!(
        gate.admit(&testkit::command(member, &[(limited, 2)]), &checks)
            .await
            .unwrap(),
        Admission::OverLimit {
            product_id: limited
        }
    );
    assert_eq!(
        gate.admit(&testkit::command(member, &[(sold_out, 1)]), &checks)
            .await
            .unwrap(),
        Admission::Refused {
            product_id: sold_out
        }
    );
    assert_eq!(
        limiter.acquire(&member.to_string(), rate).await.unwrap(),
        RateDecision::Allowed
    );
    assert!(matches!(
        limiter.acquire(&member.to_string(), rate).await.unwrap(),
        RateDecision::Limited { .. }
    ));
    assert_eq!(gate.available(limited).await.unwrap(), Some(100));
}

pub async fn two_replicas_admitting_at_once_share_the_rate(target: Target) {
    let rate = 10;
    let policy = RoomPolicy {
        admit_per_sec: rate,
        max_active: 1000,
        ttl: Duration::from_secs(60),
    };
    // Two processes' rooms: their own connections, one prefix.
    let prefix = fresh_prefix("room-replicas");
    let a = on_prefix(&target.store().await, &prefix).waiting_room(policy);
    let b = on_prefix(&target.store().await, &prefix).waiting_room(policy);
    let members: Vec<MemberId> = (0..60).map(|_| testkit::random_member_id()).collect();
    for (i, m) in members.iter().enumerate() {
        let room = if i % 2 == 0 { &a } else { &b };
        room.enter(*m).await.unwrap();
    }
    let started = Instant::now();
    let admitter = |room: oms_adapters_redis::RedisWaitingRoom| async move {
        let mut total = 0;
        while started.elapsed() < Duration::from_millis(1500) {
            total += room.admit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        total
    };
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(admitter(a.clone())),
        tokio::spawn(admitter(b.clone()))
    );
    let total = from_a.unwrap() + from_b.unwrap();
    let bound = (f64::from(rate) * started.elapsed().as_secs_f64()).floor() as u64;
    assert!(
        total <= bound,
        "{total} admitted in {:?}",
        started.elapsed()
    );
    assert!(total > 0, "nobody admitted");
    assert_eq!(a.occupancy().await.unwrap().admitted, total);
    assert_eq!(b.occupancy().await.unwrap().waiting, 60 - total);
    // First come first served across both.
    for (i, m) in members.iter().enumerate() {
        let admitted = matches!(
            b.status(*m).await.unwrap(),
            Some(oms_core::domain::RoomStatus::Admitted { .. })
        );
        assert_eq!(admitted, (i as u64) < total, "member {i}");
    }
}

pub async fn purchases_are_replaced_whole_however_many(target: Target) {
    use oms_core::domain::{Purchase, PurchaseLimit};
    use oms_core::port::outbound::{Admission, GateLevel};
    let prefix = fresh_prefix("bought");
    let store = on_prefix(&target.store().await, &prefix);
    let gate = store.stock_gate();
    let product = testkit::random_product_id();
    gate.set_available(
        &[GateLevel {
            product_id: product,
            available: 10_000,
            version: 0,
        }],
        true,
    )
    .await
    .unwrap();
    let limits = IntakeChecks {
        limits: vec![PurchaseLimit {
            product_id: product,
            max_per_member: 2,
        }],
        ..IntakeChecks::default()
    };
    let members: Vec<MemberId> = (0..2500).map(|_| testkit::random_member_id()).collect();
    let purchases: Vec<Purchase> = members
        .iter()
        .map(|&member_id| Purchase {
            member_id,
            product_id: product,
            units: 2,
        })
        .collect();
    gate.set_purchases(product, &purchases).await.unwrap();
    let mut conn = target.raw().await;
    let bought = format!("{{{prefix}}}:gate:{product}:bought");
    let len: u64 = redis::cmd("HLEN")
        .arg(&bought)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 2500);
    let last = members[2499];
    assert_eq!(
        gate.admit(&testkit::command(last, &[(product, 1)]), &limits)
            .await
            .unwrap(),
        Admission::OverLimit {
            product_id: product
        }
    );
    // Released units never take a count below zero.
    gate.release(last, &testkit::command(last, &[(product, 5)]).items)
        .await
        .unwrap();
    let left: Option<i64> = redis::cmd("HGET")
        .arg(&bought)
        .arg(last.0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, None);
    // A new list replaces the old one whole.
    gate.set_purchases(product, &purchases[..1]).await.unwrap();
    let len: u64 = redis::cmd("HLEN")
        .arg(&bought)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 1);
    assert_eq!(
        gate.admit(&testkit::command(members[1], &[(product, 2)]), &limits)
            .await
            .unwrap(),
        Admission::Reserved
    );
    assert_eq!(
        gate.admit(&testkit::command(members[0], &[(product, 1)]), &limits)
            .await
            .unwrap(),
        Admission::OverLimit {
            product_id: product
        }
    );
}

pub async fn given_back_purchases_let_the_member_buy_again_and_never_go_below_zero(target: Target) {
    use oms_core::domain::PurchaseLimit;
    use oms_core::port::outbound::{Admission, GateLevel};
    let prefix = fresh_prefix("give-back");
    let store = on_prefix(&target.store().await, &prefix);
    let gate = store.stock_gate();
    let (a, b) = (testkit::random_product_id(), testkit::random_product_id());
    let level = |product_id| GateLevel {
        product_id,
        available: 100,
        version: 0,
    };
    gate.set_available(&[level(a), level(b)], true)
        .await
        .unwrap();
    let limits = IntakeChecks {
        limits: [a, b]
            .map(|product_id| PurchaseLimit {
                product_id,
                max_per_member: 2,
            })
            .to_vec(),
        ..IntakeChecks::default()
    };
    let (member, other) = (testkit::random_member_id(), testkit::random_member_id());
    let admit = |member, lines: &[_]| {
        let order = testkit::command(member, lines);
        let gate = gate.clone();
        let limits = limits.clone();
        async move { gate.admit(&order, &limits).await.unwrap() }
    };
    assert_eq!(admit(member, &[(a, 2), (b, 1)]).await, Admission::Reserved);
    assert_eq!(admit(other, &[(a, 2)]).await, Admission::Reserved);
    assert_eq!(
        admit(member, &[(a, 1)]).await,
        Admission::OverLimit { product_id: a }
    );

    // One unit of `a` back: the member may buy one again, and no more.
    gate.give_back_purchases(member, &[(a, 1)]).await.unwrap();
    assert_eq!(admit(member, &[(a, 1)]).await, Admission::Reserved);
    assert_eq!(
        admit(member, &[(a, 1)]).await,
        Admission::OverLimit { product_id: a }
    );
    // The counters are the releases' business: giving back purchases
    // leaves them as they are.
    assert_eq!(gate.available(a).await.unwrap(), Some(95));
    assert_eq!(gate.available(b).await.unwrap(), Some(99));

    // More than was bought, of both products at once: the counts end at 0
    // (the fields are removed), never below.
    gate.give_back_purchases(member, &[(a, 5), (b, 3)])
        .await
        .unwrap();
    let mut conn = target.raw().await;
    for product in [a, b] {
        let left: Option<i64> = redis::cmd("HGET")
            .arg(format!("{{{prefix}}}:gate:{product}:bought"))
            .arg(member.0)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(left, None, "product {product}");
    }
    assert_eq!(admit(member, &[(a, 2), (b, 2)]).await, Admission::Reserved);
    assert_eq!(
        admit(member, &[(a, 1)]).await,
        Admission::OverLimit { product_id: a }
    );
    assert_eq!(
        admit(member, &[(b, 1)]).await,
        Admission::OverLimit { product_id: b }
    );

    // Nothing to give back stays nothing; other members keep their counts.
    let stranger = testkit::random_member_id();
    gate.give_back_purchases(stranger, &[(a, 1)]).await.unwrap();
    gate.give_back_purchases(stranger, &[]).await.unwrap();
    let fields: u64 = redis::cmd("HLEN")
        .arg(format!("{{{prefix}}}:gate:{a}:bought"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, 2, "member and other");
    assert_eq!(
        admit(other, &[(a, 1)]).await,
        Admission::OverLimit { product_id: a }
    );
}

pub async fn a_rate_key_holds_its_tat_and_vanishes_when_idle(target: Target) {
    use oms_core::domain::Rate;
    let prefix = fresh_prefix("rate-key");
    let store = on_prefix(&target.store().await, &prefix);
    let rate = Rate {
        per_sec: 2,
        burst: 1,
    };
    store.rate_limiter().acquire("k", rate).await.unwrap();
    let mut conn = target.raw().await;
    let key = format!("{{{prefix}}}:rate:k");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // The TAT is one interval (500 ms) ahead; the key lives a margin more.
    assert!((1000..=1500).contains(&ttl), "{ttl}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !exists {
            break;
        }
        assert!(Instant::now() < deadline, "an idle key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
