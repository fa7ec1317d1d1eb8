//! Stacks: apps whose release runs several services from a Compose file
//! (web, worker, Redis, PostgreSQL, a migration task…).
//!
//! One reconcile run looks at every service in dependency order. Each
//! service is a small rolling deployment of its own, keyed by a digest of
//! what its containers run (image, command, environment, mounts, limits…),
//! like a Kubernetes pod-template hash: a release that leaves a service
//! unchanged leaves its containers alone (PostgreSQL keeps running while the
//! web front rolls). A service starts only once the services it depends on
//! are converged: running, healthy (their health check passed) or, for
//! one-off tasks, exited 0 in this release. Services whose dependencies are
//! converged are acted on concurrently. A task that fails or a service that
//! never becomes healthy fails the release; the app then points back at its
//! previous release and the same loop brings the changed services back.

use crate::probe::{self, NotReady};
use crate::reconcile::Progress;
use crate::replica::{Replica, ReplicaState};
use crate::routes::ServiceRoute;
use crate::{Deployer, APP_ID_LABEL, INSTANCE_LABEL, RELEASE_LABEL};
use sha2::{Digest, Sha256};
use slipway_domain::stack::{MountSource, ServiceSpec, StackSpec, UpdateOrder};
use slipway_domain::{AppRecord, HealthSpec, ReleaseRecord, ReleaseStatus};
use slipway_runtime::{labels, ContainerInfo, ContainerSpec, NetworkMode, Runtime, Security};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Label carrying the stack service a container belongs to.
pub const SERVICE_LABEL: &str = "io.slipway.service";
/// Label carrying the digest of what a service container runs.
pub const SERVICE_HASH_LABEL: &str = "io.slipway.service-hash";
/// Label marking one-off task containers (kept after they exit: their exit
/// code is the task's result for the release).
pub const TASK_LABEL: &str = "io.slipway.task";

/// Longest a service without a health check must keep running after its
/// start to count as started.
const SETTLE: Duration = Duration::from_millis(300);
/// Longest wait for a health check to pass, whatever the check's settings.
const MAX_HEALTH_WAIT: Duration = Duration::from_secs(600);

