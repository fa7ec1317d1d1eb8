//! Git smart HTTP: `/git/{owner}/{repo}.git/{info/refs|git-upload-pack|git-receive-pack}`.
//!
//! Authorises the request, then hands it to `git http-backend` with the body
//! streamed in and out. Anonymous callers get `401` + `WWW-Authenticate` for
//! anything but reading a public repository, so git prompts for credentials.

use super::repos::{authorize_repo, scope_for};
use crate::error::{ApiError, ApiResult};
use crate::extract::challenge_caller;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{FutureExt, TryStreamExt};
use slipway_ci::queue::PushOutcome;
use slipway_domain::{is_null_sha, Access, RefUpdate, Repo, RepoName, Status, Username};
use slipway_git::{GitError, GitRequest, PushCompletion, Service};
use std::net::SocketAddr;

/// Serves one git request.
pub async fn serve(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((owner, repo, rest)): Path<(String, String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let (mut parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let service = Service::detect(&rest, parts.method.as_str(), &query).ok_or_else(|| {
        ApiError::not_found("only git's smart HTTP protocol is served here; use a git client")
    })?;
    let name = repo.strip_suffix(".git").unwrap_or(&repo).to_owned();
    let needed = service.required_access();

    let caller = challenge_caller(&state, &parts).await?;
    let repo = match &caller {
        Some(c) => {
            c.require(scope_for(needed))?;
            authorize_repo(&state, Some(c), &owner, &name, needed)
                .await?
                .0
        }
        None => {
            let public = match authorize_repo(&state, None, &owner, &name, needed).await {
                Ok((repo, _)) if needed == Access::Read => Some(repo),
                _ => None,
            };
            public.ok_or_else(|| {
                ApiError::unauthorized(
                    "authentication required: use your user name and an access token as password",
                )
                .with_challenge()
            })?
        }
    };

    let header_text = |name: HeaderName| {
        parts
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_length = match header_text(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request("bad Content-Length"))?,
        ),
        None => None,
    };
    let pusher = caller.as_ref().map(|c| c.user.username.clone());
    let on_push: Option<PushCompletion> = match (&pusher, service.is_push()) {
        (Some(who), true) => {
            let (state, repo, who) = (state.clone(), repo.clone(), who.clone());
            Some(Box::new(move |updates| {
                async move { record_push(&state, &repo, &who, updates).await }.boxed()
            }))
        }
        _ => None,
    };
    let git_request = GitRequest {
        service,
        owner: Username::parse(&repo.owner)?,
        name: RepoName::parse(&repo.name)?,
        rest,
        method: parts.method.to_string(),
        query,
        content_type: header_text(header::CONTENT_TYPE),
        content_length,
        content_encoding: header_text(header::CONTENT_ENCODING),
        git_protocol: header_text(HeaderName::from_static("git-protocol")),
        remote_user: pusher,
        remote_addr: peer.ip().to_string(),
        body: Box::pin(body.into_data_stream().map_err(std::io::Error::other)),
        max_body_bytes: state.config().max_push_bytes,
        on_push,
    };
    parts.extensions.clear();
    let answer = state.git().serve(git_request).await.map_err(|e| match e {
        GitError::BodyTooLarge(limit) => ApiError::too_large(format!(
            "push is larger than the server's limit of {limit} bytes"
        )),
        other => ApiError::internal(other),
    })?;
    let mut response = Response::new(Body::from_stream(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in answer.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().append(n, v);
        }
    }
    Ok(response)
}

/// Records the pushes a crash cut short (journaled, refs moved, no event:
/// `slipway_git::InterruptedPush`) as if they had just ended, then clears the
/// journal and the temporary objects such pushes left. Runs at start-up,
/// before any request is served.
pub(crate) async fn recover_interrupted_pushes(state: &AppState) {
    for push in state.git().interrupted_pushes().await {
        let repo = match state
            .store()
            .repo(push.owner.as_str(), push.name.as_str())
            .await
        {
            Ok(Some(repo)) => repo,
            _ => continue,
        };
        // Recorded already if the server stopped between recording the push
        // and clearing its journal.
        let mut updates = Vec::new();
        for u in push.applied {
            match state
                .store()
                .last_push_event_of_ref(repo.id, &u.ref_name)
                .await
            {
                Ok(Some(last)) if last.new_sha == u.new_sha => {}
                _ => updates.push(u),
            }
        }
        if !updates.is_empty() {
            record_push(state, &repo, &push.pusher, updates).await;
        }
    }
    state.git().clear_journal().await;
    state.git().remove_stale_temporaries().await;
}

/// Records an accepted push, points `HEAD` at the first branch pushed to an
/// empty repository, queues the push's pipelines, and returns what the
/// pusher sees as `remote:` lines.
async fn record_push(
    state: &AppState,
    repo: &Repo,
    who: &str,
    updates: Vec<RefUpdate>,
) -> Vec<String> {
    let events = match state.store().record_push(repo, who, &updates).await {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(repo = %repo.full_name(), error = %e, "could not record push");
            return vec!["Slipway: the push was stored, but recording it failed; no pipeline was queued (see the server log)".into()];
        }
    };
    tracing::info!(repo = %repo.full_name(), pusher = %who, refs = events.len(), "push recorded");
    let mut lines = Vec::new();
    if let (Ok(owner), Ok(name)) = (Username::parse(&repo.owner), RepoName::parse(&repo.name)) {
        let created: Vec<&str> = updates
            .iter()
            .filter(|u| is_null_sha(&u.old_sha))
            .map(|u| u.ref_name.as_str())
            .collect();
        match state
            .git()
            .adopt_pushed_branch(&owner, &name, &created)
            .await
        {
            Ok(Some(branch)) => lines.push(format!("Slipway: default branch is now {branch}")),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(repo = %repo.full_name(), error = %e, "could not set the default branch")
            }
        }
    }
    let outcome = state.ci().on_push(repo, &events).await;
    lines.extend(push_summary(state, repo, &outcome).await);
    lines
}

