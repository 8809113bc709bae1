//! Pricing and stock checking of an order.

use super::{OmsError, OmsResult, OrderItem, OrderLine, Product, ProductId};

/// An order priced against the catalogue: one item per product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedOrder {
    /// One item per distinct product, in first-seen order.
    pub items: Vec<OrderItem>,
    /// Sum of price × quantity.
    pub total_price: i64,
}

/// Prices orders and checks their stock.
///
/// Lines of the same product are summed *before* the stock check, so an order
/// of `2 × A` and `2 × A` against a stock of 3 fails as a whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderPriceCalculator;

impl OrderPriceCalculator {
    /// Sums the quantities of lines of the same product, in first-seen order.
    pub fn aggregate(lines: &[OrderLine]) -> Vec<(ProductId, i64)> {
        let mut out: Vec<(ProductId, i64)> = Vec::with_capacity(lines.len());
        for line in lines {
            match out.iter_mut().find(|(id, _)| *id == line.product_id) {
                Some((_, q)) => *q += i64::from(line.quantity),
                None => out.push((line.product_id, i64::from(line.quantity))),
            }
        }
        out
    }

    /// Prices `lines` against the products `lookup` returns, checking that
    /// every product exists and that `available` stock covers the summed
    /// quantity.
    pub fn price<'a>(
        lines: &[OrderLine],
        lookup: impl Fn(ProductId) -> Option<&'a Product>,
        available: impl Fn(&Product) -> i64,
    ) -> OmsResult<PricedOrder> {
        let mut items = Vec::new();
        let mut total_price: i64 = 0;
        for (product_id, quantity) in Self::aggregate(lines) {
            let product = lookup(product_id).ok_or(OmsError::ProductNotFound { product_id })?;
            if available(product) < quantity {
                return Err(OmsError::OutOfStock { product_id });
            }
            let line_total = product
                .price
                .checked_mul(quantity)
                .and_then(|t| total_price.checked_add(t))
                .ok_or_else(|| OmsError::Invalid("order total overflows".into()))?;
            total_price = line_total;
            items.push(OrderItem {
                product_id,
                product_name: product.name.clone(),
                price: product.price,
                quantity: u32::try_from(quantity)
                    .map_err(|_| OmsError::Invalid("quantity overflows".into()))?,
            });
        }
        Ok(PricedOrder { items, total_price })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u64, price: i64, stock: i64) -> Product {
        Product {
            id: ProductId(id),
            name: format!("p{id}"),
            price,
            stock,
            version: 0,
            rules: Default::default(),
        }
    }

    fn line(id: u64, q: u32) -> OrderLine {
        OrderLine {
            product_id: ProductId(id),
            quantity: q,
        }
    }

    #[test]
    fn duplicate_lines_are_summed_before_the_stock_check() {
        let p = product(1, 100, 3);
        let r = OrderPriceCalculator::price(&[line(1, 2), line(1, 2)], |_| Some(&p), |p| p.stock);
        assert!(matches!(
            r,
            Err(OmsError::OutOfStock {
                product_id: ProductId(1)
            })
        ));

        let ok = OrderPriceCalculator::price(&[line(1, 1), line(1, 2)], |_| Some(&p), |p| p.stock)
            .unwrap();
        assert_eq!(ok.items.len(), 1);
        assert_eq!(ok.items[0].quantity, 3);
        assert_eq!(ok.total_price, 300);
    }

    #[test]
    fn totals_and_unknown_products() {
        let a = product(1, 100, 10);
        let b = product(2, 250, 10);
        let lookup = |id: ProductId| match id.0 {
            1 => Some(&a),
            2 => Some(&b),
            _ => None,
        };
        let priced =
            OrderPriceCalculator::price(&[line(2, 2), line(1, 1)], lookup, |p| p.stock).unwrap();
        assert_eq!(priced.total_price, 600);
        assert_eq!(priced.items[0].product_id, ProductId(2));
        let missing = OrderPriceCalculator::price(&[line(1, 1), line(9, 1)], lookup, |p| p.stock);
        assert!(matches!(
            missing,
            Err(OmsError::ProductNotFound {
                product_id: ProductId(9)
            })
        ));
    }

    #[test]
    fn overflowing_totals_are_invalid_not_a_panic() {
        let p = product(1, i64::MAX, 10_000);
        let r = OrderPriceCalculator::price(&[line(1, 1000)], |_| Some(&p), |p| p.stock);
        assert!(matches!(r, Err(OmsError::Invalid(_))));
    }
}
