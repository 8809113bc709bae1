//! Products and their stock.

use serde::{Deserialize, Serialize};

use super::{OmsError, OmsResult, ProductId};

/// A product with its stock and the version of its optimistic lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Id of the product.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Unit price in the currency's minor unit.
    pub price: i64,
    /// Units left.
    pub stock: i64,
    /// Bumped by every write; the optimistic lock compares it.
    pub version: i64,
}

/// The fields an operator sets when creating or replacing a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDraft {
    /// Display name (not empty).
    pub name: String,
    /// Unit price, > 0.
    pub price: i64,
    /// Units on sale, ≥ 0.
    pub stock: i64,
}

impl ProductDraft {
    /// Checks the rules of a product: a name, a positive price, no negative stock.
    pub fn validate(&self) -> OmsResult<()> {
        if self.name.trim().is_empty() {
            return Err(OmsError::Invalid("name must not be empty".into()));
        }
        if self.name.chars().count() > 255 {
            return Err(OmsError::Invalid(
                "name must be at most 255 characters".into(),
            ));
        }
        if self.price <= 0 {
            return Err(OmsError::Invalid("price must be greater than 0".into()));
        }
        if self.stock < 0 {
            return Err(OmsError::Invalid("stock must not be negative".into()));
        }
        Ok(())
    }

    /// The product this draft describes, at version 0.
    pub fn into_product(self, id: ProductId) -> Product {
        Product {
            id,
            name: self.name,
            price: self.price,
            stock: self.stock,
            version: 0,
        }
    }
}
