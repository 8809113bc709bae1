use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::domain::{OmsResult, Product, ProductId};
use crate::port::outbound::ProductStore;

/// What intake knows of one product id.
#[derive(Debug, Clone)]
enum Entry {
    Known(Arc<Product>),
    /// The store had no such product at this instant.
    Missing(Instant),
}

/// The products intake checks orders against (existence, sale window,
/// purchase limit), kept in the process so the check costs no round trip.
///
/// The copy is refreshed from the [`ProductStore`] every period by
/// [`run`](Self::run) and at once by [`put`](Self::put) when this process
/// writes a product. A product this process has not seen is read from the
/// store on first use; one the store does not have is remembered as missing
/// for one period. So another process's change reaches intake within one
/// period; the consumer checks every rule again in the database, which
/// stays the source of truth.
pub struct ProductCatalog {
    products: Arc<dyn ProductStore>,
    entries: RwLock<HashMap<ProductId, Entry>>,
    period: Duration,
}

impl std::fmt::Debug for ProductCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductCatalog")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl ProductCatalog {
    /// An empty catalogue on `products`, refreshed every `period`.
    pub fn new(products: Arc<dyn ProductStore>, period: Duration) -> Self {
        Self {
            products,
            entries: RwLock::default(),
            period,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ProductId, Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ProductId, Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The product with this id, or `None` if the store has none.
    pub async fn get(&self, product_id: ProductId) -> OmsResult<Option<Arc<Product>>> {
        let cached = self.read().get(&product_id).cloned();
        match cached {
            Some(Entry::Known(p)) => return Ok(Some(p)),
            Some(Entry::Missing(at)) if at.elapsed() < self.period => return Ok(None),
            _ => {}
        }
        let found = self.products.get(product_id).await?.map(Arc::new);
        let entry = match &found {
            Some(p) => Entry::Known(p.clone()),
            None => Entry::Missing(Instant::now()),
        };
        self.write().insert(product_id, entry);
        Ok(found)
    }

    /// Records a product this process wrote.
    pub fn put(&self, product: &Product) {
        self.write()
            .insert(product.id, Entry::Known(Arc::new(product.clone())));
    }

    /// Reads every product from the store again.
    pub async fn refresh(&self) -> OmsResult<usize> {
        let all = self.products.list().await?;
        let count = all.len();
        let mut entries = self.write();
        entries.retain(|_, e| matches!(e, Entry::Missing(at) if at.elapsed() < self.period));
        for p in all {
            entries.insert(p.id, Entry::Known(Arc::new(p)));
        }
        Ok(count)
    }

    /// Refreshes every period until `shutdown` completes; a refresh that
    /// fails is logged and the copy kept.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut every = tokio::time::interval(self.period.max(Duration::from_millis(10)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                _ = every.tick() => {
                    if let Err(e) = self.refresh().await {
                        warn!(error = %e, "product catalogue not refreshed; keeping the copy");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProductDraft;
    use crate::memory::InMemoryStore;

    fn product(id: u64) -> Product {
        ProductDraft {
            name: format!("p{id}"),
            price: 10,
            stock: 5,
            rules: Default::default(),
        }
        .into_product(ProductId(id))
    }

    #[tokio::test]
    async fn unknown_ids_are_remembered_for_one_period_then_read_again() {
        let store = Arc::new(InMemoryStore::new());
        let catalog = ProductCatalog::new(store.clone(), Duration::from_millis(50));
        assert!(catalog.get(ProductId(1)).await.unwrap().is_none());
        store.create(&product(1)).await.unwrap();
        // Still missing within the period (no round trip per request).
        assert!(catalog.get(ProductId(1)).await.unwrap().is_none());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if catalog.get(ProductId(1)).await.unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "never seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_refresh_brings_other_writers_changes() {
        let store = Arc::new(InMemoryStore::new());
        store.create(&product(1)).await.unwrap();
        let catalog = ProductCatalog::new(store.clone(), Duration::from_secs(60));
        assert_eq!(catalog.get(ProductId(1)).await.unwrap().unwrap().name, "p1");
        let mut changed = product(1);
        changed.name = "renamed".into();
        store.create(&product(2)).await.unwrap();
        catalog.put(&changed);
        assert_eq!(
            catalog.get(ProductId(1)).await.unwrap().unwrap().name,
            "renamed"
        );
        assert_eq!(catalog.refresh().await.unwrap(), 2);
        assert_eq!(catalog.get(ProductId(1)).await.unwrap().unwrap().name, "p1");
    }
}
