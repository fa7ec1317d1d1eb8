//! First-run setup, login and "who am I".

use super::tokens::{issue_token, login_expiry, IssuedToken};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, ClientAddr, Json};
use crate::setup;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use slipway_domain::{Scope, User, Username};
use std::time::Instant;

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
    let issued = issue_token(&state, &user, "setup", &Scope::ALL, login_expiry(&state)).await?;
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
/// every scope the user may hold, expiring `login_token_ttl_days` after its
/// last use.
///
/// Guessing is throttled (`slipway_auth::throttle`): past a few failures a
/// client gets 429 with `Retry-After` for an exponentially growing, capped
/// time, without its password being checked. An unknown user name costs the
/// same argon2 work as a real one and is throttled the same way, so neither
/// the time nor the answer tells whether an account exists.
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<LoginRequest>,
) -> ApiResult<(StatusCode, axum::Json<IssuedToken>)> {
    let wrong = || ApiError::unauthorized("wrong user name or password");
    if req.password.len() > slipway_auth::MAX_PASSWORD_LEN || req.username.len() > 64 {
        return Err(wrong());
    }
    let throttle = state.login_throttle();
    let lockouts = match throttle.begin(&req.username, addr, Instant::now()) {
        Ok(lockouts) => lockouts,
        Err(t) => {
            let secs = t.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            return Err(ApiError::too_many_requests(
                format!("too many failed logins; try again in {secs} s"),
                secs,
            ));
        }
    };
    let found = state.store().user_credentials(&req.username).await?;
    let (user, hash) = found.unzip();
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || {
        slipway_auth::verify_password_or_dummy(&password, hash.as_deref())
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| ok) else {
        for l in lockouts {
            tracing::warn!(
                target: "slipway::audit",
                username = %req.username,
                address = %addr,
                key = ?l.key,
                failures = l.failures,
                backoff_secs = l.backoff.as_secs(),
                "login locked out after repeated wrong passwords"
            );
        }
        return Err(wrong());
    };
    throttle.succeeded(&req.username, addr, Instant::now());
    let scopes: Vec<Scope> = if user.is_admin {
        Scope::ALL.to_vec()
    } else {
        vec![Scope::Read, Scope::Write]
    };
    let name = req.token_name.unwrap_or_else(|| "login".into());
    let issued = issue_token(&state, &user, &name, &scopes, login_expiry(&state)).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

/// `GET /api/v1/user`: the caller's account.
pub async fn me(caller: Caller) -> axum::Json<User> {
    axum::Json(caller.user)
}
