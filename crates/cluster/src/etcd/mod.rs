//! The cluster state on etcd.
//!
//! Key layout under the prefix (default `/slipway`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `nodes/{node}` | [`NodeRecord`]: capacity, labels, schedule, epoch | none: survives the node |
//! | `epochs/{node}` | the node's current epoch, a decimal number (fencing compares it) | none |
//! | `alive/{node}` | [`Heartbeat`]: the epoch it belongs to | the node's |
//! | `apps/{app}` | [`AppDemand`]: replicas, requests, label constraints | none |
//! | `assign/{node}/{app}/{index}` | [`AssignmentRecord`] with the epoch it was made under | none |
//! | `status/{node}/{app}/{index}` | [`ReplicaReport`] from the agent | the node's |
//! | `servers/{id}` | [`ServerRecord`]: a `slipway server` member | the server's |
//! | `election/scheduler` | etcd election: the leader's value is its server id | the leader's |
//! | `join-tokens/{sha256}` | [`JoinTokenRecord`] (only the digest is stored) | none |
//! | `node-credentials/{node}` | [`NodeCredentialRecord`]: digest of the node's registry pull credential | none |
//! | `events/{app}/{time}` | [`ClusterEvent`]: what the scheduler did to the app | a one-day lease |
//!
//! A node is alive while `alive/{node}` exists with the epoch in
//! `nodes/{node}`; every registration increments the epoch, so a node
//! that comes back sees its old assignments (made under the old epoch) are
//! no longer its own, and its status reports are refused.

mod election;
mod events;
mod routing;
mod session;
mod watch;

pub use election::{Leadership, SCHEDULER_ELECTION};
pub use events::{plan_events, unschedulable_event, ClusterEvent, EVENT_TTL_SECS};
pub use routing::{replica_key, NodeReport, RoutingSnapshot};
pub use session::Session;
pub use watch::{Watch, WatchEvent, WatchKind};

use crate::model::{
    AppDemand, Assignment, Labels, NodeState, NodeView, ReplicaId, Resources, Schedule,
};
use chrono::{DateTime, Utc};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How to reach etcd and how long leases live.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Client URLs of the etcd members, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix that keeps several clusters (or tests) apart in one etcd.
    pub prefix: String,
    /// Lease TTL of nodes and servers: how long until a silent one is lost.
    pub lease_ttl: Duration,
    /// Longest wait for one request (campaigns and watches excepted).
    pub request_timeout: Duration,
}

impl StoreOptions {
    /// Defaults for `endpoints`: prefix `/slipway`, 3 s leases, 5 s requests.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/slipway".into(),
            lease_ttl: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// What can go wrong with the cluster state.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer, or answered with an error.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// No answer within the request timeout.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// No such node, app or token.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The input is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The caller acted under an epoch or assignment that is no longer current.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The caller is no longer the scheduler's leader.
    #[error("not the leader any more")]
    NotLeader,
    /// A stored value could not be decoded.
    #[error("corrupt value at {key}: {error}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoding error.
        error: String,
    },
}

/// Result of cluster store calls.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// A node as registered: what it offers and what the operator decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Stable id.
    pub id: String,
    /// CPU and memory offered to replicas.
    pub capacity: Resources,
    /// Labels for placement constraints.
    pub labels: Labels,
    /// Active, cordoned or draining (kept across registrations).
    pub schedule: Schedule,
    /// Incremented by every registration.
    pub epoch: u64,
    /// The machine's host name, for people.
    pub hostname: String,
    /// The agent's version.
    pub version: String,
    /// When the node first registered.
    pub first_seen: DateTime<Utc>,
    /// When the current epoch began.
    pub registered_at: DateTime<Utc>,
}

/// What an agent sends when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Stable id.
    pub id: String,
    /// CPU and memory offered to replicas.
    pub capacity: Resources,
    /// Labels for placement constraints.
    pub labels: Labels,
    /// The machine's host name.
    pub hostname: String,
}

/// The value of `alive/{node}`: which epoch the live lease belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The epoch this lease was registered under.
    pub epoch: u64,
    /// The lease id.
    pub lease: i64,
}

