#![doc = include_str!("../README.md")]
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
