//! The real stack for end-to-end tests: `api` and `consumer` processes (the
//! examples) against the services of `scripts/services.sh up`, on topics and
//! a consumer group of their own.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oms::domain::Role;
use oms::http::JwtAuth;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};

/// At least 32 bytes: `api` and `consumer` refuse a shorter secret with real
/// services.
const SECRET: &str = "e2e-secret-of-the-end-to-end-test-stack";

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/services.sh up && source target/services.env`")
    })
}

pub fn example(name: &str) -> PathBuf {
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

fn signal(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// A child process, killed when dropped.
pub struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn start(name: &'static str, envs: &[(String, String)], log: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(log))
            .unwrap();
        let child = Command::new(example(name))
            .envs(envs.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, name }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        signal("-TERM", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash. The process must still be running: a crash test
    /// whose victim had already exited would prove nothing.
    pub fn crash(mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "{} had exited before it was killed",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP until the guard is dropped.
    pub fn pause(&self) -> Paused {
        Paused::pid(self.child.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process stopped with SIGSTOP; SIGCONT when dropped, whatever happens.
pub struct Paused(u32);

impl Paused {
    fn pid(pid: u32) -> Self {
        signal("-STOP", pid);
        Self(pid)
    }

    /// Pauses one of the services of `scripts/services.sh` (`redis`,
    /// `mariadb`, `tansu`).
    pub fn service(name: &str) -> Self {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/services")
            .join(format!("{name}.pid"));
        let pid =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        Self::pid(pid.trim().parse().unwrap())
    }
}

impl Paused {
    /// Pauses the Kafka-protocol broker the tests run on: the mock cluster
    /// when `OMS_MOCK_CONTROL` names it, else tansu.
    pub fn broker() -> Self {
        if std::env::var("OMS_MOCK_CONTROL").is_ok() {
            Self::service("mock")
        } else {
            Self::service("tansu")
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A database of its own for one run (`e2e_{run}` on the server of
/// `OMS_DATABASE_URL`), created with the `mariadb` client of
/// `scripts/services.sh`: outcomes, outbox and products of other runs stay
/// out of this run's DLQ and checks. Returns its URL.
fn run_database(run: &str) -> String {
    let url = env("OMS_DATABASE_URL");
    let rest = url
        .strip_prefix("mysql://")
        .unwrap_or_else(|| panic!("OMS_DATABASE_URL is not a mysql:// URL: {url}"));
    let (credentials, location) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host_port, _) = location.split_once('/').unwrap_or((location, ""));
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
    let name = format!("e2e_{run}");
    let status = Command::new("mariadb")
        .args([
            "--no-defaults",
            &format!("--host={host}"),
            &format!("--port={port}"),
            &format!("--user={user}"),
            &format!("--password={password}"),
            "-e",
            &format!("CREATE DATABASE IF NOT EXISTS {name}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "cannot create database {name}");
    format!("mysql://{credentials}@{host_port}/{name}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How many DLQ records a FAILED trace may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dlq {
    /// One: nothing crashed.
    ExactlyOnce,
    /// One or more: a process was killed (the DLQ is at least once).
    AtLeastOnce,
}

/// The answer to one `POST /api/v1/orders` (see
/// [`Stack::order_answered`]).
#[derive(Debug, Clone)]
pub struct Answer {
    pub member: u64,
    pub trace: String,
    /// `status` of the body: `PROCESSING`, or `FAILED` at once.
    pub status: String,
    pub body: Value,
}

/// A record read back from a topic (see [`Stack::read_topic`]).
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Record {
    /// The value of the header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The trace id the record carries in its `oms-trace-id` header.
    pub fn trace_id(&self) -> Option<&str> {
        self.header("oms-trace-id")
    }
}

/// How long a topic must stay silent before a read of it counts as
/// complete: longer than the gap between the sends of one round of the
/// consumer or the gate keeper (milliseconds), so a record sent twice by
/// the same round is read.
pub const QUIET: Duration = Duration::from_secs(2);

/// One run of the stack.
pub struct Stack {
    pub run: String,
    pub envs: Vec<(String, String)>,
    pub base: String,
    pub client: reqwest::Client,
    pub auth: JwtAuth,
    pub order_topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub api: Option<Proc>,
    pub consumers: Vec<Proc>,
    /// `/metrics` of every consumer started (see
    /// [`consumer_metrics`](Self::consumer_metrics)).
    pub metrics_urls: std::sync::Mutex<Vec<String>>,
}

impl Stack {
    /// Starts an `api` and `consumers` consumer processes and waits until the
    /// API is ready.
    pub async fn start(consumers: usize) -> Self {
        Self::configure().launch(consumers).await
    }

    /// Starts the `api` and `consumers` consumer processes of a configured
    /// run (see [`configure`](Self::configure)) and waits until the API is
    /// ready.
    pub async fn launch(self, consumers: usize) -> Self {
        let mut stack = self;
        stack.create_topics_on_mock();
        stack.api = Some(Proc::start(
            "api",
            &stack.envs,
            &format!("api-{}.log", stack.run),
        ));
        stack.wait_ready().await;
        for _ in 0..consumers {
            stack.start_consumer();
        }
        stack
    }

    /// The names and settings of a new run (its own topics and group),
    /// with no process started.
    pub fn configure() -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let order_topic = format!("e2e-orders-{run}");
        let dlq_topic = format!("e2e-dlq-{run}");
        let group = format!("e2e-group-{run}");
        let port = free_port();
        let envs: Vec<(String, String)> = [
            ("OMS_KAFKA_BROKERS", env("OMS_KAFKA_BROKERS")),
            ("OMS_REDIS_URL", env("OMS_REDIS_URL")),
            ("OMS_DATABASE_URL", run_database(&run)),
            ("OMS_JWT_SECRET", SECRET.to_owned()),
            ("OMS_ORDER_TOPIC", order_topic.clone()),
            ("OMS_DLQ_TOPIC", dlq_topic.clone()),
            ("OMS_EVENTS_TOPIC", format!("e2e-events-{run}")),
            ("OMS_ORDER_PARTITIONS", "6".to_owned()),
            ("OMS_CONSUMER_GROUP", group.clone()),
            ("OMS_REDIS_PREFIX", format!("e2e-{run}")),
            ("OMS_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            api: None,
            consumers: Vec::new(),
            metrics_urls: std::sync::Mutex::new(Vec::new()),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
            auth: JwtAuth::new(SECRET.as_bytes()),
            run,
            envs,
            order_topic,
            dlq_topic,
            group,
        }
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "api never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts one more consumer process, with its `/metrics` on a port of
    /// its own (in [`consumer_metrics`](Self::consumer_metrics)).
    pub fn start_consumer(&mut self) {
        let consumer = self.spawn_consumer();
        self.consumers.push(consumer);
    }

    /// The `/metrics` URLs of the consumers started so far.
    pub fn consumer_metrics(&self) -> Vec<String> {
        self.metrics_urls.lock().unwrap().clone()
    }

    /// The consumer log (all consumers of this run).
    pub fn consumer_log(&self) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/e2e-logs")
            .join(format!("consumer-{}.log", self.run));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    pub fn token(&self, member: u64, role: Role) -> String {
        self.auth
            .mint(member, role, Duration::from_secs(3600))
            .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token(1, Role::Admin)
    }

    /// A new product with this stock; returns its id.
    pub async fn add_product(&self, stock: i64) -> u64 {
        let id = oms_core::testkit::random_id();
        let r = self
            .client
            .post(format!("{}/api/v1/products", self.base))
            .bearer_auth(self.admin())
            .json(&json!({"productId": id, "name": format!("deal {id}"), "price": 12900, "stock": stock}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        id
    }

    pub async fn post_order(
        &self,
        member: u64,
        lines: &[(u64, u32)],
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(self.token(member, Role::User))
            .json(&super::order_body(lines));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    /// Every member orders `lines` at once; all must be accepted.
    pub async fn order_all(&self, members: &[u64], lines: &[(u64, u32)]) -> Vec<(u64, String)> {
        self.order_answered(members, lines)
            .await
            .into_iter()
            .map(|a| (a.member, a.trace))
            .collect()
    }

    /// Every member orders `lines` at once; all must be accepted (202).
    /// Keeps each answer's body: `PROCESSING` when the order was queued,
    /// `FAILED` with its reason when the stock gate refused it at once.
    pub async fn order_answered(&self, members: &[u64], lines: &[(u64, u32)]) -> Vec<Answer> {
        let posts = members.iter().map(|m| async move {
            let r = self.post_order(*m, lines, None).await;
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.unwrap();
            Answer {
                member: *m,
                trace: body["traceId"].as_str().unwrap().to_owned(),
                status: body["status"].as_str().unwrap().to_owned(),
                body,
            }
        });
        futures::future::join_all(posts).await
    }

    pub async fn trace(&self, member: u64, trace: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/v1/orders/by-trace/{trace}", self.base))
            .bearer_auth(self.token(member, Role::User))
            .send()
            .await
            .unwrap()
    }

    /// Polls every trace until it is final (or panics after `within`).
    pub async fn wait_final(
        &self,
        traces: &[(u64, String)],
        within: Duration,
    ) -> HashMap<String, Value> {
        let deadline = Instant::now() + within;
        let mut finals: HashMap<String, Value> = HashMap::new();
        while finals.len() < traces.len() {
            assert!(
                Instant::now() < deadline,
                "{} traces still PROCESSING",
                traces.len() - finals.len()
            );
            let polls =
                traces
                    .iter()
                    .filter(|(_, t)| !finals.contains_key(t))
                    .map(|(m, t)| async move {
                        let r = self.trace(*m, t).await;
                        assert_eq!(r.status(), 200);
                        (t.clone(), r.json::<Value>().await.unwrap())
                    });
            for (t, v) in futures::future::join_all(polls).await {
                if v["status"] != "PROCESSING" {
                    finals.insert(t, v);
                }
            }
            if finals.len() < traces.len() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        finals
    }

    /// `GET /api/v1/products/{product}` as an operator.
    pub async fn product(&self, product: u64) -> Value {
        self.client
            .get(format!("{}/api/v1/products/{product}", self.base))
            .bearer_auth(self.admin())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn stock(&self, product: u64) -> i64 {
        self.product(product).await["stock"].as_i64().unwrap()
    }

    pub async fn orders_of(&self, member: u64) -> Vec<Value> {
        self.client
            .get(format!("{}/api/v1/orders", self.base))
            .bearer_auth(self.token(member, Role::User))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn reader(&self, topic: &str) -> StreamConsumer {
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        reader.subscribe(&[topic]).unwrap();
        reader
    }

    /// Records on `topic`: the sum over partitions of high − low watermark.
    /// tansu 0.6 reports its log end in batches, so this is exact only when
    /// every record was produced on its own (as the consumer's DLQ sends
    /// are; the gate keeper's concurrent sends are batched): otherwise it is
    /// a lower bound that grows with every new record.
    pub fn record_count(&self, topic: &str) -> i64 {
        let reader = self.reader(topic);
        let metadata = reader
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap();
        metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| {
                let (low, high) = reader
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                    .unwrap();
                high - low
            })
            .sum()
    }

    /// Every record of `topic`, counted by reading them, never by
    /// watermarks: reads each partition from its start until (1) it has
    /// read every partition up to the log end it had when the read began,
    /// (2) `done` holds for what it read, and (3) no new record came for
    /// [`QUIET`]; panics if (1) or (2) is not met within `within`.
    ///
    /// The log end is only a floor for the count, on every broker: on
    /// Apache Kafka and the mock broker it is exact, on tansu it is the
    /// start of the partition's last batch + 1 (docs/brokers.md), so the
    /// rest of that batch is read in (3). Records are kept as read, so a
    /// record sent twice is there twice.
    pub async fn read_topic(
        &self,
        topic: &str,
        within: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> Vec<Record> {
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let metadata = reader
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap();
        let mut assignment = rdkafka::TopicPartitionList::new();
        // Partition → the offset the read must reach.
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for p in metadata.topics()[0].partitions() {
            let (low, high) = reader
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .unwrap();
            if high > low {
                ends.insert(p.id(), high);
            }
            assignment
                .add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
        assert!(
            !assignment.elements().is_empty(),
            "{topic} has no partition"
        );
        reader.assign(&assignment).unwrap();
        let deadline = Instant::now() + within;
        let mut out: Vec<Record> = Vec::new();
        let mut next: HashMap<i32, i64> = HashMap::new();
        loop {
            let reached = ends
                .iter()
                .all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
            let complete = reached && done(&out);
            let wait = if complete {
                QUIET
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let m = match tokio::time::timeout(wait, reader.recv()).await {
                Ok(m) => m.unwrap(),
                Err(_) if complete => return out,
                Err(_) => panic!(
                    "{topic}: {} records read in {within:?}, {}",
                    out.len(),
                    if reached {
                        "not all that were expected"
                    } else {
                        "short of the log end it had at the start"
                    }
                ),
            };
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            next.insert(m.partition(), m.offset() + 1);
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }

    /// Every record of the order topic, read until quiet (see
    /// [`read_topic`](Self::read_topic)), once at least `at_least` came.
    pub async fn order_topic_records(&self, at_least: usize) -> Vec<Record> {
        self.read_topic(&self.order_topic, Duration::from_secs(60), |r| {
            r.len() >= at_least
        })
        .await
    }

    /// A key of the run's intake keyspace in Redis, `{<prefix>}:<name>`
    /// (README "The stock gate"): `gate:<productId>`, `trace:<traceId>`,
    /// `refusals`.
    pub fn intake_key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.setting("OMS_REDIS_PREFIX"))
    }

    /// A connection to the run's Redis.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(env("OMS_REDIS_URL"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Waits (up to `within`) until the stock gate's journal of refusals is
    /// empty: the gate keepers have settled every refused order (outcome,
    /// DLQ record) and removed it.
    pub async fn wait_journal_drained(&self, within: Duration) {
        let mut conn = self.redis().await;
        let journal = self.intake_key("refusals");
        let deadline = Instant::now() + within;
        loop {
            let left: i64 = redis::cmd("XLEN")
                .arg(&journal)
                .query_async(&mut conn)
                .await
                .unwrap();
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{left} refusals still in the gate's journal after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every DLQ record, read until the DLQ is quiet (see
    /// [`read_topic`](Self::read_topic)) once the gate's journal is empty
    /// and every one of `traces` has a record.
    pub async fn dead_letter_records(&self, traces: &HashSet<String>) -> Vec<Record> {
        self.wait_journal_drained(Duration::from_secs(60)).await;
        self.read_topic(&self.dlq_topic, Duration::from_secs(60), |read| {
            let seen: HashSet<&str> = read.iter().filter_map(Record::trace_id).collect();
            traces.iter().all(|t| seen.contains(t.as_str()))
        })
        .await
    }

    /// The DLQ records per trace id, read until the DLQ is quiet (see
    /// [`dead_letter_records`](Self::dead_letter_records)): how many
    /// records name the trace, and their reasons (one reason, or the
    /// different ones joined with `", "`).
    pub async fn dead_letter_counts(
        &self,
        traces: &HashSet<String>,
    ) -> HashMap<String, (usize, String)> {
        let mut counts: HashMap<String, (usize, String)> = HashMap::new();
        for record in self.dead_letter_records(traces).await {
            let trace = record
                .trace_id()
                .expect("every DLQ record names its trace")
                .to_owned();
            let reason = record.header("oms-failure-reason").unwrap_or_default();
            let entry = counts.entry(trace).or_insert((0, reason.to_owned()));
            entry.0 += 1;
            if !entry.1.split(", ").any(|r| r == reason) {
                entry.1 = format!("{}, {reason}", entry.1);
            }
        }
        counts
    }

    /// Reads DLQ records, as (value bytes, reason), until `done` says so
    /// (or panics after 30 s).
    async fn read_dead_letters(
        &self,
        mut done: impl FnMut(&[(Vec<u8>, String)]) -> bool,
    ) -> Vec<(Vec<u8>, String)> {
        let reader = self.reader(&self.dlq_topic);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while !done(&out) {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, reader.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} DLQ records came", out.len()))
                .unwrap();
            let reason = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "oms-failure-reason")
                        .and_then(|h| h.value)
                })
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), reason));
        }
        out
    }

    /// Every DLQ record as (trace id, reason), read until `distinct` trace
    /// ids were seen and the DLQ is quiet (see
    /// [`read_topic`](Self::read_topic)): a record sent twice is there
    /// twice.
    pub async fn dead_letters(&self, distinct: usize) -> Vec<(String, String)> {
        let trace = |value: &[u8]| -> String {
            let value: Value = serde_json::from_slice(value).unwrap();
            value["traceId"].as_str().unwrap_or_default().to_owned()
        };
        self.read_topic(&self.dlq_topic, Duration::from_secs(60), |read| {
            read.iter()
                .map(|r| trace(&r.value))
                .collect::<HashSet<_>>()
                .len()
                >= distinct
        })
        .await
        .into_iter()
        .map(|r| {
            let reason = r
                .header("oms-failure-reason")
                .unwrap_or_default()
                .to_owned();
            (trace(&r.value), reason)
        })
        .collect()
    }

    /// Reads `count` DLQ records as (value bytes, reason).
    pub async fn dead_letters_raw(&self, count: usize) -> Vec<(Vec<u8>, String)> {
        self.read_dead_letters(|read| read.len() >= count).await
    }

    /// Every record of the order topic, as (key, value).
    pub async fn order_records(&self, count: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        let reader = self.reader(&self.order_topic);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while out.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, reader.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {count} order records", out.len()))
                .unwrap();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
        out
    }

    /// Reads the events topic until `count` records came and no other came
    /// for 2 s (or panics after 60 s): (key, JSON value) of each.
    pub async fn events(&self, count: usize) -> Vec<(String, Value)> {
        let reader = self.reader(&self.events_topic());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        loop {
            let wait = if out.len() >= count {
                Duration::from_secs(2)
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            match tokio::time::timeout(wait, reader.recv()).await {
                Ok(m) => {
                    let m = m.unwrap();
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    let value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                    out.push((key, value));
                }
                Err(_) if out.len() >= count => return out,
                Err(_) => panic!("only {} of {count} events", out.len()),
            }
        }
    }

    /// Produces raw records to the order topic.
    pub async fn produce(&self, records: &[(Option<Vec<u8>>, Vec<u8>)]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
            .create()
            .unwrap();
        for (key, value) in records {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.order_topic).payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            producer.send(record, Duration::from_secs(5)).await.unwrap();
        }
    }

    /// The Kafka settings of this run (its topics and group).
    pub fn kafka(&self) -> oms::kafka::KafkaConfig {
        let mut config = oms::kafka::KafkaConfig::new(env("OMS_KAFKA_BROKERS"));
        config.order_topic = self.order_topic.clone();
        config.dlq_topic = self.dlq_topic.clone();
        config.group = self.group.clone();
        config
    }

    /// The sum over partitions of the group's committed offsets of the
    /// order topic (0 when nothing is committed).
    pub fn committed_offsets(&self) -> i64 {
        let probe = self.reader(&self.order_topic);
        let metadata = probe
            .fetch_metadata(Some(&self.order_topic), Duration::from_secs(5))
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition(&self.order_topic, p.id());
        }
        let probe: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        probe
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap()
            .elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(n) => n,
                _ => 0,
            })
            .sum()
    }

    /// Waits until the consumer group has committed every record of the
    /// order topic.
    pub async fn wait_drained(&self, within: Duration) {
        use oms::port::outbound::OrderBacklog;
        let backlog = oms::kafka::KafkaBacklog::new(&self.kafka()).unwrap();
        let deadline = Instant::now() + within;
        loop {
            let pending = backlog.pending().await.unwrap();
            if pending == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{pending} records not committed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Checks the 네고왕 invariants of a finished run and returns the
    /// (COMPLETED, FAILED) counts. Each member (one order each in the run)
    /// has exactly the order of its COMPLETED trace, or none when it
    /// FAILED. The DLQ is read until quiet (after the gate's journal is
    /// empty) and counted per trace id: every FAILED trace has a record with
    /// its reason and no other trace has one; exactly one each with
    /// `Dlq::ExactlyOnce` (a run without crashes), at least one with
    /// `Dlq::AtLeastOnce` (a process killed between a send and its
    /// confirmation sends it again).
    pub async fn check_invariants(
        &self,
        products: &[(u64, i64)],
        traces: &[(u64, String)],
        finals: &HashMap<String, Value>,
        dlq: Dlq,
    ) -> (usize, usize) {
        let completed: Vec<&Value> = finals
            .values()
            .filter(|v| v["status"] == "COMPLETED")
            .collect();
        let failed: HashSet<String> = finals
            .values()
            .filter(|v| v["status"] == "FAILED")
            .map(|v| v["traceId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            completed.len() + failed.len(),
            traces.len(),
            "no trace PROCESSING"
        );
        let order_ids: HashSet<u64> = completed
            .iter()
            .map(|v| v["orderId"].as_u64().unwrap())
            .collect();
        assert_eq!(
            order_ids.len(),
            completed.len(),
            "one order per COMPLETED trace"
        );
        for (product, initial) in products {
            let left = self.stock(*product).await;
            assert!(left >= 0);
            // Every order takes one unit of every product.
            assert_eq!(left, initial - completed.len() as i64, "product {product}");
        }
        // Every member of the run ordered once, so each member's order list
        // is exactly the order of its COMPLETED trace, or empty.
        let mut members = HashSet::new();
        for (m, _) in traces {
            assert!(members.insert(*m), "member {m} ordered twice in the run");
        }
        let lists = traces.iter().map(|(m, t)| async move {
            let list = self.orders_of(*m).await;
            let trace = &finals[t];
            assert!(list.iter().all(|o| o["memberId"] == *m), "member {m}");
            if trace["status"] == "COMPLETED" {
                assert_eq!(list.len(), 1, "member {m}: one order: {list:?}");
                assert_eq!(list[0]["orderId"], trace["orderId"], "member {m}");
            } else {
                assert!(list.is_empty(), "member {m} FAILED yet has {list:?}");
            }
        });
        futures::future::join_all(lists).await;
        let counts = self.dead_letter_counts(&failed).await;
        let dead: HashSet<String> = counts.keys().cloned().collect();
        assert_eq!(dead, failed, "the DLQ holds the FAILED traces and no other");
        for (trace, (n, reason)) in &counts {
            assert_eq!(reason, "OUT_OF_STOCK", "{trace}");
            match dlq {
                Dlq::ExactlyOnce => assert_eq!(*n, 1, "{trace} has {n} DLQ records"),
                Dlq::AtLeastOnce => assert!(*n >= 1),
            }
        }
        (completed.len(), failed.len())
    }

    /// The value of one of the run's settings.
    pub fn setting(&self, name: &str) -> String {
        self.envs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} is not a setting of the run"))
    }

    /// The run's order events topic.
    pub fn events_topic(&self) -> String {
        format!("e2e-events-{}", self.run)
    }

    /// Stops every process gracefully.
    pub fn stop(mut self) {
        if let Some(api) = self.api.take() {
            api.stop();
        }
        for c in self.consumers.drain(..) {
            c.stop();
        }
    }
}

/// Helpers of the consumer crash-loop test (`tests/crash_loop.rs`), and for
/// running a stack on a broker that does not create topics.
impl Stack {
    /// Starts an `api` with `extra` settings on top of the run's (no
    /// consumer), after creating the run's topics on the mock broker when
    /// that is the broker, and waits until the API is ready.
    pub async fn start_api_with(extra: &[(&str, &str)]) -> Self {
        let mut stack = Self::configure();
        for (k, v) in extra {
            stack.envs.push(((*k).to_owned(), (*v).to_owned()));
        }
        stack.create_topics_on_mock();
        stack.api = Some(Proc::start(
            "api",
            &stack.envs,
            &format!("api-{}.log", stack.run),
        ));
        stack.wait_ready().await;
        stack
    }

    /// Starts a consumer process that the caller owns (it is not in
    /// `consumers`); it logs with the other consumers of the run.
    pub fn spawn_consumer(&self) -> Proc {
        let log = format!("consumer-{}.log", self.run);
        let addr = format!("127.0.0.1:{}", free_port());
        self.metrics_urls
            .lock()
            .unwrap()
            .push(format!("http://{addr}/metrics"));
        let mut envs = self.envs.clone();
        envs.push(("OMS_METRICS_ADDR".to_owned(), addr));
        Proc::start("consumer", &envs, &log)
    }

    /// Creates the order and DLQ topics of the run (6 partitions) through
    /// the control port of the mock broker (`OMS_MOCK_CONTROL`, written by
    /// `OMS_BROKER=mock scripts/services.sh up`), which does not answer
    /// CreateTopics; does nothing on other brokers.
    pub fn create_topics_on_mock(&self) {
        use std::io::{BufRead, BufReader, Write};
        let Ok(control) = std::env::var("OMS_MOCK_CONTROL") else {
            return;
        };
        let stream = std::net::TcpStream::connect(control.trim()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        for topic in [&self.order_topic, &self.dlq_topic, &self.events_topic()] {
            writeln!(writer, "create {topic} 6").unwrap();
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            assert_eq!(answer.trim(), "ok", "mock broker: {answer}");
        }
    }
}

/// Helpers of members and sessions (`tests/auth_real.rs`): the API as a
/// buyer uses it, with the tokens it issues, at any replica's base URL.
impl Stack {
    /// Starts one more `api` process of this run (same topics, Redis prefix
    /// and database) on a port of its own, waits until it is ready, and
    /// returns it with its base URL.
    pub async fn start_replica(&self) -> (Proc, String) {
        let port = free_port();
        let envs: Vec<(String, String)> = self
            .envs
            .iter()
            .map(|(k, v)| {
                if k == "OMS_HTTP_ADDR" {
                    (k.clone(), format!("127.0.0.1:{port}"))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let replica = Proc::start("api", &envs, &format!("api-replica-{}.log", self.run));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = self.client.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    return (replica, base);
                }
            }
            assert!(Instant::now() < deadline, "the replica never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /api/v1/auth/signup` at `base`.
    pub async fn signup_at(
        &self,
        base: &str,
        email: &str,
        password: &str,
        name: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": password, "name": name}))
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/auth/login` at `base`.
    pub async fn login_at(&self, base: &str, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/auth/refresh` at `base`.
    pub async fn refresh_at(&self, base: &str, refresh_token: &str) -> reqwest::Response {
        self.client
            .post(format!("{base}/api/v1/auth/refresh"))
            .json(&json!({"refreshToken": refresh_token}))
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/auth/logout` at `base`, naming a refresh token or not.
    pub async fn logout_at(
        &self,
        base: &str,
        access_token: &str,
        refresh_token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{base}/api/v1/auth/logout"))
            .bearer_auth(access_token);
        if let Some(token) = refresh_token {
            req = req.json(&json!({"refreshToken": token}));
        }
        req.send().await.unwrap()
    }

    /// `GET /api/v1/members/me` at `base`.
    pub async fn me_at(&self, base: &str, access_token: &str) -> reqwest::Response {
        self.client
            .get(format!("{base}/api/v1/members/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/orders` at `base` with an issued access token.
    pub async fn order_as(
        &self,
        base: &str,
        access_token: &str,
        lines: &[(u64, u32)],
    ) -> reqwest::Response {
        self.client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(access_token)
            .json(&super::order_body(lines))
            .send()
            .await
            .unwrap()
    }

    /// Polls a trace with an issued access token until it is final (or
    /// panics after `within`).
    pub async fn final_trace_as(&self, access_token: &str, trace: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self
                .client
                .get(format!("{}/api/v1/orders/by-trace/{trace}", self.base))
                .bearer_auth(access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            if v["status"] != "PROCESSING" {
                return v;
            }
            assert!(Instant::now() < deadline, "trace {trace} still PROCESSING");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
