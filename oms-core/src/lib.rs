#![doc = include_str!("../README.md")]
//!
//! # Feature flags
//!
#![doc = document_features::document_features!()]
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89, as for every oms crate.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod application;
pub mod domain;
#[cfg(feature = "memory")]
pub mod memory;
pub mod observe;
pub mod password;
pub mod port;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

/// The mockall the `MockXxx` of the ports are generated with (feature
/// `mock`): use its `predicate`, `Sequence` and the rest from here, so
/// that they are the same version as the mocks.
#[cfg(feature = "mock")]
pub use mockall;
