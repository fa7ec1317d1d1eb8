//! Request extractors: the authenticated caller and JSON bodies whose
//! rejections use the API's error shape.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base64::Engine;
use slipway_domain::{Scope, User};

/// A caller who presented a live token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who they are.
    pub user: User,
    /// What their token allows.
    pub scopes: Vec<Scope>,
    /// When their token stops working, if ever: the latest expiry a token it
    /// creates may have.
    pub token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Caller {
    /// Fails with 403 unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token lacks the {scope:?} scope; create one with `slipway token create --scope {scope}`"
            )))
        }
    }

    /// Fails with 403 unless the caller is a site administrator using an admin-scoped token.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if !self.user.is_admin {
            return Err(ApiError::forbidden("only site administrators may do this"));
        }
        self.require(Scope::Admin)
    }
}

/// The caller, if the request carried credentials; invalid credentials are
/// always an error, never silently anonymous.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Caller>);

/// Pulls the token out of `Authorization: Bearer T` or `Basic base64(user:T)`.
pub fn presented_token(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (kind, rest) = value.split_once(' ').unwrap_or((value, ""));
    if kind.eq_ignore_ascii_case("bearer") || kind.eq_ignore_ascii_case("token") {
        return Ok(Some(rest.trim().to_owned()));
    }
    if kind.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::unauthorized("malformed Basic credentials").with_challenge()
            })?;
        let (_user, secret) = decoded.split_once(':').unwrap_or(("", &decoded));
        return Ok(Some(secret.to_owned()));
    }
    Err(ApiError::unauthorized(
        "unsupported Authorization scheme: use Bearer with an access token",
    ))
}

/// Resolves a token to its caller.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    if token.is_empty() || token.len() > 256 {
        return Err(ApiError::unauthorized("invalid access token"));
    }
    let digest = slipway_auth::token_digest(token);
    match state.store().authenticate_token(&digest).await? {
        Some((user, info)) => Ok(Caller {
            user,
            scopes: info.scopes,
            token_expires_at: info.expires_at,
        }),
        None => Err(ApiError::unauthorized(
            "invalid, expired or revoked access token; run `slipway login` to get a new one",
        )),
    }
}

/// The caller behind a non-API client's credentials (git, docker: HTTP
/// Basic with a token as password): `None` when anonymous. Bad credentials
/// are an error carrying a challenge, so the client asks again.
pub async fn challenge_caller(state: &AppState, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    match presented_token(parts).map_err(ApiError::with_challenge)? {
        Some(token) => Ok(Some(
            authenticate(state, &token)
                .await
                .map_err(ApiError::with_challenge)?,
        )),
        None => Ok(None),
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match presented_token(parts)? {
            Some(token) => Ok(MaybeCaller(Some(authenticate(state, &token).await?))),
            None => Ok(MaybeCaller(None)),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        MaybeCaller::from_request_parts(parts, state).await?.0.ok_or_else(|| {
            ApiError::unauthorized(
                "authentication required: send `Authorization: Bearer <token>` (run `slipway login`)",
            )
        })
    }
}

/// The client's IP address (the TCP peer; a reverse proxy's address when
/// Slipway runs behind one). Unspecified when the server was not started
/// with connection info (in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip()),
        ))
    }
}

/// `axum::Json` with rejections in the API's error shape (400/413/415/422).
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large("request body is too large"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with `Content-Type: application/json`",
                ),
                StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid(rejection.body_text()),
                _ => ApiError::bad_request(rejection.body_text()),
            }),
        }
    }
}
