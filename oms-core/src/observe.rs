//! Metrics and spans through the ports.
//!
//! [`Observed`] wraps any implementation of a port, the in-memory ones,
//! the reference adapters or a user's own, and measures every call through
//! the [`metrics`] facade, in a span of its own (the style of tower's layers
//! and object_store's `LimitStore`). Without a recorder installed the
//! facade does nothing, so the wrapper costs a few nanoseconds per call; the
//! facade crate `oms` installs a Prometheus recorder and serves it at
//! `/metrics`.
//!
//! The names of every metric oms records are in [`names`];
//! [`describe`] gives each its help text.
//!
//! ```
//! use std::sync::Arc;
//! use oms_core::memory::InMemoryStore;
//! use oms_core::observe::Observed;
//! use oms_core::port::outbound::OrderStore;
//!
//! let store: Arc<dyn OrderStore> = Arc::new(Observed::new(Arc::new(InMemoryStore::new())));
//! # let _ = store;
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};

use async_trait::async_trait;
use tracing::Instrument;

use crate::domain::{
    Caller, FailureReason, MemberId, OmsError, OmsResult, Order, OrderCommand, OrderId, OrderLine,
    OrderPage, OrderRequest, OrderTrace, Placement, ProductId, Purchase, RoomStatus, TraceId,
    TraceState,
};
use crate::port::inbound::{OrderUseCase, RequestOrderUseCase};
use crate::port::outbound::{
    Admission, DeadLetter, GateLevel, IntakeChecks, Occupancy, OrderRequestPublisher, OrderStore,
    Refusal, StockGate, WaitingRoom,
};

/// The names of the metrics oms records (Prometheus conventions: `_total`
/// for counters, `_seconds` for durations).
pub mod names {
    /// Counter: orders intake accepted (202), by `state` of the answer
    /// (`PROCESSING`, or `FAILED` when the stock gate refused at once).
    pub const INTAKE_ACCEPTED: &str = "oms_intake_accepted_total";
    /// Counter: order requests intake refused, by `reason` (the problem
    /// code: `RATE_LIMITED`, `NOT_ADMITTED`, `LIMIT_EXCEEDED`, …).
    pub const INTAKE_REFUSED: &str = "oms_intake_refused_total";
    /// Histogram: time to accept or refuse an order request, in seconds.
    pub const INTAKE_SECONDS: &str = "oms_intake_seconds";
    /// Counter: stock-gate decisions, by `result` (`reserved`, `refused`,
    /// `over_limit`, `rate_limited`, `not_admitted`, `error`).
    pub const GATE_DECISIONS: &str = "oms_gate_decisions_total";
    /// Counter: records sent to the order queue, by `result` (`ok`,
    /// `error`).
    pub const QUEUE_SENDS: &str = "oms_queue_sends_total";
    /// Histogram: time until the queue durably took a record, in seconds.
    pub const QUEUE_SEND_SECONDS: &str = "oms_queue_send_seconds";
    /// Counter: records sent to the dead-letter queue, by `reason`.
    pub const DLQ_RECORDS: &str = "oms_dlq_records_total";
    /// Counter: final outcomes recorded in the order store, by `status`
    /// (`COMPLETED`, `FAILED`) and, for FAILED, `reason`. Each trace is
    /// counted once: outcomes replayed from an earlier delivery are not.
    pub const ORDERS_FINAL: &str = "oms_orders_final_total";
    /// Histogram: orders per batch the consumer processes.
    pub const CONSUMER_BATCH_SIZE: &str = "oms_consumer_batch_size";
    /// Histogram: time to process one consumer batch, in seconds.
    pub const CONSUMER_BATCH_SECONDS: &str = "oms_consumer_batch_seconds";
    /// Histogram: time of one `place_batch` transaction, in seconds.
    pub const PLACE_BATCH_SECONDS: &str = "oms_store_place_batch_seconds";
    /// Counter: batches that lost their optimistic lock (the version of a
    /// product moved) and were rolled back.
    pub const LOCK_CONFLICTS: &str = "oms_store_lock_conflicts_total";
    /// Counter: batches tried again after losing their optimistic lock.
    pub const LOCK_RETRIES: &str = "oms_consumer_lock_retries_total";
    /// Gauge: records of the order topic not yet consumed, by `topic` and
    /// `partition` (the consumer's lag).
    pub const CONSUMER_LAG: &str = "oms_consumer_lag";
    /// Gauge: available units in the stock gate, by `product_id`.
    pub const GATE_LEVEL: &str = "oms_gate_level";
    /// Counter: the gate keeper's actions, by `action` (`settled`:
    /// refusals recorded and dead-lettered; `reconciled`: gates set from
    /// the database).
    pub const GATE_KEEPER_ACTIONS: &str = "oms_gate_keeper_actions_total";
    /// Gauge: refusals in the stock gate's journal not yet settled (read
    /// by the gate keeper each round).
    pub const GATE_REFUSALS_WAITING: &str = "oms_gate_refusals_waiting";
    /// Counter: the sweeper's actions, by `action` (`failed`: stuck
    /// traces failed `NOT_ACCEPTED`; `repaired`: traces restored from the
    /// database; `relayed`: DLQ records re-sent from the outbox).
    pub const SWEEPER_ACTIONS: &str = "oms_sweeper_actions_total";
    /// Counter: the life-cycle keeper's actions, by `action` (`expired`,
    /// `reconciled`, `events_published`).
    pub const LIFECYCLE_ACTIONS: &str = "oms_lifecycle_actions_total";
    /// Gauge: members waiting in line in the waiting room.
    pub const ROOM_WAITING: &str = "oms_waiting_room_waiting";
    /// Gauge: members admitted by the waiting room now.
    pub const ROOM_ADMITTED: &str = "oms_waiting_room_admitted";
    /// Counter: members the waiting room's admitter let in.
    pub const ROOM_ADMISSIONS: &str = "oms_waiting_room_admissions_total";
    /// Histogram: duration of HTTP requests, by `method`, matched `route`
    /// and `status`, in seconds.
    pub const HTTP_SECONDS: &str = "oms_http_request_seconds";

