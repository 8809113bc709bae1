use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult};
use oms_core::port::outbound::OrderBacklog;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use crate::{unavailable, KafkaConfig, FETCH_REWIND};

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probe for records past the committed offsets waits.
const PROBE: Duration = Duration::from_millis(3000);

/// The [`OrderBacklog`] of a consumer group: the records of the order topic
/// past the group's committed offsets, summed over partitions. It never joins
/// the group nor commits. Where the broker's log end says a partition is
/// done, it reads one record past the committed offset to be sure, so zero
/// is exact even on a broker that under-reports the log end; a non-zero count
/// is then a lower bound.
#[derive(Clone)]
pub struct KafkaBacklog {
    consumer: Arc<Mutex<BaseConsumer<Probe>>>,
    topic: String,
}

/// The probe's client context: reaching the end of a partition is what a
/// probe expects, not an error worth a log line.
struct Probe;

impl ClientContext for Probe {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {}
            other => tracing::error!("librdkafka: {other}: {reason}"),
        }
    }
}

impl ConsumerContext for Probe {}

impl std::fmt::Debug for KafkaBacklog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBacklog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaBacklog {
    /// The backlog of `config.group` on `config.order_topic`.
    pub fn new(config: &KafkaConfig) -> OmsResult<Self> {
        let consumer: BaseConsumer<Probe> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(Probe)
            .map_err(unavailable)?;
        Ok(Self {
            consumer: Arc::new(Mutex::new(consumer)),
            topic: config.order_topic.clone(),
        })
    }

    fn pending_blocking(consumer: &BaseConsumer<Probe>, topic: &str) -> OmsResult<u64> {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(unavailable)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(OmsError::unavailable(
                "kafka",
                format!("topic {topic} has no partitions"),
            ));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(topic, *p);
        }
        let committed = consumer
            .committed_offsets(tpl, TIMEOUT)
            .map_err(unavailable)?;
        let mut pending = 0u64;
        let mut probe = TopicPartitionList::new();
        let mut floors: HashMap<i32, i64> = HashMap::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, TIMEOUT)
                .map_err(unavailable)?;
            let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n.max(low),
                _ => low,
            };
            match u64::try_from(high.saturating_sub(from)) {
                Ok(n) if n > 0 => pending += n,
                // Some brokers under-report the log end (tansu 0.6 counts
                // batches): look for a record past the committed offset.
                _ => {
                    let start = from.saturating_sub(FETCH_REWIND).max(low);
                    probe
                        .add_partition_offset(topic, p, Offset::Offset(start))
                        .map_err(unavailable)?;
                    floors.insert(p, from);
                }
            }
        }
        if probe.count() > 0 {
            pending += Self::records_past(consumer, probe, &floors)?;
        }
        Ok(pending)
    }

    /// How many of the partitions in `from` have a record at or past their
    /// floor (reads from the given offsets up to the first such record).
    fn records_past(
        consumer: &BaseConsumer<Probe>,
        from: TopicPartitionList,
        floors: &HashMap<i32, i64>,
    ) -> OmsResult<u64> {
        let mut waiting: HashSet<i32> = from.elements().iter().map(|e| e.partition()).collect();
        consumer.assign(&from).map_err(unavailable)?;
        let deadline = Instant::now() + PROBE;
        let mut found = 0;
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left) {
                Some(Ok(m))
                    if floors.get(&m.partition()).is_none_or(|f| m.offset() >= *f)
                        && waiting.remove(&m.partition()) =>
                {
                    found += 1
                }
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    waiting.remove(&p);
                }
                Some(Err(e)) => return Err(unavailable(e)),
                None => {}
            }
        }
        consumer.unassign().map_err(unavailable)?;
        Ok(found)
    }
}

#[async_trait]
impl OrderBacklog for KafkaBacklog {
    async fn pending(&self) -> OmsResult<u64> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            // One probe at a time: it assigns partitions to this consumer.
            let consumer = consumer.lock().unwrap_or_else(|p| p.into_inner());
            Self::pending_blocking(&consumer, &topic)
        })
        .await
        .map_err(|e| OmsError::unavailable("kafka", e))?
    }
}
