//! The MySQL store against a real MariaDB / MySQL (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use oms_adapters_mysql::MySqlStore;
use oms_core::domain::{FailureReason, OrderId, OrderStatus, TraceState};
use oms_core::port::outbound::{HealthCheck, LifecycleStore, OrderStore, ProductStore};
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
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    testkit::product_store::run(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_order_store_conforms() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    let store = Arc::new(store().await);
    testkit::order_store::run(store.clone(), store).await;
}

/// Orders of this store are due 30 s after placement; the suite passes its
/// own clocks, so it never waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lifecycle_store_conforms() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    let timeout = Duration::from_secs(30);
    let store = Arc::new(store().await.with_payment_timeout(timeout));
    let stores = testkit::lifecycle_store::Stores {
        orders: store.clone(),
        products: store.clone(),
        lifecycle: store,
    };
    testkit::lifecycle_store::run(&stores, timeout).await;
    // After the suite, whose expiry checks count what they expire.
    expirers_in_many_processes_expire_each_order_once(timeout).await;
}

/// Expirers of several processes (a pool each) running at once expire
/// every overdue order exactly once, and its units go back once, each
/// return at a version of its own.
async fn expirers_in_many_processes_expire_each_order_once(timeout: Duration) {
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(store().await.with_payment_timeout(timeout)));
    }
    let product = testkit::random_product_id();
    let mut draft = testkit::draft("expired by many", 100);
    draft.rules.max_per_member = Some(5);
    stores[0]
        .create(&draft.into_product(product))
        .await
        .unwrap();
    let commands: Vec<_> = (0..60)
        .map(|_| testkit::command(testkit::random_member_id(), &[(product, 1)]))
        .collect();
    let mut ids = HashSet::new();
    for placed in testkit::order_store::place(&*stores[0], &commands).await {
        let TraceState::Completed { order_id } = placed.trace.state else {
            panic!("not placed: {placed:?}");
        };
        ids.insert(order_id);
    }
    assert_eq!(stores[0].get(product).await.unwrap().unwrap().stock, 40);
    let at =
        Utc::now() + chrono::Duration::from_std(timeout).unwrap() + chrono::Duration::seconds(1);
    let expirers: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut expired = Vec::new();
                loop {
                    let batch = store.expire_due(at, 7).await.unwrap();
                    if batch.is_empty() {
                        return expired;
                    }
                    expired.extend(batch);
                }
            })
        })
        .collect();
    let mut times: HashMap<OrderId, usize> = HashMap::new();
    let mut versions = HashSet::new();
    for expirer in expirers {
        for t in expirer.await.unwrap() {
            if !ids.contains(&t.order.order_id) {
                continue;
            }
            *times.entry(t.order.order_id).or_default() += 1;
            assert_eq!(t.order.status, OrderStatus::Expired);
            assert_eq!(t.returned.len(), 1);
            assert_eq!(t.returned[0].units, 1);
            assert!(versions.insert(t.returned[0].version), "one version each");
        }
    }
    assert_eq!(times.len(), ids.len(), "every order expired");
    assert!(times.values().all(|n| *n == 1), "each order expired once");
    assert_eq!(stores[0].get(product).await.unwrap().unwrap().stock, 100);
    assert_eq!(stores[0].purchases(product).await.unwrap(), vec![]);
    for id in ids {
        let order = stores[0].order(id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Expired);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_order_admin_store_conforms() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    let stores = testkit::order_admin_store::Stores::of(Arc::new(store().await));
    testkit::order_admin_store::run(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_member_store_conforms() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    testkit::member_store::run(&store().await).await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_health_answers() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    let store = store().await;
    store.migrate().await.unwrap();
    store.check().await.unwrap();
}

/// The pessimistic baseline (`place_locked`) keeps purchase limits too:
/// concurrent orders of one member wait on the product row and each counts
/// what the one before it bought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_placements_never_pass_a_limit() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
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

#[tokio::test]
async fn warming_opens_every_connection_of_the_pool() {
    if !testkit::services::services_set(&["OMS_DATABASE_URL"]) {
        return;
    }
    let store = store().await;
    let max = store.pool().options().get_max_connections();
    assert!(store.pool().size() < max, "a fresh pool is not full yet");
    store.warm().await.unwrap();
    assert_eq!(store.pool().size(), max);
    // Connections go back to the pool on a task of their own.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.pool().num_idle() < max as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {max} back in the pool",
            store.pool().num_idle()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.check().await.unwrap();
}

/// The URL's `ssl-mode` is honoured, TLS being built in: `required`
/// connects over TLS to a server that offers it and is refused by one that
/// does not (never "built without TLS support"); `disabled` connects in
/// clear either way.
#[tokio::test]
async fn the_urls_ssl_mode_is_honoured() {
    let Some(url) = testkit::services::service_env("OMS_DATABASE_URL") else {
        return;
    };
    let with = |mode: &str| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}ssl-mode={mode}")
    };
    let plain = MySqlStore::connect(&with("disabled")).await.unwrap();
    let have_ssl: (String, String) = sqlx::query_as("SHOW VARIABLES LIKE 'have_ssl'")
        .fetch_one(plain.pool())
        .await
        .unwrap();
    let cipher = |store: MySqlStore| async move {
        let (_, cipher): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        cipher
    };
    assert_eq!(cipher(plain).await, "", "ssl-mode=disabled is in clear");
    match MySqlStore::connect(&with("required")).await {
        Ok(tls) => {
            assert_eq!(have_ssl.1, "YES");
            assert_ne!(cipher(tls).await, "", "ssl-mode=required is over TLS");
        }
        Err(e) => {
            assert_ne!(have_ssl.1, "YES", "{e}");
            let why = e.to_string();
            assert!(why.contains("server does not support TLS"), "{why}");
        }
    }
}
