#![doc = include_str!("../README.md")]
//!
//! # Settings
//!
//! [`KafkaConfig::new`] holds the defaults of the API contract for a
//! bootstrap list; change what you need (see [`KafkaConfig`]):
//!
//! ```
//! use std::time::Duration;
//! use oms_adapters_kafka::KafkaConfig;
//!
//! let mut config = KafkaConfig::new("kafka-1:9092,kafka-2:9092");
//! config.group = "shop-orders".into();
//! config.max_batch = 1000;
//! assert_eq!(config.order_topic, "order-request-v1");
//! assert_eq!(config.dlq_topic, "order-request-dlq-v1");
//! assert_eq!(config.session_timeout, Duration::from_secs(10));
//! ```
//!
//! This crate has no feature flags. rdkafka builds librdkafka from source,
//! which needs a C compiler.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89, as for every oms crate.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backlog;
mod consumer;
mod publisher;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use oms_core::domain::{OmsError, OmsResult};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

pub use backlog::KafkaBacklog;
pub use consumer::{ConsumerHealth, KafkaOrderConsumer};
pub use publisher::KafkaOrderPublisher;

/// Header naming why a record is in the DLQ.
pub const HEADER_REASON: &str = "oms-failure-reason";
/// Header with the time (RFC 3339) a record failed.
pub const HEADER_FAILED_AT: &str = "oms-failed-at";
/// Header with the trace id of an order record, and of a dead letter when
/// it is known.
pub const HEADER_TRACE_ID: &str = "oms-trace-id";
/// Header with the W3C Trace Context of an order record
/// ([`TraceId::traceparent`](oms_core::domain::TraceId::traceparent)): the
/// order's trace id as the trace, so its spans join across processes.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Header with the id of an order event (decimal).
pub const HEADER_EVENT_ID: &str = "oms-event-id";
/// Header with the type of an order event: `ORDER_` and the status the
/// order went to (e.g. `ORDER_PAID`).
pub const HEADER_EVENT_TYPE: &str = "oms-event-type";

