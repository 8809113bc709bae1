use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tracing::{debug, info, warn};

use crate::domain::{FailureReason, OmsResult, OrderTrace, TraceState};
use crate::port::outbound::{
    DeadLetter, GateLevel, OrderBacklog, OrderRequestPublisher, OrderStore, ProductStore, StockGate,
};

/// How often and how fast the [`GateKeeper`] works.
///
/// Settling a refusal costs a database write and a DLQ record, on the same
/// cores that answer orders. A keeper therefore settles at a pace that
/// follows the journal: at most
/// `max(min_rate, waiting / catch_up)` refusals a second, `waiting` being
/// what the journal holds after a round. A short journal is settled at once
/// (a round is never held back before it starts); during a burst of
/// refusals the journal grows and settling yields the cores to intake; a
/// journal that keeps growing is settled faster and faster, so under a
/// steady stream of `r` refusals a second it levels off near
/// `r × catch_up` entries (fewer with several keepers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatePolicy {
    /// Most refusals settled in one round (one database round trip, one
    /// DLQ batch): small enough that a round holds the database and the
    /// broker for a moment only, so settling never stalls intake's tail.
    pub batch: usize,
    /// Pause when the journal is empty.
    pub idle: Duration,
    /// Time between reconciliations of the gate with the database.
    pub reconcile_every: Duration,
    /// Refusals a second a keeper may always settle.
    pub min_rate: u32,
    /// The time in which a keeper's pace would settle the journal as it
    /// stands (see the type's docs).
    pub catch_up: Duration,
}

impl Default for GatePolicy {
    fn default() -> Self {
        Self {
            batch: 250,
            idle: Duration::from_millis(20),
            reconcile_every: Duration::from_secs(5),
            min_rate: 1000,
            catch_up: Duration::from_secs(30),
        }
    }
}

impl GatePolicy {
    /// The pause after a round that settled `settled` refusals in `took`,
    /// with `waiting` left in the journal (`None`: unknown, no pause), so
    /// that the keeper keeps its pace (see the type's docs).
    pub fn pause_after(&self, settled: usize, took: Duration, waiting: Option<u64>) -> Duration {
        let Some(waiting) = waiting else {
            return Duration::ZERO;
        };
        let catch_up = self.catch_up.as_secs_f64();
        let following = if catch_up > 0.0 {
            waiting as f64 / catch_up
        } else {
            f64::INFINITY
        };
        // At least 1 a second; infinite (no pause) when catching up at once.
        let rate = following.max(f64::from(self.min_rate.max(1)));
        if !rate.is_finite() {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(settled as f64 / rate)
            .unwrap_or(Duration::ZERO)
            .saturating_sub(took)
    }
}

/// Keeps a [`StockGate`] honest, next to the consumers:
///
/// * **settles refusals**: every order the gate refused gets its FAILED
///   `OUT_OF_STOCK` outcome in the database (first writer wins, one round
///   trip per batch) and its DLQ record, and only then leaves the journal —
///   so the database answers for it after the trace store forgets it, and
///   FAILED traces and DLQ records stay one to one;
/// * **reconciles**: when the consumers have drained the queue (the
///   [`OrderBacklog`] is zero), every product's gate is set to its stock in
///   the database. Units reserved by an order that never reached the queue
///   (a crash between the reservation and the send) come back this way.
///   A reconciliation can only count too many units, never too few, and
///   too many is harmless: the database decides.
///
/// Several keepers may run at once (one per consumer process): the journal
/// hands each refusal to one of them, and settling is idempotent.
pub struct GateKeeper {
    gate: Arc<dyn StockGate>,
    store: Arc<dyn OrderStore>,
    products: Arc<dyn ProductStore>,
    backlog: Arc<dyn OrderBacklog>,
    publisher: Arc<dyn OrderRequestPublisher>,
    policy: GatePolicy,
}

impl GateKeeper {
    /// A keeper of `gate` on these ports.
    pub fn new(
        gate: Arc<dyn StockGate>,
        store: Arc<dyn OrderStore>,
        products: Arc<dyn ProductStore>,
        backlog: Arc<dyn OrderBacklog>,
        publisher: Arc<dyn OrderRequestPublisher>,
        policy: GatePolicy,
    ) -> Self {
        Self {
            gate,
            store,
            products,
            backlog,
            publisher,
            policy,
        }
    }

