use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::lock;
use crate::domain::{OmsError, OmsResult, OrderCommand, OrderEvent};
use crate::port::inbound::OrderUseCase;
use crate::port::outbound::{
    DeadLetter, HealthCheck, OrderBacklog, OrderEventPublisher, OrderRequestPublisher,
};

/// Most commands one in-memory poll hands to the use case.
const BATCH: usize = 512;

/// An in-process order queue: the publisher half. Dead letters and order
/// events are kept in memory and can be read back with
/// [`dead_letters`](Self::dead_letters) and [`events`](Self::events).
#[derive(Debug)]
pub struct InMemoryOrderQueue {
    tx: mpsc::UnboundedSender<OrderCommand>,
    dead: Mutex<Vec<DeadLetter>>,
    events: Mutex<Vec<OrderEvent>>,
    pending: Arc<AtomicU64>,
}

/// The consuming half of an [`InMemoryOrderQueue`].
#[derive(Debug)]
pub struct OrderQueueReceiver {
    rx: mpsc::UnboundedReceiver<OrderCommand>,
    pending: Arc<AtomicU64>,
}

impl InMemoryOrderQueue {
    /// A queue and its receiver.
    pub fn new() -> (Self, OrderQueueReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicU64::new(0));
        (
            Self {
                tx,
                dead: Mutex::new(Vec::new()),
                events: Mutex::new(Vec::new()),
                pending: pending.clone(),
            },
            OrderQueueReceiver { rx, pending },
        )
    }

    /// The dead letters sent so far, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead).clone()
    }

    /// The order events published so far, in order.
    pub fn events(&self) -> Vec<OrderEvent> {
        lock(&self.events).clone()
    }
}

#[async_trait]
impl OrderEventPublisher for InMemoryOrderQueue {
    async fn publish(&self, events: &[OrderEvent]) -> OmsResult<()> {
        lock(&self.events).extend_from_slice(events);
        Ok(())
    }
}

#[async_trait]
impl OrderRequestPublisher for InMemoryOrderQueue {
    async fn send(&self, command: &OrderCommand) -> OmsResult<()> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.tx.send(command.clone()).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            OmsError::unavailable("order queue", "the consumer has stopped")
        })
    }

    async fn send_to_dlq(&self, letter: &DeadLetter) -> OmsResult<()> {
        lock(&self.dead).push(letter.clone());
        Ok(())
    }
}

#[async_trait]
impl OrderBacklog for InMemoryOrderQueue {
    async fn pending(&self) -> OmsResult<u64> {
        Ok(self.pending.load(Ordering::SeqCst))
    }
}

#[async_trait]
impl HealthCheck for InMemoryOrderQueue {
    fn name(&self) -> &'static str {
        "order-queue"
    }

    async fn check(&self) -> OmsResult<()> {
        if self.tx.is_closed() {
            Err(OmsError::unavailable(
                "order queue",
                "the consumer has stopped",
            ))
        } else {
            Ok(())
        }
    }
}

impl OrderQueueReceiver {
    /// Runs the consumer loop: takes up to a poll's worth of commands at a
    /// time and hands them to `use_case`, retrying retryable errors with
    /// backoff. When `shutdown` completes, the queue stops taking commands
    /// and what it holds is processed before this returns.
    pub async fn run(
        mut self,
        use_case: Arc<dyn OrderUseCase>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut buf, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.process(&*use_case, std::mem::take(&mut buf)).await;
                }
                () = &mut shutdown => {
                    self.rx.close();
                    while self.rx.recv_many(&mut buf, BATCH).await > 0 {
                        self.process(&*use_case, std::mem::take(&mut buf)).await;
                    }
                    break;
                }
            }
        }
        info!("in-memory consumer stopped");
    }

    async fn process(&self, use_case: &dyn OrderUseCase, batch: Vec<OrderCommand>) {
        let count = batch.len() as u64;
        process(use_case, batch).await;
        self.pending.fetch_sub(count, Ordering::SeqCst);
    }
}

async fn process(use_case: &dyn OrderUseCase, batch: Vec<OrderCommand>) {
    let mut delay = Duration::from_millis(10);
    loop {
        match use_case.process(batch.clone()).await {
            Ok(_) => return,
            Err(e) if e.is_retryable() => {
                warn!(error = %e, ?delay, "batch not processed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                error!(error = %e, count = batch.len(), "batch cannot be processed");
                return;
            }
        }
    }
}
