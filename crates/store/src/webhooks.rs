//! Repository webhooks: URLs told when a pipeline ends.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};

/// A stored webhook; `secret` is sealed by the CI service and never shown.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    /// Id used to delete it.
    pub id: i64,
    /// Repository id.
    pub repo_id: i64,
    /// Where the POST goes.
    pub url: String,
    /// Sealed signing secret.
    pub secret: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// Outcome of the last delivery: `delivered` or `failed`.
    pub last_status: Option<String>,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
    /// When the last delivery ended.
    pub last_delivery_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Adds a webhook to a repository.
    pub async fn create_webhook(
        &self,
        repo_id: i64,
        url: &str,
        sealed_secret: &str,
    ) -> Result<WebhookRow, StoreError> {
        Ok(sqlx::query_as::<_, WebhookRow>(
            "INSERT INTO repo_webhooks (repo_id, url, secret, created_at) VALUES (?, ?, ?, ?) RETURNING *",
        )
        .bind(repo_id)
        .bind(url)
        .bind(sealed_secret)
        .bind(now())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Webhooks of a repository, oldest first.
    pub async fn webhooks(&self, repo_id: i64) -> Result<Vec<WebhookRow>, StoreError> {
        Ok(sqlx::query_as::<_, WebhookRow>(
            "SELECT * FROM repo_webhooks WHERE repo_id = ? ORDER BY id",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records how a webhook's delivery ended (`delivered` or `failed`, with why).
    pub async fn record_webhook_delivery(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE repo_webhooks SET last_status = ?, last_error = ?, last_delivery_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(error)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a webhook of a repository; false when there was none.
    pub async fn delete_webhook(&self, repo_id: i64, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM repo_webhooks WHERE repo_id = ? AND id = ?")
            .bind(repo_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