/// Where the broker is, what the topics are called, how the consumers
/// behave, and the librdkafka properties passed through to the clients.
///
/// Start from [`KafkaConfig::new`] (or [`Default`]) and chain the `with_*`
/// setters; the fields can be read and assigned too, but a struct literal
/// is refused outside this crate (`#[non_exhaustive]`), so fields may be
/// added without breaking callers.
///
/// ```
/// use std::time::Duration;
/// use oms_adapters_kafka::KafkaConfig;
///
/// let config = KafkaConfig::new("kafka-1:9093,kafka-2:9093")
///     .with_order_topic("orders")
///     .with_group("order-settlers")
///     .with_session_timeout(Duration::from_secs(15))
///     // every client: producer, consumers, admin
///     .with_property("security.protocol", "SASL_SSL")
///     .with_property("sasl.mechanism", "SCRAM-SHA-512")
///     .with_property("sasl.username", "oms")
///     .with_property("sasl.password", "…")
///     .with_property("client.id", "oms-api-1")
///     // the producer only
///     .with_producer_property("compression.type", "zstd")
///     .with_producer_property("linger.ms", "5");
/// assert_eq!(config.properties["security.protocol"], "SASL_SSL");
/// ```
///
/// # librdkafka properties
///
/// Each client is configured with oms's own settings first, then
/// [`properties`](Self::properties), then the map of its role
/// ([`producer_properties`](Self::producer_properties) for the publisher,
/// [`consumer_properties`](Self::consumer_properties) for the consumer and
/// the backlog probe; the admin client of [`ensure_topics`] takes
/// `properties` alone). A later value wins, so a property overrides oms's
/// default of the same name: `message.timeout.ms` (3 s; keep it below the
/// 4.5 s bound of a send, past which a send fails whatever librdkafka
/// does),
/// `request.timeout.ms` (2.5 s) and `linger.ms` (1 ms) of the producer;
/// `heartbeat.interval.ms` (a fifth of the session timeout),
/// `auto.commit.interval.ms` (500 ms) and `fetch.wait.max.ms` (10 ms) of the
/// consumer. Anything librdkafka knows can be set: TLS (`ssl.*`), SASL
/// (`sasl.*`), `client.id`, `compression.type`, `batch.size`,
/// `fetch.max.bytes`, `socket.keepalive.enable`, `debug`, …
///
/// A few properties cannot be set this way ([`RESERVED_PROPERTIES`]): the
/// ones with a field of their own (`bootstrap.servers`, `group.id`,
/// `session.timeout.ms`, `max.poll.interval.ms`), and the ones oms's
/// guarantees rest on: the producer's `enable.idempotence=true` and
/// `acks=all` (a record acknowledged is on every in-sync replica, once and
/// in order), no `transactional.id`; the consumer's
/// `enable.auto.offset.store=false` with `enable.auto.commit=true` (an
/// offset is stored only once the outcomes of its batch are durable, so a
/// crash redelivers and never skips), `auto.offset.reset=earliest` (a new
/// group starts from the oldest order, never past unread ones),
/// `statistics.interval.ms` (the stall watchdog reads the statistics) and
/// `enable.partition.eof` (the backlog probe needs it). Naming one is an
/// [`OmsError::Invalid`] when a client is made, as is a property librdkafka
/// does not know or a value it refuses (the error names the property).
///
/// `Debug` shows the properties' names, and the values of those whose name
/// does not suggest a secret (`password`, `secret`, `key`, `token`, `pem`,
/// `jaas`, `credentials`).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The order topic (default `order-request-v1`).
    pub order_topic: String,
    /// The dead-letter topic (default `order-request-dlq-v1`).
    pub dlq_topic: String,
    /// The order events topic (default `order-events-v1`): one record per
    /// change of an order's status, keyed by the order id.
    pub events_topic: String,
    /// Partitions of the topics [`ensure_topics`] creates (default 6).
    pub partitions: i32,
    /// Replication factor of the topics [`ensure_topics`] creates (default
    /// `-1`: the broker's `default.replication.factor`, KIP-464). Existing
    /// topics are left as they are.
    pub topic_replication: i32,
    /// Consumer group (default `oms-order-group`).
    pub group: String,
    /// Most records a consumer hands over as one batch (default 500).
    pub max_batch: usize,
    /// How long a consumer waits to fill a batch once it has a record (default 5 ms).
    pub batch_wait: Duration,
    /// Re-read records that a fetch skipped (default `false`).
    ///
    /// A workaround for brokers that answer a fetch starting inside a
    /// producer batch with the batches *after* it, so the rest of that batch
    /// is never delivered (tansu 0.6; see `docs/brokers.md`). When on, the
    /// consumer starts each newly assigned partition up to [`FETCH_REWIND`]
    /// records before its committed offset (dropping what lies below it),
    /// and when a record arrives past the next offset it expects it seeks
    /// back a bounded number of times before it accepts the gap; the backlog
    /// probe reads from before the committed offset the same way.
    ///
    /// Leave it off for Apache Kafka and other brokers that deliver a batch
    /// from the requested offset: there a gap is not loss (records removed
    /// by retention, transaction markers, compaction) and is accepted at once.
    /// Either way a gap is counted ([`ConsumerHealth::skipped_records`]) and
    /// logged with its partition and range.
    pub rewind_on_gap: bool,
    /// `session.timeout.ms` of the consumers (default 10 s): how long the
    /// group coordinator waits for the heartbeat of a member that died
    /// before it gives its partitions to another one. Heartbeats go out at
    /// a fifth of it.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` of the consumers (default 45 s): a member that
    /// does not ask for records for this long (e.g. while it retries a batch
    /// against a database that is down) leaves the group, and its
    /// partitions go to the others.
    pub max_poll_interval: Duration,
    /// How long a consumer may hold partitions with records waiting and
    /// make no progress before it reports itself stalled
    /// ([`ConsumerHealth::stalled`]) and rejoins the group (default 30 s).
    /// Time spent retrying a batch against an unavailable dependency does
    /// not count.
    pub stall_timeout: Duration,
    /// librdkafka properties of every client (producer, consumers, admin),
    /// applied over oms's own settings: see [the type's
    /// documentation](KafkaConfig#librdkafka-properties).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties of the producer (the publisher), applied after
    /// [`properties`](Self::properties).
    pub producer_properties: BTreeMap<String, String>,
    /// librdkafka properties of the consumers (the group member and the
    /// backlog probe), applied after [`properties`](Self::properties).
    pub consumer_properties: BTreeMap<String, String>,
}

