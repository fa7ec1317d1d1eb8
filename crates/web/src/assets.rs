//! The embedded files: HTML pages by name and static files by file name.

/// Pages served at `/ui/<name>` (`/ui/` is `repos`).
pub(crate) const PAGES: &[(&str, &str)] = &[
    ("login", include_str!("../assets/login.html")),
    ("repos", include_str!("../assets/repos.html")),
    ("repo", include_str!("../assets/repo.html")),
    ("pipeline", include_str!("../assets/pipeline.html")),
    ("apps", include_str!("../assets/apps.html")),
    ("app", include_str!("../assets/app.html")),
    ("app-logs", include_str!("../assets/app-logs.html")),
    ("exec", include_str!("../assets/exec.html")),
    ("alerts", include_str!("../assets/alerts.html")),
    ("app-settings", include_str!("../assets/app-settings.html")),
    ("nodes", include_str!("../assets/nodes.html")),
];

/// Files served at `/ui/static/<name>` with their content types.
const FILES: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    ("common.js", JS, include_str!("../assets/common.js")),
    ("login.js", JS, include_str!("../assets/login.js")),
    ("repos.js", JS, include_str!("../assets/repos.js")),
    ("repo.js", JS, include_str!("../assets/repo.js")),
    ("pipeline.js", JS, include_str!("../assets/pipeline.js")),
    ("apps.js", JS, include_str!("../assets/apps.js")),
    ("app.js", JS, include_str!("../assets/app.js")),
    ("app-logs.js", JS, include_str!("../assets/app-logs.js")),
    ("chart.js", JS, include_str!("../assets/chart.js")),
    ("exec.js", JS, include_str!("../assets/exec.js")),
    ("alerts.js", JS, include_str!("../assets/alerts.js")),
    ("nodes.js", JS, include_str!("../assets/nodes.js")),
    (
        "alert-format.js",
        JS,
        include_str!("../assets/alert-format.js"),
    ),
    ("app-alerts.js", JS, include_str!("../assets/app-alerts.js")),
    (
        "app-settings.js",
        JS,
        include_str!("../assets/app-settings.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The page shown for unknown dashboard paths.
pub(crate) const NOT_FOUND: &str = include_str!("../assets/404.html");

/// The HTML of page `name`.
pub(crate) fn page(name: &str) -> Option<&'static str> {
    PAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, html)| *html)
}

/// The body and content type of static file `name`.
pub(crate) fn file(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| (*body, *ct))
}
