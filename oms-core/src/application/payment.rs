use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use tracing::{info, warn};

use crate::domain::{
    payment_key_error, Caller, FieldErrors, LifecycleEvent, MemberId, OmsError, OmsResult, Order,
    OrderId, OrderLine, OrderStatus,
};
use crate::port::inbound::PaymentUseCase;
use crate::port::outbound::{
    Claim, LifecycleStore, OrderStore, PaymentGateway, PaymentRequest, StockGate, StockReturn,
};

/// Paying and cancelling orders.
///
/// **Confirm**: the order is read (the owner's only), its amount checked
/// (a mismatch never reaches the gateway), then *claimed* in the store for
/// this `paymentKey` — a conditional write that expiry and cancellation
/// respect, so confirm racing them has exactly one winner — and only then
/// is the gateway asked, with an idempotency key of the order and the
/// payment key, so a retry never charges twice. Approved: PAID. Declined:
/// the claim is dropped and the order stays payable. No answer: the claim
/// stays (the payment is *in doubt*, the order is neither expired nor
/// cancelled) and the [`LifecycleKeeper`](super::LifecycleKeeper) asks the
/// gateway later.
///
/// **Cancel**: an unpaid order is CANCELLED; a paid one is refunded through
/// the gateway (idempotent too) and REFUNDED. Either gives its units back:
/// the store does it with the status change, and the stock gate (if any)
/// gets them too.
pub struct PaymentService {
    orders: Arc<dyn OrderStore>,
    lifecycle: Arc<dyn LifecycleStore>,
    gateway: Arc<dyn PaymentGateway>,
    gate: Option<Arc<dyn StockGate>>,
}

impl PaymentService {
    /// A service on these ports.
    pub fn new(
        orders: Arc<dyn OrderStore>,
        lifecycle: Arc<dyn LifecycleStore>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self {
            orders,
            lifecycle,
            gateway,
            gate: None,
        }
    }

    /// Gives the units of cancelled and refunded orders back to `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    async fn order_of(
        &self,
        caller: Caller,
        order_id: OrderId,
        owner_only: bool,
    ) -> OmsResult<Order> {
        match self.orders.order(order_id).await? {
            Some(o) if o.member_id == caller.member_id => Ok(o),
            Some(o) if !owner_only && caller.can_read(o.member_id) => Ok(o),
            _ => Err(OmsError::OrderNotFound { order_id }),
        }
    }

    /// The answer to a confirmation of an order that is not (or no longer)
    /// payable: the same body for a paid order confirmed again with its
    /// key, 409 otherwise.
    fn already(order: Order, payment_key: &str) -> OmsResult<Order> {
        match &order.payment {
            Some(p) if order.status == OrderStatus::Paid && p.payment_key == payment_key => {
                Ok(order)
            }
            _ => Err(OmsError::OrderNotPayable {
                order_id: order.order_id,
                status: order.status,
            }),
        }
    }
}

/// The idempotency key of confirming `order_id` with `payment_key`.
pub fn confirm_idempotency_key(order_id: OrderId, payment_key: &str) -> String {
    format!("oms-confirm-{order_id}-{payment_key}")
}

/// Gives units that an order gave back in the store to the stock gate too,
/// with the member's purchases, in one step ([`StockGate::release`]).
///
/// Returns are increments that commute: concurrent cancellations and
/// expiries each add their units whatever order they arrive in. (A
/// versioned `adjust` would keep only the newest of two returns that
/// arrive out of order.) A reconciliation that read the database just
/// before a return and lands just after it sets the gate to the older
/// level; the next reconciliation, once the topic is drained, counts the
/// units again.
pub(crate) async fn give_back(
    gate: Option<&dyn StockGate>,
    member: MemberId,
    returned: &[StockReturn],
) {
    let Some(gate) = gate else {
        return;
    };
    let lines: Vec<OrderLine> = returned
        .iter()
        .filter_map(|r| {
            u32::try_from(r.units).ok().map(|quantity| OrderLine {
                product_id: r.product_id,
                quantity,
            })
        })
        .collect();
    if let Err(e) = gate.release(member, &lines).await {
        warn!(%member, error = %e, "units given back not in the stock gate; it is reconciled later");
    }
}