    /// Settles one batch of journaled refusals; returns how many.
    pub async fn settle_refusals(&self) -> OmsResult<usize> {
        let refusals = self.gate.refusals(self.policy.batch).await?;
        if refusals.is_empty() {
            return Ok(0);
        }
        let traces: Vec<OrderTrace> = refusals
            .iter()
            .map(|r| OrderTrace {
                trace_id: r.command.trace_id,
                member_id: r.command.member_id,
                state: TraceState::Failed {
                    reason: FailureReason::OutOfStock,
                },
            })
            .collect();
        let settled = self.store.settle_failures(&traces).await?;
        let mut letters = Vec::new();
        for (refusal, placement) in refusals.iter().zip(&settled) {
            if let (true, TraceState::Failed { reason }) =
                (placement.needs_dead_letter, placement.trace.state)
            {
                letters.push(DeadLetter::for_command(&refusal.command, reason)?);
            }
        }
        let sends = letters
            .iter()
            .map(|l| super::send_dead_letter(self.publisher.as_ref(), l));
        let results = join_all(sends).await;
        let sent: Vec<_> = letters
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .filter_map(|(l, _)| l.trace_id)
            .collect();
        if !sent.is_empty() {
            self.store.mark_dead_lettered(&sent).await?;
        }
        if let Some(e) = results.into_iter().find_map(Result::err) {
            // The unsent ones stay unconfirmed: the next round sends them.
            return Err(e);
        }
        let ids: Vec<String> = refusals.into_iter().map(|r| r.id).collect();
        self.gate.settled(&ids).await?;
        debug!(count = ids.len(), "refusals settled");
        metrics::counter!(crate::observe::names::GATE_KEEPER_ACTIONS, "action" => "settled")
            .increment(ids.len() as u64);
        Ok(ids.len())
    }

    /// Sets every product's gate to its stock in the database, if the
    /// consumers have drained the queue; returns whether it did.
    pub async fn reconcile(&self) -> OmsResult<bool> {
        if self.backlog.pending().await? != 0 {
            return Ok(false);
        }
        let products = self.products.list().await?;
        self.gate.set_available(&levels_of(&products), true).await?;
        // Purchases counted for orders that failed later come back here.
        for product in products.iter().filter(|p| p.rules.max_per_member.is_some()) {
            let purchases = self.products.purchases(product.id).await?;
            self.gate.set_purchases(product.id, &purchases).await?;
        }
        metrics::counter!(crate::observe::names::GATE_KEEPER_ACTIONS, "action" => "reconciled")
            .increment(1);
        Ok(true)
    }

    /// Settles refusals as they come and reconciles every
    /// [`GatePolicy::reconcile_every`], until `shutdown` completes. A round
    /// that fails (a dependency down) is logged and tried again. A round
    /// under way is finished before it stops.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut reconcile =
            tokio::time::interval(self.policy.reconcile_every.max(Duration::from_millis(10)));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The journal's length paces the keeper after a round that settled
        // some, and is read at least once a second otherwise, so that its
        // gauge follows refusals other keepers settle, or none settles.
        let mut length_read = tokio::time::Instant::now();
        loop {
            let started = tokio::time::Instant::now();
            let settled = self.settle_refusals().await;
            let waiting = if matches!(settled, Ok(n) if n > 0)
                || length_read.elapsed() >= Duration::from_secs(1)
            {
                length_read = tokio::time::Instant::now();
                match self.gate.refusals_waiting().await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        debug!(error = %e, "journal length not readable; not pacing");
                        None
                    }
                }
            } else {
                None
            };
            let pause = match settled {
                Ok(0) => self.policy.idle,
                Ok(settled) => self.policy.pause_after(settled, started.elapsed(), waiting),
                Err(e) => {
                    warn!(error = %e, "refusals not settled; trying again later");
                    self.policy.reconcile_every
                }
            };
            // Reconciliations due during the pause do not shorten it.
            let wake = tokio::time::sleep(pause);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    biased;
                    () = &mut shutdown => return,
                    _ = reconcile.tick() => {
                        if let Err(e) = self.reconcile().await {
                            warn!(error = %e, "stock gate not reconciled; trying again later");
                        }
                        // A reconciliation that outlasts its period finds
                        // the next tick due at once: the pause, if over,
                        // still ends here, so settling never starves.
                        // (`is_elapsed` would read false for a sleep never
                        // polled: the biased select may not have reached it.)
                        if tokio::time::Instant::now() >= wake.deadline() {
                            break;
                        }
                    }
                    () = &mut wake => break,
                }
            }
        }
    }
}

/// Every product's stock in the database, with the version it was read at.
async fn levels(products: &dyn ProductStore) -> OmsResult<Vec<GateLevel>> {
    Ok(levels_of(&products.list().await?))
}

