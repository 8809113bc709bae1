//! The dead-letter topic, for an operator: lists its records by reason and
//! time, shows one in full, and replays chosen ones to the order topic.
//!
//! ```text
//! source target/services.env
//! cargo run --example dlq -- list --reason OUT_OF_STOCK --since 2026-01-01T00:00:00Z
//! cargo run --example dlq -- show 0190f3c2-…          # a trace id, or 3:17 (partition:offset)
//! cargo run --example dlq -- replay --reason POISON --dry-run
//! cargo run --example dlq -- replay --reason OUT_OF_STOCK --as-new --yes
//! ```
//!
//! Settings come from the environment, read as `api` and `consumer` read it
//! ([`Settings::from_env`]): `OMS_KAFKA_BROKERS` (required), `OMS_ORDER_TOPIC`
//! and `OMS_DLQ_TOPIC`. The tool reads the DLQ from the beginning of each
//! partition to its end, without a consumer group (partitions are assigned,
//! nothing is committed), and gives up after `--timeout` seconds. A
//! partition counts as read when the broker reports its end (brokers such as
//! tansu under-report the log end; see docs/brokers.md). Exit codes: 0 done,
//! 1 failed (broker, topic, nothing found), 2 bad arguments or settings.
//!
//! # What a DLQ record holds
//!
//! Every record carries the headers `oms-failure-reason`, `oms-failed-at`
//! and (when the trace is known) `oms-trace-id`. Its key and value are one
//! of three things, told apart by decoding the value:
//!
//! - **an order request**: the order topic's record as the producer wrote
//!   it (same key, the smallest product id; same JSON). Orders the consumer
//!   failed, and orders the stock gate refused at intake. Replayable.
//! - **a trace** (`{"traceId", "memberId", "status": "FAILED", "reason"}`):
//!   `LOST` and `NOT_ACCEPTED` failures, and any failure whose record the
//!   sweeper relayed from the database's outbox. The order request itself is
//!   not in the database, so nothing can be replayed from these.
//! - **undecodable bytes** (`POISON`), kept byte for byte. Replayable when
//!   this build decodes them (a record from a newer producer, say); then
//!   they count as an order request.
//!
//! # What a replay does
//!
//! `replay` sends the chosen order requests to the order topic with the
//! library's own publisher, so each record is keyed and encoded exactly as
//! intake writes it. The DLQ is at least once, so a trace may have several
//! records: each trace is sent once per run. The consumer processes a
//! replayed record like any other delivery, and it is idempotent by trace
//! id: the outcome of a trace is recorded in the same transaction as its
//! stock decrement, and a delivery of a trace that has an outcome returns
//! that outcome and changes nothing. Hence:
//!
//! - **A replay never places an order twice**, however often it runs.
//! - **A replay as it is (same trace id) re-places nothing that failed with
//!   an outcome.** Every DLQ reason but `POISON` is recorded as a FAILED
//!   outcome before its DLQ record is sent, so the consumer answers such a
//!   replay with the FAILED outcome it has: no order, no stock taken, no new
//!   DLQ record (unless the first one was never confirmed, which the DLQ's
//!   at-least-once promise allows), and the trace stays FAILED — even after
//!   a restock. What a replay as it is helps with is a record whose trace
//!   has no outcome: a `POISON` record that this build decodes (its trace
//!   was never placed) is placed now, if the sweeper has not yet failed its
//!   trace `LOST` (after `OMS_SWEEP_AFTER_SECS`, default 300 s).
//! - **`--as-new` places a failed order again, as a new order request.**
//!   Each record is sent under a new trace id derived from the original one
//!   (a UUIDv7 with the original request's time, its random bits hashed from
//!   the original trace id): the same record always gets the same new id,
//!   so replaying it again, or replaying a duplicate DLQ record of it, is
//!   still placed at most once. The original trace stays FAILED (that is
//!   what the client was told); the new trace belongs to the same member,
//!   who can read it at `GET /api/v1/orders/by-trace/{id}` and sees the
//!   order among their orders. The request keeps its items, receiver and
//!   `requestedAt` (sale windows are judged at the time the member
//!   ordered), and drops its `Idempotency-Key` (bound to the original trace
//!   for good; the derived trace id guards against doubles instead). It is
//!   checked as any order is: stock, purchase limits, sale window. It
//!   skips `DUPLICATE` records (their request stands under the trace its
//!   key is bound to: a new order would be a second one) and `POISON`
//!   records (no outcome is recorded for their trace: replay them as they
//!   are). A replayed order did not pass the stock gate at intake, so the
//!   gate counts too many units until the consumers reconcile it (harmless:
//!   the database refuses what it does not have), and its placement ends
//!   the member's waiting-room admission like any order.
//!
//! `--dry-run` prints what would be sent and sends nothing. Without
//! `--yes` the tool asks on a terminal, and refuses (exit 2) elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use oms::config::Settings;
use oms::core::domain::{FailureReason, OmsError, OrderCommand, OrderTrace, TraceId};
use oms::core::port::outbound::{decode_command, OrderRequestPublisher};
use oms::kafka::{
    KafkaConfig, KafkaOrderPublisher, HEADER_FAILED_AT, HEADER_REASON, HEADER_TRACE_ID,
};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

