//! The replica runner: makes the node's local Docker Engine run exactly the
//! replicas assigned to the node under its current epoch.
//!
//! Every container it starts is labelled with the node id, the epoch, the
//! app, the replica index and the app revision. A pass (woken by the
//! agent's assignment watch, and every [`RunnerOptions::resync`]) removes
//! each container of this node that is not the current container of an
//! assignment of the current epoch — this is the fencing that keeps a node
//! that comes back from running replicas that moved away — replaces
//! crashed ones, starts missing ones, probes their health and reports
//! (state, container, host port) through the fenced
//! [`ClusterStore::report_replica`].

use crate::agent::{AgentStatus, Phase};
use crate::etcd::{ClusterStore, ReplicaReport, StoredAssignment};
use crate::model::{AppDemand, ContainerTemplate, ReplicaId};
use slipway_runtime::{labels, ContainerInfo, ContainerSpec, LabelFilter, Runtime, Security};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// `io.slipway.owner` of replica containers run by agents.
pub const OWNER: &str = "cluster";
/// The node id a container belongs to (several agents may share an engine).
pub const NODE_LABEL: &str = "io.slipway.node";
/// The node epoch the container was started under.
pub const EPOCH_LABEL: &str = "io.slipway.epoch";
/// The replica index within its app.
pub const REPLICA_LABEL: &str = "io.slipway.replica";
/// The app revision (container template) the container runs.
pub const REVISION_LABEL: &str = "io.slipway.revision";
/// Processes one replica may run (as deploy's replicas).
pub const PIDS_LIMIT: i64 = 1024;

/// Knobs of the runner.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// A pass runs at least this often (crashed containers, template changes).
    pub resync: Duration,
    /// While a replica is starting or unhealthy, passes run this often.
    pub fast_resync: Duration,
    /// Limit of one health probe.
    pub probe_timeout: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(5),
            fast_resync: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// The label filter of every replica container of `node`.
pub fn node_filter(node: &str) -> LabelFilter {
    LabelFilter::managed()
        .with(labels::OWNER, OWNER)
        .with(NODE_LABEL, node)
}

/// Removes every replica container of `node`. Called before an agent
/// registers: a registration begins a new epoch, to which none of them
/// belongs, so a node that comes back never runs its old replicas next to
/// their replacements. Returns how many were removed.
pub async fn sweep(rt: &Runtime, node: &str) -> slipway_runtime::Result<usize> {
    let found = rt.list_containers(&node_filter(node)).await?;
    for c in &found {
        rt.remove(&c.id).await?;
        tracing::info!(node, container = %c.id, "removed a replica container of an earlier epoch");
    }
    Ok(found.len())
}

/// A running replica runner (ends with the agent).
pub struct Runner {
    task: tokio::task::JoinHandle<()>,
}

impl Runner {
    /// Follows `status` (an [`crate::agent::Agent`]'s) until the agent ends.
    pub fn spawn(
        rt: Runtime,
        store: ClusterStore,
        status: watch::Receiver<AgentStatus>,
        opts: RunnerOptions,
    ) -> Self {
        Self {
            task: tokio::spawn(run(rt, store, status, opts)),
        }
    }

    /// Waits until it ends (the agent stopped, was removed or superseded).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What was last reported about a replica (reports are sent on change).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    assignment_revision: i64,
    state: String,
    container: Option<String>,
    host_port: Option<u16>,
}

/// What the runner remembers between passes.
#[derive(Default)]
struct Memory {
    reported: HashMap<ReplicaId, Reported>,
    /// Consecutive failed starts/crashes and the last start, per replica.
    crashes: HashMap<ReplicaId, (u32, Instant)>,
    /// Host ports of the containers it started or inspected.
    ports: HashMap<String, u16>,
    /// Woken when one of the node's replica containers exits.
    exits: std::sync::Arc<tokio::sync::Notify>,
    /// One `wait` per running replica container.
    waiters: HashMap<String, tokio::task::JoinHandle<()>>,
}

