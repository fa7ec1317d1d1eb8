//! Cluster mode of stacks: every service of a Compose stack is a demand of
//! its own (`apps/{app}.{service}`), placed by the scheduler with the
//! service's placement rules and run by the agents.
//!
//! A reconcile run walks the services in dependency order, as the
//! single-node stack does. A service's demand is rewritten when what its
//! containers run changed; its revision is then the release number, and a
//! service the release leaves unchanged keeps its revision, so agents
//! leave its containers alone (PostgreSQL keeps running while the web
//! front rolls). A service's new template is written only once the
//! services it depends on are converged: healthy replicas of their current
//! revision on every assignment or, for one-off tasks, `completed` in this
//! release. A task that fails, or a rollout that makes no progress within
//! the health check's start timeout (+ the pull allowance), fails the
//! release; the app then points back at its previous release and the same
//! loop writes the previous templates back — agents replace start-first,
//! so the previous containers kept serving.
//!
//! Service images are published to this server's registry under
//! `{owner}/{app}/{service}:{image id}` (by content: an unchanged image is
//! not sent again), which agents pull with their node credential. A
//! service with a named volume is pinned to the node its volume was
//! created on: if that node is lost the service waits for it and says so
//! (it is never recreated empty elsewhere). Other services reach a service
//! by its name through each node's forwarder (`slipway_cluster::forward`).

use crate::cluster_demand::{DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_MB, PULL_ALLOWANCE};
use crate::cluster_view::NodeReplica;
use crate::reconcile::Progress;
use crate::stack::{desired_replicas, service_hosts};
use crate::Deployer;
use slipway_cluster::{
    AppDemand, ClusterStore, ContainerTemplate, PlacementRule, Resources, SecretSource, StackFiles,
    StackMember, TemplateHealth, TemplateMount, TemplatePublish,
};
use slipway_domain::stack::{DeployMode, MountSource, ServiceSpec, StackSpec, UpdateOrder};
use slipway_domain::{AppRecord, ReleaseRecord, ReleaseStatus};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How often a stack rollout in progress is re-checked (reports also wake it).
const ROLLOUT_POLL: Duration = Duration::from_millis(500);

/// The demand name of `service` of stack app `app`.
pub fn member_name(app: &str, service: &str) -> String {
    format!("{app}.{service}")
}

