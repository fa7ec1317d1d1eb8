//! The cluster's vocabulary: resources, nodes, app demands and assignments,
//! shared by the scheduler, the etcd store, the agent and the API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Node labels (`zone=a`, `disk=ssd`): what placement constraints match.
pub type Labels = BTreeMap<String, String>;

/// CPU and memory, as capacities of nodes and requests of replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU core.
    pub cpu_millis: u64,
    /// Bytes of memory.
    pub memory_bytes: u64,
}

impl Resources {
    /// `cpu_millis` and `memory_bytes` together.
    pub const fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Self {
            cpu_millis,
            memory_bytes,
        }
    }
    /// The sum (saturating: accounting never wraps).
    pub fn plus(self, o: Resources) -> Resources {
        Resources::new(
            self.cpu_millis.saturating_add(o.cpu_millis),
            self.memory_bytes.saturating_add(o.memory_bytes),
        )
    }
    /// The difference, floored at zero.
    pub fn minus(self, o: Resources) -> Resources {
        Resources::new(
            self.cpu_millis.saturating_sub(o.cpu_millis),
            self.memory_bytes.saturating_sub(o.memory_bytes),
        )
    }
    /// Whether `self` fits within `limit` in both dimensions.
    pub fn fits_in(self, limit: Resources) -> bool {
        self.cpu_millis <= limit.cpu_millis && self.memory_bytes <= limit.memory_bytes
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU millis, {} MiB",
            self.cpu_millis,
            self.memory_bytes / (1024 * 1024)
        )
    }
}

/// What an operator decided about a node; survives the node's lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// New replicas may be placed here.
    #[default]
    Active,
    /// No new replicas; those running stay.
    Cordoned,
    /// No new replicas, and the running ones move elsewhere.
    Draining,
}

impl Schedule {
    /// The word used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Active => "active",
            Schedule::Cordoned => "cordoned",
            Schedule::Draining => "draining",
        }
    }
}

/// A node's state as the scheduler sees it: its schedule, unless it is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Alive and schedulable.
    Ready,
    /// Alive, runs what it has, gets nothing new.
    Cordoned,
    /// Alive, its replicas are moved away.
    Draining,
    /// Its lease expired (or it re-registered under a newer epoch not yet seen):
    /// its replicas are rescheduled.
    Lost,
}

impl NodeState {
    /// From the operator's schedule and whether the node's heartbeat is current.
    pub fn from_parts(schedule: Schedule, alive: bool) -> Self {
        match (alive, schedule) {
            (false, _) => NodeState::Lost,
            (true, Schedule::Active) => NodeState::Ready,
            (true, Schedule::Cordoned) => NodeState::Cordoned,
            (true, Schedule::Draining) => NodeState::Draining,
        }
    }
    /// The word used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Cordoned => "cordoned",
            NodeState::Draining => "draining",
            NodeState::Lost => "lost",
        }
    }
}

/// One node as the scheduler needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Stable node id (kept in the agent's data directory).
    pub id: String,
    /// What the node offers to replicas.
    pub capacity: Resources,
    /// What placement constraints match.
    pub labels: Labels,
    /// Ready, cordoned, draining or lost.
    pub state: NodeState,
    /// Registration epoch: assignments made under another epoch are fenced.
    pub epoch: u64,
}

/// What an app (or one service of a stack, named `{app}.{service}`)
/// wants from the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDemand {
    /// The app's name (unique in the cluster).
    pub app: String,
    /// Replicas wanted.
    pub replicas: u32,
    /// What each replica reserves on its node.
    pub request: Resources,
    /// Labels a node must carry (all of them, with these values).
    #[serde(default)]
    pub constraints: Labels,
    /// What each replica runs; agents run nothing for an app without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerTemplate>,
    /// Host names the proxy of every server routes to this app's healthy replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Placement rules beyond `constraints` (Compose's
    /// `placement.constraints`: `!=`, and the node itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PlacementRule>,
    /// At most this many replicas on one node (`placement.max_replicas_per_node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_node: Option<u32>,
    /// The only node replicas may run on: the one holding the named
    /// volume of the service. When it is lost, the replicas wait for it
    /// (they are never recreated empty elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_node: Option<String>,
    /// `deploy.mode: global`: one replica on every live node that the
    /// placement rules allow (`replicas` is ignored).
    #[serde(default)]
    pub global: bool,
}

/// One placement rule: `node.hostname == H` (the node's id),
/// `node.labels.KEY != V`…
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRule {
    /// `node.hostname`, `node.id` or `node.labels.KEY`.
    pub attribute: String,
    /// `==` (true) or `!=` (false).
    pub equal: bool,
    /// The value compared with.
    pub value: String,
}

impl PlacementRule {
    /// Whether node `id` with `labels` satisfies the rule (a missing label
    /// is unequal to every value).
    pub fn matches(&self, id: &str, labels: &Labels) -> bool {
        let actual = match self.attribute.as_str() {
            "node.hostname" | "node.id" => Some(id),
            a => a
                .strip_prefix("node.labels.")
                .and_then(|k| labels.get(k))
                .map(String::as_str),
        };
        (actual == Some(self.value.as_str())) == self.equal
    }
}

