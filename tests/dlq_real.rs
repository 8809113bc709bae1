//! The DLQ tool (`examples/dlq`) on the real stack: it lists and shows the
//! records the consumer dead-lettered, a dry run sends nothing, a replay as
//! it is sends the original records again and the consumer answers them
//! with the outcomes it has, and a replay `--as-new` places the failed
//! orders once, however often it runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::stack::{env, example, Stack};
use oms::domain::{
    MemberId, OrderCommand, OrderLine, OrderRequest, ProductId, ReceiverInfo, TraceId,
};
use oms::port::outbound::encode_command;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

type Record = (Option<Vec<u8>>, Vec<u8>);

/// Replays the failed orders as new ones.
const AS_NEW: &[&str] = &[
    "replay",
    "--reason",
    "OUT_OF_STOCK",
    "--as-new",
    "--yes",
    "--json",
];

/// Runs the tool with the run's settings: (exit code, stdout, stderr).
fn dlq(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(example("dlq"))
        .args(args)
        .envs(stack.envs.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the tool, which must succeed, and parses its JSON output.
fn dlq_json(stack: &Stack, args: &[&str]) -> Value {
    let (code, out, err) = dlq(stack, args);
    assert_eq!(code, 0, "dlq {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dlq {args:?}: {e}: {out}"))
}

/// Every record of `topic` as (key, value), each partition read from its
/// start to the end the broker reports in a fetch (exact on tansu too,
/// whose ListOffsets under-reports the log end).
fn records(topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", format!("dlq-test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .unwrap();
    let partitions: HashSet<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("no topic {topic}"))
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut open = partitions;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "partitions {open:?} of {topic} not read to their end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            _ => {}
        }
    }
    out
}

/// How many times each of `records` stands on `topic`.
fn occurrences(topic: &str, wanted: &[Record]) -> Vec<usize> {
    let all = records(topic);
    wanted
        .iter()
        .map(|w| all.iter().filter(|r| *r == w).count())
        .collect()
}

fn members(n: u64) -> Vec<u64> {
    let first = oms_core::testkit::random_id();
    (0..n).map(|i| first + i).collect()
}

/// An order request straight onto the order topic, as intake writes it.
fn order_record(member: u64, product: u64) -> Record {
    let command = OrderCommand::new(
        TraceId::new(),
        MemberId(member),
        OrderRequest {
            items: vec![OrderLine {
                product_id: ProductId(product),
                quantity: 1,
            }],
            receiver_info: ReceiverInfo {
                name: "Kim".into(),
                phone: "010-0000-0000".into(),
                address: "Seoul".into(),
            },
        },
    );
    (
        Some(product.to_string().into_bytes()),
        encode_command(&command).unwrap(),
    )
}

