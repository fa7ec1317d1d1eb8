//! Backups and restores of the named volumes of an app's stack:
//! `GET /apps/{app}/volumes/{volume}/backup` streams a tar archive of the
//! volume's contents (write access to the app), `PUT
//! /apps/{app}/volumes/{volume}/restore` replaces them with the tar archive
//! in the body (admin access: it stops the services using the volume and
//! overwrites its data). See `crates/deploy/src/volumes.rs`.

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::routes::apps::authorize_app;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use slipway_domain::Access;

/// `GET /apps/{app}/volumes/{volume}/backup`: `application/x-tar`, entries
/// `./…` relative to the volume's root, owners and modes kept.
pub async fn backup(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, volume)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Write).await?;
    let tar = state.deploy().backup_volume(&app, &volume).await?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}-{volume}.tar\"", app.name),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(tar))
        .map_err(ApiError::internal)
}

/// `PUT /apps/{app}/volumes/{volume}/restore`: the body is a tar archive
/// (at most `volume_restore_max_bytes`); answers what was restored once
/// the contents are replaced (the services start again in the background).
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, volume)): Path<(String, String)>,
    body: Body,
) -> ApiResult<axum::Json<slipway_deploy::VolumeRestore>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Admin).await?;
    let max = state.config().volume_restore_max_bytes;
    let report = state
        .deploy()
        .restore_volume(
            &app,
            &volume,
            body.into_data_stream(),
            max,
            &caller.user.username,
        )
        .await?;
    Ok(axum::Json(report))
}