/// What the agents need to run one service: everything but the
/// revision, the image reference and the pinned node, which
/// [`Deployer::reconcile_cluster_stack`] fills in.
pub(crate) fn member_demand(
    app: &AppRecord,
    stack: &StackSpec,
    svc: &ServiceSpec,
    hosts: Vec<String>,
    secrets: Option<&SecretSource>,
    files: Option<&StackFiles>,
    limits: slipway_domain::Resources,
) -> AppDemand {
    let task = svc.is_task(stack);
    let mut env = app.spec.env.clone();
    env.extend(svc.environment.clone());
    if let Some(s) = secrets {
        for name in &s.names {
            env.remove(name);
        }
    }
    env.insert("SLIPWAY_APP".into(), app.name.clone());
    let mut ports: Vec<u16> = Vec::new();
    for p in svc
        .ingress
        .iter()
        .map(|i| i.port)
        .chain(svc.ports.iter().copied())
        .chain(svc.expose.iter().copied())
    {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let stop_first = svc.deploy.order.unwrap_or(if svc.has_volume() {
        UpdateOrder::StopFirst
    } else {
        UpdateOrder::StartFirst
    }) == UpdateOrder::StopFirst;
    let global = !task && svc.deploy.mode == DeployMode::Global;
    AppDemand {
        app: member_name(&app.name, &svc.name),
        replicas: if task {
            1
        } else if global {
            0
        } else {
            desired_replicas(stack, svc, app) as u32
        },
        request: Resources::new(
            limits
                .nano_cpus
                .map_or(DEFAULT_CPU_MILLIS, |n| (n / 1_000_000).max(1) as u64),
            limits
                .memory_bytes
                .map_or(DEFAULT_MEMORY_MB * 1024 * 1024, |m| m.max(0) as u64),
        ),
        rules: svc
            .deploy
            .constraints
            .iter()
            .map(|c| PlacementRule {
                attribute: c.attribute.clone(),
                equal: c.equal,
                value: c.value.clone(),
            })
            .collect(),
        // A raw host port can be bound once per node.
        max_per_node: match (svc.publish.is_empty(), svc.deploy.max_replicas_per_node) {
            (true, limit) => limit,
            (false, _) => Some(1),
        },
        global,
        hosts: if svc.ingress.is_some() {
            hosts
        } else {
            Vec::new()
        },
        container: Some(ContainerTemplate {
            revision: 0,
            image: String::new(),
            command: svc.command.clone().unwrap_or_default(),
            env,
            port: ports.first().copied().unwrap_or(0),
            health_path: svc.ingress.as_ref().map(|i| i.health_path.clone()),
            secrets: secrets.cloned(),
            stack: Some(StackMember {
                app: app.name.clone(),
                service: svc.name.clone(),
                ports,
                entrypoint: svc.entrypoint.clone(),
                user: svc.user.clone(),
                working_dir: svc.working_dir.clone(),
                healthcheck: svc.healthcheck.as_ref().map(|h| TemplateHealth {
                    test: h.test.clone(),
                    interval_ms: h.interval_ms,
                    timeout_ms: h.timeout_ms,
                    retries: h.retries,
                    start_period_ms: h.start_period_ms,
                }),
                mounts: svc
                    .mounts
                    .iter()
                    .map(|m| match &m.source {
                        MountSource::Volume(v) => TemplateMount {
                            volume: Some(v.clone()),
                            repo: None,
                            target: m.target.clone(),
                            read_only: m.read_only,
                        },
                        MountSource::Tmpfs => TemplateMount {
                            volume: None,
                            repo: None,
                            target: m.target.clone(),
                            read_only: false,
                        },
                        MountSource::Repo(dir) => TemplateMount {
                            volume: None,
                            repo: Some(dir.clone()),
                            target: m.target.clone(),
                            read_only: true,
                        },
                    })
                    .collect(),
                one_shot: task,
                stop_first,
                route_path: svc
                    .ingress
                    .as_ref()
                    .map(|i| i.path.clone())
                    .filter(|p| p != "/"),
                sticky: svc.ingress.as_ref().is_some_and(|i| i.sticky),
                secret_files: svc.secrets.clone(),
                publish: svc
                    .publish
                    .iter()
                    .map(|p| TemplatePublish {
                        container: p.container,
                        host: p.host,
                        udp: p.protocol == "udp",
                    })
                    .collect(),
                files: files.filter(|_| svc.binds_repo()).cloned(),
            }),
        }),
        ..Default::default()
    }
}

/// Whether two demands' containers are the same apart from the revision.
fn same_containers(a: &AppDemand, b: &AppDemand) -> bool {
    let strip = |d: &AppDemand| {
        d.container.clone().map(|mut c| {
            c.revision = 0;
            c
        })
    };
    strip(a) == strip(b)
}

/// How a service stands in this release.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServiceState {
    /// Converged: its dependants may go.
    Ready,
    /// Still starting (or not placed yet).
    Waiting,
    /// The task failed: why.
    TaskFailed(String),
}

/// How a service's replicas of `revision` stand: a task is done when a
/// report of `revision` says `completed`; a service when every assigned
/// replica (at least `target`; for a global service `target` is 0 and
/// at least one replica is needed) reports `healthy` for it.
pub(crate) fn service_state(
    replicas: &[NodeReplica],
    revision: u64,
    task: bool,
    target: u32,
    assigned: usize,
    global: bool,
) -> ServiceState {
    if task {
        return match replicas
            .iter()
            .find(|r| r.report.revision == Some(revision))
            .map(|r| (r.report.state.as_str(), &r.report.detail))
        {
            Some(("completed", _)) => ServiceState::Ready,
            Some(("failed", why)) => ServiceState::TaskFailed(why.clone()),
            _ => ServiceState::Waiting,
        };
    }
    let healthy = replicas
        .iter()
        .filter(|r| r.report.state == "healthy" && r.report.revision == Some(revision))
        .count();
    if target == 0 && !global {
        // Scaled to zero.
        return ServiceState::Ready;
    }
    let wanted = (target as usize).max(assigned).max(1);
    if healthy >= wanted {
        ServiceState::Ready
    } else {
        ServiceState::Waiting
    }
}