/// Lists, shows and replays the records of the dead-letter topic
/// (`OMS_DLQ_TOPIC`); replays go to `OMS_ORDER_TOPIC`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Gives up reading the DLQ to its end after this many seconds.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One line per record (partition/offset, time, reason, trace id,
    /// member, items), oldest first, and the counts by reason.
    List(ListArgs),
    /// One record in full: headers, key and value (JSON pretty-printed).
    /// A trace id shows every record of that trace.
    Show {
        /// A trace id, or `partition:offset`.
        record: Target,
    },
    /// Sends the chosen records' order requests to the order topic (see
    /// the tool's docs: what the consumer does with them, and `--as-new`).
    Replay(ReplayArgs),
}

/// Which records: every filter given must hold.
#[derive(Debug, Args)]
struct Filter {
    /// Only records with this reason (e.g. OUT_OF_STOCK); repeat for several.
    #[arg(long, value_parser = parse_reason)]
    reason: Vec<FailureReason>,
    /// Only records that failed at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only records that failed before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    filter: Filter,
    /// Prints at most this many records (the counts are of all that match).
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON document: the records and the counts by reason.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    filter: Filter,
    /// Only these traces (one or more ids; repeatable).
    #[arg(long = "trace", num_args = 1.., value_parser = parse_trace)]
    traces: Vec<TraceId>,
    /// Prints what would be sent; sends nothing.
    #[arg(long)]
    dry_run: bool,
    /// Sends without asking.
    #[arg(long)]
    yes: bool,
    /// Sends each order request under a new trace id derived from the
    /// original one, so that a FAILED order can be placed again (once).
    #[arg(long)]
    as_new: bool,
    /// One JSON document: what was (or would be) sent, and what was skipped.
    #[arg(long)]
    json: bool,
}

/// What `show` looks for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Trace(TraceId),
    Position { partition: i32, offset: i64 },
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((partition, offset)) = s.split_once(':') {
            let partition = partition
                .parse()
                .map_err(|_| format!("`{partition}` is not a partition number"))?;
            let offset = offset
                .parse()
                .map_err(|_| format!("`{offset}` is not an offset"))?;
            return Ok(Self::Position { partition, offset });
        }
        parse_trace(s)
            .map(Self::Trace)
            .map_err(|_| format!("`{s}` is neither a trace id nor partition:offset"))
    }
}

fn parse_reason(s: &str) -> Result<FailureReason, String> {
    FailureReason::parse(&s.to_ascii_uppercase()).map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-01-31T09:00:00Z"))
}

fn parse_trace(s: &str) -> Result<TraceId, String> {
    s.parse().map_err(|e: OmsError| e.to_string())
}

