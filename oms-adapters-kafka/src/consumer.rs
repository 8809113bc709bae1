use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oms_core::domain::{OmsError, OmsResult};
use oms_core::port::inbound::OrderUseCase;
use oms_core::port::outbound::{decode_command, DeadLetter};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::{unavailable, KafkaConfig, FETCH_REWIND};

/// Hears partition assignments, so the driver can set where each newly
/// assigned partition starts (see [`GapGuard`]).
#[derive(Default)]
struct AssignmentContext {
    assigned: Mutex<Vec<i32>>,
    notify: Notify,
}

impl ClientContext for AssignmentContext {}

impl ConsumerContext for AssignmentContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
            assigned.extend(list.elements().iter().map(|e| e.partition()));
            self.notify.notify_one();
        }
    }
}

/// The Kafka consumer driver: reads the order topic as a member of the
/// consumer group and feeds batches to an [`OrderUseCase`].
pub struct KafkaOrderConsumer {
    consumer: StreamConsumer<AssignmentContext>,
    topic: String,
    max_batch: usize,
    batch_wait: Duration,
}

impl std::fmt::Debug for KafkaOrderConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOrderConsumer")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// Why a batch was not finished.
enum Interrupted {
    Shutdown,
}

impl KafkaOrderConsumer {
    /// Joins `config.group` and subscribes to the order topic.
    pub fn new(config: &KafkaConfig) -> OmsResult<Self> {
        let consumer: StreamConsumer<AssignmentContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", "10")
            .create_with_context(AssignmentContext::default())
            .map_err(unavailable)?;
        consumer
            .subscribe(&[&config.order_topic])
            .map_err(unavailable)?;
        Ok(Self {
            consumer,
            topic: config.order_topic.clone(),
            max_batch: config.max_batch.max(1),
            batch_wait: config.batch_wait,
        })
    }

