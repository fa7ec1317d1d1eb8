//! Cluster nodes and membership: list, cordon, uncordon, drain, remove;
//! the cluster's leader and servers; join tokens and the agents' join.
//!
//! Everything but the join is for site administrators. The join is
//! authorised by a join token (`slpj_…`, created by an administrator,
//! stored in etcd as a SHA-256 digest, valid until it expires) and answers
//! the node's id and the etcd endpoints its agent then talks to directly,
//! plus a new registry pull credential for the node (`slpn_…`, see
//! `routes::registry`). With that credential an agent also fetches the
//! secrets of the apps it starts replicas of (`app_secrets`).

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slipway_cluster::agent::{new_node_id, JoinRequest, JoinResponse};
use slipway_cluster::etcd::{NodeInfo, NodeRecord};
use slipway_cluster::{ClusterError, NodeState, Resources, Schedule};
use slipway_deploy::{ClusterFiles, ClusterSecrets};
use slipway_metrics::SeriesKey;
use std::time::Duration;

/// The API's answer for a cluster state error.
fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::NotFound(m) => ApiError::not_found(m),
        ClusterError::Conflict(m) | ClusterError::Fenced(m) => ApiError::conflict(m),
        ClusterError::Invalid(m) => ApiError::invalid(m),
        ClusterError::NotLeader => ApiError::conflict("leadership changed; try again"),
        ClusterError::Etcd(_) | ClusterError::Timeout(_) => {
            tracing::warn!(error = %e, "cluster state unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_unavailable",
                "the cluster state (etcd) is not reachable; try again",
            )
        }
        other => ApiError::internal(other),
    }
}

fn not_clustered() -> ApiError {
    ApiError::conflict(
        "this server runs in single-node mode: set cluster_etcd_endpoints (SLIPWAY_CLUSTER_ETCD_ENDPOINTS) to run a cluster",
    )
}

fn check_id(id: &str) -> ApiResult<()> {
    if slipway_cluster::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a node id is 1-63 characters of a-z, 0-9 and '-'",
        ))
    }
}

/// In single-node mode the server itself is the only node: its replicas
/// are the deployer's, their requests count as the node's allocation (as
/// in cluster mode) and their measured use comes from the monitoring
/// samples.
async fn local_node(state: &AppState) -> ApiResult<NodeInfo> {
    let now = chrono::Utc::now();
    let (replicas, allocated) = state.deploy().local_load().await;
    Ok(NodeInfo {
        record: NodeRecord {
            id: "local".into(),
            capacity: slipway_cluster::machine::capacity(),
            labels: Default::default(),
            schedule: Schedule::Active,
            epoch: 0,
            hostname: slipway_cluster::machine::hostname(),
            version: env!("CARGO_PKG_VERSION").into(),
            first_seen: now,
            registered_at: now,
        },
        state: NodeState::Ready,
        replicas,
        allocated,
        used: local_usage(state).await?,
    })
}

/// CPU and memory used by the apps' replicas on this server: the sum of
/// each app's latest monitoring sample, when it is recent (None before the
/// first samples, e.g. just after a start, or without Docker stats).
async fn local_usage(state: &AppState) -> ApiResult<Option<Resources>> {
    let monitor = state.monitor();
    // A sample is stamped when its round starts; reading Docker stats of
    // every replica can take seconds.
    let fresh_ms =
        3 * i64::try_from(monitor.interval().as_millis()).unwrap_or(i64::MAX / 4) + 30_000;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let recent = |key: &SeriesKey| {
        monitor
            .series()
            .latest(key)
            .filter(|(t, _)| now_ms - t <= fresh_ms)
            .map(|(_, v)| v)
    };
    let mut used: Option<Resources> = None;
    for app in state.store().list_apps().await? {
        let cpu = recent(&SeriesKey::app("cpu_percent", &app.name));
        let memory = recent(&SeriesKey::app("memory_bytes", &app.name));
        if cpu.is_none() && memory.is_none() {
            continue;
        }
        // cpu_percent is % of one core summed over the app's replicas.
        let app_use = Resources::new(
            (cpu.unwrap_or(0.0) * 10.0).round().max(0.0) as u64,
            memory.unwrap_or(0.0).max(0.0) as u64,
        );
        used = Some(used.unwrap_or_default().plus(app_use));
    }
    Ok(used)
}

