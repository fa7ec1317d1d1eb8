//! Webhooks: a signed POST to each of a repository's URLs when a pipeline ends.
//!
//! The body is JSON; `X-Slipway-Signature-256: sha256=<hex>` is the
//! HMAC-SHA256 of the exact body under the webhook's secret, so receivers can
//! check it came from this server. Delivery is best effort: three attempts
//! with a short back-off, 10 s each, failures logged.

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
}

fn check_url(url: &str) -> Result<(), CiError> {
    let ok = url.len() <= 2048
        && reqwest::Url::parse(url)
            .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(CiError::Invalid(
            "the webhook URL must be an absolute http:// or https:// URL".into(),
        ))
    }
}

impl Ci {
    /// Adds a webhook; its secret is sealed at rest like repository secrets.
    pub async fn add_webhook(
        &self,
        repo_id: i64,
        url: &str,
        secret: &str,
    ) -> Result<WebhookView, CiError> {
        check_url(url)?;
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
        Ok(WebhookView {
            id: row.id,
            url: row.url,
            created_at: row.created_at,
        })
    }

    /// Lists a repository's webhooks.
    pub async fn webhooks(&self, repo_id: i64) -> Result<Vec<WebhookView>, CiError> {
        Ok(self
            .store()
            .webhooks(repo_id)
            .await?
            .into_iter()
            .map(|r| WebhookView {
                id: r.id,
                url: r.url,
                created_at: r.created_at,
            })
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
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
            let (http, body) = (http.clone(), body.clone());
            tokio::spawn(async move {
                for attempt in 0..3u32 {
                    let sent = http
                        .post(&hook.url)
                        .header("Content-Type", "application/json")
                        .header(EVENT_HEADER, "pipeline")
                        .header(SIGNATURE_HEADER, &sig)
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) => {
                            tracing::warn!(hook = hook.id, status = %r.status(), "webhook refused")
                        }
                        Err(e) => tracing::warn!(hook = hook.id, error = %e, "webhook failed"),
                    }
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The signature itself is tested where it lives, in `slipway_auth::signing`.

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("/relative").is_err());
    }
}
