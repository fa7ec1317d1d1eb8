//! The web dashboard end to end: its pages over plain HTTP (redirects,
//! content types, Content-Security-Policy, 404s), then a real headless
//! Chromium driven through chromedriver (WebDriver) against a real server:
//! log in through the form, see a repository made through the API, watch a
//! real pipeline's log grow live, and check a screenshot is not blank.
//! The browser test needs Debian's `chromium` and `chromium-driver`
//! (scripts/deps.sh installs them) and Docker; it panics when they are missing.

mod support;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/deployed.rs"]
mod deployed;

use browser::*;
use deployed::{wait_app, ServerGuard, SiteRepo};
use fantoccini::Locator;
use serde_json::json;
use std::time::Duration;
use support::*;

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[test]
fn pages_and_assets_are_served_with_a_strict_policy() {
    let server = TestServer::start();
    let http = no_redirects();
    let get = |path: &str| http.get(format!("{}{path}", server.url)).send().unwrap();

    for (path, to) in [("/", "/ui/"), ("/ui", "/ui/")] {
        let res = get(path);
        assert!(res.status().is_redirection(), "{path}: {}", res.status());
        assert_eq!(res.headers()["location"], to, "{path}");
    }

    let pages = [
        "/ui/",
        "/ui/login",
        "/ui/repos",
        "/ui/repo",
        "/ui/pipeline",
        "/ui/apps",
        "/ui/app",
        "/ui/exec",
        "/ui/alerts",
        "/ui/nodes",
        "/ui/app-logs",
        "/ui/app-settings",
    ];
    for path in pages {
        let res = get(path);
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let html = res.text().unwrap();
        assert!(html.contains("/ui/static/common.js"), "{path}");
        assert!(!html.contains("<script>"), "{path} has an inline script");
    }

    for (path, ct) in [
        ("/ui/static/style.css", "text/css"),
        ("/ui/static/common.js", "text/javascript"),
        ("/ui/static/pipeline.js", "text/javascript"),
        ("/ui/static/chart.js", "text/javascript"),
    ] {
        let res = get(path);
        assert_eq!(res.status(), 200, "{path}");
        let got = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(ct), "{path}: {got}");
        assert!(res.headers().contains_key("content-security-policy"));
        assert!(!res.bytes().unwrap().is_empty(), "{path} is empty");
    }

    for path in [
        "/ui/x",
        "/ui/static/nope.js",
        "/ui/a/b",
        "/ui/static/../server.rs",
    ] {
        let res = get(path);
        assert_eq!(res.status(), 404, "{path}");
    }
    // The API is untouched by the dashboard's routes.
    assert_eq!(get("/api/v1/nope").status(), 404);
    assert_eq!(get("/healthz").status(), 200);
}

