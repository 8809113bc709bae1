//! The contract of [`ProductStore`].

use crate::domain::{OmsError, ProductDraft};
use crate::port::outbound::ProductStore;

use super::{draft, random_product_id};

/// Runs every check of the product store contract.
pub async fn run(store: &dyn ProductStore) {
    create_get_list(store).await;
    duplicates_are_refused(store).await;
    update_bumps_the_version(store).await;
}

pub async fn create_get_list(store: &dyn ProductStore) {
    let id = random_product_id();
    let product = draft("Tteokbokki", 500).into_product(id);
    store.create(&product).await.unwrap();
    assert_eq!(store.get(id).await.unwrap(), Some(product.clone()));
    assert_eq!(store.get(random_product_id()).await.unwrap(), None);
    let all = store.list().await.unwrap();
    assert!(all.contains(&product));
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "listed by id");
}

pub async fn duplicates_are_refused(store: &dyn ProductStore) {
    let id = random_product_id();
    store.create(&draft("A", 1).into_product(id)).await.unwrap();
    let again = store.create(&draft("B", 2).into_product(id)).await;
    assert!(
        matches!(again, Err(OmsError::ProductExists { product_id }) if product_id == id),
        "{again:?}"
    );
    assert_eq!(store.get(id).await.unwrap().unwrap().name, "A");
}

pub async fn update_bumps_the_version(store: &dyn ProductStore) {
    let id = random_product_id();
    store.create(&draft("A", 1).into_product(id)).await.unwrap();
    let new = ProductDraft {
        name: "A+".into(),
        price: 2000,
        stock: 9,
    };
    let updated = store.update(id, &new).await.unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.price,
            updated.stock,
            updated.version
        ),
        ("A+", 2000, 9, 1)
    );
    assert_eq!(store.get(id).await.unwrap(), Some(updated));
    let missing = random_product_id();
    assert!(matches!(
        store.update(missing, &new).await,
        Err(OmsError::ProductNotFound { product_id }) if product_id == missing
    ));
}
