//! The queue worker: recovers after a crash, then claims and runs pipelines
//! with a concurrency limit.

use crate::executor::{self, pipeline_filter, CLEANUP_TIMEOUT, INSTANCE_LABEL};
use crate::Ci;
use slipway_domain::{PipelineRecord, Status};
use slipway_runtime::{labels, LabelFilter};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Message on pipelines that were running when the server stopped.
pub const RESTART_MESSAGE: &str =
    "the server stopped while this pipeline was running; retry it to run it again";
/// How often the worker looks at the queue without being woken.
const POLL: Duration = Duration::from_secs(2);

impl Ci {
    /// Starts the worker task: recovery, catch-up, then the claim loop.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let ci = self.clone();
        tokio::spawn(async move {
            ci.recover().await;
            ci.catch_up().await;
            ci.work().await;
        })
    }

    /// Ends pipelines left `running` by a previous process as `error` and
    /// removes every container, network and volume of this instance's CI.
    pub async fn recover(&self) {
        let stale = match self.store().running_pipelines().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot list running pipelines");
                Vec::new()
            }
        };
        for p in &stale {
            match self
                .store()
                .finish_pipeline(p.id, Status::Error, Some(RESTART_MESSAGE), Status::Error)
                .await
            {
                Ok(_) => tracing::warn!(
                    pipeline = p.id,
                    "pipeline interrupted by a restart marked as error"
                ),
                Err(e) => {
                    tracing::error!(pipeline = p.id, error = %e, "cannot end a stale pipeline")
                }
            }
        }
        // Nothing of this instance runs yet, so everything it labelled is a leftover.
        let Ok(instance) = self.instance().await else {
            return;
        };
        let rt = match self.runtime().await {
            Ok(rt) => rt,
            Err(e) => {
                if !stale.is_empty() {
                    tracing::warn!(error = %e, "cannot remove containers of interrupted pipelines");
                }
                return;
            }
        };
        let filter = LabelFilter::managed()
            .with(labels::OWNER, "ci")
            .with(INSTANCE_LABEL, instance);
        match tokio::time::timeout(CLEANUP_TIMEOUT, rt.cleanup(&filter)).await {
            Ok(Ok(r)) if r.removed() > 0 => {
                tracing::info!(
                    removed = r.removed(),
                    "removed leftovers of interrupted pipelines"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "CI cleanup failed"),
            Err(_) => tracing::warn!("CI cleanup timed out"),
        }
    }

    async fn work(&self) {
        let limit = self.inner.options.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(limit));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match self.store().claim_pipeline().await {
                Ok(Some(p)) => {
                    let ci = self.clone();
                    tokio::spawn(async move {
                        ci.run_pipeline(p).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    let _ = tokio::time::timeout(POLL, self.inner.wake.notified()).await;
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "cannot claim a pipeline");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Runs one claimed pipeline and records how it ended; its containers are
    /// removed whatever happens.
    async fn run_pipeline(&self, p: PipelineRecord) {
        let token = CancellationToken::new();
        self.inner
            .running
            .lock()
            .unwrap()
            .insert(p.id, token.clone());
        // Cancels requested through the store (another process) reach the token too.
        let watcher = {
            let (ci, token, id) = (self.clone(), token.clone(), p.id);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if ci.store().cancel_requested(id).await.unwrap_or(false) {
                        token.cancel();
                        return;
                    }
                }
            })
        };
        let outcome = async {
            let repo = self
                .store()
                .repo_by_id(p.repo_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the repository was deleted")?;
            let rt = self.runtime().await?;
            let path = self.repo_path(&repo);
            executor::execute(self, rt, &p, repo, path, token.clone()).await
        }
        .await;
        watcher.abort();
        self.inner.running.lock().unwrap().remove(&p.id);
        let (status, error, rest) = match outcome {
            Ok(Status::Cancelled) => (
                Status::Cancelled,
                Some("cancelled".to_string()),
                Status::Cancelled,
            ),
            Ok(s) => (s, None, Status::Skipped),
            Err(e) => (Status::Error, Some(e), Status::Skipped),
        };
        if let Err(e) = self
            .store()
            .finish_pipeline(p.id, status, error.as_deref(), rest)
            .await
        {
            tracing::error!(pipeline = p.id, error = %e, "cannot record the end of a pipeline");
        }
        tracing::info!(pipeline = p.id, %status, "pipeline ended");
        if let Ok(Some(ended)) = self.store().pipeline_by_id(p.id).await {
            self.notify_webhooks(&ended).await;
        }
        if let (Ok(rt), Ok(instance)) = (self.runtime().await, self.instance().await) {
            let filter = pipeline_filter(&instance, p.id);
            match tokio::time::timeout(CLEANUP_TIMEOUT, rt.cleanup(&filter)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(pipeline = p.id, error = %e, "pipeline cleanup failed")
                }
                Err(_) => tracing::warn!(pipeline = p.id, "pipeline cleanup timed out"),
            }
        }
    }
}
