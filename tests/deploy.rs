//! End to end: continuous deployment. Real `git push`es of a small HTTP app
//! (busybox httpd built from its Dockerfile), real replicas in Docker, real
//! HTTP through Slipway's proxy by Host header, real `docker kill`.
//! Docker must be reachable: these tests panic otherwise.

mod support;

use serde_json::{json, Value};
use slipway_runtime::Runtime;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// Connects to Docker (panicking loudly if it is down) and bootstraps busybox.
fn docker() -> (tokio::runtime::Runtime, Runtime) {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio.block_on(async {
        let rt = Runtime::connect().await.unwrap_or_else(|e| {
            panic!("the deploy tests need a reachable Docker Engine (run scripts/deps.sh): {e}")
        });
        slipway_runtime::images::ensure_busybox(&rt)
            .await
            .expect("bootstrap slipway/busybox");
        rt
    });
    (tokio, rt)
}

const DOCKERFILE: &str = HTTPD_DOCKERFILE;
use support::proxy_get as get;

struct App {
    server: TestServer,
    token: String,
    dir: std::path::PathBuf,
    _work: tempfile::TempDir,
    /// The server's deploy instance label, learnt from its first replica,
    /// so the replicas it leaves behind are removed when the test ends.
    instance: std::cell::RefCell<Option<String>>,
}

impl Drop for App {
    fn drop(&mut self) {
        let instance = self.instance.borrow().clone();
        self.server.stop();
        if let Some(instance) = instance {
            remove_deploy_instance(&instance);
        }
    }
}

