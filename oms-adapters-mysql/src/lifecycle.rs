//! The order life cycle: claims, payments, cancellations, refunds, expiry
//! and the outbox of status changes.
//!
//! Every change is one transaction and conditional on the order's status
//! as it stands in the database (an `UPDATE … WHERE status = …` that must
//! match, or a row read `FOR UPDATE`), so that writers racing for one order
//! have exactly one winner. Orders giving their units back lock the product
//! rows in product-id order, as placement does.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use oms_core::domain::{
    LifecycleEvent, MemberId, OmsError, OmsResult, Order, OrderEvent, OrderId, OrderStatus,
    Payment, ProductId,
};
use oms_core::port::outbound::{Claim, LifecycleStore, StockReturn, Transitioned};
use sqlx::{MySql, MySqlConnection, QueryBuilder, Transaction};

use crate::error::db_error;
use crate::orders::{load_orders, OrderRow, IDS_PER_STATEMENT, ORDER_COLUMNS, ROWS_PER_STATEMENT};
use crate::{sql_count, sql_id, sql_instant, MySqlStore};

/// Begins a transaction at READ COMMITTED: its locking reads take no gap
/// locks (so scanning the due orders or the outbox never blocks the
/// placements and transitions that insert next to them) and rows that do
/// not match are unlocked at once.
const BEGIN_READ_COMMITTED: &str =
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION";

/// A row of `order_events`: id, order, member, from, to, at.
type EventRow = (i64, i64, i64, String, String, NaiveDateTime);

/// Commits `tx` when `result` is `Ok`, rolls it back otherwise.
async fn finish<T>(tx: Transaction<'_, MySql>, result: OmsResult<T>) -> OmsResult<T> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(db_error)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(e)
        }
    }
}

/// The order `order_id` with its items, read in the transaction (`FOR
/// UPDATE` with `lock`).
async fn read_order(
    conn: &mut MySqlConnection,
    order_id: OrderId,
    lock: bool,
) -> OmsResult<Option<Order>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?{lock}"
    ))
    .bind(sql_id(order_id.0))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(load_orders(&mut *conn, rows).await?.into_iter().next())
}

/// Gives the units of `orders` back, all moving to a status that holds
/// none: one versioned increment per product, in product-id order, and the
/// members' purchases (never below 0). Returns each order's returns, in
/// the order of `orders`.
///
/// A product given units by several orders moves its version once per
/// order, and each order's [`StockReturn`] carries the stock and version as
/// if the orders had given their units back one after another, in the
/// order of `orders`: a stock gate applying them in that order sees every
/// one as a newer version.
async fn give_back(
    conn: &mut MySqlConnection,
    orders: &[Order],
) -> OmsResult<Vec<Vec<StockReturn>>> {
    let mut by_product: BTreeMap<ProductId, Vec<(usize, i64)>> = BTreeMap::new();
    let mut purchases: BTreeMap<(ProductId, MemberId), i64> = BTreeMap::new();
    for (n, order) in orders.iter().enumerate() {
        for item in &order.items {
            let units = i64::from(item.quantity);
            let shares = by_product.entry(item.product_id).or_default();
            match shares.last_mut() {
                Some((m, u)) if *m == n => *u += units,
                _ => shares.push((n, units)),
            }
            *purchases
                .entry((item.product_id, order.member_id))
                .or_default() += units;
        }
    }
    let mut returned: Vec<Vec<StockReturn>> = vec![Vec::new(); orders.len()];
    for (product_id, shares) in &by_product {
        let units: i64 = shares.iter().map(|(_, u)| *u).sum();
        let done = sqlx::query(
            "UPDATE products SET stock = stock + ?, version = version + ? WHERE id = ?",
        )
        .bind(units)
        .bind(sql_count(shares.len()))
        .bind(sql_id(product_id.0))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            // The product is gone: nothing to give back to.
            continue;
        }
        let (mut stock, mut version): (i64, i64) =
            sqlx::query_as("SELECT stock, version FROM products WHERE id = ?")
                .bind(sql_id(product_id.0))
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
        for (n, units) in shares.iter().rev() {
            if let Some(order) = returned.get_mut(*n) {
                order.push(StockReturn {
                    product_id: *product_id,
                    units: *units,
                    stock,
                    version,
                });
            }
            stock -= units;
            version -= 1;
        }
    }
    // After the products, whose rows guard the purchases (placement adds to
    // them only behind the product's decrement).
    let purchases: Vec<((ProductId, MemberId), i64)> = purchases.into_iter().collect();
    for chunk in purchases.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<MySql>::new("UPDATE member_purchases AS p JOIN (");
        for (i, ((product, member), units)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            q.push("SELECT ")
                .push_bind(sql_id(product.0))
                .push(" AS product_id, ")
                .push_bind(sql_id(member.0))
                .push(" AS member_id, ")
                .push_bind(*units)
                .push(" AS units");
        }
        q.push(
            ") AS back ON p.product_id = back.product_id AND p.member_id = back.member_id \
             SET p.units = GREATEST(p.units - back.units, 0)",
        );
        q.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(returned)
}

