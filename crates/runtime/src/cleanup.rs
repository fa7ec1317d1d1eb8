//! Removal of Slipway leftovers by label, e.g. after a crash or an aborted pipeline.

use crate::error::Result;
use crate::labels::LabelFilter;
use crate::Runtime;

/// What [`Runtime::cleanup`] removed, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Ids of removed containers.
    pub containers: Vec<String>,
    /// Names of removed networks.
    pub networks: Vec<String>,
    /// Names of removed volumes.
    pub volumes: Vec<String>,
    /// Human-readable failures (object and reason); cleanup carries on past them.
    pub failures: Vec<String>,
}

impl CleanupReport {
    /// Total number of removed objects.
    pub fn removed(&self) -> usize {
        self.containers.len() + self.networks.len() + self.volumes.len()
    }
}

impl Runtime {
    /// Force-remove every container, then network, then volume whose labels
    /// match `filter` (which always includes `io.slipway.managed=true`).
    ///
    /// Individual failures are collected in the report rather than aborting;
    /// only failing to list objects is an error.
    pub async fn cleanup(&self, filter: &LabelFilter) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        // Containers first: they hold networks and volumes.
        for c in self.list_containers(filter).await? {
            if !filter.matches(&c.labels) {
                continue;
            }
            match self.remove(&c.id).await {
                Ok(()) => report.containers.push(c.id),
                Err(e) => report.failures.push(format!("container {}: {e}", c.id)),
            }
        }
        for n in self.list_networks(filter).await? {
            if !filter.matches(&n.labels) {
                continue;
            }
            match self.remove_network(&n.id).await {
                Ok(()) => report.networks.push(n.name),
                Err(e) => report.failures.push(format!("network {}: {e}", n.name)),
            }
        }
        for v in self.list_volumes(filter).await? {
            if !filter.matches(&v.labels) {
                continue;
            }
            match self.remove_volume(&v.name).await {
                Ok(()) => report.volumes.push(v.name),
                Err(e) => report.failures.push(format!("volume {}: {e}", v.name)),
            }
        }
        if !report.failures.is_empty() {
            tracing::warn!(failures = ?report.failures, "cleanup left some objects behind");
        }
        tracing::info!(removed = report.removed(), filter = ?filter.to_docker(), "cleanup done");
        Ok(report)
    }
}
