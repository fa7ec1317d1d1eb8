//! Cluster mode of a server: its connection to the cluster state in etcd, its
//! membership (a record under its own lease) and its candidacy for the
//! scheduler's leadership. Started only when `cluster_etcd_endpoints` is set.

use crate::config::Config;
use serde::{Deserialize, Deserializer};
use slipway_cluster::control::{self, LoopOptions};
use slipway_cluster::etcd::{ServerRecord, Session, StoreOptions};
use slipway_cluster::ClusterStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// `cluster_etcd_endpoints` as a TOML list or a comma-separated string (env).
pub fn endpoints_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    let list = match Either::deserialize(d)? {
        Either::One(s) => s.split(',').map(str::to_owned).collect(),
        Either::Many(v) => v,
    };
    Ok(list
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// This server's part in the cluster; cloning shares it.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: ClusterStore,
    server_id: String,
    api_url: String,
    leading: AtomicBool,
    /// The current leadership, to resign it at shutdown.
    leadership: Mutex<Option<slipway_cluster::etcd::Leadership>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// Connects to etcd (failing start-up when no member answers) and starts
    /// membership and the campaign in the background.
    pub async fn start(config: &Config, api_url: String) -> anyhow::Result<Self> {
        for e in &config.cluster_etcd_endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                anyhow::bail!("cluster_etcd_endpoints: {e:?} is not an http:// or https:// URL");
            }
        }
        let mut opts = StoreOptions::new(config.cluster_etcd_endpoints.clone());
        opts.prefix = config.cluster_prefix.clone();
        opts.lease_ttl = Duration::from_millis(config.cluster_lease_ttl_ms.max(1000));
        let store = ClusterStore::connect(opts)
            .await
            .map_err(|e| anyhow::anyhow!("cluster mode: {e} (SLIPWAY_CLUSTER_ETCD_ENDPOINTS)"))?;
        let server_id = server_id(config)?;
        let cluster = Self {
            inner: Arc::new(Inner {
                store,
                server_id,
                api_url,
                leading: AtomicBool::new(false),
                leadership: Mutex::new(None),
                task: std::sync::Mutex::new(None),
            }),
        };
        let task = tokio::spawn(member(cluster.clone()));
        *cluster.inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        tracing::info!(server = %cluster.inner.server_id, "cluster mode: joined through etcd");
        Ok(cluster)
    }

    /// The cluster state.
    pub fn store(&self) -> &ClusterStore {
        &self.inner.store
    }

    /// This server's id.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// Whether this server currently runs the scheduler.
    pub fn is_leader(&self) -> bool {
        self.inner.leading.load(Ordering::SeqCst)
    }

    /// Stops campaigning and hands leadership over at once (graceful shutdown).
    pub async fn shutdown(&self) {
        if let Some(t) = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
        if let Some(l) = self.inner.leadership.lock().await.take() {
            let _ = self.inner.store.resign(&l).await;
        }
        self.inner.leading.store(false, Ordering::SeqCst);
    }
}

/// The configured id, else the one kept in `<data>/cluster-node-id`, else a new one saved there.
fn server_id(config: &Config) -> anyhow::Result<String> {
    if let Some(id) = &config.cluster_node_id {
        if !slipway_cluster::valid_id(id) {
            anyhow::bail!("cluster_node_id {id:?}: use 1-63 of a-z, 0-9 and '-'");
        }
        return Ok(id.clone());
    }
    let path = config.data_dir.join("cluster-node-id");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim();
        if slipway_cluster::valid_id(saved) {
            return Ok(saved.to_owned());
        }
    }
    let id = slipway_cluster::agent::new_node_id().replacen("node-", "server-", 1);
    std::fs::write(&path, &id)?;
    Ok(id)
}

/// Membership and candidacy, forever: a session (lease), the server record
/// under it, a campaign, and the scheduling loop while leading. A lost
/// lease or leadership starts over with a new session.
async fn member(cluster: Cluster) {
    let store = cluster.inner.store.clone();
    let record = ServerRecord {
        id: cluster.inner.server_id.clone(),
        api_url: cluster.inner.api_url.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: chrono::Utc::now(),
    };
    loop {
        let session = match Session::start(&store).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: no etcd session; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Err(e) = store.register_server(&record, session.id()).await {
            tracing::warn!(error = %e, "cluster: cannot register this server; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let leadership = tokio::select! {
            _ = session.lost() => continue,
            l = store.campaign(&session, &record.id) => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: campaign failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        tracing::info!(server = %record.id, "cluster: this server leads the scheduler");
        *cluster.inner.leadership.lock().await = Some(leadership.clone());
        cluster.inner.leading.store(true, Ordering::SeqCst);
        let ended =
            control::run_scheduler(&store, &leadership, LoopOptions::default(), session.lost())
                .await;
        cluster.inner.leading.store(false, Ordering::SeqCst);
        cluster.inner.leadership.lock().await.take();
        tracing::warn!(result = ?ended.err(), "cluster: leadership ended; campaigning again");
        let _ = session.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Knob {
        #[serde(deserialize_with = "endpoints_list")]
        e: Vec<String>,
    }

    #[test]
    fn endpoints_come_as_a_list_or_a_comma_separated_string() {
        let k: Knob = serde_json::from_str(r#"{"e": "http://a:1, http://b:2,"}"#).unwrap();
        assert_eq!(k.e, ["http://a:1", "http://b:2"]);
        let k: Knob = serde_json::from_str(r#"{"e": ["http://a:1"]}"#).unwrap();
        assert_eq!(k.e, ["http://a:1"]);
        let k: Knob = serde_json::from_str(r#"{"e": ""}"#).unwrap();
        assert!(k.e.is_empty());
        assert!(Config::default().cluster_etcd_endpoints.is_empty());
    }
}