/// The librdkafka properties oms sets itself and that
/// [`KafkaConfig::properties`] and its producer and consumer maps may not
/// name: those with a field of their own, and those oms's delivery
/// guarantees rest on (see [`KafkaConfig`]).
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `brokers`"),
    ("metadata.broker.list", "set `brokers`"),
    ("group.id", "set `group`"),
    ("session.timeout.ms", "set `session_timeout`"),
    ("max.poll.interval.ms", "set `max_poll_interval`"),
    (
        "enable.idempotence",
        "the producer must be idempotent: no duplicates, no reordering",
    ),
    (
        "acks",
        "a record is acknowledged once every in-sync replica has it (acks=all)",
    ),
    (
        "request.required.acks",
        "a record is acknowledged once every in-sync replica has it (acks=all)",
    ),
    (
        "transactional.id",
        "the publisher does not use transactions",
    ),
    (
        "enable.auto.offset.store",
        "an offset is stored only once its batch is durable",
    ),
    (
        "enable.auto.commit",
        "stored offsets are committed in the background",
    ),
    (
        "auto.offset.reset",
        "a new group must start from the oldest order (earliest)",
    ),
    (
        "statistics.interval.ms",
        "the stall watchdog reads the consumer's statistics",
    ),
    ("enable.partition.eof", "the backlog probe depends on it"),
];

/// Which client a [`ClientConfig`] is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Producer,
    Consumer,
    Admin,
}

/// Whether a property's value may be a secret, by its name.
fn is_secret(name: &str) -> bool {
    const HINTS: [&str; 7] = [
        "password",
        "secret",
        "key",
        "token",
        "pem",
        "jaas",
        "credentials",
    ];
    let name = name.to_ascii_lowercase();
    HINTS.iter().any(|hint| name.contains(hint))
}

/// Properties with the values of secrets hidden, for `Debug`.
struct Shown<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let v = if is_secret(k) { "***" } else { v.as_str() };
                (k, v)
            }))
            .finish()
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("order_topic", &self.order_topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("events_topic", &self.events_topic)
            .field("partitions", &self.partitions)
            .field("topic_replication", &self.topic_replication)
            .field("group", &self.group)
            .field("max_batch", &self.max_batch)
            .field("batch_wait", &self.batch_wait)
            .field("rewind_on_gap", &self.rewind_on_gap)
            .field("session_timeout", &self.session_timeout)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("stall_timeout", &self.stall_timeout)
            .field("properties", &Shown(&self.properties))
            .field("producer_properties", &Shown(&self.producer_properties))
            .field("consumer_properties", &Shown(&self.consumer_properties))
            .finish()
    }
}

impl Default for KafkaConfig {
    /// [`KafkaConfig::new`] on `localhost:9092`.
    fn default() -> Self {
        Self::new("localhost:9092")
    }
}