#[async_trait]
impl PaymentUseCase for PaymentService {
    async fn confirm(
        &self,
        caller: Caller,
        order_id: OrderId,
        payment_key: String,
        amount: i64,
    ) -> OmsResult<Order> {
        FieldErrors::from_iter(payment_key_error(&payment_key)).into_result()?;
        let order = self.order_of(caller, order_id, true).await?;
        if order.status != OrderStatus::PendingPayment {
            return Self::already(order, &payment_key);
        }
        // Every total is above 0, so an amount of 0 or less is a mismatch
        // too, and never reaches the gateway.
        if amount != order.total_price {
            return Err(OmsError::AmountMismatch {
                expected: order.total_price,
                actual: amount,
            });
        }
        match self
            .lifecycle
            .claim_payment(order_id, &payment_key, Utc::now())
            .await?
        {
            Claim::Claimed(_) => {}
            Claim::Refused(order) => return Self::already(order, &payment_key),
        }
        let request = PaymentRequest {
            idempotency_key: confirm_idempotency_key(order_id, &payment_key),
            payment_key: payment_key.clone(),
            order_id,
            amount,
        };
        match self.gateway.confirm(&request).await {
            Ok(payment) => {
                match self
                    .lifecycle
                    .settle_payment(order_id, &payment_key, Some(payment))
                    .await?
                {
                    Some(t) => {
                        info!(%order_id, "order paid");
                        Ok(t.order)
                    }
                    // Settled meanwhile (the reconciler): as it stands.
                    None => {
                        let order = self.order_of(caller, order_id, true).await?;
                        Self::already(order, &payment_key)
                    }
                }
            }
            Err(e @ OmsError::PaymentUnknown(_)) => {
                warn!(%order_id, error = %e, "payment in doubt; the order is reconciled with the gateway later");
                Err(e)
            }
            Err(e) => {
                // Declined, or refused before charging (e.g. our key): the
                // payment was not made.
                self.lifecycle
                    .settle_payment(order_id, &payment_key, None)
                    .await?;
                Err(e)
            }
        }
    }

