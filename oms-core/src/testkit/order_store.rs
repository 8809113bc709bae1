//! The contract of [`OrderStore`]: atomic, idempotent, in-order placement.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    FailureReason, OmsError, OrderPage, OrderStatus, OrderTrace, Placement, ProductId, TraceId,
    TraceState,
};
use crate::port::outbound::{OrderStore, ProductStore};

use super::{command, draft, random_member_id, random_product_id};

/// Runs every check of the order store contract. `orders` and `products`
/// are the same adapter seen through its two ports.
pub async fn run(orders: Arc<dyn OrderStore>, products: Arc<dyn ProductStore>) {
    places_an_order(&*orders, &*products).await;
    a_redelivered_trace_changes_nothing(&*orders, &*products).await;
    failures_are_recorded_and_take_no_stock(&*orders, &*products).await;
    an_order_takes_all_its_products_or_none(&*orders, &*products).await;
    a_settled_failure_wins_over_a_late_delivery(&*orders, &*products).await;
    failures_are_settled_in_batches(&*orders, &*products).await;
    a_batch_is_placed_in_order(&*orders, &*products).await;
    members_see_their_orders_newest_first(&*orders, &*products).await;
    members_page_through_their_orders(&*orders, &*products).await;
    an_idempotency_key_places_one_order_for_good(&*orders, &*products).await;
    unconfirmed_failures_are_in_the_outbox(&*orders, &*products).await;
    the_largest_batch_is_placed_in_one_call(&*orders, &*products).await;
    purchase_limits_hold_across_batches_and_redelivery(&*orders, &*products).await;
    orders_are_judged_by_the_window_at_acceptance(&*orders, &*products).await;
    concurrent_batches_never_oversell(orders.clone(), products.clone()).await;
    concurrent_batches_never_pass_a_limit(orders, products).await;
}

async fn limited_product(products: &dyn ProductStore, stock: i64, max: i64) -> ProductId {
    let id = random_product_id();
    let mut d = draft(&format!("limited {id}"), stock);
    d.rules.max_per_member = Some(max);
    products.create(&d.into_product(id)).await.unwrap();
    id
}

fn reason(p: &Placement) -> Option<FailureReason> {
    match p.trace.state {
        TraceState::Failed { reason } => Some(reason),
        _ => None,
    }
}

async fn product(products: &dyn ProductStore, stock: i64) -> ProductId {
    let id = random_product_id();
    products
        .create(&draft(&format!("product {id}"), stock).into_product(id))
        .await
        .unwrap();
    id
}

async fn stock(products: &dyn ProductStore, id: ProductId) -> i64 {
    products.get(id).await.unwrap().unwrap().stock
}

/// Places a batch, retrying lost optimistic locks as the service does.
pub async fn place(
    orders: &dyn OrderStore,
    batch: &[crate::domain::OrderCommand],
) -> Vec<Placement> {
    let mut delay = Duration::from_millis(1);
    loop {
        match orders.place_batch(batch).await {
            Err(OmsError::Conflict(_)) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            other => return other.unwrap(),
        }
    }
}

pub async fn places_an_order(orders: &dyn OrderStore, products: &dyn ProductStore) {
    let a = product(products, 10).await;
    let b = product(products, 10).await;
    let member = random_member_id();
    let cmd = command(member, &[(a, 2), (b, 1), (a, 1)]);
    let placed = place(orders, std::slice::from_ref(&cmd)).await;
    assert_eq!(placed.len(), 1);
    assert!(!placed[0].replayed);
    let TraceState::Completed { order_id } = placed[0].trace.state else {
        panic!("expected COMPLETED, got {:?}", placed[0].trace);
    };
    assert_eq!(placed[0].trace.trace_id, cmd.trace_id);
    assert_eq!(placed[0].trace.member_id, member);
    assert_eq!(stock(products, a).await, 7, "lines of a product are summed");
    assert_eq!(stock(products, b).await, 9);
    let pa = products.get(a).await.unwrap().unwrap();
    assert_eq!(pa.version, 1, "one decrement per product per batch");

    let order = orders.order(order_id).await.unwrap().unwrap();
    assert_eq!(order.order_id, order_id);
    assert_eq!(order.member_id, member);
    assert_eq!(order.status, OrderStatus::PendingPayment);
    assert_eq!(order.total_price, 4000);
    assert_eq!(order.items.len(), 2);
    assert_eq!(order.items[0].product_id, a);
    assert_eq!(order.items[0].quantity, 3);
    assert_eq!(order.items[0].price, 1000);
    assert_eq!(order.items[0].product_name, format!("product {a}"));
    assert_eq!(order.receiver_info, cmd.receiver_info);
    assert_eq!(
        orders.outcome(cmd.trace_id).await.unwrap(),
        Some(placed[0].trace)
    );
}

