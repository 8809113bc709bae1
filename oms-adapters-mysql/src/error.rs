use oms_core::domain::OmsError;
use sqlx::error::ErrorKind;

/// Classifies a sqlx error: constraint violations are conflicts (a
/// concurrent writer got there first), everything else means the database
/// did not do the work.
pub(crate) fn db_error(e: sqlx::Error) -> OmsError {
    if let Some(db) = e.as_database_error() {
        match db.kind() {
            ErrorKind::UniqueViolation | ErrorKind::CheckViolation => {
                return OmsError::Conflict(db.message().to_owned())
            }
            ErrorKind::ForeignKeyViolation | ErrorKind::NotNullViolation => {
                return OmsError::Invalid(db.message().to_owned())
            }
            _ => {}
        }
    }
    OmsError::unavailable("mysql", e)
}

/// Whether the error is a unique-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), ErrorKind::UniqueViolation))
}