/// Why the tool stops: bad arguments or settings (exit 2), or a failure
/// (exit 1).
#[derive(Debug)]
enum Failure {
    Usage(String),
    Failed(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

impl From<OmsError> for Failure {
    fn from(e: OmsError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        Self::Failed(format!("kafka: {e}"))
    }
}

/// What a DLQ record's value is.
#[derive(Debug, Clone)]
enum Content {
    /// The order topic's record: replayable.
    Order(OrderCommand),
    /// A FAILED trace, without its order.
    Trace(OrderTrace),
    /// Bytes this build cannot decode.
    Raw,
}

impl Content {
    fn of(payload: &[u8]) -> Self {
        if let Ok(command) = decode_command(payload) {
            return Self::Order(command);
        }
        match serde_json::from_slice::<OrderTrace>(payload) {
            Ok(trace) => Self::Trace(trace),
            Err(_) => Self::Raw,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Order(_) => "order",
            Self::Trace(_) => "trace",
            Self::Raw => "raw",
        }
    }
}

/// One DLQ record.
#[derive(Debug, Clone)]
struct Letter {
    partition: i32,
    offset: i64,
    /// The record's own timestamp.
    timestamp: Option<DateTime<Utc>>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    payload: Vec<u8>,
    /// The `oms-failure-reason` header as written (`?` when missing).
    reason: String,
    failed_at: Option<DateTime<Utc>>,
    /// The `oms-trace-id` header, else the trace id of the value.
    trace_id: Option<TraceId>,
    content: Content,
}

impl Letter {
    fn of(m: &BorrowedMessage<'_>) -> Self {
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let payload = m.payload().unwrap_or_default().to_vec();
        let content = Content::of(&payload);
        let trace_id = header(HEADER_TRACE_ID)
            .and_then(|t| t.parse().ok())
            .or(match &content {
                Content::Order(c) => Some(c.trace_id),
                Content::Trace(t) => Some(t.trace_id),
                Content::Raw => None,
            });
        Self {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m
                .timestamp()
                .to_millis()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            key: m.key().map(<[u8]>::to_vec),
            reason: header(HEADER_REASON).unwrap_or_else(|| "?".into()),
            failed_at: header(HEADER_FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            trace_id,
            headers,
            payload,
            content,
        }
    }

    /// When it failed: the header, else the record's timestamp.
    fn time(&self) -> Option<DateTime<Utc>> {
        self.failed_at.or(self.timestamp)
    }

    fn position(&self) -> String {
        format!("{}/{}", self.partition, self.offset)
    }

    fn member(&self) -> Option<u64> {
        match &self.content {
            Content::Order(c) => Some(c.member_id.0),
            Content::Trace(t) => Some(t.member_id.0),
            Content::Raw => None,
        }
    }

    fn items(&self) -> String {
        match &self.content {
            Content::Order(c) => c
                .items
                .iter()
                .map(|l| format!("{}x{}", l.product_id, l.quantity))
                .collect::<Vec<_>>()
                .join(","),
            _ => "-".into(),
        }
    }

    fn to_json(&self) -> Value {
        let items: Vec<Value> = match &self.content {
            Content::Order(c) => c
                .items
                .iter()
                .map(|l| json!({"productId": l.product_id.0, "quantity": l.quantity}))
                .collect(),
            _ => Vec::new(),
        };
        json!({
            "partition": self.partition,
            "offset": self.offset,
            "time": self.time().map(|t| t.to_rfc3339()),
            "reason": self.reason,
            "traceId": self.trace_id.map(|t| t.to_string()),
            "memberId": self.member(),
            "items": items,
            "key": self.key.as_deref().map(String::from_utf8_lossy),
            "payload": self.content.kind(),
        })
    }
}

impl Filter {
    fn admits(&self, letter: &Letter) -> bool {
        let reason =
            self.reason.is_empty() || self.reason.iter().any(|r| r.as_str() == letter.reason);
        let time = letter.time();
        let since = self.since.is_none_or(|s| time.is_some_and(|t| t >= s));
        let until = self.until.is_none_or(|u| time.is_some_and(|t| t < u));
        reason && since && until
    }
}

/// The context of the reader: the end of a partition is how it knows it
/// is done, not an error to log.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !end {
            tracing::warn!("kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

type Reader = BaseConsumer<ReaderContext>;

/// A consumer that reads without a group: partitions are assigned and
/// nothing is committed. It takes the consumers' librdkafka properties
/// (TLS, SASL, …; `OMS_KAFKA_PROPERTIES`, `OMS_KAFKA_CONSUMER_PROPERTIES`).
fn reader(config: &KafkaConfig) -> Result<Reader, Failure> {
    let mut client = ClientConfig::new();
    for (name, value) in config.properties.iter().chain(&config.consumer_properties) {
        client.set(name, value);
    }
    Ok(client
        .set("bootstrap.servers", &config.brokers)
        .set(
            "group.id",
            format!("oms-dlq-tool-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(ReaderContext)?)
}

/// The partitions of `topic`, from the metadata of all topics (asking for
/// one by name makes some brokers create it).
fn partitions(consumer: &Reader, topic: &str, within: Duration) -> Result<Vec<i32>, Failure> {
    let metadata = consumer.fetch_metadata(None, within)?;
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Failure::Failed(format!("topic `{topic}` does not exist")))
}

/// Every record of the DLQ, from the start of each partition to its end,
/// oldest first (by the time it failed).
fn read_dlq(config: &KafkaConfig, within: Duration) -> Result<Vec<Letter>, Failure> {
    let deadline = Instant::now() + within;
    let topic = config.dlq_topic.as_str();
    let consumer = reader(config)?;
    let mut assignment = TopicPartitionList::new();
    // The end of each partition at the start, as ListOffsets reports it.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in partitions(&consumer, topic, within)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, within)?;
        if high > low {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut done: BTreeSet<i32> = BTreeSet::new();
    let mut letters = Vec::new();
    let mut last_error = None;
    while done.len() < ends.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let open: Vec<String> = ends
                .keys()
                .filter(|p| !done.contains(p))
                .map(i32::to_string)
                .collect();
            return Err(Failure::Failed(format!(
                "read {} records, but partitions {} of `{topic}` were not read to their end within {} s{}",
                letters.len(),
                open.join(", "),
                within.as_secs(),
                last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
            )));
        }
        match consumer.poll(left.min(Duration::from_millis(200))) {
            None => {}
            Some(Ok(m)) => {
                let expected = next.get(&m.partition()).copied();
                if let Some(expected) = expected.filter(|e| m.offset() > *e) {
                    eprintln!(
                        "warning: partition {}: offsets {expected} to {} were not delivered (removed, control records, or skipped by the broker)",
                        m.partition(),
                        m.offset() - 1
                    );
                }
                next.insert(m.partition(), m.offset() + 1);
                letters.push(Letter::of(&m));
            }
            // The broker's end of the partition (from a fetch, which brokers
            // report right even where ListOffsets under-reports it); the
            // position is past any control records there.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let read = next.get(&partition).copied().unwrap_or(0);
                let position = consumer.position()?;
                let at = match position
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(at)) => at.max(read),
                    _ => read,
                };
                if ends.get(&partition).is_some_and(|end| at >= *end) {
                    done.insert(partition);
                }
            }
            Some(Err(e)) => last_error = Some(e),
        }
    }
    letters.sort_by_key(|l| (l.time(), l.partition, l.offset));
    Ok(letters)
}

/// Reads the DLQ off the async workers.
async fn letters(config: &KafkaConfig, within: Duration) -> Result<Vec<Letter>, Failure> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || read_dlq(&config, within))
        .await
        .map_err(|e| Failure::Failed(format!("the reader stopped: {e}")))?
}

