use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{OmsError, OmsResult};
use oms_core::port::inbound::OrderUseCase;
use oms_core::port::outbound::{decode_command, DeadLetter};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::{
    blocking, creation_failed, unavailable, KafkaConfig, Role, FETCH_REWIND, REQUEST_TIMEOUT,
};

/// Hears partition assignments, so the driver can set where each newly
/// assigned partition starts (see [`GapGuard`]).
#[derive(Default)]
struct AssignmentContext {
    assigned: Mutex<Vec<i32>>,
    notify: Notify,
}

impl ClientContext for AssignmentContext {
    /// librdkafka's statistics (every [`STATS_INTERVAL`]): the lag of every
    /// partition this member consumes, as the `oms_consumer_lag` gauge.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    oms_core::observe::record_lag(name, *partition, stats.consumer_lag);
                }
            }
        }
    }
}

/// How often librdkafka reports the consumer's statistics (its lag).
const STATS_INTERVAL: Duration = Duration::from_secs(5);

impl ConsumerContext for AssignmentContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
                assigned.extend(list.elements().iter().map(|e| e.partition()));
                self.notify.notify_one();
            }
            Rebalance::Revoke(list) => {
                debug!(partitions = list.count(), "partitions revoked");
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }
}

type Driver = StreamConsumer<AssignmentContext>;

/// What a consumer reports about itself while it runs: cheap to clone, and
/// readable from another task (a readiness probe, metrics).
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth(Arc<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    processed: AtomicU64,
    skipped: AtomicU64,
    stalled: AtomicBool,
    rejoins: AtomicU64,
}

impl ConsumerHealth {
    /// Records handed to the use case and finished (placed, failed or dead
    /// lettered).
    pub fn processed_records(&self) -> u64 {
        self.0.processed.load(Ordering::Relaxed)
    }

    /// Offsets this consumer went past without reading them: records removed
    /// by retention below the log start, and gaps it accepted (see
    /// [`KafkaConfig::rewind_on_gap`]). Each such range is also logged with
    /// its partition and offsets.
    pub fn skipped_records(&self) -> u64 {
        self.0.skipped.load(Ordering::Relaxed)
    }

    /// Whether the consumer holds partitions with records waiting and has
    /// made no progress for [`KafkaConfig::stall_timeout`]; cleared by the
    /// next batch it finishes or when it has nothing left to read.
    pub fn stalled(&self) -> bool {
        self.0.stalled.load(Ordering::Relaxed)
    }

    /// How many times the consumer left and rejoined its group because it
    /// was stalled.
    pub fn rejoins(&self) -> u64 {
        self.0.rejoins.load(Ordering::Relaxed)
    }

    fn skipped(&self, count: i64) {
        let count = u64::try_from(count).unwrap_or(0);
        self.0.skipped.fetch_add(count, Ordering::Relaxed);
    }
}

/// The Kafka consumer driver: reads the order topic as a member of the
/// consumer group and feeds batches to an [`OrderUseCase`].
pub struct KafkaOrderConsumer {
    consumer: Arc<Driver>,
    topic: String,
    max_batch: usize,
    batch_wait: Duration,
    rewind_on_gap: bool,
    stall_timeout: Duration,
    health: ConsumerHealth,
    /// What a replacement client is made from.
    config: KafkaConfig,
}

impl std::fmt::Debug for KafkaOrderConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOrderConsumer")
            .field("topic", &self.topic)
            .field("max_batch", &self.max_batch)
            .field("rewind_on_gap", &self.rewind_on_gap)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a batch was not finished.
enum Interrupted {
    Shutdown,
}

