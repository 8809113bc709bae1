use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult, OrderCommand};
use oms_core::port::outbound::{encode_command, DeadLetter, HealthCheck, OrderRequestPublisher};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use crate::{unavailable, KafkaConfig, HEADER_FAILED_AT, HEADER_REASON, HEADER_TRACE_ID};

/// How long librdkafka may try to deliver a record (`message.timeout.ms`).
const DELIVERY_TIMEOUT: Duration = Duration::from_millis(3000);
/// The hard bound on `send`: librdkafka checks message timeouts about once a
/// second and lets an in-flight request run to `request.timeout.ms`, so the
/// adapter bounds the wait itself. A record that was in flight when the bound
/// hit may still be delivered; its trace then ends COMPLETED or FAILED like any
/// other, never PROCESSING.
const SEND_BOUND: Duration = Duration::from_millis(4500);

/// The [`OrderRequestPublisher`] on Kafka: an idempotent, `acks=all`
/// producer whose `send` awaits the broker's acknowledgement.
///
/// An idempotent producer can hit a fatal error (e.g. fenced by the broker
/// after its records timed out during an outage); the publisher then
/// replaces it with a fresh one, so service resumes without a restart.
#[derive(Clone)]
pub struct KafkaOrderPublisher {
    producer: Arc<RwLock<FutureProducer>>,
    config: ClientConfig,
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
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("request.timeout.ms", "2500")
            .set("linger.ms", "1");
        let producer: FutureProducer = client.create().map_err(unavailable)?;
        Ok(Self {
            producer: Arc::new(RwLock::new(producer)),
            config: client,
            order_topic: config.order_topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
        })
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a failed send: replaces the producer if it is in a fatal state
    /// or the broker no longer accepts its producer id.
    fn renew_if_fatal(&self, used: &FutureProducer, error: Option<&KafkaError>) {
        let identity_lost = matches!(
            error.and_then(KafkaError::rdkafka_error_code),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::InvalidProducerIdMapping
            )
        );
        let fatal = used.client().fatal_error();
        if fatal.is_none() && !identity_lost {
            return;
        }
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if !std::ptr::eq(current.client().native_ptr(), used.client().native_ptr()) {
            return; // another send renewed it already
        }
        let (code, reason) = fatal.unwrap_or((RDKafkaErrorCode::ProducerFenced, String::new()));
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(?code, %reason, "kafka producer hit a fatal error; replaced it");
                *current = fresh;
            }
            Err(e) => tracing::error!(error = %e, "kafka producer could not be replaced"),
        }
    }

    async fn deliver(&self, record: FutureRecord<'_, [u8], [u8]>) -> OmsResult<()> {
        let producer = self.producer();
        let delivery = producer.send(record, Timeout::After(DELIVERY_TIMEOUT));
        match tokio::time::timeout(SEND_BOUND, delivery).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => {
                self.renew_if_fatal(&producer, Some(&e));
                Err(unavailable(e))
            }
            Err(_) => {
                self.renew_if_fatal(&producer, None);
                Err(OmsError::unavailable(
                    "kafka",
                    format!("no acknowledgement within {SEND_BOUND:?}"),
                ))
            }
        }
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
        let record = FutureRecord::<[u8], [u8]>::to(&self.order_topic)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        self.deliver(record).await
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
        self.deliver(record).await
    }
}

#[async_trait]
impl HealthCheck for KafkaOrderPublisher {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn check(&self) -> OmsResult<()> {
        let producer = self.producer();
        let topic = self.order_topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
        .map_err(|e| OmsError::unavailable("kafka", e))?
    }
}
