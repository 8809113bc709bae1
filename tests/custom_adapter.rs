//! The trace store of `examples/custom_adapter` against oms's conformance
//! suite for its port, and a store that breaks the contract against the
//! same suite, which must fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/custom_adapter/store.rs"]
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oms::domain::{MemberId, OmsResult, OrderTrace, TraceId};
use oms::port::outbound::TraceStore;
use oms_core::testkit::trace_store;
use store::MapTraceStore;

#[tokio::test]
async fn the_example_store_passes_the_trace_store_suite() {
    let store = MapTraceStore::new(Duration::from_secs(3600));
    trace_store::run(&store).await;
}

/// The example's store with one defect: idempotency keys are never
/// released.
struct KeysNeverReleased(MapTraceStore);

#[async_trait]
impl TraceStore for KeysNeverReleased {
    async fn save(&self, trace: &OrderTrace) -> OmsResult<()> {
        self.0.save(trace).await
    }
    async fn save_all(&self, traces: &[OrderTrace]) -> OmsResult<()> {
        self.0.save_all(traces).await
    }
    async fn get(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        self.0.get(trace_id).await
    }
    async fn remove(&self, trace_id: TraceId) -> OmsResult<()> {
        self.0.remove(trace_id).await
    }
    async fn claim_key(
        &self,
        member_id: MemberId,
        key: &str,
        trace_id: TraceId,
    ) -> OmsResult<Option<TraceId>> {
        self.0.claim_key(member_id, key, trace_id).await
    }
    async fn release_key(&self, _member_id: MemberId, _key: &str) -> OmsResult<()> {
        Ok(())
    }
    async fn stale_processing(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        self.0.stale_processing(older_than, limit).await
    }
}

#[tokio::test]
async fn a_store_that_breaks_the_contract_fails_the_suite() {
    let broken = Arc::new(KeysNeverReleased(MapTraceStore::new(Duration::from_secs(
        3600,
    ))));
    // On a task of its own: the suite's panic is the failure looked for.
    let outcome = tokio::spawn(async move { trace_store::run(&*broken).await }).await;
    let failure = outcome.expect_err("a store that never releases keys must fail the suite");
    assert!(failure.is_panic(), "{failure}");
}

#[tokio::test]
async fn expired_traces_are_gone() {
    let store = MapTraceStore::new(Duration::ZERO);
    let trace = OrderTrace::processing(TraceId::new(), MemberId(1));
    store.save(&trace).await.unwrap();
    assert_eq!(store.get(trace.trace_id).await.unwrap(), None);
    assert!(store
        .stale_processing(Duration::ZERO, 10)
        .await
        .unwrap()
        .is_empty());
}