impl fmt::Display for PlacementRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{} {op} {}", self.attribute, self.value)
    }
}

/// Most bytes of a template's environment (names and values): demands
/// stay far below etcd's 1.5 MiB request limit.
pub const MAX_ENV_BYTES: usize = 512 * 1024;

/// What an agent starts for each replica of one app revision. Its limits
/// are the demand's `request` (CPU millis and memory bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerTemplate {
    /// The app revision: a changed revision replaces the running containers.
    pub revision: u64,
    /// The image: a local reference, or `host:port/owner/app:tag` in
    /// Slipway's registry, which an agent pulls when its engine lacks it.
    pub image: String,
    /// The command (empty: the image's own).
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The TCP port the app listens on inside the container (published on
    /// the node's advertised address, 127.0.0.1 by default).
    pub port: u16,
    /// `GET` path that answers 2xx when a replica is healthy (none: running = healthy).
    #[serde(default)]
    pub health_path: Option<String>,
    /// The app's secrets, by name only: their values never enter etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretSource>,
    /// Set for a service of a stack: what makes it one (network, name,
    /// ports other services reach, volumes, health check, task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackMember>,
}

/// A stack service's part of a [`ContainerTemplate`]. On every node that
/// runs a replica of the stack, the agent keeps the stack's own network
/// and, on it, one endpoint per service under the service's name that
/// forwards each connection to a healthy replica of that service on any
/// node (see `crate::forward`): `db:5432` works from every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackMember {
    /// The stack's app (its network and its other services' demands).
    pub app: String,
    /// The service's name (the endpoint's DNS name on the stack network).
    pub service: String,
    /// Container ports other services reach by name; each is published
    /// on the node's address, `port` first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `user:` of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `working_dir:` of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The engine's health check (`healthcheck:` or the image's own): a
    /// replica is healthy when the engine says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<TemplateHealth>,
    /// Named volumes (`slipway-{app}-{volume}` on the node) and tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<TemplateMount>,
    /// A one-off task: run once per revision, never restarted; its exit
    /// code is reported (`completed` or `failed`).
    #[serde(default)]
    pub one_shot: bool,
    /// Replace replicas stop-first (services holding a volume must not
    /// run twice on it).
    #[serde(default)]
    pub stop_first: bool,
    /// The path prefix the proxy routes to it under the demand's hosts
    /// (`x-slipway.path`; `None`: `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_path: Option<String>,
    /// Cookie-based sticky sessions at the proxy (`x-slipway.sticky`).
    #[serde(default)]
    pub sticky: bool,
    /// Raw ports published on the node's address (`x-slipway.publish`):
    /// at most one replica per node, so the host port is free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<TemplatePublish>,
    /// Where agents fetch the directories of the deployed commit that
    /// the service bind-mounts (`repo` mounts), if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<StackFiles>,
    /// App secrets (of the template's secret source) put in files under
    /// `/run/secrets/<name>` before the container starts (`secrets:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<String>,
}

/// The engine health check of a stack service's replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHealth {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Milliseconds between checks.
    pub interval_ms: u64,
    /// Milliseconds one check may take.
    pub timeout_ms: u64,
    /// Failures in a row before unhealthy.
    pub retries: u32,
    /// Milliseconds after start when failures do not count.
    pub start_period_ms: u64,
}

/// The files of a stack's commit that its services bind-mount: fetched by
/// agents from the server that built the release
/// (`GET {server}/api/v1/cluster/apps/{app}/files/{sha}`, a tar, with the
/// node's credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFiles {
    /// The server's public URL.
    pub server: String,
    /// The deployed commit.
    pub sha: String,
}

/// A raw port a stack service publishes on its node's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplatePublish {
    /// Port inside the container.
    pub container: u16,
    /// Port on the node's address.
    pub host: u16,
    /// UDP rather than TCP.
    #[serde(default)]
    pub udp: bool,
}

/// A mount of a stack service's replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMount {
    /// The named volume of the stack; `None` (and no `repo`): a tmpfs.
    pub volume: Option<String>,
    /// A directory of the deployed commit (`./conf`), read-only: agents
    /// fetch the stack's files ([`StackMember::files`]) and bind-mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Where, inside the container.
    pub target: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Where an agent gets the secret variables of a replica's environment when
/// it starts one: from the server that holds them (decrypted there, sent
/// to the node over its API with the node's credential), so etcd and its
/// disks only ever hold the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSource {
    /// Base URL of that server's API (its public URL, `http(s)://host:port`).
    pub server: String,
    /// Names of the secret variables, sorted.
    pub names: Vec<String>,
}

