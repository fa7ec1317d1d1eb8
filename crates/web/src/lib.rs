//! The web dashboard: static HTML, CSS and JavaScript embedded in the binary
//! and served under `/ui`. The pages are shells; their scripts call the REST
//! API (`/api/v1`) with the token the login page keeps in `sessionStorage`,
//! so the dashboard has no server-side state and no authority of its own.
//!
//! Every response carries a strict Content-Security-Policy (same origin only,
//! no inline scripts or styles), and the scripts insert data with
//! `textContent`, never as HTML.

mod assets;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The policy sent with every dashboard response: only this origin's files,
/// no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes (`/`, `/ui`, `/ui/...`), to merge into the server's
/// router whatever its state type.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let ui = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { page("repos") }))
        .route("/ui/{*path}", get(|Path(path): Path<String>| serve(path)))
        .layer(axum::middleware::map_response(secure));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .merge(ui)
}

/// `/ui/<page>` or `/ui/static/<file>`; anything else is 404.
async fn serve(path: String) -> Response {
    match path.strip_prefix("static/") {
        Some(file) => asset(file),
        None => page(&path),
    }
}

/// One HTML page by name, or 404.
fn page(name: &str) -> Response {
    match assets::page(name) {
        Some(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            html,
        )
            .into_response(),
        None => not_found(),
    }
}

/// One script, style sheet or image by file name, or 404.
fn asset(name: &str) -> Response {
    match assets::file(name) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => not_found(),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        assets::NOT_FOUND,
    )
        .into_response()
}

/// Adds the security headers to every dashboard response.
async fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::assets;

    #[test]
    fn every_page_links_only_existing_assets() {
        for name in assets::PAGES.iter().map(|(n, _)| n) {
            let html = assets::page(name).unwrap();
            assert!(!html.contains("<script>"), "{name}: inline script");
            assert!(!html.contains(" style="), "{name}: inline style");
            for part in html.split("/ui/static/").skip(1) {
                let file = part.split('"').next().unwrap();
                assert!(assets::file(file).is_some(), "{name}: missing {file}");
            }
        }
    }
}