/// Records and distinct traces by reason.
fn counts(letters: &[&Letter]) -> BTreeMap<String, (usize, usize)> {
    let mut traces: BTreeMap<String, BTreeSet<Option<TraceId>>> = BTreeMap::new();
    let mut records: BTreeMap<String, usize> = BTreeMap::new();
    for l in letters {
        *records.entry(l.reason.clone()).or_default() += 1;
        traces
            .entry(l.reason.clone())
            .or_default()
            .insert(l.trace_id);
    }
    records
        .into_iter()
        .map(|(reason, n)| {
            let distinct = traces.get(&reason).map_or(0, BTreeSet::len);
            (reason, (n, distinct))
        })
        .collect()
}

fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn id_text(t: Option<TraceId>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_string())
}

async fn list(config: &KafkaConfig, within: Duration, args: &ListArgs) -> Result<(), Failure> {
    let all = letters(config, within).await?;
    let chosen: Vec<&Letter> = all.iter().filter(|l| args.filter.admits(l)).collect();
    let shown = &chosen[..args.limit.unwrap_or(chosen.len()).min(chosen.len())];
    let by_reason = counts(&chosen);
    if args.json {
        let reasons: serde_json::Map<String, Value> = by_reason
            .iter()
            .map(|(r, (n, t))| (r.clone(), json!({"records": n, "traces": t})))
            .collect();
        let doc = json!({
            "topic": config.dlq_topic,
            "total": chosen.len(),
            "byReason": reasons,
            "records": shown.iter().map(|l| l.to_json()).collect::<Vec<_>>(),
        });
        println!("{doc}");
        return Ok(());
    }
    for l in shown {
        println!(
            "{:<9} {:<24} {:<17} {:<36} member {:<12} items {} [{}]",
            l.position(),
            time_text(l.time()),
            l.reason,
            id_text(l.trace_id),
            l.member().map_or_else(|| "-".into(), |m| m.to_string()),
            l.items(),
            l.content.kind()
        );
    }
    if shown.len() < chosen.len() {
        println!("(first {} of {})", shown.len(), chosen.len());
    }
    println!("{} records on {}", chosen.len(), config.dlq_topic);
    for (reason, (n, traces)) in &by_reason {
        println!("  {reason:<17} {n:>8} records {traces:>8} traces");
    }
    Ok(())
}

