//! Composition of the processes: the real adapters from [`Settings`], and the
//! shutdown signal. The examples are thin wrappers around this module.

use std::sync::Arc;
use std::time::Duration;

use oms_core::application::{
    fill_gate, AuthPolicy, AuthService, GateKeeper, GatePolicy, GaugeSampler, LifecycleKeeper,
    LifecyclePolicy, OrderService, PaymentService, ProductCatalog, ProductService, QueryService,
    RequestOrderService, SweepPolicy, TraceSweeper, WaitingRoomService,
};
use oms_core::domain::{OmsError, Rate};
use oms_core::memory::InMemoryPaymentGateway;
use oms_core::memory::RevocationMirror;
use oms_core::observe::Observed;
use oms_core::password::Argon2idHasher;
use oms_core::port::outbound::{
    HealthCheck, OrderRequestPublisher, OrderStore, PaymentGateway, RateLimiter, SessionStore,
    StockGate, TokenCodec, WaitingRoom,
};

use crate::config::{ConfigError, Settings};
use crate::kafka::{
    ensure_topics, KafkaBacklog, KafkaConfig, KafkaOrderConsumer, KafkaOrderPublisher,
};
use crate::mysql::MySqlStore;
use crate::redis::{
    RedisAttemptCounter, RedisRateLimiter, RedisSessionStore, RedisStockGate, RedisTraceOptions,
    RedisTraceStore, RedisWaitingRoom,
};
use crate::tasks::{Stage, Supervisor};

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A dependency did not answer in time.
    #[error("{0}")]
    Dependency(#[from] OmsError),
}

/// The real adapters, connected: Kafka, Redis and MySQL/MariaDB.
#[derive(Clone)]
pub struct Services {
    /// Broker settings.
    pub kafka: KafkaConfig,
    /// Order and DLQ publisher.
    pub publisher: Arc<KafkaOrderPublisher>,
    /// Trace store.
    pub traces: Arc<RedisTraceStore>,
    /// Orders, outcomes and products.
    pub store: Arc<MySqlStore>,
    /// The stock gate on Redis, unless `OMS_STOCK_GATE=off`.
    pub gate: Option<Arc<RedisStockGate>>,
    /// Logins and revocations on Redis.
    pub sessions: Arc<RedisSessionStore>,
    /// How often the members and sessions service copies the revocations
    /// of Redis (`OMS_REVOCATION_SYNC_MS`; zero: no copy, Redis is asked
    /// on every request).
    pub revocation_sync: Duration,
    /// Login attempt counters on Redis.
    pub attempts: Arc<RedisAttemptCounter>,
    /// The password hasher (Argon2id, default parameters).
    pub hasher: Arc<Argon2idHasher>,
    /// The waiting room on Redis, when `OMS_WAITING_ROOM=on`.
    pub waiting_room: Option<Arc<RedisWaitingRoom>>,
    /// The per-member order rate, unless `OMS_ORDER_RATE=0`, and its
    /// limiter on Redis (the stock gate checks the same budget when it is
    /// on).
    pub order_rate: Option<(Rate, Arc<RedisRateLimiter>)>,
    /// Intake's copy of the products (refreshed by
    /// [`spawn_front_door`](Self::spawn_front_door)).
    pub catalog: Arc<ProductCatalog>,
    /// The payment gateway: Toss Payments with `OMS_TOSS_SECRET_KEY`, else
    /// the in-memory one (each process its own: for trials only).
    pub gateway: Arc<dyn PaymentGateway>,
    /// The pace of the gate keeper (`OMS_GATE_SETTLE_RATE`,
    /// `OMS_GATE_CATCH_UP_SECS`).
    pub gate_policy: GatePolicy,
}

