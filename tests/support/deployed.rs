//! An app deployed for real, for the app log tests: a server, an admin, a
//! repository `web` holding the busybox httpd app (logging every request's
//! URL to stderr), the app `web`, pushes, and the app's logs through the
//! API. Replicas left behind are removed when it is dropped.
#![allow(dead_code)]

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// busybox httpd with `-vv`: each request logs `url:/path` and `response:N` to stderr.
pub fn dockerfile() -> String {
    let d = HTTPD_DOCKERFILE.replace("\"-v\"", "\"-vv\"");
    assert!(d.contains("-vv"), "{d}");
    d
}

/// Connects to Docker (panicking loudly if it is down) and bootstraps busybox.
pub fn docker() -> (tokio::runtime::Runtime, slipway_runtime::Runtime) {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio.block_on(async {
        let rt = slipway_runtime::Runtime::connect()
            .await
            .unwrap_or_else(|e| {
                panic!("these tests need a reachable Docker Engine (run scripts/deps.sh): {e}")
            });
        slipway_runtime::images::ensure_busybox(&rt)
            .await
            .expect("bootstrap slipway/busybox");
        rt
    });
    (tokio, rt)
}

/// A server of a test that deploys replicas itself, and their instance label
/// once known: on drop the server stops and the replicas it left are
/// removed, even after a failure.
pub struct ServerGuard {
    pub server: TestServer,
    pub instance: Option<String>,
}

impl ServerGuard {
    /// Guards `server`; set `instance` once its first replica is known.
    pub fn new(server: TestServer) -> Self {
        ServerGuard {
            server,
            instance: None,
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.server.stop();
        if let Some(instance) = self.instance.take() {
            remove_deploy_instance(&instance);
        }
    }
}

/// Polls app `name` until `ok(app)` holds (at most 180 s), or panics with
/// the app and the server log.
pub fn wait_app(
    server: &TestServer,
    token: &str,
    name: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, app) = server.api("GET", &format!("/apps/{name}"), Some(token), None);
        if ok(&app) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {app}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A work tree of repository `alice/site` (made here with app `site` on port
/// 8080) holding the busybox httpd app; [`SiteRepo::push_version`] deploys.
pub struct SiteRepo {
    _work: tempfile::TempDir,
    dir: std::path::PathBuf,
    url: String,
}

impl SiteRepo {
    /// Creates repository and app `site` for `token`'s user `alice`.
    pub fn create(server: &TestServer, token: &str) -> Self {
        let (s, b) = server.api("POST", "/repos", Some(token), Some(json!({"name": "site"})));
        assert_eq!(s, 201, "{b}");
        let app = json!({"name": "site", "repo": "alice/site", "port": 8080});
        let (s, b) = server.api("POST", "/apps", Some(token), Some(app));
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("site");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("Dockerfile"), HTTPD_DOCKERFILE).unwrap();
        SiteRepo {
            _work: work,
            dir,
            url: server.git_url("alice", "site", Some(("alice", token))),
        }
    }

    /// Replaces the Dockerfile (committed by the next push).
    pub fn set_dockerfile(&self, dockerfile: &str) {
        std::fs::write(self.dir.join("Dockerfile"), dockerfile).unwrap();
    }

    /// Commits `www/index.html` = `version` and pushes it.
    pub fn push_version(&self, version: &str) {
        std::fs::write(self.dir.join("www/index.html"), format!("{version}\n")).unwrap();
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", version]);
        git_ok(&self.dir, &["push", "-q", &self.url, "main"]);
    }
}

/// A server running app `web`.
pub struct Deployed {
    pub server: TestServer,
    pub token: String,
    dir: std::path::PathBuf,
    _work: tempfile::TempDir,
    instance: std::cell::RefCell<Option<String>>,
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let instance = self.instance.borrow().clone();
        self.server.stop();
        if let Some(instance) = instance {
            remove_deploy_instance(&instance);
        }
    }
}

