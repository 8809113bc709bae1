use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oms_core::domain::{OmsError, OmsResult};
use oms_core::port::inbound::OrderUseCase;
use oms_core::port::outbound::{decode_command, DeadLetter};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message};
use tracing::{debug, error, info, warn};

use crate::{unavailable, KafkaConfig};

/// The Kafka consumer driver: reads the order topic as a member of the
/// consumer group and feeds batches to an [`OrderUseCase`].
pub struct KafkaOrderConsumer {
    consumer: StreamConsumer,
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
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(unavailable)?;
        consumer
            .subscribe(&[&config.order_topic])
            .map_err(unavailable)?;
        Ok(Self {
            consumer,
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
        while !stopping {
            let first = tokio::select! {
                m = self.consumer.recv() => m,
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
