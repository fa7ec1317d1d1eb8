//! `GET /metrics`: every registered metric, in the exposition format the
//! `Accept` header asks for (OpenMetrics or the classic text format, see
//! [`slipway_metrics::Format`]). Subsystems add theirs to the registry in
//! [`AppState::metrics_registry`] at start-up. Needs an admin token unless
//! `metrics_public` is set.

use crate::error::{ApiError, ApiResult};
use crate::extract::MaybeCaller;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use slipway_metrics::Format;

/// `GET /metrics`.
pub async fn scrape(
    State(state): State<AppState>,
    caller: MaybeCaller,
    headers: HeaderMap,
) -> ApiResult<Response> {
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
    // Several Accept headers are one list (RFC 9110 §5.3).
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let format = Format::negotiate((!accept.is_empty()).then(|| accept.join(",")).as_deref());
    let body = {
        let registry = state
            .metrics_registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        format.encode(&registry).map_err(ApiError::internal)?
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response())
}
