//! The REST API's routes, one module per resource.

mod account;
mod alerts;
mod app_logs;
mod app_metrics;
mod app_run;
mod app_volumes;
mod apps;
mod autoscale;
mod browse;
mod exec;
pub(crate) mod git;
pub(crate) mod metrics;
mod nodes;
mod openapi;
mod pipelines;
pub(crate) mod registry;
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
        .route("/repos/{owner}/{name}/pipelines", get(pipelines::list))
        .route(
            "/repos/{owner}/{name}/pipelines/{number}",
            get(pipelines::show),
        )
        .route(
            "/repos/{owner}/{name}/pipelines/{number}/cancel",
            post(pipelines::cancel),
        )
        .route(
            "/repos/{owner}/{name}/pipelines/{number}/retry",
            post(pipelines::retry),
        )
        .route(
            "/repos/{owner}/{name}/pipelines/{number}/steps/{step}/logs",
            get(pipelines::logs),
        )
        .route(
            "/repos/{owner}/{name}/pipelines/{number}/steps/{step}/logs/stream",
            get(pipelines::logs_stream),
        )
        .route(
            "/repos/{owner}/{name}/secrets",
            get(pipelines::list_secrets),
        )
        .route(
            "/repos/{owner}/{name}/secrets/{secret}",
            put(pipelines::put_secret).delete(pipelines::delete_secret),
        )
        .route(
            "/repos/{owner}/{name}/commits/{sha}/status",
            get(pipelines::commit_status),
        )
        .route("/repos/{owner}/{name}/badge.svg", get(pipelines::badge))
        .route("/repos/{owner}/{name}/branches", get(browse::branches))
        .route("/repos/{owner}/{name}/commits", get(browse::commits))
        .route("/repos/{owner}/{name}/commits/{sha}", get(browse::commit))
        .route("/repos/{owner}/{name}/tree", get(browse::tree))
        .route("/repos/{owner}/{name}/blob", get(browse::blob))
        .route(
            "/repos/{owner}/{name}/hooks",
            get(pipelines::list_hooks).post(pipelines::create_hook),
        )
        .route(
            "/repos/{owner}/{name}/hooks/{id}",
            axum::routing::delete(pipelines::delete_hook),
        )
        .route("/apps", get(apps::list).post(apps::create))
        .route(
            "/apps/{app}",
            get(apps::show).patch(apps::update).delete(apps::delete),
        )
        .route("/apps/{app}/scale", put(apps::scale))
        .route(
            "/apps/{app}/autoscale",
            get(autoscale::show)
                .put(autoscale::put)
                .delete(autoscale::delete),
        )
        .route("/apps/{app}/replicas", get(apps::replicas))
        .route("/apps/{app}/volumes", get(apps::volumes))
        .route(
            "/apps/{app}/volumes/{volume}/backup",
            get(app_volumes::backup),
        )
        .route(
            "/apps/{app}/volumes/{volume}/restore",
            put(app_volumes::restore),
        )
        .route("/apps/{app}/run", post(app_run::run))
        .route("/apps/{app}/releases", get(apps::releases))
        .route("/apps/{app}/rollback", post(apps::rollback))
        .route(
            "/apps/{app}/config",
            get(apps::config).patch(apps::change_config),
        )
        .route("/apps/{app}/secrets", get(apps::list_secrets))
        .route(
            "/apps/{app}/secrets/{secret}",
            put(apps::put_secret).delete(apps::delete_secret),
        )
        .route("/apps/{app}/logs", get(app_logs::logs))
        .route("/apps/{app}/deploy", post(apps::deploy))
        .route("/apps/{app}/events", get(apps::events))
        .route("/apps/{app}/metrics", get(app_metrics::show))
        .route("/alerts", get(alerts::all))
        .route(
            "/apps/{app}/alerts",
            get(alerts::list_rules).post(alerts::create_rule),
        )
        .route(
            "/apps/{app}/alerts/{id}",
            axum::routing::patch(alerts::update_rule).delete(alerts::delete_rule),
        )
        .route("/apps/{app}/alerts/events", get(alerts::history))
        .route(
            "/apps/{app}/alert-webhooks",
            get(alerts::list_webhooks).post(alerts::create_webhook),
        )
        .route(
            "/apps/{app}/alert-webhooks/{id}",
            axum::routing::patch(alerts::update_webhook).delete(alerts::delete_webhook),
        )
        .route(
            "/apps/{app}/alert-webhooks/{id}/test",
            post(alerts::test_webhook),
        )
        .route("/apps/{app}/alert-deliveries", get(alerts::deliveries))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", axum::routing::delete(nodes::remove))
        .route("/nodes/{id}/cordon", post(nodes::cordon))
        .route("/nodes/{id}/uncordon", post(nodes::uncordon))
        .route("/nodes/{id}/drain", post(nodes::drain))
        .route("/cluster", get(nodes::show))
        .route("/cluster/join-tokens", post(nodes::create_join_token))
        .route("/cluster/join", post(nodes::join))
        .route("/cluster/apps/{app}/secrets", get(nodes::app_secrets))
        .route("/cluster/apps/{app}/files/{sha}", get(nodes::app_files))
        .route("/exec/runtimes", get(exec::runtimes))
        .route("/exec/jobs", get(exec::list).post(exec::submit))
        .route("/exec/jobs/{id}", get(exec::show).delete(exec::cancel))
        .route("/exec/jobs/{id}/output.zip", get(exec::output))
        .route("/exec/jobs/{id}/events", get(exec::events))
        .route("/exec/run", post(exec::run))
        .route("/openapi.json", get(openapi::document))
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
