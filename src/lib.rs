#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use oms_core as core;
pub use oms_core::{application, domain, memory, password, port};

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
