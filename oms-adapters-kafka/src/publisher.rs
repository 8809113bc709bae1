use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult, OrderCommand, OrderEvent};
use oms_core::port::outbound::{
    encode_command, DeadLetter, HealthCheck, OrderEventPublisher, OrderRequestPublisher,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::{
    creation_failed, unavailable, KafkaConfig, Role, HEADER_EVENT_ID, HEADER_EVENT_TYPE,
    HEADER_FAILED_AT, HEADER_REASON, HEADER_TRACEPARENT, HEADER_TRACE_ID,
};

/// How long librdkafka may try to deliver a record (`message.timeout.ms`).
const DELIVERY_TIMEOUT: Duration = Duration::from_millis(3000);
/// The hard bound on a send (one record, or a `publish` of many together):
/// librdkafka checks message timeouts about once a second and lets an
/// in-flight request run to `request.timeout.ms`, so the adapter bounds the
/// wait itself. A record that was in flight when the bound hit may still be
/// delivered; its trace then ends COMPLETED or FAILED like any other, never
/// PROCESSING (and an event is published again with the same id).
const SEND_BOUND: Duration = Duration::from_millis(4500);
/// How long to wait before queueing again when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(100);

/// The [`OrderRequestPublisher`] and the [`OrderEventPublisher`] on Kafka:
/// an idempotent, `acks=all` producer whose `send` and `publish` await the
/// broker's acknowledgement.
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
    events_topic: String,
}

impl std::fmt::Debug for KafkaOrderPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOrderPublisher")
            .field("order_topic", &self.order_topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("events_topic", &self.events_topic)
            .finish_non_exhaustive()
    }
}

impl KafkaOrderPublisher {
    /// A producer for `config`.
    pub fn new(config: &KafkaConfig) -> OmsResult<Self> {
        let client = config.client_config(
            Role::Producer,
            &[
                ("acks", "all".into()),
                ("enable.idempotence", "true".into()),
                (
                    "message.timeout.ms",
                    DELIVERY_TIMEOUT.as_millis().to_string(),
                ),
                ("request.timeout.ms", "2500".into()),
                ("linger.ms", "1".into()),
            ],
        )?;
        let producer: FutureProducer = client.create().map_err(creation_failed)?;
        Ok(Self {
            producer: Arc::new(RwLock::new(producer)),
            config: client,
            order_topic: config.order_topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
            events_topic: config.events_topic.clone(),
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
        self.deliver_all(vec![record]).await
    }

    /// Sends `records` and waits until the broker has every one, within
    /// [`SEND_BOUND`] for all; the first failure fails the whole.
    async fn deliver_all(&self, records: Vec<FutureRecord<'_, [u8], [u8]>>) -> OmsResult<()> {
        let producer = self.producer();
        let delivery = send_in_order(&producer, records);
        match tokio::time::timeout(SEND_BOUND, delivery).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
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

/// Queues `records` one after the other (so records of one key keep their
/// order on its partition; while librdkafka's queue is full it waits, for
/// at most [`DELIVERY_TIMEOUT`]), then waits for every delivery report.
/// Answers the first failure.
async fn send_in_order(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Result<(), KafkaError> {
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(records.len());
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < DELIVERY_TIMEOUT =>
                {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// The record value of an order event: its JSON.
fn encode_event(event: &OrderEvent) -> OmsResult<Vec<u8>> {
    serde_json::to_vec(event)
        .map_err(|e| OmsError::Internal(format!("cannot encode order event: {e}")))
}

/// The headers of an order event's record: its id and its type.
fn event_headers(event: &OrderEvent) -> OwnedHeaders {
    let id = event.event_id.to_string();
    let kind = format!("ORDER_{}", event.to.as_str());
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: HEADER_EVENT_ID,
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: HEADER_EVENT_TYPE,
            value: Some(kind.as_str()),
        })
}

#[async_trait]
impl OrderRequestPublisher for KafkaOrderPublisher {
    async fn send(&self, command: &OrderCommand) -> OmsResult<()> {
        let payload = encode_command(command)?;
        let key = command
            .partition_key()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let trace_id = command.trace_id.to_string();
        let traceparent = command.trace_id.traceparent();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: HEADER_TRACE_ID,
                value: Some(trace_id.as_str()),
            })
            .insert(Header {
                key: HEADER_TRACEPARENT,
                value: Some(traceparent.as_str()),
            });
        let record = FutureRecord::<[u8], [u8]>::to(&self.order_topic)
            .key(key.as_bytes())
            .payload(payload.as_slice())
            .headers(headers);
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

/// One record per event on the events topic: key the order id (decimal, so
/// the events of an order keep their order on one partition), value the
/// event's JSON, headers [`HEADER_EVENT_ID`] and [`HEADER_EVENT_TYPE`].
/// Returns once the broker has every record; a failure fails the whole
/// call, and a retry may publish again what was delivered (consumers
/// deduplicate by event id).
#[async_trait]
impl OrderEventPublisher for KafkaOrderPublisher {
    async fn publish(&self, events: &[OrderEvent]) -> OmsResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let encoded = events
            .iter()
            .map(|event| Ok((event, event.order_id.to_string(), encode_event(event)?)))
            .collect::<OmsResult<Vec<_>>>()?;
        let records = encoded
            .iter()
            .map(|(event, key, value)| {
                FutureRecord::<[u8], [u8]>::to(&self.events_topic)
                    .key(key.as_bytes())
                    .payload(value.as_slice())
                    .headers(event_headers(event))
            })
            .collect();
        self.deliver_all(records).await
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

    /// Connects the producer and caches the metadata (partitions, leaders)
    /// of the order, DLQ and events topics, which the first send of each
    /// would otherwise wait for.
    async fn warm(&self) -> OmsResult<()> {
        let producer = self.producer();
        let topics = [
            self.order_topic.clone(),
            self.dlq_topic.clone(),
            self.events_topic.clone(),
        ];
        crate::blocking(move || {
            for topic in &topics {
                producer
                    .client()
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }
}