/// Writes one event per change (`order`, from, to) to the outbox.
async fn record_events(
    conn: &mut MySqlConnection,
    changes: &[(&Order, OrderStatus, OrderStatus)],
    at: DateTime<Utc>,
) -> OmsResult<()> {
    let at = sql_instant(at);
    for chunk in changes.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO order_events (order_id, member_id, from_status, to_status, `at`) ",
        );
        q.push_values(chunk, |mut b, (order, from, to)| {
            b.push_bind(sql_id(order.order_id.0))
                .push_bind(sql_id(order.member_id.0))
                .push_bind(from.as_str())
                .push_bind(to.as_str())
                .push_bind(at);
        });
        q.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// [`LifecycleStore::claim_payment`] in a transaction.
async fn claim_in(
    conn: &mut MySqlConnection,
    order_id: OrderId,
    payment_key: &str,
    now: DateTime<Utc>,
) -> OmsResult<Claim> {
    // Assignments run left to right: `claimed_at` reads the claim before
    // this statement sets it, so a retry with the same key keeps the time
    // of the first claim.
    let matched = sqlx::query(
        "UPDATE orders SET claimed_at = IF(payment_claim IS NULL, ?, claimed_at), \
         payment_claim = ? \
         WHERE id = ? AND status = 'PENDING_PAYMENT' AND payment_due_at > ? \
         AND (payment_claim IS NULL OR payment_claim = ?)",
    )
    .bind(sql_instant(now))
    .bind(payment_key)
    .bind(sql_id(order_id.0))
    .bind(now.naive_utc())
    .bind(payment_key)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    let order = read_order(conn, order_id, false)
        .await?
        .ok_or(OmsError::OrderNotFound { order_id })?;
    let claimed = matched == 1
        && order.status == OrderStatus::PendingPayment
        && order.payment_claim.as_deref() == Some(payment_key);
    Ok(if claimed {
        Claim::Claimed(order)
    } else {
        Claim::Refused(order)
    })
}

/// [`LifecycleStore::settle_payment`] in a transaction.
async fn settle_in(
    conn: &mut MySqlConnection,
    order_id: OrderId,
    payment_key: &str,
    payment: Option<Payment>,
) -> OmsResult<Option<Transitioned>> {
    let matched = match &payment {
        Some(paid) => sqlx::query(
            "UPDATE orders SET status = 'PAID', payment_key = ?, payment_amount = ?, \
             approved_at = ?, payment_claim = NULL, claimed_at = NULL \
             WHERE id = ? AND payment_claim = ? AND status = 'PENDING_PAYMENT'",
        )
        .bind(paid.payment_key.as_str())
        .bind(paid.amount)
        .bind(sql_instant(paid.approved_at)),
        None => sqlx::query(
            "UPDATE orders SET payment_claim = NULL, claimed_at = NULL \
             WHERE id = ? AND payment_claim = ? AND status = 'PENDING_PAYMENT'",
        ),
    }
    .bind(sql_id(order_id.0))
    .bind(payment_key)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if matched == 0 {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM orders WHERE id = ?")
            .bind(sql_id(order_id.0))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        return match exists {
            Some(_) => Ok(None),
            None => Err(OmsError::OrderNotFound { order_id }),
        };
    }
    let order = read_order(conn, order_id, false)
        .await?
        .ok_or(OmsError::OrderNotFound { order_id })?;
    let from = OrderStatus::PendingPayment;
    if let Some(paid) = &payment {
        record_events(conn, &[(&order, from, order.status)], paid.approved_at).await?;
    }
    Ok(Some(Transitioned {
        order,
        from,
        returned: Vec::new(),
    }))
}

