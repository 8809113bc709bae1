use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult, Product, ProductChange, ProductId, ProductUpdate};
use oms_core::port::outbound::ProductStore;

use crate::error::{db_error, is_unique_violation};
use crate::{sql_id, MySqlStore};

type ProductRow = (i64, String, i64, i64, i64);

pub(crate) fn product_of(row: ProductRow) -> Product {
    let (id, name, price, stock, version) = row;
    Product {
        id: ProductId(id.unsigned_abs()),
        name,
        price,
        stock,
        version,
        rules: Default::default(),
    }
}

#[async_trait]
impl ProductStore for MySqlStore {
    async fn create(&self, product: &Product) -> OmsResult<()> {
        let inserted = sqlx::query(
            "INSERT INTO products (id, name, price, stock, version) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(sql_id(product.id.0))
        .bind(&product.name)
        .bind(product.price)
        .bind(product.stock)
        .bind(product.version)
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
        let row: Option<ProductRow> = sqlx::query_as(
            "SELECT id, name, price, stock, version FROM products WHERE id = ? FOR UPDATE",
        )
        .bind(sql_id(product_id.0))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let current = row
            .map(product_of)
            .ok_or(OmsError::ProductNotFound { product_id })?;
        let change = update.apply_to(&current)?;
        let done = sqlx::query(
            "UPDATE products SET name = ?, price = ?, stock = ?, version = ? \
             WHERE id = ? AND version = ?",
        )
        .bind(&change.product.name)
        .bind(change.product.price)
        .bind(change.product.stock)
        .bind(change.product.version)
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
        let row: Option<ProductRow> =
            sqlx::query_as("SELECT id, name, price, stock, version FROM products WHERE id = ?")
                .bind(sql_id(product_id.0))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(row.map(product_of))
    }

    async fn list(&self) -> OmsResult<Vec<Product>> {
        let rows: Vec<ProductRow> =
            sqlx::query_as("SELECT id, name, price, stock, version FROM products ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(rows.into_iter().map(product_of).collect())
    }
}