impl Memory {
    /// Wakes the runner as soon as container `id` exits (a crash is
    /// replaced at once, not at the next resync).
    fn watch_exit(&mut self, rt: &Runtime, id: &str) {
        if self.waiters.contains_key(id) {
            return;
        }
        let (rt, exits, owned) = (rt.clone(), self.exits.clone(), id.to_owned());
        let task = tokio::spawn(async move {
            let _ = rt.wait(&owned).await;
            exits.notify_one();
        });
        self.waiters.insert(id.to_owned(), task);
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        for (_, w) in self.waiters.drain() {
            w.abort();
        }
    }
}

async fn run(
    rt: Runtime,
    store: ClusterStore,
    mut status: watch::Receiver<AgentStatus>,
    opts: RunnerOptions,
) {
    let mut memory = Memory::default();
    let exits = memory.exits.clone();
    loop {
        let now = status.borrow_and_update().clone();
        match now.phase {
            Phase::Registering | Phase::Ready | Phase::Lost => {}
            // Stopped: replicas keep running until the next registration;
            // removed or superseded: the node is not ours to manage any more.
            Phase::Stopped | Phase::Removed | Phase::Superseded => return,
        }
        let pending = match pass(&rt, &store, &now, &mut memory, &opts).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(node = %now.node_id, error = %e, "replica pass failed; retrying");
                true
            }
        };
        let wait = if pending {
            opts.fast_resync
        } else {
            opts.resync
        };
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = exits.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A container's replica, epoch and revision from its labels.
fn identity(c: &ContainerInfo) -> Option<(ReplicaId, u64, u64)> {
    let app = c.labels.get(labels::APP)?.clone();
    let index = c.labels.get(REPLICA_LABEL)?.parse().ok()?;
    let epoch = c.labels.get(EPOCH_LABEL)?.parse().ok()?;
    let revision = c.labels.get(REVISION_LABEL)?.parse().ok()?;
    Some((ReplicaId { app, index }, epoch, revision))
}

