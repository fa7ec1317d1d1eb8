//! CI: pipelines, steps, live logs (SSE), cancel/retry, secrets, commit
//! statuses and badges.

use super::repos::authorize;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, MaybeCaller};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use slipway_ci::CiError;
use slipway_domain::{Access, PipelineRecord, Repo, Status, StepRecord};
use std::convert::Infallible;
use std::time::Duration;

/// A pipeline as the API shows it.
#[derive(Serialize)]
pub struct PipelineView {
    #[serde(flatten)]
    pipeline: PipelineRecord,
    branch: Option<String>,
    duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<StepView>>,
}

/// A step as the API shows it.
#[derive(Serialize)]
pub struct StepView {
    #[serde(flatten)]
    step: StepRecord,
    duration_ms: Option<i64>,
}

fn duration(
    a: Option<chrono::DateTime<chrono::Utc>>,
    b: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<i64> {
    Some((b? - a?).num_milliseconds())
}

pub(crate) fn view(p: PipelineRecord, steps: Option<Vec<StepRecord>>) -> PipelineView {
    PipelineView {
        branch: p.branch().map(str::to_owned),
        duration_ms: duration(p.started_at, p.finished_at),
        steps: steps.map(|s| {
            s.into_iter()
                .map(|step| StepView {
                    duration_ms: duration(step.started_at, step.finished_at),
                    step,
                })
                .collect()
        }),
        pipeline: p,
    }
}

async fn find(state: &AppState, repo: &Repo, number: i64) -> ApiResult<PipelineRecord> {
    state
        .store()
        .pipeline(repo.id, number)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "pipeline #{number} of {} not found",
                repo.full_name()
            ))
        })
}

impl From<CiError> for ApiError {
    fn from(e: CiError) -> Self {
        match e {
            CiError::State(m) => ApiError::conflict(m),
            CiError::Store(s) => s.into(),
            CiError::Secret(m) => ApiError::internal(m),
            CiError::Invalid(m) => ApiError::invalid(m),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /repos/{owner}/{name}/pipelines?before=N&limit=N`: newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<PipelineView>>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let list = state
        .store()
        .list_pipelines(repo.id, q.before, limit)
        .await?;
    Ok(axum::Json(
        list.into_iter().map(|p| view(p, None)).collect(),
    ))
}

/// `GET /repos/{owner}/{name}/pipelines/{number}`: with its steps.
pub async fn show(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, number)): Path<(String, String, i64)>,
) -> ApiResult<axum::Json<PipelineView>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    let p = find(&state, &repo, number).await?;
    let steps = state.store().pipeline_steps(p.id).await?;
    Ok(axum::Json(view(p, Some(steps))))
}

/// `POST /repos/{owner}/{name}/pipelines/{number}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, number)): Path<(String, String, i64)>,
) -> ApiResult<(StatusCode, axum::Json<PipelineView>)> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Write).await?;
    let p = find(&state, &repo, number).await?;
    state.ci().cancel(&p).await?;
    let p = find(&state, &repo, number).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view(p, None))))
}

/// `POST /repos/{owner}/{name}/pipelines/{number}/retry`: queues a new pipeline.
pub async fn retry(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, number)): Path<(String, String, i64)>,
) -> ApiResult<(StatusCode, axum::Json<PipelineView>)> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Write).await?;
    let p = find(&state, &repo, number).await?;
    let actor = caller
        .0
        .as_ref()
        .map(|c| c.user.username.clone())
        .unwrap_or_default();
    let new = state.ci().retry(&p, &repo, &actor).await?;
    Ok((StatusCode::CREATED, axum::Json(view(new, None))))
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    follow: Option<String>,
    #[serde(default)]
    after: i64,
}

/// `GET …/pipelines/{number}/steps/{step}/logs[?follow=1]`: plain text, or
/// Server-Sent Events that follow the step until it ends.
pub async fn logs(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, number, step)): Path<(String, String, i64, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let follow = matches!(q.follow.as_deref(), Some("1" | "true" | "yes" | ""));
    let step = find_step(&state, &caller, &owner, &name, number, &step).await?;
    if follow {
        return Ok(sse(state, step.id, q.after).into_response());
    }
    let mut text = String::new();
    let mut after = q.after;
    loop {
        let lines = state.store().step_logs(step.id, after, 5000).await?;
        let Some(last) = lines.last().map(|l| l.number) else {
            break;
        };
        for l in lines {
            text.push_str(&l.text);
            text.push('\n');
        }
        after = last;
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET …/pipelines/{number}/steps/{step}/logs/stream`: always SSE.
pub async fn logs_stream(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, number, step)): Path<(String, String, i64, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let step = find_step(&state, &caller, &owner, &name, number, &step).await?;
    Ok(sse(state, step.id, q.after).into_response())
}

async fn find_step(
    state: &AppState,
    caller: &MaybeCaller,
    owner: &str,
    name: &str,
    number: i64,
    step: &str,
) -> ApiResult<StepRecord> {
    let (repo, _) = authorize(state, caller, owner, name, Access::Read).await?;
    let p = find(state, &repo, number).await?;
    state
        .store()
        .pipeline_step(p.id, step)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pipeline #{number} has no step {step:?}")))
}

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `event: log` per line (JSON `{number, stream, text, at}`, id = number),
/// then one `event: end` with the step's final status.
fn sse(
    state: AppState,
    step_id: i64,
    after: i64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Cursor {
        state: AppState,
        after: i64,
        done: bool,
    }
    let stream = futures::stream::unfold(
        Cursor {
            state,
            after,
            done: false,
        },
        move |mut c| async move {
            if c.done {
                return None;
            }
            loop {
                let store = c.state.store();
                let lines = store
                    .step_logs(step_id, c.after, 500)
                    .await
                    .unwrap_or_default();
                if let Some(last) = lines.last() {
                    c.after = last.number;
                    let events: Vec<Event> = lines
                        .iter()
                        .map(|l| {
                            Event::default()
                                .event("log")
                                .id(l.number.to_string())
                                .json_data(l)
                                .unwrap_or_default()
                        })
                        .collect();
                    return Some((events, c));
                }
                let status = match store.step_by_id(step_id).await {
                    Ok(Some(s)) => s.status,
                    _ => Status::Error,
                };
                if status.is_finished() {
                    // Lines are stored before the step ends: one more look catches the last ones.
                    let rest = store
                        .step_logs(step_id, c.after, 1)
                        .await
                        .unwrap_or_default();
                    if !rest.is_empty() {
                        continue;
                    }
                    c.done = true;
                    let end = Event::default()
                        .event("end")
                        .json_data(json!({ "status": status }))
                        .unwrap_or_default();
                    return Some((vec![end], c));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        },
    )
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A secret's name as listed (values are never returned).
#[derive(Serialize)]
pub struct SecretView {
    name: String,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /repos/{owner}/{name}/secrets`: names only.
pub async fn list_secrets(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Vec<SecretView>>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Write).await?;
    let names = state.store().secret_names(repo.id).await?;
    Ok(axum::Json(
        names
            .into_iter()
            .map(|(name, updated_at)| SecretView { name, updated_at })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    value: String,
}

/// Largest secret value accepted.
const MAX_SECRET_BYTES: usize = 64 * 1024;

fn check_secret_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a secret name is an environment variable name: letters, digits and _, not starting with a digit",
        ))
    }
}