impl KafkaConfig {
    /// The defaults of API.md for these brokers.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            order_topic: "order-request-v1".into(),
            dlq_topic: "order-request-dlq-v1".into(),
            events_topic: "order-events-v1".into(),
            partitions: 6,
            topic_replication: -1,
            group: "oms-order-group".into(),
            max_batch: 500,
            batch_wait: Duration::from_millis(5),
            rewind_on_gap: false,
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(45),
            stall_timeout: Duration::from_secs(30),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
        }
    }

    /// Replaces [`brokers`](Self::brokers).
    pub fn with_brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = brokers.into();
        self
    }

    /// Replaces [`order_topic`](Self::order_topic).
    pub fn with_order_topic(mut self, topic: impl Into<String>) -> Self {
        self.order_topic = topic.into();
        self
    }

    /// Replaces [`dlq_topic`](Self::dlq_topic).
    pub fn with_dlq_topic(mut self, topic: impl Into<String>) -> Self {
        self.dlq_topic = topic.into();
        self
    }

    /// Replaces [`events_topic`](Self::events_topic).
    pub fn with_events_topic(mut self, topic: impl Into<String>) -> Self {
        self.events_topic = topic.into();
        self
    }

    /// Replaces [`partitions`](Self::partitions).
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Replaces [`topic_replication`](Self::topic_replication).
    pub fn with_topic_replication(mut self, replication: i32) -> Self {
        self.topic_replication = replication;
        self
    }

    /// Replaces [`group`](Self::group).
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Replaces [`max_batch`](Self::max_batch).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Replaces [`batch_wait`](Self::batch_wait).
    pub fn with_batch_wait(mut self, wait: Duration) -> Self {
        self.batch_wait = wait;
        self
    }

    /// Replaces [`rewind_on_gap`](Self::rewind_on_gap).
    pub fn with_rewind_on_gap(mut self, rewind: bool) -> Self {
        self.rewind_on_gap = rewind;
        self
    }

    /// Replaces [`session_timeout`](Self::session_timeout).
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Replaces [`max_poll_interval`](Self::max_poll_interval).
    pub fn with_max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// Replaces [`stall_timeout`](Self::stall_timeout).
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Sets a librdkafka property of every client (see
    /// [`properties`](Self::properties)).
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// Sets librdkafka properties of every client (see
    /// [`properties`](Self::properties)).
    pub fn with_properties<K, V>(mut self, properties: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.properties
            .extend(properties.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets a librdkafka property of the producer (see
    /// [`producer_properties`](Self::producer_properties)).
    pub fn with_producer_property(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.producer_properties.insert(name.into(), value.into());
        self
    }

    /// Sets a librdkafka property of the consumers (see
    /// [`consumer_properties`](Self::consumer_properties)).
    pub fn with_consumer_property(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.consumer_properties.insert(name.into(), value.into());
        self
    }

    /// Checks the passed-through properties: none of
    /// [`RESERVED_PROPERTIES`] is named. (librdkafka checks names and values
    /// when a client is made.)
    pub fn check_properties(&self) -> OmsResult<()> {
        let named = [
            ("properties", &self.properties),
            ("producer_properties", &self.producer_properties),
            ("consumer_properties", &self.consumer_properties),
        ];
        for (map, properties) in named {
            for name in properties.keys() {
                let wanted = name.trim().to_ascii_lowercase();
                if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(r, _)| *r == wanted) {
                    return Err(OmsError::Invalid(format!(
                        "kafka property `{name}` (in {map}) cannot be set: {why}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The librdkafka configuration of a `role` client: `defaults` (oms's
    /// own settings), then [`properties`](Self::properties), then the
    /// role's map.
    pub(crate) fn client_config(
        &self,
        role: Role,
        defaults: &[(&str, String)],
    ) -> OmsResult<ClientConfig> {
        self.check_properties()?;
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        for (name, value) in defaults {
            client.set(*name, value);
        }
        let own = match role {
            Role::Producer => Some(&self.producer_properties),
            Role::Consumer => Some(&self.consumer_properties),
            Role::Admin => None,
        };
        for (name, value) in self.properties.iter().chain(own.into_iter().flatten()) {
            client.set(name.trim(), value);
        }
        Ok(client)
    }
}

/// The error of a client that could not be made: a property librdkafka
/// refuses, or a configuration it cannot make a client of (a CA file that
/// is not there, properties at odds), is the caller's [`OmsError::Invalid`];
/// anything else [`OmsError::Unavailable`].
pub(crate) fn creation_failed(e: KafkaError) -> OmsError {
    match e {
        KafkaError::ClientConfig(_, description, name, _) => {
            OmsError::Invalid(format!("kafka property `{name}`: {description}"))
        }
        KafkaError::ClientCreation(why) => {
            OmsError::Invalid(format!("kafka client cannot be made: {why}"))
        }
        other => unavailable(other),
    }
}

/// How many records before a committed offset a reader starts when
/// [`KafkaConfig::rewind_on_gap`] is on (on a batch boundary in practice);
/// it drops what lies below the committed offset.
pub const FETCH_REWIND: i64 = 10_000;

/// How long one metadata or offset request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn unavailable(e: KafkaError) -> OmsError {
    OmsError::unavailable("kafka", e)
}

/// Runs a blocking librdkafka call off the async workers.
pub(crate) async fn blocking<T, F>(call: F) -> OmsResult<T>
where
    F: FnOnce() -> OmsResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| OmsError::unavailable("kafka", e))?
}

/// Makes sure the order topic (with `partitions`), and the DLQ and events
/// topics (as many partitions), exist.
///
/// It reads the cluster's metadata first and creates only the topics that
/// are missing, so a broker that does not answer `CreateTopics` (such as
/// librdkafka's mock cluster) is fine as long as the topics exist. A topic
/// that already exists is left as it is, whatever its partition count or
/// replication factor.
pub async fn ensure_topics(config: &KafkaConfig) -> OmsResult<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config(Role::Admin, &[])?
        .create()
        .map_err(creation_failed)?;
    let admin = Arc::new(admin);
    let wanted = [
        config.order_topic.clone(),
        config.dlq_topic.clone(),
        config.events_topic.clone(),
    ];
    let missing = missing_topics(&admin, &wanted).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.topic_replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let created = admin.create_topics(&topics, &options).await;
    let mut refused = Vec::new();
    match created {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => refused.push(format!("{topic}: {code}")),
                }
            }
        }
        Err(e) => refused.push(e.to_string()),
    }
    if refused.is_empty() {
        return Ok(());
    }
    // Another process may have created them meanwhile, or the broker may
    // create topics some other way: only what is still missing is an error.
    let still = missing_topics(&admin, &wanted).await?;
    if still.is_empty() {
        tracing::warn!(refused = %refused.join("; "), "the broker did not create the topics, but they exist");
        return Ok(());
    }
    Err(OmsError::unavailable(
        "kafka",
        format!(
            "topics {} are missing and could not be created ({}); create them on the broker",
            still.join(", "),
            refused.join("; ")
        ),
    ))
}

/// The topics of `wanted` that the cluster's metadata does not list (all
/// topics are asked for, so that no broker creates one on the way).
async fn missing_topics(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    wanted: &[String],
) -> OmsResult<Vec<String>> {
    let admin = admin.clone();
    let wanted = wanted.to_vec();
    blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(unavailable)?;
        Ok(wanted
            .into_iter()
            .filter(|name| {
                !metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            })
            .collect())
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_setters_build_what_the_fields_hold() {
        let config = KafkaConfig::default()
            .with_brokers("a:9092,b:9092")
            .with_order_topic("o")
            .with_dlq_topic("d")
            .with_events_topic("e")
            .with_partitions(3)
            .with_topic_replication(2)
            .with_group("g")
            .with_max_batch(7)
            .with_batch_wait(Duration::from_millis(9))
            .with_rewind_on_gap(true)
            .with_session_timeout(Duration::from_secs(11))
            .with_max_poll_interval(Duration::from_secs(60))
            .with_stall_timeout(Duration::from_secs(12))
            .with_properties([("client.id", "oms-1"), ("security.protocol", "SSL")])
            .with_producer_property("linger.ms", "5")
            .with_consumer_property("fetch.max.bytes", "1048576");
        let mut expected = KafkaConfig::new("a:9092,b:9092");
        expected.order_topic = "o".into();
        expected.dlq_topic = "d".into();
        expected.events_topic = "e".into();
        expected.partitions = 3;
        expected.topic_replication = 2;
        expected.group = "g".into();
        expected.max_batch = 7;
        expected.batch_wait = Duration::from_millis(9);
        expected.rewind_on_gap = true;
        expected.session_timeout = Duration::from_secs(11);
        expected.max_poll_interval = Duration::from_secs(60);
        expected.stall_timeout = Duration::from_secs(12);
        expected
            .properties
            .insert("client.id".into(), "oms-1".into());
        expected
            .properties
            .insert("security.protocol".into(), "SSL".into());
        expected
            .producer_properties
            .insert("linger.ms".into(), "5".into());
        expected
            .consumer_properties
            .insert("fetch.max.bytes".into(), "1048576".into());
        assert_eq!(config, expected);
        assert_eq!(KafkaConfig::default().brokers, "localhost:9092");
    }

    #[test]
    fn properties_apply_over_the_defaults_the_role_map_last() {
        let config = KafkaConfig::new("b:1")
            .with_property("linger.ms", "5")
            .with_property("client.id", "all")
            .with_producer_property("client.id", "producer")
            .with_consumer_property("client.id", "consumer");
        let defaults = [("linger.ms", "1".to_owned())];
        let producer = config.client_config(Role::Producer, &defaults).unwrap();
        assert_eq!(producer.get("bootstrap.servers"), Some("b:1"));
        assert_eq!(producer.get("linger.ms"), Some("5"));
        assert_eq!(producer.get("client.id"), Some("producer"));
        let consumer = config.client_config(Role::Consumer, &[]).unwrap();
        assert_eq!(consumer.get("client.id"), Some("consumer"));
        let admin = config.client_config(Role::Admin, &[]).unwrap();
        assert_eq!(admin.get("client.id"), Some("all"));
    }

    #[test]
    fn reserved_properties_are_refused_in_every_map_naming_them() {
        for (name, _) in RESERVED_PROPERTIES {
            for config in [
                KafkaConfig::default().with_property(*name, "x"),
                KafkaConfig::default().with_producer_property(*name, "x"),
                KafkaConfig::default().with_consumer_property(format!(" {name} "), "x"),
            ] {
                match config.check_properties() {
                    Err(OmsError::Invalid(why)) => assert!(why.contains(name), "{why}"),
                    other => panic!("{name}: {other:?}"),
                }
                assert!(config.client_config(Role::Admin, &[]).is_err());
            }
        }
        assert!(KafkaConfig::default()
            .with_property("client.id", "x")
            .check_properties()
            .is_ok());
    }

    #[test]
    fn debug_hides_the_values_of_secrets() {
        let config = KafkaConfig::default()
            .with_property("sasl.password", "hunter2")
            .with_property("ssl.key.pem", "-----BEGIN")
            .with_consumer_property("sasl.oauthbearer.client.secret", "s3cr3t")
            .with_property("sasl.username", "oms");
        let shown = format!("{config:?}");
        for secret in ["hunter2", "-----BEGIN", "s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(shown.contains("\"sasl.username\": \"oms\""), "{shown}");
    }
}
