use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::lock;
use crate::domain::placement::{
    limited_pairs, plan_batch, resolve_placements, Bought, KeyBindings, Step,
};
use crate::domain::{
    KnownOutcome, MemberId, OmsError, OmsResult, Order, OrderCommand, OrderId, OrderPage,
    OrderStatus, OrderTrace, Placement, Product, ProductChange, ProductId, ProductUpdate, Purchase,
    TraceId,
};
use crate::port::outbound::{HealthCheck, OrderStore, ProductStore};

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<ProductId, Product>,
    orders: BTreeMap<OrderId, Order>,
    outcomes: HashMap<TraceId, KnownOutcome>,
    keys: KeyBindings,
    bought: Bought,
    settled_at: HashMap<TraceId, std::time::Instant>,
    next_order_id: u64,
}

/// [`OrderStore`] and [`ProductStore`] in memory, with the same batch
/// semantics as the database adapter (one lock is the transaction).
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
                        status: OrderStatus::Ordered,
                        order_date: now,
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
        let state = lock(&self.state);
        let below = match page.before {
            Some(before) => state.orders.range(..before),
            None => state.orders.range(..),
        };
        Ok(below
            .rev()
            .map(|(_, o)| o)
            .filter(|o| o.member_id == member_id)
            .take(page.limit)
            .cloned()
            .collect())
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
