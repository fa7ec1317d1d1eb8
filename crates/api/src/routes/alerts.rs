//! Alerts: rules per app, the alerts they raised, and the signed webhooks
//! that hear about them (`crates/alerts`).
//!
//! Access follows the app's repository: read access shows rules and alerts,
//! write access changes rules. Webhooks and their deliveries need write
//! access even to be listed: their URLs often carry a receiver's token.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Json};
use crate::routes::apps::authorize_app;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use slipway_alerts::{AlertError, AlertView, DeliveryView, RuleInput, RuleView, WebhookView};
use slipway_domain::{Access, Scope};
use std::collections::{BTreeMap, HashMap};

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> Self {
        match e {
            AlertError::Invalid(m) => ApiError::invalid(m),
            AlertError::NotFound(m) => ApiError::not_found(m),
            AlertError::Secret(m) => ApiError::internal(m),
            AlertError::Store(s) => s.into(),
        }
    }
}

/// An id from the path; anything but a number is a thing that does not exist.
fn parse_id(app: &str, raw: &str, what: &str) -> ApiResult<i64> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("app {app} has no {what} {raw:?}")))
}

type ListQuery = BTreeMap<String, String>;

/// `limit` (1–1000, 100 when absent) from a query that may hold only
/// `limit` and the `also` parameters (JSON errors, unlike axum's rejections).
fn limit(q: &ListQuery, also: &[&str]) -> ApiResult<i64> {
    if let Some(k) = q
        .keys()
        .find(|k| *k != "limit" && !also.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "unknown parameter {k:?}; use {}",
            std::iter::once("limit")
                .chain(also.iter().copied())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    match q.get("limit") {
        None => Ok(100),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(format!(
                "limit must be a number between 1 and 1000, not {v:?}"
            ))),
        },
    }
}

/// `GET /apps/{app}/alerts`: rules with the state of their alert.
pub async fn list_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<RuleView>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    Ok(axum::Json(state.alerts().rules(&app).await?))
}

/// `POST /apps/{app}/alerts`: a new rule.
pub async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<RuleInput>,
) -> ApiResult<(StatusCode, axum::Json<RuleView>)> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let rule = state.alerts().add_rule(&app, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(rule)))
}

/// `PATCH /apps/{app}/alerts/{id}`: change a rule (fields given only).
pub async fn update_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    Json(body): Json<RuleInput>,
) -> ApiResult<axum::Json<RuleView>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let id = parse_id(&app.name, &id, "alert rule")?;
    Ok(axum::Json(
        state.alerts().update_rule(&app, id, &body).await?,
    ))
}

/// `DELETE /apps/{app}/alerts/{id}`: its firing alert resolves.
pub async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let id = parse_id(&app.name, &id, "alert rule")?;
    if state.alerts().delete_rule(&app, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "app {name} has no alert rule {id}"
        )))
    }
}

/// `GET /apps/{app}/alerts/events`: the app's alerts, firing first then newest.
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<AlertView>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    let n = limit(&q, &[])?;
    Ok(axum::Json(state.alerts().history(&app, n).await?))
}

/// `GET /alerts?state=firing|resolved|all&limit=N`: alerts of every app the
/// caller can read (firing ones by default), firing first then newest.
pub async fn all(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<AlertView>>> {
    caller.require(Scope::Read)?;
    let n = limit(&q, &["state"])?;
    let wanted = match q.get("state").map_or("firing", String::as_str) {
        "all" => None,
        s @ ("firing" | "resolved") => Some(s),
        other => {
            return Err(ApiError::invalid(format!(
                "state must be firing, resolved or all, not {other:?}"
            )))
        }
    };
    // Readable apps by id; the others' alerts are left out.
    let mut readable: HashMap<i64, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    // Read more than asked: some rows may belong to apps the caller cannot see.
    for ev in state.store().alert_events_all(wanted, n * 10).await? {
        if out.len() as i64 >= n {
            break;
        }
        let app_name = match readable.get(&ev.app_id) {
            Some(v) => v.clone(),
            None => {
                let name = match state.store().app_by_id(ev.app_id).await? {
                    Some(app) => authorize_app(&state, &caller, &app.name, Access::Read)
                        .await
                        .ok()
                        .map(|(a, _)| a.name),
                    None => None,
                };
                readable.insert(ev.app_id, name.clone());
                name
            }
        };
        if let Some(app) = app_name {
            out.push(AlertView::new(ev, &app));
        }
    }
    Ok(axum::Json(out))
}

/// Body of `POST /apps/{app}/alert-webhooks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    url: String,
    secret: String,
}

/// `GET /apps/{app}/alert-webhooks`: never their secrets.
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<WebhookView>>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    Ok(axum::Json(state.alerts().webhooks(&app).await?))
}

/// `POST /apps/{app}/alert-webhooks` `{"url", "secret"}`.
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<WebhookBody>,
) -> ApiResult<(StatusCode, axum::Json<WebhookView>)> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let hook = state
        .alerts()
        .add_webhook(&app, &body.url, &body.secret)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(hook)))
}

/// Body of `PATCH /apps/{app}/alert-webhooks/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChange {
    active: bool,
}

/// `PATCH /apps/{app}/alert-webhooks/{id}` `{"active": false}`.
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    Json(body): Json<WebhookChange>,
) -> ApiResult<axum::Json<WebhookView>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let id = parse_id(&app.name, &id, "alert webhook")?;
    Ok(axum::Json(
        state
            .alerts()
            .set_webhook_active(&app, id, body.active)
            .await?,
    ))
}

/// `DELETE /apps/{app}/alert-webhooks/{id}`.
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let id = parse_id(&app.name, &id, "alert webhook")?;
    if state.alerts().delete_webhook(&app, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "app {name} has no alert webhook {id}"
        )))
    }
}

/// `POST /apps/{app}/alert-webhooks/{id}/test`: a signed ping, now.
pub async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<DeliveryView>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let id = parse_id(&app.name, &id, "alert webhook")?;
    Ok(axum::Json(state.alerts().test_webhook(&app, id).await?))
}

/// `GET /apps/{app}/alert-deliveries`: newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let n = limit(&q, &[])?;
    Ok(axum::Json(json!(state.alerts().deliveries(&app, n).await?)))
}
