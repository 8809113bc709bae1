//! A [`TraceStore`] of the user's own: traces and idempotency keys in a
//! `Mutex<HashMap>`, each trace forgotten a time-to-live after it was
//! last written, as a cache with expiring keys would.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oms::domain::{MemberId, OmsResult, OrderTrace, TraceId, TraceState};
use oms::port::outbound::TraceStore;

/// Traces and idempotency keys in one process, behind one lock.
#[derive(Debug)]
pub struct MapTraceStore {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each trace with the instant it was last written.
    traces: HashMap<TraceId, (OrderTrace, Instant)>,
    /// The trace that holds each member's idempotency key.
    keys: HashMap<(MemberId, String), TraceId>,
}

impl MapTraceStore {
    /// An empty store whose traces live `ttl` after their last write.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::default(),
        }
    }

    /// The maps; a writer that panicked left them whole (every write is a
    /// single insert or remove), so a poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TraceStore for MapTraceStore {
    async fn save(&self, trace: &OrderTrace) -> OmsResult<()> {
        self.lock()
            .traces
            .insert(trace.trace_id, (*trace, Instant::now()));
        Ok(())
    }

    async fn save_all(&self, traces: &[OrderTrace]) -> OmsResult<()> {
        let now = Instant::now();
        let mut inner = self.lock();
        for trace in traces {
            inner.traces.insert(trace.trace_id, (*trace, now));
        }
        Ok(())
    }

    async fn get(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        let mut inner = self.lock();
        match inner.traces.get(&trace_id) {
            Some((trace, written)) if written.elapsed() < self.ttl => Ok(Some(*trace)),
            Some(_) => {
                inner.traces.remove(&trace_id); // expired
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn remove(&self, trace_id: TraceId) -> OmsResult<()> {
        self.lock().traces.remove(&trace_id);
        Ok(())
    }

    async fn claim_key(
        &self,
        member_id: MemberId,
        key: &str,
        trace_id: TraceId,
    ) -> OmsResult<Option<TraceId>> {
        let mut inner = self.lock();
        let holder = inner
            .keys
            .entry((member_id, key.to_owned()))
            .or_insert(trace_id);
        Ok((*holder != trace_id).then_some(*holder))
    }

    async fn release_key(&self, member_id: MemberId, key: &str) -> OmsResult<()> {
        self.lock().keys.remove(&(member_id, key.to_owned()));
        Ok(())
    }

    async fn stale_processing(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        let inner = self.lock();
        let mut stale: Vec<_> = inner
            .traces
            .values()
            .filter(|(trace, written)| {
                trace.state == TraceState::Processing
                    && written.elapsed() >= older_than
                    && written.elapsed() < self.ttl
            })
            .map(|(trace, written)| (*written, *trace))
            .collect();
        stale.sort_by_key(|(written, _)| *written); // oldest first
        Ok(stale
            .into_iter()
            .take(limit)
            .map(|(_, trace)| trace)
            .collect())
    }
}