    /// Every name above.
    pub const ALL: &[&str] = &[
        INTAKE_ACCEPTED,
        INTAKE_REFUSED,
        INTAKE_SECONDS,
        GATE_DECISIONS,
        QUEUE_SENDS,
        QUEUE_SEND_SECONDS,
        DLQ_RECORDS,
        ORDERS_FINAL,
        CONSUMER_BATCH_SIZE,
        CONSUMER_BATCH_SECONDS,
        PLACE_BATCH_SECONDS,
        LOCK_CONFLICTS,
        LOCK_RETRIES,
        CONSUMER_LAG,
        GATE_LEVEL,
        GATE_KEEPER_ACTIONS,
        GATE_REFUSALS_WAITING,
        SWEEPER_ACTIONS,
        LIFECYCLE_ACTIONS,
        ROOM_WAITING,
        ROOM_ADMITTED,
        ROOM_ADMISSIONS,
        HTTP_SECONDS,
    ];
}

/// Gives every metric of [`names`] its help text and unit in the installed
/// recorder. Call it once after installing one.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_counter!(
        INTAKE_ACCEPTED,
        "Orders accepted at intake (202), by the state answered"
    );
    describe_counter!(
        INTAKE_REFUSED,
        "Order requests refused at intake, by reason"
    );
    describe_histogram!(
        INTAKE_SECONDS,
        Unit::Seconds,
        "Time to accept or refuse an order request"
    );
    describe_counter!(GATE_DECISIONS, "Stock gate decisions, by result");
    describe_counter!(QUEUE_SENDS, "Records sent to the order queue, by result");
    describe_histogram!(
        QUEUE_SEND_SECONDS,
        Unit::Seconds,
        "Time until the queue durably took a record"
    );
    describe_counter!(
        DLQ_RECORDS,
        "Records sent to the dead-letter queue, by reason"
    );
    describe_counter!(
        ORDERS_FINAL,
        "Final outcomes recorded, by status and reason (each trace once)"
    );
    describe_histogram!(
        CONSUMER_BATCH_SIZE,
        Unit::Count,
        "Orders per consumer batch"
    );
    describe_histogram!(
        CONSUMER_BATCH_SECONDS,
        Unit::Seconds,
        "Time to process one consumer batch"
    );
    describe_histogram!(
        PLACE_BATCH_SECONDS,
        Unit::Seconds,
        "Time of one place_batch transaction"
    );
    describe_counter!(LOCK_CONFLICTS, "Batches that lost their optimistic lock");
    describe_counter!(
        LOCK_RETRIES,
        "Batches tried again after losing their optimistic lock"
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Records of the order topic not yet consumed, per partition"
    );
    describe_gauge!(
        GATE_LEVEL,
        Unit::Count,
        "Available units in the stock gate, per product"
    );
    describe_counter!(GATE_KEEPER_ACTIONS, "Gate keeper actions, by action");
    describe_gauge!(
        GATE_REFUSALS_WAITING,
        Unit::Count,
        "Refusals of the stock gate not yet settled"
    );
    describe_counter!(SWEEPER_ACTIONS, "Sweeper actions, by action");
    describe_counter!(LIFECYCLE_ACTIONS, "Life-cycle keeper actions, by action");
    describe_gauge!(ROOM_WAITING, Unit::Count, "Members waiting in line");
    describe_gauge!(ROOM_ADMITTED, Unit::Count, "Members admitted now");
    describe_counter!(ROOM_ADMISSIONS, "Members the admitter let in");
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "Duration of HTTP requests, by method, route and status"
    );
}

