//! An app's logs as the API serves them: a search of the stored lines
//! (see `collector.rs` for how they get there), and a search followed by
//! the matching lines as they are written.

use crate::{DeployError, Deployer};
use futures::{Stream, StreamExt};
use slipway_logs::{LogRecord, Query};
use slipway_store::StoreError;
use std::collections::HashSet;
use tokio::sync::broadcast::error::RecvError;

fn io_error(e: impl std::fmt::Display) -> DeployError {
    DeployError::Store(StoreError::Io(format!("app logs: {e}")))
}

impl Deployer {
    /// Deletes, in the background, the log files of apps that no longer
    /// exist (deleted while the server was down).
    pub(crate) fn remove_logs_of_deleted_apps(&self) {
        let d = self.clone();
        tokio::spawn(async move {
            let apps = match d.store().list_apps().await {
                Ok(apps) => apps,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list apps to clean their logs");
                    return;
                }
            };
            let ids: HashSet<i64> = apps.iter().map(|a| a.id).collect();
            let store = d.log_store().clone();
            match tokio::task::spawn_blocking(move || store.remove_other_apps(&ids)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(apps = n, "removed the logs of deleted apps"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove the logs of deleted apps"),
                Err(e) => tracing::warn!(error = %e, "removing the logs of deleted apps failed"),
            }
        });
    }

    /// Deletes an app's log files for good (the app was deleted).
    pub(crate) async fn remove_app_logs(&self, app_id: i64) {
        let store = self.log_store().clone();
        match tokio::task::spawn_blocking(move || store.remove_app(app_id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(app_id, error = %e, "cannot remove an app's logs"),
            Err(e) => tracing::warn!(app_id, error = %e, "removing an app's logs failed"),
        }
    }

    /// The app's stored lines matching `query`, in time order.
    pub async fn search_logs(
        &self,
        app_id: i64,
        query: Query,
    ) -> Result<Vec<LogRecord>, DeployError> {
        let store = self.log_store().clone();
        tokio::task::spawn_blocking(move || store.search(app_id, &query))
            .await
            .map_err(io_error)?
            .map_err(io_error)
    }

    /// The matching stored lines, then every matching line as it is written,
    /// until the app is deleted (or the caller drops the stream). A follower
    /// that falls thousands of lines behind skips the ones it missed.
    pub async fn follow_logs(
        &self,
        app_id: i64,
        query: Query,
    ) -> Result<impl Stream<Item = LogRecord> + Send + 'static, DeployError> {
        let store = self.log_store().clone();
        let q = query.clone();
        let (history, rx) =
            tokio::task::spawn_blocking(move || store.search_and_follow(app_id, &q))
                .await
                .map_err(io_error)?
                .map_err(io_error)?;
        let live = futures::stream::unfold((rx, query), |(mut rx, query)| async move {
            loop {
                match rx.recv().await {
                    Ok(r) if query.matches(&r) => return Some(((*r).clone(), (rx, query))),
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "a log follower fell behind");
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(futures::stream::iter(history).chain(live))
    }
}
