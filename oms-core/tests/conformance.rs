//! The in-memory adapters pass the conformance suites.
#![cfg(feature = "testkit")]

use std::sync::Arc;
use std::time::Duration;

use oms_core::memory::{
    InMemoryAttemptCounter, InMemoryMemberStore, InMemoryRateLimiter, InMemorySessionStore,
    InMemoryStockGate, InMemoryStore, InMemoryTraceStore, InMemoryWaitingRoom, RevocationMirror,
};
use oms_core::testkit;

#[tokio::test]
async fn in_memory_trace_store_conforms() {
    testkit::trace_store::run(&InMemoryTraceStore::new()).await;
}

#[tokio::test]
async fn in_memory_product_store_conforms() {
    testkit::product_store::run(&InMemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_order_store_conforms() {
    let store = Arc::new(InMemoryStore::new());
    testkit::order_store::run(store.clone(), store).await;
}

#[tokio::test]
async fn in_memory_stock_gate_conforms() {
    let traces = Arc::new(InMemoryTraceStore::new());
    let redeliver = std::time::Duration::from_millis(300);
    let gate = InMemoryStockGate::new(traces.clone()).with_redeliver_after(redeliver);
    testkit::stock_gate::run(&gate, traces.as_ref(), redeliver).await;
}

#[tokio::test]
async fn in_memory_stock_gate_checks_the_front_door() {
    let traces = Arc::new(InMemoryTraceStore::new());
    let room = Arc::new(InMemoryWaitingRoom::new(
        oms_core::domain::RoomPolicy::default(),
    ));
    let gate = InMemoryStockGate::new(traces.clone()).with_waiting_room(room.clone());
    testkit::stock_gate::front_door_checks_come_first(&gate, traces.as_ref(), room.as_ref()).await;
}

#[tokio::test]
async fn in_memory_member_store_conforms() {
    testkit::member_store::run(&InMemoryMemberStore::new()).await;
}

#[tokio::test]
async fn in_memory_session_store_conforms() {
    testkit::session_store::run(&InMemorySessionStore::new()).await;
}

#[tokio::test]
async fn a_revocation_mirror_conforms() {
    // Syncing before every check, and syncing rarely (its own revocations
    // and replays still count at once).
    for interval in [Duration::ZERO, Duration::from_secs(3600)] {
        let mirror =
            RevocationMirror::new(Arc::new(InMemorySessionStore::new())).with_interval(interval);
        testkit::session_store::run(&mirror).await;
    }
}

#[tokio::test]
async fn in_memory_attempt_counter_conforms() {
    testkit::session_store::run_attempts(&InMemoryAttemptCounter::new()).await;
}

#[tokio::test]
async fn in_memory_waiting_room_conforms() {
    testkit::waiting_room::run(|policy| Arc::new(InMemoryWaitingRoom::new(policy))).await;
}

#[tokio::test]
async fn in_memory_rate_limiter_conforms() {
    testkit::rate_limiter::run(&InMemoryRateLimiter::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_lifecycle_store_conforms() {
    let timeout = Duration::from_secs(30);
    let store = Arc::new(InMemoryStore::new().with_payment_timeout(timeout));
    let stores = testkit::lifecycle_store::Stores {
        orders: store.clone(),
        products: store.clone(),
        lifecycle: store,
    };
    testkit::lifecycle_store::run(&stores, timeout).await;
}

#[tokio::test]
async fn in_memory_order_admin_store_conforms() {
    let stores = testkit::order_admin_store::Stores::of(Arc::new(InMemoryStore::new()));
    testkit::order_admin_store::run(&stores).await;
}

#[tokio::test]
async fn in_memory_payment_gateway_conforms() {
    testkit::payment_gateway::run(&oms_core::memory::InMemoryPaymentGateway::new()).await;
}
