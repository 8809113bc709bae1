use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use oms_core::domain::placement::{
    limited_pairs, plan_batch, resolve_placements, Bought, KeyBindings, Step,
};
use oms_core::domain::{
    FailureReason, KnownOutcome, MemberId, OmsError, OmsResult, Order, OrderCommand, OrderId,
    OrderItem, OrderPage, OrderStatus, OrderTrace, Payment, Placement, Product, ProductId,
    ReceiverInfo, TraceId, TraceState,
};
use oms_core::port::outbound::OrderStore;
use sqlx::{Executor, MySql, QueryBuilder, Transaction};

use crate::error::db_error;
use crate::products::{product_of, ProductRow, PRODUCT_COLUMNS};
use crate::{sql_id, sql_instant, MySqlStore};

type OutcomeRow = (String, i64, String, Option<i64>, Option<String>);
type KnownRow = (String, i64, String, Option<i64>, Option<String>, bool);
type ItemRow = (i64, i64, String, i64, i32);

fn trace_of(row: OutcomeRow) -> OmsResult<OrderTrace> {
    let (trace_id, member_id, status, order_id, reason) = row;
    let state = match (status.as_str(), order_id, reason) {
        ("COMPLETED", Some(order_id), _) => TraceState::Completed {
            order_id: OrderId(order_id.unsigned_abs()),
        },
        ("FAILED", _, Some(reason)) => TraceState::Failed {
            reason: FailureReason::parse(&reason)?,
        },
        _ => {
            return Err(OmsError::Internal(format!(
                "outcome of {trace_id} is malformed ({status})"
            )))
        }
    };
    Ok(OrderTrace {
        trace_id: trace_id.parse()?,
        member_id: MemberId(member_id.unsigned_abs()),
        state,
    })
}

/// A row of [`ORDER_COLUMNS`] (`ascii_bin` columns read as bytes).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub(crate) id: i64,
    trace_id: String,
    member_id: i64,
    status: String,
    order_date: NaiveDateTime,
    payment_due_at: NaiveDateTime,
    payment_key: Option<Vec<u8>>,
    payment_amount: Option<i64>,
    approved_at: Option<NaiveDateTime>,
    payment_claim: Option<Vec<u8>>,
    total_price: i64,
    receiver_name: String,
    receiver_phone: String,
    receiver_address: String,
}

/// The columns of an order, as [`OrderRow`] reads them.
pub(crate) const ORDER_COLUMNS: &str = "id, trace_id, member_id, status, order_date, \
     payment_due_at, payment_key, payment_amount, approved_at, payment_claim, total_price, \
     receiver_name, receiver_phone, receiver_address";

/// A payment key as stored (`ascii_bin`).
fn key_of(bytes: Vec<u8>) -> OmsResult<String> {
    String::from_utf8(bytes)
        .map_err(|e| OmsError::Internal(format!("mysql row not usable: payment key: {e}")))
}

fn order_of(row: OrderRow, items: Vec<OrderItem>) -> OmsResult<Order> {
    let payment = match (row.payment_key, row.payment_amount, row.approved_at) {
        (Some(payment_key), Some(amount), Some(approved_at)) => Some(Payment {
            payment_key: key_of(payment_key)?,
            amount,
            approved_at: approved_at.and_utc(),
        }),
        (None, None, None) => None,
        _ => {
            return Err(OmsError::Internal(format!(
                "the payment of order {} is incomplete",
                row.id
            )))
        }
    };
    Ok(Order {
        order_id: OrderId(row.id.unsigned_abs()),
        trace_id: row.trace_id.parse().ok(),
        member_id: MemberId(row.member_id.unsigned_abs()),
        status: OrderStatus::parse(&row.status)?,
        order_date: row.order_date.and_utc(),
        payment_due_at: row.payment_due_at.and_utc(),
        payment,
        payment_claim: row.payment_claim.map(key_of).transpose()?,
        total_price: row.total_price,
        items,
        receiver_info: ReceiverInfo {
            name: row.receiver_name,
            phone: row.receiver_phone,
            address: row.receiver_address,
        },
    })
}

