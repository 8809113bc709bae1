use std::sync::Arc;

use async_trait::async_trait;

use super::ProductCatalog;
use crate::domain::{
    Caller, FieldError, FieldErrorCode, FieldErrors, OmsError, OmsResult, Product, ProductDraft,
    ProductId, ProductUpdate,
};
use crate::port::inbound::ProductUseCase;
use crate::port::outbound::{GateLevel, ProductStore, StockGate};

/// The product catalogue use cases: writes for operators, reads for everyone.
///
/// With a [`StockGate`] ([`with_gate`](Self::with_gate)), a created
/// product's gate is set to its stock, and an update moves the gate by the
/// same number of units as the database stock, tagged with the product's new
/// version, so a reconciliation that read an older version cannot undo it.
/// A gate that does not answer is logged: it is filled again by the
/// [`GateKeeper`](crate::application::GateKeeper).
pub struct ProductService {
    products: Arc<dyn ProductStore>,
    gate: Option<Arc<dyn StockGate>>,
    catalog: Option<Arc<ProductCatalog>>,
}

impl ProductService {
    /// A service on this store.
    pub fn new(products: Arc<dyn ProductStore>) -> Self {
        Self {
            products,
            gate: None,
            catalog: None,
        }
    }

    /// Puts created and updated products in intake's `catalog` at once.
    pub fn with_catalog(mut self, catalog: Arc<ProductCatalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Sets the stock of created and updated products in `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    async fn open_gate(&self, product: &Product, delta: Option<i64>) {
        if let Some(catalog) = &self.catalog {
            catalog.put(product);
        }
        if let Some(gate) = &self.gate {
            let level = GateLevel {
                product_id: product.id,
                available: product.stock,
                version: product.version,
            };
            let done = match delta {
                None => gate.set_available(&[level], true).await,
                Some(delta) => gate.adjust(level, delta).await,
            };
            if let Err(e) = done {
                tracing::warn!(product_id = %product.id, error = %e, "stock gate not set; it is filled again later");
            }
        }
    }
}

/// The error of a `productId` that is not a positive integer a store can
/// keep, if it is not.
fn id_error(product_id: ProductId) -> Option<FieldError> {
    (product_id.0 == 0 || product_id.0 > i64::MAX as u64).then(|| {
        FieldError::new(
            "productId",
            FieldErrorCode::OutOfRange,
            "must be a positive integer",
        )
    })
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
        let mut errors = FieldErrors::from_iter(id_error(product_id));
        errors.extend(draft.field_errors());
        errors.into_result()?;
        let product = draft.into_product(product_id);
        self.products.create(&product).await?;
        self.open_gate(&product, None).await;
        Ok(product)
    }

    async fn update(
        &self,
        caller: Caller,
        product_id: ProductId,
        update: ProductUpdate,
    ) -> OmsResult<Product> {
        caller.require_admin()?;
        update.validate()?;
        let change = self.products.update(product_id, &update).await?;
        self.open_gate(&change.product, Some(change.stock_delta))
            .await;
        Ok(change.product)
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
            rules: Default::default(),
        }
    }

    #[tokio::test]
    async fn only_operators_write_products() {
        let store = MockProductStore::new(); // never called
        let service = ProductService::new(Arc::new(store));
        let r = service.create(Caller::user(1), ProductId(1), draft()).await;
        assert!(matches!(r, Err(OmsError::Forbidden(_))));
        let update = ProductUpdate {
            name: "B".into(),
            price: 1,
            stock: crate::domain::StockChange::Keep,
            rules: Default::default(),
        };
        let r = service.update(Caller::user(1), ProductId(1), update).await;
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
            assert!(matches!(r, Err(OmsError::Validation(_))), "{r:?}");
        }
        // Every field at once, the id first.
        let all_bad = ProductDraft {
            name: " ".into(),
            price: -1,
            stock: -1,
            rules: crate::domain::SaleRules {
                max_per_member: Some(0),
                ..Default::default()
            },
        };
        let r = service
            .create(Caller::admin(1), ProductId(0), all_bad)
            .await;
        let fields = r.as_ref().err().map(|e| e.field_errors().to_vec());
        assert_eq!(
            fields
                .iter()
                .flatten()
                .map(|e| (e.field.as_str(), e.code))
                .collect::<Vec<_>>(),
            [
                ("productId", FieldErrorCode::OutOfRange),
                ("name", FieldErrorCode::Required),
                ("price", FieldErrorCode::OutOfRange),
                ("stock", FieldErrorCode::OutOfRange),
                ("maxPerMember", FieldErrorCode::OutOfRange),
            ],
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn an_update_moves_the_gate_by_its_delta_only() {
        use crate::domain::StockChange;
        use crate::memory::{InMemoryStockGate, InMemoryStore, InMemoryTraceStore};
        let store = Arc::new(InMemoryStore::new());
        let gate = Arc::new(InMemoryStockGate::new(Arc::new(InMemoryTraceStore::new())));
        let service = ProductService::new(store.clone()).with_gate(gate.clone());
        let id = ProductId(1);
        service.create(Caller::admin(1), id, draft()).await.unwrap();
        // 120 units reserved at the gate for orders still in the queue.
        let reserved = [crate::domain::OrderLine {
            product_id: id,
            quantity: 120,
        }];
        gate.set_available(
            &[GateLevel {
                product_id: id,
                available: 380,
                version: 0,
            }],
            true,
        )
        .await
        .unwrap();
        let rename = ProductUpdate {
            name: "New".into(),
            price: 100,
            stock: StockChange::Keep,
            rules: Default::default(),
        };
        let p = service.update(Caller::admin(1), id, rename).await.unwrap();
        assert_eq!((p.stock, p.version), (500, 1));
        assert_eq!(gate.available(id).await.unwrap(), Some(380));
        let restock = ProductUpdate {
            name: "New".into(),
            price: 100,
            stock: StockChange::Adjust(100),
            rules: Default::default(),
        };
        service.update(Caller::admin(1), id, restock).await.unwrap();
        assert_eq!(gate.available(id).await.unwrap(), Some(480));
        assert_eq!(store.get(id).await.unwrap().unwrap().stock, 600);
        gate.release(crate::domain::MemberId(1), &reserved)
            .await
            .unwrap();
        assert_eq!(gate.available(id).await.unwrap(), Some(600));
        let stale = ProductUpdate {
            name: "New".into(),
            price: 100,
            stock: StockChange::Set {
                stock: 500,
                expected_version: Some(1),
            },
            rules: Default::default(),
        };
        assert!(matches!(
            service.update(Caller::admin(1), id, stale).await,
            Err(OmsError::PreconditionFailed {
                expected: 1,
                actual: 2
            })
        ));
        assert_eq!(store.get(id).await.unwrap().unwrap().stock, 600);
        assert_eq!(gate.available(id).await.unwrap(), Some(600));
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
