use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use tracing::{debug, warn};

use crate::domain::{FailureReason, OmsError, OmsResult, OrderCommand, Placement, TraceState};
use crate::port::inbound::OrderUseCase;
use crate::port::outbound::{DeadLetter, OrderRequestPublisher, OrderStore, StockGate, TraceStore};

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
        }
    }

    /// Gives back the gate's units of orders that fail for a reason other
    /// than stock (see the type's docs).
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
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
            if let Err(e) = gate.release(&command.items).await {
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

#[async_trait]
impl OrderUseCase for OrderService {
    async fn process(&self, batch: Vec<OrderCommand>) -> OmsResult<Vec<Placement>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let placements = (|| async { self.store.place_batch(&batch).await })
            .retry(self.retry.backoff())
            .when(|e| matches!(e, OmsError::Conflict(_)))
            .notify(
                |e, after| debug!(error = %e, ?after, "batch lost its optimistic lock; retrying"),
            )
            .await?;

        // Replays are cached again too: a crash may have come between the
        // commit and the cache write.
        let finals: Vec<_> = placements.iter().map(|p| p.trace).collect();
        if let Err(e) = self.traces.save_all(&finals).await {
            warn!(error = %e, count = finals.len(), "final traces not cached; the database answers for them");
        }
        let mut dead_lettered = Vec::new();
        for (command, placement) in batch.iter().zip(&placements) {
            if !placement.needs_dead_letter {
                continue;
            }
            if let TraceState::Failed { reason } = placement.trace.state {
                let letter = DeadLetter::for_command(command, reason)?;
                (|| async { self.publisher.send_to_dlq(&letter).await })
                    .retry(self.retry.backoff())
                    .when(OmsError::is_retryable)
                    .await?;
                dead_lettered.push(command.trace_id);
            }
        }
        if !dead_lettered.is_empty() {
            if let Err(e) = self.store.mark_dead_lettered(&dead_lettered).await {
                warn!(error = %e, "DLQ records sent but not confirmed; a redelivery sends them again");
            }
        }
        self.release_failed(&batch, &placements).await;
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
}
