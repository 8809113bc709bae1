use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, warn};

use super::ProductCatalog;
use crate::domain::{
    Caller, FailureReason, MemberId, OmsError, OmsResult, OrderCommand, OrderRequest, OrderTrace,
    PurchaseLimit, Rate, RateDecision, RoomStatus, TraceId, TraceState,
};
use crate::port::inbound::RequestOrderUseCase;
use crate::port::outbound::{
    Admission, IntakeChecks, OrderRequestPublisher, OrderStore, RateLimiter, StockGate, TraceStore,
    WaitingRoom,
};

/// Accepts orders: validates, records PROCESSING, queues, returns the trace id.
///
/// PROCESSING is written *before* the command is queued, so the consumer's
/// final write can never be overwritten by it. When the queue does not take
/// the command, the trace (and the idempotency key) are removed again and the
/// error is returned: no trace is left PROCESSING for an order that was never
/// queued.
///
/// With a [`StockGate`] ([`with_gate`](Self::with_gate)), the gate reserves
/// the units and writes the PROCESSING trace in one step; an order for a
/// sold-out product is answered FAILED `OUT_OF_STOCK` at once and never
/// queued. Units reserved for an order that could not be queued are given
/// back.
///
/// A queue that does not answer in time may still deliver the record later.
/// With an [`OrderStore`] ([`with_arbiter`](Self::with_arbiter)), the service
/// then settles the trace as FAILED `NOT_ACCEPTED` in the database, first
/// writer wins: a late delivery replays that outcome and takes no stock, and
/// if the consumer was first, the order stands and the request is accepted.
///
/// The front door of a sale, each part optional:
/// * a [`ProductCatalog`] ([`with_catalog`](Self::with_catalog)): an order
///   naming an unknown product is refused `PRODUCT_NOT_FOUND`, one outside
///   a product's sale window `SALE_NOT_STARTED` / `SALE_ENDED`, one larger
///   than a product's `maxPerMember` `LIMIT_EXCEEDED` — all before anything
///   is recorded or queued; with a gate, the member's purchases are counted
///   against the limit atomically with the reservation;
/// * a per-member order [`Rate`] ([`with_rate_limit`](Self::with_rate_limit)):
///   a member over it gets [`OmsError::RateLimited`];
/// * a [`WaitingRoom`] ([`with_waiting_room`](Self::with_waiting_room)): a
///   member without an admission gets [`OmsError::NotAdmitted`]; an order
///   refused at once by the gate ends the admission in the same step (it is
///   final).
///
/// With a gate, the rate and the admission are checked by the gate in the
/// step that reserves ([`IntakeChecks`]): the front door costs no round
/// trip of its own. Without one, the [`RateLimiter`] and the room are asked
/// (at once).
pub struct RequestOrderService {
    publisher: Arc<dyn OrderRequestPublisher>,
    traces: Arc<dyn TraceStore>,
    arbiter: Option<Arc<dyn OrderStore>>,
    gate: Option<Arc<dyn StockGate>>,
    catalog: Option<Arc<ProductCatalog>>,
    rate: Option<(Rate, Arc<dyn RateLimiter>)>,
    room: Option<Arc<dyn WaitingRoom>>,
}

impl RequestOrderService {
    /// A service on these ports.
    pub fn new(publisher: Arc<dyn OrderRequestPublisher>, traces: Arc<dyn TraceStore>) -> Self {
        Self {
            publisher,
            traces,
            arbiter: None,
            gate: None,
            catalog: None,
            rate: None,
            room: None,
        }
    }

