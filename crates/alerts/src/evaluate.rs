//! The evaluator: one task that, every sample interval (and at once when a
//! rule changes), judges every enabled rule and moves its alert along. It is
//! the only writer of alert transitions, so nothing fires or resolves twice;
//! the store's one-open-alert-per-rule index guards restarts as well.

use crate::measure;
use crate::rule::{summary, AlertKind};
use crate::state::{step, Action, Phase, Verdict};
use crate::{Alerts, Tracked};
use chrono::Utc;
use slipway_domain::AppRecord;
use slipway_store::{AlertRuleRow, StoreError};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// After a start, `replica_down` rules wait this long for a verdict: the
/// deployer first adopts the replicas that kept running (Prometheus has the
/// same kind of grace for restored alerts).
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);

impl Alerts {
    /// Starts the evaluator (needs a Tokio runtime): loads the open alerts,
    /// resumes pending deliveries, then evaluates every interval.
    pub fn start(&self) {
        let _ = self.inner.started.set(Instant::now());
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.load().await {
                tracing::error!(error = %e, "cannot load the open alerts");
            }
            this.resume_deliveries().await;
            let every = this.inner.options.interval.max(Duration::from_millis(100));
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = this.inner.wake.notified() => {}
                }
                if let Err(e) = this.evaluate().await {
                    tracing::warn!(error = %e, "alert evaluation failed");
                }
            }
        });
    }

    /// Asks the evaluator to run now (a rule changed).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Takes over the alerts that were firing when the server stopped, so
    /// they neither get lost nor fire again.
    pub(crate) async fn load(&self) -> Result<(), StoreError> {
        for ev in self.store().firing_alert_events().await? {
            match ev.rule_id {
                Some(rule) => {
                    self.tracked().insert(
                        rule,
                        Tracked {
                            phase: Phase::Firing {
                                event_id: ev.id,
                                since: ev.started_at,
                            },
                            value: Some(ev.value),
                            evaluated_at: None,
                        },
                    );
                }
                // Its rule was deleted: nothing will ever resolve it but us.
                None => {
                    if let Some(done) = self
                        .store()
                        .resolve_alert_event(ev.id, ev.value, Utc::now())
                        .await?
                    {
                        if let Some(app) = self.store().app_by_id(done.app_id).await? {
                            self.notify(&done, &app.name).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One evaluation of every enabled rule.
    pub async fn evaluate(&self) -> Result<(), StoreError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.evaluate_at(now_ms).await
    }

    /// One evaluation with samples up to `now_ms` (Unix milliseconds).
    pub(crate) async fn evaluate_at(&self, now_ms: i64) -> Result<(), StoreError> {
        let rules = self.store().enabled_alert_rules().await?;
        let apps: HashMap<i64, AppRecord> = self
            .store()
            .list_apps()
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let mut seen = HashSet::new();
        for rule in &rules {
            let Some(app) = apps.get(&rule.app_id) else {
                continue;
            };
            seen.insert(rule.id);
            let verdict = self.verdict(rule, app, now_ms).await?;
            self.advance(rule, &app.name, verdict).await;
        }
        // Rules deleted or disabled since: close their alerts.
        let gone: Vec<(i64, Tracked)> = {
            let mut tracked = self.tracked();
            let ids: Vec<i64> = tracked
                .keys()
                .filter(|id| !seen.contains(id))
                .copied()
                .collect();
            ids.into_iter()
                .filter_map(|id| tracked.remove(&id).map(|t| (id, t)))
                .collect()
        };
        for (_, t) in gone {
            if let Phase::Firing { event_id, .. } = t.phase {
                let value = match t.value {
                    Some(v) => v,
                    None => self
                        .store()
                        .alert_event(event_id)
                        .await?
                        .map_or(0.0, |e| e.value),
                };
                if let Some(done) = self
                    .store()
                    .resolve_alert_event(event_id, value, Utc::now())
                    .await?
                {
                    if let Some(app) = apps.get(&done.app_id) {
                        self.notify(&done, &app.name).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Judges one rule now.
    async fn verdict(
        &self,
        rule: &AlertRuleRow,
        app: &AppRecord,
        now_ms: i64,
    ) -> Result<Verdict, StoreError> {
        let Ok(kind) = AlertKind::parse(&rule.kind) else {
            return Ok(Verdict::NoData);
        };
        if kind != AlertKind::ReplicaDown {
            let interval_ms = self.inner.monitor.interval().as_millis() as i64;
            return Ok(measure::metric_verdict(
                self.inner.monitor.series(),
                rule,
                kind,
                &app.name,
                now_ms,
                interval_ms,
            ));
        }
        // Replicas: only once the app served (a first rollout is not an
        // outage), and not before the deployer had time to adopt the
        // replicas that kept running while the server restarted.
        let deploy = &self.inner.deploy;
        let settling = self
            .inner
            .started
            .get()
            .is_some_and(|t| t.elapsed() < STARTUP_GRACE);
        if settling || !deploy.is_running() || app.release.is_none() {
            return Ok(Verdict::NoData);
        }
        let Some(active) = self.store().active_release(app.id).await? else {
            return Ok(Verdict::NoData);
        };
        let healthy = measure::healthy_replicas(deploy, app);
        let wanted = deploy.wanted_replicas(app, &active);
        Ok(measure::replica_verdict(rule, wanted, healthy))
    }

    /// Moves one rule's alert along after a verdict, storing and notifying
    /// transitions. A failure leaves the phase as it was: the next tick retries.
    async fn advance(&self, rule: &AlertRuleRow, app: &str, verdict: Verdict) {
        let now = Utc::now();
        let phase = self
            .tracked()
            .get(&rule.id)
            .map_or(Phase::Inactive, |t| t.phase);
        let (mut next, action) = step(phase, verdict, now, rule.for_s);
        match action {
            Action::None => {}
            Action::Fire { value } => {
                match self
                    .store()
                    .open_alert_event(rule, &summary(rule), value, now)
                    .await
                {
                    Ok(ev) => {
                        next = Phase::Firing {
                            event_id: ev.id,
                            since: ev.started_at,
                        };
                        tracing::info!(app, rule = rule.id, value, "alert firing");
                        self.notify(&ev, app).await;
                    }
                    // Already open (fired before we knew): take it over, quietly.
                    Err(StoreError::Conflict(_)) => {
                        if let Ok(open) = self.store().firing_alert_events().await {
                            if let Some(ev) = open.iter().find(|e| e.rule_id == Some(rule.id)) {
                                next = Phase::Firing {
                                    event_id: ev.id,
                                    since: ev.started_at,
                                };
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(rule = rule.id, error = %e, "cannot store a firing alert");
                        next = phase;
                    }
                }
            }
            Action::Resolve { value } => {
                if let Phase::Firing { event_id, .. } = phase {
                    match self.store().resolve_alert_event(event_id, value, now).await {
                        Ok(Some(ev)) => {
                            tracing::info!(app, rule = rule.id, value, "alert resolved");
                            self.notify(&ev, app).await;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(rule = rule.id, error = %e, "cannot resolve an alert");
                            next = phase;
                        }
                    }
                }
            }
        }
        let value = match verdict {
            Verdict::Above(v) | Verdict::Below(v) => Some(v),
            Verdict::NoData => None,
        };
        self.tracked().insert(
            rule.id,
            Tracked {
                phase: next,
                value,
                evaluated_at: Some(now),
            },
        );
    }
}
