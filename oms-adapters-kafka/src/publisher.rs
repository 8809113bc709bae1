use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{OmsResult, OrderCommand};
use oms_core::port::outbound::{encode_command, DeadLetter, HealthCheck, OrderRequestPublisher};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use crate::{unavailable, KafkaConfig, HEADER_FAILED_AT, HEADER_REASON, HEADER_TRACE_ID};

/// How long a record may wait for the broker before `send` fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(4);

/// The [`OrderRequestPublisher`] on Kafka: an idempotent, `acks=all`
/// producer whose `send` awaits the broker's acknowledgement.
#[derive(Clone)]
pub struct KafkaOrderPublisher {
    producer: FutureProducer,
    order_topic: String,
    dlq_topic: String,
}

impl std::fmt::Debug for KafkaOrderPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOrderPublisher")
            .field("order_topic", &self.order_topic)
            .field("dlq_topic", &self.dlq_topic)
            .finish_non_exhaustive()
    }
}

impl KafkaOrderPublisher {
    /// A producer for `config`.
    pub fn new(config: &KafkaConfig) -> OmsResult<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("request.timeout.ms", "3000")
            .set("linger.ms", "1")
            .create()
            .map_err(unavailable)?;
        Ok(Self {
            producer,
            order_topic: config.order_topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
        })
    }
}

#[async_trait]
impl OrderRequestPublisher for KafkaOrderPublisher {
    async fn send(&self, command: &OrderCommand) -> OmsResult<()> {
        let payload = encode_command(command)?;
        let key = command
            .partition_key()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let record = FutureRecord::to(&self.order_topic)
            .key(&key)
            .payload(&payload);
        self.producer
            .send(record, Timeout::After(DELIVERY_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|(e, _)| unavailable(e))
    }

    async fn send_to_dlq(&self, letter: &DeadLetter) -> OmsResult<()> {
        let failed_at = letter.failed_at.to_rfc3339();
        let trace_id = letter.trace_id.map(|t| t.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_REASON,
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: HEADER_FAILED_AT,
                value: Some(failed_at.as_str()),
            });
        if let Some(trace_id) = &trace_id {
            headers = headers.insert(Header {
                key: HEADER_TRACE_ID,
                value: Some(trace_id.as_str()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic)
            .payload(letter.payload.as_slice())
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        self.producer
            .send(record, Timeout::After(DELIVERY_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|(e, _)| unavailable(e))
    }
}

#[async_trait]
impl HealthCheck for KafkaOrderPublisher {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn check(&self) -> OmsResult<()> {
        let producer = self.producer.clone();
        let topic = self.order_topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
        .map_err(|e| oms_core::domain::OmsError::unavailable("kafka", e))?
    }
}
