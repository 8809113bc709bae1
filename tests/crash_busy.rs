//! Crashes that hit a process at work: `kill -9` of the consumer that holds
//! a batch it has fetched and not finished, and of the consumer whose gate
//! keeper holds refusals it has taken and not settled. MariaDB is paused
//! (SIGSTOP) so that the work stays in the victim's hands until the kill;
//! the tests prove it was there, kill the victim, resume, and check that
//! another consumer finished all of it, exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod exact;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::stack::{env, Paused, Stack};
use exact::check_exact;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

/// The tests pause the shared database: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The committed offset of the run's group on one partition of the order
/// topic (0 when nothing is committed).
fn committed(stack: &Stack, partition: i32) -> i64 {
    let probe: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", &stack.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&stack.order_topic, partition);
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    match committed.elements()[0].offset() {
        Offset::Offset(n) => n,
        _ => 0,
    }
}

/// Polls `check` every 100 ms until it returns `Some` (or panics with
/// `what` at `deadline`).
async fn poll<T, F, Fut>(what: &str, deadline: Instant, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The consumer group's session timeout (`OMS_KAFKA_SESSION_TIMEOUT_SECS`'s
/// default).
const SESSION: Duration = Duration::from_secs(10);

/// Batches the consumer at `url` handed to its use case (finished, or
/// given up for a retry).
async fn batches(stack: &Stack, url: &str) -> f64 {
    exact::metric(stack, url, "oms_consumer_batch_size_count", &[]).await
}

/// The consumer that holds the only busy partition is killed while its
/// batch waits on the database; another member is given the partition,
/// replays the batch and places every order of it, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_of_the_busy_partition_killed_mid_batch_is_replayed() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    // With the gate off every order is queued and the consumer decides
    // (stock and OUT_OF_STOCK): the whole batch is the victim's work. The
    // stall watchdog's timeout is shortened from 30 s to 12 s, longer than
    // the database stays paused before the kill (about 5 s: the batch is
    // seen failing after the pool's 3 s acquire timeout), so the victim
    // keeps its partitions until it is killed, and the survivor takes them
    // over sooner where the broker leaves them unassigned (tansu).
    let (mut stack, urls) = exact::start_two_consumers(&[]).await;
    // Every batch of the warm-up is finished (and counted) before the
    // counts are taken.
    stack.wait_drained(Duration::from_secs(30)).await;

    // Every order names only `product`: one record key, one partition.
    let product = oms_core::testkit::random_id();
    let stock = 60;
    exact::add_product_with_id(&stack, product, stock).await;
    let orders: Vec<(u64, Vec<(u64, u32)>)> = exact::members(100)
        .into_iter()
        .map(|m| (m, vec![(product, 1)]))
        .collect();
    let mut before = Vec::new();
    for url in &urls {
        before.push((
            batches(&stack, url).await,
            exact::finals_of(&stack, url).await,
        ));
    }

    let placed;
    let victim;
    let partition;
    let start;
    let end;
    {
        let _db = Paused::service("mariadb");
        placed = exact::post_all(&stack, &orders, "PROCESSING").await;
        let traces: HashSet<String> = placed.iter().map(|p| p.trace.clone()).collect();
        let (records, _) = exact::order_records(&stack, &traces).await;
        let partitions: HashSet<i32> = records.values().map(|r| r.partition).collect();
        assert_eq!(
            partitions.len(),
            1,
            "one key, one partition: {partitions:?}"
        );
        partition = *partitions.iter().next().unwrap();
        start = records.values().map(|r| r.offset).min().unwrap();
        end = records.values().map(|r| r.offset).max().unwrap() + 1;

        // The owner fetched the batch and handed it to its use case, which
        // gave up on the paused database (the pool's 3 s acquire timeout)
        // and retries it; the other member has nothing to do. Bound: the
        // acquire timeout and the batch wait, with a margin.
        victim = poll(
            "the owner of the busy partition to try its batch",
            Instant::now() + Duration::from_secs(30),
            || async {
                let mut busy = Vec::new();
                for (i, url) in urls.iter().enumerate() {
                    if batches(&stack, url).await > before[i].0 {
                        busy.push(i);
                    }
                }
                match busy.len() {
                    0 => None,
                    1 => Some(busy[0]),
                    _ => panic!("both consumers work on the one busy partition"),
                }
            },
        )
        .await;
        assert!(
            stack.consumer_log().contains("dependency unavailable"),
            "the owner reports the database"
        );
        // No record of the burst is finished: the group's offset is still
        // where the warm-up left it, at most the burst's first offset.
        let done = committed(&stack, partition);
        assert!(
            done <= start,
            "committed {done}, the burst is at offsets {start}..{end}"
        );
        for (member, trace) in exact::traces_of(&placed).iter().take(5) {
            let v: Value = stack.trace(*member, trace).await.json().await.unwrap();
            assert_eq!(v["status"], "PROCESSING");
        }
        // Alive until now (`crash` asserts it), killed with its batch.
        stack.consumers.remove(victim).crash();
    }
    let killed_at = Instant::now();
    let survivor = urls[1 - victim].clone();

    // The victim's partitions move to the survivor after the session
    // timeout (10 s); a coordinator that leaves them unread is noticed by
    // the stall watchdog, which rejoins, and replaces its client when a
    // rejoin did not help (README "When things break"): the session, two
    // stall timeouts and a join, plus a margin of 60 s for the batch and a
    // busy machine.
    let within = SESSION + 2 * exact::STALL + Duration::from_secs(60);
    let finals = stack.wait_final(&exact::traces_of(&placed), within).await;
    eprintln!(
        "{} orders of the killed owner's batch final {:?} after the kill",
        placed.len(),
        killed_at.elapsed()
    );
    // The victim was killed before its placement could commit, so it sent
    // no DLQ record: every FAILED trace has exactly one.
    let dlq_by = Instant::now() + Duration::from_secs(60);
    let tally = check_exact(&stack, &[(product, stock)], &placed, &finals, 1, dlq_by).await;
    assert_eq!(tally.completed, usize::try_from(stock).unwrap());
    assert_eq!(tally.failed, placed.len() - tally.completed);

    // The replay: the survivor placed every order of the batch (its count
    // of final outcomes leaves out replays of outcomes already recorded, and
    // the victim recorded none), and the group committed the partition to
    // its end.
    let by_survivor = exact::finals_of(&stack, &survivor).await - before[1 - victim].1;
    assert_eq!(
        by_survivor,
        placed.len() as f64,
        "orders the survivor placed"
    );
    poll(
        "the survivor to commit the busy partition",
        Instant::now() + Duration::from_secs(30),
        || async { (committed(&stack, partition) == end).then_some(()) },
    )
    .await;
    stack.stop();
}