impl Deployed {
    /// A server with `env`, and app `web` with `settings` (not pushed yet).
    pub fn new(env: &[(&str, &str)], settings: Value) -> Self {
        let server = TestServer::start_with_env(env);
        let token = server.setup_admin("alice");
        // Private: other users must not see the app or its logs.
        let repo = json!({"name": "web", "private": true});
        let (s, b) = server.api("POST", "/repos", Some(&token), Some(repo));
        assert_eq!(s, 201, "{b}");
        let mut body = json!({"name": "web", "repo": "alice/web", "port": 8080,
                              "health": {"path": "/health", "interval_ms": 500}});
        for (k, v) in settings.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, b) = server.api("POST", "/apps", Some(&token), Some(body));
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("web");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("Dockerfile"), dockerfile()).unwrap();
        std::fs::write(dir.join("www/health"), "ok\n").unwrap();
        git_ok(
            &dir,
            &[
                "remote",
                "add",
                "origin",
                &server.git_url("alice", "web", Some(("alice", &token))),
            ],
        );
        Deployed {
            server,
            token,
            dir,
            _work: work,
            instance: std::cell::RefCell::new(None),
        }
    }

    /// Commits the page `version` and pushes main.
    pub fn push(&self, version: &str) {
        std::fs::write(self.dir.join("www/index.html"), format!("{version}\n")).unwrap();
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", version]);
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
    }

    /// An API call with alice's token.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.api(method, path, Some(&self.token), body)
    }

    /// Waits until release `number` is active with every replica ready.
    pub fn wait_live(&self, number: i64, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (_, app) = self.api("GET", "/apps/web", None);
            let (_, releases) = self.api("GET", "/apps/web/releases", None);
            let status = releases
                .as_array()
                .and_then(|l| l.iter().find(|r| r["number"] == number))
                .map(|r| r["status"].as_str().unwrap_or("").to_string());
            self.learn_instance();
            if status.as_deref() == Some("active")
                && app["status"] == "running"
                && app["ready"] == app["replicas"]
                && app["release"] == number
            {
                return app;
            }
            assert!(
                status.as_deref() != Some("failed"),
                "release v{number} failed: {releases}\n{}",
                self.server.log()
            );
            assert!(
                start.elapsed() < limit,
                "v{number} not live after {limit:?}: app {app}, releases {releases}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn learn_instance(&self) {
        if self.instance.borrow().is_some() {
            return;
        }
        let Some(id) = self.replica_ids().into_iter().next() else {
            return;
        };
        if let Some(i) = deploy_instance_of(&id) {
            *self.instance.borrow_mut() = Some(i);
        }
    }

    /// Full container ids of the running replicas.
    pub fn replica_ids(&self) -> Vec<String> {
        let (_, r) = self.api("GET", "/apps/web/replicas", None);
        r.as_array()
            .unwrap()
            .iter()
            .map(|x| x["container"].as_str().unwrap().to_string())
            .collect()
    }

    /// `GET path` through the proxy; the status.
    pub fn request(&self, path: &str) -> u16 {
        proxy_get(&self.server.proxy_url, "web.localhost", path).0
    }

    /// `GET /apps/web/logs?query` with `token`: (status, raw body).
    pub fn logs_raw(&self, query: &str, token: &str) -> (u16, String) {
        let res = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/apps/web/logs?{query}", self.server.url))
            .bearer_auth(token)
            .send()
            .expect("logs request");
        (res.status().as_u16(), res.text().unwrap_or_default())
    }

    /// The records `GET /apps/web/logs?query` returns (asserting 200 and NDJSON).
    pub fn logs(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.logs_raw(query, &self.token);
        assert_eq!(status, 200, "logs?{query}: {body}");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Polls `logs?query` until `done` holds for its records (at most `limit`).
    pub fn wait_logs(
        &self,
        query: &str,
        limit: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let records = self.logs(query);
            if done(&records) {
                return records;
            }
            assert!(
                start.elapsed() < limit,
                "logs?{query} not as expected after {limit:?}: {records:?}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Where the server keeps the app's log files (the only app of the server).
    pub fn log_dir(&self) -> std::path::PathBuf {
        let root = self.server.data_dir().join("logs").join("apps");
        let dirs: Vec<_> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    }
}

/// The records whose line contains `text`.
pub fn with_text<'a>(records: &'a [Value], text: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["line"].as_str().unwrap_or("").contains(text))
        .collect()
}