/// Counts the final outcomes among `placements` that are new: one counter
/// update per status and reason of the batch, not one per order.
fn count_finals(placements: &[Placement]) {
    let mut completed = 0;
    let mut failed: Vec<(FailureReason, u64)> = Vec::new();
    for placement in placements.iter().filter(|p| !p.replayed) {
        match placement.trace.state {
            TraceState::Completed { .. } => completed += 1,
            TraceState::Failed { reason } => match failed.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => failed.push((reason, 1)),
            },
            TraceState::Processing => {}
        }
    }
    if completed > 0 {
        metrics::counter!(names::ORDERS_FINAL, "status" => "COMPLETED").increment(completed);
    }
    for (reason, n) in failed {
        metrics::counter!(names::ORDERS_FINAL, "status" => "FAILED", "reason" => reason.as_str())
            .increment(n);
    }
}

fn seconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// Records a level of the stock gate (what
/// [`GaugeSampler`](crate::application::GaugeSampler) reads).
pub fn record_gate_level(product_id: ProductId, available: i64) {
    metrics::gauge!(names::GATE_LEVEL, "product_id" => product_id.0.to_string())
        .set(available as f64);
}

/// Records the occupancy of the waiting room.
pub fn record_occupancy(occupancy: Occupancy) {
    metrics::gauge!(names::ROOM_WAITING).set(occupancy.waiting as f64);
    metrics::gauge!(names::ROOM_ADMITTED).set(occupancy.admitted as f64);
}

/// Records the lag of a consumer on one partition.
pub fn record_lag(topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(names::CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// The handles of the metrics recorded on every order, registered once:
/// recording through a handle skips building the metric's key and looking
/// it up in the recorder.
struct Handles {
    intake_seconds: Histogram,
    /// By state: PROCESSING, FAILED, COMPLETED.
    accepted: [Counter; 3],
    /// By [`gate_result`] index.
    gate: [Counter; 6],
    queue_ok: Counter,
    queue_error: Counter,
    queue_seconds: Histogram,
}

const GATE_RESULTS: [&str; 6] = [
    "reserved",
    "refused",
    "over_limit",
    "rate_limited",
    "not_admitted",
    "error",
];

fn gate_result(admitted: &OmsResult<Admission>) -> usize {
    match admitted {
        Ok(Admission::Reserved) => 0,
        Ok(Admission::Refused { .. }) => 1,
        Ok(Admission::OverLimit { .. }) => 2,
        Ok(Admission::RateLimited { .. }) => 3,
        Ok(Admission::NotAdmitted) => 4,
        Err(_) => 5,
    }
}

impl Handles {
    fn new() -> Self {
        Self {
            intake_seconds: metrics::histogram!(names::INTAKE_SECONDS),
            accepted: ["PROCESSING", "FAILED", "COMPLETED"]
                .map(|state| metrics::counter!(names::INTAKE_ACCEPTED, "state" => state)),
            gate: GATE_RESULTS
                .map(|result| metrics::counter!(names::GATE_DECISIONS, "result" => result)),
            queue_ok: metrics::counter!(names::QUEUE_SENDS, "result" => "ok"),
            queue_error: metrics::counter!(names::QUEUE_SENDS, "result" => "error"),
            queue_seconds: metrics::histogram!(names::QUEUE_SEND_SECONDS),
        }
    }
}

/// A port implementation, measured: every call is counted and timed in the
/// [`names`] metrics and runs in a `debug` span named after the port and
/// the operation. Implements each port its inner value implements.
///
/// The metrics recorded on every order are registered at the wrapper's
/// first call: install the recorder before.
pub struct Observed<T: ?Sized> {
    inner: Arc<T>,
    handles: Arc<OnceLock<Handles>>,
}

impl<T: ?Sized> std::fmt::Debug for Observed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl<T: ?Sized> Clone for Observed<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            handles: self.handles.clone(),
        }
    }
}

impl<T: ?Sized> Observed<T> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<T>) -> Self {
        Self {
            inner,
            handles: Arc::new(OnceLock::new()),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(Handles::new)
    }

