//! Planning a batch of orders against a snapshot of stock.
//!
//! Every persistence adapter places a batch the same way: read the outcomes
//! already recorded for the batch's trace ids and the products it names, run
//! [`plan_batch`] on that snapshot, then apply the plan atomically: one
//! conditional, versioned decrement per product
//! (`stock = stock - total, version = version + 1 WHERE version = seen AND
//! stock >= total`), the new orders, and an outcome for every new trace. If any
//! decrement finds the version moved, the whole batch is rolled back and
//! reported as [`OmsError::Conflict`].

use std::collections::HashMap;

use super::{
    FailureReason, MemberId, OmsError, OrderCommand, OrderPriceCalculator, OrderTrace, PricedOrder,
    Product, ProductId, Purchase, TraceId, TraceState,
};

/// One aggregated, versioned stock decrement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockDecrement {
    /// The product.
    pub product_id: ProductId,
    /// Units taken by the whole batch.
    pub quantity: i64,
    /// The version the snapshot saw.
    pub expected_version: i64,
}

/// An outcome recorded before, as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownOutcome {
    /// The final trace.
    pub trace: OrderTrace,
    /// Whether its DLQ record is confirmed sent (FAILED outcomes only).
    pub dead_lettered: bool,
}

impl KnownOutcome {
    /// The placement this outcome stands for; `replayed` tells whether it
    /// was recorded before the call that returns it.
    pub fn placement(&self, replayed: bool) -> Placement {
        Placement {
            trace: self.trace,
            replayed,
            needs_dead_letter: matches!(self.trace.state, TraceState::Failed { .. })
                && !self.dead_lettered,
        }
    }
}

/// What happens to one command of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The trace has an outcome already (an earlier delivery): return it.
    Replay(KnownOutcome),
    /// The same trace appears earlier in this batch: return that one's outcome.
    SameAs(usize),
    /// Place the order.
    Place(PricedOrder),
    /// Record a failure.
    Fail(FailureReason),
}

/// The plan of a batch: steps in input order and the decrements to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// One step per command, same order as the input.
    pub steps: Vec<Step>,
    /// One decrement per product that loses stock.
    pub decrements: Vec<StockDecrement>,
    /// Units the batch adds to members' purchases of products with a
    /// purchase limit, one entry per member and product, in a fixed order.
    pub purchases: Vec<Purchase>,
}

/// The outcome of one command of a placed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The trace's final state.
    pub trace: OrderTrace,
    /// `true` when the outcome was recorded before (a redelivery): nothing was
    /// changed.
    pub replayed: bool,
    /// `true` for a FAILED outcome whose DLQ record is not confirmed yet: the
    /// caller sends it, then confirms with
    /// [`OrderStore::mark_dead_lettered`](crate::port::outbound::OrderStore::mark_dead_lettered).
    /// A redelivery after a crash in between sends it again (at least once).
    pub needs_dead_letter: bool,
}

/// The traces that idempotency keys are bound to, by member and key.
pub type KeyBindings = HashMap<(MemberId, String), TraceId>;

/// Units members bought before, by member and product.
pub type Bought = HashMap<(MemberId, ProductId), i64>;

