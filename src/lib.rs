#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
