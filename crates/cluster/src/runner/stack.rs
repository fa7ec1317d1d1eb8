//! What makes an agent's replica a service of a stack: its network (one per
//! stack on the node, where the forwarder's endpoints carry the services'
//! names), its ports, mounts and engine health check, and the one-off
//! tasks that run once per revision.

use crate::model::{StackMember, TemplateMount};
use slipway_runtime::images::RegistryAuth;
use slipway_runtime::{ContainerSpec, ContainerState, HealthCheck, Mount, Runtime};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Size of a service's tmpfs mounts.
const TMPFS_BYTES: i64 = 256 << 20;

/// The network of stack `app` on `node`: its services' replicas and the
/// forwarder's endpoints (one per service, under the service's name).
pub fn network_name(node: &str, app: &str) -> String {
    format!("slipway-{node}-stack-{app}-net")
}

/// The Docker volume of named volume `volume` of stack `app` on `node`.
pub fn volume_name(node: &str, app: &str, volume: &str) -> String {
    format!("slipway-{node}-{app}-{volume}")
}

/// Makes the stack's network exist on this node.
pub async fn ensure_network(rt: &Runtime, node: &str, app: &str) -> Result<String, String> {
    let name = network_name(node, app);
    rt.ensure_network(&name, &super::node_labels(node, app))
        .await
        .map_err(|e| format!("the stack's network: {e}"))?;
    Ok(name)
}

/// Makes the service's named volumes exist on this node, labelled with
/// the node, the stack and the volume (what `docker volume ls` shows).
pub async fn ensure_volumes(rt: &Runtime, node: &str, m: &StackMember) -> Result<(), String> {
    for v in m.mounts.iter().filter_map(|t| t.volume.as_deref()) {
        let mut labels = super::node_labels(node, &m.app);
        labels.insert(VOLUME_LABEL.to_string(), v.to_string());
        rt.create_volume(&volume_name(node, &m.app, v), &labels)
            .await
            .map_err(|e| format!("volume {v}: {e}"))?;
    }
    Ok(())
}

/// The stack volume a Docker volume holds.
pub const VOLUME_LABEL: &str = "io.slipway.volume";

/// Adds a stack service's settings to a replica's container: every port
/// published on the node's address, entrypoint, user, working directory,
/// mounts and the engine health check.
pub fn apply(mut c: ContainerSpec, node: &str, m: &StackMember, address: IpAddr) -> ContainerSpec {
    c = c
        .env("SLIPWAY_SERVICE", &m.service)
        .label("io.slipway.service", &m.service)
        .security(slipway_runtime::Security::service());
    for p in &m.ports {
        c = c.publish_on(address, *p, 0);
    }
    for p in &m.publish {
        c.ports.push(slipway_runtime::PortPublish {
            container_port: p.container,
            host_port: p.host,
            protocol: if p.udp {
                slipway_runtime::Protocol::Udp
            } else {
                slipway_runtime::Protocol::Tcp
            },
            host_ip: Some(address),
        });
    }
    if let Some(ep) = &m.entrypoint {
        c = c.entrypoint(ep.clone());
    }
    if let Some(u) = &m.user {
        c = c.user(u);
    }
    if let Some(w) = &m.working_dir {
        c = c.working_dir(w);
    }
    for TemplateMount {
        volume,
        repo,
        target,
        read_only,
    } in &m.mounts
    {
        c = match (volume, repo) {
            (Some(v), _) => c.mount(Mount::Volume {
                name: volume_name(node, &m.app, v),
                target: target.clone(),
                read_only: *read_only,
            }),
            // Bound by `bind_files` once the files are on the node.
            (None, Some(_)) => c,
            (None, None) => c.tmpfs(target, Some(TMPFS_BYTES)),
        };
    }
    if let Some(h) = &m.healthcheck {
        c = c.healthcheck(HealthCheck {
            test: h.test.clone(),
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
            retries: h.retries,
            start_period: Duration::from_millis(h.start_period_ms),
        });
    }
    c
}

/// The host port the proxies reach a service's replica on: its
/// template's `port`, else its first published one.
pub fn route_port(ports: &BTreeMap<u16, u16>, port: u16) -> Option<u16> {
    ports.get(&port).or(ports.values().next()).copied()
}

/// The published ports of a container: container port → host port.
pub fn published(state: &ContainerState) -> BTreeMap<u16, u16> {
    state
        .ports
        .iter()
        .filter_map(|p| {
            let (port, proto) = p.container_port.split_once('/')?;
            (proto == "tcp").then_some(())?;
            Some((port.parse().ok()?, p.host_port))
        })
        .collect()
}

/// Whether a running service replica is healthy: the engine's health
/// check passed, or it has none.
pub fn healthy(m: &StackMember, state: &ContainerState) -> bool {
    state.running && (m.healthcheck.is_none() || state.health.as_deref() == Some("healthy"))
}