impl ContainerTemplate {
    /// Checks the bounds an agent relies on.
    pub fn validate(&self) -> Result<(), String> {
        let plain = |s: &str| !s.chars().any(|c| c.is_control());
        if self.image.is_empty() || self.image.len() > 255 || !plain(&self.image) {
            return Err("container image must be 1-255 printable characters".into());
        }
        if self.port == 0 && self.stack.is_none() {
            return Err("container port must be 1-65535".into());
        }
        if let Some(m) = &self.stack {
            if !valid_id(&m.app) || !valid_demand_name(&format!("{}.{}", m.app, m.service)) {
                return Err("stack member: invalid app or service name".into());
            }
            let absolute = |p: &str| p.starts_with('/') && p.len() <= 4096 && plain(p);
            if m.ports.len() > 64
                || m.mounts.len() > 64
                || m.mounts.iter().any(|x| {
                    !absolute(&x.target) || x.volume.as_ref().is_some_and(|v| !valid_id(v))
                })
            {
                return Err("stack member: at most 64 ports and 64 mounts at absolute paths, named volumes [a-z0-9-]".into());
            }
        }
        if self.command.len() > 64 || self.command.iter().any(|a| a.len() > 4096) {
            return Err("container command: at most 64 arguments of 4096 bytes".into());
        }
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if self.env.len() > 256
            || env_bytes > MAX_ENV_BYTES
            || self.env.iter().any(|(k, v)| {
                k.is_empty()
                    || k.contains('=')
                    || k.contains('\0')
                    || v.contains('\0')
                    || k.len() > 255
                    || v.len() > 32 * 1024
            })
        {
            return Err(
                "container env: at most 256 NAME=value pairs, values up to 32 KiB, 512 KiB in all"
                    .into(),
            );
        }
        if let Some(p) = &self.health_path {
            if !p.starts_with('/') || p.len() > 1024 || !p.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("health path must start with '/' and be printable ASCII".into());
            }
        }
        if let Some(secrets) = &self.secrets {
            let url = &secrets.server;
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() > 2048
                || !url.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err("secrets server must be an http(s) URL of printable ASCII".into());
            }
            if secrets.names.len() > 256
                || secrets.names.iter().any(|n| {
                    n.is_empty()
                        || n.len() > 255
                        || n.contains(['=', '\0'])
                        || self.env.contains_key(n)
                })
            {
                return Err(
                    "container secrets: at most 256 names of up to 255 bytes, without '=', not also in env"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// Replica `index` of `app`: replica ids are stable across moves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId {
    /// The app.
    pub app: String,
    /// 0-based; scaling down removes the highest indices first.
    pub index: u32,
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.index)
    }
}

/// A replica placed on a node under one of the node's epochs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Assignment {
    /// Which replica.
    pub replica: ReplicaId,
    /// Where it runs.
    pub node: String,
    /// The node's epoch when it was placed; the fencing token.
    pub epoch: u64,
}

/// Whether labels satisfy constraints (every constrained key present and equal).
pub fn labels_match(labels: &Labels, constraints: &Labels) -> bool {
    constraints.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Node ids and app names used as etcd key segments: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Demand names: an app's id, or `{app}.{service}` for a service of a
/// stack (service names: `[a-z0-9][a-z0-9_-]{0,62}`).
pub fn valid_demand_name(s: &str) -> bool {
    match s.split_once('.') {
        None => valid_id(s),
        Some((app, service)) => {
            valid_id(app)
                && !service.is_empty()
                && service.len() <= 63
                && service
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                && !service.starts_with(['-', '_'])
        }
    }
}

/// Parses `key=value` labels from flags; keys and values are bounded and plain.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not key=value"))?;
    let ok = |x: &str, max: usize| {
        x.len() <= max
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    };
    if k.is_empty() || !ok(k, 63) || !ok(v, 63) {
        return Err(format!(
            "label {s:?}: keys (1-63) and values (0-63) use letters, digits, '-', '_', '.', '/'"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_key_safe() {
        assert!(valid_id("node-1"));
        assert!(valid_id("a"));
        assert!(!valid_id(""));
        assert!(!valid_id("-a"));
        assert!(!valid_id("Node"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(64)));
        assert!(valid_demand_name("vote.db"));
        assert!(valid_demand_name("vote.db_1"));
        assert!(!valid_demand_name("vote.Db"));
        assert!(!valid_demand_name("vote.a.b"));
        assert!(!valid_demand_name("vote."));
    }

    #[test]
    fn labels_parse_and_match() {
        assert_eq!(parse_label("zone=a").unwrap(), ("zone".into(), "a".into()));
        assert_eq!(parse_label("gpu=").unwrap(), ("gpu".into(), "".into()));
        assert!(parse_label("zone").is_err());
        assert!(parse_label("=a").is_err());
        assert!(parse_label("a=b c").is_err());
        let labels: Labels = [("zone".to_string(), "a".to_string())].into();
        assert!(labels_match(&labels, &Labels::new()));
        assert!(labels_match(&labels, &labels));
        let other: Labels = [("zone".to_string(), "b".to_string())].into();
        assert!(!labels_match(&labels, &other));
    }

    #[test]
    fn resources_saturate() {
        let a = Resources::new(5, 5);
        assert_eq!(a.minus(Resources::new(10, 1)), Resources::new(0, 4));
        assert_eq!(Resources::new(u64::MAX, 0).plus(a).cpu_millis, u64::MAX);
        assert!(a.fits_in(Resources::new(5, 5)));
        assert!(!a.fits_in(Resources::new(4, 5)));
    }
}
