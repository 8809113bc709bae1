use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::domain::{FailureReason, OmsResult, OrderTrace, TraceState};
use crate::port::outbound::{
    DeadLetter, OrderBacklog, OrderRequestPublisher, OrderStore, TraceStore,
};

/// When the sweeper looks and what it calls stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// A trace PROCESSING for longer than this is stuck. Keep it well above
    /// the publisher's send bound (a few seconds), so that no record can
    /// still be on its way to the queue.
    pub older_than: Duration,
    /// Time between sweeps.
    pub every: Duration,
    /// Most traces one sweep resolves (and most DLQ records one relay
    /// sends).
    pub batch: usize,
    /// A FAILED outcome whose DLQ record is still unconfirmed this long
    /// after it was recorded is relayed from the outbox (see
    /// [`TraceSweeper::relay_dead_letters`]); well above the time the
    /// consumer and the gate keeper take to send their own.
    pub relay_after: Duration,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        Self {
            older_than: Duration::from_secs(300),
            every: Duration::from_secs(30),
            batch: 1000,
            relay_after: Duration::from_secs(60),
        }
    }
}

impl SweepPolicy {
    /// A policy for traces stuck longer than `older_than`, sweeping every
    /// tenth of that (between 1 s and 60 s).
    pub fn after(older_than: Duration) -> Self {
        Self {
            older_than,
            every: (older_than / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)),
            relay_after: older_than.min(Duration::from_secs(60)),
            ..Self::default()
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Stuck traces found.
    pub stuck: usize,
    /// Resolved from an outcome the database had (the cache write was lost).
    pub repaired: usize,
    /// Failed as [`FailureReason::Lost`]: no outcome, and the queue drained.
    pub lost: usize,
    /// Left PROCESSING: no outcome yet, and the consumers are behind.
    pub waiting: usize,
}

/// Resolves traces stuck in PROCESSING.
///
/// A trace can stay PROCESSING when a process dies between two writes: the
/// consumer committed the outcome but not the cached trace, or the API saved
/// the trace but never queued the record. For every trace PROCESSING longer
/// than [`SweepPolicy::older_than`]:
///
/// * if the database has its outcome, the trace is repaired from it;
/// * else, if the consumers have drained the queue (the
///   [`OrderBacklog`] is zero), its record is provably gone — every record
///   queued before it has a durable outcome — so a FAILED outcome with reason
///   `LOST` is settled in the database (first writer wins, so a late delivery
///   can never place it afterwards), a DLQ record is sent, and the trace is
///   written;
/// * else it is left for the consumers.
///
/// Several sweepers may run at once (one per consumer process): settling is
/// idempotent in the database.
pub struct TraceSweeper {
    traces: Arc<dyn TraceStore>,
    store: Arc<dyn OrderStore>,
    backlog: Arc<dyn OrderBacklog>,
    publisher: Arc<dyn OrderRequestPublisher>,
    policy: SweepPolicy,
}

impl TraceSweeper {
    /// A sweeper on these ports.
    pub fn new(
        traces: Arc<dyn TraceStore>,
        store: Arc<dyn OrderStore>,
        backlog: Arc<dyn OrderBacklog>,
        publisher: Arc<dyn OrderRequestPublisher>,
        policy: SweepPolicy,
    ) -> Self {
        Self {
            traces,
            store,
            backlog,
            publisher,
            policy,
        }
    }

    /// One sweep.
    pub async fn sweep(&self) -> OmsResult<SweepReport> {
        let stuck = self
            .traces
            .stale_processing(self.policy.older_than, self.policy.batch)
            .await?;
        let mut report = SweepReport {
            stuck: stuck.len(),
            ..SweepReport::default()
        };
        if stuck.is_empty() {
            return Ok(report);
        }
        // Read the backlog after the traces were old enough: a record queued
        // before this call either counts in it or has its outcome.
        let drained = self.backlog.pending().await? == 0;
        for trace in stuck {
            if drained {
                self.settle(trace, &mut report).await?;
            } else if let Some(outcome) = self.store.outcome(trace.trace_id).await? {
                self.traces.save(&outcome).await?;
                report.repaired += 1;
            } else {
                report.waiting += 1;
            }
        }
        if report.repaired + report.lost > 0 {
            info!(?report, "stuck traces resolved");
            let actions = crate::observe::names::SWEEPER_ACTIONS;
            metrics::counter!(actions, "action" => "failed").increment(report.lost as u64);
            metrics::counter!(actions, "action" => "repaired").increment(report.repaired as u64);
        }
        Ok(report)
    }