/// What one service needs in this run.
enum Action<'a> {
    /// Run the one-off task once for this release.
    RunTask(&'a ServiceSpec),
    /// Start `n` new replicas.
    Start(&'a ServiceSpec, usize),
    /// Drain and stop these replicas.
    Stop(Vec<Replica>),
}

impl Deployer {
    /// The Docker volume holding named volume `volume` of an app's stack.
    pub fn volume_name(&self, app_id: i64, volume: &str) -> String {
        format!("slipway-{}-{app_id}-{volume}", self.instance())
    }

    /// Where the deployed commit's directories that a stack bind-mounts
    /// (`./conf:/etc/conf`) are unpacked, read-only for its services.
    pub fn stack_files_dir(&self, app_id: i64, sha: &str) -> PathBuf {
        self.inner
            .options
            .data_dir
            .join("stack-files")
            .join(app_id.to_string())
            .join(sha)
    }

    /// The routes of a stack's services with ingress: explicit domains, or
    /// the app's host names for the first service on `/` and every service
    /// on a sub-path, `<service>.<app host>` for the other services on `/`.
    pub(crate) fn refresh_stack_routes(&self, app: &AppRecord, stack: &StackSpec) {
        let mut routes = Vec::new();
        for (svc, hosts) in service_hosts(&self.hosts(app), stack) {
            let Some(ing) = &svc.ingress else { continue };
            routes.push(ServiceRoute {
                service: svc.name.clone(),
                hosts,
                path: ing.path.clone(),
                health: HealthSpec {
                    path: ing.health_path.clone(),
                    ..HealthSpec::default()
                },
                sticky: ing.sticky,
            });
        }
        let changed = {
            let mut apps = self.inner.apps.lock().unwrap();
            let entry = apps.entry(app.id).or_default();
            let changed = entry.service_routes != routes;
            entry.service_routes = routes;
            changed
        };
        if changed {
            self.rebuild_routes();
        }
    }

    /// One reconcile run of a stack app (single-node mode).
    pub(crate) async fn reconcile_stack(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
        stack: &StackSpec,
        found: &[ContainerInfo],
    ) -> Result<Progress, String> {
        let rt = self
            .runtime()
            .cloned()
            .ok_or("the Docker Engine is not connected")?;
        let (tasks, services): (Vec<ContainerInfo>, Vec<ContainerInfo>) = found
            .iter()
            .cloned()
            .partition(|c| c.labels.contains_key(TASK_LABEL));
        if self.handle_deaths(app, &services).await {
            return Ok(Progress::Changed);
        }
        if self.adopt_stack(app, &services).await {
            return Ok(Progress::Changed);
        }
        if release.status == ReleaseStatus::Pending {
            let _ = self
                .store()
                .set_release_status(app.id, release.number, ReleaseStatus::Deploying, None)
                .await;
            self.inner.release_changed.notify_waiters();
            self.event(
                app.id,
                "rollout",
                &format!(
                    "rolling out v{} ({} services)",
                    release.number,
                    stack.services.len()
                ),
            )
            .await;
        }
        let secrets = self.secret_env(app.id).await.map_err(|e| e.to_string())?;
        let replicas = self.snapshot(app.id);
        // Services a volume restore holds at 0 replicas.
        let held = self.held_services(app.id);
        let mut converged: HashSet<&str> = HashSet::new();
        let mut actions = Vec::new();
        for svc in &stack.services {
            let deps_ready = svc
                .depends_on
                .iter()
                .all(|d| converged.contains(d.service.as_str()));
            if svc.is_task(stack) {
                if release.status == ReleaseStatus::Active {
                    converged.insert(&svc.name);
                    continue;
                }
                match task_state(&rt, &tasks, release.number, &svc.name).await {
                    TaskState::Succeeded => {
                        converged.insert(&svc.name);
                    }
                    TaskState::Failed(why) => {
                        let id = task_container(&tasks, release.number, &svc.name);
                        let tail = match id {
                            Some(id) => self.log_tail(&id).await,
                            None => String::new(),
                        };
                        let why = if tail.is_empty() {
                            format!("task {} {why}", svc.name)
                        } else {
                            format!("task {} {why}; last output: {tail}", svc.name)
                        };
                        self.fail_release_with(
                            app,
                            release,
                            &format!("v{}: {why}", release.number),
                        )
                        .await?;
                        return Ok(Progress::Changed);
                    }
                    // Running (its end wakes the app), or waiting for its
                    // dependencies.
                    TaskState::NotRun if deps_ready => actions.push(Action::RunTask(svc)),
                    TaskState::Running | TaskState::NotRun => {}
                }
                continue;
            }
            let hash = service_hash(svc, app, release, &secrets);
            let mine: Vec<&Replica> = replicas.iter().filter(|r| r.service == svc.name).collect();
            let (cur, old): (Vec<&Replica>, Vec<&Replica>) =
                mine.into_iter().partition(|r| r.hash == hash);
            let target = if held.contains(&svc.name) {
                0
            } else {
                desired_replicas(stack, svc, app)
            };
            let step = svc.deploy.parallelism.max(1) as usize;
            let stop_first = svc.deploy.order.unwrap_or(if svc.has_volume() {
                UpdateOrder::StopFirst
            } else {
                UpdateOrder::StartFirst
            }) == UpdateOrder::StopFirst;
            let all_healthy = cur.iter().all(|r| r.state == ReplicaState::Healthy);
            if cur.len() == target && old.is_empty() && all_healthy {
                converged.insert(&svc.name);
                continue;
            }
            // Stopping a held service waits for nothing.
            if !deps_ready && target > 0 {
                continue;
            }
            if cur.len() < target {
                if stop_first && !old.is_empty() {
                    actions.push(Action::Stop(old.into_iter().take(step).cloned().collect()));
                } else {
                    actions.push(Action::Start(svc, (target - cur.len()).min(step)));
                }
            } else if !old.is_empty() {
                actions.push(Action::Stop(old.into_iter().take(step).cloned().collect()));
            } else if cur.len() > target {
                let surplus = cur.len() - target;
                actions.push(Action::Stop(
                    cur.into_iter().rev().take(surplus).cloned().collect(),
                ));
            }
            // Otherwise replicas are still starting (another run waits).
        }
        if actions.is_empty() {
            let names: HashSet<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
            let strays: Vec<Replica> = replicas
                .iter()
                .filter(|r| !names.contains(r.service.as_str()))
                .cloned()
                .collect();
            if converged.len() == stack.services.len() && !strays.is_empty() {
                // Services the release dropped, or a single-service
                // release's replicas: they go once the stack is up.
                self.stop_replicas(app, strays).await;
                return Ok(Progress::Changed);
            }
            if converged.len() < stack.services.len() {
                return Ok(Progress::WaitUntil(Instant::now() + Duration::from_secs(1)));
            }
            self.remove_old_tasks(&rt, &tasks, release.number).await;
            if release.status != ReleaseStatus::Active {
                self.announce_release(
                    app,
                    release.number,
                    ReleaseStatus::Active,
                    &format!(
                        "v{} is live: {}",
                        release.number,
                        stack
                            .services
                            .iter()
                            .map(|s| if s.is_task(stack) {
                                format!("{} (task done)", s.name)
                            } else {
                                format!("{}×{}", s.name, desired_replicas(stack, s, app))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .await?;
                self.prune_images(app).await;
            }
            return Ok(Progress::Steady);
        }
        if let Some(at) = self.hold(app.id) {
            return Ok(Progress::WaitUntil(at));
        }
        self.ensure_stack_resources(&rt, app, stack).await?;
        let runs = actions.into_iter().map(|a| {
            let rt = rt.clone();
            let secrets = &secrets;
            async move {
                match a {
                    Action::RunTask(svc) => self
                        .run_task(&rt, app, release, svc, secrets)
                        .await
                        .map_err(|e| format!("task {} could not start: {e}", svc.name)),
                    Action::Start(svc, n) => {
                        self.start_service(&rt, app, release, stack, svc, secrets, n)
                            .await
                    }
                    Action::Stop(old) => {
                        self.stop_replicas(app, old).await;
                        Ok(())
                    }
                }
            }
        });
        let results = futures::future::join_all(runs).await;
        self.rebuild_routes();
        let Some(why) = results.into_iter().find_map(Result::err) else {
            return Ok(Progress::Changed);
        };
        if release.status == ReleaseStatus::Active {
            let at = self.crashed(app.id);
            self.event(app.id, "crash", &format!("v{}: {why}", release.number))
                .await;
            return Ok(Progress::WaitUntil(at));
        }
        self.fail_release_with(app, release, &format!("v{}: {why}", release.number))
            .await?;
        Ok(Progress::Changed)
    }

    /// The crash backoff's end, if it is still ahead.
    fn hold(&self, app_id: i64) -> Option<Instant> {
        self.inner
            .apps
            .lock()
            .unwrap()
            .get(&app_id)
            .and_then(|a| a.hold_until)
            .filter(|at| *at > Instant::now())
    }

    /// Counts a failed start of a serving release; returns when to retry.
    fn crashed(&self, app_id: i64) -> Instant {
        let mut apps = self.inner.apps.lock().unwrap();
        let a = apps.entry(app_id).or_default();
        a.crashes += 1;
        let at = Instant::now() + crate::replica::backoff(a.crashes);
        a.hold_until = Some(at);
        at
    }

    /// The stack's network (service names resolve on it) and named volumes.
    async fn ensure_stack_resources(
        &self,
        rt: &Runtime,
        app: &AppRecord,
        stack: &StackSpec,
    ) -> Result<(), String> {
        let labels = HashMap::from([
            (labels::OWNER.to_string(), "deploy".to_string()),
            (APP_ID_LABEL.to_string(), app.id.to_string()),
            (INSTANCE_LABEL.to_string(), self.instance().to_string()),
            (labels::APP.to_string(), app.name.clone()),
        ]);
        rt.ensure_network(&self.app_network(app.id), &labels)
            .await
            .map_err(|e| format!("the app's network: {e}"))?;
        for v in &stack.volumes {
            let mut l = labels.clone();
            l.insert(VOLUME_LABEL.to_string(), v.clone());
            rt.create_volume(&self.volume_name(app.id, v), &l)
                .await
                .map_err(|e| format!("volume {v}: {e}"))?;
        }
        Ok(())
    }

    /// The container of a service (or task) replica.
    pub(crate) fn service_spec(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
        svc: &ServiceSpec,
        secrets: &HashMap<String, String>,
        hash: &str,
    ) -> Result<ContainerSpec, String> {
        let image = svc
            .image
            .clone()
            .ok_or_else(|| format!("service {} has no image in this release", svc.name))?;
        let suffix = hex::encode(rand::random::<[u8; 3]>());
        let mut c = ContainerSpec::new(image)
            .name(format!(
                "slipway-{}-{}-v{}-{}-{suffix}",
                app.name,
                svc.name,
                release.number,
                self.instance()
            ))
            .network(NetworkMode::Named {
                name: self.app_network(app.id),
                aliases: vec![svc.name.clone()],
            })
            .pids_limit(crate::REPLICA_PIDS_LIMIT)
            .security(Security::service())
            .env("SLIPWAY_APP", &app.name)
            .env("SLIPWAY_SERVICE", &svc.name)
            .env("SLIPWAY_RELEASE", release.number.to_string())
            .label(labels::OWNER, "deploy")
            .label(labels::APP, &app.name)
            .label(APP_ID_LABEL, app.id.to_string())
            .label(RELEASE_LABEL, release.number.to_string())
            .label(INSTANCE_LABEL, self.instance())
            .label(SERVICE_LABEL, &svc.name)
            .label(SERVICE_HASH_LABEL, hash);
        c.init = true;
        for (k, v) in &app.spec.env {
            c = c.env(k, v);
        }
        for (k, v) in secrets {
            c = c.env(k, v);
        }
        for (k, v) in &svc.environment {
            c = c.env(k, v);
        }
        for (k, v) in &svc.labels {
            c = c.label(k, v);
        }
        if let Some(cmd) = &svc.command {
            c = c.cmd(cmd.clone());
        }
        if let Some(ep) = &svc.entrypoint {
            c = c.entrypoint(ep.clone());
        }
        if let Some(dir) = &svc.working_dir {
            c = c.working_dir(dir);
        }
        if let Some(user) = &svc.user {
            c = c.user(user);
        }
        if let Some(ing) = &svc.ingress {
            c = c.publish(ing.port, 0);
        }
        for p in &svc.publish {
            c.ports.push(slipway_runtime::PortPublish {
                container_port: p.container,
                host_port: p.host,
                protocol: if p.protocol == "udp" {
                    slipway_runtime::Protocol::Udp
                } else {
                    slipway_runtime::Protocol::Tcp
                },
                host_ip: None,
            });
        }
        for m in &svc.mounts {
            c = match &m.source {
                MountSource::Volume(v) => c.mount(slipway_runtime::Mount::Volume {
                    name: self.volume_name(app.id, v),
                    target: m.target.clone(),
                    read_only: m.read_only,
                }),
                MountSource::Tmpfs => c.tmpfs(&m.target, Some(256 << 20)),
                MountSource::Repo(dir) => c.bind(
                    self.stack_files_dir(app.id, &release.sha).join(dir),
                    &m.target,
                    true,
                ),
            };
        }
        if let Some(h) = &svc.healthcheck {
            c = c.healthcheck(slipway_runtime::HealthCheck {
                test: h.test.clone(),
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                retries: h.retries,
                start_period: Duration::from_millis(h.start_period_ms),
            });
        }
        let limits = self.inner.options.limits.clamp(slipway_domain::Resources {
            memory_bytes: svc.deploy.memory_bytes,
            nano_cpus: svc.deploy.nano_cpus,
        });
        Ok(c.limits(limits.memory_bytes, limits.nano_cpus))
    }

    /// Creates a container, copies the service's secrets in, starts it.
    pub(crate) async fn create_and_start(
        &self,
        rt: &Runtime,
        spec: &ContainerSpec,
        svc: &ServiceSpec,
        secrets: &HashMap<String, String>,
    ) -> Result<String, (Option<String>, String)> {
        let id = rt.create(spec).await.map_err(|e| (None, e.to_string()))?;
        if !svc.secrets.is_empty() {
            let tar = slipway_runtime::secrets_archive(&svc.secrets, secrets)
                .map_err(|e| (Some(id.clone()), e))?;
            rt.upload(&id, "/", tar.into())
                .await
                .map_err(|e| (Some(id.clone()), e.to_string()))?;
        }
        rt.start(&id)
            .await
            .map_err(|e| (Some(id.clone()), e.to_string()))?;
        Ok(id)
    }

    /// Starts the one-off task of this release (its end wakes the app).
    async fn run_task(
        &self,
        rt: &Runtime,
        app: &AppRecord,
        release: &ReleaseRecord,
        svc: &ServiceSpec,
        secrets: &HashMap<String, String>,
    ) -> Result<(), String> {
        let spec = self
            .service_spec(app, release, svc, secrets, "task")?
            .label(TASK_LABEL, "1");
        let id = match self.create_and_start(rt, &spec, svc, secrets).await {
            Ok(id) => id,
            Err((id, why)) => {
                if let Some(id) = id {
                    let _ = rt.remove(&id).await;
                }
                return Err(why);
            }
        };
        self.collect_logs(app.id, &id, release.number, &svc.name);
        self.event(
            app.id,
            "task",
            &format!("task {} of v{} started", svc.name, release.number),
        )
        .await;
        Ok(())
    }

    /// Starts `n` replicas of a service and waits until each is ready: its
    /// health check passed (or, without one, the proxy's HTTP check for a
    /// service with ingress, or still running shortly after its start).
    #[allow(clippy::too_many_arguments)]
    async fn start_service(
        &self,
        rt: &Runtime,
        app: &AppRecord,
        release: &ReleaseRecord,
        stack: &StackSpec,
        svc: &ServiceSpec,
        secrets: &HashMap<String, String>,
        n: usize,
    ) -> Result<(), String> {
        let _ = stack;
        let hash = service_hash(svc, app, release, secrets);
        let spec = self.service_spec(app, release, svc, secrets, &hash)?;
        let starts = (0..n).map(|_| {
            let mut spec = spec.clone();
            spec.name = spec
                .name
                .map(|n| format!("{n}{}", hex::encode(rand::random::<[u8; 2]>())));
            let hash = hash.clone();
            async move {
                let id = self.create_and_start(rt, &spec, svc, secrets).await?;
                let addr = match &svc.ingress {
                    Some(ing) => {
                        let port = rt
                            .host_port(&id, ing.port)
                            .await
                            .map_err(|e| (Some(id.clone()), e.to_string()))?;
                        std::net::SocketAddr::from(([127, 0, 0, 1], port))
                    }
                    None => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                };
                self.remember(
                    app.id,
                    Replica {
                        container: id.clone(),
                        release: release.number,
                        addr,
                        state: ReplicaState::Starting,
                        restarts: 0,
                        started_at: chrono::Utc::now(),
                        limits: slipway_domain::Resources {
                            memory_bytes: spec.resources.memory_bytes,
                            nano_cpus: spec.resources.nano_cpus,
                        },
                        service: svc.name.clone(),
                        hash,
                    },
                );
                self.wait_service_ready(rt, &id, svc, addr)
                    .await
                    .map_err(|why| (Some(id.clone()), why))?;
                Ok::<String, (Option<String>, String)>(id)
            }
        });
        let mut failure = None;
        for r in futures::future::join_all(starts).await {
            match r {
                Ok(id) => self.mark_ready(app.id, &id),
                Err((id, why)) => {
                    let mut why = format!("service {}: {why}", svc.name);
                    if let Some(id) = id {
                        let tail = self.log_tail(&id).await;
                        if !tail.is_empty() {
                            why = format!("{why}; last output: {tail}");
                        }
                        self.forget(app.id, &id);
                        let _ = rt.remove(&id).await;
                    }
                    failure = Some(why);
                }
            }
        }
        match failure {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    async fn wait_service_ready(
        &self,
        rt: &Runtime,
        id: &str,
        svc: &ServiceSpec,
        addr: std::net::SocketAddr,
    ) -> Result<(), String> {
        if let Some(h) = &svc.healthcheck {
            let budget = Duration::from_millis(
                h.start_period_ms + (h.interval_ms + h.timeout_ms) * (u64::from(h.retries) + 1),
            ) + Duration::from_secs(30);
            return wait_engine_health(rt, id, budget.min(MAX_HEALTH_WAIT), &h.test.join(" "))
                .await;
        }
        // No health check in the file, but the image has a HEALTHCHECK: the
        // engine runs it, and dependants wait for it like `docker compose`.
        if rt
            .inspect(id)
            .await
            .map(|s| s.health.is_some())
            .unwrap_or(false)
        {
            return wait_engine_health(rt, id, MAX_HEALTH_WAIT, "the image's HEALTHCHECK").await;
        }
        if let Some(ing) = &svc.ingress {
            let health = HealthSpec {
                path: ing.health_path.clone(),
                ..HealthSpec::default()
            };
            return match probe::wait_ready(rt, id, addr, ing.port, &health).await {
                Ok(()) => Ok(()),
                Err(NotReady::Timeout(why)) => Err(format!(
                    "did not answer {} on port {} within {} s: {why}",
                    ing.health_path,
                    ing.port,
                    health.start_timeout_ms / 1000
                )),
                Err(NotReady::Exited(code)) => {
                    Err(format!("exited with code {code} before it became healthy"))
                }
                Err(NotReady::Unreachable(why, _)) => Err(format!("cannot be reached: {why}")),
            };
        }
        tokio::time::sleep(SETTLE).await;
        let state = rt.inspect(id).await.map_err(|e| e.to_string())?;
        if state.running {
            Ok(())
        } else {
            Err(format!(
                "exited with code {} right after it started",
                state.exit_code.unwrap_or(-1)
            ))
        }
    }

    /// Takes over running service containers this process does not know
    /// (after a restart): running and not unhealthy ones are kept, with
    /// their digest, so an unchanged service is not restarted.
    async fn adopt_stack(&self, app: &AppRecord, found: &[ContainerInfo]) -> bool {
        let Some(rt) = self.runtime().cloned() else {
            return false;
        };
        let mut changed = false;
        for c in self.unadopted(app.id, found) {
            changed = true;
            let Some(service) = c.labels.get(SERVICE_LABEL).cloned() else {
                // A replica of a single-service release found after a
                // restart: removed, the stack's own services replace it.
                let _ = rt.stop(&c.id, 10).await;
                let _ = rt.remove(&c.id).await;
                continue;
            };
            let release = crate::release_label(&c.labels);
            let Ok(state) = rt.inspect(&c.id).await else {
                continue;
            };
            if state.health.as_deref() == Some("unhealthy") {
                let _ = rt.stop(&c.id, 10).await;
                let _ = rt.remove(&c.id).await;
                continue;
            }
            let addr = state
                .ports
                .iter()
                .find(|p| p.container_port.ends_with("/tcp"))
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p.host_port)))
                .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            self.remember(
                app.id,
                Replica {
                    container: c.id.clone(),
                    release,
                    addr,
                    state: ReplicaState::Healthy,
                    restarts: 0,
                    started_at: chrono::Utc::now(),
                    limits: Default::default(),
                    service,
                    hash: c
                        .labels
                        .get(SERVICE_HASH_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                },
            );
            tracing::info!(app = %app.name, container = %c.id, "stack replica adopted");
        }
        if changed {
            self.rebuild_routes();
        }
        changed
    }

    /// Removes the exited task containers of other releases (the current
    /// release's stay: their exit codes are its tasks' results).
    async fn remove_old_tasks(&self, rt: &Runtime, tasks: &[ContainerInfo], current: i64) {
        for t in tasks {
            if crate::release_label(&t.labels) != current && t.state != "running" {
                let _ = rt.remove(&t.id).await;
            }
        }
    }
}

/// The host names of each service with ingress: explicit domains, or
/// the app's host names for the first service on `/` and every service on
/// a sub-path, `<service>.<app host>` for the other services on `/`.
pub(crate) fn service_hosts<'a>(
    app_hosts: &[String],
    stack: &'a StackSpec,
) -> Vec<(&'a ServiceSpec, Vec<String>)> {
    let mut root_taken = false;
    let mut out = Vec::new();
    for svc in &stack.services {
        let Some(ing) = &svc.ingress else { continue };
        let hosts = if !ing.domains.is_empty() {
            ing.domains.clone()
        } else if ing.path != "/" || !root_taken {
            root_taken |= ing.path == "/";
            app_hosts.to_vec()
        } else {
            app_hosts
                .iter()
                .filter(|h| !h.starts_with("*."))
                .map(|h| format!("{}.{h}", svc.name))
                .collect()
        };
        out.push((svc, hosts));
    }
    out
}

/// Replicas a service should run on this (single) node: `global` is one
/// per node; otherwise the app's per-service scale, else the file's.
pub(crate) fn desired_replicas(stack: &StackSpec, svc: &ServiceSpec, app: &AppRecord) -> usize {
    match svc.deploy.mode {
        slipway_domain::stack::DeployMode::Global => 1,
        slipway_domain::stack::DeployMode::Replicated => {
            stack.replicas_of(svc, &app.spec.service_replicas) as usize
        }
    }
}

/// Label carrying the stack volume name of a Docker volume.
pub const VOLUME_LABEL: &str = "io.slipway.volume";

/// Waits until the engine reports the container healthy (its health
/// check passed), at most `budget`.
async fn wait_engine_health(
    rt: &Runtime,
    id: &str,
    budget: Duration,
    what: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + budget;
    loop {
        let state = rt.inspect(id).await.map_err(|e| e.to_string())?;
        if !state.running {
            return Err(format!(
                "exited with code {} before it became healthy",
                state.exit_code.unwrap_or(-1)
            ));
        }
        match state.health.as_deref() {
            Some("healthy") => return Ok(()),
            Some("unhealthy") => return Err(format!("failed its health check {what:?}")),
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "did not pass its health check {what:?} within {} s",
                budget.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where a one-off task of a release is.
enum TaskState {
    NotRun,
    Running,
    Succeeded,
    Failed(String),
}

fn task_container(tasks: &[ContainerInfo], release: i64, service: &str) -> Option<String> {
    tasks
        .iter()
        .filter(|t| {
            t.labels.get(SERVICE_LABEL).map(String::as_str) == Some(service)
                && crate::release_label(&t.labels) == release
        })
        .map(|t| t.id.clone())
        .next()
}

async fn task_state(
    rt: &Runtime,
    tasks: &[ContainerInfo],
    release: i64,
    service: &str,
) -> TaskState {
    let Some(id) = task_container(tasks, release, service) else {
        return TaskState::NotRun;
    };
    match rt.inspect(&id).await {
        Ok(s) if s.running => TaskState::Running,
        Ok(s) if s.exit_code == Some(0) => TaskState::Succeeded,
        Ok(s) if s.oom_killed => TaskState::Failed("was killed: out of memory".into()),
        Ok(s) => TaskState::Failed(format!("exited with code {}", s.exit_code.unwrap_or(-1))),
        Err(_) => TaskState::NotRun,
    }
}

/// The digest of what a service's containers run: a release that leaves
/// it unchanged keeps them. The release number is not in it; the commit
/// is only when the service mounts repository files.
fn service_hash(
    svc: &ServiceSpec,
    app: &AppRecord,
    release: &ReleaseRecord,
    secrets: &HashMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    // The image by content: a new tag of the same image changes nothing.
    let same = ServiceSpec {
        image: svc.image_id.clone().or_else(|| svc.image.clone()),
        ..svc.clone()
    };
    h.update(serde_json::to_vec(&same).unwrap_or_default());
    h.update(serde_json::to_vec(&app.spec.env).unwrap_or_default());
    let mut keys: Vec<_> = secrets.iter().collect();
    keys.sort();
    for (k, v) in keys {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    if svc.binds_repo() {
        h.update(release.sha.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_domain::AppSpec;

    fn app() -> AppRecord {
        AppRecord {
            id: 1,
            name: "shop".into(),
            repo_id: 1,
            owner_id: 1,
            spec: AppSpec::default(),
            release: Some(1),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn release(sha: &str) -> ReleaseRecord {
        ReleaseRecord {
            id: 1,
            app_id: 1,
            number: 1,
            image: String::new(),
            sha: sha.into(),
            pipeline_id: None,
            spec: AppSpec::default(),
            description: String::new(),
            created_by: "alice".into(),
            status: ReleaseStatus::Active,
            error: None,
            created_at: chrono::Utc::now(),
        }
    }

    fn svc(tag: &str, id: &str) -> ServiceSpec {
        ServiceSpec {
            name: "db".into(),
            image: Some(tag.into()),
            image_id: Some(id.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_tag_of_the_same_image_keeps_the_service_but_changes_do_not() {
        let none = HashMap::new();
        let (a, r1, r2) = (app(), release("aaa"), release("bbb"));
        let base = service_hash(&svc("app-db:aaa", "sha256:1"), &a, &r1, &none);
        // Rebuilt at another commit to the same content: unchanged.
        assert_eq!(
            base,
            service_hash(&svc("app-db:bbb", "sha256:1"), &a, &r2, &none)
        );
        // Another image, environment, secret or app config: changed.
        assert_ne!(
            base,
            service_hash(&svc("app-db:bbb", "sha256:2"), &a, &r2, &none)
        );
        let mut env = svc("app-db:aaa", "sha256:1");
        env.environment.insert("X".into(), "1".into());
        assert_ne!(base, service_hash(&env, &a, &r1, &none));
        let secret = HashMap::from([("TOKEN".to_string(), "s".to_string())]);
        assert_ne!(
            base,
            service_hash(&svc("app-db:aaa", "sha256:1"), &a, &r1, &secret)
        );
        let mut configured = app();
        configured.spec.env.insert("GREETING".into(), "hi".into());
        assert_ne!(
            base,
            service_hash(&svc("app-db:aaa", "sha256:1"), &configured, &r1, &none)
        );
        // Repository files mounted: the commit counts.
        let mut mounted = svc("app-db:aaa", "sha256:1");
        mounted.mounts.push(slipway_domain::stack::Mount {
            source: MountSource::Repo("conf".into()),
            target: "/conf".into(),
            read_only: true,
        });
        assert_ne!(
            service_hash(&mounted, &a, &r1, &none),
            service_hash(&mounted, &a, &r2, &none)
        );
    }

    #[test]
    fn secrets_become_readable_files_under_run_secrets() {
        let mut s = svc("x", "y");
        s.secrets = vec!["db_password".into()];
        let values = HashMap::from([("db_password".to_string(), "pw".to_string())]);
        let tar = slipway_runtime::secrets_archive(&s.secrets, &values).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(
            entry.path().unwrap().to_str(),
            Some("run/secrets/db_password")
        );
        assert_eq!(entry.header().mode().unwrap(), 0o444);
        let err = slipway_runtime::secrets_archive(&s.secrets, &HashMap::new()).unwrap_err();
        assert!(err.contains("slipway app secret set"), "{err}");
    }
}
