//! The front door of a sale on the real stack, with two `api` replicas
//! sharing one Redis, one database and one broker: the waiting room admits
//! at its rate and never more than its slots across both, the purchase
//! limit holds across both (with the stock gate, and with it off through
//! the database), the order rate is shared, and unknown products never
//! reach the topic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::stack::Stack;
use oms::domain::Role;
use serde_json::{json, Value};

/// A stack of one `api`, one replica and one consumer with these settings.
async fn two_replicas(settings: &[(&str, &str)]) -> (Stack, common::stack::Proc, [String; 2]) {
    let mut stack = Stack::configure();
    for (k, v) in settings {
        stack.envs.push(((*k).to_owned(), (*v).to_owned()));
    }
    let stack = stack.launch(1).await;
    let (replica, other) = stack.start_replica().await;
    let bases = [stack.base.clone(), other];
    (stack, replica, bases)
}

async fn limited_product(stack: &Stack, stock: i64, max: i64) -> u64 {
    let id = oms_core::testkit::random_id();
    let r = stack
        .client
        .post(format!("{}/api/v1/products", stack.base))
        .bearer_auth(stack.admin())
        .json(&json!({"productId": id, "name": "limited", "price": 100,
                      "stock": stock, "maxPerMember": max}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    id
}

async fn order_at(stack: &Stack, base: &str, member: u64, product: u64) -> (u16, Value) {
    let r = stack
        .client
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(stack.token(member, Role::User))
        .json(&common::order_body(&[(product, 1)]))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn room_at(stack: &Stack, base: &str, member: u64, method: &str) -> (u16, Value) {
    let url = format!("{base}/api/v1/waiting-room");
    let req = match method {
        "POST" => stack.client.post(url),
        _ => stack.client.get(url),
    };
    let r = req
        .bearer_auth(stack.token(member, Role::User))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `n` concurrent single-unit orders of `member`, spread over both
/// replicas: the traces of the accepted ones, and the refused ones: 409
/// `LIMIT_EXCEEDED`, or, with the waiting room on, 429 `NOT_ADMITTED` for
/// those that arrive after an accepted order of the burst became final and
/// ended the admission (docs/API.md, "Waiting room").
async fn burst(
    stack: &Stack,
    bases: &[String; 2],
    member: u64,
    product: u64,
    n: usize,
) -> (Vec<(u64, String)>, usize) {
    let answers =
        futures::future::join_all((0..n).map(|i| order_at(stack, &bases[i % 2], member, product)))
            .await;
    let mut traces = Vec::new();
    let mut refused = 0;
    for (status, body) in answers {
        match status {
            202 => traces.push((member, body["traceId"].as_str().unwrap().to_owned())),
            409 => {
                assert_eq!(body["code"], "LIMIT_EXCEEDED", "{body}");
                refused += 1;
            }
            429 => {
                assert_eq!(body["code"], "NOT_ADMITTED", "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    (traces, refused)
}

/// Units of `product` in the member's orders.
async fn units_bought(stack: &Stack, member: u64, product: u64) -> u64 {
    stack
        .orders_of(member)
        .await
        .iter()
        .flat_map(|o| o["items"].as_array().unwrap().clone())
        .filter(|i| i["productId"] == product)
        .map(|i| i["quantity"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_waiting_room_and_the_limit_hold_across_two_replicas() {
    if !common::real_stack() {
        return;
    }
    let (stack, replica, bases) = two_replicas(&[
        ("OMS_WAITING_ROOM", "on"),
        ("OMS_ADMIT_PER_SEC", "20"),
        ("OMS_ADMIT_MAX_ACTIVE", "4"),
        ("OMS_ADMIT_TTL_SECS", "120"),
        ("OMS_ORDER_RATE", "0"),
    ])
    .await;
    let product = limited_product(&stack, 100, 2).await;

    let first = oms_core::testkit::random_id();
    let members: Vec<u64> = (0..12).map(|i| first + i).collect();

    // One after the other, alternating replicas: one line, first come
    // first served, whichever replica a member entered through.
    for (i, m) in members.iter().enumerate() {
        let (s, b) = room_at(&stack, &bases[i % 2], *m, "POST").await;
        assert_eq!(s, 200, "{b}");
    }

    // Both replicas run an admitter; together they fill the 4 slots and no
    // more, however long they run (nobody orders yet, so nobody leaves).
    let deadline = Instant::now() + Duration::from_secs(20);
    let admitted = loop {
        // Read from the back of the line to the front: admissions go in
        // arrival order and nobody leaves yet, so whoever is seen admitted
        // had everyone before them admitted by the time those are read.
        let mut admitted = Vec::new();
        for m in members.iter().rev() {
            if room_at(&stack, &bases[0], *m, "GET").await.1["status"] == "ADMITTED" {
                admitted.push(*m);
            }
        }
        admitted.reverse();
        assert!(admitted.len() <= 4, "{} admitted at once", admitted.len());
        assert_eq!(admitted, members[..admitted.len()], "admitted out of turn");
        if admitted.len() == 4 {
            break admitted;
        }
        assert!(Instant::now() < deadline, "the room never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await; // several admitter rounds
    let mut still = 0;
    for m in &members {
        if room_at(&stack, &bases[1], *m, "GET").await.1["status"] == "ADMITTED" {
            still += 1;
        }
    }
    assert_eq!(still, 4, "a full room admits nobody more");
    // An unknown product: 404 at intake, nothing on the topic.
    let unknown = oms_core::testkit::random_id();
    let (s, b) = order_at(&stack, &bases[1], admitted[0], unknown).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (404, Some("PRODUCT_NOT_FOUND")),
        "{b}"
    );
    assert_eq!(stack.record_count(&stack.order_topic), 0);
    // Someone still waiting cannot order, on either replica.
    let waiting = members.iter().find(|m| !admitted.contains(m)).unwrap();
    for base in &bases {
        let (s, b) = order_at(&stack, base, *waiting, product).await;
        assert_eq!((s, b["code"].as_str()), (429, Some("NOT_ADMITTED")), "{b}");
        assert!(b["position"].as_u64().unwrap() >= 1);
    }

    // Every member, once admitted, sends 20 orders at once over both
    // replicas: exactly 2 are taken. Their orders end their admissions,
    // so the next ones come in.
    let mut traces = Vec::new();
    let mut served: HashSet<u64> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while served.len() < members.len() {
        assert!(Instant::now() < deadline, "only {} served", served.len());
        for (i, m) in members.iter().enumerate() {
            if served.contains(m) {
                continue;
            }
            if room_at(&stack, &bases[0], *m, "GET").await.1["status"] != "ADMITTED" {
                continue;
            }
            // First come, first served: everyone before was let in first.
            for earlier in members[..i].iter().filter(|e| !served.contains(e)) {
                let (_, b) = room_at(&stack, &bases[1], *earlier, "GET").await;
                assert_eq!(
                    b["status"], "ADMITTED",
                    "member {i} admitted before {earlier}"
                );
            }
            let (accepted, over) = burst(&stack, &bases, *m, product, 20).await;
            assert_eq!((accepted.len(), over), (2, 18), "member {m}");
            traces.extend(accepted);
            served.insert(*m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    assert!(finals.values().all(|v| v["status"] == "COMPLETED"));
    for m in &members {
        assert_eq!(units_bought(&stack, *m, product).await, 2, "member {m}");
    }
    assert_eq!(stack.stock(product).await, 100 - 2 * members.len() as i64);
    replica.stop();
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_holds_the_limit_when_the_gate_is_off() {
    if !common::real_stack() {
        return;
    }
    let (stack, replica, bases) =
        two_replicas(&[("OMS_STOCK_GATE", "off"), ("OMS_ORDER_RATE", "0")]).await;
    let product = limited_product(&stack, 1000, 2).await;
    let member = oms_core::testkit::random_id();
    // Without a gate, intake cannot count: all 100 are queued...
    let (traces, over) = burst(&stack, &bases, member, product, 100).await;
    assert_eq!((traces.len(), over), (100, 0));
    // ...and the consumers' transactions sell exactly 2.
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for v in finals.values() {
        let key = match v["status"].as_str().unwrap() {
            "COMPLETED" => "COMPLETED".to_owned(),
            _ => v["reason"].as_str().unwrap().to_owned(),
        };
        *reasons.entry(key).or_default() += 1;
    }
    assert_eq!(
        reasons,
        HashMap::from([
            ("COMPLETED".to_owned(), 2),
            ("LIMIT_EXCEEDED".to_owned(), 98)
        ])
    );
    assert_eq!(units_bought(&stack, member, product).await, 2);
    assert_eq!(stack.stock(product).await, 998);
    // Each refused order has exactly one DLQ record, with its reason.
    let failed: HashSet<String> = finals
        .values()
        .filter(|v| v["status"] == "FAILED")
        .map(|v| v["traceId"].as_str().unwrap().to_owned())
        .collect();
    let counts = stack.dead_letter_counts(&failed).await;
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), failed);
    assert!(counts
        .values()
        .all(|(n, reason)| *n == 1 && reason == "LIMIT_EXCEEDED"));
    replica.stop();
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_order_rate_is_shared_by_the_replicas() {
    if !common::real_stack() {
        return;
    }
    let (stack, replica, bases) = two_replicas(&[("OMS_ORDER_RATE", "5")]).await;
    let product = stack.add_product(1000).await;
    let member = oms_core::testkit::random_id();
    let started = Instant::now();
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..20 {
        let (s, b) = order_at(&stack, &bases[i % 2], member, product).await;
        match s {
            202 => accepted += 1,
            429 => {
                assert_eq!(b["code"], "RATE_LIMITED", "{b}");
                limited += 1;
            }
            other => panic!("{other}: {b}"),
        }
    }
    // One budget for both: a burst of 5 plus one per 200 ms, not 5 each.
    let bound = 5 + (started.elapsed().as_millis() / 200) as usize;
    assert!(
        accepted >= 5 && accepted <= bound,
        "{accepted} accepted, bound {bound}"
    );
    assert_eq!(accepted + limited, 20);
    replica.stop();
    stack.stop();
}
