//! The node agent (`slipway agent`): registers the node, keeps its lease
//! alive, re-registers under a new epoch after losing it, and follows the
//! assignments of its current epoch.
//!
//! Running the assigned replicas through the local Docker Engine is the
//! next step; its seam is [`AgentStatus::assignments`], kept current from a
//! watch of `assign/{node}/` (only assignments of the node's current epoch,
//! so a node that came back never runs what was moved away while it was gone).

use crate::etcd::{
    ClusterError, ClusterStore, NodeSpec, Result, Session, StoreOptions, StoredAssignment,
    WatchKind,
};
use crate::model::{Labels, ReplicaId, Resources};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// `POST /api/v1/cluster/join` body: who is joining.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The id saved by an earlier join (absent on the first one).
    #[serde(default)]
    pub node_id: Option<String>,
    /// The machine's host name (for people).
    #[serde(default)]
    pub hostname: String,
}

/// What a server tells a joining agent: its node id and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The node's id (the one asked for, or a new one).
    pub node_id: String,
    /// Client URLs of the etcd members.
    pub etcd_endpoints: Vec<String>,
    /// The cluster's key prefix in etcd.
    pub prefix: String,
    /// Lease TTL of nodes, in milliseconds.
    pub lease_ttl_ms: u64,
    /// The node's registry pull credential (`slpn_…`; Basic auth as
    /// `<node_id>:<credential>`, GET/HEAD only), new at every join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the agent keeps in its data directory across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNode {
    /// The node id the cluster gave it.
    pub node_id: Option<String>,
    /// The server it joined through.
    pub server: Option<String>,
    /// The registry pull credential of the last join (the file is the
    /// agent's own: keep the data directory private).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl SavedNode {
    /// `<data_dir>/node.json`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node.json")
    }

    /// Reads the saved node (empty when none yet).
    pub fn load(data_dir: &Path) -> std::io::Result<Self> {
        match std::fs::read(Self::path(data_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes it atomically (temp file + rename), readable by its owner
    /// only (it holds the pull credential).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(data_dir)?;
        let tmp = data_dir.join("node.json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut file = open.open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(tmp, Self::path(data_dir))
    }
}

/// A new random node id: `node-` and 10 lowercase letters or digits.
pub fn new_node_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..10)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    format!("node-{tail}")
}

/// How to run an agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// How to reach etcd (and the lease TTL).
    pub store: StoreOptions,
    /// The node's id.
    pub node_id: String,
    /// Labels for placement constraints.
    pub labels: Labels,
    /// CPU and memory offered.
    pub capacity: Resources,
    /// The machine's host name.
    pub hostname: String,
}

/// Where the agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Connecting or registering.
    Registering,
    /// Registered and renewing its lease.
    Ready,
    /// Its lease was lost; registering again under a new epoch.
    Lost,
    /// An operator removed the node from the cluster.
    Removed,
    /// Another agent registered with the same node id.
    Superseded,
    /// Stopped on request.
    Stopped,
}

/// The agent's state, published on every change.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// The node id.
    pub node_id: String,
    /// Where it is in its life.
    pub phase: Phase,
    /// The epoch of its current registration (0 before the first).
    pub epoch: u64,
    /// Registrations so far (1 + re-registrations after lost leases).
    pub registrations: u64,
    /// The lease of the current registration: reports live with it.
    pub lease: i64,
    /// The replicas assigned to this node under its current epoch: what the
    /// replica runner (next step) starts and stops.
    #[serde(serialize_with = "values_only")]
    pub assignments: BTreeMap<ReplicaId, StoredAssignment>,
}

/// JSON maps need string keys: the assignments are written as a list.
fn values_only<S: serde::Serializer>(
    map: &BTreeMap<ReplicaId, StoredAssignment>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(map.values())
}

/// A running agent.
pub struct Agent {
    status: watch::Receiver<AgentStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<Phase>>,
}

