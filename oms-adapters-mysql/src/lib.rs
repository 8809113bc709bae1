#![doc = include_str!("../README.md")]
//!
//! # A pool of the host's
//!
//! [`MySqlStore::new`] takes any [`sqlx::MySqlPool`], e.g. one the host
//! service shares with its own queries, or one that connects on first use:
//!
//! ```
//! use std::time::Duration;
//! use oms_adapters_mysql::MySqlStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sqlx::Error> {
//! // Nothing connects until the store is first used.
//! let pool = sqlx::MySqlPool::connect_lazy("mysql://oms:oms@127.0.0.1:13306/oms")?;
//! let store = MySqlStore::new(pool).with_payment_timeout(Duration::from_secs(15 * 60));
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! This crate has no feature flags.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89, as for every oms crate.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod error;
mod lifecycle;
mod members;
mod orders;
mod products;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use oms_core::domain::OmsResult;
use oms_core::port::outbound::HealthCheck;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

use error::db_error;

/// The sqlx this adapter is built on. A host that hands its own pool to
/// [`MySqlStore::new`] builds it with this version (or depends on the same
/// `sqlx` minor version itself).
pub use sqlx;

/// How long after placement an order is due for payment, unless
/// [`MySqlStore::with_payment_timeout`] says otherwise.
pub const DEFAULT_PAYMENT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The [`OrderStore`](oms_core::port::outbound::OrderStore),
/// [`OrderAdminStore`](oms_core::port::outbound::OrderAdminStore),
/// [`ProductStore`](oms_core::port::outbound::ProductStore),
/// [`LifecycleStore`](oms_core::port::outbound::LifecycleStore) and
/// [`MemberStore`](oms_core::port::outbound::MemberStore) on MySQL /
/// MariaDB.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    payment_timeout: chrono::Duration,
}

impl MySqlStore {
    /// The pool settings [`connect`](Self::connect) uses: up to 16
    /// connections, 3 s acquire timeout, and on every connection a bound on
    /// what one statement may hold it for, so that a runaway query or a
    /// pile-up on a locked row cannot take the pool:
    ///
    /// - statements: 10 s, with MariaDB's `max_statement_time` (seconds,
    ///   every statement), or on MySQL, which lacks it, with
    ///   `max_execution_time` (milliseconds, read-only `SELECT`s only);
    /// - row-lock waits: 10 s, with `innodb_lock_wait_timeout` (both).
    ///
    /// A statement stopped by either fails like any database error: the
    /// store reports the database unavailable (retryable), the consumer
    /// retries its batch, and the connection returns to the pool.
    ///
    /// A host service that builds its own pool for [`new`](Self::new) may
    /// start from these and change what it needs (`max_connections`, …):
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sqlx::Error> {
    /// use oms_adapters_mysql::MySqlStore;
    /// let pool = MySqlStore::pool_options()
    ///     .max_connections(32)
    ///     .connect("mysql://shop:shop@127.0.0.1:3306/shop")
    ///     .await?;
    /// let store = MySqlStore::new(pool.clone()); // the host keeps `pool` for its own queries
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool_options() -> MySqlPoolOptions {
        MySqlPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    let mariadb = conn.execute("SET SESSION max_statement_time = 10").await;
                    if let Err(e) = mariadb {
                        tracing::debug!(error = %e, "no max_statement_time (not MariaDB); using max_execution_time");
                        conn.execute("SET SESSION max_execution_time = 10000")
                            .await?;
                    }
                    conn.execute("SET SESSION innodb_lock_wait_timeout = 10")
                        .await?;
                    Ok(())
                })
            })
    }

    /// Opens a pool of [`pool_options`](Self::pool_options) to `url`.
    pub async fn connect(url: &str) -> OmsResult<Self> {
        let pool = Self::pool_options().connect(url).await.map_err(db_error)?;
        Ok(Self::new(pool))
    }

    /// A store on a caller-owned pool (a host service's own, shared with
    /// its other queries); orders are due for payment
    /// [`DEFAULT_PAYMENT_TIMEOUT`] (10 minutes) after placement. Run
    /// [`migrate`](Self::migrate) once before use. The statement and
    /// lock-wait bounds of [`pool_options`](Self::pool_options) hold only
    /// if the pool was built from them (or sets its own).
    pub fn new(pool: MySqlPool) -> Self {
        Self {
            pool,
            payment_timeout: chrono::Duration::from_std(DEFAULT_PAYMENT_TIMEOUT)
                .unwrap_or(chrono::Duration::MAX),
        }
    }

    /// The store with orders due for payment `timeout` after placement
    /// (`place_batch` writes `payment_due_at = order_date + timeout`).
    pub fn with_payment_timeout(mut self, timeout: Duration) -> Self {
        self.payment_timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// The pool.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Runs the embedded migrations (idempotent). Processes that start
    /// together take turns under a named lock, so exactly one applies them.
    pub async fn migrate(&self) -> OmsResult<()> {
        let failed = |e| oms_core::domain::OmsError::unavailable("mysql migrations", e);
        // A connection of its own (closed when done, never back in the
        // pool): the lock may be held up to 60 s by another process
        // migrating, so this session's statement limit is lifted (MariaDB,
        // then MySQL; whichever the server knows).
        let mut conn = self.pool.acquire().await.map_err(db_error)?.detach();
        for lift in [
            "SET SESSION max_statement_time = 0",
            "SET SESSION max_execution_time = 0",
        ] {
            if let Err(e) = sqlx::query(lift).execute(&mut conn).await {
                tracing::debug!(error = %e, "statement limit not lifted for migrations");
            }
        }
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('oms_migrations', 60)")
            .fetch_one(&mut conn)
            .await
            .map_err(db_error)?;
        if locked != Some(1) {
            return Err(failed(sqlx::Error::Protocol(
                "could not take the migration lock within 60 s".into(),
            )));
        }
        // A process built before a newer migration still starts on a
        // database that has it (rolling upgrades: migrations only add).
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        let result = migrator.run(&mut conn).await;
        let released = sqlx::query("SELECT RELEASE_LOCK('oms_migrations')")
            .execute(&mut conn)
            .await;
        result.map_err(|e| failed(e.into()))?;
        released.map_err(db_error)?;
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for MySqlStore {
    fn name(&self) -> &'static str {
        "mysql"
    }

    async fn check(&self) -> OmsResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Opens the pool's every connection (each answering a `SELECT 1`),
    /// so that a burst at the opening of a sale finds them open.
    async fn warm(&self) -> OmsResult<()> {
        let size = self.pool.options().get_max_connections();
        // Each held until all are open, so that each is a connection of
        // its own; all go back to the pool at the end.
        let mut open = Vec::with_capacity(size as usize);
        for _ in 0..size {
            let mut conn = self.pool.acquire().await.map_err(db_error)?;
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            open.push(conn);
        }
        Ok(())
    }
}

/// An id of the domain as a BIGINT; ids beyond `i64::MAX` match no row.
pub(crate) fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

/// An instant as a `DATETIME(3)` (UTC) holds it: cut, not rounded, to the
/// millisecond, the same on MySQL (which would round) and MariaDB.
pub(crate) fn sql_instant(at: DateTime<Utc>) -> NaiveDateTime {
    at.trunc_subsecs(3).naive_utc()
}

/// A count or limit of the domain as a BIGINT.
pub(crate) fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
