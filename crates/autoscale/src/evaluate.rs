//! The evaluator: one task that, every sample interval (and at once when a
//! policy changes), looks at each app with a policy, measures, decides and
//! applies. It is the only writer of autoscale decisions.

use crate::decide::{recommend, stabilise};
use crate::policy::number;
use crate::{Autoscaler, Decision, Measurement, Target};
use chrono::Utc;
use slipway_deploy::AUTOSCALER;
use slipway_domain::AppRecord;
use slipway_metrics::measure::{app_points, mean};
use slipway_store::{AutoscaleRow, StoreError};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Samples older than this many intervals are stale: no decision from them.
const FRESH_INTERVALS: i64 = 3;

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Autoscaler {
    /// Starts the evaluator (needs a Tokio runtime).
    pub fn start(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let every = this.interval().max(Duration::from_millis(100));
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = this.inner.wake.notified() => {}
                }
                if let Err(e) = this.evaluate().await {
                    tracing::warn!(error = %e, "autoscale evaluation failed");
                }
            }
        });
    }

    /// One look at every app with a policy.
    pub(crate) async fn evaluate(&self) -> Result<(), StoreError> {
        let policies = self.store().autoscale_policies().await?;
        let ids: HashSet<i64> = policies.iter().map(|p| p.app_id).collect();
        self.tracked().retain(|id, _| ids.contains(id));
        for row in policies {
            let Some(app) = self.store().app_by_id(row.app_id).await? else {
                continue;
            };
            if let Err(e) = self.evaluate_app(&app, &row).await {
                tracing::warn!(app = %app.name, error = %e, "autoscaling failed");
            }
        }
        Ok(())
    }

    async fn evaluate_app(&self, app: &AppRecord, row: &AutoscaleRow) -> Result<(), String> {
        let now_ms = self.inner.started.elapsed().as_millis() as i64;
        let (min, max) = (row.min_replicas as u32, row.max_replicas as u32);
        let current = app.spec.replicas;
        // Outside the range (an older scale, or a new policy): into it at once.
        if current < min || current > max {
            let to = current.clamp(min, max);
            let reason = format!(
                "scaled {} from {current} to {to}: the policy keeps {min}–{max} replicas",
                if to > current { "up" } else { "down" }
            );
            return self.apply(app, current, to, reason).await;
        }
        if app.release.is_none() {
            return Ok(()); // Nothing runs: nothing to measure.
        }
        let target = Target::of(row);
        let (series_name, per_unit) = match target {
            // The sampler records % of one core summed over replicas.
            Target::CpuPercent(_) => ("cpu_percent", 1.0 / app.spec.cpus.unwrap_or(1.0)),
            Target::RpsPerReplica(_) => ("requests_per_s", 1.0),
        };
        let interval_ms = self.interval().as_millis() as i64;
        let t_now = wall_ms();
        let floor = t_now - FRESH_INTERVALS * interval_ms;
        let from = self
            .tracked()
            .get(&app.id)
            .and_then(|t| t.last_sample_ms)
            .map_or(floor, |last| last.max(floor));
        let points = app_points(
            self.inner.monitor.series(),
            series_name,
            &app.name,
            from,
            t_now,
        );
        let Some(&(newest, _)) = points.last() else {
            return Ok(()); // No new samples: no decision.
        };
        let values: Vec<f64> = points.iter().map(|(_, v)| v * per_unit).collect();
        let total = mean(&values).unwrap_or(0.0);
        let recommended = recommend(current, total, target.value(), min, max);
        let measurement = Measurement {
            metric: match target {
                Target::CpuPercent(_) => "cpu_percent",
                Target::RpsPerReplica(_) => "rps_per_replica",
            },
            per_replica: total / f64::from(current.max(1)),
            target: target.value(),
            total,
            replicas: current,
            recommended,
            at: Utc::now(),
        };
        let up_ms = row.scale_up_window_s * 1000;
        let down_ms = row.scale_down_window_s * 1000;
        let keep_ms = up_ms.max(down_ms);
        let next = {
            let mut tracked = self.tracked();
            let t = tracked.entry(app.id).or_default();
            // The first look, and any scale made by someone else since the
            // last one, count as a recommendation of the current replicas:
            // nothing scales down before its window has passed.
            if t.last_replicas != Some(current) {
                t.history.hold(now_ms, current, keep_ms);
            }
            t.history.push(now_ms, recommended, keep_ms);
            t.last_sample_ms = Some(newest);
            t.last_replicas = Some(current);
            t.measurement = Some(measurement.clone());
            stabilise(current, &t.history, now_ms, up_ms, down_ms)
        };
        if next == current {
            return Ok(());
        }
        let unit = target.unit();
        let mut reason = format!(
            "scaled {} from {current} to {next}: {} {unit} per replica over {current} (target {}), {recommended} recommended",
            if next > current { "up" } else { "down" },
            number(measurement.per_replica),
            number(target.value()),
        );
        if next > current && next < recommended {
            reason.push_str("; at most double per step");
        }
        if next < current && row.scale_down_window_s > 0 {
            reason.push_str(&format!(
                "; highest over the last {} s",
                row.scale_down_window_s
            ));
        }
        self.apply(app, current, next, reason).await
    }

    /// Scales through the deployer (the path of `slipway scale`) and records
    /// the decision.
    async fn apply(
        &self,
        app: &AppRecord,
        from: u32,
        to: u32,
        reason: String,
    ) -> Result<(), String> {
        self.inner
            .deploy
            .scale(app, to, AUTOSCALER)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(app = %app.name, from, to, "{reason}");
        self.event(app.id, &reason).await;
        let mut tracked = self.tracked();
        let t = tracked.entry(app.id).or_default();
        t.last_replicas = Some(to);
        t.decision = Some(Decision {
            from,
            to,
            reason,
            at: Utc::now(),
        });
        Ok(())
    }
}
