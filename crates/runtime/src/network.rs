//! Labelled user-defined networks and named volumes.
//!
//! Networks give app replicas and CI service containers DNS names for each
//! other; volumes keep data (caches, databases) across container restarts.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig};
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use bollard::volume::{CreateVolumeOptions, ListVolumesOptions, RemoveVolumeOptions};
use ipnet::Ipv4Net;

use crate::error::{Result, RuntimeError};
use crate::labels::{self, LabelFilter};
use crate::Runtime;

/// A network or volume found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// Engine id (networks) or name (volumes, whose name is their id).
    pub id: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
}

/// Where Slipway's networks take their subnets when nothing else is set
/// ([`Runtime::with_network_pool`]): 512 networks of 126 addresses each.
///
/// The engine's own default pools hold about 30 networks (172.17–31/16 and
/// 192.168/16 in /20s); with one network per pipeline and per app, a server
/// with a few dozen apps would run out. Slipway therefore picks each
/// network's subnet itself, from a range of its own.
pub const DEFAULT_NETWORK_POOL: &str = "10.220.0.0/16";
/// Prefix length of each network's subnet (126 usable addresses: more than a
/// pipeline's 60 containers or one app's replicas on one node).
pub const SUBNET_PREFIX_LEN: u8 = 25;

impl Runtime {
    /// This runtime with networks allocated from `pool` (e.g. `10.220.0.0/16`).
    pub fn with_network_pool(mut self, pool: Ipv4Net) -> Self {
        self.network_pool = pool;
        self
    }

    /// Create a bridge network named `name` with `io.slipway.managed=true`
    /// plus `labels`; `internal` networks have no route to the outside.
    /// Its subnet is the first free one of the network pool. Containers on
    /// different networks cannot reach each other (the engine's isolation
    /// rules between bridges). Returns the network id.
    pub async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
    ) -> Result<String> {
        // Engines shared by several servers (and their own other networks)
        // can take a subnet between the listing and the creation: try the
        // next free one then.
        let mut last_error = None;
        for _ in 0..8 {
            let subnet = self.free_subnet().await?;
            let ipam = subnet.map(|net| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(net.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            match self
                .docker
                .create_network(CreateNetworkOptions {
                    name: name.to_string(),
                    check_duplicate: true,
                    driver: "bridge".to_string(),
                    internal,
                    labels: labels::with_managed(labels),
                    ipam: ipam.unwrap_or_default(),
                    options: HashMap::from([(
                        "com.docker.network.bridge.name".to_string(),
                        crate::host_guard::bridge_name(name),
                    )]),
                    ..Default::default()
                })
                .await
            {
                Ok(resp) => return Ok(resp.id),
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                    if subnet.is_some() && message.contains("overlap") =>
                {
                    last_error = Some(message);
                    tokio::time::sleep(std::time::Duration::from_millis(
                        20 + u64::from(rand_byte()),
                    ))
                    .await;
                }
                Err(e) => {
                    return Err(RuntimeError::from_docker(
                        e,
                        format!("creating network `{name}`"),
                        "network",
                        name,
                    ))
                }
            }
        }
        Err(RuntimeError::InvalidSpec(format!(
            "creating network `{name}`: no free subnet in {} ({})",
            self.network_pool,
            last_error.unwrap_or_default()
        )))
    }

    /// Create the network `name` unless it exists (by name); its id either way.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String> {
        if let Ok(n) = self.docker.inspect_network::<String>(name, None).await {
            return Ok(n.id.unwrap_or_default());
        }
        match self.create_network(name, labels, false).await {
            Ok(id) => Ok(id),
            // Created meanwhile by another task.
            Err(e) => match self.docker.inspect_network::<String>(name, None).await {
                Ok(n) => Ok(n.id.unwrap_or_default()),
                Err(_) => Err(e),
            },
        }
    }

    /// The first subnet of the pool that overlaps no existing network
    /// (`None`: the pool is full, let the engine choose).
    async fn free_subnet(&self) -> Result<Option<Ipv4Net>> {
        let networks = self
            .docker
            .list_networks::<String>(None)
            .await
            .map_err(|source| RuntimeError::Docker {
                action: "listing networks".into(),
                source,
            })?;
        let used: Vec<Ipv4Net> = networks
            .iter()
            .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
            .flatten()
            .filter_map(|c| c.subnet.as_deref()?.parse().ok())
            .collect();
        let candidates = self
            .network_pool
            .subnets(SUBNET_PREFIX_LEN.max(self.network_pool.prefix_len()))
            .map_err(|e| RuntimeError::InvalidSpec(format!("network pool: {e}")))?;
        for candidate in candidates {
            let overlaps = used
                .iter()
                .any(|u| u.contains(&candidate.network()) || candidate.contains(&u.network()));
            if !overlaps {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// Remove a network (by name or id). A network that is already gone is not an error.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(RuntimeError::from_docker(
                e,
                format!(
                    "removing network `{name}` (containers still attached must be removed first)"
                ),
                "network",
                name,
            )),
        }
    }

    /// Networks whose labels match `filter`.
    pub async fn list_networks(&self, filter: &LabelFilter) -> Result<Vec<ResourceInfo>> {
        let found = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: filter.to_filters(),
            }))
            .await
            .map_err(|source| RuntimeError::Docker {
                action: "listing networks".into(),
                source,
            })?;
        Ok(found
            .into_iter()
            .map(|n| ResourceInfo {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                labels: n.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// Create a local named volume labelled `io.slipway.managed=true` plus
    /// `labels`. Creating an existing volume returns it unchanged (engine behaviour).
    pub async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        self.docker
            .create_volume(CreateVolumeOptions {
                name: name.to_string(),
                driver: "local".to_string(),
                driver_opts: HashMap::new(),
                labels: labels::with_managed(labels),
            })
            .await
            .map(|_| ())
            .map_err(|e| {
                RuntimeError::from_docker(e, format!("creating volume `{name}`"), "volume", name)
            })
    }

    /// Remove a volume and its data. A volume that is already gone is not an error;
    /// one still used by a container is a [`RuntimeError::Conflict`].
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(RuntimeError::from_docker(
                e,
                format!("removing volume `{name}`"),
                "volume",
                name,
            )),
        }
    }

    /// Volumes whose labels match `filter`.
    pub async fn list_volumes(&self, filter: &LabelFilter) -> Result<Vec<ResourceInfo>> {
        let found = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: filter.to_filters(),
            }))
            .await
            .map_err(|source| RuntimeError::Docker {
                action: "listing volumes".into(),
                source,
            })?;
        Ok(found
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| ResourceInfo {
                id: v.name.clone(),
                name: v.name,
                labels: v.labels,
            })
            .collect())
    }
}

/// A small random number, to spread retries of servers racing for a subnet.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u8
}