/// `PUT /repos/{owner}/{name}/secrets/{secret}` `{"value": "..."}`.
pub async fn put_secret(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, secret)): Path<(String, String, String)>,
    Json(body): Json<SecretBody>,
) -> ApiResult<StatusCode> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Write).await?;
    check_secret_name(&secret)?;
    if body.value.is_empty() || body.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::invalid(format!(
            "a secret value must be 1 to {MAX_SECRET_BYTES} bytes"
        )));
    }
    state.ci().set_secret(repo.id, &secret, &body.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /repos/{owner}/{name}/secrets/{secret}`.
pub async fn delete_secret(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, secret)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Write).await?;
    if state.store().delete_secret(repo.id, &secret).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("secret {secret:?} not found")))
    }
}

/// `GET /repos/{owner}/{name}/commits/{sha}/status`: the newest pipeline of a commit.
pub async fn commit_status(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    if !(sha.len() == 40 || sha.len() == 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("give the full commit id (40 hex digits)"));
    }
    let p = state
        .store()
        .latest_pipeline_for_sha(repo.id, &sha.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pipeline ran for commit {sha}")))?;
    Ok(axum::Json(json!({
        "sha": p.sha,
        "state": p.status,
        "pipeline": p.number,
        "ref": p.ref_name,
        "url": format!("/api/v1/repos/{}/pipelines/{}", repo.full_name(), p.number),
    })))
}

#[derive(Deserialize)]
pub struct BadgeQuery {
    branch: Option<String>,
}

/// `GET /repos/{owner}/{name}/badge.svg?branch=main`: status badge of a branch.
pub async fn badge(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<BadgeQuery>,
) -> ApiResult<Response> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Read).await?;
    let branch = q.branch.unwrap_or_else(|| "main".into());
    if branch.len() > 255 {
        return Err(ApiError::invalid("branch name too long"));
    }
    let p = state
        .store()
        .latest_pipeline_for_ref(repo.id, &format!("refs/heads/{branch}"))
        .await?;
    let (text, colour) = match p.map(|p| p.status) {
        None => ("none", "#9f9f9f"),
        Some(Status::Success) => ("passing", "#4c1"),
        Some(Status::Failure) => ("failing", "#e05d44"),
        Some(Status::Error) => ("error", "#e05d44"),
        Some(Status::Running) => ("running", "#dfb317"),
        Some(Status::Pending) => ("pending", "#dfb317"),
        Some(Status::Cancelled) => ("cancelled", "#9f9f9f"),
        Some(Status::Skipped) => ("skipped", "#9f9f9f"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        badge_svg("ci", text, colour),
    )
        .into_response())
}

fn badge_svg(label: &str, text: &str, colour: &str) -> String {
    let lw = 6 * label.len() as u32 + 10;
    let tw = 7 * text.len() as u32 + 10;
    let w = lw + tw;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {text}"><title>{label}: {text}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{tw}" height="20" fill="{colour}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{tx}" y="14">{text}</text></g></svg>"##,
        lx = lw / 2,
        tx = lw + tw / 2,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    url: String,
    secret: String,
}

/// `GET /repos/{owner}/{name}/hooks`: webhooks (never their secrets).
pub async fn list_hooks(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Vec<slipway_ci::webhooks::WebhookView>>> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    Ok(axum::Json(state.ci().webhooks(repo.id).await?))
}

/// `POST /repos/{owner}/{name}/hooks` `{"url", "secret"}`: called when a pipeline ends.
pub async fn create_hook(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    Json(body): Json<WebhookBody>,
) -> ApiResult<(StatusCode, axum::Json<slipway_ci::webhooks::WebhookView>)> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    let hook = state
        .ci()
        .add_webhook(repo.id, &body.url, &body.secret)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(hook)))
}

/// `DELETE /repos/{owner}/{name}/hooks/{id}`.
pub async fn delete_hook(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, id)): Path<(String, String, i64)>,
) -> ApiResult<StatusCode> {
    let (repo, _) = authorize(&state, &caller, &owner, &name, Access::Admin).await?;
    if state.store().delete_webhook(repo.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("webhook {id} not found")))
    }
}
