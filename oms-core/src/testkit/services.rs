//! The real services of the adapter and end-to-end suites (Redis, MariaDB,
//! the Kafka broker), found through the environment that
//! `scripts/services.sh up` writes to `target/services.env`.
//!
//! A plain `cargo test` on a fresh checkout has none of them: each
//! real-stack test then reports that it was skipped, and how to run it, on
//! the terminal (past the test harness's capture) and passes. With
//! [`REQUIRE_SERVICES`] set, as `scripts/test.sh` sets it, a missing service
//! fails the test instead.
//!
//! ```
//! use oms_core::testkit::services::service_env;
//!
//! # fn a_real_stack_test() {
//! let Some(url) = service_env("OMS_REDIS_URL") else {
//!     return; // skipped, and said so
//! };
//! // ... connect to `url` ...
//! # let _ = url;
//! # }
//! ```

use std::io::Write;

/// Set (to anything) to make a missing service an error rather than a skip.
pub const REQUIRE_SERVICES: &str = "OMS_REQUIRE_SERVICES";

/// How to get the services.
pub const HOW_TO_RUN: &str =
    "run `scripts/services.sh up && source target/services.env` first, or `scripts/test.sh`";

/// The value of the environment variable `name` that names a service; when
/// it is unset or empty, reports the calling test as skipped and returns
/// `None` — or panics when [`REQUIRE_SERVICES`] is set.
pub fn service_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            skipped(name);
            None
        }
    }
}

/// Whether every variable of `names` is set; reports the calling test as
/// skipped (or panics, see [`service_env`]) naming the first one missing.
pub fn services_set(names: &[&str]) -> bool {
    names.iter().all(|name| service_env(name).is_some())
}

fn skipped(name: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a real-stack test");
    if std::env::var_os(REQUIRE_SERVICES).is_some() {
        panic!("{test}: {name} is not set and {REQUIRE_SERVICES} is: {HOW_TO_RUN}");
    }
    // Written to the stream itself, not through `eprintln!`, so that the
    // test harness does not swallow it with the output of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs the real services ({name} is not set); {HOW_TO_RUN}"
    );
}
