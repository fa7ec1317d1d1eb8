//! The image registry under `/v2`: authorises every request, then hands it
//! to `slipway-registry`'s distribution API.
//!
//! Rules: a valid token is always needed (anonymous callers get `401` with
//! a Basic challenge, so `docker login` and engine credentials work, with the
//! token as password); repositories are named `<owner>/<anything>`; pulling
//! needs the Read scope, pushing and deleting the Write scope, and in both
//! cases the caller must be the owner or a site administrator. Refusals use
//! the OCI error body docker clients read.
//!
//! In cluster mode a node agent pulls release images with Basic
//! `<node-id>:<slpn_…>` (the credential its join issued, checked against
//! the digest in etcd): GET/HEAD of any repository, nothing else.

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

/// `Basic <node-id>:<slpn_…>`: a cluster node's pull credential, as
/// `(node, secret)`; `None` for any other credentials.
pub(crate) fn node_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, rest) = value.split_once(' ')?;
    if !kind.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (node, secret) = decoded.split_once(':')?;
    secret
        .starts_with("slpn_")
        .then(|| (node.to_owned(), secret.to_owned()))
}

/// A cluster node pulling a release image (cluster mode only): its
/// credential is checked against etcd and allows GET/HEAD of any
/// repository (and the `/v2/` ping), nothing else.
async fn node_pull(
    state: &AppState,
    parts: &axum::http::request::Parts,
    node: &str,
    secret: &str,
) -> Result<(), Response> {
    let Some(cluster) = state.cluster() else {
        return Err(unauthorized(
            "node credentials are only valid on a server in cluster mode",
        ));
    };
    match cluster.store().check_node_credential(node, secret).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(unauthorized(
                "invalid node credential: the agent gets a new one when it joins again",
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check a node credential");
            return Err(oci_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the cluster state (etcd) is not reachable; try again",
            ));
        }
    }
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(denied("a node credential may only pull images"));
    }
    if Endpoint::parse(parts.uri.path()) == Some(Endpoint::Catalog) {
        return Err(denied("a node credential may not list repositories"));
    }
    Ok(())
}

async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Some((node, secret)) = node_credentials(&parts.headers) {
        return match node_pull(&state, &parts, &node, &secret).await {
            Ok(()) => next.run(Request::from_parts(parts, body)).await,
            Err(refused) => refused,
        };
    }
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
