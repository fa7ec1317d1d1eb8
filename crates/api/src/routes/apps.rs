//! Apps: continuous deployment's API — create, settings, scale, replicas,
//! releases, rollback, config, secrets and manual deploys (logs are in
//! `app_logs.rs`).
//!
//! Access to an app follows its repository: read access shows it, write
//! access changes it, admin access deletes it.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::routes::repos::{authorize_repo, scope_for};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slipway_deploy::{ConfigChange, DeployError};
use slipway_domain::{Access, AppName, AppRecord, AppSpec, HealthSpec, ReleaseRecord, Repo};
use std::collections::BTreeMap;

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Invalid(m) => ApiError::invalid(m),
            DeployError::State(m) => ApiError::conflict(m),
            DeployError::NotFound(m) => ApiError::not_found(m),
            DeployError::TooLarge(m) => ApiError::too_large(m),
            DeployError::Secret(m) => ApiError::internal(m),
            DeployError::Store(s) => s.into(),
        }
    }
}

/// Finds app `name` and checks the caller's token scope and repository access.
pub(crate) async fn authorize_app(
    state: &AppState,
    caller: &Caller,
    name: &str,
    needed: Access,
) -> ApiResult<(AppRecord, Repo)> {
    caller.require(scope_for(needed))?;
    let missing = || ApiError::not_found(format!("app {name:?} not found; see `slipway app list`"));
    if AppName::parse(name).is_err() {
        return Err(missing());
    }
    let app = state.store().app_by_name(name).await?.ok_or_else(missing)?;
    let repo = state
        .store()
        .repo_by_id(app.repo_id)
        .await?
        .ok_or_else(missing)?;
    match authorize_repo(state, Some(caller), &repo.owner, &repo.name, needed).await {
        Ok((repo, _)) => Ok((app, repo)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(missing()),
        Err(e) => Err(e),
    }
}

/// An app as the API shows it.
async fn view(state: &AppState, app: &AppRecord, repo: &Repo) -> ApiResult<Value> {
    let deploy = state.deploy();
    let owner = state
        .store()
        .user_by_id(app.owner_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    let secrets: Vec<String> = state
        .store()
        .app_secret_names(app.id)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let s = &app.spec;
    Ok(json!({
        "name": app.name,
        "repo": repo.full_name(),
        "owner": owner,
        "branch": s.branch,
        "replicas": s.replicas,
        "port": s.port,
        "dockerfile": s.dockerfile,
        "compose": s.compose,
        "sticky": s.sticky,
        "health": s.health,
        "domains": deploy.hosts(app),
        "env": s.env,
        "secrets": secrets,
        "memory_mb": s.memory_mb,
        "cpus": s.cpus,
        "max_surge": s.max_surge,
        "max_unavailable": s.max_unavailable,
        "release": app.release,
        "status": deploy.status(app).await?,
        "ready": deploy.ready(app),
        "url": deploy.url(app),
        "services": deploy.services(app).await?,
        "created_at": app.created_at,
        "updated_at": app.updated_at,
    }))
}

/// Settings a create or update may carry.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    branch: Option<String>,
    port: Option<u16>,
    replicas: Option<u32>,
    dockerfile: Option<String>,
    /// Compose file path; `null` goes back to finding Compose's default names.
    #[serde(default, deserialize_with = "present")]
    compose: Option<Option<String>>,
    /// Partial: given fields replace the current ones.
    health: Option<serde_json::Map<String, Value>>,
    domains: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    memory_mb: Option<Option<u32>>,
    cpus: Option<Option<f64>>,
    max_surge: Option<u32>,
    max_unavailable: Option<u32>,
    sticky: Option<bool>,
}

impl Settings {
    fn apply(self, mut spec: AppSpec) -> ApiResult<AppSpec> {
        if let Some(v) = self.branch {
            spec.branch = v;
        }
        if let Some(v) = self.port {
            spec.port = v;
        }
        if let Some(v) = self.replicas {
            spec.replicas = v;
        }
        if let Some(v) = self.dockerfile {
            spec.dockerfile = v;
        }
        if let Some(v) = self.compose {
            spec.compose = v.filter(|p| !p.is_empty());
        }
        if let Some(fields) = self.health {
            let mut merged = serde_json::to_value(&spec.health).map_err(ApiError::internal)?;
            if let Value::Object(m) = &mut merged {
                m.extend(fields);
            }
            spec.health = serde_json::from_value::<HealthSpec>(merged)
                .map_err(|e| ApiError::invalid(format!("health: {e}")))?;
        }
        if let Some(v) = self.domains {
            spec.domains = v
                .into_iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect();
        }
        if let Some(v) = self.env {
            spec.env = v;
        }
        if let Some(v) = self.memory_mb {
            spec.memory_mb = v;
        }
        if let Some(v) = self.cpus {
            spec.cpus = v;
        }
        if let Some(v) = self.max_surge {
            spec.max_surge = v;
        }
        if let Some(v) = self.max_unavailable {
            spec.max_unavailable = v;
        }
        if let Some(v) = self.sticky {
            spec.sticky = v;
        }
        Ok(spec)
    }
}

/// Tells a field given as `null` (`Some(None)`) from a missing one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Refuses host names another app already answers.
async fn check_domains(state: &AppState, app_name: &str, spec: &AppSpec) -> ApiResult<()> {
    let mine: Vec<String> = if spec.domains.is_empty() {
        vec![format!("{app_name}.{}", state.config().apps_domain)]
    } else {
        spec.domains.clone()
    };
    for other in state.store().list_apps().await? {
        if other.name == app_name {
            continue;
        }
        for host in state.deploy().hosts(&other) {
            if mine.contains(&host) {
                return Err(ApiError::conflict(format!(
                    "app {} already answers {host}; choose another domain",
                    other.name
                )));
            }
        }
    }
    Ok(())
}

/// Body of `POST /apps`.
#[derive(Deserialize)]
pub struct CreateApp {
    name: String,
    repo: String,
    #[serde(flatten)]
    settings: Settings,
}

/// `POST /apps`: a new app deployed from a repository the caller can write.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateApp>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    caller.require(slipway_domain::Scope::Write)?;
    let name = AppName::parse(&body.name).map_err(|e| ApiError::invalid(e.0))?;
    let Some((owner, repo_name)) = body.repo.split_once('/') else {
        return Err(ApiError::invalid(format!(
            "repo {:?} must be OWNER/NAME",
            body.repo
        )));
    };
    let (repo, _) = authorize_repo(&state, Some(&caller), owner, repo_name, Access::Write).await?;
    let spec = body.settings.apply(AppSpec::default())?;
    spec.validate().map_err(ApiError::invalid)?;
    state
        .deploy()
        .check_limits(&spec)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    check_domains(&state, name.as_str(), &spec).await?;
    let app = state
        .store()
        .create_app(name.as_str(), repo.id, caller.user.id, &spec)
        .await?;
    let _ = state
        .store()
        .add_app_event(
            app.id,
            "create",
            &format!(
                "created by {} from {}",
                caller.user.username,
                repo.full_name()
            ),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(view(&state, &app, &repo).await?),
    ))
}

