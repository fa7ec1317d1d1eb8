//! Repositories: create, list, show, change, delete; collaborators; push events.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json, MaybeCaller};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use slipway_domain::{
    effective_access, Access, Collaborator, PushEvent, Repo, RepoName, Scope, Username,
};

/// A repository as the API shows it: the record plus the caller's access and clone URL path.
#[derive(Serialize)]
pub struct RepoView {
    #[serde(flatten)]
    repo: Repo,
    full_name: String,
    clone_path: String,
    permission: Option<Access>,
    /// The branch clones check out (shown for one repository, not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    default_branch: Option<String>,
}

fn view(repo: Repo, permission: Option<Access>) -> RepoView {
    RepoView {
        full_name: repo.full_name(),
        clone_path: format!("/git/{}/{}.git", repo.owner, repo.name),
        repo,
        permission,
        default_branch: None,
    }
}

/// [`view`] with the repository's default branch read from git.
async fn full_view(state: &AppState, repo: Repo, permission: Access) -> ApiResult<RepoView> {
    let (owner, name) = (Username::parse(&repo.owner)?, RepoName::parse(&repo.name)?);
    let default_branch = state
        .git()
        .default_branch(&owner, &name)
        .await
        .map_err(ApiError::internal)?;
    Ok(RepoView {
        default_branch,
        ..view(repo, Some(permission))
    })
}

/// Finds `owner/name` and checks the caller has at least `needed` on it.
/// Repositories the caller cannot see answer 404, so private names do not leak.
pub async fn authorize_repo(
    state: &AppState,
    caller: Option<&Caller>,
    owner: &str,
    name: &str,
    needed: Access,
) -> ApiResult<(Repo, Access)> {
    let missing = || ApiError::not_found(format!("repository {owner}/{name} not found"));
    if Username::parse(owner).is_err() || RepoName::parse(name).is_err() {
        return Err(missing());
    }
    let repo = state.store().repo(owner, name).await?.ok_or_else(missing)?;
    let user = caller.map(|c| &c.user);
    let collaborator = match user {
        Some(u) => state.store().collaborator_access(repo.id, u.id).await?,
        None => None,
    };
    let Some(access) = effective_access(user, &repo, collaborator) else {
        return Err(missing());
    };
    if access < needed {
        return Err(ApiError::forbidden(format!(
            "you have {access} access to {owner}/{name}; this needs {needed}"
        )));
    }
    Ok((repo, access))
}

pub(crate) fn scope_for(needed: Access) -> Scope {
    if needed == Access::Read {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// Authorises a signed-in or anonymous caller, checking the token scope too.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &MaybeCaller,
    owner: &str,
    name: &str,
    needed: Access,
) -> ApiResult<(Repo, Access)> {
    if let Some(c) = &caller.0 {
        c.require(scope_for(needed))?;
    } else if needed > Access::Read {
        return Err(ApiError::unauthorized(
            "authentication required: run `slipway login`",
        ));
    }
    authorize_repo(state, caller.0.as_ref(), owner, name, needed).await
}

#[derive(Deserialize)]
pub struct ListQuery {
    owner: Option<String>,
}

/// `GET /api/v1/repos[?owner=NAME]`: repositories the caller can see.
pub async fn list(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<RepoView>>> {
    if let Some(c) = &caller.0 {
        c.require(Scope::Read)?;
    }
    let viewer = caller.0.as_ref().map(|c| (c.user.id, c.user.is_admin));
    let repos = state.store().list_repos(viewer, q.owner.as_deref()).await?;
    let mut out = Vec::with_capacity(repos.len());
    for repo in repos {
        let user = caller.0.as_ref().map(|c| &c.user);
        let collab = match user {
            Some(u) if u.id != repo.owner_id && !u.is_admin => {
                state.store().collaborator_access(repo.id, u.id).await?
            }
            _ => None,
        };
        let access = effective_access(user, &repo, collab);
        out.push(view(repo, access));
    }
    Ok(axum::Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRepo {
    name: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    private: bool,
}

/// `POST /api/v1/repos`: creates an empty repository (default branch `main`).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateRepo>,
) -> ApiResult<(StatusCode, axum::Json<RepoView>)> {
    caller.require(Scope::Write)?;
    let name = RepoName::parse(&req.name)?;
    if req.description.len() > 1000 {
        return Err(ApiError::invalid(
            "description must be at most 1000 characters",
        ));
    }
    let owner_user = match req.owner.as_deref() {
        None => caller.user.clone(),
        Some(o) if o == caller.user.username => caller.user.clone(),
        Some(o) => {
            if !caller.user.is_admin {
                return Err(ApiError::forbidden(
                    "you can only create repositories in your own namespace",
                ));
            }
            state
                .store()
                .user_by_name(o)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("user {o:?} not found")))?
        }
    };
    let owner = Username::parse(&owner_user.username)?;
    let repo = state
        .store()
        .create_repo(owner_user.id, name.as_str(), &req.description, req.private)
        .await?;
    if let Err(e) = state.git().init(&owner, &name).await {
        let _ = state.store().delete_repo(repo.id).await;
        return Err(ApiError::internal(e));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(view(repo, Some(Access::Admin))),
    ))
}

