use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::lock;
use crate::domain::placement::{
    limited_pairs, plan_batch, resolve_placements, Bought, KeyBindings, Step,
};
use crate::domain::{
    HeldUnits, KnownOutcome, MemberId, OmsError, OmsResult, Order, OrderCommand, OrderFilter,
    OrderId, OrderPage, OrderStatus, OrderTrace, Placement, Product, ProductChange, ProductId,
    ProductUpdate, Purchase, TraceId,
};
use crate::port::outbound::{HealthCheck, OrderAdminStore, OrderStore, ProductStore};

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<ProductId, Product>,
    orders: BTreeMap<OrderId, Order>,
    outcomes: HashMap<TraceId, KnownOutcome>,
    keys: KeyBindings,
    bought: Bought,
    /// When each order's payment claim was taken.
    claimed_at: HashMap<OrderId, chrono::DateTime<chrono::Utc>>,
    /// The outbox: each event, its lease (owner, until) and whether it was
    /// published.
    #[allow(clippy::type_complexity)]
    events: Vec<(
        crate::domain::OrderEvent,
        Option<(String, std::time::Instant)>,
        bool,
    )>,
    next_event_id: u64,
    settled_at: HashMap<TraceId, std::time::Instant>,
    next_order_id: u64,
}

impl State {
    /// Up to `page.limit` orders with ids below `page.before` that `keep`
    /// accepts, newest first.
    fn newest(&self, page: OrderPage, keep: impl Fn(&Order) -> bool) -> Vec<Order> {
        let below = match page.before {
            Some(before) => self.orders.range(..before),
            None => self.orders.range(..),
        };
        below
            .rev()
            .map(|(_, o)| o)
            .filter(|o| keep(o))
            .take(page.limit)
            .cloned()
            .collect()
    }
}

/// [`OrderStore`], [`OrderAdminStore`], [`ProductStore`] and
/// [`LifecycleStore`](crate::port::outbound::LifecycleStore) in memory, with the same
/// semantics as the database adapter (one lock is the transaction).
#[derive(Debug)]
pub struct InMemoryStore {
    state: Mutex<State>,
    payment_timeout: chrono::Duration,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            payment_timeout: chrono::Duration::minutes(10),
        }
    }
}

impl InMemoryStore {
    /// An empty store; orders are due for payment 10 minutes after
    /// placement.
    pub fn new() -> Self {
        Self::default()
    }

    /// Orders are due for payment this long after placement.
    pub fn with_payment_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.payment_timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        self
    }
}

#[async_trait]
impl OrderStore for InMemoryStore {
    async fn place_batch(&self, commands: &[OrderCommand]) -> OmsResult<Vec<Placement>> {
        let mut state = lock(&self.state);
        let known: HashMap<TraceId, KnownOutcome> = commands
            .iter()
            .filter_map(|c| state.outcomes.get(&c.trace_id).map(|t| (c.trace_id, *t)))
            .collect();
        let snapshot: HashMap<ProductId, Product> = commands
            .iter()
            .flat_map(|c| c.items.iter())
            .filter_map(|l| state.products.get(&l.product_id).map(|p| (p.id, p.clone())))
            .collect();
        let bound: KeyBindings = commands
            .iter()
            .filter_map(|c| c.idempotency_binding())
            .filter_map(|b| state.keys.get(&b).map(|t| (b, *t)))
            .collect();
        let bought: Bought = limited_pairs(commands, &snapshot)
            .into_iter()
            .filter_map(|pair| state.bought.get(&pair).map(|u| (pair, *u)))
            .collect();
        let plan = plan_batch(commands, &snapshot, &known, &bound, &bought);

        // Check every decrement before changing anything.
        for d in &plan.decrements {
            match state.products.get(&d.product_id) {
                Some(p) if p.version == d.expected_version && p.stock >= d.quantity => {}
                _ => return Err(OmsError::Conflict(format!("product {}", d.product_id))),
            }
        }
        for d in &plan.decrements {
            if let Some(p) = state.products.get_mut(&d.product_id) {
                p.stock -= d.quantity;
                p.version += 1;
            }
        }
        for p in &plan.purchases {
            *state.bought.entry((p.member_id, p.product_id)).or_insert(0) += p.units;
        }
        let now = Utc::now();
        let mut ids = Vec::new();
        for (command, step) in commands.iter().zip(&plan.steps) {
            if let Step::Place(priced) = step {
                state.next_order_id += 1;
                let order_id = OrderId(state.next_order_id);
                ids.push(order_id);
                state.orders.insert(
                    order_id,
                    Order {
                        order_id,
                        trace_id: Some(command.trace_id),
                        member_id: command.member_id,
                        status: OrderStatus::PendingPayment,
                        order_date: now,
                        payment_due_at: now + self.payment_timeout,
                        payment: None,
                        payment_claim: None,
                        total_price: priced.total_price,
                        items: priced.items.clone(),
                        receiver_info: command.receiver_info.clone(),
                    },
                );
            }
        }
        let placements = resolve_placements(commands, &plan, ids.into_iter())?;
        for (command, step) in commands.iter().zip(&plan.steps) {
            if matches!(step, Step::Place(_) | Step::Fail(_)) {
                if let Some(binding) = command.idempotency_binding() {
                    state.keys.entry(binding).or_insert(command.trace_id);
                }
            }
        }
        for p in placements.iter().filter(|p| !p.replayed) {
            state
                .settled_at
                .insert(p.trace.trace_id, std::time::Instant::now());
            state.outcomes.insert(
                p.trace.trace_id,
                KnownOutcome {
                    trace: p.trace,
                    dead_lettered: false,
                },
            );
        }
        Ok(placements)
    }

