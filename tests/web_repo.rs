//! The dashboard's repository browser and app settings page, end to end in a
//! real headless Chromium (chromedriver) against a real server: browse a
//! pushed repository's folders and files, switch branch, read the commits and
//! one commit's changes; then, on an app deployed in real Docker containers,
//! change its configuration through the settings page and see the release it
//! makes. Needs Debian's `chromium` and `chromium-driver` (scripts/deps.sh)
//! and, for the app test, Docker; both tests panic when these are missing.

mod support;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/deployed.rs"]
mod deployed;

use browser::*;
use deployed::{wait_app, ServerGuard, SiteRepo};
use fantoccini::{Client, Locator};
use serde_json::json;
use std::time::Duration;
use support::*;

/// Text of the element with id `id` ("" when it is missing).
async fn text_of(c: &Client, id: &str) -> String {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Clicks the first element matching `css` whose text is `text`, waiting for it.
async fn click_text(c: &Client, css: &str, text: &str) {
    let what = format!("{css} {text:?}");
    let link = until(Duration::from_secs(15), &what, || async move {
        for e in c.find_all(Locator::Css(css)).await.ok()? {
            if e.text().await.ok()? == text {
                return Some(e);
            }
        }
        None
    })
    .await;
    link.click().await.unwrap();
}

/// Waits until the texts of `css` satisfy `ok`; returns them.
async fn until_texts(
    c: &Client,
    css: &str,
    what: &str,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    until(Duration::from_secs(15), what, || async {
        let t = texts(c, css).await;
        ok(&t).then_some(t)
    })
    .await
}

/// Pushes `alice/handbook`: three commits on main (nested docs, a binary
/// file) and `feature` one commit ahead.
fn push_handbook(server: &TestServer, token: &str) {
    let (s, b) = server.api(
        "POST",
        "/repos",
        Some(token),
        Some(json!({"name": "handbook", "description": "browsed in a real browser"})),
    );
    assert_eq!(s, 201, "{b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("handbook");
    std::fs::create_dir_all(dir.join("docs/guide")).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    let commit = |msg: &str| {
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "-m", msg]);
    };
    std::fs::write(dir.join("README.md"), "# Handbook\n").unwrap();
    commit("start the handbook");
    std::fs::write(
        dir.join("docs/guide/intro.md"),
        "Welcome aboard.\n<b>not bold</b>\n",
    )
    .unwrap();
    commit("write the introduction");
    std::fs::write(dir.join("logo.bin"), [0u8, 159, 146, 150, 0]).unwrap();
    commit("add the logo");
    git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("feature.txt"), "only here\n").unwrap();
    commit("feature work");
    let url = server.git_url("alice", "handbook", Some(("alice", token)));
    git_ok(&dir, &["push", "-q", &url, "main", "feature"]);
}

