//! The MySQL store against a real MariaDB / MySQL (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use oms_adapters_mysql::MySqlStore;
use oms_core::domain::{FailureReason, TraceState};
use oms_core::port::outbound::{HealthCheck, ProductStore};
use oms_core::testkit;

async fn store() -> MySqlStore {
    let url = std::env::var("OMS_DATABASE_URL").unwrap_or_else(|_| {
        panic!("OMS_DATABASE_URL is not set: run `scripts/services.sh up && source target/services.env`")
    });
    let store = MySqlStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn mysql_product_store_conforms() {
    testkit::product_store::run(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_order_store_conforms() {
    let store = Arc::new(store().await);
    testkit::order_store::run(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_member_store_conforms() {
    testkit::member_store::run(&store().await).await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_health_answers() {
    let store = store().await;
    store.migrate().await.unwrap();
    store.check().await.unwrap();
}

/// The pessimistic baseline (`place_locked`) keeps purchase limits too:
/// concurrent orders of one member wait on the product row and each counts
/// what the one before it bought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_placements_never_pass_a_limit() {
    let store = Arc::new(store().await);
    let id = testkit::random_product_id();
    let mut draft = testkit::draft("locked limited", 100);
    draft.rules.max_per_member = Some(3);
    store.create(&draft.into_product(id)).await.unwrap();
    let member = testkit::random_member_id();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let command = testkit::command(member, &[(id, 1)]);
                store.place_locked(&command).await.unwrap()
            })
        })
        .collect();
    let (mut placed, mut over) = (0, 0);
    for task in tasks {
        match task.await.unwrap().trace.state {
            TraceState::Completed { .. } => placed += 1,
            TraceState::Failed {
                reason: FailureReason::LimitExceeded,
            } => over += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((placed, over), (3, 7));
    let product = store.get(id).await.unwrap().unwrap();
    assert_eq!(product.stock, 97);
    let bought = store.purchases(id).await.unwrap();
    assert_eq!(bought.len(), 1);
    assert_eq!((bought[0].member_id, bought[0].units), (member, 3));
}
