//! Account administration (site administrators only).

use super::account::create_account;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_domain::User;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    password: String,
    #[serde(default)]
    is_admin: bool,
}

/// `POST /api/v1/users`: creates an account.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    caller.require_admin()?;
    let user = create_account(&state, &req.username, &req.password, req.is_admin).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// `GET /api/v1/users`: every account.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<User>>> {
    caller.require_admin()?;
    Ok(axum::Json(state.store().list_users().await?))
}

/// `GET /api/v1/users/{username}`: one account (any signed-in user may look).
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<axum::Json<User>> {
    let user = state
        .store()
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?} not found")))?;
    Ok(axum::Json(user))
}

/// `DELETE /api/v1/users/{username}`: deletes an account and its repositories.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if username == caller.user.username {
        return Err(ApiError::invalid("you cannot delete your own account"));
    }
    let store = state.store();
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?} not found")))?;
    let owned = store
        .list_repos(Some((user.id, false)), Some(&username))
        .await?;
    store.delete_user(user.id).await?;
    for repo in owned {
        if let (Ok(owner), Ok(name)) = (
            slipway_domain::Username::parse(&repo.owner),
            slipway_domain::RepoName::parse(&repo.name),
        ) {
            if let Err(e) = state.git().delete(&owner, &name).await {
                tracing::warn!(repo = %repo.full_name(), error = %e, "could not remove repository folder");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
