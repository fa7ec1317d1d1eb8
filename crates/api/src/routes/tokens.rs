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

/// How a new token expires.
#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    /// Never (only where the server's `login_token_ttl_days` is 0, or from
    /// a token that never expires).
    Never,
    /// At a fixed time.
    At(DateTime<Utc>),
    /// A login token: `ttl` from now, pushed forward by each use.
    Sliding(Duration),
}

/// The expiry of a token issued by a password check (login, setup): the
/// server's `login_token_ttl_days`, sliding; 0 days means no expiry.
pub fn login_expiry(state: &AppState) -> Expiry {
    match state.config().login_token_ttl_days {
        0 => Expiry::Never,
        days => Expiry::Sliding(Duration::days(days.into())),
    }
}

/// Makes and stores a token for `user`.
pub async fn issue_token(
    state: &AppState,
    user: &User,
    name: &str,
    scopes: &[Scope],
    expiry: Expiry,
) -> ApiResult<IssuedToken> {
    let (expires_at, renew_secs) = match expiry {
        Expiry::Never => (None, None),
        Expiry::At(at) => (Some(at), None),
        Expiry::Sliding(ttl) => (Some(Utc::now() + ttl), Some(ttl.num_seconds())),
    };
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
            renew_secs,
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
/// token used to ask for it, and never outliving it: without
/// `expires_in_days` the new token expires when the requesting one does (or
/// never, if that one never does); a longer `expires_in_days` is refused
/// with 422. A sliding (login) token counts with its current expiry; what
/// it mints has a fixed one.
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
    let expiry = minted_expiry(req.expires_in_days, caller.token_expires_at, Utc::now())?;
    let issued = issue_token(&state, &caller.user, name, &scopes, expiry).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

/// The expiry of a token asked for with `expires_in_days` by a token that
/// expires at `limit`: never later than `limit`. A request for as many whole
/// days as remain (rounded up) is clamped to `limit`; more is refused.
fn minted_expiry(
    days: Option<u32>,
    limit: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ApiResult<Expiry> {
    let requested = match days {
        Some(0) | Some(3651..) => {
            return Err(ApiError::invalid(
                "expires_in_days must be between 1 and 3650",
            ))
        }
        Some(days) => Some(now + Duration::days(days.into())),
        None => None,
    };
    Ok(match (requested, limit) {
        (None, None) => Expiry::Never,
        (Some(at), None) => Expiry::At(at),
        (None, Some(limit)) => Expiry::At(limit),
        (Some(at), Some(limit)) if at <= limit => Expiry::At(at),
        (Some(_), Some(limit)) => {
            let left = limit - now;
            let max_days = (left.num_seconds() + 86_399) / 86_400;
            if i64::from(days.unwrap_or(0)) > max_days {
                return Err(ApiError::invalid(format!(
                    "the token making this request expires at {} ({max_days} day(s) from now); \
                     a token it creates must expire no later: ask for expires_in_days of at \
                     most {max_days}, or omit it to expire with this token",
                    limit.format("%Y-%m-%d %H:%M:%S UTC")
                )));
            }
            Expiry::At(limit)
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(e: Expiry) -> Option<DateTime<Utc>> {
        match e {
            Expiry::Never => None,
            Expiry::At(t) => Some(t),
            Expiry::Sliding(_) => panic!("minted tokens never slide"),
        }
    }

    #[test]
    fn minted_tokens_never_outlive_their_maker() {
        let now = Utc::now();
        let day = Duration::days(1);
        // No limit: as asked.
        assert_eq!(at(minted_expiry(None, None, now).unwrap()), None);
        assert_eq!(
            at(minted_expiry(Some(5), None, now).unwrap()),
            Some(now + day * 5)
        );
        // A 1-day maker: "never" inherits its expiry, longer is refused,
        // 1 day (a moment after it was made) is clamped to it.
        let limit = now + day - Duration::seconds(3);
        assert_eq!(
            at(minted_expiry(None, Some(limit), now).unwrap()),
            Some(limit)
        );
        assert_eq!(
            at(minted_expiry(Some(1), Some(limit), now).unwrap()),
            Some(limit)
        );
        let e = minted_expiry(Some(2), Some(limit), now).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("at most 1"), "{}", e.message);
        // Shorter than the maker: as asked.
        let limit = now + day * 30;
        assert_eq!(
            at(minted_expiry(Some(7), Some(limit), now).unwrap()),
            Some(now + day * 7)
        );
        assert!(minted_expiry(Some(0), None, now).is_err());
        assert!(minted_expiry(Some(3651), None, now).is_err());
    }
}
