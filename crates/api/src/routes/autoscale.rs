//! Autoscaling: an app's policy (`crates/autoscale`). Read access shows it
//! with the replicas and the evaluator's last measurement and decision;
//! write access sets or removes it.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::routes::apps::authorize_app;
use crate::state::AppState;
use axum::extract::{Path, State};
use slipway_autoscale::{AutoscaleError, PolicyInput, PolicyView};
use slipway_domain::Access;

impl From<AutoscaleError> for ApiError {
    fn from(e: AutoscaleError) -> Self {
        match e {
            AutoscaleError::Invalid(m) => ApiError::invalid(m),
            AutoscaleError::Store(s) => s.into(),
        }
    }
}

/// `GET /apps/{app}/autoscale`: the policy (`enabled: false` without one).
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<PolicyView>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    Ok(axum::Json(state.autoscale().view(&app).await?))
}

/// `PUT /apps/{app}/autoscale`: sets or replaces the policy.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<PolicyInput>,
) -> ApiResult<axum::Json<PolicyView>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    if let Some(n) = app.release {
        let stack = state
            .store()
            .release(app.id, n)
            .await?
            .and_then(|r| r.spec.stack);
        if stack.is_some() {
            return Err(crate::error::ApiError::conflict(format!(
                "app {} is a stack: autoscaling is not available for stacks yet; set each service's replicas in its Compose file (deploy.replicas)",
                app.name
            )));
        }
    }
    state
        .autoscale()
        .set(&app, &body, &caller.user.username)
        .await?;
    Ok(axum::Json(state.autoscale().view(&app).await?))
}

/// `DELETE /apps/{app}/autoscale`: autoscaling off; replicas stay as they are.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<PolicyView>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    if !state
        .autoscale()
        .remove(&app, &caller.user.username)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "autoscaling is not on for app {}",
            app.name
        )));
    }
    Ok(axum::Json(state.autoscale().view(&app).await?))
}
