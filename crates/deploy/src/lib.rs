//! Slipway's continuous deployment.
//!
//! An app's desired state lives in the store: its [`AppSpec`] (replicas,
//! port, health check, environment…) and the number of the release that
//! should run. The [`Deployer`] makes the Docker Engine match it, Kubernetes
//! controller style: one reconcile task per app compares desired and actual
//! replicas and acts — start new replicas, wait until their health check
//! passes, put them in the proxy's route table, drain and stop old ones — and
//! runs again whenever something changes (an API call, a new release, a
//! container dying, a periodic resync). Every step is idempotent, and the
//! actual state is read back from the engine (containers carry labels), so a
//! restarted server adopts the replicas it finds.
//!
//! The built-in proxy ([`slipway_proxy::Proxy`]) is owned here: routes are
//! rebuilt from the healthy replicas each time they change.

#![warn(missing_docs)]

mod cluster_demand;
mod cluster_routes;
mod cluster_stack;
mod cluster_view;
mod collector;
mod logs;
mod probe;
mod reconcile;
mod replica;
mod routes;
mod run;
mod service;
mod stack;
mod stack_view;
mod volumes;

pub use cluster_demand::{
    cluster_image, registry_host, ClusterFiles, ClusterSecrets, DEFAULT_CPU_MILLIS,
    DEFAULT_MEMORY_MB, PULL_ALLOWANCE,
};
pub use replica::{ReplicaState, ReplicaView, REPLICA_PIDS_LIMIT};
pub use run::{OneOff, RUN_LABEL};
pub use service::ConfigChange;
pub use slipway_logs::{Direction, LogRecord, LogStore, Query, Retention, Stream as LogStream};
pub use stack::{SERVICE_HASH_LABEL, SERVICE_LABEL, TASK_LABEL, VOLUME_LABEL};
pub use stack_view::ServiceView;
pub use volumes::{VolumeRestore, VolumeView};

