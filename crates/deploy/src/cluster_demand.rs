//! Cluster mode of the deployer: the deployer writes demands; agents pull
//! from the registry.
//!
//! In cluster mode ([`Deployer::set_cluster`]) an app's reconcile run does
//! not start local containers. It writes the app's demand `apps/{app}` —
//! replicas, the CPU/memory request, the proxy's host names and the
//! container template of the release that should run — only when it
//! changed, and deletes it when the app is deleted or has no release. The
//! scheduler places the replicas; each agent pulls the image from this
//! server's registry (`<public host:port>/<owner>/<app>:<tag>`), starts
//! the new revision before it stops the old one, and reports.
//!
//! A release is live when every replica reports `healthy` for its
//! revision (the release number). One that does not get there within the
//! health check's `start_timeout_ms` (+ [`PULL_ALLOWANCE`] for pulling) is
//! marked failed and the app points back at its last active release,
//! whose template is written again: agents kept its containers serving
//! (start before stop), so they simply keep them.
//!
//! Secrets stay out of etcd: a template names them, and the agent fetches
//! the values from this server's API ([`Deployer::cluster_secrets`]) with
//! its node credential when it starts a replica.
//!
//! Replica views (`slipway ps`, `ready`, `status`) come from the agents'
//! reports of every node, as the server's view of the cluster state
//! (`cluster_view`) holds them.

