//! The contract of [`OrderAdminStore`]: every member's orders, filtered by
//! status and product, newest first, in disjoint pages; and the units a
//! product's orders hold.
//!
//! The store may hold orders of other runs (and of suites running at the
//! same time): filters by product use fresh products and are checked
//! exactly; filters without one are checked on the range of ids this suite
//! placed.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{
    HeldUnits, LifecycleEvent, Order, OrderFilter, OrderId, OrderPage, OrderStatus, Payment,
    ProductId, TraceState,
};
use crate::port::outbound::{LifecycleStore, OrderAdminStore, OrderStore, ProductStore};

use super::order_store::place;
use super::{command, draft, random_member_id, random_product_id};

/// The faces of one store the suite needs.
pub struct Stores {
    pub orders: Arc<dyn OrderStore>,
    pub products: Arc<dyn ProductStore>,
    pub lifecycle: Arc<dyn LifecycleStore>,
    pub admin: Arc<dyn OrderAdminStore>,
}

impl Stores {
    /// The faces of `store`.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: OrderStore + ProductStore + LifecycleStore + OrderAdminStore + 'static,
    {
        Self {
            orders: store.clone(),
            products: store.clone(),
            lifecycle: store.clone(),
            admin: store,
        }
    }
}

/// Runs every check of the contract.
pub async fn run(stores: &Stores) {
    let placed = Placed::new(stores).await;
    a_product_filter_finds_exactly_its_orders(stores, &placed).await;
    status_and_product_filters_combine(stores, &placed).await;
    a_status_filter_finds_every_order_in_that_status(stores, &placed).await;
    no_filter_finds_every_order(stores, &placed).await;
    pages_are_disjoint_stable_and_complete(stores, &placed).await;
    held_units_count_pending_and_paid_orders(stores, &placed).await;
}

/// Product lines: `(product, units)`.
pub type Lines = Vec<(ProductId, u32)>;

/// Two fresh products and eight orders of them, each of another member,
/// in every status but EXPIRED.
pub struct Placed {
    pub p: ProductId,
    pub q: ProductId,
    /// Order ids with their product lines and status, in placement order.
    pub orders: Vec<(OrderId, Lines, OrderStatus)>,
}

impl Placed {
    pub async fn new(stores: &Stores) -> Self {
        let (p, q) = (random_product_id(), random_product_id());
        for id in [p, q] {
            stores
                .products
                .create(&draft(&format!("admin {id}"), 100).into_product(id))
                .await
                .unwrap();
        }
        use OrderStatus::*;
        let plan: Vec<(Lines, OrderStatus)> = vec![
            (vec![(p, 1)], PendingPayment),
            (vec![(p, 2), (q, 1)], Paid),
            (vec![(q, 3)], PendingPayment),
            (vec![(p, 4)], Cancelled),
            (vec![(p, 1), (q, 2)], Refunded),
            (vec![(p, 3)], PendingPayment),
            (vec![(q, 1)], Cancelled),
            (vec![(p, 2)], Paid),
        ];
        let mut orders = Vec::new();
        for (lines, status) in plan {
            let placed = place(&*stores.orders, &[command(random_member_id(), &lines)]).await;
            let TraceState::Completed { order_id } = placed[0].trace.state else {
                panic!("not placed: {:?}", placed[0]);
            };
            move_to(stores, order_id, status).await;
            orders.push((order_id, lines, status));
        }
        Self { p, q, orders }
    }

    fn min(&self) -> OrderId {
        self.orders.iter().map(|o| o.0).min().unwrap()
    }

    fn max(&self) -> OrderId {
        self.orders.iter().map(|o| o.0).max().unwrap()
    }

    /// The ids of the orders that match, newest first.
    fn expected(&self, filter: &OrderFilter) -> Vec<OrderId> {
        let mut ids: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|(_, lines, status)| filter.matches(*status, lines.iter().map(|l| l.0)))
            .map(|o| o.0)
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids
    }
}

fn approved_now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

async fn move_to(stores: &Stores, order_id: OrderId, to: OrderStatus) {
    let life = &*stores.lifecycle;
    let pay = || async {
        let order = stores.orders.order(order_id).await.unwrap().unwrap();
        let key = format!("admin-{}", uuid::Uuid::new_v4().simple());
        life.claim_payment(order_id, &key, Utc::now())
            .await
            .unwrap();
        let payment = Payment {
            payment_key: key.clone(),
            amount: order.total_price,
            approved_at: approved_now(),
        };
        life.settle_payment(order_id, &key, Some(payment))
            .await
            .unwrap()
            .expect("the claim was held");
    };
    match to {
        OrderStatus::PendingPayment => {}
        OrderStatus::Paid => pay().await,
        OrderStatus::Refunded => {
            pay().await;
            life.transition(order_id, LifecycleEvent::Refund, Utc::now())
                .await
                .unwrap();
        }
        OrderStatus::Cancelled => {
            life.transition(order_id, LifecycleEvent::Cancel, Utc::now())
                .await
                .unwrap();
        }
        other => panic!("the suite places no {other} order"),
    }
}