/// A node as listed by the API: its record, liveness and load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The registration record.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Ready, cordoned, draining or lost.
    pub state: NodeState,
    /// Replicas assigned to it under its current epoch.
    pub replicas: usize,
    /// Resources those replicas request.
    pub allocated: Resources,
    /// Resources those replicas use, as last measured: CPU (thousandths of
    /// a core) and memory. Only the single-node server measures its own
    /// (from its monitoring samples); agents do not report usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<Resources>,
}

impl NodeInfo {
    /// The scheduler's view of the node.
    pub fn view(&self) -> NodeView {
        NodeView {
            id: self.record.id.clone(),
            capacity: self.record.capacity,
            labels: self.record.labels.clone(),
            state: self.state,
            epoch: self.record.epoch,
        }
    }
}

/// The stored value of an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    /// Replica, node and epoch.
    #[serde(flatten)]
    pub assignment: Assignment,
    /// When the scheduler made it.
    pub assigned_at: DateTime<Utc>,
}

/// An assignment with its etcd revision: the token an agent quotes when it
/// reports, so a report about a replaced assignment is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAssignment {
    /// The value.
    #[serde(flatten)]
    pub record: AssignmentRecord,
    /// `mod_revision` of the key.
    pub revision: i64,
}

/// What an agent says about one of its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// `starting`, `running`, `failed`…
    pub state: String,
    /// For people: container id, exit code, error.
    pub detail: String,
    /// The node's epoch when it reported.
    pub epoch: u64,
    /// When.
    pub updated_at: DateTime<Utc>,
    /// The replica's container id (what the proxy and `ps` will show).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The port published on the node's address for the app's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The node's address the port is published on (`--advertise-address`,
    /// 127.0.0.1 when absent): proxies on every server dial `address:host_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The app revision (container template) the reported container runs:
    /// during a rollout the old revision stays reported until the new one
    /// is healthy, so a release is live when every replica reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Set when a container of `unreachable.revision` runs but cannot be
    /// reached on the app's port (it listens on another one, or only on
    /// 127.0.0.1), seen 3 times in a row: the app's server fails that
    /// release at once instead of at its start timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<Unreachable>,
    /// Every published container port → its host port on `address` (a
    /// stack service's ports, which the nodes' forwarders connect to).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, u16>,
}

/// Why a revision's container cannot be reached on the app's port, from
/// the agent's look at its listening sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    /// The revision whose container it is (during a rollout the reported
    /// container may still be the previous revision's).
    pub revision: u64,
    /// E.g. "nothing listens on port 8080 inside the container; it listens on 80".
    pub message: String,
}

/// The value of `node-credentials/{node}`: the digest of the node's pull
/// credential (`slpn_…`), replaced at each join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCredentialRecord {
    /// SHA-256 hex of the credential.
    pub sha256: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// A `slipway server` member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The server's id (`cluster_node_id`).
    pub id: String,
    /// Where its API answers.
    pub api_url: String,
    /// Its version.
    pub version: String,
    /// When it joined.
    pub started_at: DateTime<Utc>,
}

/// A join token as stored: only its digest is the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// After this it is refused (and deleted when presented).
    pub expires_at: DateTime<Utc>,
}

/// A consistent picture of the cluster at one etcd revision: the scheduler's input.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The etcd revision of the reads.
    pub revision: i64,
    /// Every node with its state.
    pub nodes: Vec<NodeInfo>,
    /// Every app's demand.
    pub demands: Vec<AppDemand>,
    /// Every assignment.
    pub assignments: Vec<StoredAssignment>,
}

/// The cluster state in etcd; cloning shares the connection.
#[derive(Clone)]
pub struct ClusterStore {
    client: Client,
    prefix: String,
    opts: StoreOptions,
}

/// Conflicting writes are retried this many times before giving up.
const CAS_RETRIES: usize = 16;
/// Operations per transaction (etcd's default limit is 128).
const TXN_OPS: usize = 100;

