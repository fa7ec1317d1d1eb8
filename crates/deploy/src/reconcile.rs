//! The reconcile loop: one task per app makes the engine's replicas match
//! the app's desired release and replica count.
//!
//! Each run observes the app's containers (by label), handles crashes
//! (removed from the routes at once, restarted with exponential backoff),
//! adopts replicas it does not know (after a server restart), then takes one
//! step of the rollout: start new replicas within the surge budget and wait
//! until they pass their health check, or drain and stop old or surplus
//! ones. It runs again until nothing is left to do. A new release whose
//! replicas never become healthy is marked failed and the app goes back to
//! its last active release, which never stopped serving.
//!
//! In cluster mode a run writes the app's demand instead (see
//! `cluster_demand`): agents run the replicas.

use crate::probe::{self, NotReady};
use crate::replica::{backoff, container_spec, Replica, ReplicaState};
use crate::routes::AppRoute;
use crate::{Deployer, APP_ID_LABEL, INSTANCE_LABEL};
use futures::StreamExt;
use slipway_domain::{AppRecord, ReleaseRecord, ReleaseStatus};
use slipway_runtime::{labels, ContainerInfo, LabelFilter, NetworkMode};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often every app is reconciled even if nothing woke it.
const RESYNC: Duration = Duration::from_secs(5);
/// Longest wait for a draining replica's requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between SIGTERM and SIGKILL when a replica stops.
const STOP_GRACE_SECS: i64 = 10;

/// What one reconcile run achieved.
pub(crate) enum Progress {
    /// Something changed; run again.
    Changed,
    /// Desired and actual state agree.
    Steady,
    /// Nothing to do before this instant (crash backoff).
    WaitUntil(Instant),
    /// The app no longer exists; the task ends.
    Gone,
}

/// The images a release runs: its own, and every service's of a stack.
fn release_images(r: &ReleaseRecord) -> Vec<&str> {
    let mut images = vec![r.image.as_str()];
    if let Some(stack) = &r.spec.stack {
        images.extend(stack.services.iter().filter_map(|s| s.image.as_deref()));
    }
    images
}

/// Starts the periodic resync and the container-death watcher.
pub(crate) fn start(d: Deployer) {
    let resync = d.clone();
    tokio::spawn(async move {
        loop {
            match resync.store().list_apps().await {
                Ok(apps) => {
                    let mut ids: HashSet<i64> = apps.iter().map(|a| a.id).collect();
                    ids.extend(resync.inner.apps.lock().unwrap().keys().copied());
                    for id in ids {
                        resync.wake(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "deploy resync cannot list apps"),
            }
            tokio::time::sleep(RESYNC).await;
        }
    });
    tokio::spawn(watch_deaths(d));
}

/// Reacts to replica containers dying: out of the routes at once, then a
/// reconcile run restarts them.
async fn watch_deaths(d: Deployer) {
    let Some(rt) = d.runtime().cloned() else {
        return;
    };
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
            (
                "label".to_string(),
                vec![format!("{INSTANCE_LABEL}={}", d.instance())],
            ),
        ]);
        let mut events = rt
            .docker()
            .events(Some(bollard::system::EventsOptions::<String> {
                filters,
                ..Default::default()
            }));
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { break };
            let Some(actor) = ev.actor else { continue };
            let attrs = actor.attributes.unwrap_or_default();
            let Some(app_id) = attrs.get(APP_ID_LABEL).and_then(|v| v.parse::<i64>().ok()) else {
                continue;
            };
            let id = actor.id.unwrap_or_default();
            let was_routed = {
                let mut apps = d.inner.apps.lock().unwrap();
                apps.get_mut(&app_id)
                    .and_then(|a| a.replicas.iter_mut().find(|r| r.container == id))
                    .map(|r| {
                        let routed = r.state == ReplicaState::Healthy;
                        r.state = ReplicaState::Draining;
                        routed
                    })
                    .unwrap_or(false)
            };
            if was_routed {
                d.rebuild_routes();
            }
            d.wake(app_id);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The task that reconciles one app whenever it is woken.
pub(crate) fn spawn_app_task(d: Deployer, app_id: i64, notify: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            notify.notified().await;
            for _ in 0..200 {
                match d.reconcile_once(app_id).await {
                    Ok(Progress::Changed) => continue,
                    Ok(Progress::Steady) => break,
                    Ok(Progress::WaitUntil(at)) => {
                        let n = notify.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at.into()).await;
                            n.notify_one();
                        });
                        break;
                    }
                    Ok(Progress::Gone) => {
                        d.inner.wakers.lock().unwrap().remove(&app_id);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(app_id, error = %e, "reconcile failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        break;
                    }
                }
            }
        }
    });
}

