//! Replicas: one container of one release, published on 127.0.0.1, and the
//! per-app bookkeeping the reconcile loop keeps between runs.

use chrono::{DateTime, Utc};
use serde::Serialize;
use slipway_domain::{AppRecord, ReleaseRecord};
use slipway_runtime::{labels, ContainerSpec, Security};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Processes one replica may run.
pub const REPLICA_PIDS_LIMIT: i64 = 1024;

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Started; its health check has not passed yet (no traffic).
    Starting,
    /// Passed its health check; in the proxy's routes.
    Healthy,
    /// Out of the routes, finishing its in-flight requests before it stops.
    Draining,
    /// Could not be started (cluster mode: the agent's report, e.g. a
    /// failed image pull; `error` says why). It is retried with backoff.
    Failed,
}

/// A replica as shown to users (`slipway ps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaView {
    /// Short container id.
    pub id: String,
    /// Full container id.
    pub container: String,
    /// Release it runs.
    pub release: i64,
    /// Where it is in its life.
    pub state: ReplicaState,
    /// `127.0.0.1:PORT` the proxy forwards to.
    pub address: String,
    /// Times this replica slot was restarted after a crash.
    pub restarts: u32,
    /// When it started (cluster mode: when its agent last reported).
    pub started_at: DateTime<Utc>,
    /// The cluster node running it (cluster mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why it failed (state `failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Memory and CPU limits of its container (single-node mode).
    #[serde(skip_serializing_if = "is_unset")]
    pub limits: slipway_domain::Resources,
    /// The stack service it belongs to (apps deployed from a Compose file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

fn is_unset(r: &slipway_domain::Resources) -> bool {
    *r == slipway_domain::Resources::default()
}

/// One running replica.
#[derive(Debug, Clone)]
pub(crate) struct Replica {
    pub container: String,
    pub release: i64,
    pub addr: SocketAddr,
    pub state: ReplicaState,
    pub restarts: u32,
    pub started_at: DateTime<Utc>,
    pub limits: slipway_domain::Resources,
    /// Stack service name ("" for a single-service app's replica).
    pub service: String,
    /// Digest of what the replica runs (stack services only): a service
    /// whose digest is unchanged by a release keeps its replicas.
    pub hash: String,
}

/// What the reconcile loop remembers about one app.
#[derive(Debug, Default)]
pub(crate) struct AppReplicas {
    pub replicas: Vec<Replica>,
    /// Route settings (hosts, health) of the app, refreshed each run.
    pub route: Option<crate::routes::AppRoute>,
    /// Stack apps: the routes of each service with ingress (replace `route`).
    pub service_routes: Vec<crate::routes::ServiceRoute>,
    /// Crashes since the last replica that became healthy: the backoff exponent.
    pub crashes: u32,
    /// Replicas restarted after crashes, in total.
    pub restarts: u32,
    /// Restart counts of crashed replicas waiting for their replacement.
    pub replacing: std::collections::VecDeque<u32>,
    /// No replica is started before this instant (crash backoff).
    pub hold_until: Option<Instant>,
    /// Stack services held at 0 replicas while a volume they mount is
    /// restored (by how many restores).
    pub held: HashMap<String, usize>,
    /// Volumes being restored (one restore at a time; no backup meanwhile).
    pub busy_volumes: std::collections::HashSet<String>,
}

impl AppReplicas {
    pub fn views(&self) -> Vec<ReplicaView> {
        self.replicas
            .iter()
            .map(|r| ReplicaView {
                id: r.container.chars().take(12).collect(),
                container: r.container.clone(),
                release: r.release,
                state: r.state,
                // Stack services without ingress publish nothing.
                address: if r.addr.port() == 0 {
                    String::new()
                } else {
                    r.addr.to_string()
                },
                restarts: r.restarts,
                started_at: r.started_at,
                node: None,
                error: None,
                limits: r.limits,
                service: (!r.service.is_empty()).then(|| r.service.clone()),
            })
            .collect()
    }
}

/// Delay before restarting after `crashes` consecutive crashes: 1 s, 2 s,
/// 4 s… capped at one minute (Kubernetes' CrashLoopBackOff, shorter).
pub(crate) fn backoff(crashes: u32) -> Duration {
    Duration::from_secs(1u64 << crashes.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// The container of a new replica of `release` of `app`.
pub(crate) fn container_spec(
    app: &AppRecord,
    release: &ReleaseRecord,
    instance: &str,
    secrets: &HashMap<String, String>,
    limits: slipway_domain::Resources,
) -> ContainerSpec {
    let spec = &release.spec;
    let suffix = hex::encode(rand::random::<[u8; 3]>());
    let mut c = ContainerSpec::new(&release.image)
        .name(format!(
            "slipway-app-{}-v{}-{instance}-{suffix}",
            app.name, release.number
        ))
        .publish(spec.port, 0)
        .pids_limit(REPLICA_PIDS_LIMIT)
        .security(Security::default())
        .env("PORT", spec.port.to_string())
        .env("SLIPWAY_APP", &app.name)
        .env("SLIPWAY_RELEASE", release.number.to_string())
        .label(labels::OWNER, "deploy")
        .label(labels::APP, &app.name)
        .label(crate::APP_ID_LABEL, app.id.to_string())
        .label(crate::RELEASE_LABEL, release.number.to_string())
        .label(crate::INSTANCE_LABEL, instance);
    c.init = true;
    for (k, v) in &spec.env {
        c = c.env(k, v);
    }
    for (k, v) in secrets {
        c = c.env(k, v);
    }
    c.limits(limits.memory_bytes, limits.nano_cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }
}
