//! Slipway's alerting.
//!
//! * Rules per app ([`rule`]): `replica_down`, `error_rate`, `p99`, `cpu`,
//!   each with a threshold and a `for` duration, validated and bounded.
//! * The evaluator ([`Alerts::start`]): every sample interval it judges each
//!   enabled rule against monitoring's ring (`crates/metrics`) and the
//!   deployer's replicas, and moves its alert inactive → pending → firing →
//!   resolved ([`state`]). Firing alerts are stored, and loaded again at start.
//! * Delivery: a JSON POST signed with HMAC-SHA256 like the CI webhooks
//!   (`slipway_auth::signing`) to each active webhook of the app, retried
//!   with backoff, every attempt recorded.

#![warn(missing_docs)]

mod deliver;
mod evaluate;
mod measure;
pub mod rule;
pub mod state;

pub use deliver::{ATTEMPT_TIMEOUT, MAX_ATTEMPTS};
pub use evaluate::STARTUP_GRACE;
pub use rule::{AlertKind, RuleInput, MAX_RULES_PER_APP};
pub use state::RuleStatus;

use chrono::{DateTime, Utc};
use serde::Serialize;
use slipway_auth::secrets::SecretBox;
use slipway_deploy::Deployer;
use slipway_domain::AppRecord;
use slipway_metrics::Monitor;
use slipway_store::{
    AlertDeliveryRow, AlertEventRow, AlertRuleRow, AlertWebhookRow, Store, StoreError,
};
use state::Phase;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Webhooks one app may have.
pub const MAX_WEBHOOKS_PER_APP: usize = 20;
/// Longest webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// How alerting is set up by the server.
#[derive(Debug, Clone)]
pub struct AlertOptions {
    /// The server's data directory (the secrets key lives there).
    pub data_dir: PathBuf,
    /// Time between evaluations (the monitoring sample interval).
    pub interval: Duration,
    /// What webhook URLs may reach besides public addresses
    /// (`slipway_egress`: checked at creation and at every attempt).
    pub egress: slipway_egress::EgressPolicy,
}

/// Why an alerting operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The request is invalid; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// Something does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The secrets key could not be used.
    #[error("{0}")]
    Secret(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the evaluator knows about one rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked {
    phase: Phase,
    value: Option<f64>,
    evaluated_at: Option<DateTime<Utc>>,
}

/// The alerting service. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    deploy: Deployer,
    monitor: Monitor,
    options: AlertOptions,
    tracked: Mutex<HashMap<i64, Tracked>>,
    wake: Notify,
    public_url: Mutex<Option<String>>,
    secret_box: OnceLock<SecretBox>,
    hook_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// When the evaluator started (for the replica start-up grace).
    started: OnceLock<std::time::Instant>,
}

/// A rule as the API shows it, with its alert's state.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// Id.
    pub id: i64,
    /// App name.
    pub app: String,
    /// Kind.
    pub kind: String,
    /// Fires when the value is above it.
    pub threshold: f64,
    /// Unit of value and threshold.
    pub unit: &'static str,
    /// Seconds the condition must hold.
    pub for_s: i64,
    /// Seconds of samples the value is computed over (0: replicas now).
    pub window_s: i64,
    /// Least requests for a verdict (0: not traffic based).
    pub min_requests: i64,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// For people.
    pub summary: String,
    /// Its alert now.
    #[serde(flatten)]
    pub status: RuleStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An alert (firing or resolved) as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Id.
    pub id: i64,
    /// App name.
    pub app: String,
    /// Rule (None once deleted).
    pub rule_id: Option<i64>,
    /// Kind.
    pub kind: String,
    /// The rule as it read when it fired.
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// Value that fired it, then the one that resolved it.
    pub value: f64,
    /// Threshold when it fired.
    pub threshold: f64,
    /// Unit.
    pub unit: &'static str,
    /// When it fired.
    pub started_at: DateTime<Utc>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// How long it fired (so far).
    pub duration_s: i64,
}

impl AlertView {
    /// The view of a stored alert of `app`.
    pub fn new(ev: AlertEventRow, app: &str) -> Self {
        let end = ev.resolved_at.unwrap_or_else(Utc::now);
        AlertView {
            id: ev.id,
            app: app.to_string(),
            rule_id: ev.rule_id,
            unit: AlertKind::parse(&ev.kind).map_or("", |k| k.unit()),
            kind: ev.kind,
            rule: ev.summary,
            state: ev.state,
            value: ev.value,
            threshold: ev.threshold,
            duration_s: (end - ev.started_at).num_seconds().max(0),
            started_at: ev.started_at,
            resolved_at: ev.resolved_at,
        }
    }
}

/// A webhook as listed (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    /// Id.
    pub id: i64,
    /// Where the POST goes.
    pub url: String,
    /// Inactive webhooks get nothing.
    pub active: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl From<AlertWebhookRow> for WebhookView {
    fn from(r: AlertWebhookRow) -> Self {
        WebhookView {
            id: r.id,
            url: r.url,
            active: r.active,
            created_at: r.created_at,
        }
    }
}

