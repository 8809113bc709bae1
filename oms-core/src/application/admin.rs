use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Caller, OmsError, OmsResult, OrderFilter, OrderPage, Orders, ProductId, StockReport,
};
use crate::port::inbound::AdminQuery;
use crate::port::outbound::{OrderAdminStore, ProductStore, StockGate};

/// The operators' views: every member's orders, filtered and paged, and a
/// product's stock in the database, in the stock gate
/// ([`with_gate`](Self::with_gate)) and in the orders that hold it.
pub struct AdminService {
    orders: Arc<dyn OrderAdminStore>,
    products: Arc<dyn ProductStore>,
    gate: Option<Arc<dyn StockGate>>,
}

impl AdminService {
    /// A service on these stores, without a stock gate (every gate level
    /// is `None`).
    pub fn new(orders: Arc<dyn OrderAdminStore>, products: Arc<dyn ProductStore>) -> Self {
        Self {
            orders,
            products,
            gate: None,
        }
    }

    /// Reads gate levels from `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }
}

#[async_trait]
impl AdminQuery for AdminService {
    async fn orders(
        &self,
        caller: Caller,
        filter: OrderFilter,
        page: OrderPage,
    ) -> OmsResult<Orders> {
        caller.require_admin()?;
        let orders = self.orders.find_orders(&filter, page.probe()).await?;
        Ok(Orders::of_probe(page, orders))
    }

    async fn stock(&self, caller: Caller, product_id: ProductId) -> OmsResult<StockReport> {
        caller.require_admin()?;
        let product = self
            .products
            .get(product_id)
            .await?
            .ok_or(OmsError::ProductNotFound { product_id })?;
        let gate_level = match &self.gate {
            Some(gate) => gate.available(product_id).await?,
            None => None,
        };
        let held = self.orders.held_units(product_id).await?;
        Ok(StockReport {
            product_id,
            stock: product.stock,
            version: product.version,
            gate_level,
            held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{HeldUnits, OrderId, Product, Role};
    use crate::memory::{InMemoryStockGate, InMemoryStore, InMemoryTraceStore};
    use crate::port::outbound::{GateLevel, OrderStore};
    use crate::testkit::{command, draft};

    fn service(store: &Arc<InMemoryStore>) -> AdminService {
        AdminService::new(store.clone(), store.clone())
    }

    async fn product(store: &InMemoryStore, id: u64, stock: i64) -> ProductId {
        let product: Product = draft("p", stock).into_product(ProductId(id));
        store.create(&product).await.unwrap();
        product.id
    }

    #[tokio::test]
    async fn only_operators_read() {
        let store = Arc::new(InMemoryStore::new());
        let admin = service(&store);
        let user = Caller::user(7);
        assert!(matches!(
            admin
                .orders(user, OrderFilter::default(), OrderPage::default())
                .await,
            Err(OmsError::Forbidden(_))
        ));
        // Forbidden before anything else: an unknown product is not revealed.
        assert!(matches!(
            admin.stock(user, ProductId(1)).await,
            Err(OmsError::Forbidden(_))
        ));
        assert!(matches!(
            admin.stock(Caller::admin(1), ProductId(1)).await,
            Err(OmsError::ProductNotFound { .. })
        ));
        assert_eq!(Caller::admin(1).role, Role::Admin);
    }

    #[tokio::test]
    async fn pages_carry_the_cursor_of_the_next() {
        let store = Arc::new(InMemoryStore::new());
        let p = product(&store, 1, 10).await;
        for member in 1..=5 {
            store
                .place_batch(&[command(crate::domain::MemberId(member), &[(p, 1)])])
                .await
                .unwrap();
        }
        let admin = service(&store);
        let filter = OrderFilter {
            product_id: Some(p),
            ..OrderFilter::default()
        };
        let first = admin
            .orders(Caller::admin(1), filter, OrderPage::first(2).unwrap())
            .await
            .unwrap();
        let ids: Vec<u64> = first.orders.iter().map(|o| o.order_id.0).collect();
        assert_eq!(ids, vec![5, 4]);
        assert_eq!(first.next, Some(OrderId(4)));
        let last = admin
            .orders(
                Caller::admin(1),
                filter,
                OrderPage::first(2).unwrap().after(Some(OrderId(2))),
            )
            .await
            .unwrap();
        assert_eq!(last.orders.len(), 1);
        assert_eq!(last.next, None, "no page after the last");
    }

    #[tokio::test]
    async fn the_stock_report_reads_the_database_the_gate_and_the_orders() {
        let store = Arc::new(InMemoryStore::new());
        let p = product(&store, 3, 10).await;
        store
            .place_batch(&[command(crate::domain::MemberId(9), &[(p, 4)])])
            .await
            .unwrap();
        let gate = Arc::new(InMemoryStockGate::new(Arc::new(InMemoryTraceStore::new())));
        let with_gate = service(&store).with_gate(gate.clone());
        let report = with_gate.stock(Caller::admin(1), p).await.unwrap();
        assert_eq!(report.stock, 6);
        assert_eq!(report.version, 1);
        assert_eq!(report.gate_level, None, "the gate holds no level yet");
        assert_eq!(
            report.held,
            HeldUnits {
                pending_payment: 4,
                paid: 0
            }
        );
        gate.set_available(
            &[GateLevel {
                product_id: p,
                available: 5,
                version: 1,
            }],
            true,
        )
        .await
        .unwrap();
        let report = with_gate.stock(Caller::admin(1), p).await.unwrap();
        assert_eq!(report.gate_level, Some(5));
        let report = service(&store).stock(Caller::admin(1), p).await.unwrap();
        assert_eq!(report.gate_level, None, "no gate");
    }
}
