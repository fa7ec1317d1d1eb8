//! One-off commands in a new container of an app's current release
//! (`slipway run APP SERVICE -- CMD`, like `heroku run` or `docker compose
//! run`): the service's image, environment, secrets, network and volumes,
//! the given command, output streamed back, the container removed after.

use crate::{DeployError, Deployer, APP_ID_LABEL, INSTANCE_LABEL, RELEASE_LABEL};
use futures::Stream;
use slipway_domain::AppRecord;
use slipway_runtime::{labels, LogChunk, LogOptions, NetworkMode, Runtime};

/// Label marking one-off command containers: the reconcile loop leaves
/// them alone.
pub const RUN_LABEL: &str = "io.slipway.run";

/// Longest command line accepted.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// A running one-off command. Dropping it removes the container (killing
/// the command if it still runs).
pub struct OneOff {
    rt: Runtime,
    /// The container's id.
    pub container: String,
    removed: bool,
}

impl Deployer {
    /// Starts `command` in a new container of `service` (any service of a
    /// stack; the app itself for a single-service app) of the app's
    /// current release.
    pub async fn run_one_off(
        &self,
        app: &AppRecord,
        service: Option<&str>,
        command: Vec<String>,
    ) -> Result<OneOff, DeployError> {
        if command.is_empty() || command.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES
        {
            return Err(DeployError::Invalid(format!(
                "give a command of at most {MAX_COMMAND_BYTES} bytes, e.g. `slipway run {} -- sh -c 'echo hi'`",
                app.name
            )));
        }
        let rt = self
            .runtime()
            .cloned()
            .ok_or_else(|| DeployError::State("the Docker Engine is not connected".into()))?;
        let release = self
            .current_release(app)
            .await
            .map_err(DeployError::State)?
            .ok_or_else(|| {
                DeployError::State(format!(
                    "app {} has no release yet: push to its branch first",
                    app.name
                ))
            })?;
        let secrets = self.secret_env(app.id).await?;
        let (spec, svc) = match &release.spec.stack {
            Some(stack) => {
                let name = service.ok_or_else(|| {
                    DeployError::Invalid(format!(
                        "app {} is a stack: name one of its services ({})",
                        app.name,
                        stack.service_names()
                    ))
                })?;
                let svc = stack.service(name).ok_or_else(|| {
                    DeployError::NotFound(format!("app {} has no service {name}", app.name))
                })?;
                let spec = self
                    .service_spec(app, &release, svc, &secrets, "run")
                    .map_err(DeployError::State)?;
                (spec, Some(svc.clone()))
            }
            None => {
                if let Some(s) = service.filter(|s| *s != app.name) {
                    return Err(DeployError::NotFound(format!(
                        "app {} has one service, {}, not {s}",
                        app.name, app.name
                    )));
                }
                let limits = self.replica_limits(&release.spec);
                let spec = crate::replica::container_spec(
                    app,
                    &release,
                    self.instance(),
                    &secrets,
                    limits,
                )
                .network(NetworkMode::Named {
                    name: self.app_network(app.id),
                    aliases: Vec::new(),
                });
                (spec, None)
            }
        };
        let mut spec = spec
            .label(RUN_LABEL, "1")
            .label(labels::OWNER, "deploy")
            .label(APP_ID_LABEL, app.id.to_string())
            .label(INSTANCE_LABEL, self.instance())
            .label(RELEASE_LABEL, release.number.to_string());
        spec.ports.clear();
        spec.healthcheck = None;
        // On the stack's network, but not answering for the service's name.
        spec.network = NetworkMode::Named {
            name: self.app_network(app.id),
            aliases: Vec::new(),
        };
        spec.cmd = Some(command);
        spec.name = spec.name.map(|n| format!("{n}-run"));
        let started = match &svc {
            Some(svc) => self.create_and_start(&rt, &spec, svc, &secrets).await,
            None => {
                async {
                    let id = rt.create(&spec).await.map_err(|e| (None, e.to_string()))?;
                    rt.start(&id)
                        .await
                        .map_err(|e| (Some(id.clone()), e.to_string()))?;
                    Ok(id)
                }
                .await
            }
        };
        match started {
            Ok(container) => Ok(OneOff {
                rt,
                container,
                removed: false,
            }),
            Err((id, why)) => {
                if let Some(id) = id {
                    let _ = rt.remove(&id).await;
                }
                Err(DeployError::State(format!(
                    "the command could not start: {why}"
                )))
            }
        }
    }
}

impl OneOff {
    /// The command's output until it exits.
    pub fn output(&self) -> impl Stream<Item = Result<LogChunk, slipway_runtime::RuntimeError>> {
        self.rt.logs(&self.container, LogOptions::follow())
    }

    /// Waits for the command's end, removes its container and returns its
    /// exit code.
    pub async fn finish(mut self) -> Result<i64, DeployError> {
        let status = self
            .rt
            .wait(&self.container)
            .await
            .map_err(|e| DeployError::State(e.to_string()))?;
        let _ = self.rt.remove(&self.container).await;
        self.removed = true;
        Ok(status.code)
    }
}

impl Drop for OneOff {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let rt = self.rt.clone();
        let id = self.container.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = rt.kill(&id, None).await;
                let _ = rt.remove(&id).await;
            });
        }
    }
}
