//! The replica runner: makes the node's local Docker Engine run exactly the
//! replicas assigned to the node under its current epoch.
//!
//! Every container it starts is labelled with the node id, the epoch, the
//! app, the replica index and the app revision. A pass (woken by the
//! agent's assignment watch, and every [`RunnerOptions::resync`]) removes
//! each container of this node that is not the current container of an
//! assignment of the current epoch — this is the fencing that keeps a node
//! that comes back from running replicas that moved away — replaces
//! crashed ones, starts missing ones (pulling their image from Slipway's
//! registry when the engine lacks it), probes their health and reports
//! (state, container, address, host port, revision) through the fenced
//! [`ClusterStore::report_replica`].
//!
//! A revision change starts before it stops: the old revision's container
//! keeps running and stays the reported one until the new container of
//! the same replica is healthy; then the new one is reported and the old
//! one is removed after [`RunnerOptions::drain`].

pub mod stack;

use crate::agent::{AgentStatus, Phase};
use crate::etcd::{ClusterStore, ReplicaReport, StoredAssignment, Unreachable};
use crate::model::{AppDemand, ContainerTemplate, ReplicaId, SecretSource};
use slipway_runtime::images::RegistryAuth;
use slipway_runtime::{
    labels, ContainerInfo, ContainerSpec, LabelFilter, PortWatch, Runtime, Security,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
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
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// A pass runs at least this often (crashed containers, template changes).
    pub resync: Duration,
    /// While a replica is starting or unhealthy, passes run this often.
    pub fast_resync: Duration,
    /// Limit of one health probe.
    pub probe_timeout: Duration,
    /// How long a replaced revision's container keeps running after its
    /// successor is reported (requests in flight finish).
    pub drain: Duration,
    /// The node's address: replica ports are published on it, probed on
    /// it and reported with it (`slipway agent --advertise-address`).
    pub address: IpAddr,
    /// Credentials for pulling images the engine lacks from Slipway's
    /// registry (the node id and its `slpn_…` credential).
    pub pull_auth: Option<RegistryAuth>,
    /// Where the directories of stacks' commits that services bind-mount
    /// are kept (absolute: the engine mounts them).
    pub files_dir: std::path::PathBuf,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(5),
            fast_resync: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pull_auth: None,
            files_dir: std::env::temp_dir().join("slipway-stack-files"),
        }
    }
}

/// The label filter of every replica container of `node`.
pub fn node_filter(node: &str) -> LabelFilter {
    LabelFilter::managed()
        .with(labels::OWNER, OWNER)
        .with(NODE_LABEL, node)
}

/// The labels of the networks and volumes an agent makes for `app` on
/// `node` (what [`node_filter`]-style cleanups find).
pub(crate) fn node_labels(node: &str, app: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::OWNER.to_string(), OWNER.to_string()),
        (labels::APP.to_string(), app.to_string()),
        (NODE_LABEL.to_string(), node.to_string()),
    ])
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
    detail: String,
    container: Option<String>,
    host_port: Option<u16>,
    revision: Option<u64>,
    unreachable: Option<Unreachable>,
    ports: BTreeMap<u16, u16>,
}

/// What the runner remembers between passes.
#[derive(Default)]
struct Memory {
    reported: HashMap<ReplicaId, Reported>,
    /// Consecutive failed starts/crashes and the last start, per replica.
    crashes: HashMap<ReplicaId, (u32, Instant)>,
    /// Host ports of the containers it started or inspected.
    ports: HashMap<String, u16>,
    /// Replaced containers still running until their drain deadline.
    retiring: HashMap<String, Instant>,
    /// Woken when one of the node's replica containers exits, or a demand
    /// (container template, replicas) changes.
    exits: std::sync::Arc<tokio::sync::Notify>,
    /// One `wait` per running replica container.
    waiters: HashMap<String, tokio::task::JoinHandle<()>>,
    /// The watch of `apps/` that wakes the runner on template changes.
    demand_watch: Option<tokio::task::JoinHandle<()>>,
    /// Looks at the listening sockets of containers not healthy yet.
    looks: HashMap<String, PortWatch>,
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