    /// Consumes until `shutdown` completes, then commits the offsets of
    /// every finished batch. A batch in progress when `shutdown` completes
    /// is finished first unless it is waiting on a dependency, in which case
    /// it is left for the next member to redeliver.
    pub async fn run(
        self,
        use_case: Arc<dyn OrderUseCase>,
        shutdown: impl Future<Output = ()>,
    ) -> OmsResult<()> {
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut gaps = GapGuard::default();
        while !stopping {
            let first = tokio::select! {
                m = self.consumer.recv() => m,
                () = self.consumer.context().notify.notified() => {
                    self.start_assigned(&mut gaps);
                    continue;
                }
                () = &mut shutdown => break,
            };
            let first = match first {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while batch.len() < self.max_batch {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m),
                    Ok(Err(e)) => {
                        warn!(error = %e, "kafka receive failed");
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.start_assigned(&mut gaps);
            let batch = gaps.admit(&self.consumer, &self.topic, batch);
            if batch.is_empty() {
                continue;
            }
            match self.handle(&*use_case, &batch, &mut shutdown).await {
                Ok(()) => {
                    for m in &batch {
                        if let Err(e) = self.consumer.store_offset_from_message(m) {
                            warn!(error = %e, "offset not stored");
                        }
                    }
                }
                Err(Interrupted::Shutdown) => stopping = true,
            }
        }
        info!("consumer stopping; committing offsets");
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing consumed since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Starts each newly assigned partition [`FETCH_REWIND`] records before its
    /// committed offset (records below it are dropped unprocessed).
    fn start_assigned(&self, gaps: &mut GapGuard) {
        let assigned: Vec<i32> = std::mem::take(
            &mut *self
                .consumer
                .context()
                .assigned
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for partition in assigned {
            gaps.next.remove(&partition);
            if let Some(from) = committed(&self.consumer, &self.topic, partition) {
                gaps.floor.insert(partition, from);
                gaps.next.insert(partition, from);
                let to = from.saturating_sub(FETCH_REWIND).max(0);
                if let Err(e) =
                    self.consumer
                        .seek(&self.topic, partition, Offset::Offset(to), SEEK_TIMEOUT)
                {
                    warn!(partition, error = %e, "cannot rewind a new partition");
                }
            }
        }
    }

    async fn handle(
        &self,
        use_case: &dyn OrderUseCase,
        batch: &[BorrowedMessage<'_>],
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), Interrupted> {
        let mut commands = Vec::with_capacity(batch.len());
        for m in batch {
            let payload = m.payload().unwrap_or_default();
            match decode_command(payload) {
                Ok(c) => commands.push(c),
                Err(e) => {
                    warn!(partition = m.partition(), offset = m.offset(), error = %e, "poison record");
                    let letter = DeadLetter::poison(m.key().map(<[u8]>::to_vec), payload.to_vec());
                    retry(shutdown, || use_case.reject(letter.clone())).await?;
                }
            }
        }
        if !commands.is_empty() {
            let count = commands.len();
            retry(shutdown, || use_case.process(commands.clone())).await?;
            debug!(count, "batch processed");
        }
        Ok(())
    }
}

/// Runs `op` until it succeeds or fails for good, backing off while it fails
/// with a retryable error; gives up only on shutdown. A non-retryable error
/// is logged and the batch is treated as done: it can never succeed.
async fn retry<T, F, Fut>(
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    mut op: F,
) -> Result<(), Interrupted>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OmsError>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() => {
                warn!(error = %e, ?delay, "dependency unavailable; pausing and retrying the same batch");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {},
                    () = shutdown.as_mut() => return Err(Interrupted::Shutdown),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                error!(error = %e, "batch cannot be processed");
                return Ok(());
            }
        }
    }
}

/// Keeps each partition's records contiguous.
///
/// The order topic is neither compacted nor transactional, so its offsets
/// have no holes: a record whose offset is past the next one expected means
/// the fetch skipped records (tansu 0.6 does when a fetch starts inside a
/// producer batch, e.g. after a rebalance). The guard drops the partition's
/// records from that one on, and seeks back before the missing offset —
/// further back each time it happens again — so the skipped records are
/// fetched; records seen twice are harmless (processing is idempotent by
/// trace id). For the same reason a newly assigned partition is read from
/// [`FETCH_REWIND`] records before its committed offset, and the records below
/// that offset are dropped unprocessed.
#[derive(Debug, Default)]
struct GapGuard {
    /// Committed offset per partition when it was assigned.
    floor: HashMap<i32, i64>,
    /// Next offset expected per partition.
    next: HashMap<i32, i64>,
    /// How far the next rewind goes per partition.
    rewind: HashMap<i32, i64>,
}

impl GapGuard {
    fn admit<'a>(
        &mut self,
        consumer: &StreamConsumer<AssignmentContext>,
        topic: &str,
        batch: Vec<BorrowedMessage<'a>>,
    ) -> Vec<BorrowedMessage<'a>> {
        let mut skipped: HashSet<i32> = HashSet::new();
        let mut admitted = Vec::with_capacity(batch.len());
        for m in batch {
            let partition = m.partition();
            if skipped.contains(&partition)
                || self.floor.get(&partition).is_some_and(|f| m.offset() < *f)
            {
                continue;
            }
            let expected = match self.next.get(&partition) {
                Some(next) => Some(*next),
                None => committed(consumer, topic, partition),
            };
            let gap = match expected {
                // Past the next one expected, unless another member of the
                // group finished the records in between (after a rebalance).
                Some(expected) if m.offset() > expected => {
                    committed(consumer, topic, partition).is_none_or(|c| c < m.offset())
                }
                _ => false,
            };
            match expected {
                Some(expected) if gap => {
                    let back = self.rewind.entry(partition).or_insert(FETCH_REWIND);
                    let to = expected.saturating_sub(*back).max(0);
                    *back = back.saturating_mul(2).min(1 << 20);
                    warn!(
                        partition,
                        expected,
                        got = m.offset(),
                        rewind_to = to,
                        "the fetch skipped records; seeking back"
                    );
                    if let Err(e) =
                        consumer.seek(topic, partition, Offset::Offset(to), SEEK_TIMEOUT)
                    {
                        warn!(partition, error = %e, "seek failed; the records will be redelivered after a rebalance");
                    }
                    skipped.insert(partition);
                }
                _ => {
                    if self
                        .next
                        .get(&partition)
                        .is_some_and(|n| m.offset() + 1 >= *n)
                    {
                        self.rewind.remove(&partition);
                    }
                    self.next.insert(partition, m.offset() + 1);
                    admitted.push(m);
                }
            }
        }
        admitted
    }
}

const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// The group's committed offset of a partition, if there is one.
fn committed<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    match consumer.committed_offsets(tpl, SEEK_TIMEOUT) {
        Ok(list) => match list.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => Some(n),
            _ => None,
        },
        Err(e) => {
            warn!(partition, error = %e, "committed offset unknown; not checked for a gap");
            None
        }
    }
}
