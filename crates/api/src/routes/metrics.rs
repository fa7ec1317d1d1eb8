//! `GET /metrics`: every registered metric in the Prometheus text format.
//! Subsystems add theirs to the registry in [`AppState::metrics_registry`] at
//! start-up. Needs an admin token unless `metrics_public` is set.

use crate::error::{ApiError, ApiResult};
use crate::extract::MaybeCaller;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Content type of the OpenMetrics text exposition (what prometheus-client writes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>, caller: MaybeCaller) -> ApiResult<Response> {
    if !state.config().metrics_public {
        match caller.0 {
            Some(c) => c.require_admin()?,
            None => {
                return Err(ApiError::unauthorized(
                    "metrics need an administrator's token (or `metrics_public = true` in the server configuration)",
                ))
            }
        }
    }
    let mut body = String::new();
    {
        let registry = state
            .metrics_registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut body, &registry)
            .map_err(ApiError::internal)?;
    }
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}