impl Deployer {
    /// One reconcile run of a stack release in cluster mode.
    pub(crate) async fn reconcile_cluster_stack(
        &self,
        store: &ClusterStore,
        app: &AppRecord,
        release: &ReleaseRecord,
        stack: &StackSpec,
    ) -> Result<Progress, String> {
        let rolling = matches!(
            release.status,
            ReleaseStatus::Pending | ReleaseStatus::Deploying
        );
        if release.status == ReleaseStatus::Pending {
            self.announce_release(
                app,
                release.number,
                ReleaseStatus::Deploying,
                &format!(
                    "rolling out v{} ({} services) on the cluster",
                    release.number,
                    stack.services.len()
                ),
            )
            .await?;
        }
        let secrets = self.cluster_secret_source(app).await?;
        if rolling {
            let set: HashSet<&str> = secrets
                .iter()
                .flat_map(|s| s.names.iter().map(String::as_str))
                .collect();
            if let Some((svc, name)) = stack.services.iter().find_map(|svc| {
                let missing = svc.secrets.iter().find(|n| !set.contains(n.as_str()))?;
                Some((&svc.name, missing))
            }) {
                let why = format!(
                    "v{}: service {svc} needs secret {name}, which is not set: `slipway app secret set {} {name}` sets it",
                    release.number, app.name
                );
                self.fail_release_with(app, release, &why).await?;
                return Ok(Progress::Changed);
            }
        }
        // Agents fetch the directories services bind-mount from this server.
        let files = match self.inner.cluster_deploy.public_url.get() {
            Some(server) => Some(StackFiles {
                server: server.clone(),
                sha: release.sha.clone(),
            }),
            None if stack.services.iter().any(ServiceSpec::binds_repo) => {
                return Err(format!(
                    "app {} bind-mounts repository directories, and agents fetch them from this server's public URL, which is not set",
                    app.name
                ));
            }
            None => None,
        };
        let hosts: HashMap<&str, Vec<String>> = service_hosts(&self.hosts(app), stack)
            .into_iter()
            .map(|(s, h)| (s.name.as_str(), h))
            .collect();
        // This stack's demands (not every app's) as the cluster view holds them.
        let demands: HashMap<String, AppDemand> = self
            .inner
            .cluster_view
            .lock()
            .unwrap()
            .members(&app.name)
            .map(|(_, d)| (d.app.clone(), d.clone()))
            .collect();
        // The node the stack's volumes live on: kept in the demands of the
        // services that mount them, or where the first of them was placed.
        let mut volume_node = stack
            .services
            .iter()
            .filter(|s| s.has_volume())
            .filter_map(|s| demands.get(&member_name(&app.name, &s.name)))
            .find_map(|d| d.pinned_node.clone());
        if volume_node.is_none() {
            let view = self.inner.cluster_view.lock().unwrap();
            volume_node = stack
                .services
                .iter()
                .filter(|s| s.has_volume())
                .find_map(|s| view.nodes_of(&member_name(&app.name, &s.name)).pop());
        }
        // Agents pull from this server's registry: its images are stored
        // under the repository owner's name.
        let owner = match (
            self.inner.registry.get(),
            self.inner.cluster_deploy.registry.get(),
        ) {
            (Some(_), Some(_)) => Some(self.repo_owner(app).await?),
            _ => None,
        };
        let release_revision = u64::try_from(release.number).unwrap_or(0);
        let mut converged: HashSet<&str> = HashSet::new();
        let mut blocked: Option<String> = None;
        for svc in &stack.services {
            let name = member_name(&app.name, &svc.name);
            let task = svc.is_task(stack);
            let current = demands.get(&name);
            if task && release.status == ReleaseStatus::Active {
                // Tasks run once, while their release rolls out.
                converged.insert(&svc.name);
                continue;
            }
            // What the file asks for, within the server's maximum; a
            // service that asks nothing reserves the cluster defaults.
            let asked = slipway_domain::Resources {
                memory_bytes: svc.deploy.memory_bytes,
                nano_cpus: svc.deploy.nano_cpus,
            };
            let clamped = self.inner.options.limits.clamp(asked);
            let limits = slipway_domain::Resources {
                memory_bytes: asked.memory_bytes.and(clamped.memory_bytes),
                nano_cpus: asked.nano_cpus.and(clamped.nano_cpus),
            };
            let mut want = member_demand(
                app,
                stack,
                svc,
                hosts.get(svc.name.as_str()).cloned().unwrap_or_default(),
                secrets.as_ref(),
                files.as_ref(),
                limits,
            );
            let image = self.service_image(app, owner.as_deref(), svc).await?;
            if let Some(t) = want.container.as_mut() {
                t.image = image.reference.clone();
            }
            if svc.has_volume() {
                want.pinned_node = current
                    .and_then(|d| d.pinned_node.clone())
                    .or(volume_node.clone());
            }
            let unchanged = current.is_some_and(|c| same_containers(c, &want));
            let revision = match current.and_then(|c| c.container.as_ref()) {
                Some(t) if unchanged && !(task && t.revision != release_revision) => t.revision,
                _ => release_revision,
            };
            if let Some(t) = want.container.as_mut() {
                t.revision = revision;
            }
            let deps_ready = svc
                .depends_on
                .iter()
                .all(|d| converged.contains(d.service.as_str()));
            if current != Some(&want) {
                if !unchanged && !deps_ready {
                    continue;
                }
                if !unchanged {
                    self.publish_service_image(svc, &image).await?;
                }
                store.put_demand(&want).await.map_err(|e| e.to_string())?;
                tracing::info!(app = %app.name, service = %svc.name, revision, "service demand written");
            }
            let replicas = self.cluster_replicas(&name);
            let assigned = self
                .inner
                .cluster_view
                .lock()
                .unwrap()
                .nodes_of(&name)
                .len();
            match service_state(
                &replicas,
                revision,
                task,
                want.replicas,
                assigned,
                want.global,
            ) {
                ServiceState::Ready => {
                    converged.insert(&svc.name);
                }
                ServiceState::Waiting => {
                    blocked.get_or_insert_with(|| {
                        format!("{}: {}", svc.name, waiting_for(&replicas, revision, task))
                    });
                }
                ServiceState::TaskFailed(why) if rolling => {
                    self.forget_stack_rollout(app.id, release.number);
                    self.fail_release_with(
                        app,
                        release,
                        &format!("v{}: task {} failed: {why}", release.number, svc.name),
                    )
                    .await?;
                    return Ok(Progress::Changed);
                }
                ServiceState::TaskFailed(_) => {}
            }
        }
        if converged.len() == stack.services.len() {
            self.delete_stray_demands(store, app, Some(stack)).await?;
            if release.status != ReleaseStatus::Active {
                self.forget_stack_rollout(app.id, release.number);
                let summary: Vec<String> = stack
                    .services
                    .iter()
                    .map(|s| {
                        if s.is_task(stack) {
                            format!("{} (task done)", s.name)
                        } else if s.deploy.mode == DeployMode::Global {
                            format!("{} (global)", s.name)
                        } else {
                            format!("{}×{}", s.name, desired_replicas(stack, s, app))
                        }
                    })
                    .collect();
                self.announce_release(
                    app,
                    release.number,
                    ReleaseStatus::Active,
                    &format!(
                        "v{} is live on the cluster: {}",
                        release.number,
                        summary.join(", ")
                    ),
                )
                .await?;
                self.prune_images(app).await;
            }
            return Ok(Progress::Steady);
        }
        if !rolling {
            return Ok(Progress::WaitUntil(Instant::now() + ROLLOUT_POLL));
        }
        // A rollout fails when it stops making progress.
        let limit = Duration::from_millis(release.spec.health.start_timeout_ms) + PULL_ALLOWANCE;
        let since = {
            let mut progress = self.inner.cluster_deploy.stack_progress.lock().unwrap();
            let entry = progress
                .entry((app.id, release.number))
                .or_insert((converged.len(), Instant::now()));
            if entry.0 != converged.len() {
                *entry = (converged.len(), Instant::now());
            }
            entry.1
        };
        if since.elapsed() < limit {
            return Ok(Progress::WaitUntil(Instant::now() + ROLLOUT_POLL));
        }
        self.forget_stack_rollout(app.id, release.number);
        let why = format!(
            "v{}: no progress for {} s: {}",
            release.number,
            limit.as_secs(),
            blocked.unwrap_or_else(|| "a service waits for its dependencies".into())
        );
        self.fail_release_with(app, release, &why).await?;
        Ok(Progress::Changed)
    }

