use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::domain::{MemberId, OmsResult, OrderTrace, TraceId};
use crate::port::outbound::{HealthCheck, TraceStore};

/// A [`TraceStore`] in a map. Nothing expires.
#[derive(Debug, Default)]
pub struct InMemoryTraceStore {
    traces: Mutex<HashMap<TraceId, OrderTrace>>,
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
        lock(&self.traces).insert(trace.trace_id, *trace);
        Ok(())
    }

    async fn save_all(&self, traces: &[OrderTrace]) -> OmsResult<()> {
        let mut map = lock(&self.traces);
        for t in traces {
            map.insert(t.trace_id, *t);
        }
        Ok(())
    }

    async fn get(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        Ok(lock(&self.traces).get(&trace_id).copied())
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