    async fn cancel(&self, caller: Caller, order_id: OrderId) -> OmsResult<Order> {
        let order = self.order_of(caller, order_id, false).await?;
        let event = match order.status {
            OrderStatus::PendingPayment => LifecycleEvent::Cancel,
            OrderStatus::Paid => {
                let payment = order.payment.as_ref().ok_or_else(|| {
                    OmsError::Internal(format!("order {order_id} is PAID without a payment"))
                })?;
                self.gateway
                    .cancel(
                        &payment.payment_key,
                        "cancelled by the buyer",
                        &format!("oms-refund-{order_id}"),
                    )
                    .await?;
                LifecycleEvent::Refund
            }
            status => {
                return Err(OmsError::OrderNotCancellable {
                    order_id,
                    why: format!("it is {status}"),
                })
            }
        };
        let t = match self.lifecycle.transition(order_id, event, Utc::now()).await {
            Ok(t) => t,
            // Changed meanwhile (expired, cancelled by another request).
            Err(OmsError::IllegalTransition { from, .. }) => {
                return Err(OmsError::OrderNotCancellable {
                    order_id,
                    why: format!("it is {from}"),
                })
            }
            Err(e) => return Err(e),
        };
        give_back(self.gate.as_deref(), t.order.member_id, &t.returned).await;
        info!(%order_id, status = %t.order.status, "order cancelled");
        Ok(t.order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        OrderCommand, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo, TraceId,
        TraceState,
    };
    use crate::memory::{InMemoryPaymentGateway, InMemoryStore};
    use crate::port::outbound::{MockPaymentGateway, ProductStore};

    async fn placed(store: &InMemoryStore, member: u64, units: u32) -> Order {
        if store.get(ProductId(1)).await.unwrap().is_none() {
            let draft = ProductDraft {
                name: "A".into(),
                price: 100,
                stock: 50,
                rules: Default::default(),
            };
            store
                .create(&draft.into_product(ProductId(1)))
                .await
                .unwrap();
        }
        let command = OrderCommand::new(
            TraceId::new(),
            MemberId(member),
            OrderRequest {
                items: vec![OrderLine {
                    product_id: ProductId(1),
                    quantity: units,
                }],
                receiver_info: ReceiverInfo {
                    name: "Kim".into(),
                    phone: "010".into(),
                    address: "Seoul".into(),
                },
            },
        );
        let placed = crate::port::outbound::OrderStore::place_batch(store, &[command])
            .await
            .unwrap();
        let TraceState::Completed { order_id } = placed[0].trace.state else {
            panic!("not placed");
        };
        crate::port::outbound::OrderStore::order(store, order_id)
            .await
            .unwrap()
            .unwrap()
    }

    fn service(store: &Arc<InMemoryStore>, gateway: Arc<dyn PaymentGateway>) -> PaymentService {
        PaymentService::new(store.clone(), store.clone(), gateway)
    }

    #[tokio::test]
    async fn a_wrong_amount_or_someone_elses_order_never_reaches_the_gateway() {
        let store = Arc::new(InMemoryStore::new());
        let order = placed(&store, 7, 2).await;
        let gateway = MockPaymentGateway::new(); // no call expected
        let payments = service(&store, Arc::new(gateway));
        let id = order.order_id;
        assert!(matches!(
            payments
                .confirm(Caller::user(7), id, "pay-1".into(), 199)
                .await,
            Err(OmsError::AmountMismatch {
                expected: 200,
                actual: 199
            })
        ));
        // No total is 0 or less: such an amount is a mismatch too.
        for amount in [0, -5] {
            assert!(matches!(
                payments
                    .confirm(Caller::user(7), id, "pay-1".into(), amount)
                    .await,
                Err(OmsError::AmountMismatch { expected: 200, actual }) if actual == amount
            ));
        }
        assert!(matches!(
            payments
                .confirm(Caller::user(8), id, "pay-1".into(), 200)
                .await,
            Err(OmsError::OrderNotFound { .. })
        ));
        for (key, amount, fields) in [
            ("", 200, &["paymentKey"][..]),
            ("bad key!", 200, &["paymentKey"]),
            ("bad key!", -5, &["paymentKey"]),
        ] {
            let r = payments
                .confirm(Caller::user(7), id, key.into(), amount)
                .await;
            assert!(
                matches!(&r, Err(OmsError::Validation(e)) if e.fields() == fields),
                "{key:?} {amount}: {r:?}"
            );
        }
    }

    #[tokio::test]
    async fn confirming_pays_once_and_again_answers_the_same() {
        let store = Arc::new(InMemoryStore::new());
        let order = placed(&store, 7, 2).await;
        let gateway = Arc::new(InMemoryPaymentGateway::new());
        let payments = service(&store, gateway.clone());
        let paid = payments
            .confirm(Caller::user(7), order.order_id, "pay-1".into(), 200)
            .await
            .unwrap();
        assert_eq!(paid.status, OrderStatus::Paid);
        let again = payments
            .confirm(Caller::user(7), order.order_id, "pay-1".into(), 200)
            .await
            .unwrap();
        assert_eq!(again, paid);
        assert_eq!(gateway.charges("pay-1"), 1);
        assert!(matches!(
            payments
                .confirm(Caller::user(7), order.order_id, "pay-2".into(), 200)
                .await,
            Err(OmsError::OrderNotPayable { .. })
        ));
    }

    #[tokio::test]
    async fn a_declined_payment_can_be_tried_again_and_a_lost_answer_is_in_doubt() {
        let store = Arc::new(InMemoryStore::new());
        let order = placed(&store, 7, 1).await;
        let payments = service(&store, Arc::new(InMemoryPaymentGateway::new()));
        let id = order.order_id;
        assert!(matches!(
            payments
                .confirm(Caller::user(7), id, "decline-1".into(), 100)
                .await,
            Err(OmsError::PaymentDeclined { .. })
        ));
        assert!(matches!(
            payments
                .confirm(Caller::user(7), id, "timeout-1".into(), 100)
                .await,
            Err(OmsError::PaymentUnknown(_))
        ));
        // In doubt: not cancellable, not payable with another key.
        assert!(matches!(
            payments.cancel(Caller::user(7), id).await,
            Err(OmsError::OrderNotCancellable { .. })
        ));
        assert!(matches!(
            payments
                .confirm(Caller::user(7), id, "pay-2".into(), 100)
                .await,
            Err(OmsError::OrderNotPayable { .. })
        ));
    }

    #[tokio::test]
    async fn returns_reach_the_gate_in_any_order() {
        use crate::memory::{InMemoryStockGate, InMemoryTraceStore};
        use crate::port::outbound::GateLevel;
        let gate = InMemoryStockGate::new(Arc::new(InMemoryTraceStore::new()));
        let level = GateLevel {
            product_id: ProductId(1),
            available: 10,
            version: 5,
        };
        gate.set_available(&[level], true).await.unwrap();
        let back = |units, stock, version| StockReturn {
            product_id: ProductId(1),
            units,
            stock,
            version,
        };
        // Two cancellations: the newer one arrives first.
        give_back(Some(&gate), MemberId(7), &[back(3, 15, 7)]).await;
        give_back(Some(&gate), MemberId(8), &[back(2, 12, 6)]).await;
        assert_eq!(gate.available(ProductId(1)).await.unwrap(), Some(15));
    }

    #[tokio::test]
    async fn cancelling_gives_the_units_back_and_a_paid_order_is_refunded() {
        let store = Arc::new(InMemoryStore::new());
        let a = placed(&store, 7, 5).await;
        let b = placed(&store, 7, 5).await;
        assert_eq!(store.get(ProductId(1)).await.unwrap().unwrap().stock, 40);
        let payments = service(&store, Arc::new(InMemoryPaymentGateway::new()));
        let cancelled = payments.cancel(Caller::user(7), a.order_id).await.unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert!(matches!(
            payments.cancel(Caller::user(7), a.order_id).await,
            Err(OmsError::OrderNotCancellable { .. })
        ));
        payments
            .confirm(Caller::user(7), b.order_id, "pay-b".into(), 500)
            .await
            .unwrap();
        // An operator may cancel; another buyer may not even see it.
        assert!(matches!(
            payments.cancel(Caller::user(8), b.order_id).await,
            Err(OmsError::OrderNotFound { .. })
        ));
        let refunded = payments.cancel(Caller::admin(1), b.order_id).await.unwrap();
        assert_eq!(refunded.status, OrderStatus::Refunded);
        assert_eq!(store.get(ProductId(1)).await.unwrap().unwrap().stock, 50);
    }
}

#[cfg(test)]
mod conservation {
    //! Any sequence of life-cycle events keeps the stock whole: initial =
    //! stock + units held by PENDING_PAYMENT and PAID orders.
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{
        OrderCommand, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo, TraceId,
    };
    use crate::memory::InMemoryStore;
    use crate::port::outbound::{LifecycleStore, OrderStore, ProductStore};

