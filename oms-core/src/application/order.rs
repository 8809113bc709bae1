use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::future::BoxFuture;
use tracing::{debug, error, warn};

use crate::domain::{FailureReason, OmsError, OmsResult, OrderCommand, Placement, TraceState};
use crate::port::inbound::OrderUseCase;
use crate::port::outbound::{
    DeadLetter, OrderRequestPublisher, OrderStore, StockGate, TraceStore, WaitingRoom,
};

/// How the order service retries a lost optimistic lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(200),
            max_retries: 20,
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
    }
}

/// Processes order commands: places each batch through the [`OrderStore`]
/// (retrying lost optimistic locks with backoff, so a conflict never turns
/// into a failed order while stock remains), writes the final traces, and
/// sends new failures to the DLQ with their reason.
///
/// The database outcome is the record: a trace store that does not answer is
/// logged and skipped (queries fall back to the database), while a DLQ that
/// does not answer is an error, so the batch is not acknowledged.
///
/// With a [`StockGate`] ([`with_gate`](Self::with_gate)), the units the
/// gate reserved for an order that fails for a reason other than stock are
/// given back. (An order that fails `OUT_OF_STOCK` here passed a gate that
/// counted too many units; its units are not given back, and the gate is
/// reconciled from the database.)
pub struct OrderService {
    store: Arc<dyn OrderStore>,
    traces: Arc<dyn TraceStore>,
    publisher: Arc<dyn OrderRequestPublisher>,
    retry: RetryPolicy,
    gate: Option<Arc<dyn StockGate>>,
    room: Option<Arc<dyn WaitingRoom>>,
}

impl OrderService {
    /// A service on these ports with the default [`RetryPolicy`].
    pub fn new(
        store: Arc<dyn OrderStore>,
        traces: Arc<dyn TraceStore>,
        publisher: Arc<dyn OrderRequestPublisher>,
    ) -> Self {
        Self {
            store,
            traces,
            publisher,
            retry: RetryPolicy::default(),
            gate: None,
            room: None,
        }
    }

    /// Gives back the gate's units of orders that fail for a reason other
    /// than stock (see the type's docs).
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Ends the waiting-room admissions of members whose orders this
    /// service finalises (their slots go to the next in line).
    pub fn with_waiting_room(mut self, room: Arc<dyn WaitingRoom>) -> Self {
        self.room = Some(room);
        self
    }

