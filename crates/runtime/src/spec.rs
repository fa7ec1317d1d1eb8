//! What a container should look like: image, command, mounts, network,
//! published ports, labels, resource limits and security settings.
//!
//! A [`ContainerSpec`] is plain data plus builder methods; it is turned into a
//! Docker Engine create request by [`crate::Runtime::create`].

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::container::{Config, NetworkingConfig};
use bollard::models::{
    EndpointSettings, HostConfig, Mount as DockerMount, MountTmpfsOptions, MountTypeEnum,
    PortBinding,
};

use crate::error::{Result, RuntimeError};
use crate::labels;

/// Host address every published port is bound to: Slipway never exposes
/// containers beyond the local machine; its own proxy fronts them.
pub const PUBLISH_HOST_IP: &str = "127.0.0.1";

/// A storage mount inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A named Docker volume (created on first use if missing; see [`crate::Runtime::create_volume`]).
    Volume {
        /// Volume name.
        name: String,
        /// Absolute path inside the container.
        target: String,
        /// Mount read-only.
        read_only: bool,
    },
    /// A host directory or file.
    Bind {
        /// Absolute host path.
        source: PathBuf,
        /// Absolute path inside the container.
        target: String,
        /// Mount read-only.
        read_only: bool,
    },
    /// An in-memory filesystem, the writable scratch space of read-only containers.
    Tmpfs {
        /// Absolute path inside the container.
        target: String,
        /// Size limit in bytes (None = the kernel default, half of RAM).
        size_bytes: Option<i64>,
        /// Permission bits, e.g. `0o1777` (None = Docker's default 1777).
        mode: Option<i64>,
    },
}

impl Mount {
    /// Path inside the container where this mount appears.
    pub fn target(&self) -> &str {
        match self {
            Mount::Volume { target, .. }
            | Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }

    fn to_docker(&self) -> DockerMount {
        match self {
            Mount::Volume {
                name,
                target,
                read_only,
            } => DockerMount {
                typ: Some(MountTypeEnum::VOLUME),
                source: Some(name.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
            Mount::Bind {
                source,
                target,
                read_only,
            } => DockerMount {
                typ: Some(MountTypeEnum::BIND),
                source: Some(source.to_string_lossy().into_owned()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
            Mount::Tmpfs {
                target,
                size_bytes,
                mode,
            } => DockerMount {
                typ: Some(MountTypeEnum::TMPFS),
                target: Some(target.clone()),
                tmpfs_options: Some(MountTmpfsOptions {
                    size_bytes: *size_bytes,
                    mode: *mode,
                    options: None,
                }),
                ..Default::default()
            },
        }
    }
}

/// Which network a container joins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// Docker's default bridge (outbound access, no DNS between containers).
    #[default]
    Bridge,
    /// No network at all, only loopback.
    None,
    /// A user-defined network (see [`crate::Runtime::create_network`]); other
    /// containers on it reach this one by its name and by `aliases`.
    Named {
        /// Network name or id.
        name: String,
        /// Extra DNS names on that network.
        aliases: Vec<String>,
    },
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Docker's spelling (`tcp` / `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A container port published on `127.0.0.1` of the host (or on the
/// address a cluster agent advertises, see [`ContainerSpec::publish_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPublish {
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the host address; `0` lets the engine pick a free one (read
    /// it back with [`crate::Runtime::host_port`]).
    pub host_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address it binds; `None` is [`PUBLISH_HOST_IP`].
    pub host_ip: Option<std::net::IpAddr>,
}

impl PortPublish {
    /// Docker's key for the container side, e.g. `8080/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol.as_str())
    }
}

/// Resource limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes (swap is disabled for limited containers, so
    /// exceeding it triggers the OOM killer instead of swapping).
    pub memory_bytes: Option<i64>,
    /// CPU quota in billionths of a CPU (1_000_000_000 = one core).
    pub nano_cpus: Option<i64>,
    /// Maximum number of processes/threads in the container.
    pub pids_limit: Option<i64>,
}

/// Security settings of a container.
///
/// The default drops all capabilities and forbids privilege escalation but
/// keeps a writable root filesystem and networking, which suits CI steps and
/// app replicas; [`Security::sandbox`] also makes the rootfs read-only and
/// removes the network, for untrusted code execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// Mount the image's filesystem read-only (add tmpfs mounts for scratch space).
    pub read_only_rootfs: bool,
    /// Drop every Linux capability (`--cap-drop ALL`).
    pub cap_drop_all: bool,
    /// Capabilities to keep/add back, e.g. `NET_BIND_SERVICE`.
    pub cap_add: Vec<String>,
    /// Set `no-new-privileges` so setuid binaries cannot gain privileges.
    pub no_new_privileges: bool,
    /// Disable networking entirely (only loopback exists).
    pub network_disabled: bool,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            read_only_rootfs: false,
            cap_drop_all: true,
            cap_add: Vec::new(),
            no_new_privileges: true,
            network_disabled: false,
        }
    }
}

