//! The MySQL store against a real MariaDB / MySQL (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use oms_adapters_mysql::MySqlStore;
use oms_core::port::outbound::HealthCheck;
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