    /// The host port of container `id` for `container_port` (any published
    /// port when that one is not: an old revision may use another port).
    async fn port(&mut self, rt: &Runtime, id: &str, container_port: u16) -> Option<u16> {
        if let Some(p) = self.ports.get(id) {
            return Some(*p);
        }
        let ports = rt.inspect(id).await.ok()?.ports;
        let key = format!("{container_port}/tcp");
        let p = ports
            .iter()
            .find(|p| p.container_port == key)
            .or_else(|| ports.first())?
            .host_port;
        self.ports.insert(id.to_owned(), p);
        Some(p)
    }
}

impl Memory {
    /// Why container `id`, running but not healthy, cannot be reached on
    /// `port` ("nothing listens on port 8080 inside the container; it
    /// listens on 80"), as last seen, and whether that is conclusive
    /// ([`PortWatch::unreachable`], as the single-node deployer decides).
    /// The report's detail carries the words; a conclusive one fails the
    /// release on the app's server at once.
    async fn port_problem(&mut self, rt: &Runtime, id: &str, port: u16) -> (Option<String>, bool) {
        let watch = self.looks.entry(id.to_owned()).or_default();
        watch.look(rt, id, port).await;
        (watch.problem().map(str::to_owned), watch.unreachable())
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        for (_, w) in self.waiters.drain() {
            w.abort();
        }
        if let Some(w) = self.demand_watch.take() {
            w.abort();
        }
    }
}

