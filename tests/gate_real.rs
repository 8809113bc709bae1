//! The stock gate's promises (README "The stock gate") on the real stack:
//! `api` and `consumer` processes against Redis, MariaDB and the Kafka
//! broker of `scripts/services.sh up`, with the gate on (the default).
//!
//! - an order for a sold-out product is answered FAILED `OUT_OF_STOCK` at
//!   once and never queued;
//! - the database answers for a refused trace after Redis forgets it;
//! - a restock of a sold-out product admits the next order at once;
//! - an `api` fills the gate from the database when it starts;
//! - the consumers reconcile a gate that drifted with the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::stack::{Answer, Dlq, Stack};
use oms::domain::Role;
use serde_json::{json, Value};

fn members(n: u64) -> Vec<u64> {
    let first = oms_core::testkit::random_id();
    (0..n).map(|i| first + i).collect()
}

/// The traces of `answers` whose status is `status`; refusals must name
/// `OUT_OF_STOCK`.
fn answered(answers: &[Answer], status: &str) -> HashSet<String> {
    answers
        .iter()
        .filter(|a| a.status == status)
        .inspect(|a| {
            if status == "FAILED" {
                assert_eq!(a.body["reason"], "OUT_OF_STOCK", "{}", a.body);
            }
        })
        .map(|a| a.trace.clone())
        .collect()
}

fn traces_of(answers: &[Answer]) -> Vec<(u64, String)> {
    answers
        .iter()
        .map(|a| (a.member, a.trace.clone()))
        .collect()
}

/// The gate counter of `product` in Redis (`None` when it has none).
async fn counter(stack: &Stack, product: u64) -> Option<i64> {
    let mut conn = stack.redis().await;
    redis::cmd("GET")
        .arg(stack.intake_key(&format!("gate:{product}")))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// 50 buyers for 20 units: the 30 the gate refuses are answered FAILED
/// `OUT_OF_STOCK` in the POST's own answer, and only the 20 it admitted
/// reach the order topic (counted by reading it). Once their outcomes are
/// settled, Redis forgets the refused traces, and the database still
/// answers each of them FAILED `OUT_OF_STOCK`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sold_out_orders_are_answered_at_once_never_queued_and_outlive_redis() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::start(1).await;
    let product = stack.add_product(20).await;
    let answers = stack.order_answered(&members(50), &[(product, 1)]).await;
    let queued = answered(&answers, "PROCESSING");
    let refused = answered(&answers, "FAILED");
    assert_eq!((queued.len(), refused.len()), (20, 30), "answers at intake");
    // Every answer came after its send: the order topic holds its records.
    let records = stack.order_topic_records(20).await;
    let recorded: Vec<&str> = records.iter().filter_map(|r| r.trace_id()).collect();
    assert_eq!(recorded.len(), 20, "one order record per admitted order");
    let recorded: HashSet<String> = recorded.into_iter().map(str::to_owned).collect();
    assert_eq!(recorded, queued, "no refused order was queued");

    let traces = traces_of(&answers);
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    let (completed, failed) = stack
        .check_invariants(&[(product, 20)], &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (20, 30));
    for trace in &refused {
        assert_eq!(finals[trace]["status"], "FAILED", "a refusal stays FAILED");
    }

    // check_invariants waited for the gate's journal to empty: every
    // refusal is settled. Redis forgets the refused traces.
    let mut conn = stack.redis().await;
    let keys: Vec<String> = refused
        .iter()
        .map(|t| stack.intake_key(&format!("trace:{t}")))
        .collect();
    let deleted: usize = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 30, "the refused traces were in Redis");
    for (member, trace) in traces.iter().filter(|(_, t)| refused.contains(t)) {
        let r = stack.trace(*member, trace).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("FAILED"), Some("OUT_OF_STOCK")),
            "{trace}: {v}"
        );
    }
    stack.stop();
}