/// Capabilities a stack service keeps (all others dropped): what common
/// images' entrypoints need to prepare their data directory as root and
/// then drop to their own user (PostgreSQL, Redis), and to bind port 80.
pub const SERVICE_CAPS: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETUID",
    "SETGID",
    "NET_BIND_SERVICE",
];

impl Security {
    /// The profile of a stack's service: the default, with
    /// [`SERVICE_CAPS`] kept (the same on one node and on agents).
    pub fn service() -> Self {
        Security {
            cap_add: SERVICE_CAPS.iter().map(|c| c.to_string()).collect(),
            ..Security::default()
        }
    }

    /// The strictest profile: read-only rootfs, no capabilities, no new
    /// privileges, no network. Used for sandboxed code execution.
    pub fn sandbox() -> Self {
        Security {
            read_only_rootfs: true,
            cap_drop_all: true,
            cap_add: Vec::new(),
            no_new_privileges: true,
            network_disabled: true,
        }
    }

    /// Docker's own defaults (default capability set, writable rootfs,
    /// network on). For trusted workloads that need e.g. `chown` as root.
    pub fn permissive() -> Self {
        Security {
            read_only_rootfs: false,
            cap_drop_all: false,
            cap_add: Vec::new(),
            no_new_privileges: false,
            network_disabled: false,
        }
    }
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name (None = engine-generated). Names must be unique.
    pub name: Option<String>,
    /// Local image reference, e.g. `slipway/busybox:latest`.
    pub image: String,
    /// Command (replaces the image's CMD).
    pub cmd: Option<Vec<String>>,
    /// Entrypoint (replaces the image's ENTRYPOINT).
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub working_dir: Option<String>,
    /// User, `name`, `uid` or `uid:gid`.
    pub user: Option<String>,
    /// Hostname inside the container.
    pub hostname: Option<String>,
    /// Volumes, binds and tmpfs mounts.
    pub mounts: Vec<Mount>,
    /// Which network to join.
    pub network: NetworkMode,
    /// Ports published on 127.0.0.1.
    pub ports: Vec<PortPublish>,
    /// Caller labels; `io.slipway.managed=true` is always added.
    pub labels: HashMap<String, String>,
    /// Memory, CPU and process limits.
    pub resources: Resources,
    /// Capabilities, read-only rootfs, network switch.
    pub security: Security,
    /// Run a tiny init (docker-init) as PID 1 so zombies are reaped and signals forwarded.
    pub init: bool,
    /// A health check the engine runs inside the container (its state is
    /// [`crate::ContainerState::health`]).
    pub healthcheck: Option<HealthCheck>,
}

/// A command the engine runs inside a container to tell whether it is
/// healthy (Compose's `healthcheck`, Docker's `HEALTHCHECK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `["CMD", prog, args…]` or `["CMD-SHELL", "command line"]`.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: std::time::Duration,
    /// Time allowed for one check.
    pub timeout: std::time::Duration,
    /// Consecutive failures before the container is unhealthy.
    pub retries: u32,
    /// Time after start during which failures do not count.
    pub start_period: std::time::Duration,
}

impl ContainerSpec {
    /// A spec for `image` with default (hardened) security and no limits.
    pub fn new(image: impl Into<String>) -> Self {
        ContainerSpec {
            image: image.into(),
            ..Default::default()
        }
    }