/// Wakes `wake` on every change of a demand, so a new revision starts at
/// once (not at the next resync). A broken watch is opened again; a missed
/// change is caught by the resync.
async fn watch_demands(store: ClusterStore, wake: std::sync::Arc<tokio::sync::Notify>) {
    use futures::StreamExt;
    loop {
        match store.watch(crate::etcd::WatchKind::Demands, 0).await {
            Ok(mut w) => {
                wake.notify_one();
                while let Some(Ok(_)) = w.next().await {
                    wake.notify_one();
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch demands; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    memory.demand_watch = Some(tokio::spawn(watch_demands(store.clone(), exits.clone())));
    loop {
        let now = status.borrow_and_update().clone();
        match now.phase {
            Phase::Registering | Phase::Ready | Phase::Lost => {}
            // Stopped: replicas keep running until the next registration;
            // removed or superseded: the node is not ours to manage any more.
            Phase::Stopped | Phase::Removed | Phase::Superseded => return,
        }
        // A pass may wait on etcd (up to its request timeout) while the node
        // is cut off; a lost lease or a new epoch does not wait for it: the
        // pass is dropped and the next one (which stops the replicas of an
        // ended epoch) starts at once.
        let (phase, epoch) = (now.phase, now.epoch);
        let mut ended = status.clone();
        let outcome = tokio::select! {
            r = pass(&rt, &store, &now, &mut memory, &opts) => r,
            r = ended.wait_for(|s| s.phase != phase || s.epoch != epoch) => match r {
                Ok(_) => continue,
                Err(_) => return, // the agent is gone
            },
        };
        let pending = match outcome {
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

/// How the containers found on the node map to the desired replicas.
#[derive(Default)]
struct Found {
    /// The running container of the replica's current revision.
    current: HashMap<ReplicaId, String>,
    /// A running container of an earlier revision (serving until the
    /// current one is healthy), with its revision.
    previous: HashMap<ReplicaId, (String, u64)>,
    /// The ended container of a one-off task's current revision (kept:
    /// a task runs once per revision, and its logs stay readable).
    finished: HashMap<ReplicaId, String>,
}

/// One reconcile pass; returns whether a replica is not healthy yet (or a
/// replaced container still drains).
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
    let mut pending = false;
    let mut found = Found::default();
    let mut seen = HashSet::new();
    for c in existing {
        seen.insert(c.id.clone());
        if let Some(deadline) = memory.retiring.get(&c.id) {
            if Instant::now() < *deadline && c.state == "running" {
                pending = true;
                continue;
            }
            memory.retiring.remove(&c.id);
            tracing::info!(container = %c.id, "removing a replaced revision's container after its drain");
            remove(rt, memory, &c.id).await;
            continue;
        }
        let mine =
            identity(&c).filter(|(r, epoch, _)| *epoch == s.epoch && desired.contains_key(r));
        let Some((r, _, revision)) = mine else {
            tracing::info!(node = %s.node_id, container = %c.id, "removing a container not assigned here under epoch {}", s.epoch);
            remove(rt, memory, &c.id).await;
            continue;
        };
        let current = desired[&r].2.revision == revision;
        let running = c.state == "running";
        let one_shot = desired[&r].2.stack.as_ref().is_some_and(|m| m.one_shot);
        if one_shot && current && !running && c.state != "created" {
            if let std::collections::hash_map::Entry::Vacant(e) = found.finished.entry(r.clone()) {
                e.insert(c.id);
                continue;
            }
        } else if one_shot && !current {
            remove(rt, memory, &c.id).await;
            continue;
        }
        if current && running && !found.current.contains_key(&r) {
            found.current.insert(r, c.id);
        } else if !current && running && !found.previous.contains_key(&r) {
            found.previous.insert(r, (c.id, revision));
        } else {
            if current && !running {
                tracing::warn!(replica = %r, container = %c.id, state = %c.state, "replica container stopped; replacing it");
                memory.crashes.entry(r).or_insert((0, Instant::now())).0 += 1;
            }
            remove(rt, memory, &c.id).await;
        }
    }
    memory.retiring.retain(|id, _| seen.contains(id));
    let mut live: HashSet<String> = memory.retiring.keys().cloned().collect();
    for (r, (a, d, t)) in &desired {
        let member = t.stack.as_ref();
        if let Some(id) = found.finished.get(*r) {
            // A one-off task of this revision ended: its outcome is
            // reported, and it is never started again for this revision.
            live.insert(id.clone());
            let state = rt.inspect(id).await.map_err(|e| e.to_string())?;
            let (outcome, detail) = stack::task_outcome(&state);
            let report = Reported {
                assignment_revision: a.revision,
                state: outcome.into(),
                detail: format!("revision {}; {detail}", t.revision),
                container: Some(id.clone()),
                host_port: None,
                revision: Some(t.revision),
                unreachable: None,
                ports: BTreeMap::new(),
            };
            send_report(store, s, a, r, report, memory, opts).await;
            continue;
        }
        let mut previous = found.previous.get(*r).cloned();
        if let Some((id, _)) = &previous {
            if member.is_some_and(|m| m.stop_first) && !found.current.contains_key(*r) {
                // Stop first: a service holding a volume never runs twice on it.
                tracing::info!(replica = %r, container = %id, "stopping the previous revision first (the service holds a volume)");
                remove(rt, memory, id).await;
                previous = None;
            } else {
                memory.watch_exit(rt, id);
                live.insert(id.clone());
            }
        }
        let running = match found.current.get(*r) {
            Some(id) => Ok(id.clone()),
            None => {
                if let Some((n, at)) = memory.crashes.get(*r) {
                    if *n > 0 && at.elapsed() < backoff(*n) {
                        pending = true;
                        continue;
                    }
                }
                let started = start(rt, s, r, d, t, opts).await;
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
        let (healthy_current, report) = match running {
            Ok(id) if member.is_some() => {
                let m = member.expect("a stack member");
                memory.watch_exit(rt, &id);
                live.insert(id.clone());
                let state = rt.inspect(&id).await.ok();
                let healthy = state.as_ref().is_some_and(|st| stack::healthy(m, st));
                let ports = state.as_ref().map(stack::published).unwrap_or_default();
                let report = Reported {
                    assignment_revision: a.revision,
                    state: if healthy && !m.one_shot {
                        "healthy"
                    } else {
                        "running"
                    }
                    .into(),
                    detail: match state.as_ref().and_then(|st| st.health.clone()) {
                        Some(h) => format!("revision {}; health check: {h}", t.revision),
                        None => format!("revision {}", t.revision),
                    },
                    container: Some(id),
                    host_port: stack::route_port(&ports, t.port),
                    revision: Some(t.revision),
                    unreachable: None,
                    ports,
                };
                (healthy && !m.one_shot, report)
            }
            Ok(id) => {
                let port = memory.port(rt, &id, t.port).await;
                memory.watch_exit(rt, &id);
                live.insert(id.clone());
                let healthy = match (port, &t.health_path) {
                    (Some(p), Some(path)) => {
                        probe_at(opts.address, p, path, opts.probe_timeout).await
                    }
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let (problem, conclusive) = match port {
                    Some(_) if !healthy => memory.port_problem(rt, &id, t.port).await,
                    _ => {
                        memory.looks.remove(&id);
                        (None, false)
                    }
                };
                let unreachable = match (&problem, conclusive) {
                    (Some(message), true) => Some(Unreachable {
                        revision: t.revision,
                        message: message.clone(),
                    }),
                    _ => None,
                };
                let report = Reported {
                    assignment_revision: a.revision,
                    state: if healthy { "healthy" } else { "running" }.into(),
                    detail: match problem {
                        Some(p) => format!("revision {}; {p}", t.revision),
                        None => format!("revision {}", t.revision),
                    },
                    container: Some(id),
                    host_port: port,
                    revision: Some(t.revision),
                    unreachable,
                    ports: BTreeMap::new(),
                };
                (healthy, report)
            }
            Err(e) => {
                tracing::warn!(replica = %r, error = %e, "cannot start replica");
                let report = Reported {
                    assignment_revision: a.revision,
                    state: "failed".into(),
                    detail: e,
                    container: None,
                    host_port: None,
                    revision: Some(t.revision),
                    unreachable: None,
                    ports: BTreeMap::new(),
                };
                (false, report)
            }
        };
        let report = if healthy_current {
            memory.crashes.remove(*r);
            if let Some((old, revision)) = &previous {
                tracing::info!(replica = %r, container = %old, "revision {} is healthy; revision {revision} drains", t.revision);
                memory
                    .retiring
                    .insert(old.clone(), Instant::now() + opts.drain);
                pending = true;
            }
            report
        } else {
            pending = true;
            match &previous {
                // Start before stop: the old revision serves (and stays the
                // reported container) until the new one is healthy.
                Some((old, revision)) => {
                    let why = match report.state.as_str() {
                        "failed" => format!("failed: {}", report.detail),
                        _ => match report.detail.split_once("; ") {
                            Some((_, problem)) => format!("is starting: {problem}"),
                            None => "is starting".to_string(),
                        },
                    };
                    let ports = match member {
                        Some(_) => rt
                            .inspect(old)
                            .await
                            .map(|st| stack::published(&st))
                            .unwrap_or_default(),
                        None => BTreeMap::new(),
                    };
                    Reported {
                        assignment_revision: a.revision,
                        state: "healthy".into(),
                        detail: format!("revision {revision}; revision {} {why}", t.revision),
                        container: Some(old.clone()),
                        host_port: match member {
                            Some(_) => stack::route_port(&ports, t.port),
                            None => memory.port(rt, old, t.port).await,
                        },
                        revision: Some(*revision),
                        unreachable: report.unreachable.clone(),
                        ports,
                    }
                }
                None => report,
            }
        };
        send_report(store, s, a, r, report, memory, opts).await;
    }
    memory.reported.retain(|r, _| desired.contains_key(r));
    memory.crashes.retain(|r, _| desired.contains_key(r));
    memory.ports.retain(|id, _| live.contains(id));
    memory.looks.retain(|id, _| live.contains(id));
    memory.waiters.retain(|id, w| {
        let keep = live.contains(id) && !w.is_finished();
        if !keep {
            w.abort();
        }
        keep
    });
    Ok(pending)
}

/// Sends `report` about replica `r` unless it is what was last sent.
async fn send_report(
    store: &ClusterStore,
    s: &AgentStatus,
    a: &StoredAssignment,
    r: &ReplicaId,
    report: Reported,
    memory: &mut Memory,
    opts: &RunnerOptions,
) {
    if memory.reported.get(r) == Some(&report) {
        return;
    }
    let sent = store
        .report_replica(
            s.lease,
            a,
            ReplicaReport {
                state: report.state.clone(),
                detail: report.detail.clone(),
                epoch: s.epoch,
                updated_at: chrono::Utc::now(),
                container: report.container.clone(),
                host_port: report.host_port,
                address: Some(opts.address.to_string()),
                revision: report.revision,
                unreachable: report.unreachable.clone(),
                ports: report.ports.clone(),
            },
        )
        .await;
    match sent {
        Ok(()) => {
            memory.reported.insert(r.clone(), report);
        }
        Err(e) => tracing::debug!(replica = %r, error = %e, "report refused"),
    }
}

/// Removes a container (best effort) and forgets its port.
async fn remove(rt: &Runtime, memory: &mut Memory, id: &str) {
    memory.ports.remove(id);
    if let Err(e) = rt.remove(id).await {
        tracing::warn!(container = %id, error = %e, "cannot remove container");
    }
}

/// The container of replica `r` on this node under its current epoch,
/// its port published on `address`.
pub fn container_spec(
    node: &str,
    epoch: u64,
    r: &ReplicaId,
    demand: &AppDemand,
    t: &ContainerTemplate,
    address: IpAddr,
) -> ContainerSpec {
    let suffix = hex::encode(rand::random::<[u8; 3]>());
    let mut c = ContainerSpec::new(&t.image)
        .name(format!(
            "slipway-{node}-{}-{}-e{epoch}-{suffix}",
            r.app, r.index
        ))
        .pids_limit(PIDS_LIMIT)
        .security(Security::default())
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
    c = match &t.stack {
        Some(m) => stack::apply(c, node, m, address),
        None => c
            .publish_on(address, t.port, 0)
            .env("PORT", t.port.to_string()),
    };
    if !t.command.is_empty() {
        c = c.cmd(t.command.clone());
    }
    for (k, v) in &t.env {
        if k != "PORT" || t.stack.is_some() {
            c = c.env(k, v);
        }
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

/// Makes `image` present in the local engine: pulled from its registry
/// (with the node's credential) when missing.
pub async fn ensure_image(
    rt: &Runtime,
    image: &str,
    auth: Option<&RegistryAuth>,
) -> Result<(), String> {
    match slipway_runtime::images::image_exists(rt, image).await {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => return Err(e.to_string()),
    }
    // Only from an explicit registry (`host:port/…`): never Docker Hub.
    if !names_registry(image) {
        return Err(format!(
            "image {image} is not present on this node and names no registry to pull it from"
        ));
    }
    let started = Instant::now();
    match slipway_runtime::images::pull_image(rt, image, auth).await {
        Ok(()) => {
            tracing::info!(image, took = ?started.elapsed(), "image pulled");
            Ok(())
        }
        Err(slipway_runtime::RuntimeError::Pull { message, .. }) => {
            Err(format!("pulling {image} failed: {message}"))
        }
        Err(e) => Err(format!("pulling {image} failed: {e}")),
    }
}

/// Largest secrets answer an agent reads (names and values are bounded
/// like a template's environment).
const MAX_SECRETS_BYTES: usize = 1024 * 1024;

/// `GET url` on a server with the node's credential: the body of a 2xx
/// answer of at most `limit` bytes; otherwise what went wrong (the
/// server's error message when it sent one).
pub async fn node_get(
    url: &str,
    auth: Option<&RegistryAuth>,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let auth =
        auth.ok_or("this agent has no node credential; join the cluster again".to_string())?;
    let resp = reqwest::Client::new()
        .get(url)
        .basic_auth(&auth.username, Some(&auth.password))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if resp.content_length().unwrap_or(0) > limit {
        return Err("the answer is too large".into());
    }
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if body.len() as u64 > limit {
        return Err("the answer is too large".into());
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("HTTP {status} {message}"));
    }
    Ok(body.to_vec())
}

/// The values of the secret variables `source` names for `app`, from the
/// server holding them, with the node's credential. Every name must be
/// answered; nothing else is taken.
pub async fn fetch_secrets(
    app: &str,
    source: &SecretSource,
    auth: Option<&RegistryAuth>,
) -> Result<BTreeMap<String, String>, String> {
    let failed = |why: String| {
        format!(
            "fetching the secrets of {app} from {} failed: {why}",
            source.server
        )
    };
    let url = format!("{}/api/v1/cluster/apps/{app}/secrets", source.server);
    let body = node_get(
        &url,
        auth,
        MAX_SECRETS_BYTES as u64,
        Duration::from_secs(10),
    )
    .await
    .map_err(failed)?;
    #[derive(serde::Deserialize)]
    struct Answer {
        env: BTreeMap<String, String>,
    }
    let mut answer: Answer =
        serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))?;
    source
        .names
        .iter()
        .map(|name| {
            answer
                .env
                .remove_entry(name)
                .ok_or_else(|| failed(format!("the server has no secret {name}")))
        })
        .collect()
}

/// Whether `image` starts with a registry host (`10.0.0.10:7700/…`,
/// `registry.example.com/…`, `localhost/…`), as Docker decides it.
fn names_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

/// Creates and starts the container of a replica; its id.
async fn start(
    rt: &Runtime,
    s: &AgentStatus,
    r: &ReplicaId,
    demand: &AppDemand,
    t: &ContainerTemplate,
    opts: &RunnerOptions,
) -> Result<String, String> {
    ensure_image(rt, &t.image, opts.pull_auth.as_ref()).await?;
    let network = match &t.stack {
        // A stack's services share the stack's network on this node; their
        // names belong to the forwarder's endpoints there (`crate::forward`),
        // which reach the service's healthy replicas on every node.
        Some(m) => {
            stack::ensure_volumes(rt, &s.node_id, m).await?;
            slipway_runtime::NetworkMode::Named {
                name: stack::ensure_network(rt, &s.node_id, &m.app).await?,
                aliases: Vec::new(),
            }
        }
        // Each app on a network of its own, as on a single node: other apps'
        // replicas cannot reach it; the proxies do, through the published port.
        None => {
            let network = format!("slipway-{}-app-{}-net", s.node_id, r.app);
            rt.ensure_network(&network, &node_labels(&s.node_id, &r.app))
                .await
                .map_err(|e| format!("the app's network: {e}"))?;
            slipway_runtime::NetworkMode::Named {
                name: network,
                aliases: vec![r.app.to_string()],
            }
        }
    };
    let mut spec = container_spec(&s.node_id, s.epoch, r, demand, t, opts.address).network(network);
    if let Some(m) = &t.stack {
        let root = std::path::absolute(&opts.files_dir).map_err(|e| e.to_string())?;
        stack::ensure_files(m, &root, opts.pull_auth.as_ref()).await?;
        spec = stack::bind_files(spec, m, &root);
    }
    let mut secrets = HashMap::new();
    if let Some(source) = &t.secrets {
        let app = t.stack.as_ref().map_or(r.app.as_str(), |m| m.app.as_str());
        for (name, value) in fetch_secrets(app, source, opts.pull_auth.as_ref()).await? {
            spec = spec.env(&name, &value);
            secrets.insert(name, value);
        }
    }
    let files = t.stack.as_ref().map_or(&[][..], |m| &m.secret_files[..]);
    let id = rt.create_with_secret_files(&spec, files, &secrets).await?;
    tracing::info!(replica = %r, node = %s.node_id, epoch = s.epoch, revision = t.revision, container = %id, "replica started");
    Ok(id)
}

/// `GET path` on 127.0.0.1:`port` answers 2xx or 3xx within `limit`.
pub async fn probe(port: u16, path: &str, limit: Duration) -> bool {
    probe_at(IpAddr::V4(Ipv4Addr::LOCALHOST), port, path, limit).await
}

/// `GET path` on `address:port` answers 2xx or 3xx within `limit` (the
/// deployer's health rule).
pub async fn probe_at(address: IpAddr, port: u16, path: &str, limit: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((address, port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
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

/// `HTTP/1.x 2xx` or `3xx` at the start of a response.
fn status_is_success(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.") && matches!(head.get(9), Some(b'2' | b'3')) && head.len() >= 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_backoff() {
        assert!(status_is_success(b"HTTP/1.0 200 OK\r\n"));
        assert!(status_is_success(b"HTTP/1.1 302 Found\r\n"));
        assert!(!status_is_success(b"HTTP/1.1 404 Not Found"));
        assert!(!status_is_success(b"HTTP/1.1 2"));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), Duration::from_secs(30));
        assert!(names_registry("127.0.0.1:7700/alice/web:abc"));
        assert!(names_registry("registry.example.com/alice/web"));
        assert!(names_registry("localhost/x"));
        assert!(!names_registry("slipway/app-web:abc"));
        assert!(!names_registry("busybox"));
    }

    #[test]
    fn containers_are_labelled_and_unprivileged() {
        let t = ContainerTemplate {
            revision: 7,
            image: "slipway/busybox:latest".into(),
            command: vec!["httpd".into(), "-f".into()],
            env: [
                ("A".to_string(), "b".to_string()),
                ("PORT".to_string(), "8080".to_string()),
            ]
            .into(),
            port: 8080,
            health_path: Some("/".into()),
            secrets: None,
            ..Default::default()
        };
        let d = AppDemand {
            app: "web".into(),
            replicas: 1,
            request: crate::Resources::new(250, 64 << 20),
            constraints: Default::default(),
            container: Some(t.clone()),
            hosts: Vec::new(),
            ..Default::default()
        };
        let r = ReplicaId {
            app: "web".into(),
            index: 2,
        };
        let c = container_spec("node-a", 3, &r, &d, &t, [10, 1, 2, 3].into());
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
        assert_eq!(c.ports[0].host_ip, Some([10, 1, 2, 3].into()));
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
