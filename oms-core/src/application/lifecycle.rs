use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{debug, info, warn};

use super::payment::give_back;
use crate::domain::{OmsResult, Payment};
use crate::port::outbound::{
    GatewayStatus, LifecycleStore, OrderEventPublisher, PaymentGateway, StockGate,
};

/// How often the [`LifecycleKeeper`] works, and how much at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecyclePolicy {
    /// Pause between rounds.
    pub every: Duration,
    /// Most orders expired, reconciled or events published per round.
    pub batch: usize,
    /// A payment claim older than this with no outcome is asked about.
    pub doubt_after: Duration,
    /// How long a relay holds the events it leased before another may
    /// publish them.
    pub lease: Duration,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            batch: 500,
            doubt_after: Duration::from_secs(30),
            lease: Duration::from_secs(30),
        }
    }
}

/// Keeps orders moving after placement, next to the consumers (any number
/// of keepers may run at once):
///
/// * **expires** unpaid orders past their `paymentDueAt`, in batches; each
///   gives its units back (store and stock gate), once;
/// * **reconciles** payments in doubt (the gateway did not answer a
///   confirmation): asks the gateway; a payment it has done makes the order
///   PAID — even past its due time, so a paid order is never expired — and
///   one it does not have drops the claim (the order is payable again, or
///   expires);
/// * **publishes** the order events of the store's outbox, leased so that
///   each is published by one keeper, and marked published after delivery.
pub struct LifecycleKeeper {
    lifecycle: Arc<dyn LifecycleStore>,
    gateway: Arc<dyn PaymentGateway>,
    publisher: Arc<dyn OrderEventPublisher>,
    gate: Option<Arc<dyn StockGate>>,
    policy: LifecyclePolicy,
    owner: String,
}

impl LifecycleKeeper {
    /// A keeper on these ports.
    pub fn new(
        lifecycle: Arc<dyn LifecycleStore>,
        gateway: Arc<dyn PaymentGateway>,
        publisher: Arc<dyn OrderEventPublisher>,
        policy: LifecyclePolicy,
    ) -> Self {
        Self {
            lifecycle,
            gateway,
            publisher,
            gate: None,
            policy,
            owner: format!("keeper-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Gives the units of expired orders back to `gate` too.
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Expires one batch of overdue orders; returns how many.
    pub async fn expire(&self) -> OmsResult<usize> {
        let expired = self
            .lifecycle
            .expire_due(Utc::now(), self.policy.batch)
            .await?;
        for t in &expired {
            give_back(self.gate.as_deref(), t.order.member_id, &t.returned).await;
        }
        if !expired.is_empty() {
            info!(count = expired.len(), "unpaid orders expired");
            action("expired", expired.len());
        }
        Ok(expired.len())
    }

    /// Asks the gateway about one batch of payments in doubt; returns how
    /// many it settled.
    pub async fn reconcile(&self) -> OmsResult<usize> {
        let before =
            Utc::now() - chrono::Duration::from_std(self.policy.doubt_after).unwrap_or_default();
        let doubtful = self
            .lifecycle
            .payments_in_doubt(before, self.policy.batch)
            .await?;
        let mut settled = 0;
        for order in doubtful {
            let Some(key) = order.payment_claim.clone() else {
                continue;
            };
            let found = match self.gateway.lookup(&key).await {
                Ok(found) => found,
                Err(e) => {
                    debug!(order_id = %order.order_id, error = %e, "payment still in doubt");
                    continue;
                }
            };
            let payment = found.and_then(|p| match p.status {
                GatewayStatus::Done if p.amount == order.total_price => Some(Payment {
                    payment_key: p.payment_key,
                    amount: p.amount,
                    approved_at: p.approved_at.unwrap_or_else(Utc::now),
                }),
                _ => None,
            });
            let paid = payment.is_some();
            if self
                .lifecycle
                .settle_payment(order.order_id, &key, payment)
                .await?
                .is_some()
            {
                settled += 1;
                info!(order_id = %order.order_id, paid, "payment in doubt settled with the gateway");
                action("reconciled", 1);
            }
        }
        Ok(settled)
    }

    /// Publishes one lease of events; returns how many.
    pub async fn relay(&self) -> OmsResult<usize> {
        let events = self
            .lifecycle
            .lease_events(&self.owner, self.policy.batch, self.policy.lease)
            .await?;
        if events.is_empty() {
            return Ok(0);
        }
        self.publisher.publish(&events).await?;
        let ids: Vec<u64> = events.iter().map(|e| e.event_id).collect();
        self.lifecycle.events_published(&ids).await?;
        action("events_published", ids.len());
        Ok(ids.len())
    }

    /// Runs the three rounds every [`LifecyclePolicy::every`] (at once
    /// again while there is more to do) until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let mut busy = false;
            for (what, round) in [
                ("expire", self.expire().await),
                ("reconcile", self.reconcile().await),
                ("relay", self.relay().await),
            ] {
                match round {
                    Ok(n) => busy |= n >= self.policy.batch,
                    Err(e) => {
                        warn!(round = what, error = %e, "order life-cycle round failed; trying again")
                    }
                }
            }
            let pause = if busy {
                Duration::ZERO
            } else {
                self.policy.every
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Counts an action of the keeper.
fn action(action: &'static str, count: usize) {
    metrics::counter!(crate::observe::names::LIFECYCLE_ACTIONS, "action" => action)
        .increment(count as u64);
}
