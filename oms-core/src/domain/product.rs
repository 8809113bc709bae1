//! Products and their stock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    FailureReason, FieldError, FieldErrorCode, FieldErrors, OmsError, OmsResult, ProductId,
};

/// The rules of a sale: how much one member may buy and when the product
/// is on sale. Every field is optional; an empty set of rules sells to
/// anyone, any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SaleRules {
    /// Units one member may buy in total (over all their orders), > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_per_member: Option<i64>,
    /// Orders accepted before this instant are refused `SALE_NOT_STARTED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// Orders accepted at or after this instant are refused `SALE_ENDED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_ends_at: Option<DateTime<Utc>>,
}

impl SaleRules {
    /// Checks the rules as an operator sets them at `now`: a positive
    /// limit, a window that ends after it starts and has not ended yet.
    /// Every field that breaks a rule is reported ([`OmsError::Validation`]).
    pub fn validate(&self, now: DateTime<Utc>) -> OmsResult<()> {
        let mut errors = FieldErrors::new();
        self.check(now, &mut errors);
        errors.into_result()
    }

    /// Adds the errors of [`validate`](Self::validate) to `errors`.
    fn check(&self, now: DateTime<Utc>, errors: &mut FieldErrors) {
        if self.max_per_member.is_some_and(|m| m <= 0) {
            errors.push(
                "maxPerMember",
                FieldErrorCode::OutOfRange,
                "must be greater than 0",
            );
        }
        match (self.sale_starts_at, self.sale_ends_at) {
            (Some(start), Some(end)) if end <= start => errors.push(
                "saleEndsAt",
                FieldErrorCode::OutOfRange,
                "must be after saleStartsAt",
            ),
            (_, Some(end)) if end <= now => {
                errors.push("saleEndsAt", FieldErrorCode::OutOfRange, "is in the past")
            }
            _ => {}
        }
    }

    /// Whether an order accepted at `at` falls in the sale window; the
    /// reason it does not otherwise.
    pub fn window_admits(&self, at: DateTime<Utc>) -> Result<(), FailureReason> {
        if self.sale_starts_at.is_some_and(|start| at < start) {
            return Err(FailureReason::SaleNotStarted);
        }
        if self.sale_ends_at.is_some_and(|end| at >= end) {
            return Err(FailureReason::SaleEnded);
        }
        Ok(())
    }

    /// Whether a member who bought `bought` units may buy `more`.
    pub fn limit_admits(&self, bought: i64, more: i64) -> bool {
        self.max_per_member
            .is_none_or(|max| bought.saturating_add(more) <= max)
    }
}

/// How an update changes a product's [`SaleRules`], field by field:
/// `None` keeps the field, `Some(None)` clears it, `Some(Some(v))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesChange {
    /// The new `maxPerMember`.
    pub max_per_member: Option<Option<i64>>,
    /// The new `saleStartsAt`.
    pub sale_starts_at: Option<Option<DateTime<Utc>>>,
    /// The new `saleEndsAt`.
    pub sale_ends_at: Option<Option<DateTime<Utc>>>,
}

impl RulesChange {
    /// The rules after this change of `current`.
    pub fn apply_to(&self, current: &SaleRules) -> SaleRules {
        SaleRules {
            max_per_member: self.max_per_member.unwrap_or(current.max_per_member),
            sale_starts_at: self.sale_starts_at.unwrap_or(current.sale_starts_at),
            sale_ends_at: self.sale_ends_at.unwrap_or(current.sale_ends_at),
        }
    }

    /// Whether the change touches the window (then the new window is
    /// checked against the clock; an unchanged one that has ended since is
    /// left alone).
    fn touches_window(&self) -> bool {
        self.sale_starts_at.is_some() || self.sale_ends_at.is_some()
    }
}

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
    /// Purchase limit and sale window.
    #[serde(default)]
    pub rules: SaleRules,
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
    /// Purchase limit and sale window.
    #[serde(default)]
    pub rules: SaleRules,
}

impl ProductDraft {
    /// Checks the rules of a product: a name, a positive price, no negative
    /// stock, and [`SaleRules::validate`] at the present time. Every field
    /// that breaks a rule is reported ([`OmsError::Validation`]).
    pub fn validate(&self) -> OmsResult<()> {
        self.field_errors().into_result()
    }

    /// The fields that break the rules of [`validate`](Self::validate), by
    /// their names in the request (`name`, `price`, `stock`,
    /// `maxPerMember`, `saleEndsAt`).
    pub fn field_errors(&self) -> FieldErrors {
        let mut errors = FieldErrors::new();
        self.check_fields(&mut errors);
        self.rules.check(Utc::now(), &mut errors);
        errors
    }

    fn check_fields(&self, errors: &mut FieldErrors) {
        if self.name.trim().is_empty() {
            errors.push("name", FieldErrorCode::Required, "must not be empty");
        } else if self.name.chars().count() > 255 {
            errors.push(
                "name",
                FieldErrorCode::TooLong,
                "must be at most 255 characters",
            );
        }
        if self.price <= 0 {
            errors.push(
                "price",
                FieldErrorCode::OutOfRange,
                "must be greater than 0",
            );
        }
        if self.stock < 0 {
            errors.push("stock", FieldErrorCode::OutOfRange, "must not be negative");
        }
    }

