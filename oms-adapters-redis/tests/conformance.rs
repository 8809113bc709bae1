//! The Redis adapters against a real Redis (`scripts/services.sh up`,
//! `OMS_REDIS_URL`): the suite of `tests/suite`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod suite;

use suite::Kind;

redis_suite!(Kind::Node);
