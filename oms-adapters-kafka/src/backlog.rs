use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult};
use oms_core::port::outbound::OrderBacklog;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::{blocking, creation_failed, unavailable, KafkaConfig, Role, FETCH_REWIND};

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probe for records past the committed offsets waits.
const PROBE: Duration = Duration::from_millis(3000);

/// The [`OrderBacklog`] of a consumer group: the records of the order topic
/// past the group's committed offsets, summed over partitions. It never joins
/// the group nor commits.
///
/// A backlog it cannot be sure of is never zero. Where the broker's log end
/// is at or below the committed offset (a broker may under-report it:
/// tansu 0.6 answers the start of its last batch), it reads the partition
/// from the committed offset (from [`FETCH_REWIND`](crate::FETCH_REWIND)
/// records before it with [`KafkaConfig::rewind_on_gap`]) up to the first
/// record at or past it: the partition counts as done only when the broker
/// says the end of the log was reached without one. A partition still
/// unanswered when the probe times out counts as one record waiting. A
/// non-zero count may be a lower bound.
#[derive(Clone)]
pub struct KafkaBacklog {
    consumer: Arc<Mutex<BaseConsumer<Probe>>>,
    topic: String,
    rewind_on_gap: bool,
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
            .field("rewind_on_gap", &self.rewind_on_gap)
            .finish_non_exhaustive()
    }
}

/// What the watermarks and the committed offset say about one partition.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    /// This many records wait past the committed offset.
    Pending(u64),
    /// The log end is at or below the committed offset, which a broker
    /// that under-reports it also answers while records wait: read the
    /// partition from `from` to know.
    Probe { from: i64 },
}

/// Reads one partition's offsets: `committed` (none when the group has not
/// committed on it), and the log start and end.
fn reading(committed: Option<i64>, low: i64, high: i64) -> Reading {
    // Records below the log start are gone: they are not waiting.
    let from = committed.map_or(low, |c| c.max(low));
    match u64::try_from(high.saturating_sub(from)) {
        Ok(n) if n > 0 => Reading::Pending(n),
        _ => Reading::Probe { from },
    }
}

/// What a probe found.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProbeOutcome {
    /// Partitions with a record at or past their committed offset.
    found: u64,
    /// Partitions that neither showed such a record nor reached the end of
    /// the log before the probe timed out.
    unanswered: u64,
}

impl ProbeOutcome {
    /// Records known to wait: an unanswered partition is not known to be
    /// done, so it counts as one.
    fn pending(&self) -> u64 {
        self.found + self.unanswered
    }
}

impl KafkaBacklog {
    /// The backlog of `config.group` on `config.order_topic`.
    pub fn new(config: &KafkaConfig) -> OmsResult<Self> {
        let consumer: BaseConsumer<Probe> = config
            .client_config(
                Role::Consumer,
                &[
                    ("group.id", config.group.clone()),
                    ("enable.auto.commit", "false".into()),
                    ("enable.partition.eof", "true".into()),
                    ("fetch.wait.max.ms", "50".into()),
                ],
            )?
            .create_with_context(Probe)
            .map_err(creation_failed)?;
        Ok(Self {
            consumer: Arc::new(Mutex::new(consumer)),
            topic: config.order_topic.clone(),
            rewind_on_gap: config.rewind_on_gap,
        })
    }

    fn pending_blocking(
        consumer: &BaseConsumer<Probe>,
        topic: &str,
        rewind_on_gap: bool,
    ) -> OmsResult<u64> {
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
            let committed = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => Some(n),
                _ => None,
            };
            match reading(committed, low, high) {
                Reading::Pending(n) => pending += n,
                Reading::Probe { from } => {
                    let start = if rewind_on_gap {
                        from.saturating_sub(FETCH_REWIND).max(low)
                    } else {
                        from
                    };
                    probe
                        .add_partition_offset(topic, p, Offset::Offset(start))
                        .map_err(unavailable)?;
                    floors.insert(p, from);
                }
            }
        }
        if probe.count() > 0 {
            let outcome = Self::records_past(consumer, probe, &floors)?;
            if outcome.unanswered > 0 {
                tracing::debug!(
                    topic,
                    unanswered = outcome.unanswered,
                    "backlog probe timed out; counting the unanswered partitions as waiting"
                );
            }
            pending += outcome.pending();
        }
        Ok(pending)
    }

    /// Reads the partitions in `from` from the given offsets up to the
    /// first record at or past their floor, or the end of the log.
    fn records_past(
        consumer: &BaseConsumer<Probe>,
        from: TopicPartitionList,
        floors: &HashMap<i32, i64>,
    ) -> OmsResult<ProbeOutcome> {
        let mut waiting: HashSet<i32> = from.elements().iter().map(|e| e.partition()).collect();
        consumer.assign(&from).map_err(unavailable)?;
        let deadline = Instant::now() + PROBE;
        let mut outcome = ProbeOutcome::default();
        let mut failed = None;
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
                    outcome.found += 1
                }
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    waiting.remove(&p);
                }
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                None => {}
            }
        }
        outcome.unanswered = u64::try_from(waiting.len()).unwrap_or(u64::MAX);
        let unassigned = consumer.unassign();
        if let Some(e) = failed {
            return Err(unavailable(e));
        }
        unassigned.map_err(unavailable)?;
        Ok(outcome)
    }
}

#[async_trait]
impl OrderBacklog for KafkaBacklog {
    async fn pending(&self) -> OmsResult<u64> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let rewind_on_gap = self.rewind_on_gap;
        blocking(move || {
            // One probe at a time: it assigns partitions to this consumer.
            let consumer = consumer.lock().unwrap_or_else(|p| p.into_inner());
            Self::pending_blocking(&consumer, &topic, rewind_on_gap)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn records_past_the_committed_offset_are_pending() {
        assert_eq!(reading(Some(10), 0, 25), Reading::Pending(15));
        assert_eq!(
            reading(None, 0, 25),
            Reading::Pending(25),
            "nothing committed yet"
        );
    }

    #[test]
    fn records_below_the_log_start_are_not_waiting() {
        assert_eq!(reading(Some(10), 20, 25), Reading::Pending(5));
        assert_eq!(reading(Some(10), 25, 25), Reading::Probe { from: 25 });
    }

    #[test]
    fn a_log_end_at_or_below_the_committed_offset_is_checked_not_trusted() {
        assert_eq!(reading(Some(300), 0, 300), Reading::Probe { from: 300 });
        assert_eq!(reading(Some(300), 0, 296), Reading::Probe { from: 300 });
        assert_eq!(reading(None, 0, 0), Reading::Probe { from: 0 });
    }

    #[test]
    fn an_unanswered_partition_is_waiting() {
        let outcome = ProbeOutcome {
            found: 0,
            unanswered: 2,
        };
        assert_eq!(outcome.pending(), 2);
        assert_eq!(ProbeOutcome::default().pending(), 0);
    }
}