    async fn settle(&self, trace: OrderTrace, report: &mut SweepReport) -> OmsResult<()> {
        let lost = OrderTrace {
            state: TraceState::Failed {
                reason: FailureReason::Lost,
            },
            ..trace
        };
        let settled = self.store.settle_failure(&lost, true).await?;
        if settled.needs_dead_letter {
            let letter = DeadLetter::for_trace(&settled.trace)?;
            super::send_dead_letter(self.publisher.as_ref(), &letter).await?;
            self.store.mark_dead_lettered(&[trace.trace_id]).await?;
        }
        self.traces.save(&settled.trace).await?;
        if settled.replayed {
            report.repaired += 1;
        } else {
            warn!(trace_id = %trace.trace_id, "order record lost before processing; failed as LOST");
            report.lost += 1;
        }
        Ok(())
    }

    /// Relays the DLQ outbox: sends the DLQ record of every FAILED outcome
    /// older than [`SweepPolicy::relay_after`] whose record is not confirmed
    /// (a send that failed, a crash between the send and the confirmation,
    /// an order the queue did not take), with the outcome's own reason, and
    /// confirms it; returns how many it sent. At least once: a record sent
    /// whose confirmation is lost is sent again, with the same trace id.
    pub async fn relay_dead_letters(&self) -> OmsResult<usize> {
        let due = self
            .store
            .undead_lettered(self.policy.relay_after, self.policy.batch)
            .await?;
        let mut sent = Vec::with_capacity(due.len());
        let mut failure = None;
        for trace in &due {
            let letter = DeadLetter::for_trace(trace)?;
            match super::send_dead_letter(self.publisher.as_ref(), &letter).await {
                Ok(()) => sent.push(trace.trace_id),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !sent.is_empty() {
            self.store.mark_dead_lettered(&sent).await?;
            info!(count = sent.len(), "unconfirmed DLQ records relayed");
            metrics::counter!(crate::observe::names::SWEEPER_ACTIONS, "action" => "relayed")
                .increment(sent.len() as u64);
        }
        failure.map_or(Ok(sent.len()), Err)
    }

    /// Sweeps every [`SweepPolicy::every`] until `shutdown` completes. A
    /// sweep that fails (a dependency down) is logged and tried again on
    /// the next tick.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.policy.every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        warn!(error = %e, "sweep failed; trying again later");
                    }
                    if let Err(e) = self.relay_dead_letters().await {
                        warn!(error = %e, "DLQ outbox not relayed; trying again later");
                    }
                }
                () = &mut shutdown => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberId, OrderCommand, ProductDraft, ProductId};
    use crate::memory::{InMemoryOrderQueue, InMemoryStore, InMemoryTraceStore};
    use crate::port::outbound::{MockOrderBacklog, ProductStore};

    fn command() -> OrderCommand {
        crate::testkit::command(MemberId(9), &[(ProductId(1), 1)])
    }

    fn backlog(pending: u64) -> Arc<MockOrderBacklog> {
        let mut b = MockOrderBacklog::new();
        b.expect_pending().returning(move || Ok(pending));
        Arc::new(b)
    }