use crate::cluster_view::NodeReplica;
use crate::reconcile::Progress;
use crate::replica::{ReplicaState, ReplicaView};
use crate::Deployer;
use slipway_cluster::{AppDemand, ClusterStore, ContainerTemplate, Resources, SecretSource};
use slipway_domain::{AppRecord, ReleaseRecord, ReleaseStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// CPU reserved per replica when the app sets no `cpus`.
pub const DEFAULT_CPU_MILLIS: u64 = 250;
/// Memory reserved (and the limit) per replica when the app sets no `memory_mb`.
pub const DEFAULT_MEMORY_MB: u64 = 256;
/// Time a rollout may take beyond the health check's `start_timeout_ms`:
/// agents pull the image first.
pub const PULL_ALLOWANCE: Duration = Duration::from_secs(30);
/// How often a rollout in progress is re-checked (reports also wake it).
const ROLLOUT_POLL: Duration = Duration::from_millis(500);

/// The deployer's cluster-mode state.
#[derive(Default)]
pub(crate) struct ClusterDeploy {
    /// `host:port` agents pull release images from (this server's registry).
    pub(crate) registry: OnceLock<String>,
    /// This server's public URL: agents fetch app secrets from its API.
    pub(crate) public_url: OnceLock<String>,
    /// App id → name of the apps whose demands this server wrote (to
    /// delete a demand after its app is gone, and to wake apps by name).
    names: Mutex<HashMap<i64, String>>,
    /// When this server saw each rollout (app id, release) begin.
    rollouts: Mutex<HashMap<(i64, i64), Instant>>,
    /// Stack rollouts (app id, release): services converged, and since when.
    pub(crate) stack_progress: Mutex<HashMap<(i64, i64), (usize, Instant)>>,
}

/// What [`Deployer::cluster_secrets`] answers a node.
#[derive(Debug)]
pub enum ClusterSecrets {
    /// This server deploys no cluster app of that name.
    NoSuchApp,
    /// The node holds no replica of the app.
    NotAssigned,
    /// The secret variables, decrypted.
    Env(HashMap<String, String>),
}

/// What [`Deployer::cluster_files`] answers a node.
#[derive(Debug)]
pub enum ClusterFiles {
    /// This server deploys no cluster app of that name.
    NoSuchApp,
    /// The node holds no replica of the app.
    NotAssigned,
    /// This server has no files of that commit for the app.
    Missing,
    /// The directories the stack bind-mounts, as a tar.
    Tar(Vec<u8>),
}

/// Largest tar of a stack's bind-mounted files a server sends an agent.
pub const MAX_FILES_BYTES: u64 = 64 << 20;

/// Replicas (indices below `target`) reporting `healthy` for `revision`.
pub(crate) fn ready_count(replicas: &[NodeReplica], revision: u64, target: u32) -> usize {
    replicas
        .iter()
        .filter(|r| {
            r.index < target && r.report.state == "healthy" && r.report.revision == Some(revision)
        })
        .map(|r| r.index)
        .collect::<HashSet<_>>()
        .len()
}

/// `host:port` of a URL (`http://10.0.0.10:7700/` → `10.0.0.10:7700`).
pub fn registry_host(public_url: &str) -> Option<String> {
    let rest = public_url
        .strip_prefix("http://")
        .or_else(|| public_url.strip_prefix("https://"))?;
    let host = rest.split('/').next()?.rsplit('@').next()?;
    (!host.is_empty()).then(|| host.to_owned())
}

/// The reference agents pull: `<registry>/<owner>/<app>:<tag>`, where the
/// tag is the one [`Deployer::publish_image`] stored the release's local
/// image under. Without a registry, the local reference itself.
pub fn cluster_image(registry: Option<&str>, owner: &str, app: &str, local: &str) -> String {
    match registry {
        Some(host) => {
            let (_, tag) = slipway_runtime::images::split_reference(local);
            format!("{host}/{owner}/{app}:{tag}")
        }
        None => local.to_owned(),
    }
}

/// What one replica of a release requests: its limits, or the defaults
/// ([`DEFAULT_CPU_MILLIS`], [`DEFAULT_MEMORY_MB`]) when it has none. The
/// scheduler places by it, and a node's load (`slipway node list`) sums it.
pub(crate) fn request(spec: &slipway_domain::AppSpec) -> Resources {
    let cpu_millis = spec
        .cpus
        .map_or(DEFAULT_CPU_MILLIS, |c| (c * 1000.0).round().max(1.0) as u64);
    let memory_mb = spec.memory_mb.map_or(DEFAULT_MEMORY_MB, u64::from);
    Resources::new(cpu_millis, memory_mb * 1024 * 1024)
}

/// The demand of `release` of `app`: replicas from the app, the request,
/// port, health path and configuration from the release,
/// `PORT`/`SLIPWAY_RELEASE` in the environment, and where the secrets
/// (names only) come from.
pub(crate) fn build_demand(
    app: &AppRecord,
    release: &ReleaseRecord,
    hosts: Vec<String>,
    image: String,
    secrets: Option<SecretSource>,
) -> AppDemand {
    let spec = &release.spec;
    let mut env: BTreeMap<String, String> = spec.env.clone();
    if let Some(secrets) = &secrets {
        for name in &secrets.names {
            env.remove(name);
        }
    }
    env.insert("PORT".into(), spec.port.to_string());
    env.insert("SLIPWAY_RELEASE".into(), release.number.to_string());
    AppDemand {
        app: app.name.clone(),
        replicas: app.spec.replicas,
        request: request(spec),
        constraints: Default::default(),
        container: Some(ContainerTemplate {
            revision: u64::try_from(release.number).unwrap_or(0),
            image,
            command: Vec::new(),
            env,
            port: spec.port,
            health_path: Some(spec.health.path.clone()),
            secrets,
            ..Default::default()
        }),
        hosts,
        ..Default::default()
    }
}

/// How `ps` shows a report.
fn view(r: &NodeReplica) -> ReplicaView {
    let report = &r.report;
    let container = report.container.clone().unwrap_or_default();
    let state = match report.state.as_str() {
        "healthy" => ReplicaState::Healthy,
        "failed" => ReplicaState::Failed,
        _ => ReplicaState::Starting,
    };
    let address = match report.host_port {
        Some(p) => format!("{}:{p}", report.address.as_deref().unwrap_or("127.0.0.1")),
        None => String::new(),
    };
    ReplicaView {
        id: container.chars().take(12).collect(),
        container,
        release: report.revision.map_or(0, |v| v as i64),
        state,
        address,
        restarts: 0,
        started_at: report.updated_at,
        node: Some(r.node.clone()),
        error: (state == ReplicaState::Failed).then(|| report.detail.clone()),
        limits: Default::default(),
        service: None,
    }
}

impl Deployer {
    /// Stops timing the rollout of release `key` = (app id, number): it ended.
    fn forget_rollout(&self, key: &(i64, i64)) {
        self.inner
            .cluster_deploy
            .rollouts
            .lock()
            .unwrap()
            .remove(key);
    }

    /// Sets this server's public URL as agents reach it. Release images
    /// are pulled from the registry at its `host:port` (without one,
    /// demands carry the local image reference) and app secrets from its
    /// API.
    pub fn set_cluster_public_url(&self, url: &str) {
        let deploy = &self.inner.cluster_deploy;
        if let Some(host) = registry_host(url) {
            let _ = deploy.registry.set(host);
        }
        let _ = deploy.public_url.set(url.trim_end_matches('/').to_owned());
    }

    /// The decrypted secrets of cluster app `name` for `node`, an agent
    /// starting one of its replicas (the API checked the node's
    /// credential): only a node the app's replicas are assigned to gets them.
    pub async fn cluster_secrets(
        &self,
        name: &str,
        node: &str,
    ) -> Result<ClusterSecrets, crate::DeployError> {
        let Some(app) = self.store().app_by_name(name).await? else {
            return Ok(ClusterSecrets::NoSuchApp);
        };
        if self.cluster_app_name(app.id).is_none() {
            return Ok(ClusterSecrets::NoSuchApp);
        }
        if !self.inner.cluster_view.lock().unwrap().assigned(node, name) {
            return Ok(ClusterSecrets::NotAssigned);
        }
        self.secret_env(app.id).await.map(ClusterSecrets::Env)
    }

    /// The directories of cluster app `name`'s commit `sha` that its
    /// stack bind-mounts, as a tar, for `node`, an agent starting one of its
    /// services (the API checked the node's credential): only a node the
    /// app's replicas are assigned to gets them.
    pub async fn cluster_files(
        &self,
        name: &str,
        node: &str,
        sha: &str,
    ) -> Result<ClusterFiles, crate::DeployError> {
        let Some(app) = self.store().app_by_name(name).await? else {
            return Ok(ClusterFiles::NoSuchApp);
        };
        if self.cluster_app_name(app.id).is_none() {
            return Ok(ClusterFiles::NoSuchApp);
        }
        if !self.inner.cluster_view.lock().unwrap().assigned(node, name) {
            return Ok(ClusterFiles::NotAssigned);
        }
        if sha.len() < 7 || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(ClusterFiles::Missing);
        }
        let dir = self.stack_files_dir(app.id, sha);
        if !dir.is_dir() {
            return Ok(ClusterFiles::Missing);
        }
        let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(false);
            b.append_dir_all(".", &dir)?;
            b.into_inner()
        })
        .await
        .map_err(|e| crate::DeployError::State(e.to_string()))?
        .map_err(|e| crate::DeployError::State(format!("packing the stack's files: {e}")))?;
        if tar.len() as u64 > MAX_FILES_BYTES {
            return Err(crate::DeployError::Invalid(format!(
                "the directories app {name} bind-mounts hold more than {} MiB: too large to send to agents",
                MAX_FILES_BYTES >> 20
            )));
        }
        Ok(ClusterFiles::Tar(tar))
    }

    /// The agents' current reports of `app` (cluster mode).
    pub(crate) fn cluster_replicas(&self, app: &str) -> Vec<NodeReplica> {
        self.inner.cluster_view.lock().unwrap().replicas(app)
    }

    /// Ids of the apps whose demands this server wrote, among `names`
    /// (`None`: all of them).
    pub(crate) fn cluster_app_ids(&self, names: Option<&HashSet<String>>) -> Vec<i64> {
        let written = self.inner.cluster_deploy.names.lock().unwrap();
        written
            .iter()
            .filter(|(_, n)| names.is_none_or(|names| names.contains(*n)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The name of an app whose demand this server wrote.
    fn cluster_app_name(&self, app_id: i64) -> Option<String> {
        let names = self.inner.cluster_deploy.names.lock().unwrap();
        names.get(&app_id).cloned()
    }

    /// Replica views of an app in cluster mode (a stack's: every
    /// service's, each with its service).
    pub(crate) fn cluster_views(&self, app_id: i64) -> Vec<ReplicaView> {
        let Some(name) = self.cluster_app_name(app_id) else {
            return Vec::new();
        };
        let view_of = self.inner.cluster_view.lock().unwrap();
        let mut out: Vec<ReplicaView> = view_of.replicas(&name).iter().map(view).collect();
        let members: Vec<(String, String)> = view_of
            .members(&name)
            .map(|(service, d)| (service.to_string(), d.app.clone()))
            .collect();
        for (service, member) in members {
            // A finished task is no replica (`slipway ps` shows what runs).
            let running = view_of.replicas(&member);
            out.extend(
                running
                    .iter()
                    .filter(|r| r.report.state != "completed")
                    .map(|r| ReplicaView {
                        service: Some(service.clone()),
                        ..view(r)
                    }),
            );
        }
        out
    }

    /// Healthy replicas of the app's release in cluster mode.
    pub(crate) fn cluster_ready(&self, app: &AppRecord) -> usize {
        let Some(release) = app.release else {
            return 0;
        };
        ready_count(
            &self.cluster_replicas(&app.name),
            u64::try_from(release).unwrap_or(0),
            app.spec.replicas,
        )
    }

    /// Deletes the demand of a deleted app (cluster mode).
    pub(crate) async fn forget_cluster_app(&self, app: &AppRecord) {
        let Some(store) = self.cluster() else { return };
        self.inner
            .cluster_deploy
            .names
            .lock()
            .unwrap()
            .remove(&app.id);
        let mut names = vec![app.name.clone()];
        names.extend(
            self.inner
                .cluster_view
                .lock()
                .unwrap()
                .members(&app.name)
                .map(|(_, d)| d.app.clone()),
        );
        for name in names {
            if let Err(e) = store.delete_demand(&name).await {
                tracing::warn!(app = %app.name, error = %e, "cannot delete the app's demand; the next reconcile retries");
            }
        }
    }

    /// One reconcile run in cluster mode: the demand, then the rollout's state.
    pub(crate) async fn reconcile_cluster(
        &self,
        store: &ClusterStore,
        app_id: i64,
    ) -> Result<Progress, String> {
        let app = self
            .store()
            .app_by_id(app_id)
            .await
            .map_err(|e| e.to_string())?;
        let Some(app) = app else {
            let name = self.cluster_app_name(app_id);
            if let Some(name) = name {
                store
                    .delete_demand(&name)
                    .await
                    .map_err(|e| e.to_string())?;
                self.inner
                    .cluster_deploy
                    .names
                    .lock()
                    .unwrap()
                    .remove(&app_id);
            }
            self.inner.apps.lock().unwrap().remove(&app_id);
            return Ok(Progress::Gone);
        };
        self.inner
            .cluster_deploy
            .names
            .lock()
            .unwrap()
            .insert(app.id, app.name.clone());
        self.stop_local_replicas(&app).await;
        let release = self.current_release(&app).await?;
        let Some(release) = release.filter(|r| r.status != ReleaseStatus::Failed) else {
            if store
                .demand(&app.name)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                store
                    .delete_demand(&app.name)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(app = %app.name, "no release should run: demand deleted");
            }
            self.delete_stray_demands(store, &app, None).await?;
            return Ok(Progress::Steady);
        };
        if let Some(stack) = &release.spec.stack {
            return self
                .reconcile_cluster_stack(store, &app, &release, stack)
                .await;
        }
        let demand = self.demand_of(&app, &release).await?;
        let current = store.demand(&app.name).await.map_err(|e| e.to_string())?;
        if current.as_ref() != Some(&demand) {
            store.put_demand(&demand).await.map_err(|e| e.to_string())?;
            tracing::info!(app = %app.name, release = release.number, replicas = demand.replicas, "demand written");
        }
        if release.status == ReleaseStatus::Active {
            // The services of an earlier stack release go once it is live.
            self.delete_stray_demands(store, &app, None).await?;
        }
        self.cluster_rollout(&app, &release).await
    }

    /// The demand of `release` of `app` as agents need it.
    async fn demand_of(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
    ) -> Result<AppDemand, String> {
        let secrets = self.cluster_secret_source(app).await?;
        let registry = self.inner.cluster_deploy.registry.get();
        let image = match registry {
            Some(host) => {
                let owner = self.repo_owner(app).await?;
                cluster_image(Some(host), &owner, &app.name, &release.image)
            }
            None => release.image.clone(),
        };
        Ok(build_demand(app, release, self.hosts(app), image, secrets))
    }

    /// Marks the rollout of `release` deploying, live when every replica
    /// reports healthy for it, failed when that takes too long.
    async fn cluster_rollout(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
    ) -> Result<Progress, String> {
        let target = app.spec.replicas;
        if target == 0
            || !matches!(
                release.status,
                ReleaseStatus::Pending | ReleaseStatus::Deploying
            )
        {
            return Ok(Progress::Steady);
        }
        let key = (app.id, release.number);
        if release.status == ReleaseStatus::Pending {
            self.inner
                .cluster_deploy
                .rollouts
                .lock()
                .unwrap()
                .insert(key, Instant::now());
            self.announce_release(
                app,
                release.number,
                ReleaseStatus::Deploying,
                &format!(
                    "rolling out v{} to {target} replica(s) on the cluster",
                    release.number
                ),
            )
            .await?;
        }
        let replicas = self.cluster_replicas(&app.name);
        let revision = u64::try_from(release.number).unwrap_or(0);
        if ready_count(&replicas, revision, target) >= target as usize {
            self.store()
                .set_release_status(app.id, release.number, ReleaseStatus::Active, None)
                .await
                .map_err(|e| e.to_string())?;
            self.forget_rollout(&key);
            self.inner.release_changed.notify_waiters();
            self.event(
                app.id,
                "rollout",
                &format!(
                    "v{} is live on {target} replica(s) on the cluster",
                    release.number
                ),
            )
            .await;
            self.prune_images(app).await;
            return Ok(Progress::Steady);
        }
        if let Some((node, message)) = unreachable(&replicas, revision, target) {
            // An agent found the container listening, but not on the port.
            self.forget_rollout(&key);
            let why = format!(
                "cannot be reached on node {node}: {message} (make the app listen on $PORT, {}, or set the app's port: `slipway app set {} --port N`)",
                release.spec.port, app.name
            );
            self.fail_release(app, release, &why).await?;
            return Ok(Progress::Changed);
        }
        let began = *self
            .inner
            .cluster_deploy
            .rollouts
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(Instant::now);
        let limit = Duration::from_millis(release.spec.health.start_timeout_ms) + PULL_ALLOWANCE;
        if began.elapsed() < limit {
            return Ok(Progress::WaitUntil(Instant::now() + ROLLOUT_POLL));
        }
        self.forget_rollout(&key);
        let why = format!(
            "did not become healthy on all {target} replica(s) within {} s: {}",
            limit.as_secs(),
            describe(&replicas, revision, target)
        );
        self.fail_release(app, release, &why).await?;
        Ok(Progress::Changed)
    }

    /// Stops replicas this server runs locally for `app` (left from
    /// single-node mode): in cluster mode agents run them.
    async fn stop_local_replicas(&self, app: &AppRecord) {
        let Some(rt) = self.runtime().cloned() else {
            return;
        };
        let Ok(found) = rt.list_containers(&self.app_filter(app.id)).await else {
            return;
        };
        for c in found {
            tracing::info!(app = %app.name, container = %c.id, "cluster mode: stopping a local replica");
            self.drain_and_stop(app.id, &app.name, c.id, None).await;
        }
    }
}

/// The first replica (node, message) an agent found unreachable on the
/// app's port while running `revision`.
fn unreachable(replicas: &[NodeReplica], revision: u64, target: u32) -> Option<(String, String)> {
    replicas.iter().filter(|r| r.index < target).find_map(|r| {
        let u = r.report.unreachable.as_ref()?;
        (u.revision == revision).then(|| (r.node.clone(), u.message.clone()))
    })
}

/// What keeps replicas from being live, for the failed release's error.
fn describe(replicas: &[NodeReplica], revision: u64, target: u32) -> String {
    let mut parts = Vec::new();
    let mut seen = HashSet::new();
    for r in replicas.iter().filter(|r| r.index < target) {
        seen.insert(r.index);
        let rep = &r.report;
        if rep.state == "healthy" && rep.revision == Some(revision) {
            continue;
        }
        let detail = if rep.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", rep.detail)
        };
        parts.push(format!(
            "replica {} on {}: {}{detail}",
            r.index, r.node, rep.state
        ));
    }
    let unplaced = (0..target).filter(|i| !seen.contains(i)).count();
    if unplaced > 0 {
        parts.push(format!(
            "{unplaced} replica(s) not running on any node (see `slipway node list`)"
        ));
    }
    let text = parts.join("; ");
    text.chars().take(1000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_view::View;
    use slipway_cluster::etcd::{ReplicaReport, WatchEvent};
    use slipway_domain::AppSpec;

    fn app(spec: AppSpec) -> AppRecord {
        AppRecord {
            id: 1,
            name: "web".into(),
            repo_id: 1,
            owner_id: 1,
            spec,
            release: Some(3),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn release(spec: AppSpec) -> ReleaseRecord {
        ReleaseRecord {
            id: 9,
            app_id: 1,
            number: 3,
            image: "slipway/app-web:0123456789ab".into(),
            sha: "0123456789abcdef".into(),
            pipeline_id: None,
            spec,
            description: "deploy".into(),
            created_by: "alice".into(),
            status: ReleaseStatus::Pending,
            error: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn demands_carry_the_release_and_defaults() {
        let mut spec = AppSpec {
            replicas: 2,
            port: 9000,
            ..AppSpec::default()
        };
        spec.env.insert("MODE".into(), "prod".into());
        spec.health.path = "/healthz".into();
        let secrets = SecretSource {
            server: "http://10.0.0.10:7700".into(),
            names: vec!["TOKEN".into()],
        };
        let image = cluster_image(
            Some("10.0.0.10:7700"),
            "alice",
            "web",
            "slipway/app-web:0123456789ab",
        );
        assert_eq!(image, "10.0.0.10:7700/alice/web:0123456789ab");
        let d = build_demand(
            &app(spec.clone()),
            &release(spec),
            vec!["web.apps.test".into()],
            image.clone(),
            Some(secrets.clone()),
        );
        assert_eq!(d.app, "web");
        assert!(slipway_cluster::valid_id(&d.app));
        assert_eq!(d.replicas, 2);
        assert_eq!(d.hosts, ["web.apps.test"]);
        assert_eq!(
            d.request,
            Resources::new(DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_MB << 20)
        );
        let t = d.container.as_ref().unwrap();
        assert_eq!(t.revision, 3);
        assert_eq!(t.image, image);
        assert_eq!(t.port, 9000);
        assert_eq!(t.health_path.as_deref(), Some("/healthz"));
        assert_eq!(t.env["MODE"], "prod");
        // Secrets are named, never valued, in what goes to etcd.
        assert!(!t.env.contains_key("TOKEN"));
        assert_eq!(t.secrets.as_ref(), Some(&secrets));
        assert_eq!(t.env["PORT"], "9000");
        assert_eq!(t.env["SLIPWAY_RELEASE"], "3");
        t.validate().unwrap();
    }

    #[test]
    fn limits_become_the_request_and_replicas_follow_the_app() {
        let spec = AppSpec {
            cpus: Some(1.5),
            memory_mb: Some(512),
            ..AppSpec::default()
        };
        let mut a = app(spec.clone());
        a.spec.replicas = 4;
        let d = build_demand(&a, &release(spec), vec![], "img".into(), None);
        assert_eq!(d.request, Resources::new(1500, 512 << 20));
        // Scale comes from the app, not the frozen release.
        assert_eq!(d.replicas, 4);
        assert_eq!(cluster_image(None, "alice", "web", "local:1"), "local:1");
    }

    #[test]
    fn registry_hosts_come_from_public_urls() {
        assert_eq!(
            registry_host("http://10.0.0.10:7700").as_deref(),
            Some("10.0.0.10:7700")
        );
        assert_eq!(
            registry_host("https://slipway.example.com/").as_deref(),
            Some("slipway.example.com")
        );
        assert_eq!(registry_host("ftp://x"), None);
        assert_eq!(registry_host("http://"), None);
    }

    fn report(state: &str, epoch: u64, revision: Option<u64>) -> ReplicaReport {
        ReplicaReport {
            state: state.into(),
            detail: String::new(),
            epoch,
            updated_at: chrono::Utc::now(),
            container: Some("c0ffee".into()),
            host_port: Some(40000),
            address: Some("10.0.0.5".into()),
            revision,
            unreachable: None,
            ports: Default::default(),
        }
    }

    fn event(key: &str, value: Option<serde_json::Value>) -> WatchEvent {
        WatchEvent {
            key: key.into(),
            value: value.map(|v| serde_json::to_vec(&v).unwrap()),
            revision: 1,
        }
    }

    #[test]
    fn a_release_is_ready_when_every_replica_reports_it_healthy() {
        let mut book = View::default();
        let assign = |node: &str, i: u32, epoch: u64| {
            serde_json::json!({"replica": {"app": "web", "index": i}, "node": node,
                "epoch": epoch, "assigned_at": "2026-11-26T00:00:00Z"})
        };
        book.apply(&event("assign/n1/web/0", Some(assign("n1", 0, 2))));
        book.apply(&event("assign/n2/web/1", Some(assign("n2", 1, 5))));
        let put = |b: &mut View, key: &str, r: ReplicaReport| {
            b.apply(&event(key, Some(serde_json::to_value(r).unwrap())))
        };
        assert_eq!(
            put(&mut book, "status/n1/web/0", report("healthy", 2, Some(3))).as_deref(),
            Some("web")
        );
        // The old revision still serves replica 1.
        put(&mut book, "status/n2/web/1", report("healthy", 5, Some(2)));
        let replicas = book.replicas("web");
        assert_eq!(replicas.len(), 2);
        assert_eq!(ready_count(&replicas, 3, 2), 1);
        assert!(describe(&replicas, 3, 2).contains("replica 1 on n2: healthy"));
        put(&mut book, "status/n2/web/1", report("healthy", 5, Some(3)));
        assert_eq!(ready_count(&book.replicas("web"), 3, 2), 2);
        // A report of an older epoch (a stale agent) does not count.
        put(&mut book, "status/n2/web/1", report("healthy", 4, Some(3)));
        assert_eq!(ready_count(&book.replicas("web"), 3, 2), 1);
        // Nor one whose assignment is gone.
        book.apply(&event("assign/n1/web/0", None));
        assert!(book.replicas("web").is_empty());
        let v = view(&NodeReplica {
            node: "n1".into(),
            index: 0,
            report: report("failed", 2, Some(3)),
        });
        assert_eq!(v.state, ReplicaState::Failed);
        assert_eq!(v.address, "10.0.0.5:40000");
        assert_eq!(v.node.as_deref(), Some("n1"));
        assert_eq!(v.release, 3);
        assert_eq!(
            describe(&[], 3, 2),
            "2 replica(s) not running on any node (see `slipway node list`)"
        );
    }

    #[test]
    fn a_replica_unreachable_on_its_port_fails_only_its_own_revision() {
        let mut old = report("healthy", 2, Some(2));
        old.unreachable = Some(slipway_cluster::etcd::Unreachable {
            revision: 3,
            message: "nothing listens on port 8080 inside the container; it listens on 80".into(),
        });
        let replicas = [
            NodeReplica {
                node: "n1".into(),
                index: 0,
                report: report("healthy", 2, Some(3)),
            },
            NodeReplica {
                node: "n2".into(),
                index: 1,
                report: old,
            },
        ];
        let (node, message) = unreachable(&replicas, 3, 2).expect("revision 3 is unreachable");
        assert_eq!(node, "n2");
        assert!(message.ends_with("it listens on 80"), "{message}");
        assert_eq!(unreachable(&replicas, 4, 2), None);
        // Replica 1 is beyond a target of 1 replica.
        assert_eq!(unreachable(&replicas, 3, 1), None);
    }
}
