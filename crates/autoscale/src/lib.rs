//! Slipway's horizontal autoscaler.
//!
//! * A policy per app ([`policy`]): `min` and `max` replicas and one target
//!   per replica — CPU % (of the replica's CPU limit, or of one core without
//!   one) or requests/s through the proxy — plus stabilisation windows.
//! * The evaluator ([`Autoscaler::start`]): every monitoring sample interval
//!   it reads the samples recorded since its last look (`crates/metrics`,
//!   the same window reading as alerting), recommends a replica count and
//!   stabilises it ([`decide`]: up at once, down only after the window),
//!   then applies it through [`slipway_deploy::Deployer::scale`] — the path
//!   of `slipway scale` — as actor [`slipway_deploy::AUTOSCALER`]. Every
//!   change is an app event of kind `autoscale`. No new samples: no decision.

#![warn(missing_docs)]

pub mod decide;
mod evaluate;
pub mod policy;
#[cfg(test)]
mod tests;

pub use policy::{PolicyInput, Target};

use chrono::{DateTime, Utc};
use serde::Serialize;
use slipway_deploy::Deployer;
use slipway_domain::AppRecord;
use slipway_metrics::Monitor;
use slipway_store::{AutoscaleRow, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// App event kind of the autoscaler's decisions and policy changes.
pub const EVENT_KIND: &str = "autoscale";

/// Why an autoscale operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AutoscaleError {
    /// The policy is invalid; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the evaluator measured for an app last.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `cpu_percent` or `rps_per_replica`.
    pub metric: &'static str,
    /// Load per replica (over the replicas wanted then), in the target's unit.
    pub per_replica: f64,
    /// The target per replica.
    pub target: f64,
    /// The app's total load, in the target's unit.
    pub total: f64,
    /// Replicas wanted when it was measured.
    pub replicas: u32,
    /// The count this measurement alone recommends (before stabilisation).
    pub recommended: u32,
    /// When.
    pub at: DateTime<Utc>,
}

/// A change of replicas the autoscaler made.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Replicas before.
    pub from: u32,
    /// Replicas after.
    pub to: u32,
    /// Why, for people (also the app event's message).
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An app's autoscaling as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// App name.
    pub app: String,
    /// Whether the app has a policy.
    pub enabled: bool,
    /// Fewest replicas.
    pub min: Option<i64>,
    /// Most replicas.
    pub max: Option<i64>,
    /// Target CPU % per replica.
    pub cpu_percent: Option<f64>,
    /// Target requests/s per replica.
    pub rps_per_replica: Option<f64>,
    /// Scale-down stabilisation window, seconds.
    pub scale_down_window_s: Option<i64>,
    /// Scale-up stabilisation window, seconds.
    pub scale_up_window_s: Option<i64>,
    /// Replicas wanted now.
    pub replicas: u32,
    /// Healthy replicas of the running release.
    pub ready: usize,
    /// The last measurement (since this server started).
    pub last_measurement: Option<Measurement>,
    /// The last change made (since this server started).
    pub last_decision: Option<Decision>,
    /// When the policy last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

/// What the evaluator remembers about one app between ticks.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    history: decide::History,
    /// Time (ms) of the newest sample already used.
    last_sample_ms: Option<i64>,
    /// Replicas wanted at the last look, to notice manual scaling.
    last_replicas: Option<u32>,
    measurement: Option<Measurement>,
    decision: Option<Decision>,
}

/// The autoscaling service. Cheap to clone.
#[derive(Clone)]
pub struct Autoscaler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    deploy: Deployer,
    monitor: Monitor,
    tracked: Mutex<HashMap<i64, Tracked>>,
    wake: Notify,
    /// The evaluator's monotonic clock.
    started: Instant,
}

impl Autoscaler {
    /// Autoscaling of `deploy`'s apps from `monitor`'s samples; nothing is
    /// evaluated until [`Autoscaler::start`].
    pub fn new(store: Store, deploy: Deployer, monitor: Monitor) -> Self {
        Autoscaler {
            inner: Arc::new(Inner {
                store,
                deploy,
                monitor,
                tracked: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                started: Instant::now(),
            }),
        }
    }

    /// Time between evaluations: the monitoring sample interval.
    pub fn interval(&self) -> Duration {
        self.inner.monitor.interval()
    }

    fn tracked(&self) -> MutexGuard<'_, HashMap<i64, Tracked>> {
        self.inner.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The app's policy (if any), replicas and what the evaluator saw last.
    pub async fn view(&self, app: &AppRecord) -> Result<PolicyView, AutoscaleError> {
        let row = self.store().autoscale(app.id).await?;
        let (measurement, decision) = self
            .tracked()
            .get(&app.id)
            .map(|t| (t.measurement.clone(), t.decision.clone()))
            .unwrap_or_default();
        Ok(PolicyView {
            app: app.name.clone(),
            enabled: row.is_some(),
            min: row.as_ref().map(|r| r.min_replicas),
            max: row.as_ref().map(|r| r.max_replicas),
            cpu_percent: row.as_ref().and_then(|r| r.cpu_percent),
            rps_per_replica: row.as_ref().and_then(|r| r.rps_per_replica),
            scale_down_window_s: row.as_ref().map(|r| r.scale_down_window_s),
            scale_up_window_s: row.as_ref().map(|r| r.scale_up_window_s),
            replicas: app.spec.replicas,
            ready: self.inner.deploy.ready(app),
            last_measurement: measurement,
            last_decision: decision,
            updated_at: row.map(|r| r.updated_at),
        })
    }

    /// Sets (or replaces) the app's policy and evaluates it at once; replicas
    /// outside the new range are brought into it on that first look.
    pub async fn set(
        &self,
        app: &AppRecord,
        input: &PolicyInput,
        actor: &str,
    ) -> Result<AutoscaleRow, AutoscaleError> {
        let settings = input.validate().map_err(AutoscaleError::Invalid)?;
        let row = self.store().set_autoscale(app.id, &settings).await?;
        // A new policy starts from a clean slate: its first recommendation
        // decides, and nothing scales down before its window has passed.
        self.tracked().remove(&app.id);
        self.event(
            app.id,
            &format!("autoscaling on by {actor}: {}", policy::summary(&row)),
        )
        .await;
        self.inner.wake.notify_one();
        Ok(row)
    }

    /// Turns autoscaling of the app off (replicas stay as they are); false
    /// when it was off.
    pub async fn remove(&self, app: &AppRecord, actor: &str) -> Result<bool, AutoscaleError> {
        if !self.store().delete_autoscale(app.id).await? {
            return Ok(false);
        }
        self.tracked().remove(&app.id);
        self.event(
            app.id,
            &format!(
                "autoscaling off by {actor}; replicas stay at {}",
                app.spec.replicas
            ),
        )
        .await;
        Ok(true)
    }

    async fn event(&self, app_id: i64, message: &str) {
        if let Err(e) = self
            .store()
            .add_app_event(app_id, EVENT_KIND, message)
            .await
        {
            tracing::warn!(app_id, error = %e, "cannot record an autoscale event");
        }
    }
}
