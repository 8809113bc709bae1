//! What operators read: every member's orders, filtered, and where a
//! product's units are.

use super::{OrderStatus, ProductId};

/// Which orders an operator asks for. Every field that is set narrows the
/// answer; an empty filter matches every order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only orders with a line of this product.
    pub product_id: Option<ProductId>,
}

impl OrderFilter {
    /// Whether an order in `status` with lines of `products` matches.
    pub fn matches(
        &self,
        status: OrderStatus,
        mut products: impl Iterator<Item = ProductId>,
    ) -> bool {
        self.status.is_none_or(|s| s == status)
            && self.product_id.is_none_or(|p| products.any(|q| q == p))
    }
}

/// Units of a product in the orders that hold them: those waiting for
/// their payment and those paid (cancelled, expired and refunded orders
/// gave theirs back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldUnits {
    /// Units in PENDING_PAYMENT orders.
    pub pending_payment: i64,
    /// Units in PAID orders.
    pub paid: i64,
}

/// Where a product's units are, as an operator sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockReport {
    /// The product.
    pub product_id: ProductId,
    /// Units left, as committed in the database.
    pub stock: i64,
    /// The product's version.
    pub version: i64,
    /// Units the stock gate lets intake reserve; `None` when there is no
    /// gate, or it holds no level for the product (not loaded yet).
    pub gate_level: Option<i64>,
    /// Units held by placed orders.
    pub held: HeldUnits,
}
