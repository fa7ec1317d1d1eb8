//! Personal access tokens: create (shown once), list, revoke.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use slipway_domain::{Scope, TokenInfo, User};
use slipway_store::NewTokenRecord;

/// A token as returned once at creation: the secret plus its listing.
#[derive(Serialize)]
pub struct IssuedToken {
    /// The secret; it cannot be shown again.
    pub token: String,
    /// The token's public details.
    pub info: TokenInfo,
    /// Its owner.
    pub user: User,
}

/// Makes and stores a token for `user`.
pub async fn issue_token(
    state: &AppState,
    user: &User,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
) -> ApiResult<IssuedToken> {
    let fresh = slipway_auth::new_token();
    let info = state
        .store()
        .create_token(NewTokenRecord {
            user_id: user.id,
            name,
            digest: &fresh.digest,
            prefix: &fresh.prefix,
            scopes,
            expires_at,
        })
        .await?;
    Ok(IssuedToken {
        token: fresh.secret,
        info,
        user: user.clone(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<Scope>>,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// `POST /api/v1/user/tokens`: a new token, never with more scopes than the
/// token used to ask for it.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateToken>,
) -> ApiResult<(StatusCode, axum::Json<IssuedToken>)> {
    caller.require(Scope::Write)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("token name must be 1-100 characters"));
    }
    let scopes = req
        .scopes
        .unwrap_or_else(|| vec![Scope::Read, Scope::Write]);
    if scopes.is_empty() {
        return Err(ApiError::invalid("a token needs at least one scope"));
    }
    if let Some(extra) = scopes.iter().find(|s| !caller.scopes.contains(s)) {
        return Err(ApiError::forbidden(format!(
            "cannot grant the {extra} scope: the token making the request does not hold it"
        )));
    }
    let expires_at = match req.expires_in_days {
        Some(0) | Some(3651..) => {
            return Err(ApiError::invalid(
                "expires_in_days must be between 1 and 3650",
            ))
        }
        Some(days) => Some(Utc::now() + Duration::days(days.into())),
        None => None,
    };
    let issued = issue_token(&state, &caller.user, name, &scopes, expires_at).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

/// `GET /api/v1/user/tokens`: the caller's live tokens (never their secrets).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<TokenInfo>>> {
    caller.require(Scope::Read)?;
    Ok(axum::Json(state.store().list_tokens(caller.user.id).await?))
}

/// `DELETE /api/v1/user/tokens/{id}`: revokes one of the caller's tokens.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    state.store().revoke_token(caller.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
