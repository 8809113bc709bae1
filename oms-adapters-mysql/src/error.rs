use oms_core::domain::OmsError;
use sqlx::error::ErrorKind;
use sqlx::mysql::MySqlDatabaseError;

/// Server error numbers (MySQL and MariaDB) that say the statement's *data*
/// can never be stored as it is: trying the same statement again cannot
/// succeed, so the error is not retryable and the consumer isolates the
/// order at fault.
const DATA_ERRORS: &[u16] = &[
    1048, // ER_BAD_NULL_ERROR
    1264, // ER_WARN_DATA_OUT_OF_RANGE
    1292, // ER_TRUNCATED_WRONG_VALUE
    1364, // ER_NO_DEFAULT_FOR_FIELD
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (e.g. a bad character)
    1390, // ER_PS_MANY_PARAM (more than 65,535 placeholders)
    1406, // ER_DATA_TOO_LONG
    1451, // ER_ROW_IS_REFERENCED_2
    1452, // ER_NO_REFERENCED_ROW_2
];

/// Classifies a sqlx error:
///
/// * unique and check violations are conflicts (a concurrent writer got
///   there first; retried);
/// * data the database can never store (foreign keys, NULLs, values too
///   long or out of range, too many placeholders) and rows the adapter
///   cannot decode are [`OmsError::Internal`], never retried;
/// * everything else — connections, pool timeouts, deadlocks, lock-wait and
///   statement timeouts, a server that is shutting down, read-only, or
///   misconfigured until an operator fixes it — means the database did not
///   do the work: [`OmsError::Unavailable`], retried.
pub(crate) fn db_error(e: sqlx::Error) -> OmsError {
    match &e {
        sqlx::Error::Database(db) => {
            match db.kind() {
                ErrorKind::UniqueViolation | ErrorKind::CheckViolation => {
                    return OmsError::Conflict(db.message().to_owned())
                }
                ErrorKind::ForeignKeyViolation | ErrorKind::NotNullViolation => {
                    return OmsError::Internal(db.message().to_owned())
                }
                _ => {}
            }
            let number = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number);
            if number.is_some_and(|n| DATA_ERRORS.contains(&n)) {
                return OmsError::Internal(format!("mysql refused the data: {}", db.message()));
            }
            OmsError::unavailable("mysql", e)
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::Encode(_) => OmsError::Internal(format!("mysql row not usable: {e}")),
        _ => OmsError::unavailable("mysql", e),
    }
}

/// Whether the error is a unique-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), ErrorKind::UniqueViolation))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sqlx::mysql::MySqlPool;

    /// Runs against the database of `scripts/services.sh up`.
    async fn pool() -> MySqlPool {
        let url = std::env::var("OMS_DATABASE_URL").unwrap_or_else(|_| {
            panic!("OMS_DATABASE_URL is not set: run `scripts/services.sh up && source target/services.env`")
        });
        MySqlPool::connect(&url).await.unwrap()
    }

    #[tokio::test]
    async fn too_many_placeholders_is_not_retryable() {
        if !oms_core::testkit::services::services_set(&["OMS_DATABASE_URL"]) {
            return;
        }
        let pool = pool().await;
        let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new("SELECT 1 FROM DUAL WHERE 1 IN (");
        let mut sep = q.separated(", ");
        for n in 0..65_536 {
            sep.push_bind(n);
        }
        q.push(")");
        let e = db_error(q.build().execute(&pool).await.unwrap_err());
        assert!(matches!(e, OmsError::Internal(_)), "{e:?}");
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn lost_connections_and_missing_tables_are_retryable() {
        if !oms_core::testkit::services::services_set(&["OMS_DATABASE_URL"]) {
            return;
        }
        let pool = pool().await;
        let closed = sqlx::mysql::MySqlPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(500))
            .connect_lazy("mysql://oms:oms@127.0.0.1:9/oms")
            .unwrap();
        let e = db_error(sqlx::query("SELECT 1").execute(&closed).await.unwrap_err());
        assert!(e.is_retryable(), "{e:?}");
        let e = db_error(
            sqlx::query("SELECT * FROM no_such_table_here")
                .execute(&pool)
                .await
                .unwrap_err(),
        );
        assert!(e.is_retryable(), "an operator can fix a schema: {e:?}");
    }
}
