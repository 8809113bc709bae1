use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, warn};

use crate::domain::{
    Caller, OmsError, OmsResult, Order, OrderId, OrderPage, OrderTrace, Orders, TraceId,
};
use crate::port::inbound::OrderQuery;
use crate::port::outbound::{OrderStore, TraceStore};

/// Reads traces and orders.
///
/// A trace is read from the trace store first; when it is missing (expired),
/// PROCESSING for longer than [`with_fresh_for`](Self::with_fresh_for)
/// (default 2 s), or the store does not answer, the database outcome decides
/// — so a final status stays readable long after any cache TTL, and a cache
/// that missed a final write is repaired on read. A PROCESSING trace younger
/// than that is answered from the cache alone: the consumer writes the final
/// trace right after its commit, so polling clients do not load the
/// database while a sale is on.
pub struct QueryService {
    store: Arc<dyn OrderStore>,
    traces: Arc<dyn TraceStore>,
    fresh_for: Duration,
}

impl QueryService {
    /// A service on these ports.
    pub fn new(store: Arc<dyn OrderStore>, traces: Arc<dyn TraceStore>) -> Self {
        Self {
            store,
            traces,
            fresh_for: Duration::from_secs(2),
        }
    }

    /// Replaces the age below which a PROCESSING trace is answered from the
    /// cache alone (`Duration::ZERO`: always ask the database).
    pub fn with_fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = fresh_for;
        self
    }

    async fn resolve(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        let cached = self.traces.get(trace_id).await;
        match cached {
            Ok(Some(trace)) if trace.state.is_final() => Ok(Some(trace)),
            Ok(Some(trace)) if trace_id.age().is_some_and(|age| age < self.fresh_for) => {
                Ok(Some(trace))
            }
            Ok(Some(trace)) => match self.store.outcome(trace_id).await {
                Ok(Some(done)) => {
                    if let Err(e) = self.traces.save(&done).await {
                        debug!(%trace_id, error = %e, "trace cache not repaired");
                    }
                    Ok(Some(done))
                }
                Ok(None) => Ok(Some(trace)),
                // The database is down: the trace is still being processed.
                Err(e) => {
                    debug!(%trace_id, error = %e, "outcome not readable; answering PROCESSING");
                    Ok(Some(trace))
                }
            },
            Ok(None) => self.store.outcome(trace_id).await,
            Err(cache_error) => match self.store.outcome(trace_id).await? {
                Some(done) => Ok(Some(done)),
                None => {
                    warn!(%trace_id, error = %cache_error, "trace store unavailable and no outcome yet");
                    Err(cache_error)
                }
            },
        }
    }
}

#[async_trait]
impl OrderQuery for QueryService {
    async fn trace(&self, caller: Caller, trace_id: TraceId) -> OmsResult<OrderTrace> {
        match self.resolve(trace_id).await? {
            Some(trace) if caller.can_read(trace.member_id) => Ok(trace),
            _ => Err(OmsError::TraceNotFound { trace_id }),
        }
    }

    async fn order(&self, caller: Caller, order_id: OrderId) -> OmsResult<Order> {
        match self.store.order(order_id).await? {
            Some(order) if caller.can_read(order.member_id) => Ok(order),
            _ => Err(OmsError::OrderNotFound { order_id }),
        }
    }

    async fn my_orders(&self, caller: Caller, page: OrderPage) -> OmsResult<Orders> {
        let orders = self.store.orders_of(caller.member_id, page.probe()).await?;
        Ok(Orders::of_probe(page, orders))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FailureReason, MemberId, TraceState};
    use crate::port::outbound::{MockOrderStore, MockTraceStore};

    fn failed(trace_id: TraceId, member: u64) -> OrderTrace {
        OrderTrace {
            trace_id,
            member_id: MemberId(member),
            state: TraceState::Failed {
                reason: FailureReason::OutOfStock,
            },
        }
    }

    #[tokio::test]
    async fn an_expired_final_trace_is_answered_by_the_database() {
        let id = TraceId::new();
        let mut traces = MockTraceStore::new();
        traces.expect_get().returning(|_| Ok(None));
        let mut store = MockOrderStore::new();
        store
            .expect_outcome()
            .returning(move |id| Ok(Some(failed(id, 5))));
        let q = QueryService::new(Arc::new(store), Arc::new(traces));
        assert_eq!(q.trace(Caller::user(5), id).await.unwrap(), failed(id, 5));
        // Another member sees nothing; an operator sees it.
        assert!(matches!(
            q.trace(Caller::user(6), id).await,
            Err(OmsError::TraceNotFound { .. })
        ));
        assert!(q.trace(Caller::admin(1), id).await.is_ok());
    }

    #[tokio::test]
    async fn a_stale_processing_trace_is_repaired_from_the_database() {
        // Made three seconds ago: older than the default two.
        let made = std::time::SystemTime::now() - Duration::from_secs(3);
        let since = made.duration_since(std::time::UNIX_EPOCH).unwrap();
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        let id = TraceId(uuid::Uuid::new_v7(ts));
        assert!(id.age().unwrap() >= Duration::from_secs(3));
        let mut traces = MockTraceStore::new();
        traces
            .expect_get()
            .returning(|id| Ok(Some(OrderTrace::processing(id, MemberId(5)))));
        traces
            .expect_save()
            .withf(|t| t.state.is_final())
            .times(1)
            .returning(|_| Ok(()));
        let mut store = MockOrderStore::new();
        store
            .expect_outcome()
            .returning(move |id| Ok(Some(failed(id, 5))));
        let q = QueryService::new(Arc::new(store), Arc::new(traces));
        assert!(q.trace(Caller::user(5), id).await.unwrap().state.is_final());
    }

    #[tokio::test]
    async fn a_down_database_still_answers_processing() {
        let id = TraceId::new();
        let mut traces = MockTraceStore::new();
        traces
            .expect_get()
            .returning(|id| Ok(Some(OrderTrace::processing(id, MemberId(5)))));
        let mut store = MockOrderStore::new();
        store
            .expect_outcome()
            .returning(|_| Err(OmsError::unavailable("mysql", "down")));
        let q = QueryService::new(Arc::new(store), Arc::new(traces)).with_fresh_for(Duration::ZERO);
        let t = q.trace(Caller::user(5), id).await.unwrap();
        assert_eq!(t.state, TraceState::Processing);
    }

    #[tokio::test]
    async fn a_young_processing_trace_is_answered_without_the_database() {
        let id = TraceId::new();
        let mut traces = MockTraceStore::new();
        traces
            .expect_get()
            .returning(|id| Ok(Some(OrderTrace::processing(id, MemberId(5)))));
        let store = MockOrderStore::new(); // no call expected
        let q = QueryService::new(Arc::new(store), Arc::new(traces))
            .with_fresh_for(Duration::from_secs(3600));
        let t = q.trace(Caller::user(5), id).await.unwrap();
        assert_eq!(t.state, TraceState::Processing);
    }

    #[tokio::test]
    async fn a_down_trace_store_still_answers_final_statuses() {
        let id = TraceId::new();
        let mut traces = MockTraceStore::new();
        traces
            .expect_get()
            .returning(|_| Err(OmsError::unavailable("redis", "down")));
        let mut store = MockOrderStore::new();
        store
            .expect_outcome()
            .returning(move |id| Ok(Some(failed(id, 5))));
        let q = QueryService::new(Arc::new(store), Arc::new(traces));
        assert!(q.trace(Caller::user(5), id).await.is_ok());
    }
}