impl Agent {
    /// Connects, registers once (so configuration errors surface here) and
    /// keeps the node registered in the background.
    pub async fn start(config: AgentConfig) -> Result<Self> {
        let store = ClusterStore::connect(config.store.clone()).await?;
        let spec = NodeSpec {
            id: config.node_id.clone(),
            capacity: config.capacity,
            labels: config.labels.clone(),
            hostname: config.hostname.clone(),
        };
        let first = register(&store, &spec).await?;
        let (tx, status) = watch::channel(AgentStatus {
            node_id: config.node_id.clone(),
            phase: Phase::Ready,
            epoch: first.epoch,
            registrations: 1,
            lease: first.session.id(),
            assignments: BTreeMap::new(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(store, spec, first, tx, stop_rx));
        Ok(Self {
            status,
            stop: Some(stop_tx),
            task,
        })
    }

    /// The agent's state; `changed()` wakes on every update.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Waits until the agent ends by itself (removed or superseded).
    pub async fn wait(mut self) -> Result<Phase> {
        let task = &mut self.task;
        match task.await {
            Ok(r) => r,
            Err(e) => Err(ClusterError::Invalid(format!("the agent task failed: {e}"))),
        }
    }

    /// Stops gracefully: the lease is revoked, so the node is lost at once.
    pub async fn stop(mut self) -> Result<Phase> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Stops without revoking the lease, as a killed process would: the node
    /// is lost only when its lease expires. For tests of failover.
    pub fn crash(self) {
        self.task.abort();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A registration: the session (lease) and the epoch it got.
struct Registered {
    session: Session,
    epoch: u64,
}

async fn register(store: &ClusterStore, spec: &NodeSpec) -> Result<Registered> {
    let session = Session::start(store).await?;
    let record = store.register_node(spec, session.id()).await?;
    tracing::info!(node = %spec.id, epoch = record.epoch, "node registered");
    Ok(Registered {
        session,
        epoch: record.epoch,
    })
}

/// Why one epoch ended.
enum EpochEnd {
    Lost,
    Final(Phase),
}

async fn run(
    store: ClusterStore,
    spec: NodeSpec,
    first: Registered,
    status: watch::Sender<AgentStatus>,
    mut stop: oneshot::Receiver<()>,
) -> Result<Phase> {
    let mut current = Some(first);
    let mut registrations = 0u64;
    loop {
        let reg = match current.take() {
            Some(r) => r,
            None => {
                // Register again under a new epoch, retrying while etcd is unreachable.
                let mut delay = Duration::from_millis(100);
                loop {
                    tokio::select! {
                        _ = &mut stop => return finish(&status, Phase::Stopped),
                        r = register(&store, &spec) => match r {
                            Ok(r) => break r,
                            Err(e) => {
                                tracing::warn!(error = %e, "registration failed; retrying");
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(Duration::from_secs(2));
                            }
                        },
                    }
                }
            }
        };
        registrations += 1;
        status.send_modify(|s| {
            s.phase = Phase::Ready;
            s.epoch = reg.epoch;
            s.registrations = registrations;
            s.lease = reg.session.id();
            s.assignments.clear();
        });
        match follow(&store, &spec.id, &reg, &status, &mut stop).await {
            Ok(EpochEnd::Lost) | Err(_) => {
                status.send_modify(|s| {
                    s.phase = Phase::Lost;
                    s.assignments.clear();
                });
                tracing::warn!(node = %spec.id, epoch = reg.epoch, "node lease lost; registering again");
                reg.session.abandon();
            }
            Ok(EpochEnd::Final(phase)) => {
                let _ = reg.session.close().await;
                return finish(&status, phase);
            }
        }
    }
}

fn finish(status: &watch::Sender<AgentStatus>, phase: Phase) -> Result<Phase> {
    status.send_modify(|s| {
        s.phase = phase;
        s.assignments.clear();
    });
    Ok(phase)
}

/// Follows one epoch: the node's own record (removal, a newer epoch) and
/// its assignments, until the lease is lost or the agent must end.
async fn follow(
    store: &ClusterStore,
    node: &str,
    reg: &Registered,
    status: &watch::Sender<AgentStatus>,
    stop: &mut oneshot::Receiver<()>,
) -> Result<EpochEnd> {
    let node_key = format!("nodes/{node}");
    let epoch_key = format!("epochs/{node}");
    loop {
        // Snapshot, then watch from the next revision: nothing is missed.
        let (list, revision) = store.node_assignments(node).await?;
        let mine: BTreeMap<ReplicaId, StoredAssignment> = list
            .into_iter()
            .filter(|a| a.record.assignment.epoch == reg.epoch)
            .map(|a| (a.record.assignment.replica.clone(), a))
            .collect();
        status.send_modify(|s| s.assignments = mine);
        let mut assignments = store
            .watch(WatchKind::Assignments(Some(node.to_owned())), revision + 1)
            .await?;
        let mut nodes = store.watch(WatchKind::Nodes, revision + 1).await?;
        match store.node(node).await? {
            None => return Ok(EpochEnd::Final(Phase::Removed)),
            Some(r) if r.epoch != reg.epoch => return Ok(EpochEnd::Final(Phase::Superseded)),
            Some(_) => {}
        }
        loop {
            tokio::select! {
                _ = &mut *stop => return Ok(EpochEnd::Final(Phase::Stopped)),
                _ = reg.session.lost() => return Ok(EpochEnd::Lost),
                ev = nodes.next() => match ev {
                    Some(Ok(ev)) if ev.key == node_key && ev.value.is_none() => {
                        return Ok(EpochEnd::Final(Phase::Removed));
                    }
                    Some(Ok(ev)) if ev.key == epoch_key => {
                        let theirs = ev.value.as_deref().and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
                        if theirs.is_some_and(|e| e > reg.epoch) {
                            return Ok(EpochEnd::Final(Phase::Superseded));
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break, // watch ended: list and watch again
                },
                ev = assignments.next() => match ev {
                    Some(Ok(ev)) => {
                        let replica = replica_of(&ev.key);
                        match (ev.assignment(), replica) {
                            (Some(a), _) if a.record.assignment.epoch == reg.epoch => {
                                status.send_modify(|s| { s.assignments.insert(a.record.assignment.replica.clone(), a); });
                            }
                            (_, Some(r)) => {
                                status.send_modify(|s| { s.assignments.remove(&r); });
                            }
                            _ => {}
                        }
                    }
                    _ => break,
                },
            }
        }
    }
}

/// `assign/{node}/{app}/{index}` → the replica.
fn replica_of(key: &str) -> Option<ReplicaId> {
    let mut parts = key.rsplit('/');
    let index = parts.next()?.parse().ok()?;
    let app = parts.next()?.to_owned();
    Some(ReplicaId { app, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_valid_and_saved() {
        let id = new_node_id();
        assert!(crate::model::valid_id(&id), "{id}");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedNode::load(dir.path()).unwrap(), SavedNode::default());
        let saved = SavedNode {
            node_id: Some(id),
            server: Some("http://127.0.0.1:7700".into()),
            credential: Some("slpn_x".into()),
        };
        saved.save(dir.path()).unwrap();
        assert_eq!(SavedNode::load(dir.path()).unwrap(), saved);
        saved.save(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(SavedNode::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn assignment_keys_name_replicas() {
        assert_eq!(
            replica_of("assign/node-1/web/3"),
            Some(ReplicaId {
                app: "web".into(),
                index: 3
            })
        );
        assert_eq!(replica_of("assign/node-1/web/x"), None);
    }
}