fn levels_of(products: &[crate::domain::Product]) -> Vec<GateLevel> {
    products
        .iter()
        .map(|p| GateLevel {
            product_id: p.id,
            available: p.stock,
            version: p.version,
        })
        .collect()
}

/// Fills the gate of every product that has none from its stock in the
/// database (at intake start); returns how many products it looked at.
pub async fn fill_gate(gate: &dyn StockGate, products: &dyn ProductStore) -> OmsResult<usize> {
    let levels = levels(products).await?;
    gate.set_available(&levels, false).await?;
    info!(products = levels.len(), "stock gate filled");
    Ok(levels.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::{OrderService, ProductService, RequestOrderService};
    use crate::domain::{
        Caller, MemberId, OmsError, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo,
    };
    use crate::memory::{InMemoryOrderQueue, InMemoryStockGate, InMemoryStore, InMemoryTraceStore};
    use crate::port::inbound::{OrderUseCase, ProductUseCase, RequestOrderUseCase};
    use crate::port::outbound::{MockOrderBacklog, MockOrderRequestPublisher, TraceStore};

    struct Rig {
        store: Arc<InMemoryStore>,
        traces: Arc<InMemoryTraceStore>,
        gate: Arc<InMemoryStockGate>,
        queue: Arc<InMemoryOrderQueue>,
    }

    impl Rig {
        async fn new(stock: i64) -> Self {
            let store = Arc::new(InMemoryStore::new());
            let traces = Arc::new(InMemoryTraceStore::new());
            let gate = Arc::new(InMemoryStockGate::new(traces.clone()));
            let (queue, _receiver) = InMemoryOrderQueue::new();
            let rig = Self {
                store,
                traces,
                gate,
                queue: Arc::new(queue),
            };
            ProductService::new(rig.store.clone())
                .with_gate(rig.gate.clone())
                .create(
                    Caller::admin(1),
                    ProductId(1),
                    ProductDraft {
                        name: "A".into(),
                        price: 10,
                        stock,
                        rules: Default::default(),
                    },
                )
                .await
                .unwrap();
            rig
        }

        fn keeper(&self, pending: u64) -> GateKeeper {
            self.keeper_with(pending, GatePolicy::default())
        }

        fn keeper_with(&self, pending: u64, policy: GatePolicy) -> GateKeeper {
            let mut backlog = MockOrderBacklog::new();
            backlog.expect_pending().returning(move || Ok(pending));
            GateKeeper::new(
                self.gate.clone(),
                self.store.clone(),
                self.store.clone(),
                Arc::new(backlog),
                self.queue.clone(),
                policy,
            )
        }

        /// `n` orders of distinct members refused by the gate (the
        /// product is sold out).
        async fn refusals(&self, n: u64) {
            let intake = RequestOrderService::new(self.queue.clone(), self.traces.clone())
                .with_gate(self.gate.clone());
            for member in 1..=n {
                let answer = intake
                    .request_order(Caller::user(member), request(1, 1), None)
                    .await
                    .unwrap();
                assert_eq!(answer.state, out_of_stock());
            }
        }

        /// Runs `keeper` until the journal is empty; the (tokio) time it
        /// took.
        async fn settle_all(&self, keeper: GateKeeper) -> Duration {
            let started = tokio::time::Instant::now();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(keeper.run(async {
                let _ = stopped.await;
            }));
            while self.gate.refusals_waiting().await.unwrap() > 0 {
                assert!(started.elapsed() < Duration::from_secs(60), "never settled");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let took = started.elapsed();
            let _ = stop.send(());
            running.await.unwrap();
            took
        }
    }

    fn request(product: u64, quantity: u32) -> OrderRequest {
        OrderRequest {
            items: vec![OrderLine {
                product_id: ProductId(product),
                quantity,
            }],
            receiver_info: ReceiverInfo {
                name: "Kim".into(),
                phone: "010".into(),
                address: "Seoul".into(),
            },
        }
    }

    fn out_of_stock() -> TraceState {
        TraceState::Failed {
            reason: FailureReason::OutOfStock,
        }
    }

    #[tokio::test]
    async fn sold_out_orders_are_refused_at_once_then_settled_with_a_dlq_record() {
        let rig = Rig::new(2).await;
        let mut publisher = MockOrderRequestPublisher::new();
        publisher.expect_send().times(2).returning(|_| Ok(()));
        let intake = RequestOrderService::new(Arc::new(publisher), rig.traces.clone())
            .with_gate(rig.gate.clone());
        let mut answers = Vec::new();
        for member in 1..=3 {
            answers.push(
                intake
                    .request_order(Caller::user(member), request(1, 1), None)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(answers[0].state, TraceState::Processing);
        assert_eq!(answers[1].state, TraceState::Processing);
        assert_eq!(answers[2].state, out_of_stock());
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(0));
        let refused = answers[2].trace_id;
        assert_eq!(
            rig.traces.get(refused).await.unwrap().map(|t| t.state),
            Some(out_of_stock())
        );
        // Not yet in the database: the keeper settles it.
        assert_eq!(rig.store.outcome(refused).await.unwrap(), None);

        let keeper = rig.keeper(0);
        assert_eq!(keeper.settle_refusals().await.unwrap(), 1);
        assert_eq!(keeper.settle_refusals().await.unwrap(), 0);
        assert_eq!(
            rig.store.outcome(refused).await.unwrap(),
            Some(OrderTrace {
                trace_id: refused,
                member_id: MemberId(3),
                state: out_of_stock(),
            })
        );
        let letters = rig.queue.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].trace_id, Some(refused));
        assert_eq!(letters[0].reason, FailureReason::OutOfStock);
        // A second settlement of the same trace sends nothing more.
        let again = rig
            .store
            .settle_failures(&[OrderTrace {
                trace_id: refused,
                member_id: MemberId(3),
                state: out_of_stock(),
            }])
            .await
            .unwrap();
        assert!(again[0].replayed && !again[0].needs_dead_letter);
    }

    #[test]
    fn the_pace_follows_the_journal() {
        let policy = GatePolicy {
            min_rate: 1000,
            catch_up: Duration::from_secs(10),
            ..GatePolicy::default()
        };
        let ms = Duration::from_millis;
        // A short journal: 1000 a second, less the round's own time.
        assert_eq!(policy.pause_after(500, ms(100), Some(0)), ms(400));
        assert_eq!(policy.pause_after(500, ms(700), Some(2000)), Duration::ZERO);
        // A long one: `waiting / catch_up` a second.
        assert_eq!(policy.pause_after(1000, ms(0), Some(40_000)), ms(250));
        assert_eq!(policy.pause_after(1000, ms(0), Some(1_000_000)), ms(10));
        // Unknown, or no catch-up time: no pause.
        assert_eq!(policy.pause_after(1000, ms(0), None), Duration::ZERO);
        let eager = GatePolicy {
            catch_up: Duration::ZERO,
            ..policy
        };
        assert_eq!(eager.pause_after(1000, ms(0), Some(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keeper_settles_a_burst_at_its_pace() {
        let slow = GatePolicy {
            batch: 10,
            min_rate: 100,
            catch_up: Duration::from_secs(3600),
            ..GatePolicy::default()
        };
        let rig = Rig::new(0).await;
        rig.refusals(50).await;
        assert_eq!(rig.gate.refusals_waiting().await.unwrap(), 50);
        // Five rounds of 10 at 100 a second: four pauses of 100 ms.
        let took = rig.settle_all(rig.keeper_with(0, slow)).await;
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(500),
            "took {took:?}"
        );
        assert_eq!(rig.queue.dead_letters().len(), 50);

        // The same burst with a short catch-up time is settled at once.
        let rig = Rig::new(0).await;
        rig.refusals(50).await;
        let quick = GatePolicy {
            catch_up: Duration::from_millis(1),
            ..slow
        };
        let took = rig.settle_all(rig.keeper_with(0, quick)).await;
        assert!(took < Duration::from_millis(50), "took {took:?}");
        assert_eq!(rig.queue.dead_letters().len(), 50);
    }

    /// A backlog whose every answer takes `delay` (a slow broker).
    struct SlowBacklog {
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl OrderBacklog for SlowBacklog {
        async fn pending(&self) -> OmsResult<u64> {
            tokio::time::sleep(self.delay).await;
            Ok(0)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reconciliations_that_outlast_their_period_do_not_starve_settling() {
        let rig = Rig::new(0).await;
        rig.refusals(30).await;
        let policy = GatePolicy {
            batch: 10,
            reconcile_every: Duration::from_millis(100),
            ..GatePolicy::default()
        };
        // Every reconciliation takes three periods: the next tick is always
        // due when one ends.
        let keeper = GateKeeper::new(
            rig.gate.clone(),
            rig.store.clone(),
            rig.store.clone(),
            Arc::new(SlowBacklog {
                delay: Duration::from_millis(300),
            }),
            rig.queue.clone(),
            policy,
        );
        let took = rig.settle_all(keeper).await;
        assert_eq!(rig.queue.dead_letters().len(), 30);
        // Three rounds, each after at most one reconciliation.
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[tokio::test]
    async fn units_of_an_order_that_was_not_queued_are_given_back() {
        let rig = Rig::new(1).await;
        let mut publisher = MockOrderRequestPublisher::new();
        publisher
            .expect_send()
            .returning(|_| Err(OmsError::unavailable("kafka", "down")));
        let intake = RequestOrderService::new(Arc::new(publisher), rig.traces.clone())
            .with_gate(rig.gate.clone());
        let err = intake
            .request_order(Caller::user(1), request(1, 1), None)
            .await;
        assert!(matches!(err, Err(OmsError::Unavailable { .. })));
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(1));
        assert!(rig.traces.is_empty());
    }

    #[tokio::test]
    async fn units_come_back_for_failures_other_than_stock_only() {
        let rig = Rig::new(5).await;
        let processing =
            OrderService::new(rig.store.clone(), rig.traces.clone(), rig.queue.clone())
                .with_gate(rig.gate.clone());
        // An order with an unknown product reserved product 1's units.
        let unknown = crate::testkit::command(MemberId(1), &[(ProductId(1), 2), (ProductId(9), 1)]);
        assert_eq!(
            rig.gate
                .admit(&unknown, &crate::port::outbound::IntakeChecks::default())
                .await
                .unwrap(),
            crate::port::outbound::Admission::Reserved
        );
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(3));
        let placed = processing.process(vec![unknown]).await.unwrap();
        assert_eq!(
            placed[0].trace.state,
            TraceState::Failed {
                reason: FailureReason::ProductNotFound
            }
        );
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(5));

        // A gate that counted too many: the order fails OUT_OF_STOCK in the
        // database and its units stay taken until the gate is reconciled.
        rig.gate
            .set_available(&[level(1, 50, 0)], true)
            .await
            .unwrap();
        let too_many = crate::testkit::command(MemberId(2), &[(ProductId(1), 6)]);
        rig.gate
            .admit(&too_many, &crate::port::outbound::IntakeChecks::default())
            .await
            .unwrap();
        let placed = processing.process(vec![too_many]).await.unwrap();
        assert_eq!(placed[0].trace.state, out_of_stock());
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(44));
        assert!(!rig.keeper(3).reconcile().await.unwrap());
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(44));
        assert!(rig.keeper(0).reconcile().await.unwrap());
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(5));
    }

    fn level(product: u64, available: i64, version: i64) -> GateLevel {
        GateLevel {
            product_id: ProductId(product),
            available,
            version,
        }
    }

    #[tokio::test]
    async fn a_reconciliation_that_read_before_a_restock_does_not_undo_it() {
        // The keeper read product 1 at version 4 with stock 0 (sold out);
        // then an operator restocked 500 units (version 5) and the gate
        // moved with it; then the keeper's write lands.
        let rig = Rig::new(0).await;
        let mut stale = crate::port::outbound::MockProductStore::new();
        stale.expect_list().returning(|| {
            Ok(vec![crate::domain::Product {
                id: ProductId(1),
                name: "A".into(),
                price: 100,
                stock: 0,
                version: 4,
                rules: Default::default(),
            }])
        });
        rig.gate
            .set_available(&[level(1, 0, 4)], true)
            .await
            .unwrap();
        rig.gate.adjust(level(1, 500, 5), 500).await.unwrap();
        let keeper = GateKeeper::new(
            rig.gate.clone(),
            rig.store.clone(),
            Arc::new(stale),
            {
                let mut b = MockOrderBacklog::new();
                b.expect_pending().returning(|| Ok(0));
                Arc::new(b)
            },
            rig.queue.clone(),
            GatePolicy::default(),
        );
        assert!(keeper.reconcile().await.unwrap());
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(500));
        // A reconciliation that read the new version does set the gate.
        rig.gate
            .set_available(&[level(1, 480, 5)], true)
            .await
            .unwrap();
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(480));
    }

    #[tokio::test]
    async fn fill_sets_missing_gates_only() {
        let rig = Rig::new(5).await;
        rig.gate
            .set_available(&[level(1, 2, 0)], true)
            .await
            .unwrap();
        let products: Arc<dyn ProductStore> = rig.store.clone();
        products
            .create(
                &ProductDraft {
                    name: "B".into(),
                    price: 10,
                    stock: 7,
                    rules: Default::default(),
                }
                .into_product(ProductId(2)),
            )
            .await
            .unwrap();
        assert_eq!(
            fill_gate(rig.gate.as_ref(), products.as_ref())
                .await
                .unwrap(),
            2
        );
        assert_eq!(rig.gate.available(ProductId(1)).await.unwrap(), Some(2));
        assert_eq!(rig.gate.available(ProductId(2)).await.unwrap(), Some(7));
    }
}
