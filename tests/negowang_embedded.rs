//! The 네고왕 scenario on the embedded default, over real HTTP: 3 products ×
//! 500 stock, 1000 distinct members each ordering one unit of every product
//! at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{auth, order_body, token};
use oms::domain::Role;
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use serde_json::{json, Value};

const PRODUCTS: [u64; 3] = [1, 2, 3];
const STOCK: i64 = 500;
const MEMBERS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negowang_1000_buyers_500_units() {
    let pipeline = EmbeddedPipeline::start();
    // The only test of this binary: the process's recorder counts this run.
    let metrics = oms::observe::Metrics::install().unwrap();
    let app = router(pipeline.app_state(auth()).with_metrics(metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let admin = token(1_000_000, Role::Admin);

    for id in PRODUCTS {
        let r = client
            .post(format!("{base}/api/v1/products"))
            .bearer_auth(&admin)
            .json(&json!({"productId": id, "name": format!("deal {id}"), "price": 12900, "stock": STOCK}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let tokens: Vec<String> = (1..=MEMBERS).map(|m| token(m, Role::User)).collect();
    let started = Instant::now();
    let posts = tokens.iter().enumerate().map(|(i, t)| {
        let client = client.clone();
        let url = format!("{base}/api/v1/orders");
        let t = t.clone();
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(&t)
                .json(&order_body(&[(1, 1), (2, 1), (3, 1)]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.unwrap();
            (
                i as u64 + 1,
                body["traceId"].as_str().unwrap().to_owned(),
                body["status"].as_str().unwrap().to_owned(),
            )
        })
    });
    let mut traces = Vec::new();
    let mut refused_at_once = 0;
    for p in futures::future::join_all(posts).await {
        let (member, trace, status) = p.unwrap();
        if status == "FAILED" {
            refused_at_once += 1;
        } else {
            assert_eq!(status, "PROCESSING");
        }
        traces.push((member, trace));
    }
    assert_eq!(traces.len(), MEMBERS as usize);
    // The stock gate holds exactly the units in stock: every order past
    // them is answered FAILED at once, without reaching the queue.
    assert_eq!(refused_at_once, 500, "orders refused by the stock gate");

    // Poll every trace until it is final.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finals: HashMap<u64, Value> = HashMap::new();
    while finals.len() < traces.len() {
        assert!(
            Instant::now() < deadline,
            "traces still PROCESSING after 60 s"
        );
        let pending: Vec<_> = traces
            .iter()
            .filter(|(m, _)| !finals.contains_key(m))
            .cloned()
            .collect();
        let polls = pending.into_iter().map(|(member, trace)| {
            let client = client.clone();
            let url = format!("{base}/api/v1/orders/by-trace/{trace}");
            let t = tokens[member as usize - 1].clone();
            async move {
                let r = client.get(url).bearer_auth(&t).send().await.unwrap();
                assert_eq!(r.status(), 200);
                (member, r.json::<Value>().await.unwrap())
            }
        });
        for (member, body) in futures::future::join_all(polls).await {
            if body["status"] != "PROCESSING" {
                finals.insert(member, body);
            }
        }
        if finals.len() < traces.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "negowang embedded: {} orders, first POST to all traces final in {:?}",
        traces.len(),
        elapsed
    );

    let completed: Vec<_> = finals
        .iter()
        .filter(|(_, b)| b["status"] == "COMPLETED")
        .collect();
    let failed: Vec<_> = finals
        .iter()
        .filter(|(_, b)| b["status"] == "FAILED")
        .collect();
    assert_eq!(completed.len(), 500);
    assert_eq!(failed.len(), 500);
    assert!(failed.iter().all(|(_, b)| b["reason"] == "OUT_OF_STOCK"));
    let order_ids: HashSet<u64> = completed
        .iter()
        .map(|(_, b)| b["orderId"].as_u64().unwrap())
        .collect();
    assert_eq!(order_ids.len(), 500, "500 distinct orders");

    for id in PRODUCTS {
        let p: Value = client
            .get(format!("{base}/api/v1/products/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(p["stock"], 0, "product {id}");
    }

    // Every member sees exactly its own orders: one if COMPLETED, none if FAILED.
    let checks = finals.iter().map(|(member, trace)| {
        let client = client.clone();
        let t = tokens[*member as usize - 1].clone();
        let url = format!("{base}/api/v1/orders");
        let member = *member;
        let trace = trace.clone();
        async move {
            let list: Vec<Value> = client
                .get(url)
                .bearer_auth(&t)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(list.iter().all(|o| o["memberId"] == member));
            if trace["status"] == "COMPLETED" {
                assert_eq!(list.len(), 1, "member {member}");
                assert_eq!(list[0]["orderId"], trace["orderId"]);
                assert_eq!(list[0]["items"].as_array().unwrap().len(), 3);
            } else {
                assert!(list.is_empty(), "member {member}");
            }
        }
    });
    futures::future::join_all(checks).await;

    // And nobody reads another member's order.
    let (owner, trace) = completed[0];
    let stranger = if *owner == 1 { 2 } else { 1 };
    let r = client
        .get(format!("{base}/api/v1/orders/{}", trace["orderId"]))
        .bearer_auth(&tokens[stranger - 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Refusals reach the DLQ through the gate keeper, in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.queue.dead_letters().len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let letters = pipeline.queue.dead_letters();
    assert_eq!(letters.len(), 500, "one DLQ record per FAILED trace");
    let failed: HashSet<String> = finals
        .values()
        .filter(|t| t["status"] == "FAILED")
        .map(|t| t["traceId"].as_str().unwrap().to_owned())
        .collect();
    let lettered: HashSet<String> = letters
        .iter()
        .map(|l| l.trace_id.unwrap().to_string())
        .collect();
    assert_eq!(lettered, failed, "the DLQ holds exactly the FAILED traces");
    // `/metrics` counts the same run.
    common::assert_negowang_metrics(&client, &[format!("{base}/metrics")], 1000, 500).await;
    server.abort();
    pipeline.shutdown().await;
}
