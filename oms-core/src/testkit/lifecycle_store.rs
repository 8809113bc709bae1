//! The contract of [`LifecycleStore`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    LifecycleEvent, OmsError, Order, OrderId, OrderStatus, Payment, ProductId, TraceState,
};
use crate::port::outbound::{Claim, LifecycleStore, OrderStore, ProductStore};

use super::order_store::place;
use super::{command, draft, random_member_id, random_product_id};

/// The three faces of one store.
pub struct Stores {
    pub orders: Arc<dyn OrderStore>,
    pub products: Arc<dyn ProductStore>,
    pub lifecycle: Arc<dyn LifecycleStore>,
}

/// Runs every check of the life cycle contract on a store whose orders are
/// due for payment `timeout` after placement.
pub async fn run(stores: &Stores, timeout: Duration) {
    placed_orders_wait_for_their_payment(stores, timeout).await;
    a_claimed_payment_settles_once(stores).await;
    a_declined_payment_leaves_the_order_payable(stores).await;
    cancelling_gives_the_units_back_once(stores).await;
    a_paid_order_is_refunded_with_its_units(stores).await;
    a_payment_in_doubt_is_neither_cancelled_nor_expired(stores, timeout).await;
    overdue_orders_expire_in_batches(stores, timeout).await;
    confirm_racing_expiry_has_one_winner(stores, timeout, 20).await;
    events_are_leased_then_published_once(stores).await;
}

async fn product(stores: &Stores, stock: i64, max: Option<i64>) -> ProductId {
    let id = random_product_id();
    let mut d = draft(&format!("life {id}"), stock);
    d.rules.max_per_member = max;
    stores.products.create(&d.into_product(id)).await.unwrap();
    id
}

/// Places one order of `units` of `product`; returns it.
async fn order(stores: &Stores, product: ProductId, units: u32) -> Order {
    let placed = place(
        &*stores.orders,
        &[command(random_member_id(), &[(product, units)])],
    )
    .await;
    let TraceState::Completed { order_id } = placed[0].trace.state else {
        panic!("not placed: {:?}", placed[0]);
    };
    stores.orders.order(order_id).await.unwrap().unwrap()
}

async fn status(stores: &Stores, id: OrderId) -> OrderStatus {
    stores.orders.order(id).await.unwrap().unwrap().status
}

async fn stock(stores: &Stores, id: ProductId) -> i64 {
    stores.products.get(id).await.unwrap().unwrap().stock
}

fn payment(key: &str, amount: i64) -> Payment {
    // Whole milliseconds: what any store keeps of an instant.
    let approved_at = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    Payment {
        payment_key: key.to_owned(),
        amount,
        approved_at,
    }
}

fn key() -> String {
    format!("pay-{}", uuid::Uuid::new_v4().simple())
}

pub async fn placed_orders_wait_for_their_payment(stores: &Stores, timeout: Duration) {
    let p = product(stores, 10, None).await;
    let o = order(stores, p, 1).await;
    assert_eq!(o.status, OrderStatus::PendingPayment);
    assert_eq!(o.payment, None);
    let due = o.payment_due_at - o.order_date;
    let expected = chrono::Duration::from_std(timeout).unwrap();
    assert!(
        (due - expected).num_milliseconds().abs() <= 1000,
        "due {due} after placement, not {expected}"
    );
}

pub async fn a_claimed_payment_settles_once(stores: &Stores) {
    let p = product(stores, 10, None).await;
    let o = order(stores, p, 2).await;
    let (k, other) = (key(), key());
    let now = Utc::now();
    let life = &*stores.lifecycle;
    assert!(matches!(
        life.claim_payment(o.order_id, &k, now).await.unwrap(),
        Claim::Claimed(_)
    ));
    // A retry with the same key holds the claim; another key is refused.
    assert!(matches!(
        life.claim_payment(o.order_id, &k, now).await.unwrap(),
        Claim::Claimed(_)
    ));
    assert!(matches!(
        life.claim_payment(o.order_id, &other, now).await.unwrap(),
        Claim::Refused(_)
    ));
    let paid = payment(&k, o.total_price);
    let t = life
        .settle_payment(o.order_id, &k, Some(paid.clone()))
        .await
        .unwrap()
        .expect("the claim was held");
    assert_eq!(
        (t.from, t.order.status),
        (OrderStatus::PendingPayment, OrderStatus::Paid)
    );
    assert!(t.returned.is_empty());
    let stored = stores.orders.order(o.order_id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Paid);
    assert_eq!(stored.payment, Some(paid.clone()));
    assert_eq!(stored.payment_claim, None);
    // Settled once: again is nothing, and a paid order is not claimed.
    assert_eq!(
        life.settle_payment(o.order_id, &k, Some(paid))
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        life.claim_payment(o.order_id, &k, now).await.unwrap(),
        Claim::Refused(o) if o.status == OrderStatus::Paid
    ));
    assert_eq!(stock(stores, p).await, 8);
    assert!(matches!(
        life.claim_payment(OrderId(u64::MAX >> 12), &k, now).await,
        Err(OmsError::OrderNotFound { .. })
    ));
}