    /// The product this draft describes, at version 0.
    pub fn into_product(self, id: ProductId) -> Product {
        Product {
            id,
            name: self.name,
            price: self.price,
            stock: self.stock,
            version: 0,
            rules: self.rules,
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
    /// What happens to the sale rules.
    pub rules: RulesChange,
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
    /// state. Every field that breaks one is reported
    /// ([`OmsError::Validation`]).
    pub fn validate(&self) -> OmsResult<()> {
        let mut errors = FieldErrors::new();
        self.check_fields(&mut errors);
        errors.into_result()
    }

    fn check_fields(&self, errors: &mut FieldErrors) {
        ProductDraft {
            name: self.name.clone(),
            price: self.price,
            stock: match self.stock {
                StockChange::Set { stock, .. } => stock,
                _ => 0,
            },
            rules: SaleRules::default(),
        }
        .check_fields(errors);
    }

    /// Applies the update to `current` (read in the same transaction as the
    /// write): the new product, one version up, and the stock delta. Pure,
    /// so every store applies the same rules.
    pub fn apply_to(&self, current: &Product) -> OmsResult<ProductChange> {
        let mut errors = FieldErrors::new();
        self.check_fields(&mut errors);
        let rules = self.rules.apply_to(&current.rules);
        if self.rules.touches_window() {
            rules.check(Utc::now(), &mut errors);
        } else {
            SaleRules {
                sale_starts_at: None,
                sale_ends_at: None,
                ..rules
            }
            .check(Utc::now(), &mut errors);
        }
        errors.into_result()?;
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
                let after = current.stock.checked_add(delta).ok_or_else(|| {
                    FieldError::new("stockDelta", FieldErrorCode::OutOfRange, "is out of range")
                })?;
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
                rules,
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
            rules: SaleRules::default(),
        }
    }

    fn update(stock: StockChange) -> ProductUpdate {
        ProductUpdate {
            name: "Tteokbokki (fixed)".into(),
            price: 12900,
            stock,
            rules: RulesChange::default(),
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
            Err(OmsError::Validation(e)) if e.fields() == ["stockDelta"]
        ));
    }
}

#[cfg(test)]
mod rules_tests {
    use chrono::Duration;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn bad_rules_are_refused() {
        let now = at(0);
        let zero = SaleRules {
            max_per_member: Some(0),
            ..SaleRules::default()
        };
        assert!(matches!(
            zero.validate(now),
            Err(OmsError::Validation(e)) if e.fields() == ["maxPerMember"]
        ));
        let backwards = SaleRules {
            sale_starts_at: Some(at(100)),
            sale_ends_at: Some(at(50)),
            ..SaleRules::default()
        };
        assert!(matches!(
            backwards.validate(now),
            Err(OmsError::Validation(e)) if e.fields() == ["saleEndsAt"]
        ));
        let past = SaleRules {
            sale_ends_at: Some(at(-1)),
            ..SaleRules::default()
        };
        assert!(matches!(
            past.validate(now),
            Err(OmsError::Validation(e)) if e.fields() == ["saleEndsAt"]
        ));
        let fine = SaleRules {
            max_per_member: Some(2),
            sale_starts_at: Some(at(-100)),
            sale_ends_at: Some(at(100)),
        };
        assert!(fine.validate(now).is_ok());
    }

    #[test]
    fn the_window_is_half_open() {
        let rules = SaleRules {
            sale_starts_at: Some(at(0)),
            sale_ends_at: Some(at(10)),
            ..SaleRules::default()
        };
        assert_eq!(
            rules.window_admits(at(0) - Duration::milliseconds(1)),
            Err(FailureReason::SaleNotStarted)
        );
        assert_eq!(rules.window_admits(at(0)), Ok(()));
        assert_eq!(rules.window_admits(at(10)), Err(FailureReason::SaleEnded));
        assert_eq!(SaleRules::default().window_admits(at(0)), Ok(()));
    }

    #[test]
    fn the_limit_counts_what_was_bought() {
        let rules = SaleRules {
            max_per_member: Some(2),
            ..SaleRules::default()
        };
        assert!(rules.limit_admits(0, 2));
        assert!(rules.limit_admits(1, 1));
        assert!(!rules.limit_admits(1, 2));
        assert!(!rules.limit_admits(i64::MAX, 1));
        assert!(SaleRules::default().limit_admits(1_000_000, 1_000));
    }

    #[test]
    fn an_update_keeps_clears_or_sets_each_rule() {
        let current = SaleRules {
            max_per_member: Some(2),
            sale_starts_at: Some(at(0)),
            sale_ends_at: None,
        };
        let change = RulesChange {
            max_per_member: None,
            sale_starts_at: Some(None),
            sale_ends_at: Some(Some(at(10))),
        };
        assert_eq!(
            change.apply_to(&current),
            SaleRules {
                max_per_member: Some(2),
                sale_starts_at: None,
                sale_ends_at: Some(at(10)),
            }
        );
    }
}