/// The orders of `rows` with their items, read through `executor` (the
/// pool, or a transaction's connection to read what it holds).
pub(crate) async fn load_orders<'e, E>(executor: E, rows: Vec<OrderRow>) -> OmsResult<Vec<Order>>
where
    E: Executor<'e, Database = MySql>,
{
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::<MySql>::new(
        "SELECT order_id, product_id, product_name, price, quantity FROM order_items WHERE order_id IN (",
    );
    let mut ids = q.separated(", ");
    for row in &rows {
        ids.push_bind(row.id);
    }
    q.push(") ORDER BY order_id, line_no");
    let items: Vec<ItemRow> = q
        .build_query_as()
        .fetch_all(executor)
        .await
        .map_err(db_error)?;
    let mut by_order: HashMap<i64, Vec<OrderItem>> = HashMap::new();
    for (order_id, product_id, product_name, price, quantity) in items {
        by_order.entry(order_id).or_default().push(OrderItem {
            product_id: ProductId(product_id.unsigned_abs()),
            product_name,
            price,
            quantity: quantity.unsigned_abs(),
        });
    }
    rows.into_iter()
        .map(|row| {
            let items = by_order.remove(&row.id).unwrap_or_default();
            order_of(row, items)
        })
        .collect()
}

/// Rows per multi-row statement: MySQL and MariaDB allow 65,535 placeholders
/// per statement, and the widest row here has 9.
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;
/// Values per `IN (…)` list.
pub(crate) const IDS_PER_STATEMENT: usize = 10_000;

impl MySqlStore {
    /// Places one order synchronously the way a pessimistic design does: in
    /// one transaction, `SELECT … FOR UPDATE` on the product rows, then the
    /// decrement, the order and its outcome. Concurrent orders for the same
    /// product wait on the row lock, each holding a connection.
    ///
    /// This is the "AS-IS" baseline the benchmark compares the queued,
    /// batched pipeline against; oms itself never calls it.
    pub async fn place_locked(&self, command: &OrderCommand) -> OmsResult<Placement> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        match Self::place_in(
            &mut tx,
            std::slice::from_ref(command),
            Lock::ForUpdate,
            self.payment_timeout,
        )
        .await
        {
            Ok(mut placements) => {
                tx.commit().await.map_err(db_error)?;
                placements
                    .pop()
                    .ok_or_else(|| OmsError::Internal("no placement for the order".into()))
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    async fn place_in(
        tx: &mut Transaction<'_, MySql>,
        commands: &[OrderCommand],
        lock: Lock,
        payment_timeout: chrono::Duration,
    ) -> OmsResult<Vec<Placement>> {
        // 1. Outcomes recorded before (redeliveries), and the traces the
        //    batch's idempotency keys are bound to.
        let mut known = HashMap::new();
        for chunk in commands.chunks(IDS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "SELECT trace_id, member_id, status, order_id, reason, dead_lettered \
                 FROM order_outcomes WHERE trace_id IN (",
            );
            let mut sep = q.separated(", ");
            for c in chunk {
                sep.push_bind(c.trace_id.to_string());
            }
            q.push(")");
            let rows: Vec<KnownRow> = q
                .build_query_as()
                .fetch_all(&mut **tx)
                .await
                .map_err(db_error)?;
            for (t, m, s, o, r, dead_lettered) in rows {
                let trace = trace_of((t, m, s, o, r))?;
                known.insert(
                    trace.trace_id,
                    KnownOutcome {
                        trace,
                        dead_lettered,
                    },
                );
            }
        }
        let keyed: Vec<(MemberId, String)> = commands
            .iter()
            .filter_map(OrderCommand::idempotency_binding)
            .collect();
        let mut bound: KeyBindings = HashMap::new();
        for chunk in keyed.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "SELECT member_id, idem_key, trace_id FROM idempotency_keys WHERE (member_id, idem_key) IN (",
            );
            let mut sep = q.separated(", ");
            for (member, key) in chunk {
                sep.push("(")
                    .push_bind_unseparated(sql_id(member.0))
                    .push_unseparated(", ")
                    .push_bind_unseparated(key.as_str())
                    .push_unseparated(")");
            }
            q.push(")");
            // An `ascii_bin` column reads as bytes.
            let rows: Vec<(i64, Vec<u8>, String)> = q
                .build_query_as()
                .fetch_all(&mut **tx)
                .await
                .map_err(db_error)?;
            for (member, key, trace) in rows {
                let key = String::from_utf8_lossy(&key).into_owned();
                bound.insert((MemberId(member.unsigned_abs()), key), trace.parse()?);
            }
        }

