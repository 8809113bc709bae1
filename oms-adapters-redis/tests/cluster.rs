//! The Redis adapters against a real Redis Cluster of three masters
//! (`scripts/services.sh up-cluster`, `OMS_REDIS_CLUSTER_NODES`): the suite
//! of `tests/suite`, which runs every script and `MULTI` of the adapters
//! (the cluster refuses any that names keys of two slots, `CROSSSLOT`), and
//! the layout of the keys over the nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod suite;

use std::collections::{BTreeMap, BTreeSet};

use oms_adapters_redis::{RedisTraceOptions, RedisTraceStore};
use oms_core::domain::{ProductId, SessionId, TokenId, TraceId};
use oms_core::port::outbound::{
    Admission, GateLevel, IntakeChecks, SessionStore, StockGate, TraceStore,
};
use oms_core::testkit;
use suite::{Kind, Target};

redis_suite!(Kind::Cluster);

/// The keys matching `pattern` on each node of the cluster, by node.
async fn keys_by_node(target: &Target, pattern: &str) -> BTreeMap<String, Vec<String>> {
    let mut found = BTreeMap::new();
    for node in target.nodes() {
        let mut conn = redis::Client::open(node.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        found.insert(node, keys);
    }
    found
}

/// The nodes that hold at least one key of `found`.
fn holders(found: &BTreeMap<String, Vec<String>>) -> BTreeSet<&str> {
    found
        .iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(node, _)| node.as_str())
        .collect()
}

/// The cluster refuses a script naming keys of two slots: what the suite
/// proves by passing is that the adapters' never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_refuses_a_script_across_slots() {
    suite::run(Kind::Cluster, |target| async move {
        let mut conn = target.raw().await;
        assert!(conn.is_cluster());
        let crossing: Result<i64, _> = redis::cmd("EVAL")
            .arg("return 1")
            .arg(2)
            .arg("oms-slot-a")
            .arg("oms-slot-b")
            .query_async(&mut conn)
            .await;
        let e = crossing.unwrap_err();
        assert_eq!(e.code(), Some("CROSSSLOT"), "{e}");
        // The same keys under one hash tag are one slot.
        let tagged: i64 = redis::cmd("EVAL")
            .arg("return 1")
            .arg(2)
            .arg("{oms-slot}:a")
            .arg("{oms-slot}:b")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(tagged, 1);
    })
    .await;
}

/// An order of several products is admitted in one script; every key of a
/// prefix's intake (traces, the PROCESSING index, counters, purchases, the
/// journal) is on one node, as are its sessions' keys, while the
/// idempotency keys spread over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_keys_share_a_node_and_idempotency_keys_spread() {
    suite::run(Kind::Cluster, |target| async move {
        let prefix = format!("oms-spread-{}", TraceId::new());
        let store: RedisTraceStore = target.store().await.with_options(RedisTraceOptions {
            prefix: prefix.clone(),
            ..RedisTraceOptions::default()
        });
        let gate = store.stock_gate();
        let products: Vec<ProductId> = (0..5).map(|_| testkit::random_product_id()).collect();
        let levels: Vec<GateLevel> = products
            .iter()
            .map(|&product_id| GateLevel {
                product_id,
                available: 10,
                version: 1,
            })
            .collect();
        gate.set_available(&levels, true).await.unwrap();
        let lines: Vec<(ProductId, u32)> = products.iter().map(|&p| (p, 1)).collect();
        let member = testkit::random_member_id();
        let order = testkit::command(member, &lines);
        let checks = IntakeChecks {
            limits: products
                .iter()
                .map(|&product_id| oms_core::domain::PurchaseLimit {
                    product_id,
                    max_per_member: 3,
                })
                .collect(),
            ..IntakeChecks::default()
        };
        assert_eq!(
            gate.admit(&order, &checks).await.unwrap(),
            Admission::Reserved
        );
        for product in &products {
            assert_eq!(gate.available(*product).await.unwrap(), Some(9));
        }

        let sessions = store.session_store();
        let sid = SessionId::random();
        sessions
            .start(sid, TokenId::random(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
        sessions
            .revoke(
                Some((TokenId::random(), std::time::Duration::from_secs(60))),
                Some((sid, std::time::Duration::from_secs(60))),
            )
            .await
            .unwrap();

        for _ in 0..60 {
            let trace = TraceId::new();
            let claimed = store
                .claim_key(testkit::random_member_id(), &trace.to_string(), trace)
                .await
                .unwrap();
            assert_eq!(claimed, None);
        }

        let intake = keys_by_node(&target, &format!("{{{prefix}}}:*")).await;
        let intake_keys: usize = intake.values().map(Vec::len).sum();
        // A trace, the index, 5 counters, 5 versions, 5 purchase hashes.
        assert!(intake_keys >= 17, "{intake:?}");
        assert_eq!(holders(&intake).len(), 1, "{intake:?}");
        let session_keys = keys_by_node(&target, &format!("{{{prefix}:sessions}}:*")).await;
        assert_eq!(holders(&session_keys).len(), 1, "{session_keys:?}");
        let idempotency = keys_by_node(&target, &format!("{prefix}:idem:*")).await;
        assert_eq!(idempotency.values().map(Vec::len).sum::<usize>(), 60);
        assert!(
            holders(&idempotency).len() > 1,
            "60 idempotency keys on one node: {idempotency:?}"
        );

        // Releasing the order is one script over its products' keys too.
        gate.release(member, &order.items).await.unwrap();
        assert_eq!(gate.available(products[0]).await.unwrap(), Some(10));
    })
    .await;
}