/// Reads pages of `limit` from `start` on, each after the last id of the
/// one before, until a page is short or reaches below `floor`; checks that
/// each page is at most `limit` long and that ids fall strictly from one
/// order to the next across pages (so pages are disjoint).
async fn pages(
    admin: &dyn OrderAdminStore,
    filter: &OrderFilter,
    limit: usize,
    start: Option<OrderId>,
    floor: OrderId,
) -> Vec<Vec<Order>> {
    let mut out: Vec<Vec<Order>> = Vec::new();
    let mut before = start;
    loop {
        let page = OrderPage::first(limit).unwrap().after(before);
        let found = admin.find_orders(filter, page).await.unwrap();
        assert!(
            found.len() <= limit,
            "{} orders on a page of {limit}",
            found.len()
        );
        let mut last = before;
        for order in &found {
            assert!(
                last.is_none_or(|l| order.order_id < l),
                "order {} after {last:?}: not newest first, or not below the cursor",
                order.order_id
            );
            last = Some(order.order_id);
        }
        let done = found.len() < limit || last.is_some_and(|l| l < floor);
        out.push(found);
        if done {
            return out;
        }
        before = last;
    }
}

fn ids(pages: &[Vec<Order>]) -> Vec<OrderId> {
    pages.iter().flatten().map(|o| o.order_id).collect()
}

pub async fn a_product_filter_finds_exactly_its_orders(stores: &Stores, placed: &Placed) {
    for product in [placed.p, placed.q] {
        let filter = OrderFilter {
            product_id: Some(product),
            status: None,
        };
        let found = pages(&*stores.admin, &filter, 100, None, OrderId(0)).await;
        assert_eq!(ids(&found), placed.expected(&filter), "product {product}");
        for order in found.iter().flatten() {
            assert_eq!(
                Some(order),
                stores.orders.order(order.order_id).await.unwrap().as_ref(),
                "whole orders, as the order store reads them"
            );
        }
    }
    let nobody = OrderFilter {
        product_id: Some(random_product_id()),
        status: None,
    };
    assert!(stores
        .admin
        .find_orders(&nobody, OrderPage::default())
        .await
        .unwrap()
        .is_empty());
}

pub async fn status_and_product_filters_combine(stores: &Stores, placed: &Placed) {
    use OrderStatus::*;
    for status in [PendingPayment, Paid, Refunded, Cancelled, Expired] {
        for product in [placed.p, placed.q] {
            let filter = OrderFilter {
                status: Some(status),
                product_id: Some(product),
            };
            let found = pages(&*stores.admin, &filter, 1, None, OrderId(0)).await;
            assert_eq!(
                ids(&found),
                placed.expected(&filter),
                "{status} of product {product}"
            );
            assert!(found.iter().flatten().all(|o| o.status == status));
        }
    }
}

pub async fn a_status_filter_finds_every_order_in_that_status(stores: &Stores, placed: &Placed) {
    use OrderStatus::*;
    let start = Some(OrderId(placed.max().0 + 1));
    for status in [PendingPayment, Paid, Refunded, Cancelled] {
        let filter = OrderFilter {
            status: Some(status),
            product_id: None,
        };
        let found = pages(&*stores.admin, &filter, 2, start, placed.min()).await;
        assert!(
            found.iter().flatten().all(|o| o.status == status),
            "only {status} orders"
        );
        let seen: BTreeSet<OrderId> = ids(&found).into_iter().collect();
        for id in placed.expected(&filter) {
            assert!(seen.contains(&id), "{status} order {id} not found");
        }
    }
}

pub async fn no_filter_finds_every_order(stores: &Stores, placed: &Placed) {
    let start = Some(OrderId(placed.max().0 + 1));
    let all = OrderFilter::default();
    let found = pages(&*stores.admin, &all, 3, start, placed.min()).await;
    let seen: BTreeSet<OrderId> = ids(&found).into_iter().collect();
    for (id, _, status) in &placed.orders {
        assert!(seen.contains(id), "order {id} not found");
        let order = found.iter().flatten().find(|o| o.order_id == *id).unwrap();
        assert_eq!(order.status, *status);
    }
}

pub async fn pages_are_disjoint_stable_and_complete(stores: &Stores, placed: &Placed) {
    let filter = OrderFilter {
        product_id: Some(placed.p),
        status: None,
    };
    let expected = placed.expected(&filter);
    for limit in [1, 2, 4, expected.len(), OrderPage::MAX_LIMIT] {
        let found = pages(&*stores.admin, &filter, limit, None, OrderId(0)).await;
        // Strictly falling ids (checked by `pages`) make the pages
        // disjoint; their union is every match, in order.
        assert_eq!(ids(&found), expected, "pages of {limit}");
        let again = pages(&*stores.admin, &filter, limit, None, OrderId(0)).await;
        assert_eq!(ids(&again), expected, "the same pages when read again");
        let sizes: Vec<usize> = found.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().rev().skip(1).all(|n| *n == limit),
            "only the last page is short: {sizes:?}"
        );
    }
}

pub async fn held_units_count_pending_and_paid_orders(stores: &Stores, placed: &Placed) {
    let admin = &*stores.admin;
    // p: PENDING_PAYMENT 1 + 3, PAID 2 + 2; q: PENDING_PAYMENT 3, PAID 1.
    assert_eq!(
        admin.held_units(placed.p).await.unwrap(),
        HeldUnits {
            pending_payment: 4,
            paid: 4
        }
    );
    assert_eq!(
        admin.held_units(placed.q).await.unwrap(),
        HeldUnits {
            pending_payment: 3,
            paid: 1
        }
    );
    assert_eq!(
        admin.held_units(random_product_id()).await.unwrap(),
        HeldUnits::default()
    );
    // What the orders hold and the stock add up to what there was.
    for product in [placed.p, placed.q] {
        let stock = stores.products.get(product).await.unwrap().unwrap().stock;
        let held = admin.held_units(product).await.unwrap();
        assert_eq!(stock + held.pending_payment + held.paid, 100);
    }
}