    /// Checks orders against `catalog` (see the type's docs).
    pub fn with_catalog(mut self, catalog: Arc<ProductCatalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Limits each member's order requests to `rate`: checked by the gate
    /// when there is one, by `limiter` (keyed by member id) otherwise.
    pub fn with_rate_limit(mut self, rate: Rate, limiter: Arc<dyn RateLimiter>) -> Self {
        self.rate = Some((rate, limiter));
        self
    }

    /// Requires an admission from `room` (see the type's docs).
    pub fn with_waiting_room(mut self, room: Arc<dyn WaitingRoom>) -> Self {
        self.room = Some(room);
        self
    }

    /// The member's rate and admission, checked at once (without a gate).
    async fn front_door(&self, member_id: MemberId) -> OmsResult<()> {
        let rate = async {
            match &self.rate {
                Some((rate, limiter)) => limiter.acquire(&member_id.to_string(), *rate).await,
                None => Ok(RateDecision::Allowed),
            }
        };
        let room = async {
            match &self.room {
                Some(room) => room.status(member_id).await.map(Some),
                None => Ok(None),
            }
        };
        let (rate, room) = tokio::join!(rate, room);
        if let RateDecision::Limited { retry_after } = rate? {
            return Err(OmsError::RateLimited { retry_after });
        }
        let Some(status) = room? else {
            return Ok(()); // no waiting room
        };
        self.admission_answer(status).await
    }

    /// Why the gate found the member not admitted, with their place.
    async fn not_admitted(&self, member_id: MemberId) -> OmsError {
        let status = match &self.room {
            Some(room) => room.status(member_id).await,
            None => Ok(None),
        };
        match status {
            Ok(status) => self.admission_answer(status).await.err().unwrap_or(
                // Admitted since the gate looked: ask again at once.
                OmsError::NotAdmitted {
                    position: None,
                    in_line: true,
                    retry_after: std::time::Duration::from_secs(1),
                },
            ),
            Err(e) => e,
        }
    }

    /// The answer to a member whose room status is `status`: `Ok` when
    /// admitted. A member outside the line is told the place entering now
    /// would give them.
    async fn admission_answer(&self, status: Option<RoomStatus>) -> OmsResult<()> {
        match status {
            Some(RoomStatus::Admitted { .. }) => Ok(()),
            Some(RoomStatus::Waiting {
                position,
                estimated_wait,
            }) => Err(OmsError::NotAdmitted {
                position: Some(position),
                in_line: true,
                retry_after: estimated_wait.max(std::time::Duration::from_secs(1)),
            }),
            None => {
                let position = match &self.room {
                    Some(room) => match room.occupancy().await {
                        Ok(occupancy) => Some(occupancy.waiting.saturating_add(1)),
                        Err(e) => {
                            debug!(error = %e, "occupancy not readable; no position");
                            None
                        }
                    },
                    None => None,
                };
                Err(OmsError::NotAdmitted {
                    position,
                    in_line: false,
                    retry_after: std::time::Duration::from_secs(1),
                })
            }
        }
    }

    /// Checks the command against the catalogue; the purchase limits the
    /// gate counts.
    async fn check_rules(&self, command: &OrderCommand) -> OmsResult<Vec<PurchaseLimit>> {
        let Some(catalog) = &self.catalog else {
            return Ok(Vec::new());
        };
        let mut limits = Vec::new();
        for (product_id, units) in command.units_by_product() {
            let product = catalog
                .get(product_id)
                .await?
                .ok_or(OmsError::ProductNotFound { product_id })?;
            match product.rules.window_admits(command.requested_at) {
                Err(FailureReason::SaleNotStarted) => {
                    return Err(OmsError::SaleNotStarted { product_id })
                }
                Err(_) => return Err(OmsError::SaleEnded { product_id }),
                Ok(()) => {}
            }
            if let Some(max_per_member) = product.rules.max_per_member {
                if i64::try_from(units).unwrap_or(i64::MAX) > max_per_member {
                    return Err(OmsError::LimitExceeded { product_id });
                }
                limits.push(PurchaseLimit {
                    product_id,
                    max_per_member,
                });
            }
        }
        Ok(limits)
    }

    /// Reserves stock at intake through `gate` (see the type's docs).
    pub fn with_gate(mut self, gate: Arc<dyn StockGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Settles unqueued orders in `store` (see the type's docs).
    pub fn with_arbiter(mut self, store: Arc<dyn OrderStore>) -> Self {
        self.arbiter = Some(store);
        self
    }

    /// After a failed send: settles the trace as FAILED `NOT_ACCEPTED`
    /// (first writer wins) and says what stands.
    async fn settle(&self, trace_id: TraceId, caller: Caller) -> Settled {
        let Some(store) = &self.arbiter else {
            return Settled::NotAccepted;
        };
        let tombstone = OrderTrace {
            trace_id,
            member_id: caller.member_id,
            state: TraceState::Failed {
                reason: FailureReason::NotAccepted,
            },
        };
        match store.settle_failure(&tombstone, true).await {
            Ok(settled) if !settled.replayed => Settled::NotAccepted,
            Ok(settled) => {
                if let Err(e) = self.traces.save(&settled.trace).await {
                    warn!(%trace_id, error = %e, "trace not cached");
                }
                Settled::Standing(settled.trace)
            }
            Err(e) => {
                warn!(%trace_id, error = %e, "unqueued order not settled; it stays PROCESSING for the sweeper, its key stays bound");
                Settled::Unknown
            }
        }
    }

    /// The trace an idempotency key stands for: the cached one, else the
    /// outcome the database recorded, else PROCESSING.
    async fn standing(&self, trace_id: TraceId, member_id: MemberId) -> OmsResult<OrderTrace> {
        if let Some(known) = self.traces.get(trace_id).await? {
            return Ok(known);
        }
        if let Some(store) = &self.arbiter {
            match store.outcome(trace_id).await {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {}
                Err(e) => {
                    debug!(%trace_id, error = %e, "outcome not readable; answering PROCESSING")
                }
            }
        }
        Ok(OrderTrace::processing(trace_id, member_id))
    }

    /// Frees `key` (if any) claimed for `trace_id`, which was refused or
    /// not queued, so that a retry tries again.
    async fn release_claim(&self, member_id: MemberId, key: Option<&str>, trace_id: TraceId) {
        if let Some(key) = key {
            if let Err(e) = self.traces.release_key(member_id, key).await {
                warn!(%trace_id, error = %e, "could not release an idempotency key");
            }
        }
    }

    /// Claims `key` for `trace_id`; returns the trace that already holds
    /// it, in the trace store or (when the store forgot it, e.g. after a
    /// restart) in the database's durable binding.
    async fn claim(
        &self,
        member_id: MemberId,
        key: &str,
        trace_id: TraceId,
    ) -> OmsResult<Option<TraceId>> {
        if let Some(existing) = self.traces.claim_key(member_id, key, trace_id).await? {
            return Ok(Some(existing));
        }
        let Some(store) = &self.arbiter else {
            return Ok(None);
        };
        match store.trace_for_key(member_id, key).await {
            Ok(Some(bound)) if bound != trace_id => {
                // Point the fast path at the binding again.
                self.traces.release_key(member_id, key).await?;
                let holder = self.traces.claim_key(member_id, key, bound).await?;
                Ok(Some(holder.unwrap_or(bound)))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                // The consumer's transaction enforces the binding anyway.
                debug!(error = %e, "idempotency binding not readable at intake");
                Ok(None)
            }
        }
    }

    async fn undo(&self, command: &OrderCommand, key: Option<&str>) {
        let (trace_id, member_id) = (command.trace_id, command.member_id);
        if let Some(gate) = &self.gate {
            if let Err(e) = gate.release(command.member_id, &command.items).await {
                warn!(%trace_id, error = %e, "units of an order that was not queued not given back; the gate is reconciled later");
            }
        }
        if let Err(e) = self.traces.remove(trace_id).await {
            warn!(%trace_id, error = %e, "could not remove the trace of an order that was not queued");
        }
        self.release_claim(member_id, key, trace_id).await;
    }
}

/// What stands after a send that failed.
enum Settled {
    /// Settled FAILED `NOT_ACCEPTED`: a late delivery cannot place it.
    NotAccepted,
    /// The consumer was first: its outcome stands.
    Standing(OrderTrace),
    /// The database did not answer: the record may still be placed.
    Unknown,
}

use crate::domain::validate_idempotency_key;

#[async_trait]
impl RequestOrderUseCase for RequestOrderService {
    async fn request_order(
        &self,
        caller: Caller,
        request: OrderRequest,
        idempotency_key: Option<String>,
    ) -> OmsResult<OrderTrace> {
        request.validate()?;
        let key = idempotency_key.as_deref();
        if let Some(key) = key {
            validate_idempotency_key(key)?;
        }
        let trace_id = TraceId::new();
        let command = OrderCommand::new(trace_id, caller.member_id, request)
            .with_idempotency_key(idempotency_key.clone());
        // A retry with its key answers the order it placed before any
        // other check: neither the rate limit it spends, the admission it
        // used up nor a sale that has ended since turns it into an error.
        if let Some(key) = key {
            if let Some(existing) = self.claim(caller.member_id, key, trace_id).await? {
                return self.standing(existing, caller.member_id).await;
            }
        }
        let checked = async {
            if self.gate.is_none() {
                self.front_door(caller.member_id).await?;
            }
            self.check_rules(&command).await
        };
        let limits = match checked.await {
            Ok(limits) => limits,
            Err(e) => {
                self.release_claim(caller.member_id, key, trace_id).await;
                return Err(e);
            }
        };
        let recorded = match &self.gate {
            Some(gate) => {
                let checks = IntakeChecks {
                    admission: self.room.is_some(),
                    rate: self.rate.as_ref().map(|(rate, _)| *rate),
                    limits,
                };
                gate.admit(&command, &checks).await
            }
            None => self
                .traces
                .save(&OrderTrace::processing(trace_id, caller.member_id))
                .await
                .map(|()| Admission::Reserved),
        };
        match recorded {
            Ok(Admission::Reserved) => {}
            Ok(
                refused @ (Admission::OverLimit { .. }
                | Admission::RateLimited { .. }
                | Admission::NotAdmitted),
            ) => {
                self.release_claim(caller.member_id, key, trace_id).await;
                return Err(match refused {
                    Admission::OverLimit { product_id } => OmsError::LimitExceeded { product_id },
                    Admission::RateLimited { retry_after } => OmsError::RateLimited { retry_after },
                    _ => self.not_admitted(caller.member_id).await,
                });
            }
            Ok(Admission::Refused { .. }) => {
                return Ok(OrderTrace {
                    trace_id,
                    member_id: caller.member_id,
                    state: TraceState::Failed {
                        reason: FailureReason::OutOfStock,
                    },
                });
            }
            Err(e) => {
                self.release_claim(caller.member_id, key, trace_id).await;
                return Err(e);
            }
        }
        if let Err(e) = self.publisher.send(&command).await {
            match self.settle(trace_id, caller).await {
                Settled::Standing(standing) => return Ok(standing),
                Settled::NotAccepted => self.undo(&command, key).await,
                // The record may still arrive: keep the trace PROCESSING
                // (the sweeper resolves it) and the key bound to it, so a
                // retry with the key answers this trace, never a second one.
                Settled::Unknown => {}
            }
            return Err(e);
        }
        Ok(OrderTrace::processing(trace_id, caller.member_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberId, OmsError, OrderLine, ProductId, ReceiverInfo};
    use crate::memory::InMemoryStore;
    use crate::memory::InMemoryTraceStore;
    use crate::port::outbound::MockOrderRequestPublisher;

    fn request() -> OrderRequest {
        OrderRequest {
            items: vec![OrderLine {
                product_id: ProductId(1),
                quantity: 1,
            }],
            receiver_info: ReceiverInfo {
                name: "Kim".into(),
                phone: "010-0000-0000".into(),
                address: "Seoul".into(),
            },
        }
    }

    #[tokio::test]
    async fn a_queued_order_is_processing() {
        let traces = Arc::new(InMemoryTraceStore::new());
        let mut publisher = MockOrderRequestPublisher::new();
        publisher.expect_send().times(1).returning(|_| Ok(()));
        let service = RequestOrderService::new(Arc::new(publisher), traces.clone());
        let id = service
            .request_order(Caller::user(7), request(), None)
            .await
            .unwrap()
            .trace_id;
        let trace = traces.get(id).await.unwrap().unwrap();
        assert_eq!(trace.state, TraceState::Processing);
        assert_eq!(trace.member_id, MemberId(7));
    }

    #[tokio::test]
    async fn a_broker_failure_leaves_no_processing_trace_and_frees_the_key() {
        let traces = Arc::new(InMemoryTraceStore::new());
        let mut publisher = MockOrderRequestPublisher::new();
        publisher
            .expect_send()
            .times(2)
            .returning(|_| Err(OmsError::unavailable("kafka", "down")));
        let service = RequestOrderService::new(Arc::new(publisher), traces.clone());
        let err = service
            .request_order(Caller::user(7), request(), Some("k1".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, OmsError::Unavailable { .. }));
        assert!(traces.is_empty());
        // The key was released, so a retry tries to queue again.
        let again = service
            .request_order(Caller::user(7), request(), Some("k1".into()))
            .await;
        assert!(again.is_err());
    }

    #[tokio::test]
    async fn an_unqueued_order_is_settled_so_a_late_delivery_cannot_place_it() {
        let traces = Arc::new(InMemoryTraceStore::new());
        let store = Arc::new(InMemoryStore::new());
        let sent = Arc::new(std::sync::Mutex::new(None));
        let mut publisher = MockOrderRequestPublisher::new();
        let seen = sent.clone();
        publisher.expect_send().returning(move |command| {
            *seen.lock().unwrap() = Some(command.clone());
            Err(OmsError::unavailable("kafka", "timed out"))
        });
        let service = RequestOrderService::new(Arc::new(publisher), traces.clone())
            .with_arbiter(store.clone());
        let err = service
            .request_order(Caller::user(7), request(), None)
            .await;
        assert!(matches!(err, Err(OmsError::Unavailable { .. })));
        assert!(traces.is_empty());

        // The record reaches the queue after all: it replays the settled failure.
        let late = sent.lock().unwrap().clone().unwrap();
        let placed = store.place_batch(&[late]).await.unwrap();
        assert!(placed[0].replayed);
        assert_eq!(
            placed[0].trace.state,
            TraceState::Failed {
                reason: FailureReason::NotAccepted
            }
        );
    }

    #[tokio::test]
    async fn an_order_the_consumer_placed_first_is_accepted() {
        let traces = Arc::new(InMemoryTraceStore::new());
        let mut store = crate::port::outbound::MockOrderStore::new();
        store.expect_settle_failure().returning(|t, _| {
            Ok(crate::domain::Placement {
                trace: OrderTrace {
                    state: TraceState::Completed {
                        order_id: crate::domain::OrderId(3),
                    },
                    ..*t
                },
                replayed: true,
                needs_dead_letter: false,
            })
        });
        let mut publisher = MockOrderRequestPublisher::new();
        publisher
            .expect_send()
            .returning(|_| Err(OmsError::unavailable("kafka", "timed out")));
        let service = RequestOrderService::new(Arc::new(publisher), traces.clone())
            .with_arbiter(Arc::new(store));
        let answered = service
            .request_order(Caller::user(7), request(), None)
            .await
            .unwrap();
        assert!(answered.state.is_final());
        let cached = traces.get(answered.trace_id).await.unwrap().unwrap();
        assert_eq!(cached, answered);
    }

    #[tokio::test]
    async fn same_member_and_key_get_the_same_trace_and_one_message() {
        let traces = Arc::new(InMemoryTraceStore::new());
        let mut publisher = MockOrderRequestPublisher::new();
        publisher.expect_send().times(2).returning(|_| Ok(()));
        let service = RequestOrderService::new(Arc::new(publisher), traces);
        let a = service
            .request_order(Caller::user(7), request(), Some("key".into()))
            .await
            .unwrap();
        let b = service
            .request_order(Caller::user(7), request(), Some("key".into()))
            .await
            .unwrap();
        assert_eq!(a.trace_id, b.trace_id);
        // Another member with the same key is another order.
        let c = service
            .request_order(Caller::user(8), request(), Some("key".into()))
            .await
            .unwrap();
        assert_ne!(a.trace_id, c.trace_id);
    }

    #[tokio::test]
    async fn invalid_requests_and_keys_are_refused_before_anything_is_queued() {
        let publisher = MockOrderRequestPublisher::new(); // no call expected
        let service =
            RequestOrderService::new(Arc::new(publisher), Arc::new(InMemoryTraceStore::new()));
        let mut empty = request();
        empty.items.clear();
        assert!(matches!(
            service.request_order(Caller::user(1), empty, None).await,
            Err(OmsError::Validation(e)) if e.fields() == ["items"]
        ));
        for key in ["", "has space", &"x".repeat(65)] {
            assert!(matches!(
                service
                    .request_order(Caller::user(1), request(), Some(key.to_string()))
                    .await,
                Err(OmsError::Invalid(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_failed_send_that_cannot_be_settled_keeps_the_trace_and_the_key() {
        let traces = Arc::new(InMemoryTraceStore::new());
        let mut store = crate::port::outbound::MockOrderStore::new();
        store
            .expect_settle_failure()
            .returning(|_, _| Err(OmsError::unavailable("mysql", "down")));
        store.expect_trace_for_key().returning(|_, _| Ok(None));
        store.expect_outcome().returning(|_| Ok(None));
        let mut publisher = MockOrderRequestPublisher::new();
        publisher
            .expect_send()
            .times(1)
            .returning(|_| Err(OmsError::unavailable("kafka", "timed out")));
        let service = RequestOrderService::new(Arc::new(publisher), traces.clone())
            .with_arbiter(Arc::new(store));
        let err = service
            .request_order(Caller::user(7), request(), Some("k1".into()))
            .await;
        assert!(matches!(err, Err(OmsError::Unavailable { .. })));
        // The record may still be placed: the retry with the key answers
        // the same trace (PROCESSING, for the sweeper), never a second order.
        let retry = service
            .request_order(Caller::user(7), request(), Some("k1".into()))
            .await
            .unwrap();
        assert_eq!(retry.state, TraceState::Processing);
        let cached = traces.get(retry.trace_id).await.unwrap().unwrap();
        assert_eq!(cached.state, TraceState::Processing);
    }

    #[tokio::test]
    async fn a_key_the_trace_store_forgot_is_answered_from_the_database() {
        let store = Arc::new(InMemoryStore::new());
        use crate::port::outbound::ProductStore;
        store
            .create(
                &crate::domain::ProductDraft {
                    name: "A".into(),
                    price: 10,
                    stock: 5,
                    rules: Default::default(),
                }
                .into_product(ProductId(1)),
            )
            .await
            .unwrap();
        let first = OrderCommand::new(TraceId::new(), MemberId(7), request())
            .with_idempotency_key(Some("k1".into()));
        let placed = store
            .place_batch(std::slice::from_ref(&first))
            .await
            .unwrap();
        // A restarted trace store knows neither the key nor the trace.
        let traces = Arc::new(InMemoryTraceStore::new());
        let publisher = MockOrderRequestPublisher::new(); // never called
        let service =
            RequestOrderService::new(Arc::new(publisher), traces.clone()).with_arbiter(store);
        let again = service
            .request_order(Caller::user(7), request(), Some("k1".into()))
            .await
            .unwrap();
        assert_eq!(again, placed[0].trace);
        // And the fast path knows it again.
        assert_eq!(
            traces
                .claim_key(MemberId(7), "k1", TraceId::new())
                .await
                .unwrap(),
            Some(first.trace_id)
        );
    }

    fn catalogued(
        rules: crate::domain::SaleRules,
    ) -> (Arc<InMemoryStore>, Arc<super::ProductCatalog>) {
        let store = Arc::new(InMemoryStore::new());
        let product = crate::domain::ProductDraft {
            name: "A".into(),
            price: 10,
            stock: 5,
            rules,
        }
        .into_product(ProductId(1));
        futures::executor::block_on(crate::port::outbound::ProductStore::create(
            store.as_ref(),
            &product,
        ))
        .unwrap();
        let catalog = Arc::new(super::ProductCatalog::new(
            store.clone(),
            std::time::Duration::from_secs(60),
        ));
        (store, catalog)
    }

    #[tokio::test]
    async fn orders_breaking_the_rules_are_refused_before_anything_is_recorded() {
        let now = chrono::Utc::now();
        let cases = [
            (crate::domain::SaleRules::default(), 99, "unknown"),
            (
                crate::domain::SaleRules {
                    sale_starts_at: Some(now + chrono::Duration::hours(1)),
                    ..Default::default()
                },
                1,
                "not started",
            ),
            (
                crate::domain::SaleRules {
                    max_per_member: Some(1),
                    ..Default::default()
                },
                1,
                "over the limit",
            ),
        ];
        for (rules, product, what) in cases {
            let (_, catalog) = catalogued(rules);
            let traces = Arc::new(InMemoryTraceStore::new());
            let publisher = MockOrderRequestPublisher::new(); // never called
            let service =
                RequestOrderService::new(Arc::new(publisher), traces.clone()).with_catalog(catalog);
            let mut req = request();
            req.items[0].product_id = ProductId(product);
            req.items[0].quantity = 2;
            let refused = service
                .request_order(Caller::user(7), req, Some("k".into()))
                .await;
            let expected = match what {
                "unknown" => matches!(refused, Err(OmsError::ProductNotFound { .. })),
                "not started" => matches!(refused, Err(OmsError::SaleNotStarted { .. })),
                _ => matches!(refused, Err(OmsError::LimitExceeded { .. })),
            };
            assert!(expected, "{what}: {refused:?}");
            assert!(traces.is_empty(), "{what}: a trace was written");
            // The key was not claimed: a corrected retry may use it.
            assert_eq!(
                traces
                    .claim_key(MemberId(7), "k", TraceId::new())
                    .await
                    .unwrap(),
                None
            );
        }
    }

    #[tokio::test]
    async fn a_rate_limited_or_unadmitted_member_is_refused_first() {
        use crate::domain::{Rate, RoomPolicy};
        use crate::memory::{InMemoryRateLimiter, InMemoryWaitingRoom};
        let publisher = MockOrderRequestPublisher::new(); // never called
        let room = Arc::new(InMemoryWaitingRoom::new(RoomPolicy::default()));
        let service =
            RequestOrderService::new(Arc::new(publisher), Arc::new(InMemoryTraceStore::new()))
                .with_waiting_room(room.clone());
        // One member in line; 7 has not entered: told the place entering
        // would give, and that it is not theirs yet.
        crate::port::outbound::WaitingRoom::enter(room.as_ref(), MemberId(8))
            .await
            .unwrap();
        assert!(matches!(
            service
                .request_order(Caller::user(7), request(), None)
                .await,
            Err(OmsError::NotAdmitted {
                position: Some(2),
                in_line: false,
                ..
            })
        ));
        crate::port::outbound::WaitingRoom::enter(room.as_ref(), MemberId(7))
            .await
            .unwrap();
        assert!(matches!(
            service
                .request_order(Caller::user(7), request(), None)
                .await,
            Err(OmsError::NotAdmitted {
                position: Some(2),
                in_line: true,
                ..
            })
        ));

        let mut publisher = MockOrderRequestPublisher::new();
        publisher.expect_send().times(1).returning(|_| Ok(()));
        let service =
            RequestOrderService::new(Arc::new(publisher), Arc::new(InMemoryTraceStore::new()))
                .with_rate_limit(Rate::per_second(1), Arc::new(InMemoryRateLimiter::new()));
        assert!(service
            .request_order(Caller::user(7), request(), None)
            .await
            .is_ok());
        assert!(matches!(
            service
                .request_order(Caller::user(7), request(), None)
                .await,
            Err(OmsError::RateLimited { .. })
        ));
    }

    #[tokio::test]
    async fn a_retry_with_its_key_answers_its_order_past_the_rate_limit() {
        let mut publisher = MockOrderRequestPublisher::new();
        publisher.expect_send().times(1).returning(|_| Ok(()));
        let service =
            RequestOrderService::new(Arc::new(publisher), Arc::new(InMemoryTraceStore::new()))
                .with_rate_limit(
                    Rate::per_second(1),
                    Arc::new(crate::memory::InMemoryRateLimiter::new()),
                );
        let first = service
            .request_order(Caller::user(7), request(), Some("k1".into()))
            .await
            .unwrap();
        for _ in 0..3 {
            let again = service
                .request_order(Caller::user(7), request(), Some("k1".into()))
                .await
                .unwrap();
            assert_eq!(again.trace_id, first.trace_id);
        }
        // A new key is a new order, and the limit holds for it; the key it
        // claimed is freed, so its own retry is limited again, not queued.
        for _ in 0..2 {
            assert!(matches!(
                service
                    .request_order(Caller::user(7), request(), Some("k2".into()))
                    .await,
                Err(OmsError::RateLimited { .. })
            ));
        }
    }
}