/// A product sold out (3 units, 5 buyers), then restocked to 4 with an
/// absolute stock: the next 6 buyers are answered at once, 4 PROCESSING
/// (COMPLETED later) and 2 FAILED. No consumer runs between the sale and
/// the new orders, so no reconciliation can reopen the gate: only the
/// restock does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restock_reopens_a_sold_out_product_at_once() {
    if !common::real_stack() {
        return;
    }
    let mut stack = Stack::start(1).await;
    let product = stack.add_product(3).await;
    let sale = stack.order_answered(&members(5), &[(product, 1)]).await;
    assert_eq!(
        (
            answered(&sale, "PROCESSING").len(),
            answered(&sale, "FAILED").len()
        ),
        (3, 2)
    );
    let mut traces = traces_of(&sale);
    stack.wait_final(&traces, Duration::from_secs(60)).await;
    // The keeper settles the refusals before its consumer stops.
    stack.wait_journal_drained(Duration::from_secs(60)).await;
    for consumer in stack.consumers.drain(..) {
        consumer.stop();
    }
    assert_eq!(stack.stock(product).await, 0);
    assert_eq!(counter(&stack, product).await, Some(0), "sold out");

    let version = stack.product(product).await["version"].as_i64().unwrap();
    let r = stack
        .client
        .put(format!("{}/api/v1/products/{product}", stack.base))
        .bearer_auth(stack.admin())
        .header("If-Match", format!("\"{version}\""))
        .json(&json!({"name": format!("deal {product}"), "price": 12900, "stock": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["stock"], 4);

    let restocked = stack.order_answered(&members(6), &[(product, 1)]).await;
    let queued = answered(&restocked, "PROCESSING");
    assert_eq!(
        (queued.len(), answered(&restocked, "FAILED").len()),
        (4, 2),
        "the restocked units are admitted at once"
    );
    stack.start_consumer();
    traces.extend(traces_of(&restocked));
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    for trace in &queued {
        assert_eq!(finals[trace]["status"], "COMPLETED", "{trace}");
    }
    // 3 units at the start and 4 restocked: 7 sold in all.
    let (completed, failed) = stack
        .check_invariants(&[(product, 7)], &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (7, 4));
    stack.stop();
}

/// Redis forgot a product's gate (a restart without persistence): an `api`
/// that starts then fills it from the database, and gates orders by it at
/// once. No consumer runs until the orders are answered, so no
/// reconciliation fills it instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_fills_the_gate_from_the_database_when_it_starts() {
    if !common::real_stack() {
        return;
    }
    let mut stack = Stack::start(0).await;
    let product = stack.add_product(3).await;
    assert_eq!(counter(&stack, product).await, Some(3), "set at creation");
    let mut conn = stack.redis().await;
    let deleted: usize = redis::cmd("DEL")
        .arg(stack.intake_key(&format!("gate:{product}")))
        .arg(stack.intake_key(&format!("gate:{product}:v")))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 2, "the counter and its version were in Redis");
    assert_eq!(counter(&stack, product).await, None);

    let (api, base) = stack.start_replica().await;
    assert_eq!(counter(&stack, product).await, Some(3), "filled at start");
    let buyers = members(5);
    let posts = buyers.iter().map(|m| {
        let base = &base;
        let stack = &stack;
        async move {
            let token = stack.token(*m, Role::User);
            let r = stack.order_as(base, &token, &[(product, 1)]).await;
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.unwrap();
            Answer {
                member: *m,
                trace: body["traceId"].as_str().unwrap().to_owned(),
                status: body["status"].as_str().unwrap().to_owned(),
                body,
            }
        }
    });
    let answers = futures::future::join_all(posts).await;
    assert_eq!(
        (
            answered(&answers, "PROCESSING").len(),
            answered(&answers, "FAILED").len()
        ),
        (3, 2),
        "orders are gated by the filled counter"
    );
    stack.start_consumer();
    let traces = traces_of(&answers);
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    let (completed, failed) = stack
        .check_invariants(&[(product, 3)], &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (3, 2));
    api.stop();
    stack.stop();
}

/// A counter that drifted too high (a double give-back, say) is set back to
/// the stock in the database by the consumers' reconciliation, which runs
/// every 5 s (`GatePolicy::reconcile_every`, not a setting) while the
/// group has no backlog; then the gate refuses what the database does not
/// have at once again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_that_drifted_is_reconciled_with_the_database() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::start(1).await;
    let product = stack.add_product(10).await;
    let first = stack.order_answered(&members(3), &[(product, 1)]).await;
    let mut traces = traces_of(&first);
    stack.wait_final(&traces, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stock(product).await, 7);

    let mut conn = stack.redis().await;
    let () = redis::cmd("SET")
        .arg(stack.intake_key(&format!("gate:{product}")))
        .arg(100)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Six reconciliation periods: one period plus the backlog probe and a
    // round of the keeper's loop is the bound, the rest is margin for a
    // busy machine.
    let within = Duration::from_secs(30);
    let deadline = Instant::now() + within;
    loop {
        let level = counter(&stack, product).await;
        if level == Some(7) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gate is still {level:?} after {within:?}, the database has 7"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = stack.order_answered(&members(10), &[(product, 1)]).await;
    assert_eq!(
        (
            answered(&second, "PROCESSING").len(),
            answered(&second, "FAILED").len()
        ),
        (7, 3),
        "the reconciled gate refuses what the database does not have"
    );
    traces.extend(traces_of(&second));
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    let (completed, failed) = stack
        .check_invariants(&[(product, 10)], &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (10, 3));
    stack.stop();
}
