//! Multi-service apps ("stacks"): what a release of an app described by a
//! Compose file runs.
//!
//! `crates/stack` turns a user's `compose.yaml` into a [`StackSpec`] (every
//! accepted key checked, everything else refused with its location); the
//! release freezes it, with each service's image resolved; `crates/deploy`
//! runs it. Nothing here does I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole stack: its services in start order (every service after the
/// services it depends on) and its named volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StackSpec {
    /// Services, dependencies first.
    pub services: Vec<ServiceSpec>,
    /// Named volumes declared at the top level (`volumes:`).
    pub volumes: Vec<String>,
    /// Things the user should know that did not stop the deploy, e.g. "the
    /// host port of `8080:80` is not published; the proxy routes to 80".
    #[serde(default)]
    pub notices: Vec<String>,
}

/// Most services a stack may have.
pub const MAX_SERVICES: usize = 64;

/// Whether `name` is a valid service name: lowercase letters, digits, `-`
/// and `_`, starting with a letter or digit, at most 63 characters.
pub fn valid_service_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

impl StackSpec {
    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The services' names, comma-separated (for messages that list them).
    pub fn service_names(&self) -> String {
        self.services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Replicas of `svc` to run: the app's per-service override
    /// (`slipway scale APP SERVICE=N`), else the file's `deploy.replicas`.
    /// Tasks have none (they run once per release).
    pub fn replicas_of(&self, svc: &ServiceSpec, overrides: &BTreeMap<String, u32>) -> u32 {
        if svc.is_task(self) {
            return 0;
        }
        overrides
            .get(&svc.name)
            .copied()
            .unwrap_or(svc.deploy.replicas)
    }

    /// The services that mount named volume `volume`.
    pub fn services_mounting(&self, volume: &str) -> Vec<&ServiceSpec> {
        self.services
            .iter()
            .filter(|s| {
                s.mounts
                    .iter()
                    .any(|m| matches!(&m.source, MountSource::Volume(v) if v == volume))
            })
            .collect()
    }
}

/// One service of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceSpec {
    /// Its name: other services reach it by this host name.
    pub name: String,
    /// The image to run: as written in `image:`, or (after the release's
    /// build) the image built from `build:`.
    pub image: Option<String>,
    /// The image's content id (`sha256:…`), set by the release: a rebuild
    /// that changed nothing has the same id, so the service is not restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// How to build its image from the repository, if it has `build:`.
    pub build: Option<BuildSpec>,
    /// Overrides the image's `CMD` (exec form; a string is split like a shell would).
    pub command: Option<Vec<String>>,
    /// Overrides the image's `ENTRYPOINT`.
    pub entrypoint: Option<Vec<String>>,
    /// Environment, `env_file` first, then `environment`, interpolated.
    pub environment: BTreeMap<String, String>,
    /// Container ports from `ports:` (host sides are not published).
    pub ports: Vec<u16>,
    /// Container ports from `expose:`.
    pub expose: Vec<u16>,
    /// Raw TCP/UDP ports published on the host (`x-slipway.publish`).
    pub publish: Vec<PublishSpec>,
    /// Services that must be up (or done) before this one starts.
    pub depends_on: Vec<Dependency>,
    /// Its health check, if it has one (`test: NONE` gives `None`).
    pub healthcheck: Option<Healthcheck>,
    /// What happens when it exits.
    pub restart: RestartPolicy,
    /// Named volumes, tmpfs and read-only repository directories.
    pub mounts: Vec<Mount>,
    /// `working_dir`.
    pub working_dir: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `labels` (Slipway's own `io.slipway.*` labels cannot be set).
    pub labels: BTreeMap<String, String>,
    /// App secrets mounted as files under `/run/secrets/<name>`.
    pub secrets: Vec<String>,
    /// Replicas, limits, placement and update order.
    pub deploy: ServiceDeploy,
    /// How the proxy reaches it, if it serves HTTP to the outside.
    pub ingress: Option<Ingress>,
}

impl ServiceSpec {
    /// A one-off task, run once per release and never restarted (database
    /// migrations): `restart: "no"`, or a service others wait on with
    /// `service_completed_successfully`.
    pub fn is_task(&self, stack: &StackSpec) -> bool {
        self.restart == RestartPolicy::No
            || stack.services.iter().any(|s| {
                s.depends_on.iter().any(|d| {
                    d.service == self.name && d.condition == DependsCondition::CompletedSuccessfully
                })
            })
    }

    /// Whether it keeps data in a named volume (it is then updated
    /// stop-first unless told otherwise: two copies must not share the data).
    pub fn has_volume(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| matches!(m.source, MountSource::Volume(_)))
    }

    /// Whether it bind-mounts directories of the deployed commit (its
    /// containers then change with every commit).
    pub fn binds_repo(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| matches!(m.source, MountSource::Repo(_)))
    }
}

/// `build:` of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BuildSpec {
    /// Directory of the repository used as the build context ("." = root).
    pub context: String,
    /// Dockerfile path, relative to the context.
    pub dockerfile: String,
    /// Multi-stage target.
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
}

/// A port published on the host (`x-slipway.publish`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishSpec {
    /// Port inside the container.
    pub container: u16,
    /// Port on the host.
    pub host: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// What must be true of it first.
    pub condition: DependsCondition,
}

/// `depends_on.<service>.condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    /// `service_started` (the short form).
    Started,
    /// `service_healthy`: its health check passed.
    Healthy,
    /// `service_completed_successfully`: it ran and exited 0.
    CompletedSuccessfully,
}