impl Settings {
    /// The Kafka settings.
    pub fn kafka_config(&self) -> Option<KafkaConfig> {
        let mut config = KafkaConfig::new(self.kafka_brokers.clone()?);
        config.order_topic = self.order_topic.clone();
        config.dlq_topic = self.dlq_topic.clone();
        config.partitions = self.order_partitions;
        config.group = self.consumer_group.clone();
        config.max_batch = self.consumer_batch;
        config.rewind_on_gap = self.kafka_rewind_on_gap;
        config.topic_replication = self.topic_replication;
        config.stall_timeout = self.consumer_stall;
        config.session_timeout = self.kafka_session_timeout;
        config.events_topic = self.events_topic.clone();
        config.properties = self.kafka_properties.clone();
        config.producer_properties = self.kafka_producer_properties.clone();
        config.consumer_properties = self.kafka_consumer_properties.clone();
        Some(config)
    }
}

/// Retries `connect` for up to 30 s (dependencies that start together);
/// a setting the dependency refuses (`OmsError::Invalid`, e.g. a Kafka
/// property librdkafka does not know) fails at once.
async fn patiently<T, F, Fut>(what: &str, mut connect: F) -> Result<T, OmsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OmsError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(100);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e)
                if tokio::time::Instant::now() < deadline && !matches!(e, OmsError::Invalid(_)) =>
            {
                tracing::warn!(error = %e, "{what} not ready; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Services {
    /// Connects to all three services (each URL must be set), runs the
    /// database migrations and creates the topics when missing.
    pub async fn connect(settings: &Settings) -> Result<Self, StartError> {
        let missing = |name: &'static str| {
            ConfigError::Missing {
            name,
            why: "the real adapters need all three of OMS_KAFKA_BROKERS, OMS_REDIS_URL and OMS_DATABASE_URL",
        }
        };
        let kafka = settings
            .kafka_config()
            .ok_or_else(|| missing("OMS_KAFKA_BROKERS"))?;
        let redis_url = settings
            .redis_url
            .clone()
            .ok_or_else(|| missing("OMS_REDIS_URL"))?;
        let database_url = settings
            .database_url
            .clone()
            .ok_or_else(|| missing("OMS_DATABASE_URL"))?;

        let store = patiently("database", || MySqlStore::connect(&database_url))
            .await?
            .with_payment_timeout(settings.payment_timeout);
        patiently("migrations", || store.migrate()).await?;
        let traces = patiently("redis", || async {
            if settings.redis_cluster {
                RedisTraceStore::connect_cluster(redis_url.split(',')).await
            } else {
                RedisTraceStore::connect(&redis_url).await
            }
        })
        .await?
        .with_options(RedisTraceOptions {
            prefix: settings.redis_prefix.clone(),
            ..RedisTraceOptions::default()
        });
        patiently("kafka topics", || ensure_topics(&kafka)).await?;
        let publisher = KafkaOrderPublisher::new(&kafka)?;
        let gate = settings.stock_gate.then(|| Arc::new(traces.stock_gate()));
        let store = Arc::new(store);
        let front_door = settings.front_door;
        let gateway: Arc<dyn PaymentGateway> = match &settings.toss {
            Some(toss) => Arc::new(crate::toss::TossPaymentGateway::new(
                crate::toss::TossConfig::new(toss.expose_secret_key())
                    .with_base_url(toss.base_url.clone()),
            )?),
            None => {
                tracing::warn!("no OMS_TOSS_SECRET_KEY: payments go to an in-memory gateway in each process (approves every paymentKey but `decline-…` and `timeout-…`); for trials only");
                Arc::new(InMemoryPaymentGateway::new())
            }
        };
        Ok(Self {
            gateway,
            gate,
            gate_policy: settings.gate_policy,
            waiting_room: front_door
                .waiting_room
                .map(|policy| Arc::new(traces.waiting_room(policy))),
            order_rate: front_door
                .order_rate
                .map(|rate| (rate, Arc::new(traces.rate_limiter()))),
            catalog: Arc::new(ProductCatalog::new(
                store.clone(),
                front_door.catalog_refresh,
            )),
            sessions: Arc::new(
                traces
                    .session_store()
                    .with_access_horizon(settings.access_token_ttl),
            ),
            revocation_sync: settings.revocation_sync,
            attempts: Arc::new(traces.attempt_counter()),
            hasher: Arc::new(Argon2idHasher::new()),
            kafka,
            publisher: Arc::new(publisher),
            traces: Arc::new(traces),
            store,
        })
    }

    fn room(&self) -> Option<Arc<dyn WaitingRoom>> {
        self.waiting_room
            .clone()
            .map(|r| Arc::new(Observed::new(r)) as Arc<dyn WaitingRoom>)
    }

    /// The order store, measured ([`Observed`]).
    fn orders(&self) -> Arc<dyn OrderStore> {
        Arc::new(Observed::new(self.store.clone()))
    }

    /// The publisher, measured ([`Observed`]).
    fn queue(&self) -> Arc<dyn OrderRequestPublisher> {
        Arc::new(Observed::new(self.publisher.clone()))
    }

    /// Samples the gauges of `/metrics` (gate levels, waiting room) every
    /// `every`, in [`Stage::Observe`] of `supervisor`.
    pub fn spawn_gauges(&self, supervisor: &mut Supervisor, every: Duration) {
        let sampler = GaugeSampler::new(self.store.clone(), self.stock_gate(), self.room());
        supervisor.spawn(Stage::Observe, "gauge sampler", move |stop| {
            sampler.run(every, stop)
        });
    }

    /// Starts intake's background work in `supervisor`: the catalogue
    /// refresh and, with a waiting room, its admitter (no leader: every
    /// `api` process runs one, the room's rate is kept in Redis).
    pub fn spawn_front_door(&self, supervisor: &mut Supervisor) {
        supervisor.front_door(self.catalog.clone(), self.room());
    }

    /// The dependencies `/readyz` checks.
    pub fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        let mut checks: Vec<Arc<dyn HealthCheck>> = vec![
            self.publisher.clone(),
            self.traces.clone(),
            self.store.clone(),
        ];
        if let Some(gate) = &self.gate {
            checks.push(gate.clone());
        }
        checks
    }

    fn stock_gate(&self) -> Option<Arc<dyn StockGate>> {
        self.gate
            .clone()
            .map(|g| Arc::new(Observed::new(g)) as Arc<dyn StockGate>)
    }

    /// The order-processing service on these adapters, its ports measured.
    pub fn order_service(&self) -> OrderService {
        let service = OrderService::new(self.orders(), self.traces.clone(), self.queue());
        let service = match self.stock_gate() {
            Some(gate) => service.with_gate(gate),
            None => service,
        };
        match self.room() {
            Some(room) => service.with_waiting_room(room),
            None => service,
        }
    }

    /// The keeper of the stock gate (settles refusals, reconciles with the
    /// database), reading the backlog of the consumer group; `None` when
    /// the gate is off.
    pub fn gate_keeper(&self) -> Result<Option<GateKeeper>, OmsError> {
        let Some(gate) = self.stock_gate() else {
            return Ok(None);
        };
        Ok(Some(GateKeeper::new(
            gate,
            self.orders(),
            self.store.clone(),
            Arc::new(KafkaBacklog::new(&self.kafka)?),
            self.queue(),
            self.gate_policy,
        )))
    }

    /// Fills the gate of every product that has none (intake start).
    pub async fn fill_gate(&self) -> Result<(), OmsError> {
        if let Some(gate) = &self.gate {
            fill_gate(gate.as_ref(), self.store.as_ref()).await?;
        }
        Ok(())
    }

    /// The keeper of the order life cycle (expiry, reconciliation of
    /// payments in doubt, the event relay to `OMS_EVENTS_TOPIC`).
    pub fn lifecycle_keeper(&self) -> LifecycleKeeper {
        let keeper = LifecycleKeeper::new(
            self.store.clone(),
            self.gateway.clone(),
            self.publisher.clone(),
            LifecyclePolicy::default(),
        );
        match self.stock_gate() {
            Some(gate) => keeper.with_gate(gate),
            None => keeper,
        }
    }

    /// The stuck-trace sweeper on these adapters, reading the backlog of
    /// the consumer group.
    pub fn sweeper(&self, policy: SweepPolicy) -> Result<TraceSweeper, OmsError> {
        Ok(TraceSweeper::new(
            self.traces.clone(),
            self.orders(),
            Arc::new(KafkaBacklog::new(&self.kafka)?),
            self.queue(),
            policy,
        ))
    }

    /// A consumer-group member on the order topic.
    pub fn consumer(&self) -> Result<KafkaOrderConsumer, OmsError> {
        KafkaOrderConsumer::new(&self.kafka)
    }

    /// The members and sessions service on these adapters (members in the
    /// database, logins, revocations and attempt counters in Redis),
    /// signing tokens with `codec`. Access tokens are checked against a
    /// [`RevocationMirror`] of Redis synced every `revocation_sync` (unless
    /// zero).
    pub fn accounts(&self, codec: Arc<dyn TokenCodec>, policy: AuthPolicy) -> AuthService {
        let sessions: Arc<dyn SessionStore> = if self.revocation_sync.is_zero() {
            self.sessions.clone()
        } else {
            Arc::new(
                RevocationMirror::new(self.sessions.clone())
                    .with_interval(self.revocation_sync)
                    .with_horizon(policy.tokens.access_ttl),
            )
        };
        AuthService::new(
            self.store.clone(),
            sessions,
            self.attempts.clone(),
            self.hasher.clone(),
            codec,
        )
        .with_policy(policy)
    }

    /// The state of the HTTP adapter: intake publishes to Kafka; reads come
    /// from Redis and the database; tokens are signed and checked with
    /// `auth`, with the default [`AuthPolicy`].
    #[cfg(feature = "http")]
    pub fn app_state(&self, auth: crate::http::JwtAuth) -> crate::http::AppState {
        self.app_state_with(Arc::new(
            self.accounts(Arc::new(auth), AuthPolicy::default()),
        ))
    }

    /// The state of the HTTP adapter with this members and sessions
    /// service.
    #[cfg(feature = "http")]
    pub fn app_state_with(
        &self,
        accounts: Arc<dyn oms_core::port::inbound::AuthUseCase>,
    ) -> crate::http::AppState {
        let mut intake = RequestOrderService::new(self.queue(), self.traces.clone())
            .with_arbiter(self.store.clone())
            .with_catalog(self.catalog.clone());
        let mut products =
            ProductService::new(self.store.clone()).with_catalog(self.catalog.clone());
        let mut payments =
            PaymentService::new(self.store.clone(), self.store.clone(), self.gateway.clone());
        if let Some(gate) = self.stock_gate() {
            intake = intake.with_gate(gate.clone());
            products = products.with_gate(gate.clone());
            payments = payments.with_gate(gate);
        }
        if let Some((rate, limiter)) = &self.order_rate {
            intake = intake.with_rate_limit(*rate, limiter.clone() as Arc<dyn RateLimiter>);
        }
        let room = match self.room() {
            Some(room) => {
                intake = intake.with_waiting_room(room.clone());
                WaitingRoomService::new(room)
            }
            None => WaitingRoomService::off(),
        };
        crate::http::AppState::new(
            Arc::new(Observed::new(Arc::new(intake))),
            Arc::new(QueryService::new(self.store.clone(), self.traces.clone())),
            Arc::new(products),
            accounts,
            self.checks(),
        )
        .with_waiting_room(Arc::new(room))
        .with_payments(Arc::new(payments))
        .with_admin(Arc::new(self.admin()))
    }

    /// The operators' views on these adapters.
    pub fn admin(&self) -> oms_core::application::AdminService {
        let admin =
            oms_core::application::AdminService::new(self.store.clone(), self.store.clone());
        match self.stock_gate() {
            Some(gate) => admin.with_gate(gate),
            None => admin,
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