pub async fn a_redelivered_trace_changes_nothing(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 10).await;
    let member = random_member_id();
    let cmd = command(member, &[(a, 1)]);
    let first = place(orders, std::slice::from_ref(&cmd)).await;
    assert!(!first[0].needs_dead_letter);
    let again = place(orders, &[cmd.clone(), cmd.clone()]).await;
    assert!(again.iter().all(|p| p.replayed && !p.needs_dead_letter));
    assert!(again.iter().all(|p| p.trace == first[0].trace));
    assert_eq!(stock(products, a).await, 9, "no second decrement");
    assert_eq!(
        orders
            .orders_of(member, OrderPage::default())
            .await
            .unwrap()
            .len(),
        1,
        "no second order"
    );

    // Twice in one new batch: placed once.
    let twin = command(member, &[(a, 1)]);
    let placed = place(orders, &[twin.clone(), twin]).await;
    assert!(!placed[0].replayed && placed[1].replayed);
    assert_eq!(placed[0].trace, placed[1].trace);
    assert_eq!(stock(products, a).await, 8);
}

pub async fn failures_are_recorded_and_take_no_stock(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 1).await;
    let member = random_member_id();
    let too_many = command(member, &[(a, 2)]);
    let unknown = command(member, &[(random_product_id(), 1)]);
    let placed = place(orders, &[too_many.clone(), unknown.clone()]).await;
    assert_eq!(
        placed[0].trace.state,
        TraceState::Failed {
            reason: FailureReason::OutOfStock
        }
    );
    assert_eq!(
        placed[1].trace.state,
        TraceState::Failed {
            reason: FailureReason::ProductNotFound
        }
    );
    assert!(placed.iter().all(|p| p.needs_dead_letter));
    assert_eq!(stock(products, a).await, 1);
    assert_eq!(products.get(a).await.unwrap().unwrap().version, 0);
    // The failure is the record: it survives and is replayed, never re-judged.
    assert_eq!(
        orders.outcome(too_many.trace_id).await.unwrap(),
        Some(placed[0].trace)
    );
    assert_eq!(
        orders.outcome(unknown.trace_id).await.unwrap(),
        Some(placed[1].trace)
    );
    let again = place(orders, std::slice::from_ref(&too_many)).await;
    assert!(again[0].replayed);
    assert_eq!(again[0].trace, placed[0].trace);
    assert!(
        again[0].needs_dead_letter,
        "not confirmed: dead-letter it again"
    );
    orders
        .mark_dead_lettered(&[too_many.trace_id, unknown.trace_id])
        .await
        .unwrap();
    let again = place(orders, &[too_many, unknown]).await;
    assert!(again.iter().all(|p| p.replayed && !p.needs_dead_letter));
    assert!(orders
        .orders_of(member, OrderPage::default())
        .await
        .unwrap()
        .is_empty());
}

