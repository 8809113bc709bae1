use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::lock;
use crate::domain::{MemberId, OmsResult, OrderTrace, TraceId};
use crate::port::outbound::{HealthCheck, TraceStore};

/// A [`TraceStore`] in a map. Nothing expires.
#[derive(Debug, Default)]
pub struct InMemoryTraceStore {
    traces: Mutex<HashMap<TraceId, (OrderTrace, Instant)>>,
    keys: Mutex<HashMap<(MemberId, String), TraceId>>,
}

impl InMemoryTraceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many traces it holds.
    pub fn len(&self) -> usize {
        lock(&self.traces).len()
    }

    /// Whether it holds no trace.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl TraceStore for InMemoryTraceStore {
    async fn save(&self, trace: &OrderTrace) -> OmsResult<()> {
        lock(&self.traces).insert(trace.trace_id, (*trace, Instant::now()));
        Ok(())
    }

    async fn save_all(&self, traces: &[OrderTrace]) -> OmsResult<()> {
        let mut map = lock(&self.traces);
        let now = Instant::now();
        for t in traces {
            map.insert(t.trace_id, (*t, now));
        }
        Ok(())
    }

    async fn get(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        Ok(lock(&self.traces).get(&trace_id).map(|(t, _)| *t))
    }

    async fn remove(&self, trace_id: TraceId) -> OmsResult<()> {
        lock(&self.traces).remove(&trace_id);
        Ok(())
    }

    async fn claim_key(
        &self,
        member_id: MemberId,
        key: &str,
        trace_id: TraceId,
    ) -> OmsResult<Option<TraceId>> {
        let mut keys = lock(&self.keys);
        match keys.get(&(member_id, key.to_owned())) {
            Some(existing) => Ok(Some(*existing)),
            None => {
                keys.insert((member_id, key.to_owned()), trace_id);
                Ok(None)
            }
        }
    }

    async fn release_key(&self, member_id: MemberId, key: &str) -> OmsResult<()> {
        lock(&self.keys).remove(&(member_id, key.to_owned()));
        Ok(())
    }

    async fn stale_processing(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        let now = Instant::now();
        let mut stale: Vec<(Instant, OrderTrace)> = lock(&self.traces)
            .values()
            .filter(|(t, at)| !t.state.is_final() && now.duration_since(*at) >= older_than)
            .map(|(t, at)| (*at, *t))
            .collect();
        stale.sort_by_key(|(at, _)| *at);
        Ok(stale.into_iter().take(limit).map(|(_, t)| t).collect())
    }
}

#[async_trait]
impl HealthCheck for InMemoryTraceStore {
    fn name(&self) -> &'static str {
        "trace-store"
    }

    async fn check(&self) -> OmsResult<()> {
        Ok(())
    }
}
