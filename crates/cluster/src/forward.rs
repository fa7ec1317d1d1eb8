//! The node's service forwarder: how a stack's service reaches another
//! service by name and port from any node (as kube-proxy does for
//! ClusterIP services).
//!
//! On every node that runs a replica of a stack, the agent keeps the
//! stack's network and, on it, one small *endpoint* container per service
//! of the stack, attached under the service's name. The agent opens the
//! service's ports as listening sockets inside each endpoint's network
//! namespace; a connection a replica opens to `db:5432` reaches the
//! endpoint's socket, and the agent relays it to a healthy replica of
//! `db` on any node (`address:published port` from the replica reports),
//! round robin, trying the next replica when one refuses.
//!
//! The backends come from the same etcd state the proxies route by
//! ([`ClusterStore::routing_snapshot`]): only reports of current
//! assignments in state `healthy` count, so a replica that is starting,
//! failing its health check or on a lost node gets no connection.

use crate::agent::{AgentStatus, Phase};
use crate::etcd::{ClusterStore, ReplicaReport, RoutingSnapshot};
use crate::runner::{stack, NODE_LABEL};
use slipway_runtime::{labels, ContainerSpec, LabelFilter, NetworkMode, Runtime, Security};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `io.slipway.owner` of endpoint containers (not replicas: the runner
/// leaves them alone).
pub const ENDPOINT_OWNER: &str = "cluster-endpoint";
/// The service an endpoint container stands for.
pub const SERVICE_LABEL: &str = "io.slipway.service";
/// How long a connection to one backend may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Buffer of each direction of a relayed connection (bulk transfers move
/// in fewer, larger reads and writes than with tokio's 8 KiB default).
const RELAY_BUFFER: usize = 32 * 1024;
/// Memory of one endpoint container (it only sleeps).
const ENDPOINT_MEMORY: i64 = 16 << 20;

/// A running forwarder (ends with the agent).
pub struct Forwarder {
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Follows `status` (an [`crate::agent::Agent`]'s), re-reading the
    /// cluster state every `poll`.
    pub fn spawn(
        rt: Runtime,
        store: ClusterStore,
        status: watch::Receiver<AgentStatus>,
        poll: Duration,
    ) -> Self {
        Self {
            task: tokio::spawn(run(rt, store, status, poll)),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stack's service: (stack app, service name).
type ServiceKey = (String, String);

/// Healthy backends of every (stack, service, port).
type Backends = Arc<RwLock<HashMap<(String, String, u16), Vec<SocketAddr>>>>;

/// What the cluster state says this node needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every service of each stack with a replica on this node → its ports.
    pub endpoints: BTreeMap<ServiceKey, BTreeSet<u16>>,
    /// (stack, service, container port) → healthy replicas' addresses.
    pub backends: HashMap<(String, String, u16), Vec<SocketAddr>>,
}

/// Reads the snapshot: which stacks run on `node`, and where every
/// service's healthy replicas are.
pub fn plan(snapshot: &RoutingSnapshot, node: &str) -> Plan {
    let member_of: HashMap<&str, &crate::model::StackMember> = snapshot
        .demands
        .iter()
        .filter_map(|d| Some((d.app.as_str(), d.container.as_ref()?.stack.as_ref()?)))
        .collect();
    let current: HashMap<(&str, &str, u32), u64> = snapshot
        .assignments
        .iter()
        .map(|a| {
            let a = &a.record.assignment;
            (
                (a.node.as_str(), a.replica.app.as_str(), a.replica.index),
                a.epoch,
            )
        })
        .collect();
    let here: BTreeSet<&str> = snapshot
        .assignments
        .iter()
        .filter(|a| a.record.assignment.node == node)
        .filter_map(|a| member_of.get(a.record.assignment.replica.app.as_str()))
        .map(|m| m.app.as_str())
        .collect();
    let mut out = Plan::default();
    for m in member_of.values() {
        if here.contains(m.app.as_str()) && !m.one_shot && !m.ports.is_empty() {
            out.endpoints.insert(
                (m.app.clone(), m.service.clone()),
                m.ports.iter().copied().collect(),
            );
        }
    }
    for r in &snapshot.reports {
        let Some(m) = member_of.get(r.replica.app.as_str()) else {
            continue;
        };
        let key = (r.node.as_str(), r.replica.app.as_str(), r.replica.index);
        if current.get(&key) != Some(&r.report.epoch) || r.report.state != "healthy" {
            continue;
        }
        let Some(ip) = address(&r.report) else {
            continue;
        };
        for (port, host_port) in &r.report.ports {
            out.backends
                .entry((m.app.clone(), m.service.clone(), *port))
                .or_default()
                .push(SocketAddr::new(ip, *host_port));
        }
    }
    for v in out.backends.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// The report's node address (127.0.0.1 when it has none).
fn address(report: &ReplicaReport) -> Option<IpAddr> {
    match report.address.as_deref().map(str::trim) {
        None | Some("") => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(a) => a.trim_start_matches('[').trim_end_matches(']').parse().ok(),
    }
}

/// The endpoint container of a service on `node`.
pub fn endpoint_name(node: &str, app: &str, service: &str) -> String {
    format!("slipway-{node}-ep-{app}-{service}")
}

/// The label filter of every endpoint container of `node`.
pub fn endpoint_filter(node: &str) -> LabelFilter {
    LabelFilter::managed()
        .with(labels::OWNER, ENDPOINT_OWNER)
        .with(NODE_LABEL, node)
}

/// An endpoint with its listening sockets.
struct Endpoint {
    pid: u32,
    /// Port → the task accepting on it.
    listeners: BTreeMap<u16, JoinHandle<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for l in self.listeners.values() {
            l.abort();
        }
    }
}

async fn run(
    rt: Runtime,
    store: ClusterStore,
    mut status: watch::Receiver<AgentStatus>,
    poll: Duration,
) {
    let backends: Backends = Arc::default();
    let mut endpoints: HashMap<ServiceKey, Endpoint> = HashMap::new();
    let mut warned = HashSet::new();
    loop {
        let now = status.borrow_and_update().clone();
        match now.phase {
            Phase::Ready | Phase::Lost | Phase::Registering => {}
            Phase::Stopped | Phase::Superseded => return,
            Phase::Removed => {
                // The node left the cluster: its endpoints go with it.
                let _ = rt.cleanup(&endpoint_filter(&now.node_id)).await;
                return;
            }
        }
        if now.phase == Phase::Ready {
            match store.routing_snapshot().await {
                Ok(snapshot) => {
                    let plan = plan(&snapshot, &now.node_id);
                    *backends.write().unwrap_or_else(|e| e.into_inner()) = plan.backends;
                    reconcile(
                        &rt,
                        &now.node_id,
                        &plan.endpoints,
                        &mut endpoints,
                        &backends,
                        &mut warned,
                    )
                    .await;
                }
                Err(e) => tracing::warn!(error = %e, "forwarder: cannot read the cluster state"),
            }
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Makes the node's endpoint containers and listeners match `wanted`.
async fn reconcile(
    rt: &Runtime,
    node: &str,
    wanted: &BTreeMap<ServiceKey, BTreeSet<u16>>,
    endpoints: &mut HashMap<ServiceKey, Endpoint>,
    backends: &Backends,
    warned: &mut HashSet<ServiceKey>,
) {
    let existing = match rt.list_containers(&endpoint_filter(node)).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "forwarder: cannot list endpoint containers");
            return;
        }
    };
    let mut found: HashMap<ServiceKey, (String, bool)> = HashMap::new();
    for c in existing {
        let key = (
            c.labels.get(labels::APP).cloned().unwrap_or_default(),
            c.labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
        );
        if wanted.contains_key(&key) && !found.contains_key(&key) {
            found.insert(key, (c.id, c.state == "running"));
        } else {
            endpoints.remove(&key);
            if let Err(e) = rt.remove(&c.id).await {
                tracing::warn!(error = %e, "forwarder: cannot remove an endpoint container");
            }
        }
    }
    endpoints.retain(|k, _| wanted.contains_key(k));
    for (key, ports) in wanted {
        let (app, service) = key;
        let id = match found.remove(key) {
            Some((id, true)) => id,
            stale => {
                if let Some((id, _)) = stale {
                    let _ = rt.remove(&id).await;
                }
                endpoints.remove(key);
                match create_endpoint(rt, node, app, service).await {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(app, service, error = %e, "forwarder: cannot start an endpoint");
                        continue;
                    }
                }
            }
        };
        let Some(pid) = rt
            .inspect(&id)
            .await
            .ok()
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
        else {
            continue;
        };
        // A new endpoint process (recreated, restarted): new sockets in
        // its new namespace.
        if endpoints.get(key).is_some_and(|e| e.pid != pid) {
            endpoints.remove(key);
        }
        let endpoint = endpoints.entry(key.clone()).or_insert_with(|| Endpoint {
            pid,
            listeners: BTreeMap::new(),
        });
        endpoint.listeners.retain(|port, task| {
            let keep = ports.contains(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        // Ports not listened on yet (or whose bind failed last time).
        for &port in ports {
            if endpoint.listeners.contains_key(&port) {
                continue;
            }
            let listener = listen_in(pid, port).and_then(TcpListener::from_std);
            match listener {
                Ok(l) => {
                    let task = tokio::spawn(accept(
                        l,
                        (app.clone(), service.clone(), port),
                        backends.clone(),
                    ));
                    endpoint.listeners.insert(port, task);
                }
                Err(e) => {
                    if warned.insert(key.clone()) {
                        tracing::warn!(app, service, port, error = %e,
                            "forwarder: cannot listen in the service's endpoint (the agent needs CAP_SYS_ADMIN and the engine's PID namespace); retrying");
                    }
                }
            }
        }
    }
}

/// Creates and starts the endpoint of `service` on the stack's network.
async fn create_endpoint(
    rt: &Runtime,
    node: &str,
    app: &str,
    service: &str,
) -> Result<String, String> {
    let network = stack::ensure_network(rt, node, app).await?;
    slipway_runtime::images::ensure_busybox(rt)
        .await
        .map_err(|e| format!("the endpoint image: {e}"))?;
    let name = endpoint_name(node, app, service);
    let _ = rt.remove(&name).await;
    let spec = ContainerSpec::new(slipway_runtime::images::BUSYBOX_IMAGE)
        .name(&name)
        .cmd(["sleep", "2147483647"])
        .label(labels::OWNER, ENDPOINT_OWNER)
        .label(labels::APP, app)
        .label(NODE_LABEL, node)
        .label(SERVICE_LABEL, service)
        .network(NetworkMode::Named {
            name: network,
            aliases: vec![service.to_string()],
        })
        .memory(ENDPOINT_MEMORY)
        .pids_limit(8)
        .security(Security {
            read_only_rootfs: true,
            ..Security::default()
        });
    let id = rt.create(&spec).await.map_err(|e| e.to_string())?;
    rt.start(&id).await.map_err(|e| e.to_string())?;
    tracing::info!(node, app, service, "forwarder: endpoint started");
    Ok(id)
}

/// A listening socket on `port` inside the network namespace of process
/// `pid` (a fresh thread enters the namespace, so no other task does).
fn listen_in(pid: u32, port: u16) -> std::io::Result<std::net::TcpListener> {
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        // SAFETY: setns only changes this short-lived thread's namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
}

/// Relays every connection `listener` accepts to `backends` (round robin,
/// the next one when one refuses), as an endpoint's socket does: what the
/// forwarder benchmark measures against a direct connection and HAProxy.
pub fn serve(listener: TcpListener, backends: Vec<SocketAddr>) -> JoinHandle<()> {
    let key = (String::new(), String::new(), 0);
    let table: Backends = Arc::new(RwLock::new(HashMap::from([(key.clone(), backends)])));
    tokio::spawn(accept(listener, key, table))
}

/// Accepts connections to one service port and relays each.
async fn accept(listener: TcpListener, key: (String, String, u16), backends: Backends) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (key, backends, next) = (key.clone(), backends.clone(), next.clone());
        tokio::spawn(async move {
            let list = backends
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned()
                .unwrap_or_default();
            if let Some(upstream) = connect(&list, &next).await {
                relay(client, upstream).await;
            } else {
                tracing::debug!(
                    app = key.0,
                    service = key.1,
                    port = key.2,
                    "forwarder: no healthy replica answers"
                );
            }
        });
    }
}

/// Connects to the backends round robin, trying each once.
async fn connect(list: &[SocketAddr], next: &AtomicUsize) -> Option<TcpStream> {
    if list.is_empty() {
        return None;
    }
    let start = next.fetch_add(1, Ordering::Relaxed);
    for i in 0..list.len() {
        let addr = list[(start + i) % list.len()];
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            let _ = s.set_nodelay(true);
            return Some(s);
        }
    }
    None
}

/// Copies both ways until either side closes.
async fn relay(mut client: TcpStream, mut upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await;
}

#[cfg(test)]
mod tests;
