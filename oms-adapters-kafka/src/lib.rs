#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backlog;
mod consumer;
mod publisher;

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

/// Where the broker is, what the topics are called, and how the consumers
/// behave.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
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
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(unavailable)?;
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