pub async fn a_declined_payment_leaves_the_order_payable(stores: &Stores) {
    let p = product(stores, 10, None).await;
    let o = order(stores, p, 1).await;
    let (k, retry) = (key(), key());
    let life = &*stores.lifecycle;
    let now = Utc::now();
    life.claim_payment(o.order_id, &k, now).await.unwrap();
    let t = life
        .settle_payment(o.order_id, &k, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.order.status, OrderStatus::PendingPayment);
    assert_eq!(t.order.payment_claim, None);
    assert!(matches!(
        life.claim_payment(o.order_id, &retry, now).await.unwrap(),
        Claim::Claimed(_)
    ));
}

pub async fn cancelling_gives_the_units_back_once(stores: &Stores) {
    let p = product(stores, 10, Some(2)).await;
    let o = order(stores, p, 2).await;
    assert_eq!(stock(stores, p).await, 8);
    let version = stores.products.get(p).await.unwrap().unwrap().version;
    let life = &*stores.lifecycle;
    let t = life
        .transition(o.order_id, LifecycleEvent::Cancel, Utc::now())
        .await
        .unwrap();
    assert_eq!(t.order.status, OrderStatus::Cancelled);
    assert_eq!(t.returned.len(), 1);
    assert_eq!(
        (
            t.returned[0].product_id,
            t.returned[0].units,
            t.returned[0].stock
        ),
        (p, 2, 10)
    );
    assert!(
        t.returned[0].version > version,
        "the increment is versioned"
    );
    assert_eq!(stock(stores, p).await, 10);
    assert_eq!(
        stores.products.purchases(p).await.unwrap(),
        vec![],
        "the limit is given back"
    );
    // Once: a final order moves no more.
    for event in [
        LifecycleEvent::Cancel,
        LifecycleEvent::Refund,
        LifecycleEvent::Expire,
    ] {
        assert!(matches!(
            life.transition(o.order_id, event, Utc::now()).await,
            Err(OmsError::IllegalTransition { .. })
        ));
    }
    assert_eq!(stock(stores, p).await, 10);
}

pub async fn a_paid_order_is_refunded_with_its_units(stores: &Stores) {
    let p = product(stores, 10, None).await;
    let o = order(stores, p, 3).await;
    let life = &*stores.lifecycle;
    let k = key();
    // Not paid yet: nothing to refund.
    assert!(matches!(
        life.transition(o.order_id, LifecycleEvent::Refund, Utc::now())
            .await,
        Err(OmsError::IllegalTransition { .. })
    ));
    life.claim_payment(o.order_id, &k, Utc::now())
        .await
        .unwrap();
    life.settle_payment(o.order_id, &k, Some(payment(&k, o.total_price)))
        .await
        .unwrap();
    // Paid: not cancellable as unpaid, refundable.
    assert!(matches!(
        life.transition(o.order_id, LifecycleEvent::Cancel, Utc::now())
            .await,
        Err(OmsError::IllegalTransition { .. })
    ));
    let t = life
        .transition(o.order_id, LifecycleEvent::Refund, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (t.from, t.order.status),
        (OrderStatus::Paid, OrderStatus::Refunded)
    );
    assert_eq!(stock(stores, p).await, 10);
    assert!(t.order.payment.is_some(), "the payment stays on record");
}

