//! Counts every request Slipway's own HTTP server answers, by route class
//! (`slipway_http_requests_total{route_class,class}` on `/metrics`).

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// The coarse class of a path: few values, so the label stays bounded.
pub(crate) fn route_class(path: &str) -> &'static str {
    if path.starts_with("/api/") {
        "api"
    } else if path.starts_with("/git/") {
        "git"
    } else if path == "/v2" || path.starts_with("/v2/") {
        "registry"
    } else if path == "/metrics" {
        "metrics"
    } else if path == "/healthz" {
        "health"
    } else if path == "/" || path == "/ui" || path.starts_with("/ui/") {
        "ui"
    } else {
        "other"
    }
}

/// Middleware: counts the response once its head is ready.
pub(crate) async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let class = route_class(req.uri().path());
    let res = next.run(req).await;
    state.monitor().count_http(class, res.status().as_u16());
    res
}

#[cfg(test)]
mod tests {
    use super::route_class;

    #[test]
    fn classes() {
        assert_eq!(route_class("/api/v1/apps"), "api");
        assert_eq!(route_class("/git/a/b.git/info/refs"), "git");
        assert_eq!(route_class("/v2/"), "registry");
        assert_eq!(route_class("/metrics"), "metrics");
        assert_eq!(route_class("/healthz"), "health");
        assert_eq!(route_class("/ui/apps/web"), "ui");
        assert_eq!(route_class("/nope"), "other");
    }
}