/// `GET /nodes`: every node with its state and load.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<NodeInfo>>> {
    caller.require_admin()?;
    let Some(cluster) = state.cluster() else {
        return Ok(axum::Json(vec![local_node(&state).await?]));
    };
    let nodes = cluster.store().nodes().await.map_err(cluster_error)?;
    Ok(axum::Json(nodes))
}

async fn set_schedule(
    state: &AppState,
    caller: &Caller,
    id: &str,
    schedule: Schedule,
) -> ApiResult<axum::Json<NodeInfo>> {
    caller.require_admin()?;
    check_id(id)?;
    let cluster = state.cluster().ok_or_else(not_clustered)?;
    cluster
        .store()
        .set_schedule(id, schedule)
        .await
        .map_err(cluster_error)?;
    tracing::info!(node = id, schedule = schedule.as_str(), by = %caller.user.username, "node schedule changed");
    let node = cluster
        .store()
        .nodes()
        .await
        .map_err(cluster_error)?
        .into_iter()
        .find(|n| n.record.id == id)
        .ok_or_else(|| ApiError::not_found(format!("node {id} not found")))?;
    Ok(axum::Json(node))
}

/// `POST /nodes/{id}/cordon`: no new replicas on the node; running ones stay.
pub async fn cordon(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<NodeInfo>> {
    set_schedule(&state, &caller, &id, Schedule::Cordoned).await
}

/// `POST /nodes/{id}/uncordon`: the node takes replicas again.
pub async fn uncordon(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<NodeInfo>> {
    set_schedule(&state, &caller, &id, Schedule::Active).await
}

/// `POST /nodes/{id}/drain`: the node's replicas move to other nodes.
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<NodeInfo>> {
    set_schedule(&state, &caller, &id, Schedule::Draining).await
}

/// `DELETE /nodes/{id}`: forgets a lost or drained node (409 while it runs replicas).
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    check_id(&id)?;
    let cluster = state.cluster().ok_or_else(not_clustered)?;
    cluster
        .store()
        .remove_node(&id)
        .await
        .map_err(cluster_error)?;
    tracing::info!(node = %id, by = %caller.user.username, "node removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /cluster`: mode, this server, the scheduler's leader and the servers.
pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Value>> {
    caller.require_admin()?;
    let Some(cluster) = state.cluster() else {
        return Ok(axum::Json(json!({
            "mode": "single",
            "server_id": "local",
            "leader": "local",
            "is_leader": true,
            "members": [],
            "etcd_endpoints": [],
        })));
    };
    let store = cluster.store();
    let leader = store.leader().await.map_err(cluster_error)?;
    let members: Vec<Value> = store
        .servers()
        .await
        .map_err(cluster_error)?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "api_url": s.api_url,
                "version": s.version,
                "started_at": s.started_at,
                "leader": leader.as_deref() == Some(s.id.as_str()),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "mode": "cluster",
        "server_id": cluster.server_id(),
        "leader": leader,
        "is_leader": cluster.is_leader(),
        "members": members,
        "etcd_endpoints": store.options().endpoints,
        "prefix": store.options().prefix,
        "lease_ttl_ms": store.options().lease_ttl.as_millis() as u64,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// Hours until the token expires (1-8760, default 24).
    #[serde(default)]
    ttl_hours: Option<u32>,
}

/// A join token as returned once at creation.
#[derive(Serialize)]
pub struct IssuedJoinToken {
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /cluster/join-tokens`: a token agents join with (shown once).
pub async fn create_join_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateJoinToken>,
) -> ApiResult<(StatusCode, axum::Json<IssuedJoinToken>)> {
    caller.require_admin()?;
    let cluster = state.cluster().ok_or_else(not_clustered)?;
    let hours = req.ttl_hours.unwrap_or(24);
    if !(1..=8760).contains(&hours) {
        return Err(ApiError::invalid("ttl_hours must be 1-8760"));
    }
    let (token, record) = cluster
        .store()
        .create_join_token(
            &caller.user.username,
            Duration::from_secs(u64::from(hours) * 3600),
        )
        .await
        .map_err(cluster_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(IssuedJoinToken {
            token,
            expires_at: record.expires_at,
        }),
    ))
}

/// `POST /cluster/join`: an agent presents a join token (`Authorization:
/// Bearer slpj_…`) and gets its node id and the etcd endpoints.
pub async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<JoinRequest>,
) -> ApiResult<axum::Json<JoinResponse>> {
    let cluster = state.cluster().ok_or_else(not_clustered)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("send the join token as `Authorization: Bearer slpj_…`")
        })?;
    cluster
        .store()
        .check_join_token(token)
        .await
        .map_err(|e| match e {
            ClusterError::NotFound(m) => ApiError::unauthorized(m),
            other => cluster_error(other),
        })?;
    let node_id = match req.node_id {
        Some(id) => {
            check_id(&id)?;
            id
        }
        None => new_node_id(),
    };
    if req.hostname.len() > 253 {
        return Err(ApiError::invalid("hostname is longer than 253 characters"));
    }
    // The node's registry pull credential, replaced at every join.
    let credential = cluster
        .store()
        .issue_node_credential(&node_id)
        .await
        .map_err(cluster_error)?;
    let opts = cluster.store().options();
    tracing::info!(node = %node_id, hostname = %req.hostname, "node joined");
    Ok(axum::Json(JoinResponse {
        node_id,
        etcd_endpoints: opts.endpoints.clone(),
        prefix: opts.prefix.clone(),
        lease_ttl_ms: opts.lease_ttl.as_millis() as u64,
        credential: Some(credential),
    }))
}

/// The node whose credential (`Authorization: Basic <node-id>:<slpn_…>`)
/// `headers` carry, checked against etcd.
async fn calling_node(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let cluster = state.cluster().ok_or_else(not_clustered)?;
    let (node, secret) = super::registry::node_credentials(headers).ok_or_else(|| {
        ApiError::unauthorized(
            "send the node's credential as `Authorization: Basic <node-id>:<slpn_…>`",
        )
    })?;
    if !cluster
        .store()
        .check_node_credential(&node, &secret)
        .await
        .map_err(cluster_error)?
    {
        return Err(ApiError::unauthorized(
            "invalid node credential: the agent gets a new one when it joins again",
        ));
    }
    Ok(node)
}

/// `GET /cluster/apps/{app}/files/{sha}`: a node agent starting a service
/// of `app`'s stack that bind-mounts directories of the repository fetches
/// them (a tar of the directories of commit `sha`), authorised like
/// [`app_secrets`].
pub async fn app_files(
    State(state): State<AppState>,
    Path((app, sha)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let node = calling_node(&state, &headers).await?;
    let tar = match state.deploy().cluster_files(&app, &node, &sha).await? {
        ClusterFiles::Tar(tar) => tar,
        ClusterFiles::NoSuchApp => {
            return Err(ApiError::not_found(format!(
                "this server deploys no cluster app {app}"
            )))
        }
        ClusterFiles::NotAssigned => {
            return Err(ApiError::forbidden(format!(
                "node {node} runs no replica of {app}: only nodes assigned one get its files"
            )))
        }
        ClusterFiles::Missing => {
            return Err(ApiError::not_found(format!(
                "this server has no files of {app} at commit {sha}"
            )))
        }
    };
    tracing::info!(node = %node, app = %app, bytes = tar.len(), "stack files fetched by a node");
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], tar).into_response())
}

/// `GET /cluster/apps/{app}/secrets`: a node agent starting a replica of
/// `app` fetches its secret variables, authorised by the node's credential
/// (`Authorization: Basic <node-id>:<slpn_…>`, as for image pulls) and by
/// an assignment of one of the app's replicas to that node. The
/// values are decrypted here and never stored in etcd; the log line names
/// the node and app, never a value.
pub async fn app_secrets(
    State(state): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<Value>> {
    let node = calling_node(&state, &headers).await?;
    let env = match state.deploy().cluster_secrets(&app, &node).await? {
        ClusterSecrets::Env(env) => env,
        ClusterSecrets::NoSuchApp => {
            return Err(ApiError::not_found(format!(
                "this server deploys no cluster app {app}"
            )))
        }
        ClusterSecrets::NotAssigned => {
            return Err(ApiError::forbidden(format!(
                "node {node} runs no replica of {app}: only nodes assigned one get its secrets"
            )))
        }
    };
    tracing::info!(node = %node, app = %app, variables = env.len(), "secrets fetched by a node");
    Ok(axum::Json(json!({ "env": env })))
}