/// `GET /apps`: apps whose repository the caller can read.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Value>>> {
    caller.require(slipway_domain::Scope::Read)?;
    let mut out = Vec::new();
    for app in state.store().list_apps().await? {
        if let Ok((app, repo)) = authorize_app(&state, &caller, &app.name, Access::Read).await {
            out.push(view(&state, &app, &repo).await?);
        }
    }
    Ok(axum::Json(out))
}

/// `GET /apps/{app}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (app, repo) = authorize_app(&state, &caller, &name, Access::Read).await?;
    Ok(axum::Json(view(&state, &app, &repo).await?))
}

/// `PATCH /apps/{app}`: settings; those that change how replicas run make a release.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<Settings>,
) -> ApiResult<axum::Json<Value>> {
    let (app, repo) = authorize_app(&state, &caller, &name, Access::Write).await?;
    if body.env.is_some() {
        return Err(ApiError::invalid(
            "change environment variables with PATCH /apps/{app}/config (`slipway config set`)",
        ));
    }
    let spec = body.apply(app.spec.clone())?;
    spec.validate().map_err(ApiError::invalid)?;
    state
        .deploy()
        .check_limits(&spec)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    check_domains(&state, &app.name, &spec).await?;
    state
        .deploy()
        .update_settings(&app, spec, &caller.user.username)
        .await?;
    let app = reload(&state, &app).await?;
    Ok(axum::Json(view(&state, &app, &repo).await?))
}