/// The Redis key of a trace of the run.
fn trace_key(stack: &Stack, trace: &str) -> String {
    format!("{{{}}}:trace:{trace}", stack.setting("OMS_REDIS_PREFIX"))
}

/// The stock gate's refusal journal of the run (`oms-adapters-redis`,
/// `RedisStockGate`).
fn journal_key(stack: &Stack) -> String {
    format!("{{{}}}:refusals", stack.setting("OMS_REDIS_PREFIX"))
}

/// The journal's group of settlers (one consumer name per gate keeper).
const SETTLERS: &str = "settlers";

/// How long a refusal taken by a keeper that died waits before another
/// keeper may claim it (README "The stock gate": 10 s).
const REDELIVERY: Duration = Duration::from_secs(10);

/// The journal entries each settler holds (read, not yet settled).
async fn pending_by_settler(
    conn: &mut redis::aio::MultiplexedConnection,
    stack: &Stack,
) -> HashMap<String, Vec<String>> {
    let entries: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(journal_key(stack))
        .arg(SETTLERS)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query_async(conn)
        .await
        .unwrap();
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for (id, settler, _, _) in entries {
        by.entry(settler).or_default().push(id);
    }
    by
}

/// A consumer is killed while its gate keeper holds refusals it has not
/// settled (the database is paused); the other consumer's keeper claims
/// them after the redelivery time and settles every one: a FAILED outcome
/// in the database and exactly one DLQ record each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_held_by_a_killed_keeper_are_settled_by_another() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start_api_with(&[]).await;
    stack.start_consumer();
    stack.start_consumer();
    let urls = stack.consumer_metrics();
    let product = stack.add_product(0).await;
    let orders: Vec<(u64, Vec<(u64, u32)>)> = exact::members(200)
        .into_iter()
        .map(|m| (m, vec![(product, 1)]))
        .collect();
    // Both keepers run (each reconciles the gate when it starts).
    for url in &urls {
        poll(
            "the gate keeper to start",
            Instant::now() + Duration::from_secs(60),
            || async {
                let reconciled = exact::metric_if_up(
                    &stack,
                    url,
                    "oms_gate_keeper_actions_total",
                    &[("action", "reconciled")],
                )
                .await;
                (reconciled.unwrap_or(0.0) > 0.0).then_some(())
            },
        )
        .await;
    }
    let mut conn = stack.redis().await;

    let placed;
    let held;
    let killed_at;
    {
        // The refusals come while both consumers and the database are
        // stopped; then only the victim runs, and its keeper takes every
        // refusal from the journal and cannot settle them.
        let survivor = stack.consumers[1].pause();
        let victim = stack.consumers[0].pause();
        let db = Paused::service("mariadb");
        placed = exact::post_all(&stack, &orders, "FAILED").await;
        drop(victim);
        // Bound: a round of the keeper under way when it was stopped may
        // wait out the pool's acquire timeout (3 s) and the keeper's pause
        // after a failed round (5 s) first; a margin of 7 s on top.
        held = poll(
            "the victim's keeper to take every refusal",
            Instant::now() + Duration::from_secs(15),
            || async {
                let by = pending_by_settler(&mut conn.clone(), &stack).await;
                assert!(by.len() <= 1, "one keeper runs: {by:?}");
                by.into_values()
                    .next()
                    .filter(|held| held.len() == placed.len())
            },
        )
        .await;
        // Alive until now (`crash` asserts it), killed with the refusals.
        stack.consumers.remove(0).crash();
        killed_at = Instant::now();
        drop(db);
        drop(survivor);
    }
    // Bound: the redelivery time after the kill (the entries were taken
    // before it), the keeper's pause after a round that failed (5 s: the
    // survivor's keeper may meet the database still waking up), and a
    // margin for a busy machine (10 s).
    let deadline = killed_at + REDELIVERY + Duration::from_secs(5) + Duration::from_secs(10);

    // The database answers for every refusal: the Redis traces are
    // removed, so by-trace reads the outcome the keeper recorded.
    for p in &placed {
        let _: () = redis::cmd("DEL")
            .arg(trace_key(&stack, &p.trace))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let finals = poll(
        "every refusal's outcome in the database",
        deadline,
        || async {
            let mut finals = HashMap::new();
            for p in &placed {
                let r = stack.trace(p.member, &p.trace).await;
                if r.status() == 404 {
                    return None;
                }
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                finals.insert(p.trace.clone(), v);
            }
            Some(finals)
        },
    )
    .await;
    let settled_after = killed_at.elapsed();
    let tally = check_exact(&stack, &[(product, 0)], &placed, &finals, 1, deadline).await;
    assert_eq!(tally.failed, placed.len());

    // Settled by the other keeper: nothing left in the journal, and the
    // held entries are gone.
    let left: u64 = redis::cmd("XLEN")
        .arg(journal_key(&stack))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "journal entries left");
    assert!(pending_by_settler(&mut conn, &stack).await.is_empty());
    let settled = exact::metric(
        &stack,
        &urls[1],
        "oms_gate_keeper_actions_total",
        &[("action", "settled")],
    )
    .await;
    assert_eq!(
        settled,
        placed.len() as f64,
        "refusals the survivor settled"
    );
    eprintln!(
        "{} refusals held by the killed keeper, settled by the other {:?} after the kill",
        held.len(),
        settled_after
    );
    stack.stop();
}