    #[tokio::test]
    async fn stuck_traces_are_repaired_failed_or_left_waiting() {
        let store = Arc::new(InMemoryStore::new());
        store
            .create(
                &ProductDraft {
                    name: "A".into(),
                    price: 10,
                    stock: 5,
                    rules: Default::default(),
                }
                .into_product(ProductId(1)),
            )
            .await
            .unwrap();
        let traces = Arc::new(InMemoryTraceStore::new());
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        // Placed, but its final trace was never cached.
        let placed = command();
        let outcome = store
            .place_batch(std::slice::from_ref(&placed))
            .await
            .unwrap()[0]
            .trace;
        traces
            .save(&OrderTrace::processing(placed.trace_id, placed.member_id))
            .await
            .unwrap();
        // Accepted, never queued.
        let gone = command();
        traces
            .save(&OrderTrace::processing(gone.trace_id, gone.member_id))
            .await
            .unwrap();
        let sweeper = |pending| {
            TraceSweeper::new(
                traces.clone(),
                store.clone(),
                backlog(pending),
                queue.clone(),
                SweepPolicy::after(Duration::ZERO),
            )
        };

        // The consumers are behind: repair what the database knows, wait for the rest.
        let report = sweeper(3).sweep().await.unwrap();
        assert_eq!(
            report,
            SweepReport {
                stuck: 2,
                repaired: 1,
                lost: 0,
                waiting: 1
            }
        );
        assert_eq!(traces.get(placed.trace_id).await.unwrap(), Some(outcome));
        assert_eq!(
            traces.get(gone.trace_id).await.unwrap().unwrap().state,
            TraceState::Processing
        );

        // Drained: the record is provably gone.
        let report = sweeper(0).sweep().await.unwrap();
        assert_eq!(
            report,
            SweepReport {
                stuck: 1,
                repaired: 0,
                lost: 1,
                waiting: 0
            }
        );
        let failed = TraceState::Failed {
            reason: FailureReason::Lost,
        };
        assert_eq!(
            traces.get(gone.trace_id).await.unwrap().unwrap().state,
            failed
        );
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (letters[0].reason, letters[0].trace_id),
            (FailureReason::Lost, Some(gone.trace_id))
        );

        // A late delivery cannot place it; nothing is left to sweep.
        let late = store.place_batch(&[gone]).await.unwrap();
        assert!(late[0].replayed);
        assert_eq!(late[0].trace.state, failed);
        assert_eq!(store.get(ProductId(1)).await.unwrap().unwrap().stock, 4);
        assert_eq!(sweeper(0).sweep().await.unwrap(), SweepReport::default());
        assert_eq!(queue.dead_letters().len(), 1);
    }

    #[tokio::test]
    async fn a_sweeper_that_lost_the_race_sends_no_second_dead_letter() {
        let store = Arc::new(InMemoryStore::new());
        let traces = Arc::new(InMemoryTraceStore::new());
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let gone = command();
        traces
            .save(&OrderTrace::processing(gone.trace_id, gone.member_id))
            .await
            .unwrap();
        let sweeper = TraceSweeper::new(
            traces.clone(),
            store.clone(),
            backlog(0),
            queue.clone(),
            SweepPolicy::after(Duration::ZERO),
        );
        sweeper.sweep().await.unwrap();
        // Another sweeper saw the trace PROCESSING before the first wrote it.
        traces
            .save(&OrderTrace::processing(gone.trace_id, gone.member_id))
            .await
            .unwrap();
        let report = sweeper.sweep().await.unwrap();
        assert_eq!(report.repaired, 1);
        assert_eq!(queue.dead_letters().len(), 1);
    }

    #[tokio::test]
    async fn the_outbox_relay_sends_each_unconfirmed_failure_with_its_own_reason() {
        let store = Arc::new(InMemoryStore::new());
        let traces = Arc::new(InMemoryTraceStore::new());
        let (queue, _rx) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let not_accepted = OrderTrace {
            trace_id: crate::domain::TraceId::new(),
            member_id: MemberId(3),
            state: TraceState::Failed {
                reason: FailureReason::NotAccepted,
            },
        };
        store.settle_failure(&not_accepted, true).await.unwrap();
        let policy = SweepPolicy {
            relay_after: Duration::ZERO,
            ..SweepPolicy::default()
        };
        let sweeper = TraceSweeper::new(traces, store.clone(), backlog(0), queue.clone(), policy);
        assert_eq!(sweeper.relay_dead_letters().await.unwrap(), 1);
        assert_eq!(
            sweeper.relay_dead_letters().await.unwrap(),
            0,
            "confirmed once sent"
        );
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, FailureReason::NotAccepted);
        assert_eq!(letters[0].trace_id, Some(not_accepted.trace_id));
    }
}