/// Bytes as text when they are UTF-8, else as hex.
fn bytes_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn print_letter(l: &Letter, topic: &str) {
    println!("record     {} of {topic}", l.position());
    println!("failed at  {}", time_text(l.failed_at));
    println!("timestamp  {}", time_text(l.timestamp));
    println!("reason     {}", l.reason);
    println!("trace id   {}", id_text(l.trace_id));
    println!(
        "key        {}",
        l.key.as_deref().map_or_else(|| "(none)".into(), bytes_text)
    );
    println!("headers");
    for (k, v) in &l.headers {
        println!(
            "  {k}: {}",
            v.as_deref().map_or_else(|| "(null)".into(), bytes_text)
        );
    }
    let what = match &l.content {
        Content::Order(_) => "an order request (replayable)",
        Content::Trace(_) => "a trace: the order request is not in the record (not replayable)",
        Content::Raw => "bytes this build cannot decode (not replayable)",
    };
    println!("value      {what}, {} bytes", l.payload.len());
    match serde_json::from_slice::<Value>(&l.payload) {
        Ok(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
        ),
        Err(_) => println!("{}", bytes_text(&l.payload)),
    }
}

async fn show(config: &KafkaConfig, within: Duration, target: Target) -> Result<(), Failure> {
    let all = letters(config, within).await?;
    let found: Vec<&Letter> = all
        .iter()
        .filter(|l| match target {
            Target::Trace(t) => l.trace_id == Some(t),
            Target::Position { partition, offset } => {
                l.partition == partition && l.offset == offset
            }
        })
        .collect();
    if found.is_empty() {
        return Err(Failure::Failed(match target {
            Target::Trace(t) => format!("no record of trace {t} on {}", config.dlq_topic),
            Target::Position { partition, offset } => {
                format!("no record at {partition}:{offset} on {}", config.dlq_topic)
            }
        }));
    }
    for (i, l) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_letter(l, &config.dlq_topic);
    }
    if found.len() > 1 {
        println!(
            "\n{} records of this trace (the DLQ is at least once)",
            found.len()
        );
    }
    Ok(())
}

