//! The operators' reads: every member's orders, filtered, and the units a
//! product's orders hold (index `order_items_product (product_id,
//! order_id)`; by status alone, `orders_payment_due` or the primary key:
//! see the migration `admin_views` for why there is no `(status, id)`).

use async_trait::async_trait;
use oms_core::domain::{
    HeldUnits, OmsError, OmsResult, Order, OrderFilter, OrderPage, OrderStatus, ProductId,
};
use oms_core::port::outbound::OrderAdminStore;
use sqlx::{MySql, QueryBuilder};

use crate::error::db_error;
use crate::orders::{load_orders, OrderRow, ORDER_COLUMNS};
use crate::{sql_count, sql_id, MySqlStore};

#[async_trait]
impl OrderAdminStore for MySqlStore {
    async fn find_orders(&self, filter: &OrderFilter, page: OrderPage) -> OmsResult<Vec<Order>> {
        let before = page.before.map_or(i64::MAX, |id| sql_id(id.0));
        // With a product, its lines lead (one line per product and order):
        // a backward range of `order_items_product`, each order joined by
        // its key. The two tables share no column name.
        let (mut q, id) = match filter.product_id {
            Some(product_id) => {
                let mut q = QueryBuilder::<MySql>::new(format!(
                    "SELECT {ORDER_COLUMNS} FROM order_items \
                     JOIN orders ON orders.id = order_items.order_id \
                     WHERE order_items.product_id = "
                ));
                q.push_bind(sql_id(product_id.0));
                (q, "order_items.order_id")
            }
            None => (
                QueryBuilder::<MySql>::new(format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE TRUE"
                )),
                "orders.id",
            ),
        };
        if let Some(status) = filter.status {
            q.push(" AND orders.status = ").push_bind(status.as_str());
        }
        q.push(format_args!(" AND {id} < "))
            .push_bind(before)
            .push(format_args!(" ORDER BY {id} DESC LIMIT "))
            .push_bind(sql_count(page.limit));
        let rows: Vec<OrderRow> = q
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        load_orders(&self.pool, rows).await
    }

    async fn held_units(&self, product_id: ProductId) -> OmsResult<HeldUnits> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT orders.status, CAST(SUM(order_items.quantity) AS SIGNED) FROM order_items \
             JOIN orders ON orders.id = order_items.order_id \
             WHERE order_items.product_id = ? AND orders.status IN (?, ?) \
             GROUP BY orders.status",
        )
        .bind(sql_id(product_id.0))
        .bind(OrderStatus::PendingPayment.as_str())
        .bind(OrderStatus::Paid.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut held = HeldUnits::default();
        for (status, units) in rows {
            match OrderStatus::parse(&status)? {
                OrderStatus::PendingPayment => held.pending_payment += units,
                OrderStatus::Paid => held.paid += units,
                other => {
                    return Err(OmsError::Internal(format!(
                        "held units counted for status {other}"
                    )))
                }
            }
        }
        Ok(held)
    }
}