/// What a finished one-off task's report says: `completed`, or `failed`
/// with its exit code.
pub fn task_outcome(state: &ContainerState) -> (&'static str, String) {
    match state.exit_code {
        Some(0) => ("completed", "the task exited 0".to_string()),
        Some(code) if state.oom_killed => (
            "failed",
            format!("the task was killed at its memory limit (exit code {code})"),
        ),
        Some(code) => ("failed", format!("the task exited with code {code}")),
        None => ("failed", "the task ended without an exit code".to_string()),
    }
}

/// Largest tar of a stack's files an agent accepts.
pub const MAX_FILES_BYTES: u64 = 64 << 20;

/// Where the files of `app`'s commit `sha` are kept on this node.
pub fn files_dir(root: &Path, app: &str, sha: &str) -> PathBuf {
    root.join(app).join(sha)
}

/// Makes the directories of the deployed commit that `m` bind-mounts
/// exist on this node (fetched once per commit from the server that built
/// the release, unpacked next to their final place, then renamed into it).
pub async fn ensure_files(
    m: &StackMember,
    root: &Path,
    auth: Option<&RegistryAuth>,
) -> Result<(), String> {
    let Some(files) = &m.files else {
        return Ok(());
    };
    let dest = files_dir(root, &m.app, &files.sha);
    if tokio::fs::metadata(&dest).await.is_ok() {
        return Ok(());
    }
    let failed = |why: String| {
        format!(
            "fetching the files of {} at {} from {} failed: {why}",
            m.app,
            &files.sha[..files.sha.len().min(12)],
            files.server
        )
    };
    let url = format!(
        "{}/api/v1/cluster/apps/{}/files/{}",
        files.server, m.app, files.sha
    );
    let body = super::node_get(&url, auth, MAX_FILES_BYTES, Duration::from_secs(60))
        .await
        .map_err(failed)?;
    let partial = dest.with_extension(format!("part-{}", hex::encode(rand::random::<[u8; 4]>())));
    let unpack_to = partial.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&unpack_to)?;
        // `unpack` keeps every entry inside the directory (no `..`, no
        // absolute paths).
        tar::Archive::new(&body[..]).unpack(&unpack_to)
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(format!("unpacking: {e}")))?;
    if let Err(e) = tokio::fs::rename(&partial, &dest).await {
        let _ = tokio::fs::remove_dir_all(&partial).await;
        // Another start of the same commit won the race: its copy serves.
        if tokio::fs::metadata(&dest).await.is_err() {
            return Err(failed(e.to_string()));
        }
    }
    Ok(())
}

/// Bind-mounts the service's directories of the deployed commit, read-only.
pub fn bind_files(mut c: ContainerSpec, m: &StackMember, root: &Path) -> ContainerSpec {
    let Some(files) = &m.files else {
        return c;
    };
    for t in &m.mounts {
        if let (None, Some(dir)) = (&t.volume, &t.repo) {
            c = c.bind(
                files_dir(root, &m.app, &files.sha).join(dir),
                &t.target,
                true,
            );
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_runtime::PublishedPort;

    fn state(running: bool, health: Option<&str>, exit: Option<i64>) -> ContainerState {
        ContainerState {
            id: "c".into(),
            name: "n".into(),
            status: "running".into(),
            running,
            exit_code: exit,
            oom_killed: false,
            error: None,
            labels: std::collections::HashMap::new(),
            ports: vec![
                PublishedPort {
                    container_port: "5432/tcp".into(),
                    host_port: 40001,
                    host_ip: "127.0.0.1".into(),
                },
                PublishedPort {
                    container_port: "53/udp".into(),
                    host_port: 40002,
                    host_ip: "127.0.0.1".into(),
                },
            ],
            pid: Some(7),
            health: health.map(str::to_string),
        }
    }

    #[test]
    fn health_ports_and_task_outcomes() {
        let mut m = StackMember::default();
        assert!(healthy(&m, &state(true, None, None)));
        assert!(!healthy(&m, &state(false, None, Some(0))));
        m.healthcheck = Some(crate::model::TemplateHealth {
            test: vec!["CMD".into(), "true".into()],
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 3,
            start_period_ms: 0,
        });
        assert!(!healthy(&m, &state(true, Some("starting"), None)));
        assert!(healthy(&m, &state(true, Some("healthy"), None)));
        assert_eq!(
            published(&state(true, None, None)),
            BTreeMap::from([(5432, 40001)])
        );
        assert_eq!(task_outcome(&state(false, None, Some(0))).0, "completed");
        let (s, why) = task_outcome(&state(false, None, Some(3)));
        assert_eq!((s, why.as_str()), ("failed", "the task exited with code 3"));
    }
}
