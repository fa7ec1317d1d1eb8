//! What the API and the CI ask of the deployer: releases, rollbacks,
//! configuration, secrets and scaling. Each records the desired state in the
//! store and wakes the app's reconcile task, which does the work.

use crate::{DeployError, Deployer, ReplicaState};
use slipway_domain::app::{check_replicas, valid_env_key, MAX_ENV, MAX_ENV_VALUE};
use slipway_domain::{AppRecord, AppSpec, ReleaseRecord, ReleaseStatus};
use slipway_store::NewRelease;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A change of an app's environment: variables to set and to remove.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigChange {
    /// Variables to set (added or replaced).
    pub set: BTreeMap<String, String>,
    /// Variables to remove.
    pub unset: Vec<String>,
}

impl Deployer {
    /// Records a release of `image` built from `sha` with the app's current
    /// settings and makes it the one that should run.
    pub async fn release_image(
        &self,
        app: &AppRecord,
        image: &str,
        sha: &str,
        pipeline_id: Option<i64>,
        actor: &str,
    ) -> Result<ReleaseRecord, DeployError> {
        let short: String = sha.chars().take(7).collect();
        self.new_release(
            app,
            image,
            sha,
            pipeline_id,
            app.spec.clone(),
            format!("deploy {short}"),
            actor,
        )
        .await
    }