/// [`LifecycleStore::transition`] in a transaction.
async fn transition_in(
    conn: &mut MySqlConnection,
    order_id: OrderId,
    event: LifecycleEvent,
    now: DateTime<Utc>,
) -> OmsResult<Transitioned> {
    let mut order = read_order(conn, order_id, true)
        .await?
        .ok_or(OmsError::OrderNotFound { order_id })?;
    let from = order.status;
    if event == LifecycleEvent::Pay {
        // A payment settles a claim (`settle_payment`), never on its own.
        return Err(OmsError::IllegalTransition { from, event });
    }
    let to = from.after(event)?;
    let unclaimed = matches!(event, LifecycleEvent::Cancel | LifecycleEvent::Expire);
    if unclaimed && order.payment_claim.is_some() {
        return Err(OmsError::OrderNotCancellable {
            order_id,
            why: "its payment is being confirmed".into(),
        });
    }
    let claim = if unclaimed {
        " AND payment_claim IS NULL"
    } else {
        ""
    };
    let matched = sqlx::query(&format!(
        "UPDATE orders SET status = ? WHERE id = ? AND status = ?{claim}"
    ))
    .bind(to.as_str())
    .bind(sql_id(order_id.0))
    .bind(from.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if matched != 1 {
        return Err(OmsError::Conflict(format!(
            "order {order_id} changed while it was locked"
        )));
    }
    order.status = to;
    let returned = if from.holds_stock() && !to.holds_stock() {
        give_back(conn, std::slice::from_ref(&order))
            .await?
            .pop()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    record_events(conn, &[(&order, from, to)], now).await?;
    Ok(Transitioned {
        order,
        from,
        returned,
    })
}

/// [`LifecycleStore::expire_due`] in a READ COMMITTED transaction.
async fn expire_in(
    conn: &mut MySqlConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> OmsResult<Vec<Transitioned>> {
    // Orders another process holds (expiring, claiming, cancelling) are
    // skipped, not waited for.
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders \
         WHERE status = 'PENDING_PAYMENT' AND payment_claim IS NULL AND payment_due_at <= ? \
         ORDER BY payment_due_at LIMIT ? FOR UPDATE SKIP LOCKED"
    ))
    .bind(now.naive_utc())
    .bind(sql_count(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut orders = load_orders(&mut *conn, rows).await?;
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::<MySql>::new("UPDATE orders SET status = 'EXPIRED' WHERE id IN (");
    let mut ids = q.separated(", ");
    for order in &orders {
        ids.push_bind(sql_id(order.order_id.0));
    }
    q.push(") AND status = 'PENDING_PAYMENT' AND payment_claim IS NULL");
    let matched = q
        .build()
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    if usize::try_from(matched).ok() != Some(orders.len()) {
        return Err(OmsError::Conflict(
            "orders changed while they were locked for expiry".into(),
        ));
    }
    let (from, to) = (OrderStatus::PendingPayment, OrderStatus::Expired);
    for order in &mut orders {
        order.status = to;
    }
    let returned = give_back(conn, &orders).await?;
    let changes: Vec<(&Order, OrderStatus, OrderStatus)> =
        orders.iter().map(|o| (o, from, to)).collect();
    record_events(conn, &changes, now).await?;
    Ok(orders
        .into_iter()
        .zip(returned)
        .map(|(order, returned)| Transitioned {
            order,
            from,
            returned,
        })
        .collect())
}

/// [`LifecycleStore::lease_events`] in a READ COMMITTED transaction.
async fn lease_in(
    conn: &mut MySqlConnection,
    owner: &str,
    limit: usize,
    lease: Duration,
) -> OmsResult<Vec<OrderEvent>> {
    // The lease runs out on the database's clock, which every relay shares.
    let micros = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    let until: NaiveDateTime = sqlx::query_scalar("SELECT NOW(3) + INTERVAL ? MICROSECOND")
        .bind(micros)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    let until = until.trunc_subsecs(3);
    let limit = sql_count(limit);
    sqlx::query(
        "UPDATE order_events SET leased_by = ?, lease_until = ? \
         WHERE published_at IS NULL \
         AND (lease_until IS NULL OR lease_until < NOW(3) OR leased_by = ?) \
         ORDER BY id LIMIT ?",
    )
    .bind(owner)
    .bind(until)
    .bind(owner)
    .bind(limit)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT id, order_id, member_id, from_status, to_status, `at` FROM order_events \
         WHERE leased_by = ? AND lease_until = ? AND published_at IS NULL \
         ORDER BY id LIMIT ?",
    )
    .bind(owner)
    .bind(until)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.into_iter()
        .map(|(id, order_id, member_id, from, to, at)| {
            Ok(OrderEvent {
                event_id: id.unsigned_abs(),
                order_id: OrderId(order_id.unsigned_abs()),
                member_id: MemberId(member_id.unsigned_abs()),
                from: OrderStatus::parse(&from)?,
                to: OrderStatus::parse(&to)?,
                at: at.and_utc(),
            })
        })
        .collect()
}

#[async_trait]
impl LifecycleStore for MySqlStore {
    async fn claim_payment(
        &self,
        order_id: OrderId,
        payment_key: &str,
        now: DateTime<Utc>,
    ) -> OmsResult<Claim> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let result = claim_in(&mut tx, order_id, payment_key, now).await;
        finish(tx, result).await
    }

    async fn settle_payment(
        &self,
        order_id: OrderId,
        payment_key: &str,
        payment: Option<Payment>,
    ) -> OmsResult<Option<Transitioned>> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let result = settle_in(&mut tx, order_id, payment_key, payment).await;
        finish(tx, result).await
    }

    async fn transition(
        &self,
        order_id: OrderId,
        event: LifecycleEvent,
        now: DateTime<Utc>,
    ) -> OmsResult<Transitioned> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let result = transition_in(&mut tx, order_id, event, now).await;
        finish(tx, result).await
    }

    async fn expire_due(&self, now: DateTime<Utc>, limit: usize) -> OmsResult<Vec<Transitioned>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self
            .pool
            .begin_with(BEGIN_READ_COMMITTED)
            .await
            .map_err(db_error)?;
        let result = expire_in(&mut tx, now, limit.min(IDS_PER_STATEMENT)).await;
        finish(tx, result).await
    }

    async fn payments_in_doubt(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> OmsResult<Vec<Order>> {
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders \
             WHERE claimed_at < ? AND payment_claim IS NOT NULL \
             ORDER BY claimed_at LIMIT ?"
        ))
        .bind(before.naive_utc())
        .bind(sql_count(limit.min(IDS_PER_STATEMENT)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        load_orders(&self.pool, rows).await
    }

    async fn lease_events(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> OmsResult<Vec<OrderEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self
            .pool
            .begin_with(BEGIN_READ_COMMITTED)
            .await
            .map_err(db_error)?;
        let result = lease_in(&mut tx, owner, limit, lease).await;
        finish(tx, result).await
    }

    async fn events_published(&self, event_ids: &[u64]) -> OmsResult<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut result = Ok(());
        for chunk in event_ids.chunks(IDS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "UPDATE order_events SET published_at = NOW(3) WHERE id IN (",
            );
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(sql_id(*id));
            }
            q.push(") AND published_at IS NULL");
            if let Err(e) = q.build().execute(&mut *tx).await {
                result = Err(db_error(e));
                break;
            }
        }
        finish(tx, result).await
    }
}
