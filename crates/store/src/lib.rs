//! Slipway's embedded store.
//!
//! One SQLite file in WAL mode (readers never block the writer), opened through
//! `sqlx` with a small connection pool. The schema is versioned by the SQL files
//! in `migrations/`, applied at open. Each module adds the queries of one part of
//! the domain to [`Store`]. The cluster backend (etcd) will sit beside this one
//! behind a trait shaped by what both really need.

mod alerts;
mod apps;
mod autoscale;
mod error;
mod events;
mod exec_jobs;
mod pipelines;
mod repos;
mod settings;
mod tokens;
mod users;
mod webhooks;

pub use alerts::{
    AlertDeliveryRow, AlertEventRow, AlertRuleRow, AlertRuleSettings, AlertWebhookRow,
};
pub use apps::{AppEvent, NewRelease};
pub use autoscale::{AutoscaleRow, AutoscaleSettings};
pub use error::StoreError;
pub use exec_jobs::{ExecJobRecord, ExecQueueRow, NewExecJob};
pub use pipelines::{NewPipeline, NewStep};
pub use tokens::NewTokenRecord;
pub use webhooks::WebhookRow;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Handle to the database; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to the
    /// latest schema.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Io(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