    async fn settle_failure(&self, trace: &OrderTrace, dead_letter: bool) -> OmsResult<Placement> {
        let mut state = lock(&self.state);
        let replayed = state.outcomes.contains_key(&trace.trace_id);
        if !replayed {
            state
                .settled_at
                .insert(trace.trace_id, std::time::Instant::now());
        }
        let outcome = state
            .outcomes
            .entry(trace.trace_id)
            .or_insert(KnownOutcome {
                trace: *trace,
                dead_lettered: !dead_letter,
            });
        Ok(outcome.placement(replayed))
    }

    async fn mark_dead_lettered(&self, trace_ids: &[TraceId]) -> OmsResult<()> {
        let mut state = lock(&self.state);
        for id in trace_ids {
            if let Some(o) = state.outcomes.get_mut(id) {
                o.dead_lettered = true;
            }
        }
        Ok(())
    }

    async fn outcome(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        Ok(lock(&self.state).outcomes.get(&trace_id).map(|o| o.trace))
    }

    async fn order(&self, order_id: OrderId) -> OmsResult<Option<Order>> {
        Ok(lock(&self.state).orders.get(&order_id).cloned())
    }

    async fn orders_of(&self, member_id: MemberId, page: OrderPage) -> OmsResult<Vec<Order>> {
        Ok(lock(&self.state).newest(page, |o| o.member_id == member_id))
    }

    async fn trace_for_key(&self, member_id: MemberId, key: &str) -> OmsResult<Option<TraceId>> {
        Ok(lock(&self.state)
            .keys
            .get(&(member_id, key.to_owned()))
            .copied())
    }

    async fn undead_lettered(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        let state = lock(&self.state);
        let now = std::time::Instant::now();
        let mut due: Vec<(std::time::Instant, OrderTrace)> = state
            .outcomes
            .values()
            .filter(|o| o.placement(false).needs_dead_letter)
            .filter_map(|o| {
                let at = state.settled_at.get(&o.trace.trace_id).copied()?;
                (now.saturating_duration_since(at) >= older_than).then_some((at, o.trace))
            })
            .collect();
        due.sort_by_key(|(at, _)| *at);
        Ok(due.into_iter().take(limit).map(|(_, t)| t).collect())
    }
}

#[async_trait]
impl OrderAdminStore for InMemoryStore {
    async fn find_orders(&self, filter: &OrderFilter, page: OrderPage) -> OmsResult<Vec<Order>> {
        Ok(lock(&self.state).newest(page, |o| {
            filter.matches(o.status, o.items.iter().map(|i| i.product_id))
        }))
    }