/// One or two lines per queued pipeline: its number and page, the pipeline
/// file's validation error, and the apps it deploys.
async fn push_summary(state: &AppState, repo: &Repo, outcome: &PushOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    for queued in &outcome.pipelines {
        let p = &queued.pipeline;
        let short = p
            .ref_name
            .strip_prefix("refs/heads/")
            .or_else(|| p.ref_name.strip_prefix("refs/tags/"))
            .unwrap_or(&p.ref_name);
        let url = format!(
            "{}/ui/pipeline?r={}%2F{}&n={}",
            state.public_url(),
            repo.owner,
            repo.name,
            p.number
        );
        match (&p.status, &p.error) {
            (Status::Error, Some(error)) => {
                lines.push(format!(
                    "Slipway: pipeline #{} for {short} did not run: {} is invalid:",
                    p.number,
                    slipway_ci::config::PIPELINE_FILE
                ));
                lines.extend(error.lines().take(20).map(|l| format!("  {l}")));
                lines.push(format!("  {url}"));
                continue;
            }
            _ => lines.push(format!(
                "Slipway: pipeline #{} queued for {short}: {url}",
                p.number
            )),
        }
        for app in &queued.apps {
            let next = match state.store().releases(app.id, 1).await {
                Ok(latest) => latest.first().map_or(1, |r| r.number + 1),
                Err(_) => 0,
            };
            let release = if next > 0 {
                format!(" release {next}")
            } else {
                String::new()
            };
            lines.push(format!(
                "Slipway: deploying app {}{release} once pipeline #{} has built its image",
                app.name, p.number
            ));
        }
    }
    if outcome.not_queued > 0 {
        lines.push(format!(
            "Slipway: {} more refs queued no pipeline (at most {} per push)",
            outcome.not_queued,
            slipway_ci::queue::MAX_PIPELINES_PER_PUSH
        ));
    }
    lines
}