#[test]
fn browser_browses_folders_files_branches_and_commits() {
    let server = TestServer::start();
    let token = server.setup_admin("alice");
    push_handbook(&server, &token);
    let driver = Driver::start();
    let base = server.url.clone();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let client = tokio.block_on(browser(&driver));
    let c = &client;
    tokio.block_on(async {
        login(c, &base).await;
        click_text(c, "a.repo-link", "alice/handbook").await;

        // The root of the default branch, folders first.
        let root = until_texts(c, "#browse-view tbody tr", "the root listing", |t| {
            t.len() == 3
        })
        .await;
        assert!(root[0].starts_with("docs/"), "{root:?}");
        assert!(root[1].starts_with("README.md"), "{root:?}");
        let options = texts(c, "#branch-select option").await;
        assert_eq!(options, ["main (default)", "feature"]);
        let clone = text_of(c, "clone-url").await;
        assert!(clone.ends_with("/git/alice/handbook.git"), "{clone}");

        // Into the folders, then a file's text.
        click_text(c, "a.tree-dir", "docs/").await;
        click_text(c, "a.tree-dir", "guide/").await;
        until_texts(c, "#breadcrumb", "the breadcrumb", |t| {
            t.first().is_some_and(|t| t == "handbook / docs / guide")
        })
        .await;
        click_text(c, "a.tree-file", "intro.md").await;
        let content = until(Duration::from_secs(15), "the file's text", || async {
            let t = c.find(Locator::Id("file-content")).await.ok()?;
            t.text().await.ok()
        })
        .await;
        assert_eq!(content, "Welcome aboard.\n<b>not bold</b>");
        let bold = c.find_all(Locator::Css("#file-content b")).await.unwrap();
        assert!(bold.is_empty(), "file content was inserted as HTML");
        assert_eq!(
            text_of(c, "breadcrumb").await,
            "handbook / docs / guide / intro.md"
        );
        // The address keeps the place: a reload shows the same file.
        c.refresh().await.unwrap();
        until(
            Duration::from_secs(15),
            "the file after a reload",
            || async { (text_of(c, "file-content").await == content).then_some(()) },
        )
        .await;

        // Back to the root through the breadcrumb; a binary file is described.
        click_text(c, "a.crumb-root", "handbook").await;
        click_text(c, "a.tree-file", "logo.bin").await;
        let note = until(Duration::from_secs(15), "the binary note", || async {
            let t = text_of(c, "file-note").await;
            (!t.is_empty()).then_some(t)
        })
        .await;
        assert!(note.starts_with("Binary file (5 B)"), "{note}");

        // Another branch: its own files.
        click_text(c, "a.crumb-root", "handbook").await;
        c.find(Locator::Css("#branch-select option[value='feature']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        click_text(c, "a.tree-file", "feature.txt").await;
        until(Duration::from_secs(15), "feature.txt's text", || async {
            (text_of(c, "file-content").await == "only here").then_some(())
        })
        .await;
        let url = c.current_url().await.unwrap();
        assert!(url.query().unwrap().contains("ref=feature"), "{url}");

        // The commits of that branch, then one commit's changes.
        c.find(Locator::Id("tab-commits"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let rows = until_texts(c, "#browse-view tbody tr", "the commits", |t| t.len() == 4).await;
        assert!(rows[0].contains("feature work"), "{rows:?}");
        assert!(rows[3].contains("start the handbook"), "{rows:?}");
        assert_eq!(text_of(c, "breadcrumb").await, "Commits on feature");
        c.find(Locator::Css("a.commit-link"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(Duration::from_secs(15), "the commit detail", || async {
            (text_of(c, "commit-subject").await == "feature work").then_some(())
        })
        .await;
        assert_eq!(text_of(c, "commit-stats").await, "1 file changed, +1 −0");
        let changed = texts(c, "#commit-detail tbody tr").await;
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].contains("added") && changed[0].contains("feature.txt"));
        // The back button returns to the list.
        c.back().await.unwrap();
        until_texts(c, "a.commit-link", "the commits again", |t| t.len() == 4).await;

        // The pipelines list is still on the page.
        let pipelines = until(Duration::from_secs(15), "the pipelines list", || async {
            let t = text_of(c, "pipelines").await;
            (!t.contains("Loading")).then_some(t)
        })
        .await;
        assert!(pipelines.contains("No pipelines yet"), "{pipelines}");
        let shot = c.screenshot().await.expect("screenshot");
        let v = variance(&shot);
        assert!(v > 100.0, "the screenshot looks blank (variance {v:.1})");
    });
    tokio.block_on(client.close()).expect("close the browser");
    drop(driver);
}

#[test]
fn browser_changes_an_app_config_and_sees_the_release() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    docker(&tokio);
    let mut guard = ServerGuard::new(TestServer::start());
    let server = &guard.server;
    let token = server.setup_admin("alice");
    let site = SiteRepo::create(server, &token);
    site.push_version("v1");
    wait_app(server, &token, "site", "release 1 live", |a| {
        a["release"] == 1 && a["ready"] == 1
    });
    let (_, replicas) = server.api("GET", "/apps/site/replicas", Some(&token), None);
    let container = replicas[0]["container"].as_str().unwrap().to_owned();
    guard.instance =
        Some(deploy_instance_of(&container).expect("replicas carry the deploy instance label"));
    let server = &guard.server;

    let driver = Driver::start();
    let base = server.url.clone();
    let client = tokio.block_on(browser(&driver));
    let c = &client;
    tokio.block_on(async {
        login(c, &base).await;
        until(Duration::from_secs(15), "the repository list", || async {
            c.find(Locator::Css("a.repo-link")).await.ok()
        })
        .await;
        c.goto(&format!("{base}/ui/app?name=site")).await.unwrap();
        click_text(c, "#settings-link", "Settings: variables, secrets, domains").await;
        until(Duration::from_secs(15), "the settings page", || async {
            let url = c.current_url().await.ok()?;
            let empty = text_of(c, "env").await == "No variables set.";
            (url.path() == "/ui/app-settings" && empty).then_some(())
        })
        .await;
        let releases = until_texts(c, "#releases tbody tr", "the releases", |t| t.len() == 1).await;
        assert!(releases[0].starts_with("v1"), "{releases:?}");
        let replicas = c.find(Locator::Id("replicas")).await.unwrap();
        assert_eq!(replicas.prop("value").await.unwrap().as_deref(), Some("1"));
        let health = c.find(Locator::Id("health-path")).await.unwrap();
        assert_eq!(health.prop("value").await.unwrap().as_deref(), Some("/"));

        // A new variable makes release v2.
        let fill = |id: &'static str, value: &'static str| async move {
            let input = c.find(Locator::Id(id)).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(value).await.unwrap();
        };
        let click = |id: &'static str| async move {
            c.find(Locator::Id(id))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        };
        fill("env-key", "GREETING").await;
        fill("env-value", "hello there").await;
        click("env-button").await;
        until(Duration::from_secs(15), "the config release", || async {
            let t = text_of(c, "env-state").await;
            (t == "set GREETING: release v2 created").then_some(())
        })
        .await;
        let env = texts(c, "#env tbody tr").await;
        assert_eq!(env.len(), 1);
        assert!(env[0].starts_with("GREETING hello there"), "{env:?}");
        let releases = until_texts(c, "#releases tbody tr", "release v2 listed", |t| {
            t.len() == 2
        })
        .await;
        assert!(
            releases[0].starts_with("v2") && releases[0].contains("config: set GREETING"),
            "{releases:?}"
        );

        // A bad name: the API's refusal shows, nothing changes.
        fill("env-key", "1BAD").await;
        fill("env-value", "x").await;
        click("env-button").await;
        let refusal = until(Duration::from_secs(15), "the refusal", || async {
            let t = text_of(c, "env-state").await;
            t.contains("invalid variable name").then_some(t)
        })
        .await;
        assert!(refusal.contains("HTTP 422"), "{refusal}");
        let class = c
            .find(Locator::Id("env-state"))
            .await
            .unwrap()
            .attr("class")
            .await
            .unwrap();
        assert_eq!(class.as_deref(), Some("error-text"));

        // A secret: set through the password field, its value never shown.
        fill("secret-name", "API_KEY").await;
        fill("secret-value", "s3cret-value-xyz").await;
        click("secret-button").await;
        until(Duration::from_secs(15), "the secret", || async {
            let names = texts(c, "code.secret-name").await;
            (names == ["API_KEY"]).then_some(())
        })
        .await;
        assert_eq!(text_of(c, "secret-state").await, "secret API_KEY set");
        let kind = c.find(Locator::Id("secret-value")).await.unwrap();
        assert_eq!(
            kind.attr("type").await.unwrap().as_deref(),
            Some("password")
        );
        assert_eq!(kind.prop("value").await.unwrap().as_deref(), Some(""));
        assert!(!c.source().await.unwrap().contains("s3cret-value-xyz"));

        // Settings: two replicas.
        fill("replicas", "2").await;
        click("settings-button").await;
        until(Duration::from_secs(15), "the settings saved", || async {
            (text_of(c, "settings-state").await == "saved replicas").then_some(())
        })
        .await;

        // Removing the variable (after a confirmation) makes another release.
        c.find(Locator::Css("button[data-unset='GREETING']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.accept_alert().await.expect("the removal confirmation");
        until(Duration::from_secs(15), "the variable removed", || async {
            (text_of(c, "env").await == "No variables set.").then_some(())
        })
        .await;
        let state = text_of(c, "env-state").await;
        assert!(state.starts_with("removed GREETING: release v"), "{state}");
    });
    tokio.block_on(client.close()).expect("close the browser");
    drop(driver);

    let (_, app) = server.api("GET", "/apps/site", Some(&token), None);
    assert_eq!(app["replicas"], 2, "{app}");
    assert_eq!(app["env"], json!({}), "{app}");
    assert_eq!(app["secrets"], json!(["API_KEY"]), "{app}");
    let (_, releases) = server.api("GET", "/apps/site/releases", Some(&token), None);
    let descriptions: Vec<&str> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert!(
        descriptions.contains(&"config: set GREETING")
            && descriptions.contains(&"secret: set API_KEY")
            && descriptions.contains(&"config: unset GREETING"),
        "{descriptions:?}"
    );
    // The newest configuration goes live on two replicas.
    let newest = releases[0]["number"].as_i64().unwrap();
    wait_app(server, &token, "site", "the newest release live", |a| {
        a["release"] == newest && a["ready"] == 2
    });
}