/// Delay before starting a replica again after `crashes` failures: 1 s, 2 s… 30 s.
fn backoff(crashes: u32) -> Duration {
    Duration::from_secs(1u64 << crashes.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// One reconcile pass; returns whether a replica is not healthy yet.
async fn pass(
    rt: &Runtime,
    store: &ClusterStore,
    s: &AgentStatus,
    memory: &mut Memory,
    opts: &RunnerOptions,
) -> Result<bool, String> {
    let demands = if s.assignments.is_empty() || s.phase != Phase::Ready {
        BTreeMap::new()
    } else {
        store.demands().await.map_err(|e| e.to_string())?
    };
    // What should run: assignments of the current epoch whose app has a template.
    let desired: BTreeMap<&ReplicaId, (&StoredAssignment, &AppDemand, &ContainerTemplate)> = s
        .assignments
        .iter()
        .filter(|(_, a)| a.record.assignment.epoch == s.epoch)
        .filter_map(|(r, a)| {
            let d = demands.get(&r.app)?;
            Some((r, (a, d, d.container.as_ref()?)))
        })
        .collect();
    let existing = rt
        .list_containers(&node_filter(&s.node_id))
        .await
        .map_err(|e| e.to_string())?;
    let mut have: HashMap<ReplicaId, String> = HashMap::new();
    for c in existing {
        let keep = identity(&c).filter(|(r, epoch, revision)| {
            *epoch == s.epoch
                && !have.contains_key(r)
                && desired
                    .get(r)
                    .is_some_and(|(_, _, t)| t.revision == *revision)
        });
        match keep {
            Some((r, ..)) if c.state == "running" => {
                have.insert(r, c.id);
            }
            other => {
                if let Some((r, ..)) = other {
                    tracing::warn!(replica = %r, container = %c.id, state = %c.state, "replica container stopped; replacing it");
                    let e = memory.crashes.entry(r).or_insert((0, Instant::now()));
                    e.0 += 1;
                } else {
                    tracing::info!(node = %s.node_id, container = %c.id, "removing a container not assigned here under epoch {}", s.epoch);
                }
                memory.ports.remove(&c.id);
                if let Err(e) = rt.remove(&c.id).await {
                    tracing::warn!(container = %c.id, error = %e, "cannot remove container");
                }
            }
        }
    }
    let mut pending = false;
    let mut live = std::collections::HashSet::new();
    for (r, (a, d, t)) in &desired {
        let running = match have.get(*r) {
            Some(id) => Ok(id.clone()),
            None => {
                if let Some((n, at)) = memory.crashes.get(*r) {
                    if *n > 0 && at.elapsed() < backoff(*n) {
                        pending = true;
                        continue;
                    }
                }
                let started = start(rt, s, r, d, t).await;
                let e = memory
                    .crashes
                    .entry((*r).clone())
                    .or_insert((0, Instant::now()));
                e.1 = Instant::now();
                if started.is_err() {
                    e.0 += 1;
                }
                started
            }
        };
        let report = match running {
            Ok(id) => {
                let port = match memory.ports.get(&id) {
                    Some(p) => Some(*p),
                    None => rt.host_port(&id, t.port).await.ok(),
                };
                if let Some(p) = port {
                    memory.ports.insert(id.clone(), p);
                }
                memory.watch_exit(rt, &id);
                live.insert(id.clone());
                let healthy = match (port, &t.health_path) {
                    (Some(p), Some(path)) => probe(p, path, opts.probe_timeout).await,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if healthy {
                    memory.crashes.remove(*r);
                } else {
                    pending = true;
                }
                Reported {
                    assignment_revision: a.revision,
                    state: if healthy { "healthy" } else { "running" }.into(),
                    container: Some(id),
                    host_port: port,
                }
            }
            Err(e) => {
                pending = true;
                tracing::warn!(replica = %r, error = %e, "cannot start replica");
                Reported {
                    assignment_revision: a.revision,
                    state: format!("failed: {e}"),
                    container: None,
                    host_port: None,
                }
            }
        };
        if memory.reported.get(*r) != Some(&report) {
            let (state, detail) = match report.state.strip_prefix("failed: ") {
                Some(err) => ("failed".to_string(), err.to_string()),
                None => (report.state.clone(), format!("revision {}", t.revision)),
            };
            let sent = store
                .report_replica(
                    s.lease,
                    a,
                    ReplicaReport {
                        state,
                        detail,
                        epoch: s.epoch,
                        updated_at: chrono::Utc::now(),
                        container: report.container.clone(),
                        host_port: report.host_port,
                        address: None,
                    },
                )
                .await;
            match sent {
                Ok(()) => {
                    memory.reported.insert((*r).clone(), report);
                }
                Err(e) => tracing::debug!(replica = %r, error = %e, "report refused"),
            }
        }
    }
    memory.reported.retain(|r, _| desired.contains_key(r));
    memory.crashes.retain(|r, _| desired.contains_key(r));
    memory.ports.retain(|id, _| live.contains(id));
    memory.waiters.retain(|id, w| {
        let keep = live.contains(id) && !w.is_finished();
        if !keep {
            w.abort();
        }
        keep
    });
    Ok(pending)
}

/// The container of replica `r` on this node under its current epoch.
pub fn container_spec(
    node: &str,
    epoch: u64,
    r: &ReplicaId,
    demand: &AppDemand,
    t: &ContainerTemplate,
) -> ContainerSpec {
    let suffix = hex::encode(rand::random::<[u8; 3]>());
    let mut c = ContainerSpec::new(&t.image)
        .name(format!(
            "slipway-{node}-{}-{}-e{epoch}-{suffix}",
            r.app, r.index
        ))
        .publish(t.port, 0)
        .pids_limit(PIDS_LIMIT)
        .security(Security::default())
        .env("PORT", t.port.to_string())
        .env("SLIPWAY_APP", &r.app)
        .env("SLIPWAY_REPLICA", r.index.to_string())
        .env("SLIPWAY_NODE", node)
        .label(labels::OWNER, OWNER)
        .label(labels::APP, &r.app)
        .label(NODE_LABEL, node)
        .label(EPOCH_LABEL, epoch.to_string())
        .label(REPLICA_LABEL, r.index.to_string())
        .label(REVISION_LABEL, t.revision.to_string());
    c.init = true;
    if !t.command.is_empty() {
        c = c.cmd(t.command.clone());
    }
    for (k, v) in &t.env {
        c = c.env(k, v);
    }
    if demand.request.memory_bytes > 0 {
        c = c.memory(i64::try_from(demand.request.memory_bytes).unwrap_or(i64::MAX));
    }
    if demand.request.cpu_millis > 0 {
        let nanos = demand.request.cpu_millis.saturating_mul(1_000_000);
        c = c.nano_cpus(i64::try_from(nanos).unwrap_or(i64::MAX));
    }
    c
}

/// Creates and starts the container of a replica; its id.
async fn start(
    rt: &Runtime,
    s: &AgentStatus,
    r: &ReplicaId,
    demand: &AppDemand,
    t: &ContainerTemplate,
) -> Result<String, String> {
    let spec = container_spec(&s.node_id, s.epoch, r, demand, t);
    let id = rt.create(&spec).await.map_err(|e| e.to_string())?;
    if let Err(e) = rt.start(&id).await {
        let _ = rt.remove(&id).await;
        return Err(e.to_string());
    }
    tracing::info!(replica = %r, node = %s.node_id, epoch = s.epoch, container = %id, "replica started");
    Ok(id)
}

/// `GET path` on 127.0.0.1:`port` answers 2xx within `limit`.
pub async fn probe(port: u16, path: &str, limit: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(32);
        let mut buf = [0u8; 32];
        while head.len() < 12 {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(status_is_success(&head))
    };
    matches!(tokio::time::timeout(limit, attempt).await, Ok(Some(true)))
}

/// `HTTP/1.x 2xx` at the start of a response.
fn status_is_success(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.") && head.get(9) == Some(&b'2') && head.len() >= 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_backoff() {
        assert!(status_is_success(b"HTTP/1.0 200 OK\r\n"));
        assert!(!status_is_success(b"HTTP/1.1 404 Not Found"));
        assert!(!status_is_success(b"HTTP/1.1 2"));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }

    #[test]
    fn containers_are_labelled_and_unprivileged() {
        let t = ContainerTemplate {
            revision: 7,
            image: "slipway/busybox:latest".into(),
            command: vec!["httpd".into(), "-f".into()],
            env: [("A".to_string(), "b".to_string())].into(),
            port: 8080,
            health_path: Some("/".into()),
        };
        let d = AppDemand {
            app: "web".into(),
            replicas: 1,
            request: crate::Resources::new(250, 64 << 20),
            constraints: Default::default(),
            container: Some(t.clone()),
            hosts: Vec::new(),
        };
        let r = ReplicaId {
            app: "web".into(),
            index: 2,
        };
        let c = container_spec("node-a", 3, &r, &d, &t);
        assert_eq!(c.labels[NODE_LABEL], "node-a");
        assert_eq!(c.labels[EPOCH_LABEL], "3");
        assert_eq!(c.labels[REPLICA_LABEL], "2");
        assert_eq!(c.labels[REVISION_LABEL], "7");
        assert_eq!(c.labels[labels::APP], "web");
        assert!(c.security.cap_drop_all && c.security.no_new_privileges);
        assert_eq!(c.resources.pids_limit, Some(PIDS_LIMIT));
        assert_eq!(c.resources.memory_bytes, Some(64 << 20));
        assert_eq!(c.resources.nano_cpus, Some(250_000_000));
        assert_eq!(c.ports[0].container_port, 8080);
        let info = ContainerInfo {
            id: "x".into(),
            names: vec![],
            image: String::new(),
            state: "running".into(),
            labels: c.labels.clone(),
        };
        assert_eq!(identity(&info), Some((r, 3, 7)));
    }
}
