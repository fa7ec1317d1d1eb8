//! End to end: a real five-service voting app (`tests/support/vote_app.rs`)
//! from a Compose file: Flask front and results, a Python worker, Redis and
//! PostgreSQL, all built `FROM slipway/debian:bookworm` with Debian's
//! packages, plus a migration task. Real `git push`es, real containers with
//! Slipway's restricted capabilities, real HTTP through Slipway's proxy,
//! a rolling update of the front under load, a server restart and a
//! `docker kill` of the database.
//!
//! Needs Docker and debootstrap (scripts/deps.sh) and Debian's mirror (the
//! images `apt-get install` their packages): the test panics otherwise. A
//! first run bootstraps `slipway/debian` and builds the images (minutes);
//! later runs reuse them.

mod support;
#[path = "support/vote_app.rs"]
mod vote_app;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const HOST: &str = "vote.localhost";

/// The first release: base image, five image builds, every service up.
const FIRST_RELEASE_LIMIT: Duration = Duration::from_secs(900);
/// Any later release (images cached but the front's last layer).
const RELEASE_LIMIT: Duration = Duration::from_secs(300);

/// Makes `slipway/debian:bookworm` unless it exists (`slipway images
/// bootstrap --debian`, the way an operator does); panics when Docker or
/// debootstrap is missing.
fn debian_base() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        slipway_runtime::Runtime::connect().await.unwrap_or_else(|e| {
            panic!("the voting stack test needs a reachable Docker Engine (run scripts/deps.sh): {e}")
        });
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["images", "bootstrap", "--debian", "--json"])
        .output()
        .expect("run slipway images bootstrap");
    assert!(
        out.status.success(),
        "slipway images bootstrap --debian failed (debootstrap and deb.debian.org are needed, see scripts/deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server, an admin, repository `vote` holding the app, app `vote`.
struct Vote {
    server: TestServer,
    token: String,
    dir: std::path::PathBuf,
    _work: tempfile::TempDir,
    instance: std::cell::RefCell<Option<String>>,
    http: reqwest::blocking::Client,
}

impl Drop for Vote {
    fn drop(&mut self) {
        let instance = self.instance.borrow().clone();
        self.server.stop();
        if let Some(instance) = instance {
            remove_deploy_instance(&instance);
        }
    }
}

impl Vote {
    fn new() -> Self {
        let server = TestServer::start();
        let token = server.setup_admin("alice");
        let (s, b) = server.api(
            "POST",
            "/repos",
            Some(&token),
            Some(json!({"name": "vote"})),
        );
        assert_eq!(s, 201, "{b}");
        let (s, b) = server.api(
            "POST",
            "/apps",
            Some(&token),
            Some(json!({"name": "vote", "repo": "alice/vote", "port": 80})),
        );
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("vote");
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        vote_app::write_repo(&dir, "v1");
        git_ok(
            &dir,
            &[
                "remote",
                "add",
                "origin",
                &server.git_url("alice", "vote", Some(("alice", &token))),
            ],
        );
        Vote {
            server,
            token,
            dir,
            _work: work,
            instance: std::cell::RefCell::new(None),
            http: reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn push(&self, message: &str) {
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", message]);
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
    }

    fn api(&self, method: &str, path: &str) -> (u16, Value) {
        self.server.api(method, path, Some(&self.token), None)
    }

    fn release(&self, number: i64) -> Value {
        let (_, releases) = self.api("GET", "/apps/vote/releases");
        releases
            .as_array()
            .and_then(|l| l.iter().find(|r| r["number"] == number).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until release `number` is active; panics, with the pipeline
    /// and the server's log, when it fails or takes longer than `limit`.
    fn wait_active(&self, number: i64, limit: Duration) {
        let start = Instant::now();
        loop {
            let r = self.release(number);
            self.learn_instance();
            if r["status"] == "active" {
                return;
            }
            let (_, pipelines) = self.api("GET", "/repos/alice/vote/pipelines");
            assert!(
                r["status"] != "failed" && start.elapsed() < limit,
                "v{number} did not go live within {limit:?}: {r}\npipelines {pipelines}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `method path` through the proxy; (status, trimmed body), 0 when
    /// nothing answered.
    fn call(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        match self
            .http
            .request(method, format!("{}{path}", self.server.proxy_url))
            .header("Host", HOST)
            .send()
        {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().unwrap_or_default().trim().to_string())
            }
            Err(_) => (0, String::new()),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.call(reqwest::Method::GET, path)
    }

    /// Waits (60 s) until `path` answers 200 with `want`.
    fn wait_body(&self, path: &str, want: &str) {
        let start = Instant::now();
        loop {
            let got = self.get(path);
            if got == (200, want.to_string()) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{path} answered {got:?}, not {want:?}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Casts a vote through the front (POST or GET, both are accepted).
    fn vote(&self, voter: &str, choice: &str, post: bool) {
        let method = if post {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let got = self.call(method, &format!("/vote?choice={choice}&voter={voter}"));
        assert_eq!(got, (200, "queued".into()), "vote {voter}={choice}");
    }

    /// Waits until the results page shows `a` and `b` votes (the worker
    /// moves them from Redis into PostgreSQL).
    fn wait_counts(&self, a: u64, b: u64) {
        let want = json!({"a": a, "b": b});
        let start = Instant::now();
        loop {
            let (status, body) = self.get("/result");
            let got: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && got == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "/result answered {status} {body:?}, not {want}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn replicas(&self) -> Vec<Value> {
        let (s, r) = self.api("GET", "/apps/vote/replicas");
        assert_eq!(s, 200, "{r}");
        r.as_array().unwrap().clone()
    }

    /// The container of `service` (exactly one expected).
    fn container_of(&self, service: &str) -> String {
        let replicas = self.replicas();
        let found: Vec<&str> = replicas
            .iter()
            .filter(|r| r["service"] == service)
            .filter_map(|r| r["container"].as_str())
            .collect();
        assert_eq!(found.len(), 1, "{service}: {replicas:?}");
        found[0].to_string()
    }

    /// The container of every long-running service.
    fn containers(&self) -> Vec<(&'static str, String)> {
        ["vote", "worker", "result", "redis", "db"]
            .into_iter()
            .map(|s| (s, self.container_of(s)))
            .collect()
    }

    fn learn_instance(&self) {
        if self.instance.borrow().is_some() {
            return;
        }
        if let Some(id) = self
            .replicas()
            .first()
            .and_then(|r| r["container"].as_str().map(String::from))
        {
            *self.instance.borrow_mut() = deploy_instance_of(&id);
        }
    }
}

/// `docker inspect` of one field.
fn inspect(container: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", format, container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a client loop of `GET /` saw during a rollout.
#[derive(Debug, Default)]
struct Load {
    requests: u64,
    failures: Vec<String>,
    old: u64,
    new: u64,
}

/// GETs `/` through the proxy on one keep-alive client until `stop` (at
/// most `max` requests and `limit` of time, a 20 ms pause between them);
/// any answer but 200 with `old` or `new` is a failure.
fn load(
    proxy_url: String,
    old: &'static str,
    new: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Load> {
    const MAX: u64 = 20_000;
    const LIMIT: Duration = Duration::from_secs(300);
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let start = Instant::now();
        let mut seen = Load::default();
        while !stop.load(Ordering::Relaxed) && seen.requests < MAX && start.elapsed() < LIMIT {
            seen.requests += 1;
            let got = http
                .get(format!("{proxy_url}/"))
                .header("Host", HOST)
                .send()
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let status = r.status().as_u16();
                    let body = r.text().map_err(|e| e.to_string())?;
                    Ok((status, body.trim().to_string()))
                });
            match got {
                Ok((200, body)) if body == old => seen.old += 1,
                Ok((200, body)) if body == new => seen.new += 1,
                other => seen.failures.push(format!("{other:?}")),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    })
}

#[test]
fn the_voting_app_deploys_rolls_its_front_under_load_and_keeps_its_votes() {
    let test_start = Instant::now();
    let mark = |what: &str| eprintln!("[{:>6.1} s] {what}", test_start.elapsed().as_secs_f64());
    debian_base();
    mark("slipway/debian:bookworm ready");

    let s = Vote::new();
    s.push("v1");
    s.wait_active(1, FIRST_RELEASE_LIMIT);
    mark("v1 active (five services built and started)");

    // Every service runs; the front and the results answer through the
    // proxy, on the app's host name, by path.
    s.wait_body("/", "v1");
    s.wait_counts(0, 0);
    let services: Vec<String> = s
        .replicas()
        .iter()
        .filter_map(|r| r["service"].as_str().map(String::from))
        .collect();
    for svc in ["vote", "worker", "result", "redis", "db"] {
        assert!(services.iter().any(|s| s == svc), "{svc}: {services:?}");
    }
    assert!(!services.iter().any(|s| s == "migrate"), "{services:?}");
    let db = s.container_of("db");
    // Slipway's restrictions hold: PostgreSQL runs as `postgres` in a
    // container without the capabilities Docker grants by default.
    assert_eq!(inspect(&db, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(
        inspect(&db, "{{.HostConfig.SecurityOpt}}"),
        "[no-new-privileges:true]"
    );
    let user = std::process::Command::new("docker")
        .args([
            "exec",
            &db,
            "sh",
            "-c",
            "stat -c %U /proc/$(head -1 $PGDATA/postmaster.pid)",
        ])
        .output()
        .expect("docker exec");
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "postgres",
        "{user:?}"
    );

    // Votes go front → Redis → worker → PostgreSQL → results.
    for (i, choice) in ["a", "a", "b", "a", "b"].iter().enumerate() {
        s.vote(&format!("voter-{i}"), choice, i % 2 == 0);
    }
    s.wait_counts(3, 2);
    // One vote per voter: a second vote replaces the first.
    s.vote("voter-2", "a", true);
    s.wait_counts(4, 1);
    let bad = s.call(reqwest::Method::POST, "/vote?choice=c");
    assert_eq!(bad.0, 400, "{bad:?}");
    mark("votes counted");

    // A push changing only the front rolls the front alone, under load,
    // without a failed request; the database keeps its container.
    let before = s.containers();
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(s.server.proxy_url.clone(), "v1", "v2", stop.clone());
    vote_app::write_version(&s.dir, "v2");
    s.push("v2");
    s.wait_active(2, RELEASE_LIMIT);
    s.wait_body("/", "v2");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let seen = client.join().unwrap();
    mark(&format!("v2 active: {seen:?}"));
    assert!(seen.failures.is_empty(), "failed requests: {seen:?}");
    assert!(seen.old > 0 && seen.new > 0, "{seen:?}");
    let after = s.containers();
    for ((svc, was), (_, is)) in before.iter().zip(&after) {
        if *svc == "vote" {
            assert_ne!(was, is, "the front was replaced");
        } else {
            assert_eq!(was, is, "{svc} was left alone");
        }
    }
    s.wait_counts(4, 1);
    s.vote("voter-5", "b", false);
    s.wait_counts(4, 2);

    // A server restart adopts the running stack: nothing restarts.
    let before = s.containers();
    let mut s = s;
    s.server.restart();
    s.wait_body("/", "v2");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.containers(), before, "every container was adopted");
    s.wait_counts(4, 2);
    s.vote("voter-6", "a", true);
    s.wait_counts(5, 2);
    mark("server restarted, stack adopted");

    // The database crashes: Slipway starts a new one on the same volume;
    // the votes are there and new ones still arrive (the worker reconnects).
    let db = s.container_of("db");
    let out = std::process::Command::new("docker")
        .args(["kill", &db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let start = Instant::now();
    let new_db = loop {
        let found: Vec<String> = s
            .replicas()
            .iter()
            .filter(|r| r["service"] == "db" && r["state"] == "healthy")
            .filter_map(|r| r["container"].as_str().map(String::from))
            .filter(|c| *c != db)
            .collect();
        if let Some(c) = found.first() {
            break c.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no new db: {:?}\n{}",
            s.replicas(),
            s.server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(inspect(&new_db, "{{.State.Running}}"), "true");
    s.wait_counts(5, 2);
    s.vote("voter-7", "b", false);
    s.wait_counts(5, 3);
    mark("db killed, restarted, votes intact");
}
