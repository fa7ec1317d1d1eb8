//! A stack's services as users see and scale them: `slipway scale APP
//! SERVICE=N` (a per-service replica count stored on the app, which wins
//! over the Compose file's `deploy.replicas`) and the services listed on
//! the app's page.

use crate::replica::ReplicaState;
use crate::{DeployError, Deployer};
use serde::Serialize;
use slipway_domain::app::check_replicas;
use slipway_domain::stack::DeployMode;
use slipway_domain::AppRecord;

/// One service of an app's current stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    /// Its name in the Compose file.
    pub name: String,
    /// A one-off task (run once per release, never scaled).
    pub task: bool,
    /// Replicas wanted (tasks: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Whether `replicas` comes from `slipway scale` rather than the file.
    pub scaled: bool,
    /// Replicas that passed their checks.
    pub ready: usize,
    /// Replicas running in any state.
    pub running: usize,
    /// `running`, `starting` (fewer ready than wanted), `stopped` (0
    /// wanted), `restoring` (held at 0 while a volume is restored) or
    /// `task`.
    pub state: &'static str,
}

impl Deployer {
    /// The services of the app's current release, when it is a stack.
    pub async fn services(&self, app: &AppRecord) -> Result<Option<Vec<ServiceView>>, DeployError> {
        let release = self
            .current_release(app)
            .await
            .map_err(DeployError::State)?;
        let Some(stack) = release.and_then(|r| r.spec.stack) else {
            return Ok(None);
        };
        let replicas = self.replicas(app.id);
        let held = self.held_services(app.id);
        let views = stack
            .services
            .iter()
            .map(|svc| {
                let task = svc.is_task(&stack);
                let mine = replicas
                    .iter()
                    .filter(|r| r.service.as_deref() == Some(svc.name.as_str()));
                let running = mine.clone().count();
                let ready = mine.filter(|r| r.state == ReplicaState::Healthy).count();
                let wanted = if task {
                    0
                } else {
                    self.service_wanted(app, &stack, svc)
                };
                let state = if task {
                    "task"
                } else if held.contains(&svc.name) {
                    "restoring"
                } else if wanted == 0 && running == 0 {
                    "stopped"
                } else if ready >= wanted as usize && running == wanted as usize {
                    "running"
                } else {
                    "starting"
                };
                ServiceView {
                    name: svc.name.clone(),
                    task,
                    replicas: (!task).then_some(wanted),
                    scaled: !task && app.spec.service_replicas.contains_key(&svc.name),
                    ready,
                    running,
                    state,
                }
            })
            .collect();
        Ok(Some(views))
    }

    /// Sets the replicas of one service of a stack app (`slipway scale APP
    /// SERVICE=N`). For a single-service app, `service` may be the app's
    /// own name. Tasks and global services cannot be scaled (422); an
    /// unknown service is a 404.
    pub async fn scale_service(
        &self,
        app: &AppRecord,
        service: &str,
        replicas: u32,
        actor: &str,
    ) -> Result<(), DeployError> {
        check_replicas(replicas).map_err(DeployError::Invalid)?;
        let release = self
            .current_release(app)
            .await
            .map_err(DeployError::State)?;
        let Some(stack) = release.and_then(|r| r.spec.stack) else {
            if service == app.name {
                return self.scale(app, replicas, actor).await;
            }
            return Err(DeployError::NotFound(format!(
                "app {} has no service {service}: it is not deployed from a Compose file (or has no release yet); scale it with `slipway scale {}={replicas}`",
                app.name, app.name
            )));
        };
        let Some(svc) = stack.service(service) else {
            return Err(DeployError::NotFound(format!(
                "app {} has no service {service} (its services: {})",
                app.name,
                stack.service_names()
            )));
        };
        if svc.is_task(&stack) {
            return Err(DeployError::Invalid(format!(
                "service {service} is a one-off task (restart: \"no\", or waited on with service_completed_successfully): it runs once per release and cannot be scaled"
            )));
        }
        if svc.deploy.mode == DeployMode::Global {
            return Err(DeployError::Invalid(format!(
                "service {service} is global (deploy.mode: global): it runs one replica per node and cannot be scaled"
            )));
        }
        let old = stack.replicas_of(svc, &app.spec.service_replicas);
        let mut spec = app.spec.clone();
        // Services the stack no longer has lose their counts.
        spec.service_replicas
            .retain(|name, _| stack.service(name).is_some());
        spec.service_replicas.insert(service.to_string(), replicas);
        spec.validate().map_err(DeployError::Invalid)?;
        self.store().update_app_spec(app.id, &spec).await?;
        if old != replicas {
            self.event(
                app.id,
                "scale",
                &format!("scaled {service} from {old} to {replicas} by {actor}"),
            )
            .await;
        }
        self.wake(app.id);
        Ok(())
    }
}