use slipway_auth::secrets::SecretBox;
use slipway_domain::{AppRecord, ReleaseRecord};
use slipway_proxy::{Proxy, ProxyConfig};
use slipway_runtime::Runtime;
use slipway_store::{Store, StoreError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// Label carrying the server instance that owns a replica, so servers
/// sharing one Docker Engine never touch each other's replicas.
pub const INSTANCE_LABEL: &str = "io.slipway.deploy-instance";
/// Label carrying the app id of a replica.
pub const APP_ID_LABEL: &str = "io.slipway.app-id";
/// Label carrying the release number a replica runs.
pub const RELEASE_LABEL: &str = "io.slipway.release";

/// The release number a container's labels carry (0 when absent).
pub(crate) fn release_label(labels: &HashMap<String, String>) -> i64 {
    labels
        .get(RELEASE_LABEL)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
/// The actor of scale changes made by the autoscaler (`crates/autoscale`),
/// which records its own, richer app events.
pub const AUTOSCALER: &str = "autoscaler";

/// How the deploy service is set up by the server.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The server's data directory (the app secrets key lives there).
    pub data_dir: PathBuf,
    /// Apps without domains answer `<app>.<apps_domain>`.
    pub apps_domain: String,
    /// Releases whose images are kept (older images are removed).
    pub releases_kept: usize,
    /// How much of each app's log is kept on disk (`<data_dir>/logs/apps`).
    pub app_logs: Retention,
    /// Default and maximum memory/CPU of a replica.
    pub limits: slipway_domain::LimitPolicy,
}

/// Replica limits when the server sets none: 512 MiB and 1 CPU by default,
/// at most 4 GiB and 4 CPUs.
pub const DEFAULT_APP_LIMITS: slipway_domain::LimitPolicy = slipway_domain::LimitPolicy {
    default_memory_bytes: 512 << 20,
    max_memory_bytes: 4 << 30,
    default_nano_cpus: 1_000_000_000,
    max_nano_cpus: 4_000_000_000,
    pids: replica::REPLICA_PIDS_LIMIT,
};

/// Why a deploy operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The request is invalid; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The operation does not fit the app's state.
    #[error("{0}")]
    State(String),
    /// Something does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A body is larger than the server accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The secret key could not be used.
    #[error("{0}")]
    Secret(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The deploy service: releases, replicas and the proxy's routes. Cheap to
/// clone; every clone shares one set of reconcile tasks.
#[derive(Clone)]
pub struct Deployer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    options: DeployOptions,
    proxy: Proxy,
    runtime: OnceLock<Runtime>,
    instance: OnceLock<String>,
    /// Per app: the replicas this server runs and the reconcile task's state.
    apps: Mutex<HashMap<i64, replica::AppReplicas>>,
    /// Per app: the wake-up of its reconcile task.
    wakers: Mutex<HashMap<i64, Arc<Notify>>>,
    /// Signalled when any release changes state (waiters re-check).
    release_changed: Notify,
    /// Serialises route table rebuilds.
    routes_lock: Mutex<()>,
    /// Public base of the proxy (`http://host:port`) for app URLs.
    proxy_base: Mutex<Option<(String, u16)>>,
    secret_box: OnceLock<SecretBox>,
    registry: OnceLock<slipway_registry::Registry>,
    /// Every app's stored logs.
    logs: LogStore,
    /// The log followers of the running replicas.
    collectors: collector::Collectors,
    /// The cluster state (cluster mode only).
    cluster: OnceLock<slipway_cluster::ClusterStore>,
    /// Routes to the healthy replicas agents run on every node (cluster mode).
    cluster_routes: Mutex<Vec<cluster_routes::ClusterRoute>>,
    /// Cluster mode: demands, assignments and reports of every node.
    cluster_view: Mutex<cluster_view::View>,
    /// Demands, rollouts and replica reports (cluster mode).
    cluster_deploy: cluster_demand::ClusterDeploy,
}

impl Deployer {
    /// A deploy service on `store`; nothing runs until [`Deployer::start`].
    pub fn new(store: Store, options: DeployOptions) -> Self {
        let proxy = Proxy::new(ProxyConfig::default());
        let logs = LogStore::new(options.data_dir.join("logs").join("apps"), options.app_logs);
        Deployer {
            inner: Arc::new(Inner {
                store,
                options,
                proxy,
                runtime: OnceLock::new(),
                instance: OnceLock::new(),
                apps: Mutex::new(HashMap::new()),
                wakers: Mutex::new(HashMap::new()),
                release_changed: Notify::new(),
                routes_lock: Mutex::new(()),
                proxy_base: Mutex::new(None),
                secret_box: OnceLock::new(),
                registry: OnceLock::new(),
                logs,
                collectors: Default::default(),
                cluster: OnceLock::new(),
                cluster_routes: Mutex::new(Vec::new()),
                cluster_view: Default::default(),
                cluster_deploy: Default::default(),
            }),
        }
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The built-in reverse proxy (the server serves it on its own listener).
    pub fn proxy(&self) -> &Proxy {
        &self.inner.proxy
    }

    /// Enters cluster mode (once, at start-up): the proxy also routes to
    /// the healthy replicas agents run on every node, kept current by a
    /// watch of the cluster state. Must run inside a Tokio runtime.
    pub fn set_cluster(&self, store: slipway_cluster::ClusterStore) {
        if self.inner.cluster.set(store.clone()).is_ok() {
            // One follower feeds the proxy's routes and release readiness.
            cluster_view::start(self.clone(), store);
        }
    }

    /// The cluster state, in cluster mode.
    pub fn cluster(&self) -> Option<&slipway_cluster::ClusterStore> {
        self.inner.cluster.get()
    }

    /// Connects the embedded registry that keeps every released image.
    pub fn set_registry(&self, registry: slipway_registry::Registry) {
        let _ = self.inner.registry.set(registry);
    }

    /// Copies the freshly built local image `tag` into the embedded registry
    /// as `<owner>/<app>:<tag's tag part>` (so other nodes and `docker pull`
    /// can fetch it) and drops the registry tags beyond the kept releases.
    /// Returns the registry reference.
    pub async fn publish_image(
        &self,
        app: &AppRecord,
        owner: &str,
        tag: &str,
    ) -> Result<String, String> {
        let registry = self
            .inner
            .registry
            .get()
            .ok_or("no registry is configured")?;
        let rt = self.runtime().ok_or("the Docker Engine is not connected")?;
        let repo = format!("{owner}/{}", app.name);
        let version = tag.rsplit_once(':').map_or("latest", |(_, t)| t);
        slipway_registry::import_from_docker(registry, rt, tag, &repo, version)
            .await
            .map_err(|e| format!("storing the image in the registry failed: {e}"))?;
        self.retain_images(&repo);
        Ok(format!("{repo}:{version}"))
    }

    /// Keeps the newest `releases_kept` images of registry repository
    /// `repo` and collects what the older ones alone held (in the background).
    pub(crate) fn retain_images(&self, repo: &str) {
        let Some(registry) = self.inner.registry.get().cloned() else {
            return;
        };
        let keep = self.inner.options.releases_kept.max(1);
        let repo = repo.to_string();
        tokio::spawn(async move {
            match registry.retain(&repo, keep).await {
                Ok(dropped) if !dropped.is_empty() => {
                    if let Err(e) = registry.gc().await {
                        tracing::warn!(error = %e, "registry garbage collection failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(repo = %repo, error = %e, "registry retention failed"),
            }
        });
    }

    /// Records where the proxy listens, for the URLs shown to users.
    pub fn set_proxy_address(&self, scheme: &str, port: u16) {
        *self.inner.proxy_base.lock().unwrap() = Some((scheme.to_string(), port));
    }

    /// Host names an app answers on.
    pub fn hosts(&self, app: &AppRecord) -> Vec<String> {
        if app.spec.domains.is_empty() {
            vec![format!("{}.{}", app.name, self.inner.options.apps_domain)]
        } else {
            app.spec.domains.clone()
        }
    }

    /// Refuses per-replica memory or CPU over the server's maximum (the
    /// message says what the maximum is).
    pub fn check_limits(&self, spec: &slipway_domain::AppSpec) -> Result<(), DeployError> {
        self.inner
            .options
            .limits
            .resolve(spec.resources(), "per replica")
            .map(|_| ())
            .map_err(DeployError::Invalid)
    }

    /// The memory and CPU limits replicas of `spec` run with.
    pub fn replica_limits(&self, spec: &slipway_domain::AppSpec) -> slipway_domain::Resources {
        self.inner.options.limits.clamp(spec.resources())
    }

    /// The URL users open for an app (through the proxy).
    pub fn url(&self, app: &AppRecord) -> Option<String> {
        let (scheme, port) = self.inner.proxy_base.lock().unwrap().clone()?;
        let host = self.hosts(app).into_iter().next()?;
        let host = host
            .strip_prefix("*.")
            .map_or(host.clone(), |h| format!("www.{h}"));
        let default = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
        Some(if default {
            format!("{scheme}://{host}/")
        } else {
            format!("{scheme}://{host}:{port}/")
        })
    }

    /// Starts the reconcile machinery on `rt`: adopts the replicas found in
    /// the engine, watches container deaths, resyncs periodically.
    pub async fn start(&self, rt: Runtime) -> Result<(), String> {
        let instance = self.load_instance().await.map_err(|e| e.to_string())?;
        let _ = self.inner.instance.set(instance);
        let _ = self.inner.runtime.set(rt);
        self.remove_logs_of_deleted_apps();
        reconcile::start(self.clone());
        Ok(())
    }

    /// Whether [`Deployer::start`] ran (Docker answered).
    pub fn is_running(&self) -> bool {
        self.inner.runtime.get().is_some()
    }

    /// Asks the reconcile task of `app_id` to run soon.
    pub fn wake(&self, app_id: i64) {
        // Cluster mode reconciles without the local engine (it writes demands).
        if self.inner.runtime.get().is_none() && self.cluster().is_none() {
            return;
        }
        let notify = {
            let mut wakers = self.inner.wakers.lock().unwrap();
            match wakers.get(&app_id) {
                Some(n) => n.clone(),
                None => {
                    let n = Arc::new(Notify::new());
                    wakers.insert(app_id, n.clone());
                    reconcile::spawn_app_task(self.clone(), app_id, n.clone());
                    n
                }
            }
        };
        notify.notify_one();
    }

    /// The replicas of an app as this server sees them (in cluster mode:
    /// as the agents of every node report them).
    pub fn replicas(&self, app_id: i64) -> Vec<ReplicaView> {
        if self.cluster().is_some() {
            return self.cluster_views(app_id);
        }
        self.inner
            .apps
            .lock()
            .unwrap()
            .get(&app_id)
            .map(|a| a.views())
            .unwrap_or_default()
    }

    /// How many replicas `release` of `app` should have serving: the
    /// app's replicas, or for a stack every long-running service's (a
    /// `global` service's: one per node it is assigned to, one on a single
    /// node). What the `replica_down` alert compares with [`Self::replicas`].
    pub fn wanted_replicas(&self, app: &AppRecord, release: &ReleaseRecord) -> u32 {
        let Some(stack) = &release.spec.stack else {
            return app.spec.replicas;
        };
        stack
            .services
            .iter()
            .filter(|svc| !svc.is_task(stack))
            .map(|svc| self.service_wanted(app, stack, svc))
            .sum()
    }

    /// Replicas service `svc` of `app`'s stack should run: its scale, or
    /// for a `global` service one per node (on a cluster: per node it is
    /// assigned to).
    pub(crate) fn service_wanted(
        &self,
        app: &AppRecord,
        stack: &slipway_domain::stack::StackSpec,
        svc: &slipway_domain::stack::ServiceSpec,
    ) -> u32 {
        match svc.deploy.mode {
            slipway_domain::stack::DeployMode::Global => match self.cluster() {
                Some(_) => {
                    let name = crate::cluster_stack::member_name(&app.name, &svc.name);
                    let view = self.inner.cluster_view.lock().unwrap();
                    view.nodes_of(&name).len() as u32
                }
                None => 1,
            },
            slipway_domain::stack::DeployMode::Replicated => {
                stack.replicas_of(svc, &app.spec.service_replicas)
            }
        }
    }

    /// The replicas this server runs itself (single-node mode) and the CPU
    /// and memory they request, counted as a cluster node's load is (a
    /// replica without limits requests the defaults): what `slipway node
    /// list` shows for the local node, which otherwise would claim 0.
    pub async fn local_load(&self) -> (usize, slipway_cluster::Resources) {
        let running: Vec<(i64, i64)> = self
            .inner
            .apps
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(app, a)| a.replicas.iter().map(move |r| (*app, r.release)))
            .collect();
        let mut requests: HashMap<(i64, i64), slipway_cluster::Resources> = HashMap::new();
        let mut total = slipway_cluster::Resources::default();
        for key in &running {
            let request = match requests.get(key) {
                Some(r) => *r,
                None => {
                    let r = match self.store().release(key.0, key.1).await {
                        Ok(Some(release)) => cluster_demand::request(&release.spec),
                        _ => slipway_cluster::Resources::default(),
                    };
                    requests.insert(*key, r);
                    r
                }
            };
            total = total.plus(request);
        }
        (running.len(), total)
    }

    /// Replicas of an app restarted after crashes since this server started
    /// (a counter: never goes down).
    pub fn restarts(&self, app_id: i64) -> u32 {
        self.inner
            .apps
            .lock()
            .unwrap()
            .get(&app_id)
            .map_or(0, |a| a.restarts)
    }

    /// Healthy replicas of the release that should run.
    pub fn ready(&self, app: &AppRecord) -> usize {
        if self.cluster().is_some() {
            return self.cluster_ready(app);
        }
        let Some(release) = app.release else {
            return 0;
        };
        self.replicas(app.id)
            .iter()
            .filter(|r| r.release == release && r.state == ReplicaState::Healthy)
            .count()
    }

    fn runtime(&self) -> Option<&Runtime> {
        self.inner.runtime.get()
    }

    fn instance(&self) -> &str {
        self.inner.instance.get().map(String::as_str).unwrap_or("")
    }

    async fn load_instance(&self) -> Result<String, StoreError> {
        if let Some(v) = self.store().setting("deploy.instance").await? {
            return Ok(v);
        }
        let v = hex::encode(rand::random::<[u8; 6]>());
        self.store().set_setting("deploy.instance", &v).await?;
        Ok(v)
    }

    fn secret_box(&self) -> Result<&SecretBox, DeployError> {
        if let Some(b) = self.inner.secret_box.get() {
            return Ok(b);
        }
        let b = SecretBox::load_or_create(&self.inner.options.data_dir.join("app-secrets.key"))
            .map_err(DeployError::Secret)?;
        Ok(self.inner.secret_box.get_or_init(|| b))
    }
}