    async fn held_units(&self, product_id: ProductId) -> OmsResult<HeldUnits> {
        let state = lock(&self.state);
        let mut held = HeldUnits::default();
        for order in state.orders.values() {
            let slot = match order.status {
                OrderStatus::PendingPayment => &mut held.pending_payment,
                OrderStatus::Paid => &mut held.paid,
                _ => continue,
            };
            *slot += order
                .items
                .iter()
                .filter(|i| i.product_id == product_id)
                .map(|i| i64::from(i.quantity))
                .sum::<i64>();
        }
        Ok(held)
    }
}

#[async_trait]
impl ProductStore for InMemoryStore {
    async fn create(&self, product: &Product) -> OmsResult<()> {
        let mut state = lock(&self.state);
        if state.products.contains_key(&product.id) {
            return Err(OmsError::ProductExists {
                product_id: product.id,
            });
        }
        state.products.insert(product.id, product.clone());
        Ok(())
    }

    async fn update(
        &self,
        product_id: ProductId,
        update: &ProductUpdate,
    ) -> OmsResult<ProductChange> {
        let mut state = lock(&self.state);
        let product = state
            .products
            .get_mut(&product_id)
            .ok_or(OmsError::ProductNotFound { product_id })?;
        let change = update.apply_to(product)?;
        *product = change.product.clone();
        Ok(change)
    }

    async fn get(&self, product_id: ProductId) -> OmsResult<Option<Product>> {
        Ok(lock(&self.state).products.get(&product_id).cloned())
    }

    async fn list(&self) -> OmsResult<Vec<Product>> {
        Ok(lock(&self.state).products.values().cloned().collect())
    }

    async fn purchases(&self, product_id: ProductId) -> OmsResult<Vec<Purchase>> {
        let state = lock(&self.state);
        let mut out: Vec<Purchase> = state
            .bought
            .iter()
            .filter(|((_, p), units)| *p == product_id && **units > 0)
            .map(|(&(member_id, product_id), &units)| Purchase {
                member_id,
                product_id,
                units,
            })
            .collect();
        out.sort_by_key(|p| p.member_id);
        Ok(out)
    }
}

#[async_trait]
impl HealthCheck for InMemoryStore {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> OmsResult<()> {
        Ok(())
    }
}