/// The member and product pairs of `commands` whose purchases the store
/// reads for [`plan_batch`]: those of products with a purchase limit.
pub fn limited_pairs(
    commands: &[OrderCommand],
    products: &HashMap<ProductId, Product>,
) -> Vec<(MemberId, ProductId)> {
    let mut pairs: Vec<(MemberId, ProductId)> = commands
        .iter()
        .flat_map(|c| c.items.iter().map(move |l| (c.member_id, l.product_id)))
        .filter(|(_, p)| {
            products
                .get(p)
                .is_some_and(|p| p.rules.max_per_member.is_some())
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Plans `commands` in order against `products` (the current rows of every
/// product the batch names), `known` (outcomes already recorded), `bound`
/// (the traces the batch's idempotency keys are bound to already) and
/// `bought` (the purchases of the [`limited_pairs`]).
///
/// A command whose key is bound to another trace — earlier, or by an
/// earlier command of the batch — fails [`FailureReason::Duplicate`] and
/// takes nothing; the store binds the keys of the other new commands.
/// A command accepted outside a product's sale window fails
/// `SALE_NOT_STARTED` / `SALE_ENDED`; one that would take its member past a
/// product's `maxPerMember` (counting what they bought before and earlier
/// in the batch) fails `LIMIT_EXCEEDED`.
pub fn plan_batch(
    commands: &[OrderCommand],
    products: &HashMap<ProductId, Product>,
    known: &HashMap<TraceId, KnownOutcome>,
    bound: &KeyBindings,
    bought: &Bought,
) -> BatchPlan {
    let mut taken: HashMap<ProductId, i64> = HashMap::new();
    let mut added: Bought = HashMap::new();
    let mut first_seen: HashMap<TraceId, usize> = HashMap::new();
    let mut claimed: KeyBindings = HashMap::new();
    let mut steps = Vec::with_capacity(commands.len());
    for (i, command) in commands.iter().enumerate() {
        if let Some(outcome) = known.get(&command.trace_id) {
            steps.push(Step::Replay(*outcome));
            continue;
        }
        if let Some(&first) = first_seen.get(&command.trace_id) {
            steps.push(Step::SameAs(first));
            continue;
        }
        first_seen.insert(command.trace_id, i);
        if let Some(binding) = command.idempotency_binding() {
            let holder = bound.get(&binding).or_else(|| claimed.get(&binding));
            if holder.is_some_and(|t| *t != command.trace_id) {
                steps.push(Step::Fail(FailureReason::Duplicate));
                continue;
            }
            claimed.insert(binding, command.trace_id);
        }
        if command.validate().is_err() {
            steps.push(Step::Fail(FailureReason::Invalid));
            continue;
        }
        if let Some(reason) = rules_refuse(command, products, bought, &added) {
            steps.push(Step::Fail(reason));
            continue;
        }
        let priced = OrderPriceCalculator::price(
            &command.items,
            |id| products.get(&id),
            |p| p.stock - taken.get(&p.id).copied().unwrap_or(0),
        );
        match priced {
            Ok(priced) => {
                for item in &priced.items {
                    let units = i64::from(item.quantity);
                    *taken.entry(item.product_id).or_insert(0) += units;
                    let limited = products
                        .get(&item.product_id)
                        .is_some_and(|p| p.rules.max_per_member.is_some());
                    if limited {
                        *added
                            .entry((command.member_id, item.product_id))
                            .or_insert(0) += units;
                    }
                }
                steps.push(Step::Place(priced));
            }
            Err(e) => steps.push(Step::Fail(
                FailureReason::of(&e).unwrap_or(FailureReason::Invalid),
            )),
        }
    }
    let mut decrements: Vec<StockDecrement> = taken
        .into_iter()
        .filter_map(|(product_id, quantity)| {
            products.get(&product_id).map(|p| StockDecrement {
                product_id,
                quantity,
                expected_version: p.version,
            })
        })
        .collect();
    // A fixed order keeps row locks in the same order across writers.
    decrements.sort_by_key(|d| d.product_id);
    let mut purchases: Vec<Purchase> = added
        .into_iter()
        .map(|((member_id, product_id), units)| Purchase {
            member_id,
            product_id,
            units,
        })
        .collect();
    purchases.sort_by_key(|p| (p.product_id, p.member_id));
    BatchPlan {
        steps,
        decrements,
        purchases,
    }
}

/// The sale rule `command` breaks, if any: a line outside its product's
/// window (judged at the time the order was accepted), or over its
/// purchase limit.
fn rules_refuse(
    command: &OrderCommand,
    products: &HashMap<ProductId, Product>,
    bought: &Bought,
    added: &Bought,
) -> Option<FailureReason> {
    for (product_id, units) in command.units_by_product() {
        let Some(product) = products.get(&product_id) else {
            continue; // pricing answers PRODUCT_NOT_FOUND
        };
        if let Err(reason) = product.rules.window_admits(command.requested_at) {
            return Some(reason);
        }
        let pair = (command.member_id, product_id);
        let before =
            bought.get(&pair).copied().unwrap_or(0) + added.get(&pair).copied().unwrap_or(0);
        let units = i64::try_from(units).unwrap_or(i64::MAX);
        if !product.rules.limit_admits(before, units) {
            return Some(FailureReason::LimitExceeded);
        }
    }
    None
}

/// Resolves the steps of a plan into placements, given the order id each
/// `Place` step received (in step order).
pub fn resolve_placements(
    commands: &[OrderCommand],
    plan: &BatchPlan,
    mut order_ids: impl Iterator<Item = super::OrderId>,
) -> Result<Vec<Placement>, OmsError> {
    let mut out: Vec<Placement> = Vec::with_capacity(commands.len());
    for (command, step) in commands.iter().zip(&plan.steps) {
        let placement = match step {
            Step::Replay(known) => known.placement(true),
            Step::SameAs(first) => {
                let first = out
                    .get(*first)
                    .ok_or_else(|| OmsError::Internal("batch plan refers forward".into()))?;
                Placement {
                    trace: first.trace,
                    replayed: true,
                    needs_dead_letter: false,
                }
            }
            Step::Place(_) => {
                let order_id = order_ids
                    .next()
                    .ok_or_else(|| OmsError::Internal("fewer order ids than orders".into()))?;
                Placement {
                    trace: OrderTrace {
                        trace_id: command.trace_id,
                        member_id: command.member_id,
                        state: TraceState::Completed { order_id },
                    },
                    replayed: false,
                    needs_dead_letter: false,
                }
            }
            Step::Fail(reason) => Placement {
                trace: OrderTrace {
                    trace_id: command.trace_id,
                    member_id: command.member_id,
                    state: TraceState::Failed { reason: *reason },
                },
                replayed: false,
                needs_dead_letter: true,
            },
        };
        out.push(placement);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberId, OrderLine, OrderRequest, ReceiverInfo};

    fn cmd(member: u64, lines: &[(u64, u32)]) -> OrderCommand {
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

    fn products(stock: &[(u64, i64)]) -> HashMap<ProductId, Product> {
        stock
            .iter()
            .map(|&(id, s)| {
                (
                    ProductId(id),
                    Product {
                        id: ProductId(id),
                        name: format!("p{id}"),
                        price: 10,
                        stock: s,
                        version: 7,
                        rules: Default::default(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_stock_in_order_and_aggregates_decrements() {
        let cmds = vec![
            cmd(1, &[(1, 2), (2, 1)]),
            cmd(2, &[(1, 2)]),
            cmd(3, &[(2, 1)]),
        ];
        let plan = plan_batch(
            &cmds,
            &products(&[(1, 3), (2, 5)]),
            &HashMap::new(),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert!(matches!(plan.steps[0], Step::Place(_)));
        assert_eq!(plan.steps[1], Step::Fail(FailureReason::OutOfStock));
        assert!(matches!(plan.steps[2], Step::Place(_)));
        assert_eq!(
            plan.decrements,
            vec![
                StockDecrement {
                    product_id: ProductId(1),
                    quantity: 2,
                    expected_version: 7
                },
                StockDecrement {
                    product_id: ProductId(2),
                    quantity: 2,
                    expected_version: 7
                },
            ]
        );
    }

    #[test]
    fn known_and_repeated_traces_are_replayed() {
        let a = cmd(1, &[(1, 1)]);
        let done = OrderTrace {
            trace_id: a.trace_id,
            member_id: a.member_id,
            state: TraceState::Failed {
                reason: FailureReason::OutOfStock,
            },
        };
        let b = cmd(2, &[(1, 1)]);
        let cmds = vec![a.clone(), b.clone(), b];
        let outcome = KnownOutcome {
            trace: done,
            dead_lettered: false,
        };
        let known = HashMap::from([(a.trace_id, outcome)]);
        let plan = plan_batch(
            &cmds,
            &products(&[(1, 5)]),
            &known,
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(plan.steps[0], Step::Replay(outcome));
        assert_eq!(plan.steps[2], Step::SameAs(1));
        assert_eq!(plan.decrements[0].quantity, 1);
        let placed =
            resolve_placements(&cmds, &plan, [crate::domain::OrderId(9)].into_iter()).unwrap();
        assert!(placed[0].replayed);
        assert!(
            placed[0].needs_dead_letter,
            "an unconfirmed failure is dead-lettered again"
        );
        assert!(!placed[1].replayed);
        assert!(placed[2].replayed);
        assert_eq!(placed[2].trace, placed[1].trace);
    }

    #[test]
    fn unknown_products_and_invalid_commands_fail_without_taking_stock() {
        let mut bad = cmd(1, &[(1, 1)]);
        bad.items[0].quantity = 0;
        let cmds = vec![cmd(1, &[(1, 1), (9, 1)]), bad];
        let plan = plan_batch(
            &cmds,
            &products(&[(1, 5)]),
            &HashMap::new(),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(plan.steps[0], Step::Fail(FailureReason::ProductNotFound));
        assert_eq!(plan.steps[1], Step::Fail(FailureReason::Invalid));
        assert!(plan.decrements.is_empty());
    }

    #[test]
    fn a_key_bound_to_another_trace_places_nothing() {
        let keyed = |member| cmd(member, &[(1, 1)]).with_idempotency_key(Some("k".into()));
        let (first, retry, other_member) = (keyed(1), keyed(1), keyed(2));
        let earlier = keyed(1);
        let bound = HashMap::from([((MemberId(1), "k".to_string()), earlier.trace_id)]);
        // Bound before: the new trace with the same key is a duplicate.
        let plan = plan_batch(
            std::slice::from_ref(&first),
            &products(&[(1, 5)]),
            &HashMap::new(),
            &bound,
            &HashMap::new(),
        );
        assert_eq!(plan.steps[0], Step::Fail(FailureReason::Duplicate));
        assert!(plan.decrements.is_empty());
        // The bound trace itself places; within a batch the first one wins;
        // another member's key is another binding.
        let cmds = vec![earlier, retry, other_member];
        let plan = plan_batch(
            &cmds,
            &products(&[(1, 5)]),
            &HashMap::new(),
            &bound,
            &HashMap::new(),
        );
        assert!(matches!(plan.steps[0], Step::Place(_)));
        assert_eq!(plan.steps[1], Step::Fail(FailureReason::Duplicate));
        assert!(matches!(plan.steps[2], Step::Place(_)));
        assert_eq!(plan.decrements[0].quantity, 2);
    }

    #[test]
    fn limits_count_earlier_purchases_and_the_batch_and_windows_the_accept_time() {
        let mut catalogue = products(&[(1, 100), (2, 100)]);
        if let Some(p) = catalogue.get_mut(&ProductId(1)) {
            p.rules.max_per_member = Some(2);
        }
        let bought = HashMap::from([((MemberId(1), ProductId(1)), 1)]);
        let cmds = vec![
            cmd(1, &[(1, 1)]),         // 1 + 1 = 2: fine
            cmd(1, &[(1, 1)]),         // 3: over
            cmd(2, &[(1, 1), (1, 1)]), // 2 in one order: fine
            cmd(2, &[(2, 50)]),        // no limit on 2
            cmd(3, &[(1, 3)]),         // over at once
        ];
        assert_eq!(
            limited_pairs(&cmds, &catalogue),
            vec![
                (MemberId(1), ProductId(1)),
                (MemberId(2), ProductId(1)),
                (MemberId(3), ProductId(1))
            ]
        );
        let plan = plan_batch(&cmds, &catalogue, &HashMap::new(), &HashMap::new(), &bought);
        assert!(matches!(plan.steps[0], Step::Place(_)));
        assert_eq!(plan.steps[1], Step::Fail(FailureReason::LimitExceeded));
        assert!(matches!(plan.steps[2], Step::Place(_)));
        assert!(matches!(plan.steps[3], Step::Place(_)));
        assert_eq!(plan.steps[4], Step::Fail(FailureReason::LimitExceeded));
        assert_eq!(
            plan.purchases,
            vec![
                Purchase {
                    member_id: MemberId(1),
                    product_id: ProductId(1),
                    units: 1
                },
                Purchase {
                    member_id: MemberId(2),
                    product_id: ProductId(1),
                    units: 2
                },
            ]
        );
        assert_eq!(plan.decrements[0].quantity, 3);

        // An order accepted before the window opened fails, whenever it is
        // processed.
        if let Some(p) = catalogue.get_mut(&ProductId(2)) {
            p.rules.sale_starts_at = Some(chrono::Utc::now() + chrono::Duration::hours(1));
        }
        let plan = plan_batch(
            &[cmd(5, &[(2, 1)])],
            &catalogue,
            &HashMap::new(),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(plan.steps[0], Step::Fail(FailureReason::SaleNotStarted));
        assert!(plan.decrements.is_empty());
    }
}