/// A delivery as listed.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// Id (the `X-Slipway-Delivery` header).
    pub id: i64,
    /// Webhook.
    pub webhook_id: i64,
    /// Alert (None for a test ping).
    pub alert_id: Option<i64>,
    /// `firing`, `resolved` or `ping`.
    pub state: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
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

impl From<AlertDeliveryRow> for DeliveryView {
    fn from(d: AlertDeliveryRow) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            alert_id: d.event_id,
            state: d.state,
            status: d.status,
            attempts: d.attempts,
            response_status: d.response_status,
            error: d.error,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// Checks a webhook URL: absolute http(s), with a host, bounded, no credentials.
pub fn check_url(url: &str) -> Result<(), AlertError> {
    let bad = || {
        AlertError::Invalid(format!(
            "the webhook URL must be an absolute http:// or https:// URL of at most {MAX_URL_LEN} characters, without user:password@"
        ))
    };
    if url.len() > MAX_URL_LEN {
        return Err(bad());
    }
    let u = reqwest::Url::parse(url).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host().is_none()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err(bad());
    }
    Ok(())
}

impl Alerts {
    /// Alerting over `deploy`'s apps and `monitor`'s samples; nothing is
    /// evaluated until [`Alerts::start`].
    pub fn new(store: Store, deploy: Deployer, monitor: Monitor, options: AlertOptions) -> Self {
        Alerts {
            inner: Arc::new(Inner {
                store,
                deploy,
                monitor,
                options,
                tracked: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                public_url: Mutex::new(None),
                secret_box: OnceLock::new(),
                hook_locks: Mutex::new(HashMap::new()),
                started: OnceLock::new(),
            }),
        }
    }

