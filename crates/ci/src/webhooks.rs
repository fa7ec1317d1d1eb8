//! Webhooks: a signed POST to each of a repository's URLs when a pipeline ends.
//!
//! The body is JSON; `X-Slipway-Signature-256: sha256=<hex>` is the
//! HMAC-SHA256 of the exact body under the webhook's secret, so receivers can
//! check it came from this server. Delivery is best effort: three attempts
//! with a short back-off, 10 s each; the outcome of the last delivery is
//! kept with the webhook (`last_status`, `last_error`) and failures logged.
//!
//! Targets go through [`slipway_egress`]: a URL whose host is a private,
//! loopback, link-local… address is refused when it is added (422), and at
//! every delivery the host is resolved again, each address checked and the
//! connection pinned to the checked addresses; redirects are not followed.
//! The server's `webhook_allow_list` opens chosen addresses or hosts.

use crate::{Ci, CiError};
use serde::Serialize;
use slipway_domain::{PipelineRecord, Repo};
use std::time::Duration;

/// The signing scheme is shared with alert notifications (`slipway_auth::signing`).
pub use slipway_auth::signing::{signature, EVENT_HEADER, SIGNATURE_HEADER};
/// Webhooks one repository may have.
pub const MAX_WEBHOOKS: usize = 20;

/// A webhook as listed (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    /// Id used to delete it.
    pub id: i64,
    /// Where the POST goes.
    pub url: String,
    /// When it was added.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Outcome of the last delivery: `delivered` or `failed` (none yet: null).
    pub last_status: Option<String>,
    /// Why the last delivery failed (e.g. its target was refused).
    pub last_error: Option<String>,
    /// When the last delivery ended.
    pub last_delivery_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<slipway_store::WebhookRow> for WebhookView {
    fn from(r: slipway_store::WebhookRow) -> Self {
        WebhookView {
            id: r.id,
            url: r.url,
            created_at: r.created_at,
            last_status: r.last_status,
            last_error: r.last_error,
            last_delivery_at: r.last_delivery_at,
        }
    }
}

/// Time allowed for one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

fn check_url(url: &str, egress: &slipway_egress::EgressPolicy) -> Result<(), CiError> {
    let ok = url.len() <= 2048
        && reqwest::Url::parse(url)
            .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .unwrap_or(false);
    if !ok {
        return Err(CiError::Invalid(
            "the webhook URL must be an absolute http:// or https:// URL".into(),
        ));
    }
    egress
        .check_url(url)
        .map(|_| ())
        .map_err(|e| CiError::Invalid(e.to_string()))
}

impl Ci {
    /// Adds a webhook; its secret is sealed at rest like repository secrets.
    pub async fn add_webhook(
        &self,
        repo_id: i64,
        url: &str,
        secret: &str,
    ) -> Result<WebhookView, CiError> {
        check_url(url, &self.inner.options.egress)?;
        if secret.is_empty() || secret.len() > 1024 {
            return Err(CiError::Invalid(
                "the webhook secret must be 1 to 1024 bytes".into(),
            ));
        }
        if self.store().webhooks(repo_id).await?.len() >= MAX_WEBHOOKS {
            return Err(CiError::Invalid(format!(
                "a repository may have at most {MAX_WEBHOOKS} webhooks"
            )));
        }
        let sealed = self
            .secret_box()
            .and_then(|b| b.seal(repo_id, &format!("webhook:{url}"), secret))
            .map_err(CiError::Secret)?;
        let row = self.store().create_webhook(repo_id, url, &sealed).await?;
        Ok(row.into())
    }

    /// Lists a repository's webhooks.
    pub async fn webhooks(&self, repo_id: i64) -> Result<Vec<WebhookView>, CiError> {
        Ok(self
            .store()
            .webhooks(repo_id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Tells every webhook of the repository that `p` ended (in the background).
    pub(crate) async fn notify_webhooks(&self, p: &PipelineRecord) {
        let hooks = match self.store().webhooks(p.repo_id).await {
            Ok(h) if !h.is_empty() => h,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read webhooks");
                return;
            }
        };
        let repo: Option<Repo> = self.store().repo_by_id(p.repo_id).await.ok().flatten();
        let repo_name = repo.map(|r| r.full_name()).unwrap_or_default();
        let body = serde_json::json!({
            "event": "pipeline",
            "repo": repo_name,
            "pipeline": p,
            "url": format!("/api/v1/repos/{repo_name}/pipelines/{}", p.number),
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let Ok(sealer) = self.secret_box() else {
            return;
        };
        for hook in hooks {
            let secret =
                match sealer.open(p.repo_id, &format!("webhook:{}", hook.url), &hook.secret) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(hook = hook.id, error = %e, "webhook secret unusable");
                        continue;
                    }
                };
            let sig = signature(&secret, &body);
            let (this, body) = (self.clone(), body.clone());
            tokio::spawn(async move {
                let egress = &this.inner.options.egress;
                let mut last_error = String::new();
                for attempt in 0..3u32 {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                    }
                    let request = match egress.post(&hook.url, ATTEMPT_TIMEOUT).await {
                        Ok(r) => r,
                        Err(e @ slipway_egress::EgressError::Refused(_)) => {
                            // Policy, not a passing failure: no retry.
                            tracing::warn!(hook = hook.id, error = %e, "webhook target refused");
                            last_error = e.to_string();
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(hook = hook.id, error = %e, "webhook failed");
                            last_error = e.to_string();
                            continue;
                        }
                    };
                    let sent = request
                        .header("Content-Type", "application/json")
                        .header(EVENT_HEADER, "pipeline")
                        .header(SIGNATURE_HEADER, &sig)
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            this.record_delivery(hook.id, "delivered", None).await;
                            return;
                        }
                        Ok(r) => {
                            tracing::warn!(hook = hook.id, status = %r.status(), "webhook refused");
                            last_error =
                                format!("the receiver answered HTTP {}", r.status().as_u16());
                        }
                        Err(e) => {
                            let e = slipway_egress::describe(e);
                            tracing::warn!(hook = hook.id, error = %e, "webhook failed");
                            last_error = e;
                        }
                    }
                }
                this.record_delivery(hook.id, "failed", Some(&last_error))
                    .await;
            });
        }
    }
}

impl Ci {
    async fn record_delivery(&self, hook: i64, status: &str, error: Option<&str>) {
        if let Err(e) = self
            .store()
            .record_webhook_delivery(hook, status, error)
            .await
        {
            tracing::error!(hook, error = %e, "cannot record a webhook delivery");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The signature itself is tested where it lives, in `slipway_auth::signing`.

    #[test]
    fn urls_are_checked() {
        let public = slipway_egress::EgressPolicy::public_only();
        let local = slipway_egress::EgressPolicy::parse(&["127.0.0.1"]).unwrap();
        assert!(check_url("http://127.0.0.1:9/hook", &local).is_ok());
        assert!(check_url("https://example.com/hook", &public).is_ok());
        let e = check_url("http://127.0.0.1:9/hook", &public).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(check_url("http://[::1]:9/hook", &local).is_err());
        assert!(check_url("ftp://example.com/", &public).is_err());
        assert!(check_url("/relative", &public).is_err());
    }
}