impl Deployer {
    pub(crate) fn app_filter(&self, app_id: i64) -> LabelFilter {
        LabelFilter::managed()
            .with(labels::OWNER, "deploy")
            .with(INSTANCE_LABEL, self.instance())
            .with(APP_ID_LABEL, app_id.to_string())
    }

    pub(crate) async fn event(&self, app_id: i64, kind: &str, message: &str) {
        tracing::info!(app_id, kind, "{message}");
        if let Err(e) = self.store().add_app_event(app_id, kind, message).await {
            tracing::warn!(error = %e, "cannot record an app event");
        }
    }

    pub(crate) fn snapshot(&self, app_id: i64) -> Vec<Replica> {
        self.inner
            .apps
            .lock()
            .unwrap()
            .get(&app_id)
            .map(|a| a.replicas.clone())
            .unwrap_or_default()
    }

    pub(crate) fn set_state(&self, app_id: i64, container: &str, state: ReplicaState) {
        if let Some(r) = self
            .inner
            .apps
            .lock()
            .unwrap()
            .get_mut(&app_id)
            .and_then(|a| a.replicas.iter_mut().find(|r| r.container == container))
        {
            r.state = state;
        }
    }

    /// A new replica passed its health check: it gets traffic, and the
    /// crash backoff starts over.
    pub(crate) fn mark_ready(&self, app_id: i64, container: &str) {
        self.set_state(app_id, container, ReplicaState::Healthy);
        if let Some(a) = self.inner.apps.lock().unwrap().get_mut(&app_id) {
            a.crashes = 0;
            a.hold_until = None;
        }
    }

    pub(crate) fn remember(&self, app_id: i64, replica: Replica) {
        self.collect_logs(
            app_id,
            &replica.container,
            replica.release,
            &replica.service,
        );
        self.inner
            .apps
            .lock()
            .unwrap()
            .entry(app_id)
            .or_default()
            .replicas
            .push(replica);
    }

    /// Restarts of the crashed replica a new one replaces (0 when it
    /// replaces none).
    fn take_restarts(&self, app_id: i64) -> u32 {
        let mut apps = self.inner.apps.lock().unwrap();
        apps.get_mut(&app_id)
            .and_then(|a| a.replacing.pop_front())
            .unwrap_or(0)
    }

    /// The app's own network: its replicas (and, later, the other services
    /// of its stack) reach each other on it; other tenants' containers are
    /// on other networks and cannot reach them, only the proxy can (through
    /// the port each replica publishes on 127.0.0.1).
    pub(crate) fn app_network(&self, app_id: i64) -> String {
        format!("slipway-app-{}-{app_id}-net", self.instance())
    }

