use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use oms_core::domain::{
    MemberId, OmsError, OmsResult, Product, ProductChange, ProductId, ProductUpdate, Purchase,
    SaleRules,
};
use oms_core::port::outbound::ProductStore;

use crate::error::{db_error, is_unique_violation};
use crate::{sql_id, MySqlStore};

/// The columns of a product, in the order of [`ProductRow`].
pub(crate) const PRODUCT_COLUMNS: &str =
    "id, name, price, stock, version, max_per_member, sale_starts_at, sale_ends_at";

/// A row of [`PRODUCT_COLUMNS`].
pub(crate) type ProductRow = (
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

pub(crate) fn product_of(row: ProductRow) -> Product {
    let (id, name, price, stock, version, max_per_member, starts, ends) = row;
    Product {
        id: ProductId(id.unsigned_abs()),
        name,
        price,
        stock,
        version,
        rules: SaleRules {
            max_per_member,
            sale_starts_at: starts.map(|at| at.and_utc()),
            sale_ends_at: ends.map(|at| at.and_utc()),
        },
    }
}

/// An optional instant as a `DATETIME(3)` holds it ([`crate::sql_instant`]).
fn sql_instant(at: Option<DateTime<Utc>>) -> Option<NaiveDateTime> {
    at.map(crate::sql_instant)
}

#[async_trait]
impl ProductStore for MySqlStore {
    async fn create(&self, product: &Product) -> OmsResult<()> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO products ({PRODUCT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(sql_id(product.id.0))
        .bind(&product.name)
        .bind(product.price)
        .bind(product.stock)
        .bind(product.version)
        .bind(product.rules.max_per_member)
        .bind(sql_instant(product.rules.sale_starts_at))
        .bind(sql_instant(product.rules.sale_ends_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(OmsError::ProductExists {
                product_id: product.id,
            }),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn update(
        &self,
        product_id: ProductId,
        update: &ProductUpdate,
    ) -> OmsResult<ProductChange> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let row: Option<ProductRow> = sqlx::query_as(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ? FOR UPDATE"
        ))
        .bind(sql_id(product_id.0))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let current = row
            .map(product_of)
            .ok_or(OmsError::ProductNotFound { product_id })?;
        let change = update.apply_to(&current)?;
        let rules = &change.product.rules;
        let done = sqlx::query(
            "UPDATE products SET name = ?, price = ?, stock = ?, version = ?, \
             max_per_member = ?, sale_starts_at = ?, sale_ends_at = ? \
             WHERE id = ? AND version = ?",
        )
        .bind(&change.product.name)
        .bind(change.product.price)
        .bind(change.product.stock)
        .bind(change.product.version)
        .bind(rules.max_per_member)
        .bind(sql_instant(rules.sale_starts_at))
        .bind(sql_instant(rules.sale_ends_at))
        .bind(sql_id(product_id.0))
        .bind(current.version)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Err(OmsError::Conflict(format!(
                "product {product_id} changed while it was updated"
            )));
        }
        tx.commit().await.map_err(db_error)?;
        Ok(change)
    }

    async fn get(&self, product_id: ProductId) -> OmsResult<Option<Product>> {
        let row: Option<ProductRow> = sqlx::query_as(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?"
        ))
        .bind(sql_id(product_id.0))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.map(product_of))
    }

    async fn list(&self) -> OmsResult<Vec<Product>> {
        let rows: Vec<ProductRow> = sqlx::query_as(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(product_of).collect())
    }

    async fn purchases(&self, product_id: ProductId) -> OmsResult<Vec<Purchase>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT member_id, units FROM member_purchases \
             WHERE product_id = ? AND units > 0 ORDER BY member_id",
        )
        .bind(sql_id(product_id.0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(member_id, units)| Purchase {
                member_id: MemberId(member_id.unsigned_abs()),
                product_id,
                units,
            })
            .collect())
    }
}