/// A service's health check, run inside its container by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", prog, args…]` or `["CMD-SHELL", "command line"]`.
    pub test: Vec<String>,
    /// Time between checks, in milliseconds.
    pub interval_ms: u64,
    /// Time allowed for one check, in milliseconds.
    pub timeout_ms: u64,
    /// Consecutive failures before it is unhealthy.
    pub retries: u32,
    /// Time after start during which failures do not count, in milliseconds.
    pub start_period_ms: u64,
}

/// `restart:` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// `"no"`: never restarted.
    No,
    /// `always` (the default for long-running services).
    #[default]
    Always,
    /// `on-failure`: restarted when it exits non-zero.
    OnFailure,
    /// `unless-stopped`: like `always` here.
    UnlessStopped,
}

/// A mount of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Where, inside the container (absolute).
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a [`Mount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountSource {
    /// A named volume of the stack (kept across releases).
    Volume(String),
    /// An empty in-memory file system.
    Tmpfs,
    /// A directory of the deployed commit (relative, no `..`), read-only.
    Repo(String),
}

/// `deploy:` of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDeploy {
    /// `replicated` or `global` (one per node).
    pub mode: DeployMode,
    /// Replicas wanted (`replicated` only).
    pub replicas: u32,
    /// Memory limit, in bytes.
    pub memory_bytes: Option<i64>,
    /// CPU limit, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Placement constraints (cluster mode).
    pub constraints: Vec<Constraint>,
    /// At most this many replicas on one node (cluster mode).
    pub max_replicas_per_node: Option<u32>,
    /// Replicas replaced at once during an update.
    pub parallelism: u32,
    /// Update order; `None`: start-first, or stop-first for services with
    /// a named volume.
    pub order: Option<UpdateOrder>,
    /// On a failed update, go back to the previous release (the default).
    pub rollback_on_failure: bool,
}

impl Default for ServiceDeploy {
    fn default() -> Self {
        ServiceDeploy {
            mode: DeployMode::Replicated,
            replicas: 1,
            memory_bytes: None,
            nano_cpus: None,
            constraints: Vec::new(),
            max_replicas_per_node: None,
            parallelism: 1,
            order: None,
            rollback_on_failure: true,
        }
    }
}

/// `deploy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployMode {
    /// N replicas.
    Replicated,
    /// One replica per eligible node.
    Global,
}

/// `deploy.update_config.order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// New replica healthy first, then the old one stops (no downtime).
    StartFirst,
    /// Old replica stops first (for services that must not run twice).
    StopFirst,
}

/// `node.labels.KEY == V`, `node.hostname != H`…
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// `node.hostname` or `node.labels.KEY`.
    pub attribute: String,
    /// `==` (true) or `!=` (false).
    pub equal: bool,
    /// The value compared with.
    pub value: String,
}

/// How the proxy routes outside traffic to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    /// The container port traffic goes to.
    pub port: u16,
    /// Host names (`x-slipway.domains`); empty: the app's host names (or,
    /// for a second routed service, `<service>.<app's first host>`).
    pub domains: Vec<String>,
    /// Path prefix (`x-slipway.path`, default `/`).
    pub path: String,
    /// Cookie-based sticky sessions (`x-slipway.sticky`).
    pub sticky: bool,
    /// Path the proxy checks (`x-slipway.health`, default: `path`).
    pub health_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_a_no_restart_service_something_waits_for() {
        let migrate = ServiceSpec {
            name: "migrate".into(),
            restart: RestartPolicy::No,
            ..Default::default()
        };
        let web = ServiceSpec {
            name: "web".into(),
            depends_on: vec![Dependency {
                service: "migrate".into(),
                condition: DependsCondition::CompletedSuccessfully,
            }],
            ..Default::default()
        };
        let stack = StackSpec {
            services: vec![migrate.clone(), web.clone()],
            ..Default::default()
        };
        assert!(migrate.is_task(&stack));
        assert!(!web.is_task(&stack));
        let waited_on = ServiceSpec {
            restart: RestartPolicy::Always,
            ..migrate
        };
        let stack = StackSpec {
            services: vec![waited_on.clone(), web],
            ..Default::default()
        };
        assert!(waited_on.is_task(&stack));
    }

    #[test]
    fn scale_overrides_win_over_the_file_but_not_for_tasks() {
        let web = ServiceSpec {
            name: "web".into(),
            deploy: ServiceDeploy {
                replicas: 2,
                ..Default::default()
            },
            mounts: vec![Mount {
                source: MountSource::Volume("data".into()),
                target: "/data".into(),
                read_only: false,
            }],
            ..Default::default()
        };
        let migrate = ServiceSpec {
            name: "migrate".into(),
            restart: RestartPolicy::No,
            ..web.clone()
        };
        let stack = StackSpec {
            services: vec![migrate.clone(), web.clone()],
            ..Default::default()
        };
        let mut overrides = BTreeMap::new();
        assert_eq!(stack.replicas_of(&web, &overrides), 2);
        overrides.insert("web".to_string(), 5);
        overrides.insert("migrate".to_string(), 5);
        assert_eq!(stack.replicas_of(&web, &overrides), 5);
        assert_eq!(stack.replicas_of(&migrate, &overrides), 0);
        let names: Vec<&str> = stack
            .services_mounting("data")
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["migrate", "web"]);
        assert!(stack.services_mounting("other").is_empty());
        for ok in ["web", "db-1", "a_b", "0x"] {
            assert!(valid_service_name(ok), "{ok}");
        }
        for bad in ["", "Web", "-a", "_a", "a b", "a/b", &"x".repeat(64)] {
            assert!(!valid_service_name(bad), "{bad}");
        }
    }
}