pub async fn a_payment_in_doubt_is_neither_cancelled_nor_expired(
    stores: &Stores,
    timeout: Duration,
) {
    let p = product(stores, 10, None).await;
    let o = order(stores, p, 1).await;
    let life = &*stores.lifecycle;
    let k = key();
    let claimed_at = Utc::now();
    life.claim_payment(o.order_id, &k, claimed_at)
        .await
        .unwrap();
    assert!(matches!(
        life.transition(o.order_id, LifecycleEvent::Cancel, Utc::now())
            .await,
        Err(OmsError::OrderNotCancellable { .. })
    ));
    let long_after = Utc::now() + chrono::Duration::from_std(timeout * 10).unwrap();
    let expired = life.expire_due(long_after, 10_000).await.unwrap();
    assert!(expired.iter().all(|t| t.order.order_id != o.order_id));
    assert_eq!(
        status(stores, o.order_id).await,
        OrderStatus::PendingPayment
    );
    let doubt = life
        .payments_in_doubt(Utc::now() + chrono::Duration::seconds(1), 10_000)
        .await
        .unwrap();
    let mine = doubt
        .iter()
        .find(|d| d.order_id == o.order_id)
        .expect("in doubt");
    assert_eq!(mine.payment_claim.as_deref(), Some(k.as_str()));
    let early = life
        .payments_in_doubt(claimed_at - chrono::Duration::seconds(60), 10_000)
        .await
        .unwrap();
    assert!(early.iter().all(|d| d.order_id != o.order_id));
    // The gateway says it was paid: paid, even though it is overdue now.
    life.settle_payment(o.order_id, &k, Some(payment(&k, o.total_price)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(stores, o.order_id).await, OrderStatus::Paid);
}

pub async fn overdue_orders_expire_in_batches(stores: &Stores, timeout: Duration) {
    let life = &*stores.lifecycle;
    // Whatever other checks left overdue goes first.
    let after =
        Utc::now() + chrono::Duration::from_std(timeout).unwrap() + chrono::Duration::seconds(1);
    while !life.expire_due(after, 1000).await.unwrap().is_empty() {}
    let p = product(stores, 10, Some(5)).await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        ids.insert(order(stores, p, 2).await.order_id);
    }
    assert_eq!(stock(stores, p).await, 4);
    // Not yet due.
    assert!(life.expire_due(Utc::now(), 1000).await.unwrap().is_empty());
    // A claim for an order past its due time is refused.
    let first = *ids.iter().next().unwrap();
    let late = Utc::now() + chrono::Duration::from_std(timeout * 2).unwrap();
    assert!(matches!(
        life.claim_payment(first, &key(), late).await.unwrap(),
        Claim::Refused(_)
    ));
    let later =
        Utc::now() + chrono::Duration::from_std(timeout).unwrap() + chrono::Duration::seconds(1);
    let one = life.expire_due(later, 2).await.unwrap();
    let two = life.expire_due(later, 2).await.unwrap();
    assert_eq!((one.len(), two.len()), (2, 1));
    assert!(life.expire_due(later, 2).await.unwrap().is_empty());
    let expired: HashSet<OrderId> = one.iter().chain(&two).map(|t| t.order.order_id).collect();
    assert_eq!(expired, ids);
    assert!(one
        .iter()
        .chain(&two)
        .all(|t| t.order.status == OrderStatus::Expired));
    assert_eq!(stock(stores, p).await, 10);
    assert_eq!(stores.products.purchases(p).await.unwrap(), vec![]);
}