impl App {
    /// A server, an admin, a repository `web` with the app's files, and app `web`.
    fn new(settings: Value) -> Self {
        let server = TestServer::start();
        let token = server.setup_admin("alice");
        let (s, b) = server.api("POST", "/repos", Some(&token), Some(json!({"name": "web"})));
        assert_eq!(s, 201, "{b}");
        let mut body = json!({"name": "web", "repo": "alice/web", "port": 8080});
        for (k, v) in settings.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, b) = server.api("POST", "/apps", Some(&token), Some(body));
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("web");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
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
        App {
            server,
            token,
            dir,
            _work: work,
            instance: std::cell::RefCell::new(None),
        }
    }

    /// Commits the page `version` (and an optional Dockerfile) and pushes main.
    fn push(&self, version: &str, dockerfile: Option<&str>) -> Instant {
        std::fs::write(self.dir.join("www/index.html"), format!("{version}\n")).unwrap();
        if let Some(d) = dockerfile {
            std::fs::write(self.dir.join("Dockerfile"), d).unwrap();
        }
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", version]);
        let pushed = Instant::now();
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
        pushed
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.api(method, path, Some(&self.token), body)
    }

    fn app(&self) -> Value {
        let (s, b) = self.api("GET", "/apps/web", None);
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Waits until release `number` is active with every replica ready.
    fn wait_live(&self, number: i64, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let app = self.app();
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
            if status.as_deref() == Some("failed") {
                panic!(
                    "release v{number} failed: {releases}\n{}",
                    self.server.log()
                );
            }
            assert!(
                start.elapsed() < limit,
                "v{number} not live after {limit:?}: app {app}, releases {releases}\npipelines {}\n{}",
                self.api("GET", "/repos/alice/web/pipelines", None).1,
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the latest pipeline ended; returns it with its steps.
    fn wait_pipeline(&self, number: i64) -> Value {
        let start = Instant::now();
        loop {
            let (s, p) = self.api("GET", &format!("/repos/alice/web/pipelines/{number}"), None);
            if s == 200 && !["pending", "running"].contains(&p["status"].as_str().unwrap_or("")) {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "pipeline #{number} did not end: {p}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether pipeline `number` is queued or running (or not made yet).
    fn pipeline_in_progress(&self, number: i64) -> bool {
        let (s, p) = self.api("GET", &format!("/repos/alice/web/pipelines/{number}"), None);
        s == 404 || ["pending", "running"].contains(&p["status"].as_str().unwrap_or(""))
    }

    fn step_log(&self, pipeline: i64, step: &str) -> String {
        reqwest::blocking::Client::new()
            .get(format!(
                "{}/api/v1/repos/alice/web/pipelines/{pipeline}/steps/{step}/logs",
                self.server.url
            ))
            .bearer_auth(&self.token)
            .send()
            .and_then(|r| r.text())
            .expect("step log")
    }

    fn host(&self) -> &'static str {
        "web.localhost"
    }

    /// Runs the `slipway` CLI against this server; (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Cli {
            config: self.dir.join("no-cli.toml"),
            server: self.server.url.clone(),
            token: Some(self.token.clone()),
        }
        .run(args, None);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

    fn replica_ids(&self) -> Vec<String> {
        let (_, r) = self.api("GET", "/apps/web/replicas", None);
        r.as_array()
            .unwrap()
            .iter()
            .map(|x| x["container"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Sends requests through the proxy until stopped (at most `limit`),
/// recording each (status, body).
fn load(
    proxy: String,
    host: &'static str,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<Vec<(u16, String)>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit && seen.len() < 200_000 {
            seen.push(get(&proxy, host, "/"));
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

#[test]
fn push_deploys_rolls_out_without_errors_heals_and_rolls_back() {
    let (tokio, rt) = docker();
    let app = App::new(json!({"replicas": 2, "health": {"path": "/health", "interval_ms": 500}}));

    // First push: image built, release v1 live on 2 replicas behind the proxy.
    let pushed = app.push("v1", None);
    let live = app.wait_live(1, Duration::from_secs(180));
    println!("push-to-live (first build): {:?}", pushed.elapsed());
    assert_eq!(
        live["url"],
        format!(
            "http://web.localhost:{}/",
            app.server.proxy_url.rsplit(':').next().unwrap()
        )
    );
    let p = app.wait_pipeline(1);
    assert_eq!(p["status"], "success", "{p}");
    let log = app.step_log(1, "image:web");
    assert!(log.contains("building slipway/app-web:"), "{log}");
    assert!(log.contains("v1 is live"), "{log}");
    assert!(
        log.contains("stored in the registry as alice/web:"),
        "{log}"
    );
    // The registry holds the released image for other nodes and `docker pull`.
    let tags = reqwest::blocking::Client::new()
        .get(format!("{}/v2/alice/web/tags/list", app.server.url))
        .basic_auth("alice", Some(&app.token))
        .send()
        .unwrap();
    assert_eq!(tags.status(), 200);
    let tags: Value = tags.json().unwrap();
    assert_eq!(tags["tags"].as_array().map(Vec::len), Some(1), "{tags}");
    assert_eq!(
        get(&app.server.proxy_url, app.host(), "/"),
        (200, "v1".into())
    );
    // Unknown hosts are not routed to the app.
    assert_eq!(get(&app.server.proxy_url, "other.localhost", "/").0, 404);

    // Second push during steady load: only 2xx, both versions, then only v2.
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(
        app.server.proxy_url.clone(),
        app.host(),
        stop.clone(),
        Duration::from_secs(170),
    );
    std::thread::sleep(Duration::from_millis(500));
    let pushed = app.push("v2", None);
    app.wait_live(2, Duration::from_secs(170));
    println!("push-to-live (cached base image): {:?}", pushed.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen = client.join().unwrap();
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        seen.iter().any(|(_, b)| b == "v1") && seen.iter().any(|(_, b)| b == "v2"),
        "both versions should answer during the rollout"
    );
    println!("rollout: {} requests, 0 failed", seen.len());
    for _ in 0..10 {
        assert_eq!(
            get(&app.server.proxy_url, app.host(), "/"),
            (200, "v2".into())
        );
    }
    let (_, releases) = app.api("GET", "/apps/web/releases", None);
    assert_eq!(releases[0]["status"], "active", "{releases}");
    assert_eq!(releases[1]["status"], "superseded", "{releases}");

    // Kill a replica: the proxy stops using it at once (at most the request
    // in flight on it when it died can fail), and the deployer replaces it.
    let before = app.replica_ids();
    assert_eq!(before.len(), 2);
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(
        app.server.proxy_url.clone(),
        app.host(),
        stop.clone(),
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(300));
    tokio
        .block_on(rt.kill(&before[0], None))
        .expect("docker kill");
    let start = Instant::now();
    loop {
        let now = app.replica_ids();
        if now.len() == 2 && !now.contains(&before[0]) && app.app()["ready"] == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the killed replica was not replaced: {now:?}\n{}",
            app.server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("killed replica replaced in {:?}", start.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = client.join().unwrap();
    let failed = seen.iter().filter(|(s, _)| *s != 200).count();
    assert!(
        failed <= 1,
        "{failed} of {} requests failed after the kill (only one can have been in flight)",
        seen.len()
    );
    println!("{} requests around the kill, {failed} failed", seen.len());
    let (_, events) = app.api("GET", "/apps/web/events", None);
    assert!(events.to_string().contains("exited"), "{events}");
    let (_, replicas) = app.api("GET", "/apps/web/replicas", None);
    let restarts: Vec<u64> = replicas
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["restarts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        restarts.iter().sum::<u64>(),
        1,
        "the replacement carries the slot's restart: {replicas}"
    );

    // Config makes a release; rollback restores the earlier image and config.
    let (s, r) = app.api(
        "PATCH",
        "/apps/web/config",
        Some(json!({"set": {"GREETING": "hello"}})),
    );
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["number"], 3);
    assert_eq!(r["description"], "config: set GREETING");
    app.wait_live(3, Duration::from_secs(60));
    let (s, r) = app.api("POST", "/apps/web/rollback", Some(json!({"release": 1})));
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["description"], "rollback to v1");
    app.wait_live(4, Duration::from_secs(60));
    assert_eq!(
        get(&app.server.proxy_url, app.host(), "/"),
        (200, "v1".into())
    );
    let (_, config) = app.api("GET", "/apps/web/config", None);
    assert_eq!(
        config["env"],
        json!({}),
        "rollback to v1 restores its (empty) config"
    );

    // Scale down to 1 and back up.
    let (s, b) = app.api("PUT", "/apps/web/scale", Some(json!({"replicas": 1})));
    assert_eq!(s, 200, "{b}");
    let start = Instant::now();
    while app.replica_ids().len() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "scale down did not happen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deleting the app stops its replicas and its route.
    let (s, _) = app.api("DELETE", "/apps/web", None);
    assert_eq!(s, 204);
    let start = Instant::now();
    loop {
        if get(&app.server.proxy_url, app.host(), "/").0 == 404 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the route outlived the app"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_releases_never_disturb_the_serving_one() {
    let (_tokio, _rt) = docker();
    let app = App::new(
        json!({"replicas": 1, "health": {"path": "/health", "interval_ms": 300, "start_timeout_ms": 4000}}),
    );

    // Bad input answers clearly and creates nothing.
    for (body, code) in [
        (json!({"name": "Bad_Name", "repo": "alice/web"}), 422),
        (json!({"name": "-x", "repo": "alice/web"}), 422),
        (json!({"name": "ok", "repo": "alice/missing"}), 404),
        (json!({"name": "ok", "repo": "alice/web", "port": 0}), 422),
        (
            json!({"name": "ok", "repo": "alice/web", "dockerfile": "../Dockerfile"}),
            422,
        ),
        (json!({"name": "web", "repo": "alice/web"}), 409),
    ] {
        let (s, b) = app.api("POST", "/apps", Some(body.clone()));
        assert_eq!(s, code, "{body} → {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{b}"
        );
    }
    let (s, b) = app.api("PUT", "/apps/web/scale", Some(json!({"replicas": 500})));
    assert_eq!(s, 422, "{b}");

    app.push("v1", None);
    app.wait_live(1, Duration::from_secs(180));
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(
        app.server.proxy_url.clone(),
        app.host(),
        stop.clone(),
        Duration::from_secs(170),
    );

    // A Dockerfile that fails to build: the pipeline fails, no release is made.
    app.push("broken", Some("FROM slipway/busybox:latest\nRUN exit 3\n"));
    let p = app.wait_pipeline(2);
    assert_eq!(p["status"], "failure", "{p}");
    let log = app.step_log(2, "image:web");
    assert!(log.contains("image build failed"), "{log}");

    // A port that never opens: the release fails its health check, never
    // gets traffic, and v1 keeps serving.
    app.push(
        "v-never",
        Some("FROM slipway/busybox:latest\nCOPY www /www\nCMD [\"/bin/busybox\", \"sleep\", \"600\"]\n"),
    );
    let p = app.wait_pipeline(3);
    assert_eq!(p["status"], "failure", "{p}");
    let log = app.step_log(3, "image:web");
    assert!(log.contains("health check"), "{log}");
    let (_, releases) = app.api("GET", "/apps/web/releases", None);
    assert_eq!(releases[0]["number"], 2, "{releases}");
    assert_eq!(releases[0]["status"], "failed", "{releases}");
    assert!(
        releases[0]["error"]
            .as_str()
            .unwrap()
            .contains("health check"),
        "{releases}"
    );
    assert_eq!(releases[1]["status"], "active", "{releases}");
    let a = app.app();
    assert_eq!(a["release"], 1, "{a}");
    assert_eq!(a["status"], "running", "{a}");

    stop.store(true, Ordering::Relaxed);
    let seen = client.join().unwrap();
    let bad: Vec<_> = seen
        .iter()
        .filter(|(s, b)| *s != 200 || b != "v1")
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} answers were not v1: {:?}",
        bad.len(),
        seen.len(),
        &bad[..bad.len().min(5)]
    );
    println!(
        "{} requests during the bad releases, all answered by v1",
        seen.len()
    );

    // Nothing of the failed release is left running.
    assert_eq!(app.replica_ids().len(), 1);

    // PATCH merges a partial health check into the current one.
    let (s, b) = app.api(
        "PATCH",
        "/apps/web",
        Some(json!({"health": {"timeout_ms": 900}})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["health"]["path"], "/health", "{b}");
    assert_eq!(b["health"]["timeout_ms"], 900, "{b}");
    let (_, releases) = app.api("GET", "/apps/web/releases", None);
    assert_eq!(releases[0]["description"], "settings: health", "{releases}");

    // Manual deploy of the branch head queues a pipeline.
    let (s, b) = app.api("POST", "/apps/web/deploy", Some(json!({"ref": "nope"})));
    assert_eq!(s, 422, "{b}");
}

#[test]
fn a_restarted_server_adopts_its_running_replicas() {
    let (_tokio, _rt) = docker();
    let mut app = App::new(json!({"replicas": 2, "health": {"path": "/health"}}));
    app.push("v1", None);
    app.wait_live(1, Duration::from_secs(180));
    let before = {
        let mut ids = app.replica_ids();
        ids.sort();
        ids
    };
    // kill -9 of the server: the replicas are containers and keep running.
    app.server.restart();
    let start = Instant::now();
    loop {
        if get(&app.server.proxy_url, app.host(), "/") == (200, "v1".to_string()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the restarted proxy does not serve the app\n{}",
            app.server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("served again {:?} after the restart", start.elapsed());
    let live = app.wait_live(1, Duration::from_secs(30));
    assert_eq!(live["ready"], 2);
    let mut after = app.replica_ids();
    after.sort();
    assert_eq!(before, after, "replicas were adopted, not replaced");

    // The CLI shows them and their output.
    let (code, out, err) = app.cli(&["ps", "web"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("healthy").count(), 2, "{out}");
    get(&app.server.proxy_url, app.host(), "/missing-page");
    let (code, out, err) = app.cli(&["logs", "web", "--tail", "50"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("response:404"),
        "the 404 of /missing-page is in the logs: {out}"
    );
    let (code, out, err) = app.cli(&["releases", "web", "--json"]);
    assert_eq!(code, 0, "{err}");
    let releases: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(releases[0]["status"], "active");
    let (code, out, err) = app.cli(&["events", "web", "-n", "100"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rollout") && out.contains("v1 is live on 2 replica(s)"),
        "the rollout is in the events: {out}"
    );
    let (code, out, err) = app.cli(&["events", "web", "-n", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let events: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    let (code, out, _) = app.cli(&["open", "web"]);
    assert_eq!(code, 0);
    assert!(out.contains("web.localhost:"), "{out}");
    let (code, _, err) = app.cli(&["scale", "web=abc"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Issue 15, a new user's first hour: the single-node "node" counts the
/// replicas that run, a Dockerfile whose RUN fails leaves a `build_failed`
/// event, and an app listening on another port than the app's fails its
/// rollout within seconds, saying which port it listens on.
#[test]
fn first_hour_mistakes_are_explained_quickly() {
    let (_tokio, _rt) = docker();
    let app = App::new(json!({"replicas": 2, "health": {"path": "/health", "interval_ms": 500}}));
    app.push("v1", None);
    app.wait_live(1, Duration::from_secs(180));

    // `slipway node list` in single-node mode: the 2 replicas that run,
    // and what they request (no limits: 250m and 256 MiB each).
    let (s, nodes) = app.api("GET", "/nodes", None);
    assert_eq!(s, 200, "{nodes}");
    let local = &nodes[0];
    assert_eq!(local["id"], "local", "{nodes}");
    assert_eq!(local["replicas"], 2, "{nodes}");
    assert_eq!(local["allocated"]["cpu_millis"], 500, "{nodes}");
    assert_eq!(
        local["allocated"]["memory_bytes"],
        2 * 256 * 1024 * 1024,
        "{nodes}"
    );
    let (code, out, err) = app.cli(&["node", "list"]);
    assert_eq!(code, 0, "{err}");
    let row: Vec<&str> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter(|w| *w != "│")
                .collect::<Vec<_>>()
        })
        .find(|words| words.first() == Some(&"local"))
        .unwrap_or_else(|| panic!("no local node: {out}"));
    assert_eq!(row[3], "2", "REPLICAS of the local node: {out}");
    assert!(row[4].starts_with("500/"), "CPU requested: {out}");

    // A RUN that fails: the pipeline fails and the app's events say so,
    // with the pipeline, the commit and the engine's last line.
    app.push("broken", Some("FROM slipway/busybox:latest\nRUN exit 3\n"));
    let sha = git_ok(&app.dir, &["rev-parse", "HEAD"]).trim().to_owned();
    let p = app.wait_pipeline(2);
    assert_eq!(p["status"], "failure", "{p}");
    let (_, events) = app.api("GET", "/apps/web/events", None);
    let failed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "build_failed")
        .unwrap_or_else(|| panic!("no build_failed event: {events}"));
    let message = failed["message"].as_str().unwrap();
    println!("build_failed event: {message}");
    assert!(message.contains("pipeline #2"), "{message}");
    assert!(message.contains(&sha[..12]), "{message}");
    assert!(message.contains("returned a non-zero code: 3"), "{message}");
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "build" && e["message"].as_str().unwrap().contains("pipeline #1")),
        "the successful build is an event too: {events}"
    );
    let (code, out, err) = app.cli(&["events", "web", "-n", "100"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("build_failed") && out.contains("pipeline #2"),
        "{out}"
    );

    // The app listens on 3000, the app's port is 8080: the rollout fails
    // well before the 60 s start timeout, and says why.
    app.push(
        "wrong-port",
        Some("FROM slipway/busybox:latest\nCOPY www /www\nCMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"3000\", \"-h\", \"/www\"]\n"),
    );
    let start = loop {
        let (_, releases) = app.api("GET", "/apps/web/releases", None);
        if releases[0]["number"] == 2 {
            break Instant::now();
        }
        assert!(
            app.pipeline_in_progress(3),
            "pipeline #3 ended without a release: {releases}\n{}",
            app.server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let failed = loop {
        let (_, releases) = app.api("GET", "/apps/web/releases", None);
        if releases[0]["status"] == "failed" {
            break releases[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the wrong port did not fail within 15 s: {releases}\n{}",
            app.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("wrong port failed {:?} after its release", start.elapsed());
    let error = failed["error"].as_str().unwrap();
    println!("release error: {error}");
    assert!(
        error.contains("nothing listens on port 8080 inside the container; it listens on 3000"),
        "{error}"
    );
    assert!(error.contains("--port 3000"), "{error}");
    let (_, events) = app.api("GET", "/apps/web/events", None);
    assert!(
        events
            .to_string()
            .contains("nothing listens on port 8080 inside the container"),
        "{events}"
    );
    let p = app.wait_pipeline(3);
    assert_eq!(p["status"], "failure", "{p}");
    let log = app.step_log(3, "image:web");
    assert!(log.contains("it listens on 3000"), "{log}");
    // v1 never stopped serving.
    assert_eq!(
        get(&app.server.proxy_url, app.host(), "/"),
        (200, "v1".into())
    );
    assert_eq!(app.app()["release"], 1);
}
