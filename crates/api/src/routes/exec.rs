//! Code execution: runtimes, asynchronous jobs (202 + polling or SSE), a
//! synchronous run, output zips and cancellation. Users only ever see their
//! own jobs; another user's job is a 404.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{json, Value};
use slipway_domain::Scope;
use slipway_exec::{job_view, ExecService, JobRequest, JobState, SubmitError};
use slipway_store::ExecJobRecord;
use std::convert::Infallible;
use std::time::Duration;

fn service(state: &AppState) -> ApiResult<&ExecService> {
    state.exec().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "exec_unavailable",
            "code execution is not available: the server could not reach the Docker Engine at start-up",
        )
    })
}

fn submit_error(e: SubmitError) -> Response {
    match e {
        SubmitError::Invalid(m) => ApiError::invalid(m).into_response(),
        SubmitError::Busy {
            message,
            retry_after_secs,
        } => (
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message),
        )
            .into_response(),
        SubmitError::NotInstalled(m) => {
            ApiError::new(StatusCode::CONFLICT, "runtime_not_installed", m).into_response()
        }
        SubmitError::Store(e) => ApiError::from(e).into_response(),
    }
}

/// A job submission: JSON (`files: [{name, content}]`), or a zip upload
/// (`Content-Type: application/zip`) with `language`, `version`, `stdin`,
/// `args` (repeatable), `run_timeout`, `compile_timeout`, `memory_limit` in
/// the query string; the zip's first file is the entry point.
pub struct JobInput(JobRequest);

#[derive(serde::Deserialize)]
struct ZipQuery {
    language: String,
    version: Option<String>,
    stdin: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    compile_timeout: Option<u64>,
    run_timeout: Option<u64>,
    memory_limit: Option<i64>,
}

impl axum::extract::FromRequest<AppState> for JobInput {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let is_zip = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/zip"));
        if !is_zip {
            let Json(r) = Json::<JobRequest>::from_request(req, state).await?;
            return Ok(JobInput(r));
        }
        let query = req.uri().query().unwrap_or("");
        let q: ZipQuery = serde_html_form::from_str(query).map_err(|e| {
            ApiError::invalid(format!(
                "zip uploads take the job settings in the query string (?language=…): {e}"
            ))
        })?;
        let c = service(state)?.config().clone();
        let body = axum::body::to_bytes(req.into_body(), state.config().max_api_body_bytes)
            .await
            .map_err(|_| ApiError::too_large("the zip upload is too large"))?;
        let files = slipway_exec::files_from_zip(&body, c.max_files, c.max_total_bytes)
            .map_err(ApiError::invalid)?;
        Ok(JobInput(JobRequest {
            language: q.language,
            version: q.version,
            files,
            stdin: q.stdin,
            args: q.args,
            compile_timeout: q.compile_timeout,
            run_timeout: q.run_timeout,
            memory_limit: q.memory_limit,
        }))
    }
}

/// The caller's job `id`, or 404 (also for another user's job).
async fn own_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ExecJobRecord> {
    match state.store().exec_job(id).await? {
        Some(job) if job.owner_id == caller.user.id => Ok(job),
        _ => Err(ApiError::not_found(format!("no job {id} of yours"))),
    }
}

/// `GET /api/v1/exec/runtimes`: languages, versions, aliases and whether the image is built.
pub async fn runtimes(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Value>> {
    caller.require(Scope::Read)?;
    let exec = service(&state)?;
    let mut out = Vec::new();
    for r in slipway_exec::runtimes::all() {
        let installed = slipway_exec::images::present(exec.runtime(), r)
            .await
            .unwrap_or(false);
        out.push(json!({
            "language": r.language,
            "version": r.version,
            "aliases": r.aliases,
            "compiled": r.compile.is_some(),
            "image": r.image,
            "installed": installed,
        }));
    }
    Ok(axum::Json(Value::Array(out)))
}

/// `POST /api/v1/exec/jobs`: persist the job, answer 202 `{id, state}`.
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    JobInput(req): JobInput,
) -> ApiResult<Response> {
    caller.require(Scope::Write)?;
    let exec = service(&state)?;
    Ok(match exec.submit(caller.user.id, req).await {
        Ok(job) => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/api/v1/exec/jobs/{}", job.id))],
            axum::Json(json!({"id": job.id, "state": job.state})),
        )
            .into_response(),
        Err(e) => submit_error(e),
    })
}

/// `POST /api/v1/exec/run`: submit and wait for the result (Piston style).
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    JobInput(req): JobInput,
) -> ApiResult<Response> {
    caller.require(Scope::Write)?;
    let exec = service(&state)?;
    let job = match exec.submit(caller.user.id, req).await {
        Ok(job) => job,
        Err(e) => return Ok(submit_error(e)),
    };
    let c = exec.config();
    let patience = Duration::from_millis(c.compile_timeout_ms.1 + c.run_timeout_ms.1 + 60_000);
    let done = exec.wait(&job.id, patience).await?;
    Ok(axum::Json(job_view(&done)).into_response())
}

/// `GET /api/v1/exec/jobs`: the caller's latest jobs.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Value>> {
    caller.require(Scope::Read)?;
    let jobs = state.store().list_exec_jobs(caller.user.id, 100).await?;
    Ok(axum::Json(Value::Array(
        jobs.iter().map(job_view).collect(),
    )))
}

/// `GET /api/v1/exec/jobs/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    caller.require(Scope::Read)?;
    Ok(axum::Json(job_view(&own_job(&state, &caller, &id).await?)))
}

/// `GET /api/v1/exec/jobs/{id}/output.zip`: files the program wrote to `/work/output`.
pub async fn output(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    own_job(&state, &caller, &id).await?;
    let zip = state
        .store()
        .exec_job_output(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("this job has no output files (yet)"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-output.zip\""),
            ),
        ],
        zip,
    )
        .into_response())
}

/// `DELETE /api/v1/exec/jobs/{id}`: cancel a pending or running job.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    caller.require(Scope::Write)?;
    let exec = service(&state)?;
    match exec.cancel(&id, caller.user.id).await? {
        None => Err(ApiError::not_found(format!("no job {id} of yours"))),
        Some(s) if s.is_terminal() => Err(ApiError::conflict(format!(
            "job {id} already finished ({})",
            s.as_str()
        ))),
        Some(_) => Ok(axum::Json(json!({"id": id, "state": "cancelled"}))),
    }
}

/// `GET /api/v1/exec/jobs/{id}/events`: server-sent `state` events until the job ends.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Scope::Read)?;
    own_job(&state, &caller, &id).await?;
    let stream = futures::stream::unfold(
        (state, id, None::<String>, false),
        |(state, id, last, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let job = state.store().exec_job(&id).await.ok().flatten()?;
                if last.as_deref() != Some(job.state.as_str()) {
                    let terminal = JobState::parse(&job.state).is_none_or(JobState::is_terminal);
                    let event = Event::default()
                        .event("state")
                        .json_data(job_view(&job))
                        .unwrap_or_default();
                    return Some((Ok(event), (state, id, Some(job.state), terminal)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
