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

/// How an update changes a product's stock.
///
/// Stock is sold while an operator edits a product, so an update never
/// writes a stock figure it read earlier unless the product is still at the
/// version it was read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockChange {
    /// Leave the stock as it is (orders keep taking units).
    Keep,
    /// Set the stock to `stock`. With `expected_version`, only if the
    /// product is still at that version ([`OmsError::PreconditionFailed`]
    /// otherwise). Without it, only if the stock already is `stock` (a
    /// no-op); any other value needs the version
    /// ([`OmsError::PreconditionRequired`]).
    Set {
        /// The new stock, ≥ 0.
        stock: i64,
        /// The version the caller read.
        expected_version: Option<i64>,
    },
    /// Add units (restock) or remove them (negative), relative to what is
    /// left now; the stock may not go below 0.
    Adjust(i64),
}

/// An operator's update of a product: name and price are replaced, the
/// stock changes as [`StockChange`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdate {
    /// Display name (not empty).
    pub name: String,
    /// Unit price, > 0.
    pub price: i64,
    /// What happens to the stock.
    pub stock: StockChange,
}

/// A product after an update, and how many units the update added to its
/// stock (negative when it removed units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductChange {
    /// The product as it stands after the update.
    pub product: Product,
    /// Units added to the stock by this update.
    pub stock_delta: i64,
}

impl ProductUpdate {
    /// Checks the rules of a product that do not depend on its current
    /// state.
    pub fn validate(&self) -> OmsResult<()> {
        ProductDraft {
            name: self.name.clone(),
            price: self.price,
            stock: match self.stock {
                StockChange::Set { stock, .. } => stock,
                _ => 0,
            },
        }
        .validate()
    }

    /// Applies the update to `current` (read in the same transaction as the
    /// write): the new product, one version up, and the stock delta. Pure,
    /// so every store applies the same rules.
    pub fn apply_to(&self, current: &Product) -> OmsResult<ProductChange> {
        self.validate()?;
        let stock_delta = match self.stock {
            StockChange::Keep => 0,
            StockChange::Set {
                stock,
                expected_version: Some(expected),
            } => {
                if expected != current.version {
                    return Err(OmsError::PreconditionFailed {
                        expected,
                        actual: current.version,
                    });
                }
                stock - current.stock
            }
            StockChange::Set {
                stock,
                expected_version: None,
            } => {
                if stock != current.stock {
                    return Err(OmsError::PreconditionRequired(format!(
                        "stock is {} now, not {stock}: send the version you read \
                         (If-Match) to set it, or a relative stockDelta",
                        current.stock
                    )));
                }
                0
            }
            StockChange::Adjust(delta) => {
                let after = current
                    .stock
                    .checked_add(delta)
                    .ok_or_else(|| OmsError::Invalid("stockDelta is out of range".into()))?;
                if after < 0 {
                    return Err(OmsError::OutOfStock {
                        product_id: current.id,
                    });
                }
                delta
            }
        };
        Ok(ProductChange {
            product: Product {
                id: current.id,
                name: self.name.clone(),
                price: self.price,
                stock: current.stock + stock_delta,
                version: current.version + 1,
            },
            stock_delta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Product {
        Product {
            id: ProductId(1),
            name: "Tteokbokki".into(),
            price: 12900,
            stock: 200,
            version: 7,
        }
    }

    fn update(stock: StockChange) -> ProductUpdate {
        ProductUpdate {
            name: "Tteokbokki (fixed)".into(),
            price: 12900,
            stock,
        }
    }

    #[test]
    fn a_rename_keeps_the_stock_sold_meanwhile() {
        let c = update(StockChange::Keep).apply_to(&current()).unwrap();
        assert_eq!(c.product.stock, 200);
        assert_eq!(c.product.version, 8);
        assert_eq!(c.stock_delta, 0);
        assert_eq!(c.product.name, "Tteokbokki (fixed)");
    }

    #[test]
    fn a_stale_absolute_stock_is_refused() {
        // Read at 500 / version 3; 300 sold since.
        let stale = StockChange::Set {
            stock: 500,
            expected_version: Some(3),
        };
        assert!(matches!(
            update(stale).apply_to(&current()),
            Err(OmsError::PreconditionFailed {
                expected: 3,
                actual: 7
            })
        ));
        let unconditional = StockChange::Set {
            stock: 500,
            expected_version: None,
        };
        assert!(matches!(
            update(unconditional).apply_to(&current()),
            Err(OmsError::PreconditionRequired(_))
        ));
    }

    #[test]
    fn a_current_absolute_stock_is_set_and_the_delta_reported() {
        let set = StockChange::Set {
            stock: 450,
            expected_version: Some(7),
        };
        let c = update(set).apply_to(&current()).unwrap();
        assert_eq!((c.product.stock, c.stock_delta), (450, 250));
        let same = StockChange::Set {
            stock: 200,
            expected_version: None,
        };
        assert_eq!(update(same).apply_to(&current()).unwrap().stock_delta, 0);
    }

    #[test]
    fn relative_adjustments_never_go_below_zero() {
        let c = update(StockChange::Adjust(-50))
            .apply_to(&current())
            .unwrap();
        assert_eq!((c.product.stock, c.stock_delta), (150, -50));
        assert!(matches!(
            update(StockChange::Adjust(-201)).apply_to(&current()),
            Err(OmsError::OutOfStock { .. })
        ));
        assert!(matches!(
            update(StockChange::Adjust(i64::MAX)).apply_to(&current()),
            Err(OmsError::Invalid(_))
        ));
    }
}