    /// Removes a deleted app's network once its replicas are gone (they
    /// drain first), giving up after two minutes; a later start's clean-up
    /// catches what is left.
    fn remove_app_network_later(&self, rt: slipway_runtime::Runtime, app_id: i64) {
        let name = self.app_network(app_id);
        tokio::spawn(async move {
            for _ in 0..120 {
                match rt.remove_network(&name).await {
                    Ok(()) => return,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
            tracing::warn!(network = %name, "could not remove a deleted app's network");
        });
    }

    pub(crate) fn forget(&self, app_id: i64, container: &str) {
        if let Some(a) = self.inner.apps.lock().unwrap().get_mut(&app_id) {
            a.replicas.retain(|r| r.container != container);
        }
    }

    async fn reconcile_once(&self, app_id: i64) -> Result<Progress, String> {
        if let Some(cluster) = self.cluster().cloned() {
            // Cluster mode: write the demand; agents run the replicas.
            return self.reconcile_cluster(&cluster, app_id).await;
        }
        let rt = self
            .runtime()
            .cloned()
            .ok_or("the Docker Engine is not connected")?;
        let app = self
            .store()
            .app_by_id(app_id)
            .await
            .map_err(|e| e.to_string())?;
        let mut found = rt
            .list_containers(&self.app_filter(app_id))
            .await
            .map_err(|e| e.to_string())?;
        // One-off commands (`slipway run`) are not replicas.
        found.retain(|c| !c.labels.contains_key(crate::RUN_LABEL));
        let Some(app) = app else {
            for c in &found {
                self.drain_and_stop(app_id, "", c.id.clone(), None).await;
            }
            self.inner.apps.lock().unwrap().remove(&app_id);
            self.rebuild_routes();
            self.remove_app_logs(app_id).await;
            self.remove_app_network_later(rt, app_id);
            return Ok(Progress::Gone);
        };
        let release = self.current_release(&app).await?;
        self.refresh_route(&app, release.as_ref());
        if let Some(rel) = release
            .as_ref()
            .filter(|r| r.status != ReleaseStatus::Failed)
        {
            if let Some(stack) = &rel.spec.stack {
                self.refresh_stack_routes(&app, stack);
                return self.reconcile_stack(&app, rel, stack, &found).await;
            }
        }
        if self.handle_deaths(&app, &found).await {
            return Ok(Progress::Changed);
        }
        if self.adopt(&app, &found).await {
            return Ok(Progress::Changed);
        }
        let replicas = self.snapshot(app_id);
        let Some(release) = release.filter(|r| r.status != ReleaseStatus::Failed) else {
            // Nothing should run: stop whatever does.
            if replicas.is_empty() {
                return Ok(Progress::Steady);
            }
            self.stop_replicas(&app, replicas).await;
            return Ok(Progress::Changed);
        };
        self.step(&app, &release, replicas).await
    }

    /// Keeps the app's hosts and health check current for route rebuilds.
    /// The release the app points at, if any.
    pub(crate) async fn current_release(
        &self,
        app: &AppRecord,
    ) -> Result<Option<ReleaseRecord>, String> {
        match app.release {
            Some(n) => self
                .store()
                .release(app.id, n)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    fn refresh_route(&self, app: &AppRecord, release: Option<&ReleaseRecord>) {
        let route = AppRoute {
            app: app.name.clone(),
            hosts: self.hosts(app),
            health: release.map_or_else(|| app.spec.health.clone(), |r| r.spec.health.clone()),
            sticky: app.spec.sticky,
        };
        let changed = {
            let mut apps = self.inner.apps.lock().unwrap();
            let entry = apps.entry(app.id).or_default();
            let mut changed = entry.route.as_ref() != Some(&route);
            entry.route = Some(route);
            if release.is_none_or(|r| r.spec.stack.is_none()) && !entry.service_routes.is_empty() {
                entry.service_routes.clear();
                changed = true;
            }
            changed
        };
        if changed {
            self.rebuild_routes();
        }
    }

    /// Removes dead containers and replicas whose container vanished;
    /// schedules their restart after a backoff. True when any was found.
    pub(crate) async fn handle_deaths(&self, app: &AppRecord, found: &[ContainerInfo]) -> bool {
        let rt = self.runtime().cloned().expect("runtime");
        let live: HashSet<&str> = found
            .iter()
            .filter(|c| c.state == "running")
            .map(|c| c.id.as_str())
            .collect();
        let mut dead: Vec<(String, String)> = Vec::new();
        for c in found.iter().filter(|c| c.state != "running") {
            let why = match rt.inspect(&c.id).await {
                Ok(s) if s.oom_killed => "was killed: out of memory".to_string(),
                Ok(s) => format!("exited with code {}", s.exit_code.unwrap_or(-1)),
                Err(_) => "disappeared".to_string(),
            };
            dead.push((c.id.clone(), why));
        }
        for r in self.snapshot(app.id) {
            if !live.contains(r.container.as_str())
                && !dead.iter().any(|(id, _)| *id == r.container)
            {
                dead.push((r.container.clone(), "was removed".into()));
            }
        }
        if dead.is_empty() {
            return false;
        }
        let delay = {
            let mut apps = self.inner.apps.lock().unwrap();
            let a = apps.entry(app.id).or_default();
            let (gone, kept): (Vec<Replica>, Vec<Replica>) = std::mem::take(&mut a.replicas)
                .into_iter()
                .partition(|r| dead.iter().any(|(id, _)| *id == r.container));
            a.replicas = kept;
            // Their replacements carry the slot's restart count on.
            a.replacing.extend(gone.iter().map(|r| r.restarts + 1));
            while a.replacing.len() > 64 {
                a.replacing.pop_front();
            }
            a.crashes += 1;
            a.restarts += dead.len() as u32;
            let delay = backoff(a.crashes);
            a.hold_until = Some(Instant::now() + delay);
            delay
        };
        self.rebuild_routes();
        for (id, why) in &dead {
            self.settle_logs(app.id, id, None).await;
            let _ = rt.remove(id).await;
            let short: String = id.chars().take(12).collect();
            self.event(
                app.id,
                "crash",
                &format!(
                    "replica {short} {why}; a new one starts in {} s",
                    delay.as_secs()
                ),
            )
            .await;
        }
        true
    }

    /// Running containers of the app this process does not know yet (after a
    /// restart): what the adopt steps take over.
    pub(crate) fn unadopted<'a>(
        &self,
        app_id: i64,
        found: &'a [ContainerInfo],
    ) -> Vec<&'a ContainerInfo> {
        let known: HashSet<String> = self
            .snapshot(app_id)
            .into_iter()
            .map(|r| r.container)
            .collect();
        found
            .iter()
            .filter(|c| c.state == "running" && !known.contains(&c.id))
            .collect()
    }

    /// Takes over running replicas this process does not know yet (after a
    /// restart): healthy ones go back into the routes, others are replaced.
    async fn adopt(&self, app: &AppRecord, found: &[ContainerInfo]) -> bool {
        let rt = self.runtime().cloned().expect("runtime");
        let mut changed = false;
        for c in self.unadopted(app.id, found) {
            let release_no = crate::release_label(&c.labels);
            let release = self
                .store()
                .release(app.id, release_no)
                .await
                .ok()
                .flatten();
            let addr = match (&release, rt.inspect(&c.id).await) {
                (Some(rel), Ok(state)) => state
                    .ports
                    .iter()
                    .find(|p| p.container_port == format!("{}/tcp", rel.spec.port))
                    .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p.host_port))),
                _ => None,
            };
            let healthy = match (&release, addr) {
                (Some(rel), Some(addr)) => probe::check(&probe::client(), addr, &rel.spec.health)
                    .await
                    .is_ok(),
                _ => false,
            };
            changed = true;
            match addr {
                Some(addr) if healthy => {
                    self.remember(
                        app.id,
                        Replica {
                            container: c.id.clone(),
                            release: release_no,
                            addr,
                            state: ReplicaState::Healthy,
                            restarts: 0,
                            started_at: chrono::Utc::now(),
                            limits: release
                                .as_ref()
                                .map(|r| self.replica_limits(&r.spec))
                                .unwrap_or_default(),
                            service: String::new(),
                            hash: String::new(),
                        },
                    );
                    tracing::info!(app = %app.name, container = %c.id, "replica adopted");
                }
                _ => {
                    let _ = rt.stop(&c.id, STOP_GRACE_SECS).await;
                    self.settle_logs(app.id, &c.id, Some(release_no)).await;
                    let _ = rt.remove(&c.id).await;
                }
            }
        }
        if changed {
            self.rebuild_routes();
        }
        changed
    }

    /// One step of the rollout towards `release` with the app's replica count.
    async fn step(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
        replicas: Vec<Replica>,
    ) -> Result<Progress, String> {
        let target = app.spec.replicas as usize;
        let (cur, old): (Vec<Replica>, Vec<Replica>) = replicas
            .into_iter()
            .partition(|r| r.release == release.number);
        if release.status == ReleaseStatus::Pending && (cur.len() < target || !old.is_empty()) {
            let _ = self
                .store()
                .set_release_status(app.id, release.number, ReleaseStatus::Deploying, None)
                .await;
            self.inner.release_changed.notify_waiters();
            self.event(
                app.id,
                "rollout",
                &format!("rolling out v{} to {target} replica(s)", release.number),
            )
            .await;
        }
        if cur.len() < target {
            let hold = self
                .inner
                .apps
                .lock()
                .unwrap()
                .get(&app.id)
                .and_then(|a| a.hold_until);
            if let Some(at) = hold.filter(|at| *at > Instant::now()) {
                return Ok(Progress::WaitUntil(at));
            }
            let surge = release.spec.max_surge as usize;
            let budget = (target + surge).saturating_sub(cur.len() + old.len());
            if budget == 0 {
                let k = (release.spec.max_unavailable as usize)
                    .min(old.len())
                    .max(1);
                self.stop_replicas(app, old.into_iter().take(k).collect())
                    .await;
                return Ok(Progress::Changed);
            }
            let k = (target - cur.len()).min(budget);
            return self.start_replicas(app, release, k).await;
        }
        if !old.is_empty() {
            let excess = (cur.len() + old.len())
                .saturating_sub(target)
                .min(old.len());
            self.stop_replicas(app, old.into_iter().take(excess.max(1)).collect())
                .await;
            return Ok(Progress::Changed);
        }
        if cur.len() > target {
            let n = cur.len() - target;
            self.stop_replicas(app, cur.into_iter().rev().take(n).collect())
                .await;
            return Ok(Progress::Changed);
        }
        if release.status != ReleaseStatus::Active && target > 0 {
            self.announce_release(
                app,
                release.number,
                ReleaseStatus::Active,
                &format!("v{} is live on {target} replica(s)", release.number),
            )
            .await?;
            self.prune_images(app).await;
        }
        Ok(Progress::Steady)
    }

    /// Starts `k` replicas of `release` at once and waits until each is
    /// healthy; healthy ones join the routes. A failure of a new release
    /// fails the rollout and reverts the app to its last active release.
    async fn start_replicas(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
        k: usize,
    ) -> Result<Progress, String> {
        let rt = self.runtime().cloned().expect("runtime");
        let secrets = self.secret_env(app.id).await.map_err(|e| e.to_string())?;
        rt.ensure_network(
            &self.app_network(app.id),
            &HashMap::from([
                (labels::OWNER.to_string(), "deploy".to_string()),
                (crate::APP_ID_LABEL.to_string(), app.id.to_string()),
                (
                    crate::INSTANCE_LABEL.to_string(),
                    self.instance().to_string(),
                ),
            ]),
        )
        .await
        .map_err(|e| format!("the app's network: {e}"))?;
        let starts = (0..k).map(|_| {
            let limits = self.replica_limits(&release.spec);
            let spec = container_spec(app, release, self.instance(), &secrets, limits).network(
                NetworkMode::Named {
                    name: self.app_network(app.id),
                    aliases: vec![app.name.clone()],
                },
            );
            let rt = rt.clone();
            async move {
                let id = rt.create(&spec).await.map_err(|e| (None, e.to_string()))?;
                rt.start(&id)
                    .await
                    .map_err(|e| (Some(id.clone()), e.to_string()))?;
                let port = rt
                    .host_port(&id, release.spec.port)
                    .await
                    .map_err(|e| (Some(id.clone()), e.to_string()))?;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let restarts = self.take_restarts(app.id);
                self.remember(
                    app.id,
                    Replica {
                        container: id.clone(),
                        release: release.number,
                        addr,
                        state: ReplicaState::Starting,
                        restarts,
                        started_at: chrono::Utc::now(),
                        limits,
                        service: String::new(),
                        hash: String::new(),
                    },
                );
                match probe::wait_ready(&rt, &id, addr, release.spec.port, &release.spec.health)
                    .await
                {
                    Ok(()) => Ok(id),
                    Err(NotReady::Timeout(why)) => Err((
                        Some(id),
                        format!(
                            "did not pass its health check within {} s: {why}",
                            release.spec.health.start_timeout_ms / 1000
                        ),
                    )),
                    Err(NotReady::Exited(code)) => Err((
                        Some(id),
                        format!("exited with code {code} before it became healthy"),
                    )),
                    Err(NotReady::Unreachable(why, others)) => Err((
                        Some(id),
                        format!(
                            "cannot be reached: {why}{}",
                            crate::probe::port_hint(&app.name, release.spec.port, &others)
                        ),
                    )),
                }
            }
        });
        let results = futures::future::join_all(starts).await;
        let mut failure = None;
        for r in results {
            match r {
                Ok(id) => self.mark_ready(app.id, &id),
                Err((id, why)) => {
                    if let Some(id) = id {
                        let tail = self.log_tail(&id).await;
                        self.forget(app.id, &id);
                        let _ = rt.remove(&id).await;
                        failure = Some(if tail.is_empty() {
                            why
                        } else {
                            format!("{why}; last output: {tail}")
                        });
                    } else {
                        failure = Some(why);
                    }
                }
            }
        }
        self.rebuild_routes();
        let Some(why) = failure else {
            return Ok(Progress::Changed);
        };
        if release.status == ReleaseStatus::Active {
            // A release that served before: keep trying, with backoff.
            let at = {
                let mut apps = self.inner.apps.lock().unwrap();
                let a = apps.entry(app.id).or_default();
                a.crashes += 1;
                let at = Instant::now() + backoff(a.crashes);
                a.hold_until = Some(at);
                at
            };
            self.event(
                app.id,
                "crash",
                &format!("a replica of v{} {why}", release.number),
            )
            .await;
            return Ok(Progress::WaitUntil(at));
        }
        self.fail_release(app, release, &why).await?;
        Ok(Progress::Changed)
    }

    /// Moves `release` of `app` to `status` (deploying, active), wakes
    /// whoever waits on releases and records `message` as a rollout event.
    pub(crate) async fn announce_release(
        &self,
        app: &AppRecord,
        number: i64,
        status: ReleaseStatus,
        message: &str,
    ) -> Result<(), String> {
        self.store()
            .set_release_status(app.id, number, status, None)
            .await
            .map_err(|e| e.to_string())?;
        self.inner.release_changed.notify_waiters();
        self.event(app.id, "rollout", message).await;
        Ok(())
    }

    /// Marks `release` failed and points the app back at its last active release.
    pub(crate) async fn fail_release(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
        why: &str,
    ) -> Result<(), String> {
        self.fail_release_with(
            app,
            release,
            &format!("replica of v{} {why}", release.number),
        )
        .await
    }

    /// Marks `release` failed with the message `msg` and points the app
    /// back at its last active release.
    pub(crate) async fn fail_release_with(
        &self,
        app: &AppRecord,
        release: &ReleaseRecord,
        msg: &str,
    ) -> Result<(), String> {
        let store = self.store();
        let msg = msg.to_string();
        store
            .set_release_status(app.id, release.number, ReleaseStatus::Failed, Some(&msg))
            .await
            .map_err(|e| e.to_string())?;
        let previous = store
            .active_release(app.id)
            .await
            .map_err(|e| e.to_string())?;
        // Only revert if nothing newer was released meanwhile.
        let current = store.app_by_id(app.id).await.map_err(|e| e.to_string())?;
        if current.and_then(|a| a.release) == Some(release.number) {
            store
                .set_app_release(app.id, previous.as_ref().map(|p| p.number))
                .await
                .map_err(|e| e.to_string())?;
        }
        let keeps = previous.map_or_else(
            || "no release is serving".to_string(),
            |p| format!("v{} keeps serving", p.number),
        );
        self.event(
            app.id,
            "rollout",
            &format!("rollout of v{} failed: {msg}; {keeps}", release.number),
        )
        .await;
        self.inner.release_changed.notify_waiters();
        Ok(())
    }

    /// Drains and stops replicas (all at once): out of the routes, in-flight
    /// requests finished, then SIGTERM.
    pub(crate) async fn stop_replicas(&self, app: &AppRecord, replicas: Vec<Replica>) {
        for r in &replicas {
            self.set_state(app.id, &r.container, ReplicaState::Draining);
        }
        self.rebuild_routes();
        let stops = replicas
            .into_iter()
            .map(|r| self.drain_and_stop(app.id, &app.name, r.container, Some(r.addr)));
        futures::future::join_all(stops).await;
    }

    pub(crate) async fn drain_and_stop(
        &self,
        app_id: i64,
        app: &str,
        container: String,
        addr: Option<std::net::SocketAddr>,
    ) {
        if let Some(addr) = addr {
            if !self.inner.proxy.wait_idle(app, addr, DRAIN_TIMEOUT).await {
                tracing::warn!(app, %addr, "replica still busy after the drain timeout; stopping it anyway");
            }
        }
        if let Some(rt) = self.runtime() {
            let _ = rt.stop(&container, STOP_GRACE_SECS).await;
            self.settle_logs(app_id, &container, None).await;
            let _ = rt.remove(&container).await;
        }
        self.forget(app_id, &container);
    }

    /// The last lines a failed replica printed, for the release's error.
    pub(crate) async fn log_tail(&self, container: &str) -> String {
        let Some(rt) = self.runtime() else {
            return String::new();
        };
        let logs = rt.collect_logs(container).await.unwrap_or_default();
        let mut text = logs.stdout_str();
        text.push_str(&logs.stderr_str());
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        tail.chars().take(500).collect()
    }

    /// Removes images of releases beyond the kept ones (not used by any kept release).
    pub(crate) async fn prune_images(&self, app: &AppRecord) {
        let Some(rt) = self.runtime() else { return };
        let keep = self.inner.options.releases_kept.max(1) as i64;
        let Ok(all) = self.store().releases(app.id, 10_000).await else {
            return;
        };
        let kept: HashSet<&str> = all
            .iter()
            .take(keep as usize)
            .flat_map(release_images)
            .collect();
        let mut gone: HashSet<&str> = HashSet::new();
        for image in all.iter().skip(keep as usize).flat_map(release_images) {
            // Images named in a Compose file (`image: slipway/debian…`) are
            // not the release's own: only the built ones go.
            let built = image.starts_with("slipway/app-");
            if built && !kept.contains(image) && gone.insert(image) {
                if let Err(e) = slipway_runtime::images::remove_image(rt, image, false).await {
                    tracing::debug!(%image, error = %e, "old release image not removed");
                }
            }
        }
    }
}
