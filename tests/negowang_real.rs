//! The 네고왕 scenario on the real stack: a real `api` process and two
//! `consumer` processes against Redis, MariaDB and the Kafka broker of
//! `scripts/services.sh up`. 3 products × 500 stock, 1000 members each
//! ordering one unit of every product at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::stack::{Dlq, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negowang_on_the_real_stack() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::start(2).await;
    let mut products = Vec::new();
    for _ in 0..3 {
        products.push((stack.add_product(500).await, 500));
    }
    let first = oms_core::testkit::random_id();
    let members: Vec<u64> = (0..1000).map(|i| first + i).collect();
    let lines: Vec<(u64, u32)> = products.iter().map(|(p, _)| (*p, 1)).collect();

    let started = Instant::now();
    let traces = stack.order_all(&members, &lines).await;
    let finals = stack.wait_final(&traces, Duration::from_secs(120)).await;
    eprintln!(
        "negowang real stack: 1000 orders, first POST to all traces final in {:?}",
        started.elapsed()
    );
    let (completed, failed) = stack
        .check_invariants(&products, &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (500, 500));
    for v in finals.values() {
        if v["status"] == "COMPLETED" {
            let member = traces.iter().find(|(_, t)| *t == v["traceId"]).unwrap().0;
            assert_eq!(stack.orders_of(member).await.len(), 1);
            break;
        }
    }
    // The DLQ holds exactly the FAILED traces (checked above); the broker's
    // watermark counts a batch of records as one, so it is at most 500.
    let dlq = stack.record_count(&stack.dlq_topic);
    assert!(
        (1..=500).contains(&dlq),
        "{dlq} DLQ records for 500 FAILED traces"
    );
    // `/metrics` of the api and both consumers count the same run.
    let mut urls = vec![format!("{}/metrics", stack.base)];
    urls.extend(stack.consumer_metrics());
    assert_eq!(urls.len(), 3);
    common::assert_negowang_metrics(&stack.client, &urls, 1000, 500).await;
    stack.stop();
}
