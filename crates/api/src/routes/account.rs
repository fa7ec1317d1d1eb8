//! First-run setup, login and "who am I".

use super::tokens::{issue_token, IssuedToken};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::setup;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_domain::{Scope, User, Username};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    setup_token: String,
    username: String,
    password: String,
}

/// `POST /api/v1/setup`: creates the first administrator with the one-time
/// setup code, and returns a token for them.
pub async fn setup(
    State(state): State<AppState>,
    Json(req): Json<SetupRequest>,
) -> ApiResult<(StatusCode, axum::Json<IssuedToken>)> {
    let store = state.store();
    if store.count_users().await? > 0 {
        return Err(ApiError::conflict(
            "this server is already set up; log in instead",
        ));
    }
    if !setup::check(store, &req.setup_token).await? {
        return Err(ApiError::unauthorized(
            "wrong setup token: use the one the server printed at start (also in <data-dir>/setup-token)",
        ));
    }
    let user = create_account(&state, &req.username, &req.password, true).await?;
    setup::finish(store, &state.config().data_dir).await?;
    let issued = issue_token(&state, &user, "setup", &Scope::ALL, None).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

/// Validates and creates an account (shared by setup and admin user creation).
pub async fn create_account(
    state: &AppState,
    username: &str,
    password: &str,
    is_admin: bool,
) -> ApiResult<User> {
    let username = Username::parse(username)?;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || slipway_auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            slipway_auth::AuthError::WeakPassword => ApiError::invalid(e.to_string()),
            other => ApiError::internal(other),
        })?;
    Ok(state
        .store()
        .create_user(username.as_str(), &hash, is_admin)
        .await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
    /// Label for the token this login creates.
    #[serde(default)]
    token_name: Option<String>,
}

/// `POST /api/v1/auth/login`: checks a password and returns a new token with
/// every scope the user may hold.
pub async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<(StatusCode, axum::Json<IssuedToken>)> {
    let wrong = || ApiError::unauthorized("wrong user name or password");
    if req.password.len() > slipway_auth::MAX_PASSWORD_LEN || req.username.len() > 64 {
        return Err(wrong());
    }
    let Some((user, hash)) = state.store().user_credentials(&req.username).await? else {
        return Err(wrong());
    };
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || slipway_auth::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        return Err(wrong());
    }
    let scopes: Vec<Scope> = if user.is_admin {
        Scope::ALL.to_vec()
    } else {
        vec![Scope::Read, Scope::Write]
    };
    let name = req.token_name.unwrap_or_else(|| "login".into());
    let issued = issue_token(&state, &user, &name, &scopes, None).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

/// `GET /api/v1/user`: the caller's account.
pub async fn me(caller: Caller) -> axum::Json<User> {
    axum::Json(caller.user)
}