    /// Sets the base URL people reach the server at (`http://host:port`), for
    /// the app links in notifications.
    pub fn set_public_url(&self, url: &str) {
        *self
            .inner
            .public_url
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(url.trim_end_matches('/').to_string());
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn tracked(&self) -> MutexGuard<'_, HashMap<i64, Tracked>> {
        self.inner.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn secret_box(&self) -> Result<&SecretBox, AlertError> {
        if let Some(b) = self.inner.secret_box.get() {
            return Ok(b);
        }
        // The deployer shares this key file; if it creates it at the same
        // moment, the second attempt reads what it wrote.
        let path = self.inner.options.data_dir.join("app-secrets.key");
        let b = SecretBox::load_or_create(&path)
            .or_else(|_| SecretBox::load_or_create(&path))
            .map_err(AlertError::Secret)?;
        Ok(self.inner.secret_box.get_or_init(|| b))
    }

    /// The state of a rule's alert now.
    pub fn status(&self, rule: &AlertRuleRow) -> RuleStatus {
        let t = if rule.enabled {
            self.tracked().get(&rule.id).copied()
        } else {
            None
        };
        match t {
            Some(t) => RuleStatus {
                state: t.phase.name(),
                since: match t.phase {
                    Phase::Inactive => None,
                    Phase::Pending { since } | Phase::Firing { since, .. } => Some(since),
                },
                value: t.value,
                evaluated_at: t.evaluated_at,
            },
            None => RuleStatus {
                state: if rule.enabled { "inactive" } else { "disabled" },
                since: None,
                value: None,
                evaluated_at: None,
            },
        }
    }

    fn view(&self, rule: AlertRuleRow, app: &str) -> RuleView {
        RuleView {
            status: self.status(&rule),
            summary: rule::summary(&rule),
            unit: AlertKind::parse(&rule.kind).map_or("", |k| k.unit()),
            id: rule.id,
            app: app.to_string(),
            kind: rule.kind,
            threshold: rule.threshold,
            for_s: rule.for_s,
            window_s: rule.window_s,
            min_requests: rule.min_requests,
            enabled: rule.enabled,
            created_at: rule.created_at,
            updated_at: rule.updated_at,
        }
    }

    /// An app's rules with their state.
    pub async fn rules(&self, app: &AppRecord) -> Result<Vec<RuleView>, AlertError> {
        Ok(self
            .store()
            .alert_rules(app.id)
            .await?
            .into_iter()
            .map(|r| self.view(r, &app.name))
            .collect())
    }

    /// Adds a rule to an app (validated; at most [`MAX_RULES_PER_APP`]).
    pub async fn add_rule(
        &self,
        app: &AppRecord,
        input: &RuleInput,
    ) -> Result<RuleView, AlertError> {
        let settings = input.create().map_err(AlertError::Invalid)?;
        if self.store().alert_rules(app.id).await?.len() >= MAX_RULES_PER_APP {
            return Err(AlertError::Invalid(format!(
                "app {} already has {MAX_RULES_PER_APP} alert rules, the most allowed; remove one first",
                app.name
            )));
        }
        let row = self.store().create_alert_rule(app.id, &settings).await?;
        self.wake();
        Ok(self.view(row, &app.name))
    }

    /// Changes a rule; fields not given stay. A disabled rule's alert resolves.
    pub async fn update_rule(
        &self,
        app: &AppRecord,
        id: i64,
        input: &RuleInput,
    ) -> Result<RuleView, AlertError> {
        let missing = || AlertError::NotFound(format!("app {} has no alert rule {id}", app.name));
        let rule = self
            .store()
            .alert_rule(app.id, id)
            .await?
            .ok_or_else(missing)?;
        let settings = input.apply(&rule).map_err(AlertError::Invalid)?;
        let row = self
            .store()
            .update_alert_rule(app.id, id, &settings)
            .await?
            .ok_or_else(missing)?;
        self.wake();
        Ok(self.view(row, &app.name))
    }

    /// Deletes a rule; its firing alert resolves. False when there was none.
    pub async fn delete_rule(&self, app: &AppRecord, id: i64) -> Result<bool, AlertError> {
        let done = self.store().delete_alert_rule(app.id, id).await?;
        if done {
            self.wake();
        }
        Ok(done)
    }

    /// An app's alerts, firing first then newest.
    pub async fn history(&self, app: &AppRecord, limit: i64) -> Result<Vec<AlertView>, AlertError> {
        Ok(self
            .store()
            .alert_events(app.id, limit.clamp(1, 1000))
            .await?
            .into_iter()
            .map(|e| AlertView::new(e, &app.name))
            .collect())
    }

    /// Adds a webhook; the secret is sealed at rest like app secrets.
    pub async fn add_webhook(
        &self,
        app: &AppRecord,
        url: &str,
        secret: &str,
    ) -> Result<WebhookView, AlertError> {
        check_url(url)?;
        self.inner
            .options
            .egress
            .check_url(url)
            .map_err(|e| AlertError::Invalid(e.to_string()))?;
        if secret.is_empty() || secret.len() > 1024 {
            return Err(AlertError::Invalid(
                "the webhook secret must be 1 to 1024 bytes".into(),
            ));
        }
        if self.store().alert_webhooks(app.id).await?.len() >= MAX_WEBHOOKS_PER_APP {
            return Err(AlertError::Invalid(format!(
                "an app may have at most {MAX_WEBHOOKS_PER_APP} alert webhooks"
            )));
        }
        let sealed = self
            .secret_box()?
            .seal(app.id, &deliver::secret_name(url), secret)
            .map_err(AlertError::Secret)?;
        Ok(self
            .store()
            .create_alert_webhook(app.id, url, &sealed)
            .await?
            .into())
    }

    /// An app's webhooks.
    pub async fn webhooks(&self, app: &AppRecord) -> Result<Vec<WebhookView>, AlertError> {
        Ok(self
            .store()
            .alert_webhooks(app.id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Turns a webhook on or off.
    pub async fn set_webhook_active(
        &self,
        app: &AppRecord,
        id: i64,
        active: bool,
    ) -> Result<WebhookView, AlertError> {
        self.store()
            .set_alert_webhook_active(app.id, id, active)
            .await?
            .map(Into::into)
            .ok_or_else(|| {
                AlertError::NotFound(format!("app {} has no alert webhook {id}", app.name))
            })
    }

    /// Deletes a webhook and its deliveries; false when there was none.
    pub async fn delete_webhook(&self, app: &AppRecord, id: i64) -> Result<bool, AlertError> {
        Ok(self.store().delete_alert_webhook(app.id, id).await?)
    }

    /// Sends a signed `ping` to a webhook now (one attempt) and returns how it went.
    pub async fn test_webhook(&self, app: &AppRecord, id: i64) -> Result<DeliveryView, AlertError> {
        let hook = self
            .store()
            .alert_webhook(id)
            .await?
            .filter(|h| h.app_id == app.id)
            .ok_or_else(|| {
                AlertError::NotFound(format!("app {} has no alert webhook {id}", app.name))
            })?;
        let body = serde_json::json!({
            "event": "ping",
            "app": app.name,
            "webhook_id": hook.id,
            "message": "Slipway alert webhook test",
            "sent_at": Utc::now(),
            "url": self.app_link(&app.name),
        })
        .to_string();
        let d = self
            .store()
            .create_alert_delivery(&hook, None, "ping", &body)
            .await?;
        let id = d.id;
        self.deliver(d, hook, 1).await;
        let done = self
            .store()
            .alert_delivery(id)
            .await?
            .ok_or_else(|| AlertError::NotFound(format!("delivery {id} not found")))?;
        Ok(done.into())
    }

    /// An app's deliveries, newest first.
    pub async fn deliveries(
        &self,
        app: &AppRecord,
        limit: i64,
    ) -> Result<Vec<DeliveryView>, AlertError> {
        Ok(self
            .store()
            .alert_deliveries(app.id, limit.clamp(1, 1000))
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[cfg(test)]
mod tests;
