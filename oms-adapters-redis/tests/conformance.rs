//! The Redis trace store against a real Redis (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use oms_adapters_redis::{RedisTraceOptions, RedisTraceStore};
use oms_core::domain::{MemberId, OrderTrace, TraceId};
use oms_core::port::outbound::{HealthCheck, StockGate, TraceStore};
use oms_core::testkit;

async fn store() -> RedisTraceStore {
    let url = std::env::var("OMS_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "OMS_REDIS_URL is not set: run `scripts/services.sh up && source target/services.env`"
        )
    });
    RedisTraceStore::connect(&url).await.unwrap()
}

#[tokio::test]
async fn redis_trace_store_conforms() {
    testkit::trace_store::run(&store().await).await;
}

#[tokio::test]
async fn redis_session_store_conforms() {
    testkit::session_store::run(&store().await.session_store()).await;
}

#[tokio::test]
async fn a_revocation_mirror_of_redis_conforms() {
    use std::sync::Arc;
    for interval in [Duration::ZERO, Duration::from_secs(3600)] {
        let mirror =
            oms_core::memory::RevocationMirror::new(Arc::new(store().await.session_store()))
                .with_interval(interval);
        testkit::session_store::run(&mirror).await;
    }
}

#[tokio::test]
async fn two_mirrors_of_one_redis_see_each_others_revocations() {
    use oms_core::domain::{SessionId, TokenId};
    use oms_core::memory::RevocationMirror;
    use oms_core::port::outbound::SessionStore;
    use std::sync::Arc;
    // A keyspace of its own, so the copies start empty.
    let sessions = store()
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

#[tokio::test]
async fn redis_attempt_counter_conforms() {
    testkit::session_store::run_attempts(&store().await.attempt_counter()).await;
}

#[tokio::test]
async fn a_family_and_a_revocation_are_one_key_each_with_their_ttl() {
    use oms_core::domain::{SessionId, TokenId};
    use oms_core::port::outbound::SessionStore;
    let prefix = format!("oms-sess-{}", TraceId::new());
    let sessions = store()
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
    let url = std::env::var("OMS_REDIS_URL").unwrap();
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let family: String = redis::cmd("GET")
        .arg(format!("{prefix}:sess:{sid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(family, live.to_string());
    let family_ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:sess:{sid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((3590..=3600).contains(&family_ttl), "{family_ttl}");
    let token_ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:jti:{jti}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (50..=60).contains(&token_ttl),
        "a revocation lives as long as its token: {token_ttl}"
    );
}

#[tokio::test]
async fn traces_expire_with_their_ttl() {
    let store = store().await.with_options(RedisTraceOptions {
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

#[tokio::test]
async fn health_check_pings() {
    store().await.check().await.unwrap();
}

#[tokio::test]
async fn redis_stock_gate_conforms() {
    // A keyspace of its own: the journal is shared by everything on a prefix.
    let store = store().await.with_options(RedisTraceOptions {
        prefix: format!("oms-gate-{}", TraceId::new()),
        ..RedisTraceOptions::default()
    });
    let redeliver = Duration::from_millis(300);
    let gate = store.stock_gate().with_redeliver_after(redeliver);
    testkit::stock_gate::run(&gate, &store, redeliver).await;
}

#[tokio::test]
async fn a_refused_trace_outlives_the_final_ttl_until_it_is_settled() {
    let prefix = format!("oms-refused-ttl-{}", TraceId::new());
    let store = store().await.with_options(RedisTraceOptions {
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
        gate.admit(&order).await.unwrap(),
        oms_core::port::outbound::Admission::Refused { .. }
    ));
    let url = std::env::var("OMS_REDIS_URL").unwrap();
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}:trace:{}", order.trace_id);
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
