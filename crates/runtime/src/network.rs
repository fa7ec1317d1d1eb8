//! Labelled user-defined networks and named volumes.
//!
//! Networks give app replicas and CI service containers DNS names for each
//! other; volumes keep data (caches, databases) across container restarts.

use std::collections::HashMap;

use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use bollard::volume::{CreateVolumeOptions, ListVolumesOptions, RemoveVolumeOptions};

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

impl Runtime {
    /// Create a bridge network named `name` with `io.slipway.managed=true`
    /// plus `labels`; `internal` networks have no route to the outside.
    /// Returns the network id.
    pub async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
    ) -> Result<String> {
        let resp = self
            .docker
            .create_network(CreateNetworkOptions {
                name: name.to_string(),
                check_duplicate: true,
                driver: "bridge".to_string(),
                internal,
                labels: labels::with_managed(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                RuntimeError::from_docker(e, format!("creating network `{name}`"), "network", name)
            })?;
        Ok(resp.id)
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
