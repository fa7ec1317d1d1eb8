//! The REST API's routes, one module per resource.

mod account;
pub(crate) mod git;
mod repos;
mod tokens;
mod users;

use crate::error::ApiError;
use crate::state::AppState;
use axum::routing::{get, post, put};
use axum::Router;

/// Every route under `/api/v1`.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/setup", post(account::setup))
        .route("/auth/login", post(account::login))
        .route("/user", get(account::me))
        .route("/user/tokens", get(tokens::list).post(tokens::create))
        .route("/user/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{username}", get(users::show).delete(users::delete))
        .route("/repos", get(repos::list).post(repos::create))
        .route(
            "/repos/{owner}/{name}",
            get(repos::show).patch(repos::update).delete(repos::delete),
        )
        .route(
            "/repos/{owner}/{name}/collaborators",
            get(repos::collaborators),
        )
        .route(
            "/repos/{owner}/{name}/collaborators/{username}",
            put(repos::add_collaborator).delete(repos::remove_collaborator),
        )
        .route("/repos/{owner}/{name}/events", get(repos::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// JSON 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; see /api/v1 routes in the README")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that HTTP method",
    )
}
