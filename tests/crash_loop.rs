//! A restarted consumer must not leave accepted orders unprocessed: the real
//! stack with one `api` and ONE `consumer`, one product with 1,500 units and
//! the stock gate on; 2,000 buyers order at once and, during the burst, the
//! only consumer is killed (SIGKILL) and a new one started, three times,
//! 0.7 s apart. Every accepted order must reach a final state within the
//! recovery bound, with exact invariants.
//!
//! `OMS_CRASH_LOOP_RUNS` (default 3) repeats the scenario, each time on a
//! new topic, group and product; the time from the last restart until every
//! trace is final is printed per run, with the worst.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::stack::{Dlq, Stack};
use futures::StreamExt;
use serde_json::Value;

const BUYERS: u64 = 2_000;
const STOCK: i64 = 1_500;
const KILLS: usize = 3;
const KILL_EVERY: Duration = Duration::from_millis(700);
/// How long after the last restart every trace must be final: the
/// recovery bound of README "When things break", about 45 s to consuming
/// again (the stall watchdog's 30 s `OMS_CONSUMER_STALL_SECS`, two of its
/// 5 s sampling periods and about 5 s to rejoin, see docs/brokers.md), plus
/// a margin of 15 s to place the backlog on a busy 2-core machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// Requests in flight at once while the test polls the traces.
const POLLS: usize = 256;

fn runs() -> usize {
    std::env::var("OMS_CRASH_LOOP_RUNS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(3)
}

fn members(n: u64) -> Vec<u64> {
    let first = oms_core::testkit::random_id();
    (0..n).map(|i| first + i).collect()
}

/// Every buyer orders one unit at once; returns (member, trace id) of each.
async fn burst(stack: &Stack, buyers: &[u64], product: u64) -> Vec<(u64, String)> {
    let posts = buyers.iter().map(|m| async move {
        let r = stack.post_order(*m, &[(product, 1)], None).await;
        assert_eq!(r.status(), 202, "member {m}");
        let v: Value = r.json().await.unwrap();
        (*m, v["traceId"].as_str().unwrap().to_owned())
    });
    futures::future::join_all(posts).await
}

/// Polls the traces until every one is final; panics with the number
/// still PROCESSING when `deadline` passes.
async fn wait_final(
    stack: &Stack,
    traces: &[(u64, String)],
    deadline: Instant,
) -> HashMap<String, Value> {
    let mut finals: HashMap<String, Value> = HashMap::new();
    loop {
        let pending: Vec<&(u64, String)> = traces
            .iter()
            .filter(|(_, t)| !finals.contains_key(t))
            .collect();
        if pending.is_empty() {
            return finals;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted orders still PROCESSING {RECOVERY_BOUND:?} after the last restart (committed offsets {})",
            pending.len(),
            stack.committed_offsets()
        );
        let polled: Vec<(String, Value)> = futures::stream::iter(pending)
            .map(|(m, t)| async move {
                let r = stack.trace(*m, t).await;
                assert_eq!(r.status(), 200, "trace {t}");
                (t.clone(), r.json::<Value>().await.unwrap())
            })
            .buffer_unordered(POLLS)
            .collect()
            .await;
        for (t, v) in polled {
            if v["status"] != "PROCESSING" {
                finals.insert(t, v);
            }
        }
        if finals.len() < traces.len() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One run of the scenario; returns the time from the last restart until
/// every trace was final.
async fn crash_loop() -> Duration {
    // 2,000 requests at once: above the default cap on requests in flight.
    let stack = Stack::start_api_with(&[("OMS_HTTP_MAX_IN_FLIGHT", "4096")]).await;
    let product = stack.add_product(STOCK).await;
    let buyers = members(BUYERS);
    let mut consumer = stack.spawn_consumer();
    let kills = async {
        for _ in 0..KILLS {
            tokio::time::sleep(KILL_EVERY).await;
            consumer.crash();
            consumer = stack.spawn_consumer();
        }
        (consumer, Instant::now())
    };
    let (traces, (last, restarted)) = tokio::join!(burst(&stack, &buyers, product), kills);
    let finals = wait_final(&stack, &traces, restarted + RECOVERY_BOUND).await;
    let recovery = restarted.elapsed();

    let (completed, failed) = stack
        .check_invariants(&[(product, STOCK)], &traces, &finals, Dlq::AtLeastOnce)
        .await;
    assert_eq!(completed, 1_500, "COMPLETED = units sold");
    assert_eq!(failed, 500);
    assert_eq!(stack.stock(product).await, 0, "final stock");
    assert!(
        finals.values().all(|v| v["status"] != "PROCESSING"),
        "no trace PROCESSING"
    );
    last.stop();
    stack.stop();
    recovery
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_three_times_during_a_burst_leaves_no_order_behind() {
    if !common::real_stack() {
        return;
    }
    let runs = runs();
    let mut worst = Duration::ZERO;
    for run in 1..=runs {
        let recovery = crash_loop().await;
        eprintln!(
            "crash loop run {run}/{runs}: every trace final {recovery:.1?} after the last restart"
        );
        worst = worst.max(recovery);
    }
    eprintln!("crash loop: worst recovery {worst:.1?} over {runs} runs (bound {RECOVERY_BOUND:?})");
}
