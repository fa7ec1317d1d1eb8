//! Alerts: rules per app, the alerts they raised (firing, then resolved),
//! signed webhooks per app and every delivery to them. The rule model and
//! its validation live in `crates/alerts`; rows here are plain.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};

/// Alerts kept per app; older resolved ones are trimmed as new ones open.
const EVENTS_KEPT: i64 = 1000;
/// Deliveries kept per app.
const DELIVERIES_KEPT: i64 = 1000;

/// A stored alert rule.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertRuleRow {
    /// Id (per server).
    pub id: i64,
    /// App the rule watches.
    pub app_id: i64,
    /// `replica_down`, `error_rate`, `p99` or `cpu`.
    pub kind: String,
    /// Fires when the value is above it.
    pub threshold: f64,
    /// Seconds the condition must hold before firing.
    pub for_s: i64,
    /// Seconds of samples the value is computed over.
    pub window_s: i64,
    /// Fewer requests in the window: no verdict.
    pub min_requests: i64,
    /// Disabled rules are not evaluated.
    pub enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The settings of a rule to create or replace.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleSettings {
    /// Kind (validated by the caller).
    pub kind: String,
    /// Threshold.
    pub threshold: f64,
    /// `for` duration, seconds.
    pub for_s: i64,
    /// Window, seconds.
    pub window_s: i64,
    /// Minimum requests for a verdict.
    pub min_requests: i64,
    /// Evaluated or not.
    pub enabled: bool,
}

/// One alert: opened when a rule fires, closed when it resolves.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertEventRow {
    /// Id.
    pub id: i64,
    /// The rule (None once the rule was deleted).
    pub rule_id: Option<i64>,
    /// App.
    pub app_id: i64,
    /// The rule's kind.
    pub kind: String,
    /// The rule as people read it, when it fired.
    pub summary: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// The value that fired it, then the one that resolved it.
    pub value: f64,
    /// The threshold when it fired.
    pub threshold: f64,
    /// When it fired.
    pub started_at: DateTime<Utc>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// An app's alert webhook; `secret` is sealed and never shown.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertWebhookRow {
    /// Id.
    pub id: i64,
    /// App.
    pub app_id: i64,
    /// Where the POST goes.
    pub url: String,
    /// Sealed signing secret.
    pub secret: String,
    /// Inactive webhooks get nothing.
    pub active: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// One notification to one webhook and how its attempts went.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertDeliveryRow {
    /// Id (sent as `X-Slipway-Delivery`).
    pub id: i64,
    /// Webhook.
    pub webhook_id: i64,
    /// App.
    pub app_id: i64,
    /// Alert (None for a test ping).
    pub event_id: Option<i64>,
    /// `firing`, `resolved` or `ping`.
    pub state: String,
    /// The exact JSON body sent.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// HTTP status of the last answer.
    pub response_status: Option<i64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The alert tables; rows of each belong to one app and have an `id`.
#[derive(Debug, Clone, Copy)]
enum Table {
    Rules,
    Events,
    Webhooks,
    Deliveries,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Rules => "alert_rules",
            Table::Events => "alert_events",
            Table::Webhooks => "alert_webhooks",
            Table::Deliveries => "alert_deliveries",
        }
    }
}

