//! The image registry under `/v2`: authorises every request, then hands it
//! to `slipway-registry`'s distribution API.
//!
//! Rules: a valid token is always needed (anonymous callers get `401` with
//! a Basic challenge, so `docker login` and engine credentials work, with the
//! token as password); repositories are named `<owner>/<anything>`; pulling
//! needs the Read scope, pushing and deleting the Write scope, and in both
//! cases the caller must be the owner or a site administrator. Refusals use
//! the OCI error body docker clients read.

use crate::error::ApiError;
use crate::extract::{challenge_caller, Caller};
use crate::state::AppState;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use slipway_domain::Scope;
use slipway_registry::{catalog_response, oci_error, Endpoint};
use std::collections::HashMap;

/// The challenge docker clients answer with the user's credentials.
const CHALLENGE: &str = "Basic realm=\"slipway-registry\"";

/// The registry's routes (`/v2` and below) with authorisation in front.
/// Request bodies are streamed to disk and bounded by the registry itself
/// (10 GiB per blob, 4 MiB per manifest), not by the API's body limit.
pub fn router(state: &AppState) -> Router<AppState> {
    slipway_registry::router(state.registry().clone())
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(())
}

fn unauthorized(message: &str) -> Response {
    let mut res = oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    res
}

fn denied(message: &str) -> Response {
    oci_error(StatusCode::FORBIDDEN, "DENIED", message)
}

/// An API error (bad credentials, store trouble) in the OCI shape.
fn from_api(e: ApiError) -> Response {
    match e.status {
        StatusCode::UNAUTHORIZED => unauthorized(&e.message),
        StatusCode::FORBIDDEN => denied(&e.message),
        status => oci_error(status, "UNKNOWN", &e.message),
    }
}

/// Whether `caller` may touch repository `repo` at all: it must be
/// `<owner>/<name>` and the caller that owner or an administrator.
fn may_access(caller: &Caller, repo: &str) -> bool {
    match repo.split_once('/') {
        Some((owner, rest)) if !rest.is_empty() => {
            caller.user.is_admin || caller.user.username == owner
        }
        _ => false,
    }
}

async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match challenge_caller(&state, &parts).await {
        Ok(Some(c)) => c,
        Ok(None) => return unauthorized(
            "authentication required: log in with your user name and an access token as password",
        ),
        Err(e) => return from_api(e),
    };
    let Some(endpoint) = Endpoint::parse(parts.uri.path()) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let write = !matches!(parts.method, Method::GET | Method::HEAD);
    let scope = if write { Scope::Write } else { Scope::Read };
    if let Err(e) = caller.require(scope) {
        return denied(&e.message);
    }
    match endpoint.repository() {
        None if endpoint == Endpoint::Catalog => {
            let all = match state.registry().repositories().await {
                Ok(all) => all,
                Err(e) => return axum::response::IntoResponse::into_response(e),
            };
            let visible = all.into_iter().filter(|r| may_access(&caller, r)).collect();
            let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
                .map(|q| q.0)
                .unwrap_or_default();
            return catalog_response(visible, &query);
        }
        None => {}
        Some(repo) if !may_access(&caller, repo) => {
            let verb = if write { "push to" } else { "pull from" };
            return denied(&format!(
                "you may not {verb} {repo}: repositories are named <owner>/<name> and only their owner (or an administrator) may use them"
            ));
        }
        Some(_) => {
            if let Some(uri) = without_foreign_mount(&caller, &parts.uri) {
                parts.uri = uri;
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// A cross-repository mount from a repository the caller may not read is
/// turned into a plain upload (the client then sends the blob itself), so
/// mounting cannot leak another user's layers.
fn without_foreign_mount(caller: &Caller, uri: &Uri) -> Option<Uri> {
    let query = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?.0;
    let from = query.get("from")?;
    if may_access(caller, from) {
        return None;
    }
    Uri::builder().path_and_query(uri.path()).build().ok()
}
