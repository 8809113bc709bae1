#![doc = include_str!("../README.md")]
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
    /// Opens a pool of up to 16 connections to `url` (3 s acquire timeout).
    ///
    /// Every connection bounds what one statement may hold it for, so that
    /// a runaway query or a pile-up on a locked row cannot take the pool:
    ///
    /// - statements: 10 s, with MariaDB's `max_statement_time` (seconds,
    ///   every statement), or on MySQL, which lacks it, with
    ///   `max_execution_time` (milliseconds, read-only `SELECT`s only);
    /// - row-lock waits: 10 s, with `innodb_lock_wait_timeout` (both).
    ///
    /// A statement stopped by either fails like any database error: the
    /// store reports the database unavailable (retryable), the consumer
    /// retries its batch, and the connection returns to the pool.
    pub async fn connect(url: &str) -> OmsResult<Self> {
        let pool = MySqlPoolOptions::new()
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
            .connect(url)
            .await
            .map_err(db_error)?;
        Ok(Self::new(pool))
    }

    /// A store on a caller-owned pool; orders are due for payment
    /// [`DEFAULT_PAYMENT_TIMEOUT`] (10 minutes) after placement.
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
