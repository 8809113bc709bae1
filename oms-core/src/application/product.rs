use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Caller, OmsError, OmsResult, Product, ProductDraft, ProductId};
use crate::port::inbound::ProductUseCase;
use crate::port::outbound::{ProductStore, StockGate};

/// The product catalogue use cases: writes for operators, reads for everyone.
///
/// With a [`StockGate`] ([`with_gate`](Self::with_gate)), every stock an
/// operator sets is set in the gate too. A gate that does not answer is
/// logged: it is filled again by the
/// [`GateKeeper`](crate::application::GateKeeper).
pub struct ProductService {
    products: Arc<dyn ProductStore>,
    gate: Option<Arc<dyn StockGate>>,
}

impl ProductService {
    /// A service on this store.
    pub fn new(products: Arc<dyn ProductStore>) -> Self {
        Self {
            products,
            gate: None,
        }
    }

    /// Sets the stock of created and updated products in `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    async fn open_gate(&self, product: &Product) {
        if let Some(gate) = &self.gate {
            if let Err(e) = gate
                .set_available(&[(product.id, product.stock)], true)
                .await
            {
                tracing::warn!(product_id = %product.id, error = %e, "stock gate not set; it is filled again later");
            }
        }
    }
}

fn check_id(product_id: ProductId) -> OmsResult<()> {
    if product_id.0 == 0 || product_id.0 > i64::MAX as u64 {
        return Err(OmsError::Invalid(
            "productId must be a positive integer".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl ProductUseCase for ProductService {
    async fn create(
        &self,
        caller: Caller,
        product_id: ProductId,
        draft: ProductDraft,
    ) -> OmsResult<Product> {
        caller.require_admin()?;
        check_id(product_id)?;
        draft.validate()?;
        let product = draft.into_product(product_id);
        self.products.create(&product).await?;
        self.open_gate(&product).await;
        Ok(product)
    }

    async fn update(
        &self,
        caller: Caller,
        product_id: ProductId,
        draft: ProductDraft,
    ) -> OmsResult<Product> {
        caller.require_admin()?;
        draft.validate()?;
        let product = self.products.update(product_id, &draft).await?;
        self.open_gate(&product).await;
        Ok(product)
    }

    async fn get(&self, product_id: ProductId) -> OmsResult<Product> {
        self.products
            .get(product_id)
            .await?
            .ok_or(OmsError::ProductNotFound { product_id })
    }

    async fn list(&self) -> OmsResult<Vec<Product>> {
        self.products.list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::outbound::MockProductStore;

    fn draft() -> ProductDraft {
        ProductDraft {
            name: "Tteokbokki".into(),
            price: 12900,
            stock: 500,
        }
    }

    #[tokio::test]
    async fn only_operators_write_products() {
        let store = MockProductStore::new(); // never called
        let service = ProductService::new(Arc::new(store));
        let r = service.create(Caller::user(1), ProductId(1), draft()).await;
        assert!(matches!(r, Err(OmsError::Forbidden(_))));
        let r = service.update(Caller::user(1), ProductId(1), draft()).await;
        assert!(matches!(r, Err(OmsError::Forbidden(_))));
    }

    #[tokio::test]
    async fn bad_drafts_never_reach_the_store() {
        let service = ProductService::new(Arc::new(MockProductStore::new()));
        for bad in [
            ProductDraft {
                price: 0,
                ..draft()
            },
            ProductDraft {
                stock: -1,
                ..draft()
            },
            ProductDraft {
                name: " ".into(),
                ..draft()
            },
        ] {
            let r = service.create(Caller::admin(1), ProductId(1), bad).await;
            assert!(matches!(r, Err(OmsError::Invalid(_))));
        }
    }

    #[tokio::test]
    async fn create_stores_version_zero() {
        let mut store = MockProductStore::new();
        store
            .expect_create()
            .withf(|p| p.version == 0 && p.stock == 500)
            .times(1)
            .returning(|_| Ok(()));
        let service = ProductService::new(Arc::new(store));
        let p = service
            .create(Caller::admin(1), ProductId(3), draft())
            .await
            .unwrap();
        assert_eq!(p.id, ProductId(3));
    }
}