    /// The wrapped implementation.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }
}

#[async_trait]
impl<T: RequestOrderUseCase + ?Sized> RequestOrderUseCase for Observed<T> {
    async fn request_order(
        &self,
        caller: Caller,
        request: OrderRequest,
        idempotency_key: Option<String>,
    ) -> OmsResult<OrderTrace> {
        let started = Instant::now();
        let span = tracing::debug_span!(
            "request_order",
            member_id = caller.member_id.0,
            trace_id = tracing::field::Empty
        );
        let answer = self
            .inner
            .request_order(caller, request, idempotency_key)
            .instrument(span.clone())
            .await;
        let handles = self.handles();
        handles.intake_seconds.record(seconds(started));
        match &answer {
            Ok(trace) => {
                span.record("trace_id", tracing::field::display(trace.trace_id));
                let state = match trace.state {
                    TraceState::Processing => 0,
                    TraceState::Failed { .. } => 1,
                    TraceState::Completed { .. } => 2,
                };
                handles.accepted[state].increment(1);
            }
            Err(e) => {
                metrics::counter!(names::INTAKE_REFUSED, "reason" => e.kind()).increment(1);
            }
        }
        answer
    }
}

#[async_trait]
impl<T: OrderUseCase + ?Sized> OrderUseCase for Observed<T> {
    async fn process(&self, batch: Vec<OrderCommand>) -> OmsResult<Vec<Placement>> {
        let started = Instant::now();
        let size = batch.len();
        let span = tracing::info_span!(
            "consumer_batch",
            size,
            first_trace_id = batch.first().map(|c| tracing::field::display(c.trace_id)),
        );
        let traces: Option<Vec<TraceId>> = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| batch.iter().map(|c| c.trace_id).collect());
        let placed = self.inner.process(batch).instrument(span.clone()).await;
        if let Some(traces) = traces {
            if let Ok(placements) = &placed {
                let _batch = span.enter();
                for (trace_id, placement) in traces.iter().zip(placements) {
                    tracing::debug!(
                        %trace_id,
                        traceparent = trace_id.traceparent(),
                        state = ?placement.trace.state,
                        replayed = placement.replayed,
                        "order processed"
                    );
                }
            }
        }
        metrics::histogram!(names::CONSUMER_BATCH_SIZE).record(size as f64);
        metrics::histogram!(names::CONSUMER_BATCH_SECONDS).record(seconds(started));
        placed
    }

    async fn reject(&self, letter: DeadLetter) -> OmsResult<()> {
        self.inner.reject(letter).await
    }
}

#[async_trait]
impl<T: OrderRequestPublisher + ?Sized> OrderRequestPublisher for Observed<T> {
    async fn send(&self, command: &OrderCommand) -> OmsResult<()> {
        let started = Instant::now();
        let span = tracing::debug_span!("queue.send", trace_id = %command.trace_id);
        let sent = self.inner.send(command).instrument(span).await;
        let handles = self.handles();
        match &sent {
            Ok(()) => handles.queue_ok.increment(1),
            Err(_) => handles.queue_error.increment(1),
        }
        handles.queue_seconds.record(seconds(started));
        sent
    }

    async fn send_to_dlq(&self, letter: &DeadLetter) -> OmsResult<()> {
        let span = tracing::debug_span!(
            "queue.send_to_dlq",
            trace_id = letter.trace_id.map(tracing::field::display),
            reason = letter.reason.as_str()
        );
        let sent = self.inner.send_to_dlq(letter).instrument(span).await;
        if sent.is_ok() {
            metrics::counter!(names::DLQ_RECORDS, "reason" => letter.reason.as_str()).increment(1);
        }
        sent
    }
}

#[async_trait]
impl<T: OrderStore + ?Sized> OrderStore for Observed<T> {
    async fn place_batch(&self, commands: &[OrderCommand]) -> OmsResult<Vec<Placement>> {
        let started = Instant::now();
        let span = tracing::debug_span!("order_store.place_batch", size = commands.len());
        let placed = self.inner.place_batch(commands).instrument(span).await;
        metrics::histogram!(names::PLACE_BATCH_SECONDS).record(seconds(started));
        match &placed {
            Ok(placements) => count_finals(placements),
            Err(OmsError::Conflict(_)) => metrics::counter!(names::LOCK_CONFLICTS).increment(1),
            Err(_) => {}
        }
        placed
    }

