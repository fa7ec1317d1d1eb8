//! Store failures, split so callers can map them to HTTP statuses.

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The data directory could not be prepared.
    #[error("{0}")]
    Io(String),
    /// The database itself failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// True when `e` is SQLite refusing a duplicate in a UNIQUE column.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