/// `pairs` orders, each claimed for payment while the expirer runs on
/// them: each is PAID or EXPIRED, never both, and the stock counts it once.
/// Returns how many were paid and how many expired.
pub async fn confirm_racing_expiry_has_one_winner(
    stores: &Stores,
    timeout: Duration,
    pairs: usize,
) -> (usize, usize) {
    let p = product(stores, pairs as i64, None).await;
    let batch: Vec<_> = (0..pairs)
        .map(|_| command(random_member_id(), &[(p, 1)]))
        .collect();
    let mut orders = Vec::new();
    for placed in place(&*stores.orders, &batch).await {
        let TraceState::Completed { order_id } = placed.trace.state else {
            panic!("not placed: {placed:?}");
        };
        orders.push(stores.orders.order(order_id).await.unwrap().unwrap());
    }
    let life = stores.lifecycle.clone();
    let due = orders.iter().map(|o| o.payment_due_at).min().unwrap();
    // The buyer's clock says it is still on time; the expirer's says it is
    // past.
    let claims = orders.iter().map(|o| {
        let life = life.clone();
        let (id, k) = (o.order_id, key());
        async move {
            let claimed = matches!(
                life.claim_payment(id, &k, due - chrono::Duration::milliseconds(1))
                    .await
                    .unwrap(),
                Claim::Claimed(_)
            );
            (id, claimed.then_some(k))
        }
    });
    // Both sides at once, neither taking every connection: the expirer in
    // small batches, the buyers a few at a time.
    let batch = (pairs / 200).max(1);
    let expiry = async {
        let mut n = 0;
        loop {
            let t = life
                .expire_due(due + chrono::Duration::from_std(timeout).unwrap(), batch)
                .await
                .unwrap();
            if t.is_empty() {
                return n;
            }
            n += t.len();
        }
    };
    let claims = futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(
        futures::stream::iter(claims),
        16,
    ));
    let (_, claims) = tokio::join!(expiry, claims);
    for (id, claim) in claims {
        let s = status(stores, id).await;
        match claim {
            Some(k) => {
                assert_eq!(s, OrderStatus::PendingPayment, "claimed, so not expired");
                let amount = orders
                    .iter()
                    .find(|o| o.order_id == id)
                    .unwrap()
                    .total_price;
                life.settle_payment(id, &k, Some(payment(&k, amount)))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(status(stores, id).await, OrderStatus::Paid);
            }
            None => assert_eq!(s, OrderStatus::Expired, "refused, so expired"),
        }
    }
    let paid = futures::future::join_all(orders.iter().map(|o| status(stores, o.order_id)))
        .await
        .into_iter()
        .filter(|s| *s == OrderStatus::Paid)
        .count() as i64;
    assert_eq!(
        stock(stores, p).await,
        pairs as i64 - paid,
        "expired units are back, paid ones not"
    );
    (paid as usize, pairs - paid as usize)
}

pub async fn events_are_leased_then_published_once(stores: &Stores) {
    let life = &*stores.lifecycle;
    let (a, b) = (
        format!("relay-{}", uuid::Uuid::new_v4().simple()),
        format!("relay-{}", uuid::Uuid::new_v4().simple()),
    );
    // Publish whatever other checks left.
    loop {
        let left = life
            .lease_events(&a, 1000, Duration::from_secs(60))
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        let ids: Vec<u64> = left.iter().map(|e| e.event_id).collect();
        life.events_published(&ids).await.unwrap();
    }
    let p = product(stores, 10, None).await;
    let o = order(stores, p, 1).await;
    let k = key();
    life.claim_payment(o.order_id, &k, Utc::now())
        .await
        .unwrap();
    life.settle_payment(o.order_id, &k, Some(payment(&k, o.total_price)))
        .await
        .unwrap();
    life.transition(o.order_id, LifecycleEvent::Refund, Utc::now())
        .await
        .unwrap();
    let leased = life
        .lease_events(&a, 1000, Duration::from_secs(60))
        .await
        .unwrap();
    let mine: Vec<_> = leased.iter().filter(|e| e.order_id == o.order_id).collect();
    assert_eq!(mine.len(), 2, "one event per transition: {leased:?}");
    assert_eq!(
        (mine[0].from, mine[0].to),
        (OrderStatus::PendingPayment, OrderStatus::Paid)
    );
    assert_eq!(
        (mine[1].from, mine[1].to),
        (OrderStatus::Paid, OrderStatus::Refunded)
    );
    assert!(mine[0].event_id < mine[1].event_id);
    assert_eq!(mine[0].member_id, o.member_id);
    // Leased to a: b gets none of them until a's lease runs out.
    let other = life
        .lease_events(&b, 1000, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(other.iter().all(|e| e.order_id != o.order_id));
    let ids: Vec<u64> = mine.iter().map(|e| e.event_id).collect();
    life.events_published(&ids).await.unwrap();
    let again = life.lease_events(&a, 1000, Duration::ZERO).await.unwrap();
    assert!(
        again.iter().all(|e| e.order_id != o.order_id),
        "published once"
    );
    // A lease that ran out goes to the next relay.
    let q = order(stores, p, 1).await;
    life.transition(q.order_id, LifecycleEvent::Cancel, Utc::now())
        .await
        .unwrap();
    let first = life
        .lease_events(&a, 1000, Duration::from_millis(1))
        .await
        .unwrap();
    assert!(first.iter().any(|e| e.order_id == q.order_id));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = life
        .lease_events(&b, 1000, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        taken.iter().any(|e| e.order_id == q.order_id),
        "a dead relay's lease passes on"
    );
    let ids: Vec<u64> = taken.iter().map(|e| e.event_id).collect();
    life.events_published(&ids).await.unwrap();
}