    async fn settle_failure(&self, trace: &OrderTrace, dead_letter: bool) -> OmsResult<Placement> {
        let span = tracing::debug_span!("order_store.settle_failure", trace_id = %trace.trace_id);
        let settled = self
            .inner
            .settle_failure(trace, dead_letter)
            .instrument(span)
            .await;
        if let Ok(placement) = &settled {
            count_finals(std::slice::from_ref(placement));
        }
        settled
    }

    async fn settle_failures(&self, traces: &[OrderTrace]) -> OmsResult<Vec<Placement>> {
        let span = tracing::debug_span!("order_store.settle_failures", size = traces.len());
        let settled = self.inner.settle_failures(traces).instrument(span).await;
        if let Ok(placements) = &settled {
            count_finals(placements);
        }
        settled
    }

    async fn mark_dead_lettered(&self, trace_ids: &[TraceId]) -> OmsResult<()> {
        self.inner.mark_dead_lettered(trace_ids).await
    }

    async fn outcome(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>> {
        self.inner.outcome(trace_id).await
    }

    async fn order(&self, order_id: OrderId) -> OmsResult<Option<Order>> {
        self.inner.order(order_id).await
    }

    async fn orders_of(&self, member_id: MemberId, page: OrderPage) -> OmsResult<Vec<Order>> {
        self.inner.orders_of(member_id, page).await
    }

    async fn trace_for_key(&self, member_id: MemberId, key: &str) -> OmsResult<Option<TraceId>> {
        self.inner.trace_for_key(member_id, key).await
    }

    async fn undead_lettered(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>> {
        self.inner.undead_lettered(older_than, limit).await
    }
}

#[async_trait]
impl<T: StockGate + ?Sized> StockGate for Observed<T> {
    async fn admit(&self, command: &OrderCommand, checks: &IntakeChecks) -> OmsResult<Admission> {
        let span = tracing::debug_span!("stock_gate.admit", trace_id = %command.trace_id);
        let admitted = self.inner.admit(command, checks).instrument(span).await;
        self.handles().gate[gate_result(&admitted)].increment(1);
        admitted
    }

    async fn release(&self, member_id: MemberId, lines: &[OrderLine]) -> OmsResult<()> {
        self.inner.release(member_id, lines).await
    }

    async fn give_back_purchases(
        &self,
        member_id: MemberId,
        units: &[(ProductId, i64)],
    ) -> OmsResult<()> {
        self.inner.give_back_purchases(member_id, units).await
    }

    async fn set_purchases(&self, product_id: ProductId, purchases: &[Purchase]) -> OmsResult<()> {
        self.inner.set_purchases(product_id, purchases).await
    }

    async fn set_available(&self, levels: &[GateLevel], overwrite: bool) -> OmsResult<()> {
        self.inner.set_available(levels, overwrite).await
    }

    async fn adjust(&self, level: GateLevel, delta: i64) -> OmsResult<()> {
        self.inner.adjust(level, delta).await
    }

    async fn available(&self, product_id: ProductId) -> OmsResult<Option<i64>> {
        let available = self.inner.available(product_id).await;
        if let Ok(Some(units)) = &available {
            record_gate_level(product_id, *units);
        }
        available
    }

    async fn refusals(&self, limit: usize) -> OmsResult<Vec<Refusal>> {
        self.inner.refusals(limit).await
    }

    async fn settled(&self, ids: &[String]) -> OmsResult<()> {
        self.inner.settled(ids).await
    }

    async fn refusals_waiting(&self) -> OmsResult<u64> {
        let waiting = self.inner.refusals_waiting().await;
        if let Ok(n) = &waiting {
            metrics::gauge!(names::GATE_REFUSALS_WAITING).set(*n as f64);
        }
        waiting
    }
}

#[async_trait]
impl<T: WaitingRoom + ?Sized> WaitingRoom for Observed<T> {
    async fn enter(&self, member_id: MemberId) -> OmsResult<RoomStatus> {
        self.inner.enter(member_id).await
    }

    async fn status(&self, member_id: MemberId) -> OmsResult<Option<RoomStatus>> {
        self.inner.status(member_id).await
    }

    async fn admit(&self) -> OmsResult<u64> {
        let admitted = self.inner.admit().await;
        if let Ok(n) = &admitted {
            metrics::counter!(names::ROOM_ADMISSIONS).increment(*n);
        }
        admitted
    }

    async fn release(&self, members: &[MemberId]) -> OmsResult<()> {
        self.inner.release(members).await
    }

    async fn occupancy(&self) -> OmsResult<Occupancy> {
        let occupancy = self.inner.occupancy().await;
        if let Ok(o) = &occupancy {
            record_occupancy(*o);
        }
        occupancy
    }
}
