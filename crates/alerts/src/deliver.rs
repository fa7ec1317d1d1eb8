//! Notifications: a signed JSON POST to each active webhook of the app when
//! an alert fires or resolves. Each delivery is stored with its exact body
//! before the first attempt and retried with backoff (at most
//! [`MAX_ATTEMPTS`]); deliveries to one webhook go out in order; deliveries
//! still pending when the server stopped are sent again at start.

use crate::{AlertError, Alerts};
use slipway_auth::signing::{signature, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use slipway_store::{AlertDeliveryRow, AlertEventRow, AlertWebhookRow};
use std::sync::Arc;
use std::time::Duration;

/// Attempts per delivery.
pub const MAX_ATTEMPTS: i64 = 5;
/// Time allowed for one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait before attempt `n` (2, 3, …): 1 s, 2 s, 4 s, 8 s.
fn backoff(n: i64) -> Duration {
    Duration::from_secs(1 << (n - 2).clamp(0, 5))
}

/// The sealing name of a webhook's secret (bound to the app id too).
pub(crate) fn secret_name(url: &str) -> String {
    format!("alert-webhook:{url}")
}

impl Alerts {
    /// The dashboard link of an app: absolute when the public URL is known.
    pub(crate) fn app_link(&self, app: &str) -> String {
        let base = self
            .inner
            .public_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        format!("{base}/ui/app?name={app}")
    }

    /// The body sent for an alert's transition.
    pub(crate) fn payload(&self, ev: &AlertEventRow, app: &str) -> String {
        let unit = crate::rule::AlertKind::parse(&ev.kind).map_or("", |k| k.unit());
        serde_json::json!({
            "event": "alert",
            "alert_id": ev.id,
            "app": app,
            "rule_id": ev.rule_id,
            "rule": ev.summary,
            "kind": ev.kind,
            "state": ev.state,
            "value": ev.value,
            "threshold": ev.threshold,
            "unit": unit,
            "started_at": ev.started_at,
            "resolved_at": ev.resolved_at,
            "url": self.app_link(app),
        })
        .to_string()
    }

    /// Queues `ev`'s notification to every active webhook of its app.
    pub(crate) async fn notify(&self, ev: &AlertEventRow, app: &str) {
        let hooks = match self.store().alert_webhooks(ev.app_id).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(alert = ev.id, error = %e, "cannot read alert webhooks");
                return;
            }
        };
        let body = self.payload(ev, app);
        for hook in hooks.into_iter().filter(|h| h.active) {
            match self
                .store()
                .create_alert_delivery(&hook, Some(ev.id), &ev.state, &body)
                .await
            {
                Ok(d) => {
                    let this = self.clone();
                    tokio::spawn(async move { this.deliver(d, hook, MAX_ATTEMPTS).await });
                }
                Err(e) => {
                    tracing::error!(hook = hook.id, error = %e, "cannot queue alert delivery")
                }
            }
        }
    }

    /// Sends again what was pending when the server stopped.
    pub(crate) async fn resume_deliveries(&self) {
        let pending = match self.store().pending_alert_deliveries().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending alert deliveries");
                return;
            }
        };
        for d in pending {
            if let Ok(Some(hook)) = self.store().alert_webhook(d.webhook_id).await {
                let this = self.clone();
                tokio::spawn(async move { this.deliver(d, hook, MAX_ATTEMPTS).await });
            }
        }
    }

    /// Makes `d`'s remaining attempts (up to `max_attempts` in all),
    /// recording each; one delivery per webhook at a time, in order.
    pub(crate) async fn deliver(
        &self,
        d: AlertDeliveryRow,
        hook: AlertWebhookRow,
        max_attempts: i64,
    ) {
        let lock = {
            let mut locks = self
                .inner
                .hook_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            locks
                .entry(hook.id)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let _turn = lock.lock().await;
        let secret = match self.secret_box().and_then(|b| {
            b.open(hook.app_id, &secret_name(&hook.url), &hook.secret)
                .map_err(AlertError::Secret)
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(hook = hook.id, "alert webhook secret unusable");
                let _ = self
                    .store()
                    .record_alert_delivery(d.id, "failed", d.attempts, None, Some(&e.to_string()))
                    .await;
                return;
            }
        };
        let sig = signature(&secret, d.payload.as_bytes());
        let event = if d.state == "ping" { "ping" } else { "alert" };
        let mut attempts = d.attempts;
        while attempts < max_attempts {
            if attempts > 0 {
                tokio::time::sleep(backoff(attempts + 1)).await;
            }
            attempts += 1;
            let sent = match self
                .inner
                .options
                .egress
                .post(&hook.url, ATTEMPT_TIMEOUT)
                .await
            {
                Ok(request) => request
                    .header("Content-Type", "application/json")
                    .header("User-Agent", concat!("Slipway/", env!("CARGO_PKG_VERSION")))
                    .header(EVENT_HEADER, event)
                    .header(DELIVERY_HEADER, d.id.to_string())
                    .header(SIGNATURE_HEADER, &sig)
                    .body(d.payload.clone())
                    .send()
                    .await
                    .map_err(|e| (false, slipway_egress::describe(e))),
                // A refused target is policy, not a passing failure: no retry.
                Err(e @ slipway_egress::EgressError::Refused(_)) => Err((true, e.to_string())),
                Err(e) => Err((false, e.to_string())),
            };
            let (code, error, give_up) = match sent {
                Ok(r) if r.status().is_success() => {
                    (Some(i64::from(r.status().as_u16())), None, false)
                }
                Ok(r) => (
                    Some(i64::from(r.status().as_u16())),
                    Some(format!(
                        "the receiver answered HTTP {}",
                        r.status().as_u16()
                    )),
                    false,
                ),
                Err((refused, e)) => (None, Some(e), refused),
            };
            let give_up = give_up || attempts >= max_attempts;
            let status = match (&error, give_up) {
                (None, _) => "delivered",
                (Some(_), true) => "failed",
                (Some(_), false) => "pending",
            };
            if let Err(e) = self
                .store()
                .record_alert_delivery(d.id, status, attempts, code, error.as_deref())
                .await
            {
                tracing::error!(delivery = d.id, error = %e, "cannot record alert delivery");
            }
            match error {
                None => return,
                Some(e) => {
                    tracing::warn!(hook = hook.id, delivery = d.id, attempt = attempts, error = %e, "alert delivery failed");
                    if give_up {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(8));
    }
}