#[test]
fn browser_logs_in_lists_repos_and_follows_a_live_log() {
    // Docker first: the pipeline runs in a real container.
    let tokio = tokio::runtime::Runtime::new().unwrap();
    docker(&tokio);
    // No warm exec sandboxes: the playground's run leaves nothing behind.
    let server = TestServer::start_with_env(&[("SLIPWAY_EXEC_POOL_SIZE", "0")]);
    let token = server.setup_admin("alice");
    let (s, b) = server.api(
        "POST",
        "/repos",
        Some(&token),
        Some(json!({"name": "web-demo", "description": "made through the API"})),
    );
    assert_eq!(s, 201, "{b}");
    let driver = Driver::start();
    let base = server.url.clone();

    let client = tokio.block_on(browser(&driver));
    let c = &client;
    tokio.block_on(async {
        login(c, &base).await;
        let repos = until(
            Duration::from_secs(15),
            "the repository list",
            || async move {
                let t = texts(c, "a.repo-link").await;
                (!t.is_empty()).then_some(t)
            },
        )
        .await;
        assert_eq!(repos, vec!["alice/web-demo".to_string()]);
        let page = c.source().await.unwrap();
        assert!(page.contains("made through the API"));
    });

    // A push whose only step prints a line a second.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("web-demo");
    std::fs::create_dir_all(&dir).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(
        dir.join(".slipway.yml"),
        "steps:\n  - name: slow\n    image: slipway/busybox:latest\n    commands:\n      - for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 1; done\n",
    )
    .unwrap();
    git_ok(&dir, &["add", "-A"]);
    git_ok(&dir, &["commit", "-q", "-m", "slow"]);
    let url = server.git_url("alice", "web-demo", Some(("alice", &token)));
    git_ok(&dir, &["push", "-q", &url, "main"]);

    // An app (on another repository, so the push above does not deploy).
    let (s, b) = server.api(
        "POST",
        "/repos",
        Some(&token),
        Some(json!({"name": "app-demo"})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = server.api(
        "POST",
        "/apps",
        Some(&token),
        Some(json!({"name": "demo", "repo": "alice/app-demo"})),
    );
    assert_eq!(s, 201, "{b}");

    let browser_token = tokio.block_on(async {
        c.goto(&format!("{base}/ui/repo?r=alice/web-demo"))
            .await
            .unwrap();
        let link = until(
            Duration::from_secs(15),
            "the pipeline link",
            || async move { c.find(Locator::Css("a.pipeline-link")).await.ok() },
        )
        .await;
        assert_eq!(link.text().await.unwrap(), "#1");
        link.click().await.unwrap();
        // The log grows while the step runs.
        let first = until(
            Duration::from_secs(60),
            "the first log lines",
            || async move {
                let n = texts(c, "#log .line").await.len();
                (n > 0).then_some(n)
            },
        )
        .await;
        assert!(
            first < 9,
            "the step was almost over before the page followed it ({first} lines)"
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let second = texts(c, "#log .line").await.len();
        assert!(
            second > first,
            "the log did not grow live: {first} then {second} lines"
        );
        let end = until(
            Duration::from_secs(60),
            "the end of the step",
            || async move {
                let state = c.find(Locator::Id("log-state")).await.ok()?;
                let state = state.text().await.ok()?;
                state.contains("ended").then_some(state)
            },
        )
        .await;
        assert!(end.contains("success"), "step ended as: {end}");
        let all = texts(c, "#log .line").await;
        let want: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
        assert_eq!(all, want, "each line once, in order");

        let shot = c.screenshot().await.expect("screenshot");
        let v = variance(&shot);
        assert!(v > 100.0, "the screenshot looks blank (variance {v:.1})");

        // The apps list: the app with its status and ready/desired replicas.
        c.goto(&format!("{base}/ui/apps")).await.unwrap();
        let row = until(Duration::from_secs(10), "the apps list", || async move {
            let rows = texts(c, "#apps tbody tr").await;
            (!rows.is_empty()).then_some(rows)
        })
        .await;
        assert_eq!(row.len(), 1, "{row:?}");
        assert!(row[0].starts_with("demo"), "{row:?}");
        assert!(
            row[0].contains("alice/app-demo") && row[0].contains("0/1"),
            "{row:?}"
        );

        // The exec playground runs the default snippet in a real sandbox.
        c.goto(&format!("{base}/ui/exec")).await.unwrap();
        until(
            Duration::from_secs(30),
            "the busybox-sh runtime",
            || async move {
                let t = texts(c, "#language option").await;
                t.iter().any(|t| t.starts_with("busybox-sh")).then_some(())
            },
        )
        .await;
        c.find(Locator::Id("run-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let out = until(
            Duration::from_secs(120),
            "the snippet's output",
            || async move {
                let t = c
                    .find(Locator::Id("stdout"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                (!t.is_empty()).then_some(t)
            },
        )
        .await;
        assert_eq!(out.trim(), "hello from the sandbox");
        let exit = c
            .find(Locator::Id("result-exit"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(exit.contains("exit 0"), "{exit}");

        // The app page: replica count, charts, releases, and a scale control.
        c.goto(&format!("{base}/ui/app?name=demo")).await.unwrap();
        let count = || async move {
            let t = c.find(Locator::Id("replica-count")).await.ok()?;
            t.text().await.ok()
        };
        until(Duration::from_secs(10), "0/1 ready", || async move {
            (count().await? == "0/1 ready").then_some(())
        })
        .await;
        until(Duration::from_secs(15), "the charts", || async move {
            let state = c.find(Locator::Id("charts-state")).await.ok()?;
            let drawn = state.text().await.ok()?.is_empty();
            let n = c.find_all(Locator::Css("canvas.chart")).await.ok()?.len();
            (drawn && n == 4).then_some(())
        })
        .await;
        let releases = texts(c, "#releases p").await;
        assert!(
            releases.iter().any(|t| t.contains("No releases yet")),
            "{releases:?}"
        );
        let input = c.find(Locator::Id("scale-input")).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys("2").await.unwrap();
        c.find(Locator::Id("scale-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(10), "0/2 ready", || async move {
            (count().await? == "0/2 ready").then_some(())
        })
        .await;

        // The nodes page: in single-node mode the server itself, with its capacity.
        c.goto(&format!("{base}/ui/nodes")).await.unwrap();
        let row = until(Duration::from_secs(10), "the local node", || async move {
            let rows = texts(c, "#nodes tbody tr").await;
            rows.into_iter().find(|r| r.contains("local"))
        })
        .await;
        assert!(
            row.contains("ready") && row.contains("cores") && row.contains("GiB"),
            "{row}"
        );
        let mode = texts(c, "#cluster-mode").await;
        assert!(mode[0].contains("Single-node mode"), "{mode:?}");

        // Log out: the login's token is revoked, not just forgotten.
        let browser_token = c
            .execute("return sessionStorage.getItem('slipway.token')", vec![])
            .await
            .unwrap();
        c.find(Locator::Id("logout"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(10), "the login form", || async move {
            c.find(Locator::Id("login-form")).await.ok()
        })
        .await;
        browser_token.as_str().unwrap().to_owned()
    });
    tokio.block_on(client.close()).expect("close the browser");
    let (s, b) = server.api("GET", "/user", Some(&browser_token), None);
    assert_eq!(
        s, 401,
        "the dashboard's token still works after logout: {b}"
    );
    let (_, app) = server.api("GET", "/apps/demo", Some(&token), None);
    assert_eq!(
        app["replicas"], 2,
        "the scale button changed the app: {app}"
    );
    drop(driver);
}

#[test]
fn browser_shows_a_deployed_app_and_rolls_it_back() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = docker(&tokio);
    let mut guard = ServerGuard::new(TestServer::start());
    let server = &guard.server;
    let token = server.setup_admin("alice");
    let site = SiteRepo::create(server, &token);
    for n in 1..=2 {
        site.push_version(&format!("v{n}"));
        wait_app(server, &token, "site", &format!("release {n} live"), |a| {
            a["release"] == n && a["ready"] == 1
        });
    }
    // Which containers to remove at the end, whatever happens to the server.
    let (_, replicas) = server.api("GET", "/apps/site/replicas", Some(&token), None);
    let container = replicas[0]["container"].as_str().unwrap().to_owned();
    let instance = tokio
        .block_on(rt.inspect(&container))
        .expect("inspect the replica")
        .labels
        .get("io.slipway.deploy-instance")
        .cloned()
        .expect("replicas carry the deploy instance label");
    guard.instance = Some(instance);
    // A Dockerfile whose RUN fails: no release, a build_failed event.
    site.set_dockerfile("FROM slipway/busybox:latest\nRUN exit 7\n");
    site.push_version("broken");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !server
        .api("GET", "/apps/site/events", Some(&token), None)
        .1
        .to_string()
        .contains("build_failed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no build_failed event\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let driver = Driver::start();
    let base = server.url.clone();
    let client = tokio.block_on(browser(&driver));
    let c = &client;
    tokio.block_on(async {
        login(c, &base).await;
        until(
            Duration::from_secs(15),
            "the repository list",
            || async move { c.find(Locator::Css("a.repo-link")).await.ok() },
        )
        .await;
        c.goto(&format!("{base}/ui/app?name=site")).await.unwrap();
        let row = until(
            Duration::from_secs(15),
            "the healthy replica",
            || async move {
                let rows = texts(c, "#replicas tbody tr").await;
                (rows.len() == 1 && rows[0].contains("healthy")).then_some(rows)
            },
        )
        .await;
        assert!(
            row[0].contains("v2") && row[0].contains("127.0.0.1:"),
            "{row:?}"
        );
        let count = c.find(Locator::Id("replica-count")).await.unwrap();
        assert_eq!(count.text().await.unwrap(), "1/1 ready");
        let releases = until(Duration::from_secs(15), "the releases", || async move {
            let rows = texts(c, "#releases tbody tr").await;
            (rows.len() == 2).then_some(rows)
        })
        .await;
        assert!(
            releases[0].starts_with("v2") && releases[0].contains("current"),
            "{releases:?}"
        );
        // The events, newest first: the failed build on top, the rollouts below.
        let events = until(Duration::from_secs(15), "the events", || async move {
            let rows = texts(c, "#events tbody tr").await;
            (!rows.is_empty()).then_some(rows)
        })
        .await;
        assert!(
            events[0].contains("build_failed")
                && events[0].contains("pipeline #3")
                && events[0].contains("returned a non-zero code: 7"),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| e.contains("v2 is live")),
            "{events:?}"
        );
        // The nodes page counts the replica this server runs.
        c.goto(&format!("{base}/ui/nodes")).await.unwrap();
        let node = until(Duration::from_secs(10), "the local node", || async move {
            let rows = texts(c, "#nodes tbody tr").await;
            rows.into_iter().find(|r| r.contains("local"))
        })
        .await;
        assert!(node.contains("0.3 / "), "1 replica requests 250m: {node}");
        let mode = texts(c, "#cluster-mode").await;
        assert!(mode[0].contains("(1 now)"), "{mode:?}");
        c.goto(&format!("{base}/ui/app?name=site")).await.unwrap();
        until(
            Duration::from_secs(15),
            "the releases again",
            || async move {
                let rows = texts(c, "#releases tbody tr").await;
                (rows.len() == 2).then_some(())
            },
        )
        .await;
        c.find(Locator::Css("#releases button[data-release='1']"))
            .await
            .expect("a Roll back button on release 1")
            .click()
            .await
            .unwrap();
        c.accept_alert().await.expect("the rollback confirmation");
        until(
            Duration::from_secs(15),
            "the rollback release",
            || async move {
                let rows = texts(c, "#releases tbody tr").await;
                (rows.len() == 3 && rows[0].starts_with("v3")).then_some(())
            },
        )
        .await;
    });
    tokio.block_on(client.close()).expect("close the browser");
    drop(driver);
    wait_app(server, &token, "site", "the rollback live", |a| {
        a["release"] == 3 && a["ready"] == 1
    });
    let (_, releases) = server.api("GET", "/apps/site/releases", Some(&token), None);
    assert_eq!(releases[0]["number"], 3, "{releases}");
    assert_eq!(
        releases[0]["image"], releases[2]["image"],
        "v3 runs v1's image"
    );
}