/// SplitMix64's finalizer: a bijection of `u64` in which every input bit
/// moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The trace id a record is replayed under with `--as-new`: a UUIDv7 with
/// the millisecond of `requested_at` and 74 random bits mixed from every
/// bit of the original trace id. The same original always gives the same
/// id, so a replay as new is placed at most once; the function must stay
/// as it is, or replays by two builds of the tool could both place.
fn replay_trace_id(original: TraceId, requested_at: DateTime<Utc>) -> TraceId {
    const SALT: u64 = 0x6f6d_735f_646c_715f; // "oms_dlq_"
    let (hi, lo) = original.0.as_u64_pair();
    let first = mix(lo ^ mix(hi ^ SALT));
    let second = mix(hi ^ mix(lo ^ !SALT));
    let [a, b, c, d, e, f, g, h] = first.to_be_bytes();
    let [i, j, ..] = second.to_be_bytes();
    let millis = u64::try_from(requested_at.timestamp_millis()).unwrap_or(0);
    TraceId(
        uuid::Builder::from_unix_timestamp_millis(millis, &[a, b, c, d, e, f, g, h, i, j])
            .into_uuid(),
    )
}

/// One record chosen for a replay: sent as `command`, or skipped.
struct Planned<'a> {
    letter: &'a Letter,
    send: Result<OrderCommand, &'static str>,
}

impl Planned<'_> {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "partition": self.letter.partition,
            "offset": self.letter.offset,
            "reason": self.letter.reason,
            "traceId": id_text(self.letter.trace_id),
        });
        match &self.send {
            Ok(c) => v["sentTraceId"] = json!(c.trace_id.to_string()),
            Err(why) => v["skipped"] = json!(why),
        }
        v
    }
}

/// One record per trace (one that holds the order request, if any), in
/// the order of the DLQ, and what to send for each.
fn plan<'a>(chosen: &[&'a Letter], as_new: bool) -> Vec<Planned<'a>> {
    let mut by_trace: HashMap<TraceId, usize> = HashMap::new();
    let mut picked: Vec<&'a Letter> = Vec::new();
    for l in chosen {
        let Some(trace) = l.trace_id else {
            picked.push(l);
            continue;
        };
        match by_trace.get(&trace) {
            None => {
                by_trace.insert(trace, picked.len());
                picked.push(l);
            }
            Some(&at) => {
                let holds_order = |l: &Letter| matches!(l.content, Content::Order(_));
                if picked.get(at).is_some_and(|p| !holds_order(p)) && holds_order(l) {
                    if let Some(slot) = picked.get_mut(at) {
                        *slot = l;
                    }
                }
            }
        }
    }
    picked
        .into_iter()
        .map(|letter| {
            let send = match &letter.content {
                Content::Trace(_) => Err("the record holds the trace, not the order request"),
                Content::Raw => Err("the record is not an order request this build decodes"),
                Content::Order(_)
                    if as_new && letter.reason == FailureReason::Duplicate.as_str() =>
                {
                    Err("DUPLICATE: the request stands under the trace its key is bound to")
                }
                Content::Order(_) if as_new && letter.reason == FailureReason::Poison.as_str() => {
                    Err("POISON: its trace has no outcome; replay it without --as-new")
                }
                Content::Order(c) if as_new => Ok(OrderCommand {
                    trace_id: replay_trace_id(c.trace_id, c.requested_at),
                    idempotency_key: None,
                    ..c.clone()
                }),
                Content::Order(c) => Ok(c.clone()),
            };
            Planned { letter, send }
        })
        .collect()
}

/// Asks on a terminal; refuses elsewhere.
fn confirm(count: usize, topic: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "replay sends records: pass --yes to send them, or --dry-run to see them".into(),
        ));
    }
    eprint!("send {count} records to {topic}? [y/N] ");
    std::io::stderr()
        .flush()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "replaying [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