pub async fn a_settled_failure_wins_over_a_late_delivery(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 5).await;
    let late = command(random_member_id(), &[(a, 1)]);
    let tombstone = crate::domain::OrderTrace {
        trace_id: late.trace_id,
        member_id: late.member_id,
        state: TraceState::Failed {
            reason: FailureReason::NotAccepted,
        },
    };
    let settled = orders.settle_failure(&tombstone, false).await.unwrap();
    assert_eq!(settled.trace, tombstone);
    assert!(!settled.replayed && !settled.needs_dead_letter);
    let again = orders.settle_failure(&tombstone, true).await.unwrap();
    assert!(
        again.replayed && !again.needs_dead_letter,
        "the first writer's flag stands"
    );
    let placed = place(orders, std::slice::from_ref(&late)).await;
    assert!(placed[0].replayed && !placed[0].needs_dead_letter);
    assert_eq!(placed[0].trace, tombstone);
    assert_eq!(
        stock(products, a).await,
        5,
        "a settled trace never takes stock"
    );

    // The other way round: the placement stands.
    let early = command(random_member_id(), &[(a, 1)]);
    let placed = place(orders, std::slice::from_ref(&early)).await;
    let settled = orders
        .settle_failure(
            &crate::domain::OrderTrace {
                trace_id: early.trace_id,
                member_id: early.member_id,
                state: TraceState::Failed {
                    reason: FailureReason::NotAccepted,
                },
            },
            true,
        )
        .await
        .unwrap();
    assert!(settled.replayed && !settled.needs_dead_letter);
    assert_eq!(settled.trace, placed[0].trace);
    assert!(matches!(settled.trace.state, TraceState::Completed { .. }));

    // A failure that needs its DLQ record says so until it is confirmed.
    let lost = crate::domain::OrderTrace {
        trace_id: TraceId::new(),
        member_id: random_member_id(),
        state: TraceState::Failed {
            reason: FailureReason::Lost,
        },
    };
    let first = orders.settle_failure(&lost, true).await.unwrap();
    assert!(!first.replayed && first.needs_dead_letter);
    let second = orders.settle_failure(&lost, true).await.unwrap();
    assert!(second.replayed && second.needs_dead_letter);
    orders.mark_dead_lettered(&[lost.trace_id]).await.unwrap();
    let third = orders.settle_failure(&lost, true).await.unwrap();
    assert!(third.replayed && !third.needs_dead_letter);
    assert_eq!(third.trace, lost);
}

pub async fn failures_are_settled_in_batches(orders: &dyn OrderStore, products: &dyn ProductStore) {
    let id = product(products, 1).await;
    let member = random_member_id();
    let placed = place(orders, &[command(member, &[(id, 1)])]).await;
    let failed = |trace_id| OrderTrace {
        trace_id,
        member_id: member,
        state: TraceState::Failed {
            reason: FailureReason::OutOfStock,
        },
    };
    // None known yet: every one is new, its DLQ record due.
    let fresh = [failed(TraceId::new()), failed(TraceId::new())];
    let settled = orders.settle_failures(&fresh).await.unwrap();
    assert_eq!(settled.len(), 2);
    for (placement, trace) in settled.iter().zip(&fresh) {
        assert_eq!(placement.trace, *trace);
        assert!(!placement.replayed && placement.needs_dead_letter);
        assert_eq!(orders.outcome(trace.trace_id).await.unwrap(), Some(*trace));
    }
    // One trace already has an outcome (COMPLETED): it stands.
    let batch = vec![
        failed(TraceId::new()),
        failed(placed[0].trace.trace_id),
        failed(TraceId::new()),
    ];
    let settled = orders.settle_failures(&batch).await.unwrap();
    assert_eq!(settled.len(), 3);
    assert_eq!(settled[0].trace, batch[0]);
    assert!(!settled[0].replayed && settled[0].needs_dead_letter);
    assert_eq!(settled[1].trace, placed[0].trace);
    assert!(settled[1].replayed && !settled[1].needs_dead_letter);
    assert_eq!(settled[2].trace, batch[2]);
    for trace in [&batch[0], &batch[2]] {
        assert_eq!(orders.outcome(trace.trace_id).await.unwrap(), Some(*trace));
    }
    // Again: replayed, still needing the DLQ record until it is confirmed.
    let again = orders.settle_failures(&batch[..1]).await.unwrap();
    assert!(again[0].replayed && again[0].needs_dead_letter);
    orders
        .mark_dead_lettered(&[batch[0].trace_id])
        .await
        .unwrap();
    let confirmed = orders.settle_failures(&batch[..1]).await.unwrap();
    assert!(confirmed[0].replayed && !confirmed[0].needs_dead_letter);
    assert_eq!(stock(products, id).await, 0);
    assert!(orders.settle_failures(&[]).await.unwrap().is_empty());
}

