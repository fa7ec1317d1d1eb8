//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the REST API.
//!
//! The document is checked in (`crates/api/openapi.json`) rather than
//! generated from handler annotations; the test below compares it with the
//! route list in `routes/mod.rs`, both ways, so a route added without its
//! description (or removed while still described) fails the build's tests.
//! The description of the API is public: no token is needed.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, embedded at build time.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// `GET /openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::DOCUMENT;
    use std::collections::BTreeSet;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// `(path, method)` of every `.route(...)` in routes/mod.rs: the path is
    /// the call's first string literal, methods are `get(`, `post(`… calls
    /// (handler names are never followed by `(`).
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let src = src.split(".fallback(not_found)").next().unwrap();
        let mut out = BTreeSet::new();
        for chunk in src.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).expect("route path literal");
            let bytes = chunk.as_bytes();
            for m in METHODS {
                let mut from = 0;
                while let Some(i) = chunk[from..].find(&format!("{m}(")) {
                    let at = from + i;
                    let before = at.checked_sub(1).map(|j| bytes[j] as char);
                    if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        out.insert((path.to_string(), m.to_string()));
                    }
                    from = at + m.len();
                }
            }
        }
        out
    }

    fn routes_in_document() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut out = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for m in ops.as_object().expect("operations").keys() {
                if METHODS.contains(&m.as_str()) {
                    out.insert((path.clone(), m.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_parser_sees_the_routes() {
        let routes = routes_in_source();
        assert!(routes.len() > 40, "{routes:?}");
        for (p, m) in [
            ("/apps/{app}/scale", "put"),
            ("/user/tokens/{id}", "delete"),
            ("/repos/{owner}/{name}", "patch"),
            ("/exec/run", "post"),
        ] {
            assert!(routes.contains(&(p.into(), m.into())), "{p} {m}");
        }
        assert!(!routes.contains(&("/apps/{app}".into(), "put".into())));
    }

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let routes = routes_in_source();
        let doc = routes_in_document();
        let missing: Vec<_> = routes.difference(&doc).collect();
        let stale: Vec<_> = doc.difference(&routes).collect();
        assert!(
            missing.is_empty(),
            "routes missing from crates/api/openapi.json: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "crates/api/openapi.json describes routes that do not exist: {stale:?}"
        );
    }

    #[test]
    fn path_parameters_are_declared() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let names: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split('}').next())
                .collect();
            for (m, op) in ops.as_object().unwrap() {
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(names, declared, "{m} {path}");
                assert!(op["responses"].is_object(), "{m} {path}");
            }
        }
    }
}