        // 2. The products the batch names (a consistent snapshot).
        let product_ids: BTreeSet<i64> = commands
            .iter()
            .flat_map(|c| c.items.iter().map(|l| sql_id(l.product_id.0)))
            .filter(|id| *id > 0)
            .collect();
        let mut products: HashMap<ProductId, Product> = HashMap::new();
        let product_ids: Vec<i64> = product_ids.into_iter().collect();
        for chunk in product_ids.chunks(IDS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ("
            ));
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            if lock == Lock::ForUpdate {
                q.push(" FOR UPDATE");
            }
            let rows: Vec<ProductRow> = q
                .build_query_as()
                .fetch_all(&mut **tx)
                .await
                .map_err(db_error)?;
            for row in rows {
                let p = product_of(row);
                products.insert(p.id, p);
            }
        }

        // 3. What the members bought before of the products with a purchase
        //    limit: in the same transaction, after the products.
        //
        //    A batch adds to a product's purchases only together with the
        //    product's versioned decrement (steps 4 and 5, one transaction),
        //    so a product's purchases never change without its version.
        //    Optimistic: at REPEATABLE READ this read sees the snapshot the
        //    products were read in (fixed by the transaction's first read);
        //    at READ COMMITTED it could only see a newer one. Purchases
        //    newer than the products read were written by a batch that moved
        //    the version, so the decrement of step 4 finds it moved, and
        //    this batch rolls back (`Conflict`) and is planned again on a
        //    fresh snapshot: two consumers never both count the same units
        //    left under a limit. Locked: the product rows are locked, so no
        //    other batch adds to their purchases until this one ends; the
        //    snapshot may predate the lock, so the rows are read current
        //    (`FOR UPDATE`).
        let pairs = limited_pairs(commands, &products);
        let mut bought: Bought = HashMap::with_capacity(pairs.len());
        for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "SELECT product_id, member_id, units FROM member_purchases \
                 WHERE (product_id, member_id) IN (",
            );
            let mut sep = q.separated(", ");
            for (member, product) in chunk {
                sep.push("(")
                    .push_bind_unseparated(sql_id(product.0))
                    .push_unseparated(", ")
                    .push_bind_unseparated(sql_id(member.0))
                    .push_unseparated(")");
            }
            q.push(")");
            if lock == Lock::ForUpdate {
                q.push(" FOR UPDATE");
            }
            let rows: Vec<(i64, i64, i64)> = q
                .build_query_as()
                .fetch_all(&mut **tx)
                .await
                .map_err(db_error)?;
            for (product, member, units) in rows {
                bought.insert(
                    (
                        MemberId(member.unsigned_abs()),
                        ProductId(product.unsigned_abs()),
                    ),
                    units,
                );
            }
        }

        let plan = plan_batch(commands, &products, &known, &bound, &bought);

        // 4. One conditional, versioned decrement per product.
        for d in &plan.decrements {
            let done = sqlx::query(
                "UPDATE products SET stock = stock - ?, version = version + 1 \
                 WHERE id = ? AND version = ? AND stock >= ?",
            )
            .bind(d.quantity)
            .bind(sql_id(d.product_id.0))
            .bind(d.expected_version)
            .bind(d.quantity)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            if done.rows_affected() != 1 {
                return Err(OmsError::Conflict(format!(
                    "product {} changed since it was read (version {})",
                    d.product_id, d.expected_version
                )));
            }
        }

        // 5. What the batch adds to the members' purchases of limited
        //    products (after the decrements, which hold the product rows'
        //    locks until the commit).
        for chunk in plan.purchases.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "INSERT INTO member_purchases (product_id, member_id, units) ",
            );
            q.push_values(chunk, |mut b, p| {
                b.push_bind(sql_id(p.product_id.0))
                    .push_bind(sql_id(p.member_id.0))
                    .push_bind(p.units);
            });
            q.push(" ON DUPLICATE KEY UPDATE units = units + VALUES(units)");
            q.build().execute(&mut **tx).await.map_err(db_error)?;
        }

        // 6. The new orders and their items.
        let placing: Vec<(&OrderCommand, &oms_core::domain::PricedOrder)> = commands
            .iter()
            .zip(&plan.steps)
            .filter_map(|(c, s)| match s {
                Step::Place(priced) => Some((c, priced)),
                _ => None,
            })
            .collect();
        let mut order_ids = Vec::with_capacity(placing.len());
        if !placing.is_empty() {
            let placed_at = Utc::now();
            let now = placed_at.naive_utc();
            let due = sql_instant(placed_at + payment_timeout);
            let mut ids: HashMap<String, i64> = HashMap::with_capacity(placing.len());
            for chunk in placing.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<MySql>::new(
                    "INSERT INTO orders (trace_id, member_id, status, order_date, payment_due_at, \
                     total_price, receiver_name, receiver_phone, receiver_address) ",
                );
                q.push_values(chunk, |mut b, (c, priced)| {
                    b.push_bind(c.trace_id.to_string())
                        .push_bind(sql_id(c.member_id.0))
                        .push_bind(OrderStatus::PendingPayment.as_str())
                        .push_bind(now)
                        .push_bind(due)
                        .push_bind(priced.total_price)
                        .push_bind(c.receiver_info.name.as_str())
                        .push_bind(c.receiver_info.phone.as_str())
                        .push_bind(c.receiver_info.address.as_str());
                });
                q.build().execute(&mut **tx).await.map_err(db_error)?;

                let mut q = QueryBuilder::<MySql>::new(
                    "SELECT id, trace_id FROM orders WHERE trace_id IN (",
                );
                let mut sep = q.separated(", ");
                for (c, _) in chunk {
                    sep.push_bind(c.trace_id.to_string());
                }
                q.push(")");
                let rows: Vec<(i64, String)> = q
                    .build_query_as()
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db_error)?;
                ids.extend(rows.into_iter().map(|(id, t)| (t, id)));
            }
            for (c, _) in &placing {
                let id = ids.get(&c.trace_id.to_string()).copied().ok_or_else(|| {
                    OmsError::Internal(format!("order of {} was not inserted", c.trace_id))
                })?;
                order_ids.push(id);
            }

            let lines: Vec<(i64, usize, &OrderItem)> = placing
                .iter()
                .zip(&order_ids)
                .flat_map(|((_, priced), id)| {
                    priced
                        .items
                        .iter()
                        .enumerate()
                        .map(move |(n, i)| (*id, n, i))
                })
                .collect();
            for chunk in lines.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<MySql>::new(
                    "INSERT INTO order_items (order_id, line_no, product_id, product_name, price, quantity) ",
                );
                q.push_values(chunk, |mut b, (id, n, item)| {
                    b.push_bind(*id)
                        .push_bind(i32::try_from(*n).unwrap_or(i32::MAX))
                        .push_bind(sql_id(item.product_id.0))
                        .push_bind(item.product_name.as_str())
                        .push_bind(item.price)
                        .push_bind(i64::from(item.quantity));
                });
                q.build().execute(&mut **tx).await.map_err(db_error)?;
            }
        }

        // 7. An outcome for every new trace.
        let placements = resolve_placements(
            commands,
            &plan,
            order_ids.iter().map(|id| OrderId(id.unsigned_abs())),
        )?;
        let fresh: Vec<&Placement> = placements.iter().filter(|p| !p.replayed).collect();
        let now = Utc::now().naive_utc();
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "INSERT INTO order_outcomes (trace_id, member_id, status, order_id, reason, created_at) ",
            );
            q.push_values(chunk, |mut b, p| {
                let (order_id, reason) = match p.trace.state {
                    TraceState::Completed { order_id } => (Some(sql_id(order_id.0)), None),
                    TraceState::Failed { reason } => (None, Some(reason.as_str())),
                    TraceState::Processing => (None, None),
                };
                b.push_bind(p.trace.trace_id.to_string())
                    .push_bind(sql_id(p.trace.member_id.0))
                    .push_bind(p.trace.state.status_str())
                    .push_bind(order_id)
                    .push_bind(reason)
                    .push_bind(now);
            });
            q.build().execute(&mut **tx).await.map_err(db_error)?;
        }

        // 8. Bind the new keys to their traces (a concurrent binding of the
        //    same key is a unique violation: a conflict, retried).
        let binding: Vec<(&OrderCommand, (MemberId, String))> = commands
            .iter()
            .zip(&plan.steps)
            .filter(|(_, step)| {
                matches!(step, Step::Place(_))
                    || matches!(step, Step::Fail(r) if *r != FailureReason::Duplicate)
            })
            .filter_map(|(c, _)| c.idempotency_binding().map(|b| (c, b)))
            .filter(|(_, b)| !bound.contains_key(b))
            .collect();
        for chunk in binding.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<MySql>::new(
                "INSERT INTO idempotency_keys (member_id, idem_key, trace_id, created_at) ",
            );
            q.push_values(chunk, |mut b, (c, (member, key))| {
                b.push_bind(sql_id(member.0))
                    .push_bind(key.as_str())
                    .push_bind(c.trace_id.to_string())
                    .push_bind(now);
            });
            q.build().execute(&mut **tx).await.map_err(db_error)?;
        }
        Ok(placements)
    }
}