async fn replay(config: &KafkaConfig, within: Duration, args: &ReplayArgs) -> Result<(), Failure> {
    let all = letters(config, within).await?;
    let chosen: Vec<&Letter> = all
        .iter()
        .filter(|l| args.filter.admits(l))
        .filter(|l| args.traces.is_empty() || l.trace_id.is_some_and(|t| args.traces.contains(&t)))
        .collect();
    let planned = plan(&chosen, args.as_new);
    let sends: Vec<&OrderCommand> = planned
        .iter()
        .filter_map(|p| p.send.as_ref().ok())
        .collect();
    let report = |sent: usize| {
        if args.json {
            let doc = json!({
                "topic": config.order_topic,
                "dryRun": args.dry_run,
                "asNew": args.as_new,
                "selected": chosen.len(),
                "sent": sent,
                "records": planned.iter().map(Planned::to_json).collect::<Vec<_>>(),
            });
            println!("{doc}");
            return;
        }
        for p in &planned {
            match &p.send {
                Ok(c) if args.as_new => println!(
                    "{:<9} {:<17} {} as {}",
                    p.letter.position(),
                    p.letter.reason,
                    id_text(p.letter.trace_id),
                    c.trace_id
                ),
                Ok(c) => println!(
                    "{:<9} {:<17} {}",
                    p.letter.position(),
                    p.letter.reason,
                    c.trace_id
                ),
                Err(why) => println!(
                    "{:<9} {:<17} {} skipped: {why}",
                    p.letter.position(),
                    p.letter.reason,
                    id_text(p.letter.trace_id)
                ),
            }
        }
        let verb = if args.dry_run {
            "would be sent"
        } else {
            "sent"
        };
        println!(
            "{} of {} records {verb} to {} ({} traces, {} skipped){}",
            if args.dry_run { sends.len() } else { sent },
            chosen.len(),
            config.order_topic,
            planned.len(),
            planned.len() - sends.len(),
            if args.dry_run {
                "; dry run: nothing sent"
            } else {
                ""
            }
        );
    };
    let with_outcome = planned
        .iter()
        .filter(|p| p.send.is_ok() && p.letter.reason != FailureReason::Poison.as_str())
        .count();
    if !args.as_new && with_outcome > 0 {
        eprintln!(
            "note: {with_outcome} of these traces failed with an outcome the database keeps: the consumer answers each with it and places nothing; --as-new places them again as new orders"
        );
    }
    if args.dry_run || sends.is_empty() {
        report(0);
        return Ok(());
    }
    if !args.yes && !confirm(sends.len(), &config.order_topic)? {
        return Err(Failure::Failed("nothing sent".into()));
    }
    let order_topic = config.order_topic.clone();
    let probe = config.clone();
    tokio::task::spawn_blocking(move || partitions(&reader(&probe)?, &order_topic, within))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))??;
    let publisher = KafkaOrderPublisher::new(config)?;
    let bar = progress(sends.len() as u64);
    for (sent, command) in sends.iter().enumerate() {
        if let Err(e) = publisher.send(command).await {
            bar.abandon();
            report(sent);
            return Err(Failure::Failed(format!(
                "sent {sent} of {}, then: {e} (a replay can run again: the consumer places each trace once)",
                sends.len()
            )));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    report(sends.len());
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = Settings::from_env().map_err(|e| Failure::Usage(e.to_string()))?;
    let config = settings.kafka_config().ok_or_else(|| {
        Failure::Usage(
            "OMS_KAFKA_BROKERS is not set (run `scripts/services.sh up` and `source target/services.env`)"
                .into(),
        )
    })?;
    let within = Duration::from_secs(cli.timeout.max(1));
    match &cli.command {
        Command::List(args) => list(&config, within, args).await,
        Command::Show { record } => show(&config, within, *record).await,
        Command::Replay(args) => replay(&config, within, args).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Failure::Usage(_)) => {
            eprintln!("dlq: {e}");
            ExitCode::from(2)
        }
        Err(e @ Failure::Failed(_)) => {
            eprintln!("dlq: {e}");
            ExitCode::FAILURE
        }
    }
}
