//! Defects an adversarial review found, proven fixed on the real stack
//! (`scripts/services.sh up`): stock edits during a sale and idempotency
//! keys that outlive the trace store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::stack::Stack;
use serde_json::{json, Value};

fn members(n: u64) -> Vec<u64> {
    let first = oms_core::testkit::random_id();
    (0..n).map(|i| first + i).collect()
}

async fn put_product(
    stack: &Stack,
    product: u64,
    body: Value,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut req = stack
        .client
        .put(format!("{}/api/v1/products/{product}", stack.base))
        .bearer_auth(stack.admin())
        .json(&body);
    if let Some(v) = if_match {
        req = req.header("If-Match", v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A rename during a sale keeps the units sold meanwhile; a stale stock is
/// refused (428 without a version, 412 with an old one); a restock moves the
/// database and the stock gate by the same units: exactly initial + restock
/// units are ever sold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_product_edit_during_a_sale_never_resells_sold_units() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::start(1).await;
    let product = stack.add_product(500).await;
    let read = stack.product(product).await;
    let version_read = read["version"].as_i64().unwrap().to_string();

    let first = stack.order_all(&members(300), &[(product, 1)]).await;
    let finals = stack.wait_final(&first, Duration::from_secs(120)).await;
    assert!(finals.values().all(|v| v["status"] == "COMPLETED"));

    // The operator fixes a typo with the figures read before the sale.
    let stale = json!({"name": "fixed", "price": 12900, "stock": 500});
    let (status, problem) = put_product(&stack, product, stale.clone(), None).await;
    assert_eq!(status, 428, "{problem}");
    assert_eq!(problem["code"], "PRECONDITION_REQUIRED");
    let (status, problem) = put_product(&stack, product, stale, Some(&version_read)).await;
    assert_eq!(status, 412, "{problem}");
    assert_eq!(stack.stock(product).await, 200, "nothing resold");
    let (status, renamed) = put_product(
        &stack,
        product,
        json!({"name": "fixed", "price": 12900}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["stock"].as_i64()),
        (Some("fixed"), Some(200))
    );

    // A restock of 50, then 300 more buyers: 250 units left to sell.
    let (status, restocked) = put_product(
        &stack,
        product,
        json!({"name": "fixed", "price": 12900, "stockDelta": 50}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{restocked}");
    assert_eq!(restocked["stock"], 250);
    let second = stack.order_all(&members(300), &[(product, 1)]).await;
    let finals = stack.wait_final(&second, Duration::from_secs(120)).await;
    let sold = finals
        .values()
        .filter(|v| v["status"] == "COMPLETED")
        .count();
    assert_eq!(sold, 250, "the gate and the database moved together");
    assert_eq!(stack.stock(product).await, 0);
    stack.stop();
}

/// The trace store forgets an idempotency key (a Redis restart without
/// persistence, an eviction): the key's binding in the database answers the
/// retry with the same trace, and no second order is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_outlives_the_trace_store() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::start(1).await;
    let product = stack.add_product(10).await;
    let member = members(1)[0];
    let key = "checkout-7";
    let r = stack.post_order(member, &[(product, 1)], Some(key)).await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    let trace = first["traceId"].as_str().unwrap().to_owned();
    stack
        .wait_final(&[(member, trace.clone())], Duration::from_secs(60))
        .await;

    // Redis forgets every key and trace of this run.
    let mut conn = stack.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        // The intake keys carry the hash tag `{e2e-<run>}`, the sessions'
        // `{e2e-<run>:sessions}`; the idempotency keys none.
        .arg(format!("*e2e-{}*", stack.run))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.contains(":idem:")));
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();

    let r = stack.post_order(member, &[(product, 1)], Some(key)).await;
    assert_eq!(r.status(), 202);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["traceId"], trace.as_str());
    assert_eq!(again["status"], "COMPLETED");
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(stack.orders_of(member).await.len(), 1);
    assert_eq!(stack.stock(product).await, 9);
    stack.stop();
}