async fn reload(state: &AppState, app: &AppRecord) -> ApiResult<AppRecord> {
    state
        .store()
        .app_by_id(app.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {:?} was deleted", app.name)))
}

/// `DELETE /apps/{app}`: replicas drain and stop in the background.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Admin).await?;
    state
        .deploy()
        .delete_app_with(&app, q.purge_volumes)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `DELETE /apps/{app}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also remove the stack's named volumes (kept by default).
    #[serde(default)]
    purge_volumes: bool,
}

/// `GET /apps/{app}/volumes`: the named volumes of an app's stack.
pub async fn volumes(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<slipway_deploy::VolumeView>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    Ok(axum::Json(state.deploy().volumes(&app).await?))
}

/// Body of `PUT /apps/{app}/scale`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    replicas: u32,
    /// A stack's service to scale (the whole app otherwise).
    #[serde(default)]
    service: Option<String>,
}

/// `PUT /apps/{app}/scale`.
pub async fn scale(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<Scale>,
) -> ApiResult<axum::Json<Value>> {
    let (app, repo) = authorize_app(&state, &caller, &name, Access::Write).await?;
    match &body.service {
        Some(service) => {
            state
                .deploy()
                .scale_service(&app, service, body.replicas, &caller.user.username)
                .await?
        }
        None => {
            state
                .deploy()
                .scale(&app, body.replicas, &caller.user.username)
                .await?
        }
    }
    let app = reload(&state, &app).await?;
    Ok(axum::Json(view(&state, &app, &repo).await?))
}

/// `GET /apps/{app}/replicas`.
pub async fn replicas(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<slipway_deploy::ReplicaView>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    Ok(axum::Json(state.deploy().replicas(app.id)))
}

/// A release as the API shows it.
#[derive(Serialize)]
pub struct ReleaseView {
    number: i64,
    image: String,
    sha: String,
    description: String,
    created_by: String,
    created_at: chrono::DateTime<chrono::Utc>,
    status: slipway_domain::ReleaseStatus,
    error: Option<String>,
    pipeline_id: Option<i64>,
}

fn release_view(r: ReleaseRecord) -> ReleaseView {
    ReleaseView {
        number: r.number,
        image: r.image,
        sha: r.sha,
        description: r.description,
        created_by: r.created_by,
        created_at: r.created_at,
        status: r.status,
        error: r.error,
        pipeline_id: r.pipeline_id,
    }
}

/// `GET /apps/{app}/releases`: newest first.
pub async fn releases(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<ReleaseView>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    let list = state.store().releases(app.id, 100).await?;
    Ok(axum::Json(list.into_iter().map(release_view).collect()))
}

/// A JSON body that may be left out (empty means all defaults).
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Body of `POST /apps/{app}/rollback`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    release: Option<i64>,
}

/// `POST /apps/{app}/rollback`: a new release with an earlier one's image and config.
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<ReleaseView>)> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let to = optional_body::<Rollback>(&body)?.release;
    let release = state
        .deploy()
        .rollback(&app, to, &caller.user.username)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(release_view(release))))
}

/// `GET /apps/{app}/config`.
pub async fn config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    Ok(axum::Json(json!({ "env": app.spec.env })))
}

/// `PATCH /apps/{app}/config`: set and unset variables; a running app gets a release.
pub async fn change_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<ConfigChange>,
) -> ApiResult<Response> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let release = state
        .deploy()
        .change_config(&app, &body, &caller.user.username)
        .await?;
    Ok(match release {
        Some(r) => (StatusCode::CREATED, axum::Json(json!(release_view(r)))).into_response(),
        None => {
            let app = reload(&state, &app).await?;
            axum::Json(json!({ "env": app.spec.env })).into_response()
        }
    })
}

/// `GET /apps/{app}/secrets`: names only.
pub async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<Value>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    let names = state.store().app_secret_names(app.id).await?;
    Ok(axum::Json(
        names
            .into_iter()
            .map(|(name, at)| json!({ "name": name, "updated_at": at }))
            .collect(),
    ))
}

/// Body of `PUT /apps/{app}/secrets/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    value: String,
}

/// `PUT /apps/{app}/secrets/{name}`: stored encrypted; never shown again.
pub async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, secret)): Path<(String, String)>,
    Json(body): Json<SecretValue>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    state
        .deploy()
        .set_secret(&app, &secret, &body.value, &caller.user.username)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /apps/{app}/secrets/{name}`.
pub async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, secret)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    if state
        .deploy()
        .delete_secret(&app, &secret, &caller.user.username)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "app {name} has no secret {secret:?}"
        )))
    }
}

/// Body of `POST /apps/{app}/deploy`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

/// `POST /apps/{app}/deploy`: a manual pipeline that builds and deploys a branch head.
pub async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let (app, repo) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let branch = optional_body::<Deploy>(&body)?
        .git_ref
        .unwrap_or_else(|| app.spec.branch.clone());
    let branch = branch
        .strip_prefix("refs/heads/")
        .unwrap_or(&branch)
        .to_string();
    if branch.is_empty()
        || branch.starts_with('-')
        || branch.contains("..")
        || branch.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid(format!("invalid branch {branch:?}")));
    }
    let pipeline = state
        .ci()
        .deploy(&repo, &app, &branch, &caller.user.username)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!(crate::routes::pipelines::view(pipeline, None))),
    ))
}

/// `GET /apps/{app}/events`: recent history, oldest first.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<slipway_store::AppEvent>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    let mut events = state.store().app_events(app.id, 200).await?;
    // In cluster mode the scheduler's moves of this app's replicas too.
    if let Some(cluster) = state.cluster() {
        match cluster.store().app_events(&app.name, 200).await {
            Ok(list) => {
                events.extend(list.into_iter().map(|e| slipway_store::AppEvent {
                    id: 0,
                    app_id: app.id,
                    kind: e.kind,
                    message: e.message,
                    at: e.at,
                }));
                events.sort_by_key(|e| e.at);
                let extra = events.len().saturating_sub(200);
                events.drain(..extra);
            }
            Err(e) => tracing::warn!(error = %e, "cluster events unavailable"),
        }
    }
    Ok(axum::Json(events))
}
