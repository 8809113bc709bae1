//! The whole pipeline in one process on the in-memory adapters: intake,
//! queue, consumer, trace store and database. No servers needed.

use std::sync::Arc;

use oms_core::application::{
    AuthPolicy, AuthService, GateKeeper, GatePolicy, GaugeSampler, LifecycleKeeper,
    LifecyclePolicy, OrderService, PaymentService, ProductCatalog, ProductService, QueryService,
    RequestOrderService, SweepPolicy, TraceSweeper, WaitingRoomService,
};
use oms_core::memory::{
    InMemoryAttemptCounter, InMemoryMemberStore, InMemoryOrderQueue, InMemoryPaymentGateway,
    InMemoryRateLimiter, InMemorySessionStore, InMemoryStockGate, InMemoryStore,
    InMemoryTraceStore, InMemoryWaitingRoom,
};
use oms_core::observe::Observed;
use oms_core::port::inbound::{PaymentUseCase, WaitingRoomUseCase};
use oms_core::port::outbound::{OrderRequestPublisher, OrderStore, StockGate, WaitingRoom};

use crate::config::FrontDoor;
use crate::tasks::{ShutdownReport, Stage, Supervisor, SHUTDOWN_DEADLINE};
use oms_core::password::Argon2idHasher;
use oms_core::port::inbound::{OrderQuery, OrderUseCase, ProductUseCase, RequestOrderUseCase};
use oms_core::port::outbound::{HealthCheck, TokenCodec};

/// How an embedded pipeline is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// The front door of the sale.
    pub front_door: FrontDoor,
    /// How long a placed order waits for its payment (default 10 min).
    pub payment_timeout: Option<std::time::Duration>,
    /// How often expiry, reconciliation and the event relay run.
    pub lifecycle: Option<LifecyclePolicy>,
}

/// A running embedded pipeline. Its consumer runs on a tokio task until
/// [`shutdown`](Self::shutdown).
pub struct EmbeddedPipeline {
    /// The in-memory database (products, orders, outcomes).
    pub store: Arc<InMemoryStore>,
    /// The in-memory trace store.
    pub traces: Arc<InMemoryTraceStore>,
    /// The in-memory queue and its DLQ.
    pub queue: Arc<InMemoryOrderQueue>,
    /// The in-memory stock gate.
    pub gate: Arc<InMemoryStockGate>,
    /// Order intake.
    pub intake: Arc<dyn RequestOrderUseCase>,
    /// Trace and order reads.
    pub orders: Arc<dyn OrderQuery>,
    /// Product catalogue.
    pub products: Arc<dyn ProductUseCase>,
    /// Order processing (what the consumer calls).
    pub processing: Arc<dyn OrderUseCase>,
    /// The in-memory members.
    pub members: Arc<InMemoryMemberStore>,
    /// The in-memory logins and revocations.
    pub sessions: Arc<InMemorySessionStore>,
    /// The in-memory login attempt counters.
    pub attempts: Arc<InMemoryAttemptCounter>,
    /// The password hasher (Argon2id, default parameters).
    pub hasher: Arc<Argon2idHasher>,
    /// The waiting room's use cases (off unless the front door has one).
    pub waiting_room: Arc<dyn WaitingRoomUseCase>,
    /// Intake's copy of the products.
    pub catalog: Arc<ProductCatalog>,
    /// The in-memory payment gateway.
    pub gateway: Arc<InMemoryPaymentGateway>,
    /// Payments and cancellations.
    pub payments: Arc<dyn PaymentUseCase>,
    supervisor: Supervisor,
}

impl EmbeddedPipeline {
    /// Builds the pipeline with the default [`FrontDoor`] (no waiting room,
    /// 10 order requests per member and second) and starts it (see
    /// [`start_with`](Self::start_with)).
    pub fn start() -> Self {
        Self::start_with(FrontDoor::default())
    }

    /// Builds the pipeline behind `front_door` and starts its consumer, its
    /// stuck-trace sweeper (default [`SweepPolicy`]), the keeper of its
    /// stock gate, and the front door's background work. Needs a tokio
    /// runtime.
    pub fn start_with(front_door: FrontDoor) -> Self {
        Self::start_with_options(EmbeddedOptions {
            front_door,
            ..EmbeddedOptions::default()
        })
    }

