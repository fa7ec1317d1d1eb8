//! `POST /apps/{app}/run`: a one-off command in a new container of the
//! app's current release (`slipway run`), its output streamed back as
//! NDJSON and its exit code last.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::routes::apps::authorize_app;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use slipway_domain::Access;

/// Body of `POST /apps/{app}/run`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The stack service whose image, environment and volumes it uses.
    #[serde(default)]
    service: Option<String>,
    /// The command (exec form).
    command: Vec<String>,
}

/// Streams `{"stream": "stdout"|"stderr", "data": "…"}` lines while the
/// command runs, then `{"exit_code": N}`.
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<RunBody>,
) -> ApiResult<Response> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let one_off = state
        .deploy()
        .run_one_off(&app, body.service.as_deref(), body.command)
        .await?;
    let output = one_off.output();
    let lines = output.map(|chunk| match chunk {
        Ok(c) => {
            let stream = match c.stream {
                slipway_runtime::LogStream::Stderr => "stderr",
                _ => "stdout",
            };
            line(&json!({"stream": stream, "data": String::from_utf8_lossy(&c.data)}))
        }
        Err(e) => line(&json!({"error": e.to_string()})),
    });
    let end = futures::stream::once(async move {
        match one_off.finish().await {
            Ok(code) => line(&json!({ "exit_code": code })),
            Err(e) => line(&json!({"error": e.to_string()})),
        }
    });
    let body = Body::from_stream(lines.chain(end).map(Ok::<_, std::convert::Infallible>));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .map_err(ApiError::internal)
}

fn line(v: &serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}