    fn forget_stack_rollout(&self, app_id: i64, number: i64) {
        self.inner
            .cluster_deploy
            .stack_progress
            .lock()
            .unwrap()
            .remove(&(app_id, number));
    }

    /// Deletes the demands of `app` that `stack` does not have: dropped
    /// services, and the single-service demand once a stack runs (with
    /// `None`: every service demand, once a single-service release runs).
    pub(crate) async fn delete_stray_demands(
        &self,
        store: &ClusterStore,
        app: &AppRecord,
        stack: Option<&StackSpec>,
    ) -> Result<(), String> {
        let keep: HashSet<String> = match stack {
            Some(s) => s
                .services
                .iter()
                .map(|svc| member_name(&app.name, &svc.name))
                .collect(),
            None => HashSet::from([app.name.clone()]),
        };
        let strays: Vec<String> = {
            let view = self.inner.cluster_view.lock().unwrap();
            let single = view.demands.get_key_value(&app.name).map(|(k, _)| k);
            view.members(&app.name)
                .map(|(_, d)| &d.app)
                .chain(single)
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect()
        };
        for name in strays {
            store
                .delete_demand(&name)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(app = %app.name, demand = %name, "demand no longer in the release: deleted");
        }
        Ok(())
    }

    /// Where agents fetch the app's secrets, if it has any.
    pub(crate) async fn cluster_secret_source(
        &self,
        app: &AppRecord,
    ) -> Result<Option<SecretSource>, String> {
        let names = self
            .store()
            .app_secret_names(app.id)
            .await
            .map_err(|e| e.to_string())?;
        if names.is_empty() {
            return Ok(None);
        }
        let server = self.inner.cluster_deploy.public_url.get().ok_or_else(|| {
            format!(
                "app {} has secrets, and agents fetch them from this server's public URL, which is not set",
                app.name
            )
        })?;
        Ok(Some(SecretSource {
            server: server.clone(),
            names: names.into_iter().map(|(name, _)| name).collect(),
        }))
    }