    /// Builds the pipeline with these options and starts it (see
    /// [`start_with`](Self::start_with)), the keeper of the order life
    /// cycle (expiry, reconciliation, events) included.
    pub fn start_with_options(options: EmbeddedOptions) -> Self {
        let front_door = options.front_door;
        let mut store = InMemoryStore::new();
        if let Some(timeout) = options.payment_timeout {
            store = store.with_payment_timeout(timeout);
        }
        let store = Arc::new(store);
        let traces = Arc::new(InMemoryTraceStore::new());
        let room: Option<Arc<dyn WaitingRoom>> = front_door.waiting_room.map(|policy| {
            Arc::new(Observed::new(Arc::new(InMemoryWaitingRoom::new(policy))))
                as Arc<dyn WaitingRoom>
        });
        let gate = InMemoryStockGate::new(traces.clone());
        let gate = Arc::new(match &room {
            Some(room) => gate.with_waiting_room(room.clone()),
            None => gate,
        });
        let (queue, receiver) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let catalog = Arc::new(ProductCatalog::new(
            store.clone(),
            front_door.catalog_refresh,
        ));
        // The ports the services use, measured (`/metrics`).
        let orders: Arc<dyn OrderStore> = Arc::new(Observed::new(store.clone()));
        let sends: Arc<dyn OrderRequestPublisher> = Arc::new(Observed::new(queue.clone()));
        let gated: Arc<dyn StockGate> = Arc::new(Observed::new(gate.clone()));
        let mut processing = OrderService::new(orders.clone(), traces.clone(), sends.clone())
            .with_gate(gated.clone());
        let mut intake = RequestOrderService::new(sends.clone(), traces.clone())
            .with_arbiter(store.clone())
            .with_gate(gated.clone())
            .with_catalog(catalog.clone());
        if let Some(rate) = front_door.order_rate {
            intake = intake.with_rate_limit(rate, Arc::new(InMemoryRateLimiter::new()));
        }
        let waiting_room: Arc<dyn WaitingRoomUseCase> = match &room {
            Some(room) => {
                intake = intake.with_waiting_room(room.clone());
                processing = processing.with_waiting_room(room.clone());
                Arc::new(WaitingRoomService::new(room.clone()))
            }
            None => Arc::new(WaitingRoomService::off()),
        };
        let processing: Arc<dyn OrderUseCase> = Arc::new(Observed::new(Arc::new(processing)));
        let mut supervisor = Supervisor::new();
        supervisor.front_door(catalog.clone(), room.clone());
        let consumed = processing.clone();
        supervisor.spawn(Stage::Consume, "in-memory consumer", move |stop| {
            receiver.run(consumed, stop)
        });
        let sweeper = TraceSweeper::new(
            traces.clone(),
            orders.clone(),
            queue.clone(),
            sends.clone(),
            SweepPolicy::default(),
        );
        supervisor.spawn(Stage::Settle, "trace sweeper", move |stop| {
            sweeper.run(stop)
        });
        let keeper = GateKeeper::new(
            gated.clone(),
            orders.clone(),
            store.clone(),
            queue.clone(),
            sends.clone(),
            GatePolicy::default(),
        );
        supervisor.spawn(Stage::Settle, "stock gate keeper", move |stop| {
            keeper.run(stop)
        });
        let gateway = Arc::new(InMemoryPaymentGateway::new());
        let lifecycle = LifecycleKeeper::new(
            store.clone(),
            gateway.clone(),
            queue.clone(),
            options.lifecycle.unwrap_or_default(),
        )
        .with_gate(gate.clone());
        supervisor.spawn(Stage::Settle, "order life-cycle keeper", move |stop| {
            lifecycle.run(stop)
        });
        let sampler = GaugeSampler::new(store.clone(), Some(gated), room);
        supervisor.spawn(Stage::Observe, "gauge sampler", move |stop| {
            sampler.run(crate::observe::GAUGE_EVERY, stop)
        });
        Self {
            supervisor,
            payments: Arc::new(
                PaymentService::new(store.clone(), store.clone(), gateway.clone())
                    .with_gate(gate.clone()),
            ),
            gateway,
            waiting_room,
            intake: Arc::new(Observed::new(Arc::new(intake))),
            orders: Arc::new(QueryService::new(store.clone(), traces.clone())),
            products: Arc::new(
                ProductService::new(store.clone())
                    .with_gate(gate.clone())
                    .with_catalog(catalog.clone()),
            ),
            catalog,
            gate,
            processing,
            members: Arc::new(InMemoryMemberStore::new()),
            sessions: Arc::new(InMemorySessionStore::new()),
            attempts: Arc::new(InMemoryAttemptCounter::new()),
            hasher: Arc::new(Argon2idHasher::new()),
            store,
            traces,
            queue,
        }
    }

    /// The dependencies `/readyz` checks.
    pub fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![self.queue.clone(), self.traces.clone(), self.store.clone()]
    }

    /// The members and sessions service of this pipeline, signing tokens
    /// with `codec`.
    pub fn accounts(&self, codec: Arc<dyn TokenCodec>, policy: AuthPolicy) -> AuthService {
        AuthService::new(
            self.members.clone(),
            self.sessions.clone(),
            self.attempts.clone(),
            self.hasher.clone(),
            codec,
        )
        .with_policy(policy)
    }

    /// The state of the HTTP adapter for this pipeline: tokens signed and
    /// checked with `auth`, the default [`AuthPolicy`].
    #[cfg(feature = "http")]
    pub fn app_state(&self, auth: crate::http::JwtAuth) -> crate::http::AppState {
        self.app_state_with(Arc::new(
            self.accounts(Arc::new(auth), AuthPolicy::default()),
        ))
    }

    /// The state of the HTTP adapter for this pipeline with this members
    /// and sessions service.
    #[cfg(feature = "http")]
    pub fn app_state_with(
        &self,
        accounts: Arc<dyn oms_core::port::inbound::AuthUseCase>,
    ) -> crate::http::AppState {
        crate::http::AppState::new(
            self.intake.clone(),
            self.orders.clone(),
            self.products.clone(),
            accounts,
            self.checks(),
        )
        .with_waiting_room(self.waiting_room.clone())
        .with_payments(self.payments.clone())
        .with_admin(Arc::new(
            oms_core::application::AdminService::new(self.store.clone(), self.store.clone())
                .with_gate(self.gate.clone()),
        ))
    }

    /// Stops taking orders, processes what the queue holds, and stops the
    /// keepers, giving each stage [`SHUTDOWN_DEADLINE`].
    pub async fn shutdown(self) -> ShutdownReport {
        self.shutdown_within(SHUTDOWN_DEADLINE).await
    }

    /// Stops the pipeline's work in [`Stage`] order — front door, consumer
    /// (which first processes what the queue holds), keepers, gauges —
    /// aborting what a stage has not stopped within `deadline`.
    pub async fn shutdown_within(self, deadline: std::time::Duration) -> ShutdownReport {
        self.supervisor.shutdown(deadline).await
    }
}
