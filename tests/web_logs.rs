//! The app logs view in a real headless Chromium (chromedriver, WebDriver)
//! against a real server running a real app: from the app page to its logs,
//! a text search that shows only the matching lines (stderr marked), and the
//! live follow toggle showing a line printed after it was switched on.
//! Needs Debian's `chromium` and `chromium-driver` (scripts/deps.sh) and
//! Docker; it panics when they are missing.

mod support;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/deployed.rs"]
mod deployed;

use browser::{browser, login_and_leave, texts, until, Driver};
use deployed::Deployed;
use fantoccini::Locator;
use serde_json::json;
use std::time::Duration;

#[test]
fn browser_searches_and_follows_an_apps_logs() {
    let (tokio, _rt) = deployed::docker();
    let app = Deployed::new(&[], json!({"replicas": 1}));
    app.push("v1");
    app.wait_live(1, Duration::from_secs(180));
    for i in 0..3 {
        assert_eq!(app.request(&format!("/browser-marker-{i}")), 404);
    }
    app.request("/another-page");
    app.wait_logs("q=url:/browser-marker", Duration::from_secs(15), |r| {
        r.len() == 3
    });
    // The page and its script are served under the strict policy.
    for path in ["/ui/app-logs", "/ui/static/app-logs.js"] {
        let res = reqwest::blocking::get(format!("{}{path}", app.server.url)).unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(!res.text().unwrap().contains("<script>"), "{path}");
    }
    let driver = Driver::start();
    let base = app.server.url.clone();
    let client = tokio.block_on(browser(&driver));
    let c = &client;
    tokio.block_on(async {
        login_and_leave(c, &base).await;
        // From the app page to its logs.
        c.goto(&format!("{base}/ui/app?name=web")).await.unwrap();
        let link = until(Duration::from_secs(10), "the logs link", || async move {
            c.find(Locator::Id("logs-link")).await.ok()
        })
        .await;
        link.click().await.unwrap();
        until(Duration::from_secs(15), "the latest lines", || async move {
            let url = c.current_url().await.ok()?;
            let n = texts(c, "#log .line").await.len();
            (url.path() == "/ui/app-logs" && n > 0).then_some(())
        })
        .await;
        let all = texts(c, "#log .line").await;
        assert!(
            all.iter().any(|l| l.contains("url:/another-page")),
            "{all:?}"
        );

        // A text search (any case) shows only the matching lines.
        let q = c.find(Locator::Id("log-q")).await.unwrap();
        q.send_keys("URL:/BROWSER-MARKER").await.unwrap();
        c.find(Locator::Id("log-search-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let lines = until(
            Duration::from_secs(15),
            "the matching lines",
            || async move {
                let t = texts(c, "#log .line .text").await;
                (t.len() == 3 && t.iter().all(|l| l.contains("url:/browser-marker"))).then_some(t)
            },
        )
        .await;
        assert!(lines[0].ends_with("/browser-marker-0"), "{lines:?}");
        let stderr = c.find_all(Locator::Css("#log .line.stderr")).await.unwrap();
        assert_eq!(stderr.len(), 3, "httpd logs to stderr");
        let replica = texts(c, "#log .line .rep").await;
        assert!(replica.iter().all(|r| r.len() == 12), "{replica:?}");
        let times = texts(c, "#log .line .ts").await;
        assert!(times.iter().all(|t| t.len() == 23), "{times:?}");
        let state = c.find(Locator::Id("log-state")).await.unwrap();
        assert_eq!(state.text().await.unwrap(), "3 lines");
        assert!(c
            .current_url()
            .await
            .unwrap()
            .query()
            .unwrap()
            .contains("q="));

        // Follow live: a line printed afterwards appears.
        c.find(Locator::Id("log-follow"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(10), "following", || async move {
            let s = c.find(Locator::Id("log-state")).await.ok()?;
            s.text().await.ok()?.contains("Following").then_some(())
        })
        .await;
        let proxy = app.server.proxy_url.clone();
        tokio::task::spawn_blocking(move || {
            support::proxy_get(&proxy, "web.localhost", "/browser-marker-live")
        })
        .await
        .unwrap();
        let lines = until(
            Duration::from_secs(15),
            "the followed line",
            || async move {
                let t = texts(c, "#log .line .text").await;
                t.iter()
                    .any(|l| l.ends_with("url:/browser-marker-live"))
                    .then_some(t)
            },
        )
        .await;
        assert_eq!(lines.len(), 4, "history then the new line: {lines:?}");
    });
    tokio.block_on(client.close()).expect("close the browser");
}