impl ClusterStore {
    /// Connects to etcd and checks that a member answers.
    pub async fn connect(opts: StoreOptions) -> Result<Self> {
        if opts.endpoints.is_empty() {
            return Err(ClusterError::Invalid("no etcd endpoints given".into()));
        }
        let prefix = opts.prefix.trim_end_matches('/').to_owned();
        if !prefix.starts_with('/') {
            return Err(ClusterError::Invalid(format!(
                "the cluster key prefix {prefix:?} must start with '/'"
            )));
        }
        let connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let client = timed(
            opts.request_timeout,
            Client::connect(&opts.endpoints, Some(connect)),
        )
        .await?;
        let store = Self {
            client,
            prefix,
            opts,
        };
        // Any read proves a member answers (and has a leader).
        store
            .get_raw(&store.key("nodes/"), None)
            .await
            .map_err(|e| {
                ClusterError::Invalid(format!(
                    "cannot reach etcd at {}: {e}",
                    store.opts.endpoints.join(",")
                ))
            })?;
        Ok(store)
    }

    /// The options it was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// The raw etcd client (for callers that need more than this type offers).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `prefix/rest`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// The key without the prefix (`None` if it is not under it).
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    /// Runs a unary etcd call within the request timeout, retrying it on
    /// another member when the one picked is unreachable (a dead member
    /// stays in the client's balancer until its connection is retried).
    pub(crate) async fn call<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let limit = self.opts.request_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let mut delay = Duration::from_millis(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, f(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if transient(&e) && tokio::time::Instant::now() + delay < deadline => {
                    tracing::debug!(error = %e, "etcd call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(250));
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(ClusterError::Timeout(limit)),
            }
        }
    }

    async fn get_raw(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse> {
        self.call(|mut c| {
            let options = options.clone();
            async move { c.get(key, options).await }
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn put(&self, key: String, value: Vec<u8>, options: Option<PutOptions>) -> Result<()> {
        self.call(|mut c| {
            let (key, value, options) = (key.clone(), value.clone(), options.clone());
            async move { c.put(key, value, options).await }
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, key: String) -> Result<()> {
        self.call(|mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .await?;
        Ok(())
    }

    async fn list<T: DeserializeOwned>(
        &self,
        dir: &str,
        revision: i64,
    ) -> Result<Vec<(String, T, i64)>> {
        let mut opts = GetOptions::new().with_prefix();
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let res = self.get_raw(&self.key(dir), Some(opts)).await?;
        res.kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let value = decode(&key, kv.value())?;
                Ok((key, value, kv.mod_revision()))
            })
            .collect()
    }

    async fn get_one<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        let res = self.get_raw(key, None).await?;
        match res.kvs().first() {
            Some(kv) => Ok(Some((decode(key, kv.value())?, kv.mod_revision()))),
            None => Ok(None),
        }
    }

    // ---- nodes ----

    /// Registers (or re-registers) a node under `lease`: its epoch goes up by
    /// one, its operator schedule is kept, and `alive/{node}` is put with the
    /// lease. Returns the new record.
    pub async fn register_node(&self, spec: &NodeSpec, lease: i64) -> Result<NodeRecord> {
        if !crate::model::valid_id(&spec.id) {
            return Err(ClusterError::Invalid(format!(
                "invalid node id {:?}",
                spec.id
            )));
        }
        let node_key = self.key(&format!("nodes/{}", spec.id));
        for _ in 0..CAS_RETRIES {
            let existing: Option<(NodeRecord, i64)> = self.get_one(&node_key).await?;
            let now = Utc::now();
            let (record, guard) = match existing {
                Some((old, rev)) => (
                    NodeRecord {
                        id: spec.id.clone(),
                        capacity: spec.capacity,
                        labels: spec.labels.clone(),
                        schedule: old.schedule,
                        epoch: old.epoch + 1,
                        hostname: spec.hostname.clone(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        first_seen: old.first_seen,
                        registered_at: now,
                    },
                    Compare::mod_revision(node_key.as_str(), CompareOp::Equal, rev),
                ),
                None => (
                    NodeRecord {
                        id: spec.id.clone(),
                        capacity: spec.capacity,
                        labels: spec.labels.clone(),
                        schedule: Schedule::Active,
                        epoch: self.next_fresh_epoch(&spec.id).await?,
                        hostname: spec.hostname.clone(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        first_seen: now,
                        registered_at: now,
                    },
                    Compare::create_revision(node_key.as_str(), CompareOp::Equal, 0),
                ),
            };
            let beat = Heartbeat {
                epoch: record.epoch,
                lease,
            };
            let txn = Txn::new().when([guard]).and_then([
                TxnOp::put(node_key.as_str(), encode(&record), None),
                TxnOp::put(
                    self.key(&format!("epochs/{}", spec.id)),
                    record.epoch.to_string(),
                    None,
                ),
                TxnOp::put(
                    self.key(&format!("alive/{}", spec.id)),
                    encode(&beat),
                    Some(PutOptions::new().with_lease(lease)),
                ),
            ]);
            if self.txn(txn).await?.succeeded() {
                return Ok(record);
            }
        }
        Err(ClusterError::Conflict(format!(
            "node {} changed during registration {CAS_RETRIES} times",
            spec.id
        )))
    }

    /// A removed node that registers again continues after its old epoch
    /// (kept in `epochs/`), so assignments from before the removal stay fenced.
    async fn next_fresh_epoch(&self, node: &str) -> Result<u64> {
        let res = self
            .get_raw(&self.key(&format!("epochs/{node}")), None)
            .await?;
        Ok(res
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            + 1)
    }

    /// One node's record, if registered.
    pub async fn node(&self, id: &str) -> Result<Option<NodeRecord>> {
        Ok(self
            .get_one(&self.key(&format!("nodes/{id}")))
            .await?
            .map(|(r, _)| r))
    }

    /// Every node with its state and load.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self.snapshot().await?.nodes)
    }

    /// Every node, demand and assignment, read at one revision.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let first = self
            .get_raw(&self.key("nodes/"), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = first.header().map(|h| h.revision()).unwrap_or(0);
        let mut records = Vec::new();
        for kv in first.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            records.push(decode::<NodeRecord>(&key, kv.value())?);
        }
        let alive: BTreeMap<String, Heartbeat> = self
            .list::<Heartbeat>("alive/", revision)
            .await?
            .into_iter()
            .filter_map(|(k, v, _)| Some((k.rsplit('/').next()?.to_owned(), v)))
            .collect();
        let demands: Vec<AppDemand> = self
            .list::<AppDemand>("apps/", revision)
            .await?
            .into_iter()
            .map(|(_, v, _)| v)
            .collect();
        let assignments: Vec<StoredAssignment> = self
            .list::<AssignmentRecord>("assign/", revision)
            .await?
            .into_iter()
            .map(|(_, record, rev)| StoredAssignment {
                record,
                revision: rev,
            })
            .collect();
        let requests: BTreeMap<&str, Resources> = demands
            .iter()
            .map(|d| (d.app.as_str(), d.request))
            .collect();
        let nodes = records
            .into_iter()
            .map(|record| {
                let is_alive = alive
                    .get(&record.id)
                    .is_some_and(|b| b.epoch == record.epoch);
                let mine = assignments.iter().filter(|a| {
                    a.record.assignment.node == record.id
                        && a.record.assignment.epoch == record.epoch
                });
                let (replicas, allocated) = mine.fold((0, Resources::default()), |(n, r), a| {
                    let req = requests
                        .get(a.record.assignment.replica.app.as_str())
                        .copied()
                        .unwrap_or_default();
                    (n + 1, r.plus(req))
                });
                NodeInfo {
                    state: NodeState::from_parts(record.schedule, is_alive),
                    record,
                    replicas,
                    allocated,
                    used: None,
                }
            })
            .collect();
        Ok(Snapshot {
            revision,
            nodes,
            demands,
            assignments,
        })
    }

    /// Sets a node's schedule (cordon, drain, uncordon) atomically.
    pub async fn set_schedule(&self, id: &str, schedule: Schedule) -> Result<NodeRecord> {
        let key = self.key(&format!("nodes/{id}"));
        for _ in 0..CAS_RETRIES {
            let Some((mut record, rev)) = self.get_one::<NodeRecord>(&key).await? else {
                return Err(ClusterError::NotFound(format!("node {id} not found")));
            };
            if record.schedule == schedule {
                return Ok(record);
            }
            record.schedule = schedule;
            let txn = Txn::new()
                .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key.as_str(), encode(&record), None)]);
            if self.txn(txn).await?.succeeded() {
                return Ok(record);
            }
        }
        Err(ClusterError::Conflict(format!(
            "node {id} kept changing; try again"
        )))
    }

    /// Removes a node from the cluster: its record, heartbeat, assignments
    /// and reports. A live node that still has replicas must be drained
    /// first (`Conflict`). Its epoch counter is kept, so if its agent
    /// registers again it starts from a fresh epoch.
    pub async fn remove_node(&self, id: &str) -> Result<NodeRecord> {
        let key = self.key(&format!("nodes/{id}"));
        for _ in 0..CAS_RETRIES {
            let Some((record, rev)) = self.get_one::<NodeRecord>(&key).await? else {
                return Err(ClusterError::NotFound(format!("node {id} not found")));
            };
            let info = self.nodes().await?.into_iter().find(|n| n.record.id == id);
            if let Some(info) = info {
                if info.state != NodeState::Lost && info.replicas > 0 {
                    return Err(ClusterError::Conflict(format!(
                        "node {id} is alive and runs {} replica(s): drain it first (`slipway node drain {id}`)",
                        info.replicas
                    )));
                }
            }
            let prefix = DeleteOptions::new().with_prefix();
            let txn = Txn::new()
                .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
                .and_then([
                    TxnOp::delete(key.as_str(), None),
                    TxnOp::delete(self.key(&format!("alive/{id}")), None),
                    TxnOp::delete(self.key(&format!("assign/{id}/")), Some(prefix.clone())),
                    TxnOp::delete(self.key(&format!("status/{id}/")), Some(prefix)),
                    TxnOp::delete(self.key(&format!("node-credentials/{id}")), None),
                ]);
            if self.txn(txn).await?.succeeded() {
                return Ok(record);
            }
        }
        Err(ClusterError::Conflict(format!(
            "node {id} kept changing; try again"
        )))
    }

    // ---- demands ----

    /// Creates or replaces what an app wants (the deployer's input to the scheduler).
    pub async fn put_demand(&self, demand: &AppDemand) -> Result<()> {
        if !crate::model::valid_demand_name(&demand.app) {
            return Err(ClusterError::Invalid(format!(
                "invalid app name {:?}",
                demand.app
            )));
        }
        if let Some(t) = &demand.container {
            t.validate()
                .map_err(|e| ClusterError::Invalid(format!("app {}: {e}", demand.app)))?;
        }
        self.put(
            self.key(&format!("apps/{}", demand.app)),
            encode(demand),
            None,
        )
        .await
    }

    /// Every app's demand (what agents read their container templates from).
    pub async fn demands(&self) -> Result<BTreeMap<String, AppDemand>> {
        let list = self.list::<AppDemand>("apps/", 0).await?;
        Ok(list
            .into_iter()
            .map(|(_, d, _)| (d.app.clone(), d))
            .collect())
    }

    /// One app's demand, if any (the deployer writes only what changed).
    pub async fn demand(&self, app: &str) -> Result<Option<AppDemand>> {
        Ok(self
            .get_one(&self.key(&format!("apps/{app}")))
            .await?
            .map(|(d, _)| d))
    }

    /// Forgets an app: the scheduler withdraws its assignments.
    pub async fn delete_demand(&self, app: &str) -> Result<()> {
        self.delete(self.key(&format!("apps/{app}"))).await
    }

    // ---- assignments ----

    fn assignment_key(&self, a: &Assignment) -> String {
        self.key(&format!(
            "assign/{}/{}/{}",
            a.node, a.replica.app, a.replica.index
        ))
    }

    fn status_key(&self, node: &str, r: &ReplicaId) -> String {
        self.key(&format!("status/{node}/{}/{}", r.app, r.index))
    }

    /// The assignments of one node (any epoch).
    pub async fn node_assignments(&self, node: &str) -> Result<(Vec<StoredAssignment>, i64)> {
        let res = self
            .get_raw(
                &self.key(&format!("assign/{node}/")),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let revision = res.header().map(|h| h.revision()).unwrap_or(0);
        let list = res
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                Ok(StoredAssignment {
                    record: decode(&key, kv.value())?,
                    revision: kv.mod_revision(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((list, revision))
    }

    /// Applies a scheduler plan, only while `leader` still leads (each
    /// transaction compares the election key): deletions of removed
    /// assignments (and their reports), puts of added ones. Large plans go
    /// in several transactions; each is atomic and fenced on leadership.
    pub async fn apply_plan(
        &self,
        leader: &Leadership,
        plan: &crate::scheduler::Plan,
    ) -> Result<()> {
        let now = Utc::now();
        let added_keys: std::collections::HashSet<String> =
            plan.added.iter().map(|a| self.assignment_key(a)).collect();
        let mut ops = Vec::new();
        for r in &plan.removed {
            let key = self.assignment_key(&r.assignment);
            // Re-placed on the same node under a new epoch: the put replaces it.
            if !added_keys.contains(&key) {
                ops.push(TxnOp::delete(key, None));
            }
            ops.push(TxnOp::delete(
                self.status_key(&r.assignment.node, &r.assignment.replica),
                None,
            ));
        }
        for a in &plan.added {
            let record = AssignmentRecord {
                assignment: a.clone(),
                assigned_at: now,
            };
            ops.push(TxnOp::put(self.assignment_key(a), encode(&record), None));
        }
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let batch: Vec<TxnOp> = ops.by_ref().take(TXN_OPS).collect();
            let txn = Txn::new().when([leader.guard()]).and_then(batch);
            if !self.txn(txn).await?.succeeded() {
                return Err(ClusterError::NotLeader);
            }
        }
        Ok(())
    }

    /// Records an agent's report about one of its replicas, only if the node
    /// is still at `epoch` and the assignment is unchanged since the agent
    /// read it (its revision): a node that was replaced, or an assignment
    /// moved away, is `Fenced`. The report lives with the node's lease.
    pub async fn report(
        &self,
        epoch: u64,
        lease: i64,
        assignment: &StoredAssignment,
        state: &str,
        detail: &str,
    ) -> Result<()> {
        let report = ReplicaReport {
            state: state.into(),
            detail: detail.into(),
            epoch,
            updated_at: Utc::now(),
            container: None,
            host_port: None,
            address: None,
            revision: None,
            unreachable: None,
            ports: BTreeMap::new(),
        };
        self.report_replica(lease, assignment, report).await
    }

    /// [`ClusterStore::report`] with a whole report (container id, host
    /// port); fenced the same way on `report.epoch`.
    pub async fn report_replica(
        &self,
        lease: i64,
        assignment: &StoredAssignment,
        mut report: ReplicaReport,
    ) -> Result<()> {
        let a = &assignment.record.assignment;
        let epoch = report.epoch;
        report.detail = report.detail.chars().take(1000).collect();
        let txn = Txn::new()
            .when([
                Compare::value(
                    self.key(&format!("epochs/{}", a.node)),
                    CompareOp::Equal,
                    epoch.to_string(),
                ),
                Compare::mod_revision(
                    self.assignment_key(a),
                    CompareOp::Equal,
                    assignment.revision,
                ),
            ])
            .and_then([TxnOp::put(
                self.status_key(&a.node, &a.replica),
                encode(&report),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if self.txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(ClusterError::Fenced(format!(
                "replica {} on node {} (epoch {epoch}) is no longer assigned there",
                a.replica, a.node
            )))
        }
    }

    /// The agents' reports of one node.
    pub async fn reports(&self, node: &str) -> Result<BTreeMap<ReplicaId, ReplicaReport>> {
        let list = self
            .list::<ReplicaReport>(&format!("status/{node}/"), 0)
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|(k, v, _)| {
                let mut parts = k.rsplit('/');
                let index = parts.next()?.parse().ok()?;
                let app = parts.next()?.to_owned();
                Some((ReplicaId { app, index }, v))
            })
            .collect())
    }

    // ---- servers ----

    /// Announces a server member under its lease.
    pub async fn register_server(&self, server: &ServerRecord, lease: i64) -> Result<()> {
        self.put(
            self.key(&format!("servers/{}", server.id)),
            encode(server),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
    }

    /// The server members whose leases are alive.
    pub async fn servers(&self) -> Result<Vec<ServerRecord>> {
        Ok(self
            .list::<ServerRecord>("servers/", 0)
            .await?
            .into_iter()
            .map(|(_, v, _)| v)
            .collect())
    }

    // ---- node credentials ----

    /// Issues node `node`'s pull credential (`slpn_…`, returned once),
    /// replacing any earlier one: agents pull release images from the
    /// servers' registry with Basic `<node>:<credential>`. Only its SHA-256
    /// is stored, under `node-credentials/{node}`.
    pub async fn issue_node_credential(&self, node: &str) -> Result<String> {
        use rand::distributions::{Alphanumeric, DistString};
        if !crate::model::valid_id(node) {
            return Err(ClusterError::Invalid(format!("invalid node id {node:?}")));
        }
        let secret = format!(
            "slpn_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
        );
        let record = NodeCredentialRecord {
            sha256: digest(&secret),
            issued_at: Utc::now(),
        };
        self.put(
            self.key(&format!("node-credentials/{node}")),
            encode(&record),
            None,
        )
        .await?;
        Ok(secret)
    }

    /// Whether `secret` is node `node`'s current pull credential.
    pub async fn check_node_credential(&self, node: &str, secret: &str) -> Result<bool> {
        if !crate::model::valid_id(node) || !secret.starts_with("slpn_") || secret.len() > 100 {
            return Ok(false);
        }
        let key = self.key(&format!("node-credentials/{node}"));
        Ok(self
            .get_one::<NodeCredentialRecord>(&key)
            .await?
            .is_some_and(|(r, _)| r.sha256 == digest(secret)))
    }

    // ---- join tokens ----

    /// Makes a join token valid for `ttl`; returns the secret (shown once)
    /// and its record. Only the SHA-256 digest is stored.
    pub async fn create_join_token(
        &self,
        created_by: &str,
        ttl: Duration,
    ) -> Result<(String, JoinTokenRecord)> {
        use rand::distributions::{Alphanumeric, DistString};
        let secret = format!(
            "slpj_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
        );
        let now = Utc::now();
        let record = JoinTokenRecord {
            created_by: created_by.into(),
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(ttl)
                    .map_err(|e| ClusterError::Invalid(e.to_string()))?,
        };
        self.put(
            self.key(&format!("join-tokens/{}", digest(&secret))),
            encode(&record),
            None,
        )
        .await?;
        Ok((secret, record))
    }

    /// Checks a presented join token: `NotFound` when unknown or expired
    /// (an expired one is deleted).
    pub async fn check_join_token(&self, secret: &str) -> Result<JoinTokenRecord> {
        if !secret.starts_with("slpj_") || secret.len() > 100 {
            return Err(ClusterError::NotFound("invalid join token".into()));
        }
        let key = self.key(&format!("join-tokens/{}", digest(secret)));
        match self.get_one::<JoinTokenRecord>(&key).await? {
            Some((record, _)) if record.expires_at > Utc::now() => Ok(record),
            Some(_) => {
                let _ = self.delete(key).await;
                Err(ClusterError::NotFound("the join token has expired".into()))
            }
            None => Err(ClusterError::NotFound("invalid join token".into())),
        }
    }
}

/// SHA-256 hex of a secret.
fn digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("cluster records serialize")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ClusterError::Corrupt {
        key: key.into(),
        error: e.to_string(),
    })
}

/// Errors after which the same call may go to another member: nothing
/// reached etcd, or the connection broke.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                || (s.code() == tonic::Code::Unknown && s.message().contains("transport error"))
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// Runs an etcd call with a deadline.
async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ClusterError::Timeout(limit)),
    }
}
