#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backlog;
mod consumer;
mod publisher;

use std::time::Duration;

use oms_core::domain::{OmsError, OmsResult};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

pub use backlog::KafkaBacklog;
pub use consumer::KafkaOrderConsumer;
pub use publisher::KafkaOrderPublisher;

/// Header naming why a record is in the DLQ.
pub const HEADER_REASON: &str = "oms-failure-reason";
/// Header with the time (RFC 3339) a record failed.
pub const HEADER_FAILED_AT: &str = "oms-failed-at";
/// Header with the trace id of a dead letter, when it is known.
pub const HEADER_TRACE_ID: &str = "oms-trace-id";

/// Where the broker is and what the topics are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The order topic (default `order-request-v1`).
    pub order_topic: String,
    /// The dead-letter topic (default `order-request-dlq-v1`).
    pub dlq_topic: String,
    /// Partitions of the order topic when it is created (default 6).
    pub partitions: i32,
    /// Consumer group (default `oms-order-group`).
    pub group: String,
    /// Most records a consumer hands over as one batch (default 500).
    pub max_batch: usize,
    /// How long a consumer waits to fill a batch once it has a record (default 5 ms).
    pub batch_wait: Duration,
}

impl KafkaConfig {
    /// The defaults of API.md for these brokers.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            order_topic: "order-request-v1".into(),
            dlq_topic: "order-request-dlq-v1".into(),
            partitions: 6,
            group: "oms-order-group".into(),
            max_batch: 500,
            batch_wait: Duration::from_millis(5),
        }
    }
}

/// How many records before a committed offset a reader starts. tansu 0.6
/// skips the rest of a producer batch when a fetch starts inside it, so the
/// consumer and the backlog probe start this far back (on a batch boundary in
/// practice) and drop what lies below the committed offset.
pub(crate) const FETCH_REWIND: i64 = 10_000;

pub(crate) fn unavailable(e: KafkaError) -> OmsError {
    OmsError::unavailable("kafka", e)
}

/// Creates the order topic (with `partitions`) and the DLQ topic (one
/// partition per order partition) when they do not exist.
pub async fn ensure_topics(config: &KafkaConfig) -> OmsResult<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(unavailable)?;
    let topics = [
        NewTopic::new(
            &config.order_topic,
            config.partitions,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(
            &config.dlq_topic,
            config.partitions,
            TopicReplication::Fixed(1),
        ),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(unavailable)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(OmsError::unavailable(
                    "kafka",
                    format!("cannot create topic {topic}: {code}"),
                ))
            }
        }
    }
    Ok(())
}