    /// Set the container name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Set the command.
    pub fn cmd<I, S>(mut self, cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Run `script` with `/bin/sh -c` (the common case for CI steps).
    pub fn shell(self, script: impl Into<String>) -> Self {
        self.cmd(["/bin/sh".to_string(), "-c".to_string(), script.into()])
    }

    /// Set the entrypoint.
    pub fn entrypoint<I, S>(mut self, entrypoint: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Add an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Set the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Set the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Add a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Mount a named volume at `target`.
    pub fn volume(self, name: impl Into<String>, target: impl Into<String>) -> Self {
        self.mount(Mount::Volume {
            name: name.into(),
            target: target.into(),
            read_only: false,
        })
    }

    /// Bind-mount a host path at `target`.
    pub fn bind(
        self,
        source: impl Into<PathBuf>,
        target: impl Into<String>,
        read_only: bool,
    ) -> Self {
        self.mount(Mount::Bind {
            source: source.into(),
            target: target.into(),
            read_only,
        })
    }

    /// Mount a tmpfs at `target`, limited to `size_bytes` if given.
    pub fn tmpfs(self, target: impl Into<String>, size_bytes: Option<i64>) -> Self {
        self.mount(Mount::Tmpfs {
            target: target.into(),
            size_bytes,
            mode: None,
        })
    }

    /// Choose the network.
    pub fn network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }

    /// Publish a TCP `container_port` on 127.0.0.1:`host_port` (0 = auto-assign).
    pub fn publish(mut self, container_port: u16, host_port: u16) -> Self {
        self.ports.push(PortPublish {
            container_port,
            host_port,
            protocol: Protocol::Tcp,
            host_ip: None,
        });
        self
    }

    /// Publish a TCP `container_port` on `ip`:`host_port` (0 = auto-assign):
    /// a cluster agent's replicas are reached by the proxies of every server
    /// on the node's advertised address.
    pub fn publish_on(mut self, ip: std::net::IpAddr, container_port: u16, host_port: u16) -> Self {
        self.ports.push(PortPublish {
            container_port,
            host_port,
            protocol: Protocol::Tcp,
            host_ip: Some(ip),
        });
        self
    }

    /// Add a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Limit memory in bytes.
    pub fn memory(mut self, bytes: i64) -> Self {
        self.resources.memory_bytes = Some(bytes);
        self
    }

    /// Limit CPU in billionths of a core.
    pub fn nano_cpus(mut self, nano_cpus: i64) -> Self {
        self.resources.nano_cpus = Some(nano_cpus);
        self
    }

    /// Limit memory and CPU where given (`None` leaves that limit unset).
    pub fn limits(mut self, memory_bytes: Option<i64>, nano_cpus: Option<i64>) -> Self {
        if memory_bytes.is_some() {
            self.resources.memory_bytes = memory_bytes;
        }
        if nano_cpus.is_some() {
            self.resources.nano_cpus = nano_cpus;
        }
        self
    }

    /// Limit the number of processes.
    pub fn pids_limit(mut self, pids: i64) -> Self {
        self.resources.pids_limit = Some(pids);
        self
    }

    /// Set the health check the engine runs.
    pub fn healthcheck(mut self, check: HealthCheck) -> Self {
        self.healthcheck = Some(check);
        self
    }

    /// Replace the security settings.
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Check the spec for contradictions the engine would report less clearly.
    pub fn validate(&self) -> Result<()> {
        if self.image.trim().is_empty() {
            return Err(RuntimeError::InvalidSpec("image is empty".into()));
        }
        let offline = self.security.network_disabled || self.network == NetworkMode::None;
        if offline && !self.ports.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "ports are published but the network is disabled".into(),
            ));
        }
        if self.security.network_disabled && matches!(self.network, NetworkMode::Named { .. }) {
            return Err(RuntimeError::InvalidSpec(
                "a named network is set but security.network_disabled is true".into(),
            ));
        }
        for m in &self.mounts {
            if !m.target().starts_with('/') {
                return Err(RuntimeError::InvalidSpec(format!(
                    "mount target `{}` must be an absolute path",
                    m.target()
                )));
            }
            if let Mount::Bind { source, .. } = m {
                if !source.is_absolute() {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "bind source `{}` must be an absolute host path",
                        source.display()
                    )));
                }
            }
        }
        for (k, _) in &self.env {
            if k.is_empty() || k.contains('=') {
                return Err(RuntimeError::InvalidSpec(format!(
                    "environment variable name `{k}` is empty or contains `=`"
                )));
            }
        }
        Ok(())
    }

    /// The Docker Engine create request for this spec.
    pub fn to_config(&self) -> Result<Config<String>> {
        self.validate()?;
        let offline = self.security.network_disabled || self.network == NetworkMode::None;

        let mut port_bindings = HashMap::new();
        let mut exposed = HashMap::new();
        for p in &self.ports {
            exposed.insert(p.key(), HashMap::new());
            port_bindings
                .entry(p.key())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(
                        p.host_ip
                            .map_or_else(|| PUBLISH_HOST_IP.to_string(), |ip| ip.to_string()),
                    ),
                    host_port: Some(if p.host_port == 0 {
                        String::new()
                    } else {
                        p.host_port.to_string()
                    }),
                });
        }

        let network_mode = if offline {
            "none".to_string()
        } else {
            match &self.network {
                NetworkMode::Bridge => "bridge".to_string(),
                NetworkMode::None => "none".to_string(),
                NetworkMode::Named { name, .. } => name.clone(),
            }
        };
        let networking_config = match (&self.network, offline) {
            (NetworkMode::Named { name, aliases }, false) => Some(NetworkingConfig {
                endpoints_config: HashMap::from([(
                    name.clone(),
                    EndpointSettings {
                        aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                        ..Default::default()
                    },
                )]),
            }),
            _ => None,
        };

        let sec = &self.security;
        let host_config = HostConfig {
            memory: self.resources.memory_bytes,
            // Same value as memory: no swap, so the limit is hard and OOM is observable.
            memory_swap: self.resources.memory_bytes,
            nano_cpus: self.resources.nano_cpus,
            pids_limit: self.resources.pids_limit,
            mounts: (!self.mounts.is_empty())
                .then(|| self.mounts.iter().map(Mount::to_docker).collect()),
            network_mode: Some(network_mode),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            readonly_rootfs: Some(sec.read_only_rootfs),
            cap_drop: sec.cap_drop_all.then(|| vec!["ALL".to_string()]),
            cap_add: (!sec.cap_add.is_empty()).then(|| sec.cap_add.clone()),
            security_opt: sec
                .no_new_privileges
                .then(|| vec!["no-new-privileges:true".to_string()]),
            init: self.init.then_some(true),
            ..Default::default()
        };

        Ok(Config {
            image: Some(self.image.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: (!self.env.is_empty())
                .then(|| self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            labels: Some(labels::with_managed(&self.labels)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            network_disabled: sec.network_disabled.then_some(true),
            host_config: Some(host_config),
            networking_config,
            healthcheck: self.healthcheck.as_ref().map(|h| {
                let ns = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
                bollard::models::HealthConfig {
                    test: Some(h.test.clone()),
                    // The engine refuses intervals under 1 ms; 0 means its default.
                    interval: Some(ns(h.interval)),
                    timeout: Some(ns(h.timeout)),
                    retries: Some(i64::from(h.retries)),
                    start_period: Some(ns(h.start_period)),
                    start_interval: None,
                }
            }),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_bind_to_loopback_only_and_labels_are_managed() {
        let cfg = ContainerSpec::new("slipway/busybox:latest")
            .publish(8080, 0)
            .label("io.slipway.owner", "ci")
            .to_config()
            .unwrap();
        let hc = cfg.host_config.unwrap();
        let b = &hc.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.host_port.as_deref(), Some(""));
        assert_eq!(cfg.labels.unwrap()[labels::MANAGED], "true");
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        let on = ContainerSpec::new("x")
            .publish_on([10, 0, 0, 7].into(), 8080, 0)
            .to_config()
            .unwrap();
        let b = &on.host_config.unwrap().port_bindings.unwrap()["8080/tcp"]
            .clone()
            .unwrap()[0];
        assert_eq!(b.host_ip.as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn contradictions_are_rejected() {
        let err = ContainerSpec::new("x")
            .security(Security::sandbox())
            .publish(80, 0)
            .to_config()
            .unwrap_err();
        assert!(err.to_string().contains("network is disabled"));
        assert!(ContainerSpec::new(" ").validate().is_err());
        assert!(ContainerSpec::new("x")
            .tmpfs("tmp", None)
            .validate()
            .is_err());
    }
}