    /// Records a release of a whole stack (every service's image set) built
    /// from `sha` and makes it the one that should run.
    pub async fn release_stack(
        &self,
        app: &AppRecord,
        stack: slipway_domain::StackSpec,
        sha: &str,
        pipeline_id: Option<i64>,
        actor: &str,
    ) -> Result<ReleaseRecord, DeployError> {
        let short: String = sha.chars().take(7).collect();
        // The release's image (shown in lists) is the routed service's.
        let image = stack
            .services
            .iter()
            .filter(|s| s.ingress.is_some())
            .chain(stack.services.iter())
            .find_map(|s| s.image.clone())
            .unwrap_or_default();
        let services = stack.services.len();
        let mut spec = app.spec.clone();
        spec.stack = Some(stack);
        self.new_release(
            app,
            &image,
            sha,
            pipeline_id,
            spec,
            format!("deploy {short} ({services} services)"),
            actor,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_release(
        &self,
        app: &AppRecord,
        image: &str,
        sha: &str,
        pipeline_id: Option<i64>,
        spec: AppSpec,
        description: String,
        actor: &str,
    ) -> Result<ReleaseRecord, DeployError> {
        let release = self
            .store()
            .create_release(&NewRelease {
                app_id: app.id,
                image: image.to_string(),
                sha: sha.to_string(),
                pipeline_id,
                spec,
                description: description.clone(),
                created_by: actor.to_string(),
            })
            .await?;
        let _ = self
            .store()
            .add_app_event(
                app.id,
                "release",
                &format!("v{} created by {actor}: {description}", release.number),
            )
            .await;
        self.wake(app.id);
        Ok(release)
    }

    /// The release that should run now, if any.
    async fn desired_release(&self, app: &AppRecord) -> Result<Option<ReleaseRecord>, DeployError> {
        Ok(match app.release {
            Some(n) => self.store().release(app.id, n).await?,
            None => None,
        })
    }

    /// Goes back to an earlier release's image and configuration by making a
    /// new release from it; `to` defaults to the release that served before
    /// the active one.
    pub async fn rollback(
        &self,
        app: &AppRecord,
        to: Option<i64>,
        actor: &str,
    ) -> Result<ReleaseRecord, DeployError> {
        let releases = self.store().releases(app.id, 1000).await?;
        let active = releases.iter().find(|r| r.status == ReleaseStatus::Active);
        let target = match to {
            Some(n) => releases.iter().find(|r| r.number == n).ok_or_else(|| {
                DeployError::NotFound(format!("app {} has no release v{n}", app.name))
            })?,
            None => {
                let active = active.ok_or_else(|| {
                    DeployError::State(format!(
                        "app {} has no active release to roll back from",
                        app.name
                    ))
                })?;
                releases
                    .iter()
                    .find(|r| r.number < active.number && r.status == ReleaseStatus::Superseded)
                    .ok_or_else(|| {
                        DeployError::State(format!(
                            "app {} has no earlier release that served; give one with `slipway rollback {} N`",
                            app.name, app.name
                        ))
                    })?
            }
        };
        if target.status == ReleaseStatus::Failed {
            return Err(DeployError::State(format!(
                "v{} failed to deploy; roll back to a release that served",
                target.number
            )));
        }
        if let Some(rt) = self.runtime() {
            if !slipway_runtime::images::image_exists(rt, &target.image)
                .await
                .unwrap_or(false)
            {
                return Err(DeployError::State(format!(
                    "the image of v{} ({}) is no longer kept; deploy its commit {} again",
                    target.number, target.image, target.sha
                )));
            }
        }
        // The app's settings follow the rolled-back configuration, so the
        // next deploy does not bring the newer one back; scale (also per
        // service) and domains stay.
        let mut spec = target.spec.clone();
        spec.replicas = app.spec.replicas;
        spec.service_replicas = app.spec.service_replicas.clone();
        spec.domains = app.spec.domains.clone();
        // An app's own settings never carry a stack; the release does.
        let settings = AppSpec {
            stack: None,
            ..spec.clone()
        };
        self.store().update_app_spec(app.id, &settings).await?;
        self.new_release(
            app,
            &target.image,
            &target.sha,
            target.pipeline_id,
            spec,
            format!("rollback to v{}", target.number),
            actor,
        )
        .await
    }

    /// Changes the app's environment. When the app runs, the change makes a
    /// new release of the same image (returned).
    pub async fn change_config(
        &self,
        app: &AppRecord,
        change: &ConfigChange,
        actor: &str,
    ) -> Result<Option<ReleaseRecord>, DeployError> {
        if change.set.is_empty() && change.unset.is_empty() {
            return Err(DeployError::Invalid(
                "nothing to change: give variables to set or unset".into(),
            ));
        }
        let mut spec = app.spec.clone();
        for (k, v) in &change.set {
            if !valid_env_key(k) {
                return Err(DeployError::Invalid(format!(
                    "invalid variable name {k:?}: use letters, digits and _, not starting with a digit"
                )));
            }
            if v.len() > MAX_ENV_VALUE {
                return Err(DeployError::Invalid(format!(
                    "value of {k} is longer than {MAX_ENV_VALUE} bytes"
                )));
            }
            spec.env.insert(k.clone(), v.clone());
        }
        for k in &change.unset {
            spec.env.remove(k);
        }
        if spec.env.len() > MAX_ENV {
            return Err(DeployError::Invalid(format!("at most {MAX_ENV} variables")));
        }
        spec.validate().map_err(DeployError::Invalid)?;
        self.store().update_app_spec(app.id, &spec).await?;
        let mut what = Vec::new();
        if !change.set.is_empty() {
            what.push(format!(
                "set {}",
                change.set.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !change.unset.is_empty() {
            what.push(format!("unset {}", change.unset.join(", ")));
        }
        self.config_release(app, spec, format!("config: {}", what.join("; ")), actor)
            .await
    }

    /// Replaces the app's settings (validated). Changes to how replicas run
    /// make a new release; scale and domain changes only wake the reconcile.
    pub async fn update_settings(
        &self,
        app: &AppRecord,
        mut spec: AppSpec,
        actor: &str,
    ) -> Result<Option<ReleaseRecord>, DeployError> {
        spec.validate().map_err(DeployError::Invalid)?;
        // With autoscaling on, replicas stay within the policy's range: a
        // manual scale is clamped into it (and then counts as the
        // autoscaler's starting point).
        let mut clamped = String::new();
        if let Some(policy) = self.store().autoscale(app.id).await? {
            let (min, max) = (policy.min_replicas as u32, policy.max_replicas as u32);
            let asked = spec.replicas;
            spec.replicas = asked.clamp(min, max);
            if spec.replicas != asked && app.spec.replicas != asked {
                clamped = format!(" (asked {asked}; autoscaling keeps {min}–{max})");
            }
        }
        self.store().update_app_spec(app.id, &spec).await?;
        let old = &app.spec;
        let mut changed = Vec::new();
        if old.port != spec.port {
            changed.push("port");
        }
        if old.health != spec.health {
            changed.push("health");
        }
        if old.memory_mb != spec.memory_mb || old.cpus != spec.cpus {
            changed.push("limits");
        }
        if old.max_surge != spec.max_surge || old.max_unavailable != spec.max_unavailable {
            changed.push("rollout");
        }
        if (old.replicas != spec.replicas || !clamped.is_empty()) && actor != crate::AUTOSCALER {
            let _ = self
                .store()
                .add_app_event(
                    app.id,
                    "scale",
                    &format!(
                        "scaled from {} to {} by {actor}{clamped}",
                        old.replicas, spec.replicas
                    ),
                )
                .await;
        }
        if changed.is_empty() {
            self.wake(app.id);
            return Ok(None);
        }
        self.config_release(
            app,
            spec,
            format!("settings: {}", changed.join(", ")),
            actor,
        )
        .await
    }

    async fn config_release(
        &self,
        app: &AppRecord,
        spec: AppSpec,
        description: String,
        actor: &str,
    ) -> Result<Option<ReleaseRecord>, DeployError> {
        let Some(current) = self.desired_release(app).await? else {
            self.wake(app.id);
            return Ok(None);
        };
        let mut spec = spec;
        spec.stack = current.spec.stack.clone();
        let release = self
            .new_release(
                app,
                &current.image,
                &current.sha,
                current.pipeline_id,
                spec,
                description,
                actor,
            )
            .await?;
        Ok(Some(release))
    }

    /// Sets the number of replicas (clamped into the autoscale policy's
    /// range when the app has one).
    pub async fn scale(
        &self,
        app: &AppRecord,
        replicas: u32,
        actor: &str,
    ) -> Result<(), DeployError> {
        check_replicas(replicas).map_err(DeployError::Invalid)?;
        let mut spec = app.spec.clone();
        spec.replicas = replicas;
        self.update_settings(app, spec, actor).await?;
        Ok(())
    }

    /// Stores an app secret, encrypted at rest; a running app gets a new
    /// release with it.
    pub async fn set_secret(
        &self,
        app: &AppRecord,
        name: &str,
        value: &str,
        actor: &str,
    ) -> Result<Option<ReleaseRecord>, DeployError> {
        if !valid_env_key(name) {
            return Err(DeployError::Invalid(format!(
                "invalid secret name {name:?}: use letters, digits and _, not starting with a digit"
            )));
        }
        if value.len() > MAX_ENV_VALUE || value.contains('\0') {
            return Err(DeployError::Invalid(format!(
                "a secret value is at most {MAX_ENV_VALUE} bytes, without NUL"
            )));
        }
        let sealed = self
            .secret_box()?
            .seal(app.id, name, value)
            .map_err(DeployError::Secret)?;
        self.store().set_app_secret(app.id, name, &sealed).await?;
        self.config_release(app, app.spec.clone(), format!("secret: set {name}"), actor)
            .await
    }

    /// Removes an app secret; false when there was none.
    pub async fn delete_secret(
        &self,
        app: &AppRecord,
        name: &str,
        actor: &str,
    ) -> Result<bool, DeployError> {
        if !self.store().delete_app_secret(app.id, name).await? {
            return Ok(false);
        }
        self.config_release(
            app,
            app.spec.clone(),
            format!("secret: unset {name}"),
            actor,
        )
        .await?;
        Ok(true)
    }

    /// Decrypted secrets of an app, for its replicas only.
    pub(crate) async fn secret_env(
        &self,
        app_id: i64,
    ) -> Result<HashMap<String, String>, DeployError> {
        let sealed = self.store().app_secret_values(app_id).await?;
        if sealed.is_empty() {
            return Ok(HashMap::new());
        }
        let b = self.secret_box()?;
        sealed
            .into_iter()
            .map(|(name, v)| {
                b.open(app_id, &name, &v)
                    .map(|plain| (name, plain))
                    .map_err(DeployError::Secret)
            })
            .collect()
    }

    /// Deletes an app; its replicas drain and stop in the background.
    pub async fn delete_app(&self, app: &AppRecord) -> Result<(), DeployError> {
        self.delete_app_with(app, false).await
    }

    /// Deletes an app; with `purge_volumes` its stack's named volumes go
    /// too, once its containers are gone (they are kept otherwise).
    pub async fn delete_app_with(
        &self,
        app: &AppRecord,
        purge_volumes: bool,
    ) -> Result<(), DeployError> {
        self.store().delete_app(app.id).await?;
        if purge_volumes {
            self.purge_volumes_later(app.id);
        }
        self.remove_app_logs(app.id).await;
        // Cluster mode: its demand goes, so agents stop its replicas.
        self.forget_cluster_app(app).await;
        self.wake(app.id);
        Ok(())
    }

    /// Waits until release `number` of the app is active or failed (or
    /// `timeout` passes) and returns it as it then is.
    pub async fn wait_release(
        &self,
        app_id: i64,
        number: i64,
        timeout: Duration,
    ) -> Result<Option<ReleaseRecord>, DeployError> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.inner.release_changed.notified();
            let release = self.store().release(app_id, number).await?;
            let done = release
                .as_ref()
                .map(|r| {
                    matches!(
                        r.status,
                        ReleaseStatus::Active | ReleaseStatus::Failed | ReleaseStatus::Superseded
                    )
                })
                .unwrap_or(true);
            if done || Instant::now() >= deadline {
                return Ok(release);
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), changed).await;
        }
    }

    /// The app's state for people: `idle` (never deployed), `deploying`,
    /// `running`, `degraded` (fewer healthy replicas than wanted) or `failed`.
    pub async fn status(&self, app: &AppRecord) -> Result<&'static str, DeployError> {
        let latest = self.store().releases(app.id, 1).await?.into_iter().next();
        let Some(latest) = latest else {
            return Ok("idle");
        };
        if app.release.is_none() {
            return Ok(if latest.status == ReleaseStatus::Failed {
                "failed"
            } else {
                "idle"
            });
        }
        let desired = self.desired_release(app).await?;
        if matches!(
            desired.as_ref().map(|r| r.status),
            Some(ReleaseStatus::Pending | ReleaseStatus::Deploying)
        ) {
            return Ok("deploying");
        }
        // A stack runs when every long-running service has its replicas.
        let (ready, wanted) = match desired.as_ref().filter(|r| r.spec.stack.is_some()) {
            Some(release) => (
                self.replicas(app.id)
                    .iter()
                    .filter(|r| r.state == ReplicaState::Healthy)
                    .count(),
                self.wanted_replicas(app, release),
            ),
            None => (self.ready(app), app.spec.replicas),
        };
        Ok(if ready >= wanted as usize {
            "running"
        } else {
            "degraded"
        })
    }
}
