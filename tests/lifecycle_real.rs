//! The order life cycle on the real stack: the 네고왕 run carried on through
//! payment, cancellation and expiry, with the events topic counted; and the
//! confirm/expiry race on MariaDB, 1,000 pairs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stack::Stack;
use oms::domain::{ProductId, Role};
use oms::port::outbound::StockGate;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negowang_carried_on_through_payment_cancellation_and_expiry() {
    if !common::real_stack() {
        return;
    }
    let mut stack = Stack::configure();
    stack
        .envs
        .push(("OMS_PAYMENT_TIMEOUT_SECS".into(), "25".into()));
    let stack = stack.launch(2).await;
    let product = stack.add_product(500).await;
    let first = oms_core::testkit::random_id();
    let members: Vec<u64> = (0..1000).map(|i| first + i).collect();
    let traces = stack.order_all(&members, &[(product, 1)]).await;
    let finals = stack.wait_final(&traces, Duration::from_secs(120)).await;
    let mut placed: Vec<(u64, u64)> = traces
        .iter()
        .filter(|(_, t)| finals[t]["status"] == "COMPLETED")
        .map(|(m, t)| (*m, finals[t]["orderId"].as_u64().unwrap()))
        .collect();
    assert_eq!(placed.len(), 500);
    placed.sort_unstable();
    let (pay, rest) = placed.split_at(300);
    let (cancel, expire) = rest.split_at(100);

    let post = |member: u64, path: String, body: Option<Value>| {
        let stack = &stack;
        async move {
            let mut req = stack
                .client
                .post(format!("{}{path}", stack.base))
                .bearer_auth(stack.token(member, Role::User));
            if let Some(body) = body {
                req = req.json(&body);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let paid = futures::future::join_all(pay.iter().map(|(m, o)| {
        post(
            *m,
            "/api/v1/payments/confirm".into(),
            Some(json!({"orderId": o, "paymentKey": format!("pay-{o}"), "amount": 12900})),
        )
    }))
    .await;
    assert!(
        paid.iter().all(|(s, b)| *s == 200 && b["status"] == "PAID"),
        "{paid:?}"
    );
    let cancelled = futures::future::join_all(
        cancel
            .iter()
            .map(|(m, o)| post(*m, format!("/api/v1/orders/{o}/cancel"), None)),
    )
    .await;
    assert!(cancelled
        .iter()
        .all(|(s, b)| *s == 200 && b["status"] == "CANCELLED"));

    // The other 100 expire when their time is up.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let statuses = futures::future::join_all(expire.iter().map(|(m, o)| {
            let stack = &stack;
            async move {
                let r = stack
                    .client
                    .get(format!("{}/api/v1/orders/{o}", stack.base))
                    .bearer_auth(stack.token(*m, Role::User))
                    .send()
                    .await
                    .unwrap();
                r.json::<Value>().await.unwrap()["status"].clone()
            }
        }))
        .await;
        if statuses.iter().all(|s| s == "EXPIRED") {
            break;
        }
        assert!(statuses
            .iter()
            .all(|s| s == "PENDING_PAYMENT" || s == "EXPIRED"));
        assert!(Instant::now() < deadline, "not all expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 300 sold for good: 200 back in the database and in the gate.
    assert_eq!(stack.stock(product).await, 200);
    let env = |k: &str| stack.setting(k);
    let redis = oms::redis::RedisTraceStore::connect(&env("OMS_REDIS_URL"))
        .await
        .unwrap()
        .with_options(oms::redis::RedisTraceOptions {
            prefix: env("OMS_REDIS_PREFIX"),
            ..Default::default()
        });
    let gate = redis.stock_gate();
    assert_eq!(gate.available(ProductId(product)).await.unwrap(), Some(200));

    // One event per transition, keyed by order.
    let events = stack.events(500).await;
    assert_eq!(events.len(), 500, "one record per transition");
    let mut per_order: HashMap<u64, Vec<String>> = HashMap::new();
    for (key, value) in &events {
        let order = value["orderId"].as_u64().unwrap();
        assert_eq!(key, &order.to_string());
        assert_eq!(value["from"], "PENDING_PAYMENT");
        per_order
            .entry(order)
            .or_default()
            .push(value["to"].as_str().unwrap().to_owned());
    }
    for (group, to) in [(pay, "PAID"), (cancel, "CANCELLED"), (expire, "EXPIRED")] {
        for (_, o) in group {
            assert_eq!(per_order.get(o), Some(&vec![to.to_owned()]), "order {o}");
        }
    }
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirm_racing_expiry_has_one_winner_in_a_thousand_pairs() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::configure();
    let url = stack.setting("OMS_DATABASE_URL");
    let timeout = Duration::from_secs(60);
    let store = oms::mysql::MySqlStore::connect(&url)
        .await
        .unwrap()
        .with_payment_timeout(timeout);
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let stores = oms_core::testkit::lifecycle_store::Stores {
        orders: store.clone(),
        products: store.clone(),
        lifecycle: store,
    };
    let (paid, expired) = oms_core::testkit::lifecycle_store::confirm_racing_expiry_has_one_winner(
        &stores, timeout, 1000,
    )
    .await;
    eprintln!("confirm vs expiry, 1000 pairs: {paid} paid, {expired} expired, none both");
    assert_eq!(paid + expired, 1000);
}
