//! The contract of [`ProductStore`].

use crate::domain::{OmsError, ProductUpdate, RulesChange, SaleRules, StockChange};
use crate::port::outbound::ProductStore;

use super::{draft, random_product_id};

/// Runs every check of the product store contract.
pub async fn run(store: &dyn ProductStore) {
    create_get_list(store).await;
    duplicates_are_refused(store).await;
    update_bumps_the_version(store).await;
    stock_changes_are_conditional_or_relative(store).await;
    sale_rules_are_kept_cleared_or_set(store).await;
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
    let new = ProductUpdate {
        name: "A+".into(),
        price: 2000,
        stock: StockChange::Set {
            stock: 9,
            expected_version: Some(0),
        },
        rules: Default::default(),
    };
    let updated = store.update(id, &new).await.unwrap();
    assert_eq!(updated.stock_delta, 8);
    let updated = updated.product;
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

pub async fn stock_changes_are_conditional_or_relative(store: &dyn ProductStore) {
    let id = random_product_id();
    store
        .create(&draft("A", 500).into_product(id))
        .await
        .unwrap();
    let with = |stock| ProductUpdate {
        name: "A".into(),
        price: 1000,
        stock,
        rules: Default::default(),
    };
    // A rename leaves the stock alone.
    let renamed = store.update(id, &with(StockChange::Keep)).await.unwrap();
    assert_eq!((renamed.product.stock, renamed.stock_delta), (500, 0));
    // A stale absolute stock is refused and changes nothing.
    let stale = StockChange::Set {
        stock: 700,
        expected_version: Some(0),
    };
    assert!(matches!(
        store.update(id, &with(stale)).await,
        Err(OmsError::PreconditionFailed {
            expected: 0,
            actual: 1
        })
    ));
    let unconditional = StockChange::Set {
        stock: 700,
        expected_version: None,
    };
    assert!(matches!(
        store.update(id, &with(unconditional)).await,
        Err(OmsError::PreconditionRequired(_))
    ));
    // Relative changes apply to what is left.
    let restock = store
        .update(id, &with(StockChange::Adjust(-120)))
        .await
        .unwrap();
    assert_eq!((restock.product.stock, restock.stock_delta), (380, -120));
    assert!(matches!(
        store.update(id, &with(StockChange::Adjust(-381))).await,
        Err(OmsError::OutOfStock { .. })
    ));
    let p = store.get(id).await.unwrap().unwrap();
    assert_eq!((p.stock, p.version), (380, 2));
}

pub async fn sale_rules_are_kept_cleared_or_set(store: &dyn ProductStore) {
    let id = random_product_id();
    // Whole seconds: what any store keeps of an instant.
    let now = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    let rules = SaleRules {
        max_per_member: Some(2),
        sale_starts_at: Some(now - chrono::Duration::hours(1)),
        sale_ends_at: Some(now + chrono::Duration::hours(1)),
    };
    let mut d = draft("Limited", 10);
    d.rules = rules;
    let product = d.into_product(id);
    store.create(&product).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().rules, rules);
    assert!(store.list().await.unwrap().contains(&product));
    assert_eq!(store.purchases(id).await.unwrap(), vec![]);
    let update = |rules| ProductUpdate {
        name: "Limited".into(),
        price: 1000,
        stock: StockChange::Keep,
        rules,
    };
    let kept = store
        .update(id, &update(RulesChange::default()))
        .await
        .unwrap();
    assert_eq!(kept.product.rules, rules);
    let change = RulesChange {
        max_per_member: Some(Some(5)),
        sale_starts_at: Some(None),
        sale_ends_at: None,
    };
    let changed = store.update(id, &update(change)).await.unwrap();
    let expected = SaleRules {
        max_per_member: Some(5),
        sale_starts_at: None,
        sale_ends_at: rules.sale_ends_at,
    };
    assert_eq!(changed.product.rules, expected);
    assert_eq!(store.get(id).await.unwrap().unwrap().rules, expected);
    // A limit of 0 is refused and changes nothing.
    let zero = RulesChange {
        max_per_member: Some(Some(0)),
        ..RulesChange::default()
    };
    assert!(matches!(
        store.update(id, &update(zero)).await,
        Err(OmsError::Validation(e)) if e.fields() == ["maxPerMember"]
    ));
    assert_eq!(store.get(id).await.unwrap().unwrap().rules, expected);
}