/// How a placement reads the product rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// A plain read; the versioned update detects a concurrent change.
    Optimistic,
    /// `FOR UPDATE`: concurrent placements wait for each other.
    ForUpdate,
}

#[async_trait]
impl OrderStore for MySqlStore {
    async fn place_batch(&self, commands: &[OrderCommand]) -> OmsResult<Vec<Placement>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        match Self::place_in(&mut tx, commands, Lock::Optimistic, self.payment_timeout).await {
            Ok(placements) => {
                tx.commit().await.map_err(db_error)?;
                Ok(placements)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    async fn settle_failure(&self, trace: &OrderTrace, dead_letter: bool) -> OmsResult<Placement> {
        let reason = match trace.state {
            TraceState::Failed { reason } => reason.as_str(),
            _ => {
                return Err(OmsError::Internal(
                    "only a FAILED outcome can be settled".into(),
                ))
            }
        };
        let inserted = sqlx::query(
            "INSERT IGNORE INTO order_outcomes \
             (trace_id, member_id, status, order_id, reason, dead_lettered, created_at) \
             VALUES (?, ?, 'FAILED', NULL, ?, ?, ?)",
        )
        .bind(trace.trace_id.to_string())
        .bind(sql_id(trace.member_id.0))
        .bind(reason)
        .bind(!dead_letter)
        .bind(Utc::now().naive_utc())
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected()
            == 1;
        let row: Option<KnownRow> = sqlx::query_as(
            "SELECT trace_id, member_id, status, order_id, reason, dead_lettered \
             FROM order_outcomes WHERE trace_id = ?",
        )
        .bind(trace.trace_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let (t, m, s, o, r, dead_lettered) =
            row.ok_or_else(|| OmsError::unavailable("mysql", "settled outcome not readable"))?;
        let known = KnownOutcome {
            trace: trace_of((t, m, s, o, r))?,
            dead_lettered,
        };
        Ok(known.placement(!inserted))
    }

    async fn settle_failures(&self, traces: &[OrderTrace]) -> OmsResult<Vec<Placement>> {
        let mut settled = Vec::with_capacity(traces.len());
        for chunk in traces.chunks(1000) {
            let reasons = chunk
                .iter()
                .map(|t| match t.state {
                    TraceState::Failed { reason } => Ok(reason.as_str()),
                    _ => Err(OmsError::Internal(
                        "only a FAILED outcome can be settled".into(),
                    )),
                })
                .collect::<OmsResult<Vec<_>>>()?;
            let now = Utc::now().naive_utc();
            let insert = || {
                let mut insert = QueryBuilder::<MySql>::new(
                    "INSERT IGNORE INTO order_outcomes \
                     (trace_id, member_id, status, order_id, reason, dead_lettered, created_at) ",
                );
                insert.push_values(chunk.iter().zip(&reasons), |mut row, (trace, reason)| {
                    row.push_bind(trace.trace_id.to_string())
                        .push_bind(sql_id(trace.member_id.0))
                        .push_bind("FAILED")
                        .push_bind(None::<i64>)
                        .push_bind(*reason)
                        .push_bind(false)
                        .push_bind(now);
                });
                insert
            };
            // Usually none is known yet: in one transaction, the insert
            // then tells, by the rows it added, that every outcome is the
            // one given, new, its DLQ record not yet sent.
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            let added = insert()
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
            if usize::try_from(added).ok() == Some(chunk.len()) {
                tx.commit().await.map_err(db_error)?;
                settled.extend(chunk.iter().map(|trace| {
                    KnownOutcome {
                        trace: *trace,
                        dead_lettered: false,
                    }
                    .placement(false)
                }));
                continue;
            }
            // Some were: undo, and find out which.
            tx.rollback().await.map_err(db_error)?;
            let ids: Vec<String> = chunk.iter().map(|t| t.trace_id.to_string()).collect();
            let select = |columns: &str| {
                let mut q = QueryBuilder::<MySql>::new(format!(
                    "SELECT {columns} FROM order_outcomes WHERE trace_id IN ("
                ));
                let mut sep = q.separated(", ");
                for id in &ids {
                    sep.push_bind(id.clone());
                }
                q.push(")");
                q
            };
            let before: BTreeSet<String> = select("trace_id")
                .build_query_scalar::<String>()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?
                .into_iter()
                .collect();
            insert()
                .build()
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            let standing: HashMap<String, KnownRow> =
                select("trace_id, member_id, status, order_id, reason, dead_lettered")
                    .build_query_as::<KnownRow>()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(|row| (row.0.clone(), row))
                    .collect();
            for id in &ids {
                let (t, m, s, o, r, dead_lettered) =
                    standing.get(id).cloned().ok_or_else(|| {
                        OmsError::unavailable("mysql", "settled outcome not readable")
                    })?;
                let known = KnownOutcome {
                    trace: trace_of((t, m, s, o, r))?,
                    dead_lettered,
                };
                settled.push(known.placement(before.contains(id)));
            }
        }
        Ok(settled)
    }

    async fn mark_dead_lettered(&self, trace_ids: &[TraceId]) -> OmsResult<()> {
        for chunk in trace_ids.chunks(1000) {
            let mut q = QueryBuilder::<MySql>::new(
                "UPDATE order_outcomes SET dead_lettered = TRUE WHERE trace_id IN (",
            );
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(id.to_string());
            }
            q.push(")");
            q.build().execute(&self.pool).await.map_err(db_error)?;
        }
        Ok(())
    }

    async fn outcome(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        let row: Option<OutcomeRow> = sqlx::query_as(
            "SELECT trace_id, member_id, status, order_id, reason FROM order_outcomes WHERE trace_id = ?",
        )
        .bind(trace_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(trace_of).transpose()
    }

    async fn order(&self, order_id: OrderId) -> OmsResult<Option<Order>> {
        let rows: Vec<OrderRow> =
            sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?"))
                .bind(sql_id(order_id.0))
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(load_orders(&self.pool, rows).await?.into_iter().next())
    }

    async fn orders_of(&self, member_id: MemberId, page: OrderPage) -> OmsResult<Vec<Order>> {
        let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
        let before = page.before.map_or(i64::MAX, |id| sql_id(id.0));
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE member_id = ? AND id < ? \
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(sql_id(member_id.0))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        load_orders(&self.pool, rows).await
    }

    async fn trace_for_key(&self, member_id: MemberId, key: &str) -> OmsResult<Option<TraceId>> {
        let row: Option<String> = sqlx::query_scalar(
            "SELECT trace_id FROM idempotency_keys WHERE member_id = ? AND idem_key = ?",
        )
        .bind(sql_id(member_id.0))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|t| t.parse()).transpose()
    }

    async fn undead_lettered(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        let age = chrono::Duration::from_std(older_than)
            .map_err(|e| OmsError::Internal(format!("older_than is out of range: {e}")))?;
        let rows: Vec<OutcomeRow> = sqlx::query_as(
            "SELECT trace_id, member_id, status, order_id, reason FROM order_outcomes \
             WHERE status = 'FAILED' AND dead_lettered = FALSE AND created_at < ? \
             ORDER BY created_at LIMIT ?",
        )
        .bind((Utc::now() - age).naive_utc())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(trace_of).collect()
    }
}