/// How one group membership of [`KafkaOrderConsumer::run`] ended.
enum Membership {
    /// Shut down; offsets committed.
    Stopped,
    /// Stalled again after a rejoin: replace the client (a new member).
    Replace,
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

impl KafkaOrderConsumer {
    /// Joins `config.group` and subscribes to the order topic.
    pub fn new(config: &KafkaConfig) -> OmsResult<Self> {
        let session = config.session_timeout.max(Duration::from_secs(1));
        let consumer: Driver = config
            .client_config(
                Role::Consumer,
                &[
                    ("group.id", config.group.clone()),
                    ("enable.auto.commit", "true".into()),
                    ("auto.commit.interval.ms", "500".into()),
                    ("enable.auto.offset.store", "false".into()),
                    ("auto.offset.reset", "earliest".into()),
                    ("session.timeout.ms", millis(session)),
                    ("heartbeat.interval.ms", millis(session / 5)),
                    (
                        "max.poll.interval.ms",
                        millis(config.max_poll_interval.max(session)),
                    ),
                    ("fetch.wait.max.ms", "10".into()),
                    ("statistics.interval.ms", millis(STATS_INTERVAL)),
                ],
            )?
            .create_with_context(AssignmentContext::default())
            .map_err(creation_failed)?;
        consumer
            .subscribe(&[&config.order_topic])
            .map_err(unavailable)?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: config.order_topic.clone(),
            max_batch: config.max_batch.max(1),
            batch_wait: config.batch_wait,
            rewind_on_gap: config.rewind_on_gap,
            stall_timeout: config.stall_timeout.max(Duration::from_secs(1)),
            health: ConsumerHealth::default(),
            config: config.clone(),
        })
    }

    /// A handle on what this consumer reports while it runs; take it before
    /// [`run`](Self::run).
    pub fn health(&self) -> ConsumerHealth {
        self.health.clone()
    }

    /// See [`ConsumerHealth::skipped_records`].
    pub fn skipped_records(&self) -> u64 {
        self.health.skipped_records()
    }

    /// See [`ConsumerHealth::stalled`].
    pub fn stalled(&self) -> bool {
        self.health.stalled()
    }

    fn ops(&self) -> KafkaPartitions {
        KafkaPartitions {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }

    /// Consumes until `shutdown` completes, then commits the offsets of
    /// every finished batch. A batch in progress when `shutdown` completes
    /// is finished first unless it is waiting on a dependency, in which case
    /// it is left for the next member to redeliver.
    ///
    /// A consumer that stalls again after rejoining its group (see
    /// [`ConsumerHealth::stalled`]) replaces its client: it leaves the group
    /// for good and joins as a new member, keeping its health handle.
    pub async fn run(
        mut self,
        use_case: Arc<dyn OrderUseCase>,
        shutdown: impl Future<Output = ()>,
    ) -> OmsResult<()> {
        tokio::pin!(shutdown);
        loop {
            match self.membership(&use_case, &mut shutdown).await? {
                Membership::Stopped => return Ok(()),
                Membership::Replace => {
                    let (config, health) = (self.config.clone(), self.health.clone());
                    // Closing a client blocks while it leaves the group.
                    let old = self;
                    if let Err(e) = tokio::task::spawn_blocking(move || drop(old)).await {
                        warn!(error = %e, "the stalled client was not closed cleanly");
                    }
                    self = loop {
                        match Self::new(&config) {
                            Ok(mut fresh) => {
                                fresh.health = health.clone();
                                break fresh;
                            }
                            Err(e) => {
                                warn!(error = %e, "cannot create a new consumer client; retrying");
                                tokio::select! {
                                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                                    () = shutdown.as_mut() => return Ok(()),
                                }
                            }
                        }
                    };
                    warn!(topic = %self.topic, "stalled consumer replaced its client and joined its group as a new member");
                }
            }
        }
    }

    /// One group membership of [`run`](Self::run).
    async fn membership<F: Future<Output = ()>>(
        &self,
        use_case: &Arc<dyn OrderUseCase>,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> OmsResult<Membership> {
        let ops = self.ops();
        let mut stopping = false;
        let mut gaps = GapGuard::new(&self.topic, self.rewind_on_gap, self.health.clone());
        let mut watchdog = Watchdog::new(self.stall_timeout);
        let mut tick = tokio::time::interval(watchdog.check_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stopping {
            let first = tokio::select! {
                m = self.consumer.recv() => m,
                () = self.consumer.context().notify.notified() => {
                    self.start_assigned(&ops, &mut gaps).await;
                    continue;
                }
                _ = tick.tick() => {
                    if self.watch(&ops, &mut watchdog, &mut gaps).await {
                        return Ok(Membership::Replace);
                    }
                    continue;
                }
                () = shutdown.as_mut() => break,
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
            let deadline = Instant::now() + self.batch_wait;
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
            self.start_assigned(&ops, &mut gaps).await;
            let batch = gaps.admit(&ops, batch).await;
            if batch.is_empty() {
                continue;
            }
            match self.handle(&**use_case, &batch, shutdown).await {
                Ok(()) => {
                    for m in &batch {
                        if let Err(e) = self.consumer.store_offset_from_message(m) {
                            warn!(error = %e, "offset not stored");
                        }
                    }
                    let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                    self.health.0.processed.fetch_add(count, Ordering::Relaxed);
                    self.health.0.stalled.store(false, Ordering::Relaxed);
                    watchdog.worked();
                }
                Err(Interrupted::Shutdown) => stopping = true,
            }
        }
        info!("consumer stopping; committing offsets");
        let consumer = self.consumer.clone();
        blocking(
            move || match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => Ok(()),
                // Nothing consumed since the last commit.
                Err(rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::NoOffset,
                )) => Ok(()),
                Err(e) => Err(unavailable(e)),
            },
        )
        .await?;
        Ok(Membership::Stopped)
    }

    /// Sets where each newly assigned partition starts: the next offset
    /// expected is its committed offset; with
    /// [`KafkaConfig::rewind_on_gap`] it is read from [`FETCH_REWIND`]
    /// records before it (records below it are dropped unprocessed).
    async fn start_assigned(&self, ops: &KafkaPartitions, gaps: &mut GapGuard) {
        let assigned: Vec<i32> = std::mem::take(
            &mut *self
                .consumer
                .context()
                .assigned
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if assigned.is_empty() {
            return;
        }
        let committed = ops.committed_all(&assigned).await;
        for partition in assigned {
            let from = committed.get(&partition).copied();
            gaps.assigned(partition, from);
            if let (true, Some(from)) = (self.rewind_on_gap, from) {
                let to = from.saturating_sub(FETCH_REWIND).max(0);
                if to < from {
                    ops.seek(partition, to).await;
                }
            }
        }
    }

    /// The stall watchdog: samples every partition of the topic and, when
    /// one has had records waiting and no progress (by this member or
    /// another) for the stall timeout, reports the consumer stalled and
    /// rejoins the group, which makes the coordinator assign every partition
    /// again.
    ///
    /// Returns `true` when the consumer stalls again after a rejoin that did
    /// not help: the caller then replaces the client, so that it joins as a
    /// new member (tansu 0.6 can keep a rejoining member unassigned after its
    /// coordinator was paused; see `docs/brokers.md`).
    async fn watch(
        &self,
        ops: &KafkaPartitions,
        watchdog: &mut Watchdog,
        gaps: &mut GapGuard,
    ) -> bool {
        let samples = match ops.sample(gaps.positions()).await {
            Ok(samples) => samples,
            Err(e) => {
                debug!(error = %e, "stall check failed");
                return false;
            }
        };
        let now = Instant::now();
        match watchdog.observe(&samples, now) {
            Verdict::Drained => {
                self.health.0.stalled.store(false, Ordering::Relaxed);
                false
            }
            Verdict::Moving => false,
            Verdict::Stalled(stuck) => {
                let waiting: i64 = stuck.iter().map(|s| s.waiting).sum();
                let partitions: Vec<(i32, i64, i64)> = stuck
                    .iter()
                    .map(|s| (s.partition, s.position, s.waiting))
                    .collect();
                error!(
                    topic = %self.topic,
                    ?partitions,
                    waiting,
                    stall_secs = self.stall_timeout.as_secs(),
                    "consumer group stalled: records wait on partitions where nothing was processed for the stall timeout; rejoining the group"
                );
                self.health.0.stalled.store(true, Ordering::Relaxed);
                self.health.0.rejoins.fetch_add(1, Ordering::Relaxed);
                if watchdog.rejoins_without_work > 0 {
                    return true;
                }
                if let Err(e) = ops.rejoin().await {
                    error!(error = %e, "cannot rejoin the consumer group");
                }
                gaps.clear();
                watchdog.rejoined(Instant::now());
                false
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
                    warn!(partition = Message::partition(m), offset = Message::offset(m), error = %e, "poison record");
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

/// One partition as the watchdog sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    partition: i32,
    /// How far the group got: the committed offset, or the next offset this
    /// member expects when it holds the partition and is further.
    position: i64,
    /// Records past `position` (from the log end the broker reports).
    waiting: i64,
}

/// What the watchdog concluded from a round of samples.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing waits anywhere.
    Drained,
    /// Records wait, and every such partition moved within the timeout
    /// (or the watchdog waits after a rejoin).
    Moving,
    /// These partitions had records waiting and did not move for the
    /// timeout.
    Stalled(Vec<Sample>),
}

/// Tells a stalled consumer group from a busy or idle one.
///
/// A partition is stuck when it had records waiting and its position did
/// not move for the stall timeout. That covers a member that holds
/// partitions and cannot read them, and partitions that nobody reads: left
/// assigned to a member that died, or a member told it holds nothing (both
/// seen on tansu 0.6, see `docs/brokers.md`). Rejoining is what resolves
/// them; after a rejoin that did not help the next one waits twice as long
/// (up to 8 stall timeouts) until this member processes a batch again.
#[derive(Debug)]
struct Watchdog {
    timeout: Duration,
    /// Per partition: the position last seen, and since when it has been
    /// there with records waiting.
    seen: HashMap<i32, (i64, Instant)>,
    /// No rejoin before this.
    quiet_until: Instant,
    /// The wait after the next rejoin.
    backoff: Duration,
    /// Rejoins since this member last finished a batch.
    rejoins_without_work: u32,
}

impl Watchdog {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            seen: HashMap::new(),
            quiet_until: Instant::now(),
            backoff: timeout,
            rejoins_without_work: 0,
        }
    }

    /// How often the watchdog looks: a quarter of the timeout, between
    /// 100 ms and 5 s.
    fn check_every(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// This member finished a batch.
    fn worked(&mut self) {
        self.backoff = self.timeout;
        self.rejoins_without_work = 0;
    }

    /// This member just rejoined its group: every partition gets a new
    /// window, and the next rejoin waits longer.
    fn rejoined(&mut self, now: Instant) {
        self.seen.clear();
        self.quiet_until = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.timeout * 8);
        self.rejoins_without_work += 1;
    }

    fn observe(&mut self, samples: &[Sample], now: Instant) -> Verdict {
        let mut stuck = Vec::new();
        let mut waiting = false;
        for s in samples {
            if s.waiting <= 0 {
                self.seen.remove(&s.partition);
                continue;
            }
            waiting = true;
            let since = match self.seen.get(&s.partition) {
                Some((position, since)) if *position == s.position => *since,
                _ => {
                    self.seen.insert(s.partition, (s.position, now));
                    now
                }
            };
            if now.saturating_duration_since(since) >= self.timeout {
                stuck.push(s.clone());
            }
        }
        if !waiting {
            Verdict::Drained
        } else if stuck.is_empty() || now < self.quiet_until {
            Verdict::Moving
        } else {
            Verdict::Stalled(stuck)
        }
    }
}

/// The broker operations the [`GapGuard`] and the watchdog need, on one
/// partition of the order topic. Each runs off the async workers.
#[async_trait]
trait PartitionOps: Send + Sync {
    /// The group's committed offset, if there is one (or it is unknown).
    async fn committed(&self, partition: i32) -> Option<i64>;
    /// The log start offset, if known.
    async fn low_watermark(&self, partition: i32) -> Option<i64>;
    /// Moves the fetch position; a failure is logged.
    async fn seek(&self, partition: i32, offset: i64);
}

/// [`PartitionOps`] on the driver's consumer.
#[derive(Clone)]
struct KafkaPartitions {
    consumer: Arc<Driver>,
    topic: String,
}

impl KafkaPartitions {
    /// The committed offsets of `partitions` (those that have one), in one
    /// request.
    async fn committed_all(&self, partitions: &[i32]) -> HashMap<i32, i64> {
        let this = self.clone();
        let partitions = partitions.to_vec();
        let found = blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&this.topic, *p);
            }
            let list = this
                .consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            Ok(list
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(n) => Some((e.partition(), n)),
                    _ => None,
                })
                .collect())
        })
        .await;
        found.unwrap_or_else(|e| {
            warn!(error = %e, "committed offsets unknown; new partitions are not checked for gaps");
            HashMap::new()
        })
    }

    /// Every partition of the topic: how far the group got (the committed
    /// offset, or `positions`, the next offsets this member expects, where
    /// further) and how many records wait past it.
    async fn sample(&self, positions: HashMap<i32, i64>) -> OmsResult<Vec<Sample>> {
        let this = self.clone();
        blocking(move || {
            let metadata = this
                .consumer
                .fetch_metadata(Some(&this.topic), REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == this.topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Ok(Vec::new());
            }
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&this.topic, *p);
            }
            let committed = this
                .consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            let mut samples = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let (low, high) = this
                    .consumer
                    .fetch_watermarks(&this.topic, partition, REQUEST_TIMEOUT)
                    .map_err(unavailable)?;
                let committed = match committed
                    .find_partition(&this.topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(n)) => Some(n),
                    _ => None,
                };
                let position = positions
                    .get(&partition)
                    .copied()
                    .into_iter()
                    .chain(committed)
                    .max()
                    .unwrap_or(low)
                    .max(low);
                samples.push(Sample {
                    partition,
                    position,
                    waiting: high.saturating_sub(position).max(0),
                });
            }
            Ok(samples)
        })
        .await
    }

    /// Leaves the group and joins it again as a new member.
    async fn rejoin(&self) -> OmsResult<()> {
        let this = self.clone();
        blocking(move || {
            this.consumer.unsubscribe();
            this.consumer.subscribe(&[&this.topic]).map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl PartitionOps for KafkaPartitions {
    async fn committed(&self, partition: i32) -> Option<i64> {
        self.committed_all(&[partition])
            .await
            .get(&partition)
            .copied()
    }

    async fn low_watermark(&self, partition: i32) -> Option<i64> {
        let this = self.clone();
        let low = blocking(move || {
            this.consumer
                .fetch_watermarks(&this.topic, partition, REQUEST_TIMEOUT)
                .map(|(low, _)| low)
                .map_err(unavailable)
        })
        .await;
        match low {
            Ok(low) => Some(low),
            Err(e) => {
                warn!(partition, error = %e, "log start unknown");
                None
            }
        }
    }

    async fn seek(&self, partition: i32, offset: i64) {
        let this = self.clone();
        let sought = blocking(move || {
            this.consumer
                .seek(
                    &this.topic,
                    partition,
                    Offset::Offset(offset),
                    REQUEST_TIMEOUT,
                )
                .map_err(unavailable)
        })
        .await;
        if let Err(e) = sought {
            warn!(partition, offset, error = %e, "seek failed");
        }
    }
}

/// The partition and offset of a record.
trait Positioned {
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
}

impl Positioned for BorrowedMessage<'_> {
    fn partition(&self) -> i32 {
        Message::partition(self)
    }

    fn offset(&self) -> i64 {
        Message::offset(self)
    }
}

/// How many times the guard seeks back for the same missing offset before
/// it accepts the gap.
const MAX_REWINDS: u32 = 3;

/// Keeps each partition's records in order and accounts for every offset
/// it goes past.
///
/// It knows the next offset expected per partition (the committed offset
/// when the partition was assigned, then one past the last record
/// admitted), drops records below it (read again after a rewind, or below
/// the committed offset), and treats a record past it as a gap:
///
/// * offsets below the partition's log start (low watermark) are gone, by
///   retention or DeleteRecords: they are counted, logged as an error, and
///   the guard goes on from the log start;
/// * with [`KafkaConfig::rewind_on_gap`], the guard drops the partition's
///   records from that one on and seeks back before the missing offset —
///   further back each time — at most [`MAX_REWINDS`] times for the same
///   offset (a broker that skips the rest of a producer batch delivers it
///   then); records seen twice are harmless (processing is idempotent by
///   trace id);
/// * otherwise, or once the rewinds are used up, the gap is accepted,
///   counted and logged (transaction markers and compaction leave gaps that
///   are not loss).
#[derive(Debug)]
struct GapGuard {
    topic: String,
    rewind_on_gap: bool,
    health: ConsumerHealth,
    /// Next offset expected per partition.
    next: HashMap<i32, i64>,
    /// The missing offset the guard is rewinding for, and how many times it
    /// sought back for it, per partition.
    rewinds: HashMap<i32, (i64, u32)>,
}

enum Gap {
    /// Admit the record: the guard moved past the gap.
    Accept,
    /// Drop the partition's records for now: they are being read again.
    Reread,
}

impl GapGuard {
    fn new(topic: &str, rewind_on_gap: bool, health: ConsumerHealth) -> Self {
        Self {
            topic: topic.to_owned(),
            rewind_on_gap,
            health,
            next: HashMap::new(),
            rewinds: HashMap::new(),
        }
    }

    /// A partition was (re)assigned, starting at its committed offset.
    fn assigned(&mut self, partition: i32, committed: Option<i64>) {
        self.rewinds.remove(&partition);
        match committed {
            Some(c) => self.next.insert(partition, c),
            None => self.next.remove(&partition),
        };
    }

    /// Forgets every partition (the consumer left its group).
    fn clear(&mut self) {
        self.next.clear();
        self.rewinds.clear();
    }

    /// The next offset expected per partition.
    fn positions(&self) -> HashMap<i32, i64> {
        self.next.clone()
    }

    async fn admit<M: Positioned + Send>(
        &mut self,
        ops: &dyn PartitionOps,
        batch: Vec<M>,
    ) -> Vec<M> {
        let mut rereading: HashSet<i32> = HashSet::new();
        let mut admitted = Vec::with_capacity(batch.len());
        for m in batch {
            let (partition, offset) = (m.partition(), m.offset());
            if rereading.contains(&partition) {
                continue;
            }
            let verdict = match self.next.get(&partition).copied() {
                // No committed offset: the group starts where the reset
                // policy put it.
                None => Gap::Accept,
                Some(expected) if offset < expected => continue,
                Some(expected) if offset == expected => Gap::Accept,
                Some(expected) => self.gap(ops, partition, expected, offset).await,
            };
            match verdict {
                Gap::Accept => {
                    self.next.insert(partition, offset + 1);
                    self.rewinds.remove(&partition);
                    admitted.push(m);
                }
                Gap::Reread => {
                    rereading.insert(partition);
                }
            }
        }
        admitted
    }

    /// Decides about a record at `got` when `expected` was next.
    async fn gap(
        &mut self,
        ops: &dyn PartitionOps,
        partition: i32,
        expected: i64,
        got: i64,
    ) -> Gap {
        // Another member of the group may have finished the records in
        // between (its commit landed after this member's assignment).
        let mut expected = expected;
        if let Some(committed) = ops.committed(partition).await {
            if committed >= got {
                debug!(
                    partition,
                    expected, got, committed, "records in between done by another member"
                );
                return Gap::Accept;
            }
            expected = expected.max(committed);
        }
        let low = ops.low_watermark(partition).await;
        if let Some(low) = low.filter(|low| *low > expected) {
            let until = low.min(got);
            self.health.skipped(until - expected);
            error!(
                topic = %self.topic,
                partition,
                from = expected,
                to = until - 1,
                count = until - expected,
                "records below the log start were removed (retention or DeleteRecords) before they were processed; going on from the log start"
            );
            expected = until;
            self.next.insert(partition, until);
            if got == until {
                return Gap::Accept;
            }
        }
        if self.rewind_on_gap {
            let (missing, rewinds) = self.rewinds.entry(partition).or_insert((expected, 0));
            if *missing != expected {
                *missing = expected;
                *rewinds = 0;
            }
            if *rewinds < MAX_REWINDS {
                let back = FETCH_REWIND.saturating_mul(1 << *rewinds);
                let to = expected.saturating_sub(back).max(low.unwrap_or(0)).max(0);
                *rewinds += 1;
                warn!(
                    topic = %self.topic,
                    partition,
                    expected,
                    got,
                    rewind_to = to,
                    attempt = *rewinds,
                    "the fetch skipped records; seeking back"
                );
                ops.seek(partition, to).await;
                return Gap::Reread;
            }
        }
        self.health.skipped(got - expected);
        warn!(
            topic = %self.topic,
            partition,
            from = expected,
            to = got - 1,
            count = got - expected,
            rewinds = self.rewinds.get(&partition).map_or(0, |r| r.1),
            "offsets skipped without a record; going on"
        );
        Gap::Accept
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A partition whose log holds the offsets `low..high` with holes.
    #[derive(Default)]
    struct Fake {
        committed: Mutex<HashMap<i32, i64>>,
        low: Mutex<HashMap<i32, i64>>,
        seeks: Mutex<Vec<(i32, i64)>>,
    }

    #[async_trait]
    impl PartitionOps for Fake {
        async fn committed(&self, partition: i32) -> Option<i64> {
            self.committed.lock().unwrap().get(&partition).copied()
        }
        async fn low_watermark(&self, partition: i32) -> Option<i64> {
            Some(
                self.low
                    .lock()
                    .unwrap()
                    .get(&partition)
                    .copied()
                    .unwrap_or(0),
            )
        }
        async fn seek(&self, partition: i32, offset: i64) {
            self.seeks.lock().unwrap().push((partition, offset));
        }
    }

    struct R(i32, i64);

    impl Positioned for R {
        fn partition(&self) -> i32 {
            self.0
        }
        fn offset(&self) -> i64 {
            self.1
        }
    }

    fn records(partition: i32, offsets: impl IntoIterator<Item = i64>) -> Vec<R> {
        offsets.into_iter().map(|o| R(partition, o)).collect()
    }

    fn offsets(admitted: &[R]) -> Vec<i64> {
        admitted.iter().map(|r| r.1).collect()
    }

    fn guard(rewind: bool) -> GapGuard {
        GapGuard::new("t", rewind, ConsumerHealth::default())
    }

    #[tokio::test]
    async fn contiguous_records_pass_and_records_below_the_next_are_dropped() {
        let fake = Fake::default();
        let mut g = guard(true);
        g.assigned(0, Some(5));
        let out = g.admit(&fake, records(0, 0..10)).await;
        assert_eq!(offsets(&out), vec![5, 6, 7, 8, 9]);
        let out = g.admit(&fake, records(0, 3..12)).await;
        assert_eq!(
            offsets(&out),
            vec![10, 11],
            "seen ones are not admitted again"
        );
        assert!(fake.seeks.lock().unwrap().is_empty());
        assert_eq!(g.health.skipped_records(), 0);
    }

    #[tokio::test]
    async fn a_committed_offset_below_the_log_start_moves_to_the_log_start_and_counts() {
        for rewind in [false, true] {
            let fake = Fake::default();
            fake.low.lock().unwrap().insert(0, 5_000);
            fake.committed.lock().unwrap().insert(0, 1_000);
            let mut g = guard(rewind);
            g.assigned(0, Some(1_000));
            // auto.offset.reset=earliest after OffsetOutOfRange
            let out = g.admit(&fake, records(0, 5_000..5_010)).await;
            assert_eq!(out.len(), 10, "rewind {rewind}");
            assert_eq!(g.health.skipped_records(), 4_000);
            assert!(
                fake.seeks.lock().unwrap().is_empty(),
                "no seek back below the log start"
            );
            let out = g.admit(&fake, records(0, 5_010..5_020)).await;
            assert_eq!(out.len(), 10);
            assert_eq!(g.health.skipped_records(), 4_000);
        }
    }

    #[tokio::test]
    async fn without_rewind_a_gap_is_accepted_at_once_and_counted() {
        let fake = Fake::default();
        let mut g = guard(false);
        g.assigned(0, Some(10));
        let out = g.admit(&fake, records(0, [10, 11, 15, 16])).await;
        assert_eq!(offsets(&out), vec![10, 11, 15, 16]);
        assert_eq!(g.health.skipped_records(), 3);
        assert!(fake.seeks.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn with_rewind_a_gap_is_read_again_and_the_rereads_are_bounded() {
        let fake = Fake::default();
        let mut g = guard(true);
        g.assigned(1, Some(20_000));
        // The fetch skipped 20 000..20 004 (the rest of a producer batch).
        let out = g.admit(&fake, records(1, [20_005, 20_006])).await;
        assert!(out.is_empty());
        assert_eq!(*fake.seeks.lock().unwrap(), vec![(1, 10_000)]);
        // The re-read delivers them.
        let out = g.admit(&fake, records(1, 19_990..20_008)).await;
        assert_eq!(offsets(&out), (20_000..20_008).collect::<Vec<_>>());
        assert_eq!(g.health.skipped_records(), 0);

        // A gap that never fills: each attempt goes further back, then the
        // guard gives up and counts it.
        let out = g.admit(&fake, records(1, [20_010])).await;
        assert!(out.is_empty());
        let out = g.admit(&fake, records(1, [20_010])).await;
        assert!(out.is_empty());
        let out = g.admit(&fake, records(1, [20_010])).await;
        assert!(out.is_empty());
        let out = g.admit(&fake, records(1, [20_010, 20_011])).await;
        assert_eq!(offsets(&out), vec![20_010, 20_011]);
        assert_eq!(g.health.skipped_records(), 2);
        let seeks: Vec<i64> = fake
            .seeks
            .lock()
            .unwrap()
            .iter()
            .skip(1)
            .map(|s| s.1)
            .collect();
        assert_eq!(seeks, vec![10_008, 8, 0]);
    }

    #[tokio::test]
    async fn a_gap_done_by_another_member_is_not_a_gap() {
        let fake = Fake::default();
        fake.committed.lock().unwrap().insert(2, 50);
        let mut g = guard(true);
        g.assigned(2, Some(40));
        let out = g.admit(&fake, records(2, [50, 51])).await;
        assert_eq!(offsets(&out), vec![50, 51]);
        assert_eq!(g.health.skipped_records(), 0);
        assert!(fake.seeks.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn partitions_are_independent_and_a_new_group_starts_anywhere() {
        let fake = Fake::default();
        let mut g = guard(true);
        g.assigned(0, Some(3));
        g.assigned(1, None);
        let mut batch = records(1, [7, 8]);
        batch.extend(records(0, [3, 4]));
        let out = g.admit(&fake, batch).await;
        assert_eq!(out.len(), 4);
        assert_eq!(g.positions(), HashMap::from([(0, 5), (1, 9)]));
    }

    #[test]
    fn the_watchdog_looks_often_enough() {
        assert_eq!(
            Watchdog::new(Duration::from_secs(30)).check_every(),
            Duration::from_secs(5)
        );
        assert_eq!(
            Watchdog::new(Duration::from_secs(2)).check_every(),
            Duration::from_millis(500)
        );
    }

    fn sample(partition: i32, position: i64, waiting: i64) -> Sample {
        Sample {
            partition,
            position,
            waiting,
        }
    }

    #[test]
    fn a_partition_with_records_waiting_that_does_not_move_is_a_stall() {
        let t = Duration::from_secs(30);
        let mut w = Watchdog::new(t);
        let start = Instant::now();
        assert_eq!(w.observe(&[sample(0, 0, 0)], start), Verdict::Drained);
        let samples = [sample(0, 10, 5), sample(1, 7, 0)];
        assert_eq!(w.observe(&samples, start), Verdict::Moving);
        assert_eq!(w.observe(&samples, start + t / 2), Verdict::Moving);
        assert_eq!(
            w.observe(&samples, start + t),
            Verdict::Stalled(vec![sample(0, 10, 5)])
        );
    }

    #[test]
    fn a_partition_that_moves_or_drains_is_not_a_stall() {
        let t = Duration::from_secs(30);
        let mut w = Watchdog::new(t);
        let start = Instant::now();
        assert_eq!(w.observe(&[sample(0, 10, 500)], start), Verdict::Moving);
        assert_eq!(w.observe(&[sample(0, 20, 490)], start + t), Verdict::Moving);
        assert_eq!(
            w.observe(&[sample(0, 20, 490)], start + t + t / 2),
            Verdict::Moving
        );
        assert_eq!(
            w.observe(&[sample(0, 20, 0)], start + 3 * t),
            Verdict::Drained
        );
        assert_eq!(
            w.observe(&[sample(0, 20, 3)], start + 3 * t),
            Verdict::Moving
        );
    }

    #[test]
    fn after_a_rejoin_that_did_not_help_the_next_waits_longer() {
        let t = Duration::from_secs(10);
        let mut w = Watchdog::new(t);
        let start = Instant::now();
        let stuck = [sample(3, 100, 50)];
        w.observe(&stuck, start);
        assert!(matches!(w.observe(&stuck, start + t), Verdict::Stalled(_)));
        w.rejoined(start + t);
        // A new window of t, and quiet for t.
        assert_eq!(w.observe(&stuck, start + t), Verdict::Moving);
        assert!(matches!(
            w.observe(&stuck, start + 2 * t),
            Verdict::Stalled(_)
        ));
        w.rejoined(start + 2 * t);
        // Quiet for 2t now.
        w.observe(&stuck, start + 2 * t);
        assert_eq!(w.observe(&stuck, start + 3 * t), Verdict::Moving);
        assert!(matches!(
            w.observe(&stuck, start + 4 * t),
            Verdict::Stalled(_)
        ));
        w.rejoined(start + 4 * t);
        w.worked();
        assert_eq!(w.backoff, t, "a batch done resets the wait");
    }
}