/// `GET /api/v1/repos/{owner}/{name}`.
pub async fn show(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<RepoView>> {
    let (repo, access) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    Ok(axum::Json(full_view(&state, repo, access).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRepo {
    description: Option<String>,
    private: Option<bool>,
    default_branch: Option<String>,
}

/// `PATCH /api/v1/repos/{owner}/{name}`: description, visibility and the
/// default branch (which must exist).
pub async fn update(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    Json(req): Json<UpdateRepo>,
) -> ApiResult<axum::Json<RepoView>> {
    let (repo, access) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    let description = req.description.unwrap_or(repo.description.clone());
    if description.len() > 1000 {
        return Err(ApiError::invalid(
            "description must be at most 1000 characters",
        ));
    }
    let private = req.private.unwrap_or(repo.private);
    // The branch first: it is the only part that can be refused.
    if let Some(branch) = &req.default_branch {
        let (o, n) = (Username::parse(&repo.owner)?, RepoName::parse(&repo.name)?);
        state
            .git()
            .set_default_branch(&o, &n, branch)
            .await
            .map_err(|e| match e {
                slipway_git::SetHeadError::Git(e) => ApiError::internal(e),
                other => ApiError::invalid(other.to_string()),
            })?;
    }
    state
        .store()
        .update_repo(repo.id, &description, private)
        .await?;
    let repo = state
        .store()
        .repo_by_id(repo.id)
        .await?
        .ok_or_else(|| ApiError::not_found("repository not found"))?;
    Ok(axum::Json(full_view(&state, repo, access).await?))
}

/// `DELETE /api/v1/repos/{owner}/{name}`: deletes the repository and its history.
pub async fn delete(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    state.store().delete_repo(repo.id).await?;
    let (owner, name) = (Username::parse(&repo.owner)?, RepoName::parse(&repo.name)?);
    state
        .git()
        .delete(&owner, &name)
        .await
        .map_err(ApiError::internal)?;
    // Its pipelines' cache volumes go too, after the answer.
    let ci = state.ci().clone();
    tokio::spawn(async move {
        match ci.remove_caches(&repo).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(repo = %repo.full_name(), volumes = n, "cache volumes removed"),
            Err(e) => {
                tracing::warn!(repo = %repo.full_name(), error = %e, "cache volumes not removed")
            }
        }
    });
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/repos/{owner}/{name}/collaborators`.
pub async fn collaborators(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Vec<Collaborator>>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    Ok(axum::Json(state.store().list_collaborators(repo.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    access: Access,
}

/// `PUT /api/v1/repos/{owner}/{name}/collaborators/{username}` `{"access": "write"}`.
pub async fn add_collaborator(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, username)): Path<(String, String, String)>,
    Json(req): Json<Grant>,
) -> ApiResult<StatusCode> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    let user = state
        .store()
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?} not found")))?;
    if user.id == repo.owner_id {
        return Err(ApiError::invalid("the owner already has admin access"));
    }
    state
        .store()
        .set_collaborator(repo.id, user.id, req.access)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/repos/{owner}/{name}/collaborators/{username}`.
pub async fn remove_collaborator(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, username)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    let user = state
        .store()
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?} not found")))?;
    state.store().remove_collaborator(repo.id, user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// `GET /api/v1/repos/{owner}/{name}/events?after=ID&limit=N`: push events, oldest first.
pub async fn events(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<axum::Json<Vec<PushEvent>>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(axum::Json(
        state.store().push_events(repo.id, q.after, limit).await?,
    ))
}
