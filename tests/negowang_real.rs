//! The 네고왕 scenario on the real stack: a real `api` process and two
//! `consumer` processes against Redis, MariaDB and the Kafka broker of
//! `scripts/services.sh up`. 3 products × 500 stock, 1000 members each
//! ordering one unit of every product at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
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
    let answers = stack.order_answered(&members, &lines).await;
    // The stock gate takes the 500 units of every product for 500 orders
    // and answers the other 500 FAILED OUT_OF_STOCK at once.
    let queued: HashSet<&str> = answers
        .iter()
        .filter(|a| a.status == "PROCESSING")
        .map(|a| a.trace.as_str())
        .collect();
    let refused = answers
        .iter()
        .filter(|a| a.status == "FAILED" && a.body["reason"] == "OUT_OF_STOCK")
        .count();
    assert_eq!((queued.len(), refused), (500, 500), "answers at intake");
    let traces: Vec<(u64, String)> = answers
        .iter()
        .map(|a| (a.member, a.trace.clone()))
        .collect();
    let finals = stack.wait_final(&traces, Duration::from_secs(120)).await;
    eprintln!(
        "negowang real stack: 1000 orders, first POST to all traces final in {:?}",
        started.elapsed()
    );
    let (completed, failed) = stack
        .check_invariants(&products, &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (500, 500));
    // Counted by reading every record: exactly one order record per
    // queued order and none for a refused one; exactly one DLQ record per
    // FAILED trace (per trace checked above, the total here).
    let records = stack.order_topic_records(500).await;
    let recorded: Vec<&str> = records.iter().filter_map(|r| r.trace_id()).collect();
    assert_eq!(recorded.len(), 500, "order records");
    assert_eq!(recorded.into_iter().collect::<HashSet<_>>(), queued);
    let failed_traces: HashSet<String> = finals
        .values()
        .filter(|v| v["status"] == "FAILED")
        .map(|v| v["traceId"].as_str().unwrap().to_owned())
        .collect();
    let dlq = stack.dead_letter_records(&failed_traces).await;
    assert_eq!(dlq.len(), 500, "DLQ records for 500 FAILED traces");
    // `/metrics` of the api and both consumers count the same run.
    let mut urls = vec![format!("{}/metrics", stack.base)];
    urls.extend(stack.consumer_metrics());
    assert_eq!(urls.len(), 3);
    common::assert_negowang_metrics(&stack.client, &urls, 1000, 500).await;
    stack.stop();
}
