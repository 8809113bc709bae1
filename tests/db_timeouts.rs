//! Every connection of `MySqlStore::connect`'s pool bounds its statements and
//! its row-lock waits (real MariaDB of `scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::stack::env;
use oms::mysql::MySqlStore;

#[tokio::test]
async fn every_pooled_connection_has_statement_and_lock_wait_timeouts() {
    if !common::real_stack() {
        return;
    }
    let store = MySqlStore::connect(&env("OMS_DATABASE_URL")).await.unwrap();
    // Hold several connections at once so that each is a different one.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        let lock_wait: u64 = sqlx::query_scalar("SELECT @@SESSION.innodb_lock_wait_timeout")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(lock_wait, 10);
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        let limit: f64 = if version.contains("MariaDB") {
            sqlx::query_scalar("SELECT CAST(@@SESSION.max_statement_time AS DOUBLE)")
                .fetch_one(&mut **conn)
                .await
                .unwrap()
        } else {
            let ms: u64 = sqlx::query_scalar("SELECT @@SESSION.max_execution_time")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            ms as f64 / 1000.0
        };
        assert!((limit - 10.0).abs() < 1e-6, "{limit} s on {version}");
    }
}
