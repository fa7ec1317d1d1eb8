//! Named volumes of stack apps: kept across releases, restarts, rollbacks
//! and (unless purged) the app's deletion; listed for `slipway volume ls`.

use crate::stack::VOLUME_LABEL;
use crate::{DeployError, Deployer, APP_ID_LABEL, INSTANCE_LABEL};
use serde::Serialize;
use slipway_domain::AppRecord;
use slipway_runtime::{labels, LabelFilter};
use std::time::Duration;

/// A named volume of an app, as shown to users.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeView {
    /// The name in the Compose file.
    pub name: String,
    /// The Docker volume holding it.
    pub docker_name: String,
}

impl Deployer {
    fn volume_filter(&self, app_id: i64) -> LabelFilter {
        LabelFilter::managed()
            .with(labels::OWNER, "deploy")
            .with(INSTANCE_LABEL, self.instance())
            .with(APP_ID_LABEL, app_id.to_string())
    }

    /// The named volumes of an app's stack that exist on this server.
    pub async fn volumes(&self, app: &AppRecord) -> Result<Vec<VolumeView>, DeployError> {
        let rt = self
            .runtime()
            .ok_or_else(|| DeployError::State("the Docker Engine is not connected".into()))?;
        let found = rt
            .list_volumes(&self.volume_filter(app.id))
            .await
            .map_err(|e| DeployError::State(e.to_string()))?;
        let mut out: Vec<VolumeView> = found
            .into_iter()
            .filter_map(|v| {
                Some(VolumeView {
                    name: v.labels.get(VOLUME_LABEL)?.clone(),
                    docker_name: v.name,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a deleted app's volumes once its containers are gone (they
    /// drain first), giving up after two minutes.
    pub(crate) fn purge_volumes_later(&self, app_id: i64) {
        let Some(rt) = self.runtime().cloned() else {
            return;
        };
        let filter = self.volume_filter(app_id);
        let containers = self.app_filter(app_id);
        tokio::spawn(async move {
            for _ in 0..120 {
                let busy = rt
                    .list_containers(&containers)
                    .await
                    .map(|c| !c.is_empty())
                    .unwrap_or(true);
                if !busy {
                    let mut left = false;
                    for v in rt.list_volumes(&filter).await.unwrap_or_default() {
                        left |= rt.remove_volume(&v.name).await.is_err();
                    }
                    if !left {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tracing::warn!(app_id, "could not remove a deleted app's volumes");
        });
    }
}
