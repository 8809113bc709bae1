//! The 네고왕 scenario on the real stack: a real `api` process and two
//! `consumer` processes against Redis, MariaDB and the Kafka broker of
//! `scripts/services.sh up`. 3 products × 500 stock, 1000 members each
//! ordering one unit of every product at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oms::domain::Role;
use oms::http::JwtAuth;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};

const SECRET: &str = "negowang-e2e-secret";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/services.sh up && source target/services.env`")
    })
}

fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --examples --all-features` first",
        path.display()
    );
    path
}

/// A child process that is stopped when dropped.
struct Proc(Child, &'static str);

impl Proc {
    fn start(name: &'static str, envs: &[(String, String)], log: &str) -> Self {
        let log_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let out = std::fs::File::create(log_dir.join(log)).unwrap();
        let child = Command::new(example(name))
            .envs(envs.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self(child, name)
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.1);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negowang_on_the_real_stack() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let order_topic = format!("negowang-orders-{run}");
    let dlq_topic = format!("negowang-dlq-{run}");
    let port = free_port();
    let envs: Vec<(String, String)> = [
        ("OMS_KAFKA_BROKERS", env("OMS_KAFKA_BROKERS")),
        ("OMS_REDIS_URL", env("OMS_REDIS_URL")),
        ("OMS_DATABASE_URL", env("OMS_DATABASE_URL")),
        ("OMS_JWT_SECRET", SECRET.to_owned()),
        ("OMS_ORDER_TOPIC", order_topic.clone()),
        ("OMS_DLQ_TOPIC", dlq_topic.clone()),
        ("OMS_ORDER_PARTITIONS", "6".to_owned()),
        ("OMS_CONSUMER_GROUP", format!("negowang-{run}")),
        ("OMS_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let api = Proc::start("api", &envs, &format!("api-{run}.log"));
    let consumers = [
        Proc::start("consumer", &envs, &format!("consumer-a-{run}.log")),
        Proc::start("consumer", &envs, &format!("consumer-b-{run}.log")),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "api never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let auth = JwtAuth::new(SECRET.as_bytes());
    let token = |m: u64, role| auth.mint(m, role, Duration::from_secs(3600)).unwrap();
    let admin = token(1, Role::Admin);
    let products: Vec<u64> = (0..3).map(|_| oms_core::testkit::random_id()).collect();
    for id in &products {
        let r = client
            .post(format!("{base}/api/v1/products"))
            .bearer_auth(&admin)
            .json(&json!({"productId": id, "name": format!("deal {id}"), "price": 12900, "stock": 500}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let first_member = oms_core::testkit::random_id();
    let members: Vec<u64> = (0..1000).map(|i| first_member + i).collect();
    let tokens: HashMap<u64, String> = members
        .iter()
        .map(|m| (*m, token(*m, Role::User)))
        .collect();
    let lines: Vec<(u64, u32)> = products.iter().map(|p| (*p, 1)).collect();
    let body = common::order_body(&lines);
    let started = Instant::now();
    let posts = members.iter().map(|m| {
        let client = client.clone();
        let url = format!("{base}/api/v1/orders");
        let t = tokens[m].clone();
        let body = body.clone();
        let m = *m;
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(&t)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            (m, v["traceId"].as_str().unwrap().to_owned())
        })
    });
    let traces: Vec<(u64, String)> = futures::future::join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finals: HashMap<u64, Value> = HashMap::new();
    while finals.len() < traces.len() {
        assert!(
            Instant::now() < deadline,
            "{} traces still PROCESSING",
            traces.len() - finals.len()
        );
        let polls = traces
            .iter()
            .filter(|(m, _)| !finals.contains_key(m))
            .map(|(m, trace)| {
                let client = client.clone();
                let url = format!("{base}/api/v1/orders/by-trace/{trace}");
                let t = tokens[m].clone();
                let m = *m;
                async move {
                    let r = client.get(url).bearer_auth(&t).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    (m, r.json::<Value>().await.unwrap())
                }
            });
        for (m, v) in futures::future::join_all(polls).await {
            if v["status"] != "PROCESSING" {
                finals.insert(m, v);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "negowang real stack: 1000 orders, first POST to all traces final in {:?}",
        started.elapsed()
    );

    let completed: Vec<(&u64, &Value)> = finals
        .iter()
        .filter(|(_, v)| v["status"] == "COMPLETED")
        .collect();
    let failed: HashSet<String> = finals
        .values()
        .filter(|v| v["status"] == "FAILED")
        .map(|v| {
            assert_eq!(v["reason"], "OUT_OF_STOCK", "{v}");
            v["traceId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(completed.len(), 500);
    assert_eq!(failed.len(), 500);
    let order_ids: HashSet<u64> = completed
        .iter()
        .map(|(_, v)| v["orderId"].as_u64().unwrap())
        .collect();
    assert_eq!(order_ids.len(), 500);
    for id in &products {
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
    let lists = finals.iter().map(|(m, trace)| {
        let client = client.clone();
        let t = tokens[m].clone();
        let url = format!("{base}/api/v1/orders");
        let (m, trace) = (*m, trace.clone());
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
            if trace["status"] == "COMPLETED" {
                assert_eq!(
                    list.len(),
                    1,
                    "member {m}: one order row per COMPLETED trace"
                );
                assert_eq!(list[0]["orderId"], trace["orderId"]);
                assert_eq!(list[0]["memberId"], m);
            } else {
                assert!(list.is_empty(), "member {m}");
            }
        }
    });
    futures::future::join_all(lists).await;

    // The DLQ holds exactly the failed traces, with their reason.
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", format!("dlq-reader-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    reader.subscribe(&[&dlq_topic]).unwrap();
    let mut dead: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead.len() < 500 {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, reader.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} DLQ records", dead.len()))
            .unwrap();
        let reason = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "oms-failure-reason")
                    .and_then(|h| h.value)
            })
            .map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(reason.as_deref(), Some("OUT_OF_STOCK"));
        let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert!(
            dead.insert(value["traceId"].as_str().unwrap().to_owned()),
            "duplicate DLQ record"
        );
    }
    assert_eq!(dead, failed);
    let metadata = reader
        .fetch_metadata(Some(&dlq_topic), Duration::from_secs(5))
        .unwrap();
    let mut total = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = reader
            .fetch_watermarks(&dlq_topic, p.id(), Duration::from_secs(5))
            .unwrap();
        total += high - low;
    }
    assert_eq!(total, 500, "no more DLQ records than FAILED traces");

    api.stop();
    for c in consumers {
        c.stop();
    }
}
