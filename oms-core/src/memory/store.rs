use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::lock;
use crate::domain::placement::{plan_batch, resolve_placements, Step};
use crate::domain::{
    KnownOutcome, MemberId, OmsError, OmsResult, Order, OrderCommand, OrderId, OrderStatus,
    OrderTrace, Placement, Product, ProductDraft, ProductId, TraceId,
};
use crate::port::outbound::{HealthCheck, OrderStore, ProductStore};

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<ProductId, Product>,
    orders: BTreeMap<OrderId, Order>,
    outcomes: HashMap<TraceId, KnownOutcome>,
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
        let plan = plan_batch(commands, &snapshot, &known);

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
        for p in placements.iter().filter(|p| !p.replayed) {
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

    async fn orders_of(&self, member_id: MemberId) -> OmsResult<Vec<Order>> {
        Ok(lock(&self.state)
            .orders
            .values()
            .rev()
            .filter(|o| o.member_id == member_id)
            .cloned()
            .collect())
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

    async fn update(&self, product_id: ProductId, draft: &ProductDraft) -> OmsResult<Product> {
        let mut state = lock(&self.state);
        let product = state
            .products
            .get_mut(&product_id)
            .ok_or(OmsError::ProductNotFound { product_id })?;
        product.name = draft.name.clone();
        product.price = draft.price;
        product.stock = draft.stock;
        product.version += 1;
        Ok(product.clone())
    }

    async fn get(&self, product_id: ProductId) -> OmsResult<Option<Product>> {
        Ok(lock(&self.state).products.get(&product_id).cloned())
    }

    async fn list(&self) -> OmsResult<Vec<Product>> {
        Ok(lock(&self.state).products.values().cloned().collect())
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