/// Queries shared by the alert tables (the table name is never input).
impl Store {
    /// One row of `table` by id (any app).
    async fn alert_row<T>(&self, table: Table, id: i64) -> Result<Option<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let sql = format!("SELECT * FROM {} WHERE id = ?", table.name());
        Ok(sqlx::query_as::<_, T>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every row of `table` for an app, oldest first.
    async fn alert_rows_of_app<T>(&self, table: Table, app_id: i64) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let sql = format!(
            "SELECT * FROM {} WHERE app_id = ? ORDER BY id",
            table.name()
        );
        Ok(sqlx::query_as::<_, T>(&sql)
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Deletes an app's row of `table`; false when there was none.
    async fn delete_alert_row(
        &self,
        table: Table,
        app_id: i64,
        id: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE app_id = ? AND id = ?", table.name());
        let done = sqlx::query(&sql)
            .bind(app_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Trims an app's history in `table` to its newest `kept` rows, deleting
    /// only older rows where `done` (SQL) holds.
    async fn trim_alert_rows(
        &self,
        table: Table,
        done: &str,
        app_id: i64,
        kept: i64,
    ) -> Result<(), StoreError> {
        let t = table.name();
        let sql = format!(
            "DELETE FROM {t} WHERE app_id = ? AND {done} AND id <= (SELECT id FROM {t} WHERE app_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
        );
        sqlx::query(&sql)
            .bind(app_id)
            .bind(app_id)
            .bind(kept)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Adds a rule to an app.
    pub async fn create_alert_rule(
        &self,
        app_id: i64,
        s: &AlertRuleSettings,
    ) -> Result<AlertRuleRow, StoreError> {
        let at = now();
        Ok(sqlx::query_as::<_, AlertRuleRow>(
            "INSERT INTO alert_rules (app_id, kind, threshold, for_s, window_s, min_requests, enabled, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(app_id)
        .bind(&s.kind)
        .bind(s.threshold)
        .bind(s.for_s)
        .bind(s.window_s)
        .bind(s.min_requests)
        .bind(s.enabled)
        .bind(at)
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces a rule's settings; None when the app has no such rule.
    pub async fn update_alert_rule(
        &self,
        app_id: i64,
        id: i64,
        s: &AlertRuleSettings,
    ) -> Result<Option<AlertRuleRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertRuleRow>(
            "UPDATE alert_rules SET kind = ?, threshold = ?, for_s = ?, window_s = ?, min_requests = ?,
             enabled = ?, updated_at = ? WHERE app_id = ? AND id = ? RETURNING *",
        )
        .bind(&s.kind)
        .bind(s.threshold)
        .bind(s.for_s)
        .bind(s.window_s)
        .bind(s.min_requests)
        .bind(s.enabled)
        .bind(now())
        .bind(app_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Rules of an app, oldest first.
    pub async fn alert_rules(&self, app_id: i64) -> Result<Vec<AlertRuleRow>, StoreError> {
        self.alert_rows_of_app(Table::Rules, app_id).await
    }

    /// One rule of an app.
    pub async fn alert_rule(
        &self,
        app_id: i64,
        id: i64,
    ) -> Result<Option<AlertRuleRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertRuleRow>(
            "SELECT * FROM alert_rules WHERE app_id = ? AND id = ?",
        )
        .bind(app_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every enabled rule of every app, for the evaluator.
    pub async fn enabled_alert_rules(&self) -> Result<Vec<AlertRuleRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertRuleRow>(
            "SELECT * FROM alert_rules WHERE enabled = 1 ORDER BY app_id, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a rule (its alerts stay in the history); false when there was none.
    pub async fn delete_alert_rule(&self, app_id: i64, id: i64) -> Result<bool, StoreError> {
        self.delete_alert_row(Table::Rules, app_id, id).await
    }

    /// Opens an alert for a rule; `Conflict` when the rule already has one open.
    pub async fn open_alert_event(
        &self,
        rule: &AlertRuleRow,
        summary: &str,
        value: f64,
        started_at: DateTime<Utc>,
    ) -> Result<AlertEventRow, StoreError> {
        let row = sqlx::query_as::<_, AlertEventRow>(
            "INSERT INTO alert_events (rule_id, app_id, kind, summary, state, value, threshold, started_at)
             VALUES (?, ?, ?, ?, 'firing', ?, ?, ?) RETURNING *",
        )
        .bind(rule.id)
        .bind(rule.app_id)
        .bind(&rule.kind)
        .bind(summary)
        .bind(value)
        .bind(rule.threshold)
        .bind(started_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if crate::error::is_unique_violation(&e) {
                StoreError::Conflict(format!("rule {} already has a firing alert", rule.id))
            } else {
                StoreError::Db(e)
            }
        })?;
        self.trim_alert_rows(
            Table::Events,
            "state = 'resolved'",
            rule.app_id,
            EVENTS_KEPT,
        )
        .await?;
        Ok(row)
    }

    /// Closes a firing alert with the value that resolved it; None when it
    /// was not firing (already resolved: nothing happens twice).
    pub async fn resolve_alert_event(
        &self,
        id: i64,
        value: f64,
        at: DateTime<Utc>,
    ) -> Result<Option<AlertEventRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertEventRow>(
            "UPDATE alert_events SET state = 'resolved', value = ?, resolved_at = ?
             WHERE id = ? AND state = 'firing' RETURNING *",
        )
        .bind(value)
        .bind(at)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every firing alert (loaded at start so none is lost or fired twice).
    pub async fn firing_alert_events(&self) -> Result<Vec<AlertEventRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertEventRow>(
            "SELECT * FROM alert_events WHERE state = 'firing' ORDER BY started_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Alerts across apps, firing first then newest (`state`: None for all).
    pub async fn alert_events_all(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertEventRow>(
            "SELECT * FROM alert_events WHERE (? IS NULL OR state = ?)
             ORDER BY state = 'firing' DESC, id DESC LIMIT ?",
        )
        .bind(state)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// An app's alerts, firing first then newest.
    pub async fn alert_events(
        &self,
        app_id: i64,
        limit: i64,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertEventRow>(
            "SELECT * FROM alert_events WHERE app_id = ?
             ORDER BY state = 'firing' DESC, id DESC LIMIT ?",
        )
        .bind(app_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One alert.
    pub async fn alert_event(&self, id: i64) -> Result<Option<AlertEventRow>, StoreError> {
        self.alert_row(Table::Events, id).await
    }

    /// Adds a webhook to an app.
    pub async fn create_alert_webhook(
        &self,
        app_id: i64,
        url: &str,
        sealed_secret: &str,
    ) -> Result<AlertWebhookRow, StoreError> {
        Ok(sqlx::query_as::<_, AlertWebhookRow>(
            "INSERT INTO alert_webhooks (app_id, url, secret, active, created_at) VALUES (?, ?, ?, 1, ?) RETURNING *",
        )
        .bind(app_id)
        .bind(url)
        .bind(sealed_secret)
        .bind(now())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Webhooks of an app, oldest first.
    pub async fn alert_webhooks(&self, app_id: i64) -> Result<Vec<AlertWebhookRow>, StoreError> {
        self.alert_rows_of_app(Table::Webhooks, app_id).await
    }

    /// One webhook (any app).
    pub async fn alert_webhook(&self, id: i64) -> Result<Option<AlertWebhookRow>, StoreError> {
        self.alert_row(Table::Webhooks, id).await
    }

    /// Turns a webhook on or off; None when the app has no such webhook.
    pub async fn set_alert_webhook_active(
        &self,
        app_id: i64,
        id: i64,
        active: bool,
    ) -> Result<Option<AlertWebhookRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertWebhookRow>(
            "UPDATE alert_webhooks SET active = ? WHERE app_id = ? AND id = ? RETURNING *",
        )
        .bind(active)
        .bind(app_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Deletes a webhook with its deliveries; false when there was none.
    pub async fn delete_alert_webhook(&self, app_id: i64, id: i64) -> Result<bool, StoreError> {
        self.delete_alert_row(Table::Webhooks, app_id, id).await
    }

    /// Queues a delivery of `payload` to a webhook.
    pub async fn create_alert_delivery(
        &self,
        hook: &AlertWebhookRow,
        event_id: Option<i64>,
        state: &str,
        payload: &str,
    ) -> Result<AlertDeliveryRow, StoreError> {
        let at = now();
        let row = sqlx::query_as::<_, AlertDeliveryRow>(
            "INSERT INTO alert_deliveries (webhook_id, app_id, event_id, state, payload, status, attempts, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?) RETURNING *",
        )
        .bind(hook.id)
        .bind(hook.app_id)
        .bind(event_id)
        .bind(state)
        .bind(payload)
        .bind(at)
        .bind(at)
        .fetch_one(&self.pool)
        .await?;
        let done = "status <> 'pending'";
        self.trim_alert_rows(Table::Deliveries, done, hook.app_id, DELIVERIES_KEPT)
            .await?;
        Ok(row)
    }

    /// Records one attempt of a delivery.
    pub async fn record_alert_delivery(
        &self,
        id: i64,
        status: &str,
        attempts: i64,
        response_status: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET status = ?, attempts = ?, response_status = ?, error = ?, updated_at = ?
             WHERE id = ?",
        )
        .bind(status)
        .bind(attempts)
        .bind(response_status)
        .bind(error)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries still to be made (after a restart they are sent again).
    pub async fn pending_alert_deliveries(&self) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertDeliveryRow>(
            "SELECT * FROM alert_deliveries WHERE status = 'pending' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One delivery.
    pub async fn alert_delivery(&self, id: i64) -> Result<Option<AlertDeliveryRow>, StoreError> {
        self.alert_row(Table::Deliveries, id).await
    }

    /// An app's deliveries, newest first.
    pub async fn alert_deliveries(
        &self,
        app_id: i64,
        limit: i64,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        Ok(sqlx::query_as::<_, AlertDeliveryRow>(
            "SELECT * FROM alert_deliveries WHERE app_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(app_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