/// The life cycle in memory: the same rules as the database adapter.
mod lifecycle {
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};

    use super::{lock, InMemoryStore, State};
    use crate::domain::{
        LifecycleEvent, OmsError, OmsResult, Order, OrderEvent, OrderId, OrderStatus, Payment,
    };
    use crate::port::outbound::{Claim, LifecycleStore, StockReturn, Transitioned};

    impl State {
        fn order_mut(&mut self, order_id: OrderId) -> OmsResult<&mut Order> {
            self.orders
                .get_mut(&order_id)
                .ok_or(OmsError::OrderNotFound { order_id })
        }

        /// Moves the order to `to` with its effects: units back when `to`
        /// holds none, one event.
        fn apply(
            &mut self,
            order_id: OrderId,
            to: OrderStatus,
            at: DateTime<Utc>,
        ) -> OmsResult<Transitioned> {
            let order = self.order_mut(order_id)?;
            let from = order.status;
            order.status = to;
            let order = order.clone();
            let mut returned = Vec::new();
            if from.holds_stock() && !to.holds_stock() {
                for item in &order.items {
                    let units = i64::from(item.quantity);
                    if let Some(p) = self.products.get_mut(&item.product_id) {
                        p.stock += units;
                        p.version += 1;
                        returned.push(StockReturn {
                            product_id: p.id,
                            units,
                            stock: p.stock,
                            version: p.version,
                        });
                    }
                    if let Some(bought) = self.bought.get_mut(&(order.member_id, item.product_id)) {
                        *bought = (*bought - units).max(0);
                    }
                }
            }
            self.next_event_id += 1;
            let event = OrderEvent {
                event_id: self.next_event_id,
                order_id,
                member_id: order.member_id,
                from,
                to,
                at,
            };
            self.events.push((event, None, false));
            Ok(Transitioned {
                order,
                from,
                returned,
            })
        }
    }

    #[async_trait]
    impl LifecycleStore for InMemoryStore {
        async fn claim_payment(
            &self,
            order_id: OrderId,
            payment_key: &str,
            now: DateTime<Utc>,
        ) -> OmsResult<Claim> {
            let mut state = lock(&self.state);
            let order = state.order_mut(order_id)?;
            let claimable = order.status == OrderStatus::PendingPayment
                && order.payment_due_at > now
                && order
                    .payment_claim
                    .as_deref()
                    .is_none_or(|held| held == payment_key);
            if !claimable {
                return Ok(Claim::Refused(order.clone()));
            }
            if order.payment_claim.is_none() {
                order.payment_claim = Some(payment_key.to_owned());
                let order = order.clone();
                state.claimed_at.insert(order_id, now);
                return Ok(Claim::Claimed(order));
            }
            Ok(Claim::Claimed(order.clone()))
        }

        async fn settle_payment(
            &self,
            order_id: OrderId,
            payment_key: &str,
            payment: Option<Payment>,
        ) -> OmsResult<Option<Transitioned>> {
            let mut state = lock(&self.state);
            let order = state.order_mut(order_id)?;
            if order.payment_claim.as_deref() != Some(payment_key)
                || order.status != OrderStatus::PendingPayment
            {
                return Ok(None);
            }
            order.payment_claim = None;
            state.claimed_at.remove(&order_id);
            let Some(payment) = payment else {
                let order = state.order_mut(order_id)?.clone();
                return Ok(Some(Transitioned {
                    from: order.status,
                    order,
                    returned: Vec::new(),
                }));
            };
            let at = payment.approved_at;
            state.order_mut(order_id)?.payment = Some(payment);
            state.apply(order_id, OrderStatus::Paid, at).map(Some)
        }

        async fn transition(
            &self,
            order_id: OrderId,
            event: LifecycleEvent,
            now: DateTime<Utc>,
        ) -> OmsResult<Transitioned> {
            let mut state = lock(&self.state);
            let order = state.order_mut(order_id)?;
            if event == LifecycleEvent::Pay {
                // A payment settles through `settle_payment` only.
                return Err(OmsError::IllegalTransition {
                    from: order.status,
                    event,
                });
            }
            if order.payment_claim.is_some() && event != LifecycleEvent::Refund {
                return Err(OmsError::OrderNotCancellable {
                    order_id,
                    why: "its payment is being confirmed".into(),
                });
            }
            let to = order.status.after(event)?;
            state.apply(order_id, to, now)
        }

        async fn expire_due(
            &self,
            now: DateTime<Utc>,
            limit: usize,
        ) -> OmsResult<Vec<Transitioned>> {
            let mut state = lock(&self.state);
            let due: Vec<OrderId> = state
                .orders
                .values()
                .filter(|o| {
                    o.status == OrderStatus::PendingPayment
                        && o.payment_claim.is_none()
                        && o.payment_due_at <= now
                })
                .map(|o| o.order_id)
                .take(limit)
                .collect();
            due.into_iter()
                .map(|id| state.apply(id, OrderStatus::Expired, now))
                .collect()
        }

        async fn payments_in_doubt(
            &self,
            before: DateTime<Utc>,
            limit: usize,
        ) -> OmsResult<Vec<Order>> {
            let state = lock(&self.state);
            Ok(state
                .orders
                .values()
                .filter(|o| o.payment_claim.is_some())
                .filter(|o| {
                    state
                        .claimed_at
                        .get(&o.order_id)
                        .is_some_and(|at| *at < before)
                })
                .take(limit)
                .cloned()
                .collect())
        }

        async fn lease_events(
            &self,
            owner: &str,
            limit: usize,
            lease: Duration,
        ) -> OmsResult<Vec<crate::domain::OrderEvent>> {
            let mut state = lock(&self.state);
            let now = std::time::Instant::now();
            let mut out = Vec::new();
            for (event, leased, published) in state.events.iter_mut() {
                if out.len() >= limit {
                    break;
                }
                if *published
                    || leased
                        .as_ref()
                        .is_some_and(|(by, until)| by != owner && *until > now)
                {
                    continue;
                }
                *leased = Some((owner.to_owned(), now + lease));
                out.push(event.clone());
            }
            Ok(out)
        }

        async fn events_published(&self, event_ids: &[u64]) -> OmsResult<()> {
            let mut state = lock(&self.state);
            for (event, _, published) in state.events.iter_mut() {
                if event_ids.contains(&event.event_id) {
                    *published = true;
                }
            }
            Ok(())
        }
    }
}