/// The trace (traceId, status, reason, orderId) of `trace` as its member
/// reads it, once the consumer has an outcome for it.
async fn outcome(stack: &Stack, member: u64, trace: &str) -> Value {
    let finals = stack
        .wait_final(&[(member, trace.to_owned())], Duration::from_secs(30))
        .await;
    finals[trace].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dlq_tool_lists_shows_and_replays_on_the_real_stack() {
    if !common::real_stack() {
        return;
    }
    // Without the stock gate every order reaches the order topic, and the
    // consumer fails the ones past the stock.
    let mut stack = Stack::configure();
    stack
        .envs
        .push(("OMS_STOCK_GATE".to_owned(), "off".to_owned()));
    let stack = stack.launch(1).await;
    let started = chrono::Utc::now();
    let product = stack.add_product(0).await;
    let buyers = members(10);
    let traces = stack.order_all(&buyers, &[(product, 1)]).await;
    // Two orders of a product that does not exist and one record that does
    // not decode, straight onto the order topic.
    let ghost = oms_core::testkit::random_id();
    let poison_trace = TraceId::new().to_string();
    let mut raw: Vec<Record> = members(2)
        .into_iter()
        .map(|m| order_record(m, ghost))
        .collect();
    raw.push((
        Some(b"1".to_vec()),
        format!(r#"{{"traceId": "{poison_trace}", "items": "many"}}"#).into_bytes(),
    ));
    stack.produce(&raw).await;
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    for v in finals.values() {
        assert_eq!(
            (&v["status"], &v["reason"]),
            (&json!("FAILED"), &json!("OUT_OF_STOCK"))
        );
    }
    // Every record is processed, and the consumer sends its DLQ records
    // before it commits.
    stack.wait_drained(Duration::from_secs(30)).await;
    let failed: HashSet<&str> = traces.iter().map(|(_, t)| t.as_str()).collect();
    let member_of: HashMap<&str, u64> = traces.iter().map(|(m, t)| (t.as_str(), *m)).collect();

    // list: exact counts by reason, and the records of the failed traces.
    let listed = dlq_json(&stack, &["list", "--json"]);
    assert_eq!(listed["total"], 13, "{listed}");
    assert_eq!(
        listed["byReason"],
        json!({
            "OUT_OF_STOCK": {"records": 10, "traces": 10},
            "PRODUCT_NOT_FOUND": {"records": 2, "traces": 2},
            "POISON": {"records": 1, "traces": 1},
        })
    );
    let out_of_stock: Vec<&Value> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reason"] == "OUT_OF_STOCK")
        .collect();
    let listed_traces: HashSet<&str> = out_of_stock
        .iter()
        .map(|r| r["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(listed_traces, failed);
    for r in &out_of_stock {
        let trace = r["traceId"].as_str().unwrap();
        assert_eq!(r["memberId"], member_of[trace]);
        assert_eq!(r["items"], json!([{"productId": product, "quantity": 1}]));
        assert_eq!(r["key"], product.to_string());
        assert_eq!(r["payload"], "order");
    }
    let only = dlq_json(&stack, &["list", "--reason", "out_of_stock", "--json"]);
    assert_eq!(only["total"], 10);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let earlier = (started - chrono::Duration::seconds(1)).to_rfc3339();
    assert_eq!(
        dlq_json(&stack, &["list", "--since", &later, "--json"])["total"],
        0
    );
    assert_eq!(
        dlq_json(&stack, &["list", "--until", &earlier, "--json"])["total"],
        0
    );
    assert_eq!(
        dlq_json(&stack, &["list", "--since", &earlier, "--json"])["total"],
        13
    );
    let limited = dlq_json(&stack, &["list", "--limit", "3", "--json"]);
    assert_eq!(
        (
            limited["total"].as_u64(),
            limited["records"].as_array().map(Vec::len)
        ),
        (Some(13), Some(3))
    );
    let (code, text, _) = dlq(&stack, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(text.lines().filter(|l| l.contains(&traces[0].1)).count(), 1);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["OUT_OF_STOCK", "10", "records", "10", "traces"]),
        "{text}"
    );

    // show: by trace id and by position.
    let (member, trace) = &traces[0];
    let (code, shown, err) = dlq(&stack, &["show", trace]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains(&format!("trace id   {trace}")), "{shown}");
    assert!(
        shown.contains("oms-failure-reason: \"OUT_OF_STOCK\""),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("\"traceId\": \"{trace}\"")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("\"memberId\": {member}")),
        "{shown}"
    );
    let first = out_of_stock[0];
    let position = format!("{}:{}", first["partition"], first["offset"]);
    let (code, shown, _) = dlq(&stack, &["show", &position]);
    assert_eq!(code, 0);
    assert!(shown.contains(&format!(
        "trace id   {}",
        first["traceId"].as_str().unwrap()
    )));
    assert_eq!(dlq(&stack, &["show", &TraceId::new().to_string()]).0, 1);
    assert_eq!(dlq(&stack, &["show", "neither"]).0, 2);
    assert_eq!(dlq(&stack, &["list", "--since", "yesterday"]).0, 2);
    assert_eq!(dlq(&stack, &["list", "--reason", "BORED"]).0, 2);

    // A dry run sends nothing; so does a replay that is not confirmed.
    let originals: Vec<Record> = records(&stack.order_topic)
        .into_iter()
        .filter(|(_, v)| {
            let v: Value = serde_json::from_slice(v).unwrap_or_default();
            v["traceId"].as_str().is_some_and(|t| failed.contains(t))
        })
        .collect();
    assert_eq!(originals.len(), 10);
    let on_topic = records(&stack.order_topic).len();
    assert_eq!(on_topic, 13);
    let dry = dlq_json(&stack, &["replay", "--dry-run", "--json"]);
    assert_eq!(
        (dry["selected"].as_u64(), dry["sent"].as_u64()),
        (Some(13), Some(0))
    );
    let skipped: Vec<&Value> = dry["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("skipped").is_some())
        .collect();
    assert_eq!(skipped.len(), 1, "{dry}");
    assert_eq!(skipped[0]["traceId"], poison_trace.as_str());
    let picked = dlq_json(
        &stack,
        &[
            "replay",
            "--dry-run",
            "--json",
            "--trace",
            &traces[0].1,
            "--trace",
            &traces[1].1,
        ],
    );
    assert_eq!(picked["records"].as_array().map(Vec::len), Some(2));
    let (code, _, err) = dlq(&stack, &["replay", "--reason", "OUT_OF_STOCK"]);
    assert_eq!(code, 2, "not confirmed: {err}");
    assert_eq!(records(&stack.order_topic).len(), on_topic, "nothing sent");

    // The product is restocked: a failed order could now be placed.
    let r = stack
        .client
        .put(format!("{}/api/v1/products/{product}", stack.base))
        .bearer_auth(stack.admin())
        .json(&json!({"name": format!("deal {product}"), "price": 12900, "stockDelta": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stack.stock(product).await, 10);

    // A replay as it is: the original records again, key and value...
    let replayed = dlq_json(
        &stack,
        &["replay", "--reason", "OUT_OF_STOCK", "--yes", "--json"],
    );
    assert_eq!(replayed["sent"], 10, "{replayed}");
    assert_eq!(records(&stack.order_topic).len(), on_topic + 10);
    assert_eq!(occurrences(&stack.order_topic, &originals), vec![2; 10]);
    // ...which the consumer answers with the outcomes it has: still FAILED,
    // no stock taken, no order, no new DLQ record.
    stack.wait_drained(Duration::from_secs(30)).await;
    for (member, trace) in &traces {
        assert_eq!(outcome(&stack, *member, trace).await, finals[trace]);
        assert!(stack.orders_of(*member).await.is_empty(), "member {member}");
    }
    assert_eq!(stack.stock(product).await, 10);
    assert_eq!(
        dlq_json(&stack, &["list", "--json"])["byReason"],
        listed["byReason"]
    );

    // A replay as new orders: placed once each, under derived trace ids.
    let renewed = dlq_json(&stack, AS_NEW);
    assert_eq!(renewed["sent"], 10, "{renewed}");
    let new_traces: HashMap<String, String> = renewed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["traceId"].as_str().unwrap().to_owned(),
                r["sentTraceId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let originals_of: HashSet<&str> = new_traces.keys().map(String::as_str).collect();
    assert_eq!(originals_of, failed);
    assert!(new_traces.iter().all(|(old, new)| old != new));
    assert_eq!(
        new_traces.values().collect::<HashSet<_>>().len(),
        10,
        "one new trace per failed one"
    );
    assert_eq!(records(&stack.order_topic).len(), on_topic + 20);
    stack.wait_drained(Duration::from_secs(30)).await;
    let mut placed = HashMap::new();
    for (member, trace) in &traces {
        let new = outcome(&stack, *member, &new_traces[trace]).await;
        assert_eq!(new["status"], "COMPLETED", "{new}");
        let orders = stack.orders_of(*member).await;
        assert_eq!(orders.len(), 1, "member {member}");
        assert_eq!(orders[0]["orderId"], new["orderId"]);
        placed.insert(trace.clone(), new);
        assert_eq!(
            outcome(&stack, *member, trace).await,
            finals[trace],
            "the original stays FAILED"
        );
    }
    assert_eq!(stack.stock(product).await, 0);
    assert_eq!(dlq_json(&stack, &["list", "--json"])["total"], 13);

    // The same replay again: the same trace ids, nothing placed twice.
    let again = dlq_json(&stack, AS_NEW);
    assert_eq!(again["sent"], 10);
    for r in again["records"].as_array().unwrap() {
        let old = r["traceId"].as_str().unwrap();
        assert_eq!(r["sentTraceId"].as_str(), Some(new_traces[old].as_str()));
    }
    assert_eq!(records(&stack.order_topic).len(), on_topic + 30);
    stack.wait_drained(Duration::from_secs(30)).await;
    for (member, trace) in &traces {
        let new = outcome(&stack, *member, &new_traces[trace]).await;
        assert_eq!(new, placed[trace]);
        assert_eq!(stack.orders_of(*member).await.len(), 1, "member {member}");
    }
    assert_eq!(stack.stock(product).await, 0);
    assert_eq!(dlq_json(&stack, &["list", "--json"])["total"], 13);
    stack.stop();
}