    async fn end_admissions(&self, placements: &[Placement]) {
        let Some(room) = &self.room else {
            return;
        };
        let mut members: Vec<_> = placements
            .iter()
            .filter(|p| !p.replayed)
            .map(|p| p.trace.member_id)
            .collect();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            return;
        }
        if let Err(e) = room.release(&members).await {
            warn!(error = %e, count = members.len(), "admissions not ended; they run out by their TTL");
        }
    }

    async fn release_failed(&self, batch: &[OrderCommand], placements: &[Placement]) {
        let Some(gate) = &self.gate else {
            return;
        };
        for (command, placement) in batch.iter().zip(placements) {
            let TraceState::Failed { reason } = placement.trace.state else {
                continue;
            };
            if placement.replayed || reason == FailureReason::OutOfStock {
                continue;
            }
            if let Err(e) = gate.release(command.member_id, &command.items).await {
                warn!(trace_id = %command.trace_id, error = %e, "units of a failed order not given back; the gate is reconciled later");
            }
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

impl OrderService {
    /// Places a batch, retrying lost optimistic locks.
    async fn place_once(&self, batch: &[OrderCommand]) -> OmsResult<Vec<Placement>> {
        (|| async { self.store.place_batch(batch).await })
            .retry(self.retry.backoff())
            .when(|e| matches!(e, OmsError::Conflict(_)))
            .notify(|e, after| {
                metrics::counter!(crate::observe::names::LOCK_RETRIES).increment(1);
                debug!(error = %e, ?after, "batch lost its optimistic lock; retrying");
            })
            .await
    }

    /// Places a batch; when the store refuses it for a reason no retry can
    /// change, splits it in halves until the commands at fault are alone,
    /// fails each of those [`FailureReason::Unprocessable`] and places the
    /// rest. Retryable errors are returned as they are (the whole batch is
    /// tried again).
    fn place<'a>(&'a self, batch: &'a [OrderCommand]) -> BoxFuture<'a, OmsResult<Vec<Placement>>> {
        Box::pin(async move {
            match self.place_once(batch).await {
                Err(e) if !e.is_retryable() && batch.len() > 1 => {
                    warn!(error = %e, size = batch.len(), "batch refused; splitting it to isolate the order at fault");
                    let (left, right) = batch.split_at(batch.len() / 2);
                    let mut placed = self.place(left).await?;
                    placed.extend(self.place(right).await?);
                    Ok(placed)
                }
                Err(e) if !e.is_retryable() => {
                    let Some(command) = batch.first() else {
                        return Ok(Vec::new());
                    };
                    error!(trace_id = %command.trace_id, error = %e, "order cannot be placed; failed UNPROCESSABLE");
                    let failed = crate::domain::OrderTrace {
                        trace_id: command.trace_id,
                        member_id: command.member_id,
                        state: TraceState::Failed {
                            reason: FailureReason::Unprocessable,
                        },
                    };
                    Ok(vec![self.store.settle_failure(&failed, true).await?])
                }
                other => other,
            }
        })
    }

    /// Sends the DLQ records the placements need and confirms each one that
    /// was sent, even when a later one fails (so a retry of the batch sends
    /// only what is still unconfirmed).
    async fn dead_letter(&self, batch: &[OrderCommand], placements: &[Placement]) -> OmsResult<()> {
        let mut sent = Vec::new();
        let mut failure = None;
        for (command, placement) in batch.iter().zip(placements) {
            if !placement.needs_dead_letter {
                continue;
            }
            let TraceState::Failed { reason } = placement.trace.state else {
                continue;
            };
            let letter = DeadLetter::for_command(command, reason)?;
            let result = (|| async { self.publisher.send_to_dlq(&letter).await })
                .retry(self.retry.backoff())
                .when(OmsError::is_retryable)
                .await;
            match result {
                Ok(()) => sent.push(command.trace_id),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !sent.is_empty() {
            if let Err(e) = self.store.mark_dead_lettered(&sent).await {
                warn!(error = %e, "DLQ records sent but not confirmed; the outbox relay sends them again");
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl OrderUseCase for OrderService {
    async fn process(&self, batch: Vec<OrderCommand>) -> OmsResult<Vec<Placement>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let placements = self.place(&batch).await?;

        // Replays are cached again too: a crash may have come between the
        // commit and the cache write.
        let finals: Vec<_> = placements.iter().map(|p| p.trace).collect();
        if let Err(e) = self.traces.save_all(&finals).await {
            warn!(error = %e, count = finals.len(), "final traces not cached; the database answers for them");
        }
        self.dead_letter(&batch, &placements).await?;
        self.release_failed(&batch, &placements).await;
        self.end_admissions(&placements).await;
        Ok(placements)
    }

    async fn reject(&self, letter: DeadLetter) -> OmsResult<()> {
        warn!(reason = %letter.reason, bytes = letter.payload.len(), "record sent to the DLQ");
        self.publisher.send_to_dlq(&letter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        FailureReason, MemberId, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo,
        TraceId,
    };
    use crate::memory::{InMemoryOrderQueue, InMemoryStore, InMemoryTraceStore};
    use crate::port::outbound::{MockOrderStore, ProductStore};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn command(member: u64, lines: &[(u64, u32)]) -> OrderCommand {
        OrderCommand::new(
            TraceId::new(),
            MemberId(member),
            OrderRequest {
                items: lines
                    .iter()
                    .map(|&(p, q)| OrderLine {
                        product_id: ProductId(p),
                        quantity: q,
                    })
                    .collect(),
                receiver_info: ReceiverInfo {
                    name: "Kim".into(),
                    phone: "010".into(),
                    address: "Seoul".into(),
                },
            },
        )
    }

    async fn store_with(stock: i64) -> Arc<InMemoryStore> {
        let store = Arc::new(InMemoryStore::new());
        store
            .create(
                &ProductDraft {
                    name: "A".into(),
                    price: 100,
                    stock,
                    rules: Default::default(),
                }
                .into_product(ProductId(1)),
            )
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn conflicts_are_retried_not_failed() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let mut mock = MockOrderStore::new();
        let counter = attempts.clone();
        mock.expect_place_batch().returning(move |batch| {
            if counter.fetch_add(1, Ordering::SeqCst) < 3 {
                return Err(OmsError::Conflict("version moved".into()));
            }
            Ok(batch
                .iter()
                .map(|c| Placement {
                    trace: crate::domain::OrderTrace {
                        trace_id: c.trace_id,
                        member_id: c.member_id,
                        state: TraceState::Completed {
                            order_id: crate::domain::OrderId(1),
                        },
                    },
                    replayed: false,
                    needs_dead_letter: false,
                })
                .collect())
        });
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let service = OrderService::new(
            Arc::new(mock),
            Arc::new(InMemoryTraceStore::new()),
            queue.clone(),
        );
        let out = service.process(vec![command(1, &[(1, 1)])]).await.unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        assert!(matches!(out[0].trace.state, TraceState::Completed { .. }));
        assert!(queue.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn out_of_stock_and_unknown_products_fail_to_the_dlq_once() {
        let store = store_with(1).await;
        let traces = Arc::new(InMemoryTraceStore::new());
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let service = OrderService::new(store.clone(), traces.clone(), queue.clone());
        let a = command(1, &[(1, 1)]);
        let b = command(2, &[(1, 1)]);
        let c = command(3, &[(42, 1)]);
        let out = service
            .process(vec![a.clone(), b.clone(), c.clone()])
            .await
            .unwrap();
        assert!(matches!(out[0].trace.state, TraceState::Completed { .. }));
        assert_eq!(
            out[1].trace.state,
            TraceState::Failed {
                reason: FailureReason::OutOfStock
            }
        );
        assert_eq!(
            out[2].trace.state,
            TraceState::Failed {
                reason: FailureReason::ProductNotFound
            }
        );
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[0].reason, FailureReason::OutOfStock);
        assert_eq!(letters[0].trace_id, Some(b.trace_id));

        // Redelivery: same outcomes, nothing new.
        let again = service.process(vec![a.clone(), b, c]).await.unwrap();
        assert!(again.iter().all(|p| p.replayed));
        assert_eq!(again[0].trace, out[0].trace);
        assert_eq!(queue.dead_letters().len(), 2);
        assert_eq!(store.get(ProductId(1)).await.unwrap().unwrap().stock, 0);
        let cached = traces.get(a.trace_id).await.unwrap().unwrap();
        assert_eq!(cached, out[0].trace);
    }

    #[tokio::test]
    async fn an_unavailable_store_is_an_error_not_a_failed_order() {
        let mut mock = MockOrderStore::new();
        mock.expect_place_batch()
            .returning(|_| Err(OmsError::unavailable("mysql", "down")));
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let service = OrderService::new(
            Arc::new(mock),
            Arc::new(InMemoryTraceStore::new()),
            queue.clone(),
        );
        let r = service.process(vec![command(1, &[(1, 1)])]).await;
        assert!(matches!(r, Err(OmsError::Unavailable { .. })));
        assert!(queue.dead_letters().is_empty());
    }

    /// A store that refuses, for good, any batch that holds `bad`.
    struct Refusing {
        inner: Arc<InMemoryStore>,
        bad: TraceId,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl OrderStore for Refusing {
        async fn place_batch(&self, commands: &[OrderCommand]) -> OmsResult<Vec<Placement>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if commands.iter().any(|c| c.trace_id == self.bad) {
                return Err(OmsError::Internal("row too long".into()));
            }
            self.inner.place_batch(commands).await
        }
        async fn settle_failure(
            &self,
            trace: &crate::domain::OrderTrace,
            dead_letter: bool,
        ) -> OmsResult<Placement> {
            self.inner.settle_failure(trace, dead_letter).await
        }
        async fn mark_dead_lettered(&self, ids: &[TraceId]) -> OmsResult<()> {
            self.inner.mark_dead_lettered(ids).await
        }
        async fn outcome(&self, id: TraceId) -> OmsResult<Option<crate::domain::OrderTrace>> {
            self.inner.outcome(id).await
        }
        async fn order(
            &self,
            id: crate::domain::OrderId,
        ) -> OmsResult<Option<crate::domain::Order>> {
            self.inner.order(id).await
        }
        async fn orders_of(
            &self,
            m: MemberId,
            page: crate::domain::OrderPage,
        ) -> OmsResult<Vec<crate::domain::Order>> {
            self.inner.orders_of(m, page).await
        }
        async fn trace_for_key(&self, m: MemberId, key: &str) -> OmsResult<Option<TraceId>> {
            self.inner.trace_for_key(m, key).await
        }
        async fn undead_lettered(
            &self,
            older_than: Duration,
            limit: usize,
        ) -> OmsResult<Vec<crate::domain::OrderTrace>> {
            self.inner.undead_lettered(older_than, limit).await
        }
    }

    #[tokio::test]
    async fn a_bad_order_is_isolated_and_the_rest_of_its_batch_is_placed() {
        let inner = store_with(100).await;
        let batch: Vec<_> = (0..9).map(|m| command(m + 1, &[(1, 1)])).collect();
        let store = Arc::new(Refusing {
            inner: inner.clone(),
            bad: batch[5].trace_id,
            calls: AtomicUsize::new(0),
        });
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let service = OrderService::new(
            store.clone(),
            Arc::new(InMemoryTraceStore::new()),
            queue.clone(),
        );
        let out = service.process(batch.clone()).await.unwrap();
        assert_eq!(out.len(), 9);
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.trace.trace_id, batch[i].trace_id, "input order kept");
            if i == 5 {
                assert_eq!(
                    p.trace.state,
                    TraceState::Failed {
                        reason: FailureReason::Unprocessable
                    }
                );
            } else {
                assert!(matches!(p.trace.state, TraceState::Completed { .. }));
            }
        }
        assert_eq!(inner.get(ProductId(1)).await.unwrap().unwrap().stock, 92);
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].trace_id, Some(batch[5].trace_id));
        assert_eq!(letters[0].reason, FailureReason::Unprocessable);
        assert!(
            store.calls.load(Ordering::SeqCst) <= 2 * 9,
            "splits, not one call per order twice over"
        );
        // The outcome is durable: a redelivery replays it.
        let again = service.process(vec![batch[5].clone()]).await.unwrap();
        assert!(again[0].replayed);
    }

    #[tokio::test]
    async fn dlq_records_sent_before_a_failure_are_confirmed() {
        let store = store_with(0).await;
        let sent = Arc::new(AtomicUsize::new(0));
        let mut publisher = crate::port::outbound::MockOrderRequestPublisher::new();
        let count = sent.clone();
        publisher.expect_send_to_dlq().returning(move |_| {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(())
            } else {
                Err(OmsError::Internal("dlq refused".into()))
            }
        });
        let service = OrderService::new(
            store.clone(),
            Arc::new(InMemoryTraceStore::new()),
            Arc::new(publisher),
        );
        let (a, b) = (command(1, &[(1, 1)]), command(2, &[(1, 1)]));
        assert!(service.process(vec![a.clone(), b.clone()]).await.is_err());
        let due = store.undead_lettered(Duration::ZERO, 10).await.unwrap();
        let due: Vec<_> = due.iter().map(|t| t.trace_id).collect();
        assert_eq!(
            due,
            vec![b.trace_id],
            "the first record is confirmed, the second is not"
        );
    }
}