    /// The owner of the app's repository: its images' registry namespace.
    pub(crate) async fn repo_owner(&self, app: &AppRecord) -> Result<String, String> {
        let repo = self
            .store()
            .repo_by_id(app.repo_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the repository of app {} is gone", app.name))?;
        Ok(repo.owner)
    }

    /// Where a service's image comes from and where agents pull it:
    /// `{host}/{owner}/{app}/{service}:{content id}` when this server has
    /// a registry agents reach (`owner` given), else the local reference.
    async fn service_image(
        &self,
        app: &AppRecord,
        owner: Option<&str>,
        svc: &ServiceSpec,
    ) -> Result<ServiceImage, String> {
        let local = svc
            .image
            .clone()
            .ok_or_else(|| format!("service {} has no image in this release", svc.name))?;
        let (Some(owner), Some(host)) = (owner, self.inner.cluster_deploy.registry.get()) else {
            return Ok(ServiceImage {
                reference: local.clone(),
                local,
                stored: None,
            });
        };
        let id = match &svc.image_id {
            Some(id) => id.clone(),
            None => {
                let rt = self.runtime().ok_or("the Docker Engine is not connected")?;
                slipway_runtime::images::image_id(rt, &local)
                    .await
                    .map_err(|e| format!("service {}: image {local}: {e}", svc.name))?
            }
        };
        let tag: String = id.trim_start_matches("sha256:").chars().take(12).collect();
        let repo = format!("{owner}/{}/{}", app.name, svc.name.replace('_', "-"));
        Ok(ServiceImage {
            reference: format!("{host}/{repo}:{tag}"),
            local,
            stored: Some((repo, tag)),
        })
    }

    /// Stores a service's image in the registry (once per content), keeping
    /// the newest `releases_kept` images of the service.
    async fn publish_service_image(
        &self,
        svc: &ServiceSpec,
        image: &ServiceImage,
    ) -> Result<(), String> {
        let (Some(registry), Some((repo, tag))) = (self.inner.registry.get(), &image.stored) else {
            return Ok(());
        };
        if registry
            .resolve_tag(repo, tag)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(());
        }
        let rt = self.runtime().ok_or("the Docker Engine is not connected")?;
        slipway_registry::import_from_docker(registry, rt, &image.local, repo, tag)
            .await
            .map_err(|e| {
                format!(
                    "storing the image of service {} in the registry failed: {e}",
                    svc.name
                )
            })?;
        self.retain_images(repo);
        Ok(())
    }
}

/// A stack service's image for agents.
struct ServiceImage {
    /// The engine's reference of the release's image.
    local: String,
    /// What agents pull.
    reference: String,
    /// The registry repository and tag it is stored under, when agents
    /// pull from this server's registry.
    stored: Option<(String, String)>,
}

/// What a service waits for, for the failed release's error.
fn waiting_for(replicas: &[NodeReplica], revision: u64, task: bool) -> String {
    let mine: Vec<&NodeReplica> = replicas
        .iter()
        .filter(|r| r.report.revision == Some(revision))
        .collect();
    if mine.is_empty() {
        return if task {
            "the task has not run yet (no node reported it)".into()
        } else {
            "no replica of this release reported yet (not placed, or pulling its image)".into()
        };
    }
    mine.iter()
        .map(|r| {
            let detail = if r.report.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.report.detail)
            };
            format!(
                "replica {} on {} is {}{detail}",
                r.index, r.node, r.report.state
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