    #[derive(Debug, Clone)]
    enum Step {
        Place(u64, u32),
        Pay(usize),
        Cancel(usize),
        Refund(usize),
        Expire,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u64..3, 1u32..4).prop_map(|(p, q)| Step::Place(p, q)),
            2 => (0usize..20).prop_map(Step::Pay),
            1 => (0usize..20).prop_map(Step::Cancel),
            1 => (0usize..20).prop_map(Step::Refund),
            1 => Just(Step::Expire),
        ]
    }

    async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
        let store = InMemoryStore::new();
        for id in 1..3 {
            let d = ProductDraft {
                name: format!("p{id}"),
                price: 10,
                stock: 20,
                rules: Default::default(),
            };
            store.create(&d.into_product(ProductId(id))).await.unwrap();
        }
        let mut orders: Vec<OrderId> = Vec::new();
        let mut clock = Utc::now();
        for s in steps {
            match s {
                Step::Place(p, q) => {
                    let c = OrderCommand::new(
                        TraceId::new(),
                        MemberId(1),
                        OrderRequest {
                            items: vec![OrderLine {
                                product_id: ProductId(p),
                                quantity: q,
                            }],
                            receiver_info: ReceiverInfo {
                                name: "K".into(),
                                phone: "0".into(),
                                address: "S".into(),
                            },
                        },
                    );
                    let placed = store.place_batch(&[c]).await.unwrap();
                    if let crate::domain::TraceState::Completed { order_id } = placed[0].trace.state
                    {
                        orders.push(order_id);
                    }
                }
                Step::Pay(i) => {
                    if let Some(id) = orders.get(i) {
                        let key = format!("k{i}");
                        if let Claim::Claimed(o) =
                            store.claim_payment(*id, &key, clock).await.unwrap()
                        {
                            let payment = crate::domain::Payment {
                                payment_key: key.clone(),
                                amount: o.total_price,
                                approved_at: clock,
                            };
                            store
                                .settle_payment(*id, &key, Some(payment))
                                .await
                                .unwrap();
                        }
                    }
                }
                Step::Cancel(i) | Step::Refund(i) => {
                    if let Some(id) = orders.get(i) {
                        let event = if matches!(s, Step::Cancel(_)) {
                            LifecycleEvent::Cancel
                        } else {
                            LifecycleEvent::Refund
                        };
                        let _ = store.transition(*id, event, clock).await;
                    }
                }
                Step::Expire => {
                    clock += chrono::Duration::minutes(11);
                    store.expire_due(clock, 1000).await.unwrap();
                }
            }
            for p in 1..3u64 {
                let stock = store.get(ProductId(p)).await.unwrap().unwrap().stock;
                let mut held = 0;
                for id in &orders {
                    let o = store.order(*id).await.unwrap().unwrap();
                    if o.status.holds_stock() {
                        held += o
                            .items
                            .iter()
                            .filter(|i| i.product_id == ProductId(p))
                            .map(|i| i64::from(i.quantity))
                            .sum::<i64>();
                    }
                }
                prop_assert_eq!(stock + held, 20, "product {}", p);
                prop_assert!(stock >= 0);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_sequence_of_events_keeps_the_stock_whole(steps in prop::collection::vec(step(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(run(steps))?;
        }
    }
}