pub async fn an_order_takes_all_its_products_or_none(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 5).await;
    let b = product(products, 1).await;
    let placed = place(orders, &[command(random_member_id(), &[(a, 1), (b, 2)])]).await;
    assert_eq!(
        placed[0].trace.state,
        TraceState::Failed {
            reason: FailureReason::OutOfStock
        }
    );
    assert_eq!(stock(products, a).await, 5);
    assert_eq!(stock(products, b).await, 1);
}

pub async fn a_batch_is_placed_in_order(orders: &dyn OrderStore, products: &dyn ProductStore) {
    let a = product(products, 3).await;
    let batch: Vec<_> = (0..5)
        .map(|_| command(random_member_id(), &[(a, 1)]))
        .collect();
    let placed = place(orders, &batch).await;
    let states: Vec<_> = placed.iter().map(|p| p.trace.state.status_str()).collect();
    assert_eq!(
        states,
        ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "FAILED"]
    );
    for (p, c) in placed.iter().zip(&batch) {
        assert_eq!(p.trace.trace_id, c.trace_id);
    }
    let ids: HashSet<_> = placed
        .iter()
        .filter_map(|p| match p.trace.state {
            TraceState::Completed { order_id } => Some(order_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3, "distinct order ids");
    assert_eq!(stock(products, a).await, 0);
    assert_eq!(products.get(a).await.unwrap().unwrap().version, 1);
}

pub async fn members_see_their_orders_newest_first(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 10).await;
    let member = random_member_id();
    let other = random_member_id();
    place(orders, &[command(member, &[(a, 1)])]).await;
    place(orders, &[command(other, &[(a, 1)])]).await;
    place(orders, &[command(member, &[(a, 2)])]).await;
    let mine = orders
        .orders_of(member, OrderPage::default())
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|o| o.member_id == member));
    assert!(mine[0].order_id > mine[1].order_id, "newest first");
    assert_eq!(mine[0].items[0].quantity, 2);
    assert_eq!(
        orders
            .orders_of(other, OrderPage::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn concurrent_batches_never_oversell(
    orders: Arc<dyn OrderStore>,
    products: Arc<dyn ProductStore>,
) {
    let a = product(&*products, 40).await;
    let b = product(&*products, 40).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let orders = orders.clone();
        tasks.push(tokio::spawn(async move {
            let batch: Vec<_> = (0..10)
                .map(|_| command(random_member_id(), &[(a, 1), (b, 1)]))
                .collect();
            place(&*orders, &batch).await
        }));
    }
    let mut completed = 0;
    let mut failed = 0;
    for t in tasks {
        for p in t.await.unwrap() {
            match p.trace.state {
                TraceState::Completed { .. } => completed += 1,
                TraceState::Failed {
                    reason: FailureReason::OutOfStock,
                } => failed += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(completed, 40, "every unit sold, none twice");
    assert_eq!(failed, 40);
    assert_eq!(stock(&*products, a).await, 0);
    assert_eq!(stock(&*products, b).await, 0);
}

pub async fn members_page_through_their_orders(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 10).await;
    let member = random_member_id();
    for _ in 0..5 {
        place(orders, &[command(member, &[(a, 1)])]).await;
    }
    let first = orders
        .orders_of(member, OrderPage::first(2).unwrap())
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let second = orders
        .orders_of(
            member,
            OrderPage::first(2).unwrap().after(Some(first[1].order_id)),
        )
        .await
        .unwrap();
    let rest = orders
        .orders_of(
            member,
            OrderPage::first(100)
                .unwrap()
                .after(Some(second[1].order_id)),
        )
        .await
        .unwrap();
    let ids: Vec<_> = first
        .iter()
        .chain(&second)
        .chain(&rest)
        .map(|o| o.order_id)
        .collect();
    assert_eq!(ids.len(), 5, "every order once");
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first across pages"
    );
}

pub async fn an_idempotency_key_places_one_order_for_good(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = product(products, 10).await;
    let member = random_member_id();
    let key = format!("key-{}", TraceId::new());
    let keyed = || command(member, &[(a, 1)]).with_idempotency_key(Some(key.clone()));
    let first = keyed();
    assert_eq!(orders.trace_for_key(member, &key).await.unwrap(), None);
    let placed = place(orders, std::slice::from_ref(&first)).await;
    assert!(matches!(
        placed[0].trace.state,
        TraceState::Completed { .. }
    ));
    assert_eq!(
        orders.trace_for_key(member, &key).await.unwrap(),
        Some(first.trace_id)
    );
    // Another trace with the key (the cache forgot it), alone or in a
    // batch with a second one: nothing placed.
    let (second, third) = (keyed(), keyed());
    let placed = place(orders, &[second, third]).await;
    for p in &placed {
        assert_eq!(
            p.trace.state,
            TraceState::Failed {
                reason: FailureReason::Duplicate
            }
        );
    }
    assert_eq!(stock(products, a).await, 9);
    // Keys are case-sensitive and per member.
    let upper = command(member, &[(a, 1)]).with_idempotency_key(Some(key.to_uppercase()));
    let other = command(random_member_id(), &[(a, 1)]).with_idempotency_key(Some(key.clone()));
    let placed = place(orders, &[upper, other]).await;
    assert!(placed
        .iter()
        .all(|p| matches!(p.trace.state, TraceState::Completed { .. })));
    assert_eq!(stock(products, a).await, 7);
}

pub async fn unconfirmed_failures_are_in_the_outbox(
    orders: &dyn OrderStore,
    _products: &dyn ProductStore,
) {
    let member = random_member_id();
    let failed = |reason| OrderTrace {
        trace_id: TraceId::new(),
        member_id: member,
        state: TraceState::Failed { reason },
    };
    let (needs, confirmed, none) = (
        failed(FailureReason::NotAccepted),
        failed(FailureReason::Lost),
        failed(FailureReason::NotAccepted),
    );
    orders.settle_failure(&needs, true).await.unwrap();
    orders.settle_failure(&confirmed, true).await.unwrap();
    orders.settle_failure(&none, false).await.unwrap();
    orders
        .mark_dead_lettered(&[confirmed.trace_id])
        .await
        .unwrap();
    let due = orders
        .undead_lettered(Duration::ZERO, 100_000)
        .await
        .unwrap();
    assert!(due.contains(&needs), "an unconfirmed failure is due");
    assert!(!due.iter().any(|t| t.trace_id == confirmed.trace_id));
    assert!(!due.iter().any(|t| t.trace_id == none.trace_id));
    let later = orders
        .undead_lettered(Duration::from_secs(3600), 100_000)
        .await
        .unwrap();
    assert!(
        !later.iter().any(|t| t.trace_id == needs.trace_id),
        "not before its age"
    );
    orders.mark_dead_lettered(&[needs.trace_id]).await.unwrap();
}

/// The largest consumer batch (`OMS_CONSUMER_BATCH` = 10,000) is placed in
/// one call: no statement may outgrow the database's placeholder limit.
pub async fn the_largest_batch_is_placed_in_one_call(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    const LARGEST: usize = 10_000;
    let a = product(products, LARGEST as i64).await;
    let batch: Vec<_> = (0..LARGEST)
        .map(|_| command(random_member_id(), &[(a, 1)]))
        .collect();
    let placed = place(orders, &batch).await;
    assert_eq!(placed.len(), LARGEST);
    assert!(placed
        .iter()
        .all(|p| matches!(p.trace.state, TraceState::Completed { .. })));
    assert_eq!(stock(products, a).await, 0);
    let again = place(orders, &batch).await;
    assert!(again.iter().all(|p| p.replayed), "a redelivery replays all");
}

pub async fn purchase_limits_hold_across_batches_and_redelivery(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let a = limited_product(products, 100, 2).await;
    let free = product(products, 100).await;
    let (member, other) = (random_member_id(), random_member_id());
    let first = command(member, &[(a, 1), (free, 10)]);
    assert_eq!(
        reason(&place(orders, std::slice::from_ref(&first)).await[0]),
        None
    );
    let batch = vec![
        command(member, &[(a, 1)]),
        command(member, &[(a, 1)]),
        command(other, &[(a, 2)]),
        command(member, &[(free, 10)]),
    ];
    let placed = place(orders, &batch).await;
    let reasons: Vec<_> = placed.iter().map(reason).collect();
    assert_eq!(
        reasons,
        vec![None, Some(FailureReason::LimitExceeded), None, None]
    );
    // A redelivery is a replay: it counts nothing again.
    let again = place(orders, std::slice::from_ref(&first)).await;
    assert!(again[0].replayed);
    assert_eq!(stock(products, a).await, 96);
    assert_eq!(stock(products, free).await, 80);
    let mut bought = products.purchases(a).await.unwrap();
    bought.sort_by_key(|p| p.member_id);
    let mut expected = vec![
        crate::domain::Purchase {
            member_id: member,
            product_id: a,
            units: 2,
        },
        crate::domain::Purchase {
            member_id: other,
            product_id: a,
            units: 2,
        },
    ];
    expected.sort_by_key(|p| p.member_id);
    assert_eq!(bought, expected);
}

pub async fn orders_are_judged_by_the_window_at_acceptance(
    orders: &dyn OrderStore,
    products: &dyn ProductStore,
) {
    let now = chrono::Utc::now();
    let window = |start: i64, end: i64| {
        let mut d = draft("windowed", 10);
        d.rules.sale_starts_at = Some(now + chrono::Duration::minutes(start));
        d.rules.sale_ends_at = Some(now + chrono::Duration::minutes(end));
        d
    };
    let (later, ended) = (random_product_id(), random_product_id());
    products
        .create(&window(60, 120).into_product(later))
        .await
        .unwrap();
    products
        .create(&window(-120, -60).into_product(ended))
        .await
        .unwrap();
    let member = random_member_id();
    let mut in_time = command(member, &[(ended, 1)]);
    in_time.requested_at = now - chrono::Duration::minutes(90);
    let batch = vec![
        command(member, &[(later, 1)]),
        command(member, &[(ended, 1)]),
        in_time,
    ];
    let placed = place(orders, &batch).await;
    let reasons: Vec<_> = placed.iter().map(reason).collect();
    assert_eq!(
        reasons,
        vec![
            Some(FailureReason::SaleNotStarted),
            Some(FailureReason::SaleEnded),
            None
        ],
        "accepted inside the window, placed after it: the order stands"
    );
    assert_eq!(stock(products, later).await, 10);
    assert_eq!(stock(products, ended).await, 9);
}

pub async fn concurrent_batches_never_pass_a_limit(
    orders: Arc<dyn OrderStore>,
    products: Arc<dyn ProductStore>,
) {
    let a = limited_product(&*products, 1000, 3).await;
    let member = random_member_id();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let orders = orders.clone();
        tasks.push(tokio::spawn(async move {
            let batch: Vec<_> = (0..5)
                .map(|i| {
                    let who = if i % 2 == 0 {
                        member
                    } else {
                        random_member_id()
                    };
                    command(who, &[(a, 1)])
                })
                .collect();
            place(&*orders, &batch).await
        }));
    }
    let mut sold_to_member = 0;
    let mut sold = 0;
    for t in tasks {
        for p in t.await.unwrap() {
            if let TraceState::Completed { .. } = p.trace.state {
                sold += 1;
                if p.trace.member_id == member {
                    sold_to_member += 1;
                }
            }
        }
    }
    assert_eq!(sold_to_member, 3, "exactly the limit, never more");
    assert_eq!(sold, 3 + 16);
    assert_eq!(stock(&*products, a).await, 1000 - sold);
}
