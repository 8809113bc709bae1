//! Flash-sale order intake: accept an order in microseconds, buffer it in
//! Kafka, settle the stock in MySQL / MariaDB with an optimistic lock.
//!
//! During a flash sale thousands of buyers order the same few hundred units
//! in the same second. oms answers each order at once (`202 Accepted` and a
//! trace id), queues it, and places it in the background in batches, one
//! transaction per batch with a versioned stock decrement; the buyer polls
//! the trace until it is COMPLETED (with the order) or FAILED (with the
//! reason). It never oversells, never loses an accepted order and never
//! places one twice.
//!
//! This crate is the facade: it re-exports the hexagon ([`oms_core`]) and,
//! behind features, the adapters, and adds the HTTP adapter, the in-memory
//! pipeline, settings, metrics and the composition of the processes.
//!
//! # Crates
//!
//! | crate | what it holds | here |
//! |---|---|---|
//! | [`oms-core`](oms_core) | domain, ports, application services, in-memory adapters, conformance suites | [`core`], [`domain`], [`port`], [`application`], [`memory`], [`password`] |
//! | `oms-adapters-kafka` | order publisher with dead-letter topic, batch consumer, backlog (rdkafka) | `kafka` (feature `kafka`) |
//! | `oms-adapters-redis` | traces, idempotency keys, stock gate, logins, waiting room, rate limiter | `redis` (feature `redis`) |
//! | `oms-adapters-mysql` | products, orders, outcomes, members, the order life cycle (sqlx) | `mysql` (feature `mysql`) |
//! | `oms-adapters-toss` | the Toss Payments gateway (reqwest) | `toss` (feature `toss`) |
//!
//! The ports are `#[async_trait]` traits used as `Arc<dyn Port>`
//! ([`port::inbound`], [`port::outbound`]); the services of [`application`]
//! take them in their constructors, so any adapter can stand in for another.
//! Every adapter of an outbound port passes the port's conformance suite
//! (`oms_core::testkit`, feature `testkit` of `oms-core`).
//!
//! # The whole pipeline in one process
//!
//! [`embedded::EmbeddedPipeline`] runs intake, queue, consumer, trace store
//! and database on the in-memory adapters: nothing to install, the same
//! services as the real stack.
//!
//! ```
//! use std::time::Duration;
//! use oms::domain::{
//!     Caller, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo, TraceState,
//! };
//! use oms::embedded::EmbeddedPipeline;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), oms::domain::OmsError> {
//! let pipeline = EmbeddedPipeline::start();
//!
//! // An operator puts 500 units on sale.
//! let draft = ProductDraft {
//!     name: "Tteokbokki".into(),
//!     price: 12900,
//!     stock: 500,
//!     rules: Default::default(),
//! };
//! pipeline.products.create(Caller::admin(1), ProductId(1), draft).await?;
//!
//! // A buyer orders two: accepted at once, placed in the background.
//! let buyer = Caller::user(42);
//! let request = OrderRequest {
//!     items: vec![OrderLine { product_id: ProductId(1), quantity: 2 }],
//!     receiver_info: ReceiverInfo {
//!         name: "Kim".into(),
//!         phone: "010-0000-0000".into(),
//!         address: "Seoul".into(),
//!     },
//! };
//! let accepted = pipeline.intake.request_order(buyer, request, None).await?;
//!
//! // The buyer polls the trace until it is final.
//! let trace = loop {
//!     let trace = pipeline.orders.trace(buyer, accepted.trace_id).await?;
//!     if trace.state.is_final() {
//!         break trace;
//!     }
//!     tokio::time::sleep(Duration::from_millis(5)).await;
//! };
//! assert!(matches!(trace.state, TraceState::Completed { .. }));
//! assert_eq!(pipeline.products.get(ProductId(1)).await?.stock, 498);
//!
//! pipeline.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # In your own service
//!
//! Mount the API ([`http::router`], feature `http`) in an axum app of your
//! own; its [`http::AppState`] takes the use cases, so the same router runs
//! on the embedded pipeline, on the real adapters, or on yours:
//!
//! ```
//! use oms::embedded::EmbeddedPipeline;
//! use oms::http::{router, JwtAuth};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pipeline = EmbeddedPipeline::start();
//! let api = router(pipeline.app_state(JwtAuth::new(b"a secret of 32 bytes or more....")));
//! let app = axum::Router::new().nest("/shop", api);
//! # let _ = app;
//! pipeline.shutdown().await;
//! # }
//! ```
//!
//! Or compose the services on adapters of your own, and unit-test code
//! built on the ports against the mocks (feature `mock`):
//!
//! ```
//! use std::sync::Arc;
//! use oms::application::RequestOrderService;
//! use oms::domain::{Caller, OmsError, OrderLine, OrderRequest, ProductId, ReceiverInfo};
//! use oms::memory::InMemoryTraceStore;
//! use oms::port::inbound::RequestOrderUseCase;
//! use oms::port::outbound::MockOrderRequestPublisher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut broker = MockOrderRequestPublisher::new();
//! broker.expect_send().returning(|_| Err(OmsError::unavailable("kafka", "down")));
//! let traces = Arc::new(InMemoryTraceStore::new());
//! let intake = RequestOrderService::new(Arc::new(broker), traces.clone());
//! let request = OrderRequest {
//!     items: vec![OrderLine { product_id: ProductId(1), quantity: 1 }],
//!     receiver_info: ReceiverInfo { name: "Kim".into(), phone: "010".into(), address: "Seoul".into() },
//! };
//! let result = intake.request_order(Caller::user(7), request, None).await;
//! assert!(matches!(result, Err(OmsError::Unavailable { .. })));
//! assert!(traces.is_empty()); // the broker refused it: no trace is left PROCESSING
//! # }
//! ```
//!
//! # The processes
//!
//! The repository's `api` and `consumer` examples are the two processes of
//! the real stack (Kafka, Redis, MySQL / MariaDB, Toss Payments): thin
//! wrappers around [`runtime`], configured by [`config::Settings`] (every
//! setting an option, an `OMS_` variable and a key of a TOML file), stopped
//! in order by [`tasks::Supervisor`], measured by [`observe`]. The
//! repository's README covers running them, the HTTP API, the guarantees,
//! operations and the benchmarks.
//!
//! # Feature flags
//!
#![doc = document_features::document_features!()]
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89: the `rust-version` of every oms crate, which is what the
//! dependencies need.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The code blocks of the repository's README, compiled and run as tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use oms_core as core;
pub use oms_core::{application, domain, memory, password, port};

/// The mockall the `MockXxx` of the ports are generated with (feature
/// `mock`): `oms::mockall::predicate::eq`, `oms::mockall::Sequence`, …,
/// the same version as the mocks.
#[cfg(feature = "mock")]
pub use oms_core::mockall;

#[cfg(feature = "kafka")]
pub use oms_adapters_kafka as kafka;
#[cfg(feature = "mysql")]
pub use oms_adapters_mysql as mysql;
#[cfg(feature = "redis")]
pub use oms_adapters_redis as redis;
#[cfg(feature = "toss")]
pub use oms_adapters_toss as toss;

pub mod config;
pub mod embedded;
#[cfg(feature = "http")]
pub mod http;
pub mod observe;
#[cfg(all(
    feature = "kafka",
    feature = "redis",
    feature = "mysql",
    feature = "toss"
))]
pub mod runtime;
pub mod tasks;
