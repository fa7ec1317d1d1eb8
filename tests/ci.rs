//! End to end: real pushes of repositories with `.slipway.yml`, pipelines run
//! in real Docker containers (slipway/busybox), watched over the real API.
//! Docker must be reachable: these tests panic otherwise.

mod support;

use serde_json::{json, Value};
use slipway_runtime::{LabelFilter, Runtime};
use std::time::{Duration, Instant};
use support::*;

const IMAGE: &str = "slipway/busybox:latest";

/// Connects to Docker (panicking loudly if it is down) and bootstraps busybox.
fn docker() -> (tokio::runtime::Runtime, Runtime) {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio.block_on(async {
        let rt = Runtime::connect().await.unwrap_or_else(|e| {
            panic!("these CI tests need a reachable Docker Engine (run scripts/deps.sh): {e}")
        });
        slipway_runtime::images::ensure_busybox(&rt)
            .await
            .expect("bootstrap slipway/busybox");
        rt
    });
    (tokio, rt)
}

struct Fixture {
    server: TestServer,
    token: String,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let server = TestServer::start();
        let token = server.setup_admin("alice");
        Fixture {
            server,
            token,
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn create_repo(&self, name: &str) {
        let (s, b) = self.server.api(
            "POST",
            "/repos",
            Some(&self.token),
            Some(json!({ "name": name })),
        );
        assert_eq!(s, 201, "{b}");
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("README.md"), "hello from the workspace\n").unwrap();
    }

    /// Commits `.slipway.yml` = `yaml` and pushes main; returns the commit id.
    fn push(&self, repo: &str, yaml: &str) -> String {
        let dir = self.work.path().join(repo);
        std::fs::write(dir.join(".slipway.yml"), yaml).unwrap();
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "--allow-empty", "-m", "ci"]);
        let url = self
            .server
            .git_url("alice", repo, Some(("alice", &self.token)));
        git_ok(&dir, &["push", "-q", &url, "main"]);
        git_ok(&dir, &["rev-parse", "HEAD"])
    }

    fn get(&self, path: &str) -> Value {
        let (s, b) = self.server.api("GET", path, Some(&self.token), None);
        assert_eq!(s, 200, "GET {path}: {b}");
        b
    }

    fn pipeline(&self, repo: &str, n: i64) -> Value {
        self.get(&format!("/repos/alice/{repo}/pipelines/{n}"))
    }

    /// Polls until the pipeline has ended.
    fn wait(&self, repo: &str, n: i64, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let p = self.pipeline(repo, n);
            let st = p["status"].as_str().unwrap();
            if !matches!(st, "pending" | "running") {
                return p;
            }
            assert!(
                start.elapsed() < limit,
                "pipeline {repo}#{n} still {st} after {limit:?}: {p}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self, repo: &str, n: i64, step: &str) -> String {
        let (s, b) = self.server.api(
            "GET",
            &format!("/repos/alice/{repo}/pipelines/{n}/steps/{step}/logs"),
            Some(&self.token),
            None,
        );
        assert_eq!(s, 200, "{b}");
        match b {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// Containers labelled for this pipeline of this repository.
fn leftovers(tokio: &tokio::runtime::Runtime, rt: &Runtime, repo: &str, id: i64) -> usize {
    let filter = LabelFilter::managed()
        .with("io.slipway.owner", "ci")
        .with("io.slipway.repo", format!("alice/{repo}"))
        .with("io.slipway.pipeline", id.to_string());
    tokio
        .block_on(rt.list_containers(&filter))
        .expect("list containers")
        .len()
}

fn wait_no_leftovers(tokio: &tokio::runtime::Runtime, rt: &Runtime, repo: &str, id: i64) {
    let start = Instant::now();
    while leftovers(tokio, rt, repo, id) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "containers of {repo} pipeline {id} left behind"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn parallel_steps_then_dependent_with_logs_status_and_badge() {
    let (tokio, rt) = docker();
    let f = Fixture::new();
    f.create_repo("dag");
    let sha = f.push(
        "dag",
        &format!(
            "steps:
  - name: a
    image: {IMAGE}
    commands:
      - echo start-a
      - sleep 1
      - echo done-a > a.txt
  - name: b
    image: {IMAGE}
    environment: {{GREETING: hi-b}}
    commands:
      - echo $GREETING
      - sleep 1
      - cat README.md
  - name: c
    image: {IMAGE}
    depends_on: [a, b]
    commands:
      - cat a.txt
      - echo third on $CI_COMMIT_BRANCH
"
        ),
    );
    // Queued before the push returned.
    let list = f.get("/repos/alice/dag/pipelines");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["sha"], sha);
    let p = f.wait("dag", 1, Duration::from_secs(60));
    assert_eq!(p["status"], "success", "{p}");
    let (a, b, c) = (step(&p, "a"), step(&p, "b"), step(&p, "c"));
    for s in [a, b, c] {
        assert_eq!(s["status"], "success", "{s}");
        assert_eq!(s["exit_code"], 0);
    }
    // a and b overlap; c starts only after both ended.
    assert!(time(&a["started_at"]) < time(&b["finished_at"]), "{p}");
    assert!(time(&b["started_at"]) < time(&a["finished_at"]), "{p}");
    assert!(time(&c["started_at"]) >= time(&a["finished_at"]), "{p}");
    assert!(time(&c["started_at"]) >= time(&b["finished_at"]), "{p}");
    assert!(a["duration_ms"].as_i64().unwrap() >= 1000, "{a}");
    assert_eq!(f.logs("dag", 1, "a"), "start-a\n");
    assert_eq!(f.logs("dag", 1, "b"), "hi-b\nhello from the workspace\n");
    assert_eq!(f.logs("dag", 1, "c"), "done-a\nthird on main\n");

    let status = f.get(&format!("/repos/alice/dag/commits/{sha}/status"));
    assert_eq!(status["state"], "success", "{status}");
    let badge = reqwest::blocking::get(format!(
        "{}/api/v1/repos/alice/dag/badge.svg?branch=main",
        f.server.url
    ))
    .unwrap();
    assert_eq!(badge.status(), 200);
    assert!(badge.text().unwrap().contains("passing"));
    wait_no_leftovers(&tokio, &rt, "dag", p["id"].as_i64().unwrap());
}

#[test]
fn failing_step_fails_pipeline_skips_dependents_and_can_be_retried() {
    let (tokio, rt) = docker();
    let f = Fixture::new();
    f.create_repo("fail");
    f.push(
        "fail",
        &format!(
            "steps:
  ok: {{image: {IMAGE}, commands: [echo fine]}}
  bad: {{image: {IMAGE}, commands: [echo before, exit 3, echo never]}}
  after: {{image: {IMAGE}, commands: [echo after], depends_on: [bad]}}
  later: {{image: {IMAGE}, commands: [echo later], depends_on: [after]}}
  slow: {{image: {IMAGE}, commands: [sleep 30], timeout: 2s}}
  other: {{image: {IMAGE}, commands: [echo x], when: {{branch: [release/*]}}}}
  needs-other: {{image: {IMAGE}, commands: [echo y], depends_on: [other]}}
"
        ),
    );
    let p = f.wait("fail", 1, Duration::from_secs(60));
    assert_eq!(p["status"], "failure", "{p}");
    assert_eq!(step(&p, "ok")["status"], "success");
    assert_eq!(step(&p, "bad")["status"], "failure");
    assert_eq!(step(&p, "bad")["exit_code"], 3);
    assert_eq!(f.logs("fail", 1, "bad"), "before\nexited with code 3\n");
    assert_eq!(step(&p, "after")["status"], "skipped");
    assert_eq!(step(&p, "later")["status"], "skipped");
    assert!(step(&p, "after")["started_at"].is_null());
    let slow = step(&p, "slow");
    assert_eq!(slow["status"], "failure", "{slow}");
    assert!(
        slow["error"].as_str().unwrap().contains("timed out"),
        "{slow}"
    );
    assert!(slow["duration_ms"].as_i64().unwrap() < 15_000, "{slow}");
    // `when:` skips do not block dependents.
    assert_eq!(step(&p, "other")["status"], "skipped");
    assert_eq!(step(&p, "needs-other")["status"], "success");

    let (s, r) = f.server.api(
        "POST",
        "/repos/alice/fail/pipelines/1/retry",
        Some(&f.token),
        None,
    );
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (r["number"].as_i64(), r["retry_of"].as_i64()),
        (Some(2), p["id"].as_i64())
    );
    let p2 = f.wait("fail", 2, Duration::from_secs(60));
    assert_eq!(p2["status"], "failure");
    // Cancel of an ended pipeline is a conflict with a clear message.
    let (s, e) = f.server.api(
        "POST",
        "/repos/alice/fail/pipelines/2/cancel",
        Some(&f.token),
        None,
    );
    assert_eq!((s, error_code(&e).as_str()), (409, "conflict"));
    wait_no_leftovers(&tokio, &rt, "fail", p["id"].as_i64().unwrap());
}

#[test]
fn invalid_pipeline_files_error_clearly_and_run_nothing() {
    let (_tokio, _rt) = docker();
    let f = Fixture::new();
    f.create_repo("bad");
    let cases: Vec<(String, &str)> = vec![
        ("steps:\n  - name: a\n    image: [unclosed\n".into(), "line"),
        (
            format!("steps:\n  a: {{image: {IMAGE}, commands: [ls], depends_on: [b]}}\n  b: {{image: {IMAGE}, commands: [ls], depends_on: [a]}}\n"),
            "cycle: a -> b -> a",
        ),
        (
            format!("steps:\n  a: {{image: {IMAGE}, commands: [ls], privileged: true}}\n"),
            "unknown field `privileged`",
        ),
        (
            format!("steps:\n  a: {{image: {IMAGE}, commands: [ls]}}\n#{}\n", "x".repeat(70_000)),
            "at most 65536 bytes",
        ),
        (
            format!("steps:\n  a: {{image: {IMAGE}, commands: [ls], depends_on: [nope]}}\n"),
            "\"nope\", which is not a step",
        ),
    ];
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        f.push("bad", yaml);
        let n = i as i64 + 1;
        let p = f.pipeline("bad", n);
        assert_eq!(p["status"], "error", "{p}");
        let msg = p["error"].as_str().unwrap();
        assert!(msg.contains(".slipway.yml"), "{msg}");
        assert!(
            msg.contains(expected),
            "case {n}: {msg:?} lacks {expected:?}"
        );
        assert_eq!(p["steps"].as_array().unwrap().len(), 0, "{p}");
        assert!(!p["finished_at"].is_null());
    }
    // A push without the file queues nothing.
    let dir = f.work.path().join("bad");
    std::fs::remove_file(dir.join(".slipway.yml")).unwrap();
    git_ok(&dir, &["commit", "-q", "-am", "no ci"]);
    let url = f.server.git_url("alice", "bad", Some(("alice", &f.token)));
    git_ok(&dir, &["push", "-q", &url, "main"]);
    let list = f.get("/repos/alice/bad/pipelines");
    assert_eq!(list.as_array().unwrap().len(), cases.len());
}

#[test]
fn secrets_are_masked_in_stored_and_streamed_logs() {
    let (_tokio, _rt) = docker();
    let f = Fixture::new();
    f.create_repo("sec");
    let secret = "s3cr3t-value-XYZ";
    let (s, b) = f.server.api(
        "PUT",
        "/repos/alice/sec/secrets/DEPLOY_TOKEN",
        Some(&f.token),
        Some(json!({ "value": secret })),
    );
    assert_eq!(s, 204, "{b}");
    let names = f.get("/repos/alice/sec/secrets");
    assert_eq!(names[0]["name"], "DEPLOY_TOKEN");
    assert!(!names.to_string().contains(secret));
    f.push(
        "sec",
        &format!(
            "steps:
  leak:
    image: {IMAGE}
    secrets: [DEPLOY_TOKEN]
    commands:
      - sleep 1
      - echo \"token=$DEPLOY_TOKEN\"
      - printf '%s' \"${{DEPLOY_TOKEN%%-*}}-\"; sleep 1; printf '%s\\n' \"${{DEPLOY_TOKEN#*-}}\"
      - echo \"$DEPLOY_TOKEN\" >&2
      - echo visible
"
        ),
    );
    // Follow live while it runs.
    let streamed = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/v1/repos/alice/sec/pipelines/1/steps/leak/logs?follow=1",
            f.server.url
        ))
        .bearer_auth(&f.token)
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(streamed.contains("event: end"), "{streamed}");
    assert!(streamed.contains("visible"), "{streamed}");
    assert!(!streamed.contains(secret), "{streamed}");
    let p = f.wait("sec", 1, Duration::from_secs(60));
    assert_eq!(p["status"], "success", "{p}");
    // Encrypted at rest: not in the database files.
    for file in ["slipway.db", "slipway.db-wal"] {
        let bytes = std::fs::read(f.server.data_dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} holds the secret in clear"
        );
    }
    // Readers may watch but not cancel, retry or touch secrets.
    let reader = f.server.create_user(&f.token, "bob");
    let (s, _) = f.server.api(
        "PUT",
        "/repos/alice/sec/collaborators/bob",
        Some(&f.token),
        Some(json!({"access": "read"})),
    );
    assert_eq!(s, 204);
    let (s, _) = f
        .server
        .api("GET", "/repos/alice/sec/pipelines/1", Some(&reader), None);
    assert_eq!(s, 200);
    for (method, path) in [
        ("POST", "/repos/alice/sec/pipelines/1/retry"),
        ("POST", "/repos/alice/sec/pipelines/1/cancel"),
        ("GET", "/repos/alice/sec/secrets"),
        ("DELETE", "/repos/alice/sec/secrets/DEPLOY_TOKEN"),
    ] {
        let (s, e) = f.server.api(method, path, Some(&reader), None);
        assert_eq!(
            (s, error_code(&e).as_str()),
            (403, "forbidden"),
            "{method} {path}"
        );
    }
    let (s, e) = f
        .server
        .api("POST", "/repos/alice/sec/pipelines/1/retry", None, None);
    assert_eq!((s, error_code(&e).as_str()), (401, "unauthorized"));
    let (s, e) = f.server.api(
        "PUT",
        "/repos/alice/sec/secrets/bad-name",
        Some(&f.token),
        Some(json!({"value": "x"})),
    );
    assert_eq!((s, error_code(&e).as_str()), (422, "invalid"));
    let stored = f.logs("sec", 1, "leak");
    // stdout and stderr are separate pipes: their relative order is not fixed.
    let mut lines: Vec<&str> = stored.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec!["********", "********", "token=********", "visible"],
        "{stored}"
    );
}

#[test]
fn cancel_kills_running_containers() {
    let (tokio, rt) = docker();
    let f = Fixture::new();
    f.create_repo("cancel");
    f.push(
        "cancel",
        &format!("steps:\n  long: {{image: {IMAGE}, commands: [echo started, sleep 120]}}\n  next: {{image: {IMAGE}, commands: [echo no], depends_on: [long]}}\n"),
    );
    wait_step_running(&f, "cancel", "long");
    let (s, b) = f.server.api(
        "POST",
        "/repos/alice/cancel/pipelines/1/cancel",
        Some(&f.token),
        None,
    );
    assert_eq!(s, 202, "{b}");
    let p = f.wait("cancel", 1, Duration::from_secs(30));
    assert_eq!(p["status"], "cancelled", "{p}");
    assert_eq!(step(&p, "long")["status"], "cancelled");
    assert_eq!(step(&p, "next")["status"], "cancelled");
    wait_no_leftovers(&tokio, &rt, "cancel", p["id"].as_i64().unwrap());
}

fn wait_step_running(f: &Fixture, repo: &str, name: &str) {
    let start = Instant::now();
    loop {
        let p = f.pipeline(repo, 1);
        if step(&p, name)["status"] == "running" && f.logs(repo, 1, name).contains("started") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "step never ran: {p}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn killed_server_leaves_no_running_pipeline_nor_containers() {
    let (tokio, rt) = docker();
    let mut f = Fixture::new();
    f.create_repo("crash");
    f.push(
        "crash",
        &format!("steps:\n  long: {{image: {IMAGE}, commands: [echo started, sleep 120]}}\n"),
    );
    wait_step_running(&f, "crash", "long");
    let id = f.pipeline("crash", 1)["id"].as_i64().unwrap();
    assert_eq!(leftovers(&tokio, &rt, "crash", id), 1);
    f.server.restart();
    let p = f.wait("crash", 1, Duration::from_secs(30));
    assert_eq!(p["status"], "error", "{p}");
    assert!(
        p["error"].as_str().unwrap().contains("server stopped"),
        "{p}"
    );
    assert_eq!(step(&p, "long")["status"], "error");
    wait_no_leftovers(&tokio, &rt, "crash", id);
    // The queue still works after the restart.
    f.push(
        "crash",
        &format!("steps:\n  quick: {{image: {IMAGE}, commands: [echo ok]}}\n"),
    );
    let p = f.wait("crash", 2, Duration::from_secs(60));
    assert_eq!(p["status"], "success", "{p}");
}

fn cli(f: &Fixture, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env("SLIPWAY_SERVER", &f.server.url)
        .env("SLIPWAY_TOKEN", &f.token)
        .env("SLIPWAY_CLI_CONFIG", f.work.path().join("cli.toml"))
        .output()
        .unwrap()
}

#[test]
fn cli_lists_shows_and_follows_pipelines() {
    let (_tokio, _rt) = docker();
    let f = Fixture::new();
    f.create_repo("cli");
    f.push(
        "cli",
        &format!("steps:\n  count: {{image: {IMAGE}, commands: ['for i in 1 2 3; do echo line $i; sleep 0.3; done']}}\n"),
    );
    // Follows live from before the step starts to its end.
    let out = cli(&f, &["pipeline", "logs", "alice/cli", "1", "count", "-f"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 1\nline 2\nline 3\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("count ended: success"));
    let p = f.wait("cli", 1, Duration::from_secs(30));
    assert_eq!(p["status"], "success");

    let out = cli(&f, &["pipeline", "list", "alice/cli", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["number"], 1);
    let out = cli(&f, &["pipeline", "show", "alice/cli", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("count") && text.contains("success"), "{text}");
    let out = cli(&f, &["pipeline", "logs", "alice/cli", "1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 3"));
    let out = cli(&f, &["pipeline", "cancel", "alice/cli", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("already ended"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn services_are_reachable_by_name() {
    let (tokio, rt) = docker();
    let f = Fixture::new();
    f.create_repo("svc");
    f.push(
        "svc",
        &format!(
            "services:
  web:
    image: {IMAGE}
    commands:
      - mkdir -p /tmp/www && echo served-by-web > /tmp/www/index.html
      - exec httpd -f -p 8080 -h /tmp/www
steps:
  fetch:
    image: {IMAGE}
    timeout: 30s
    commands:
      - for i in $(seq 1 100); do wget -qO- http://web:8080/ && exit 0; sleep 0.1; done; exit 1
"
        ),
    );
    let p = f.wait("svc", 1, Duration::from_secs(60));
    assert_eq!(p["status"], "success", "{p}\n{}", f.logs("svc", 1, "fetch"));
    assert!(f.logs("svc", 1, "fetch").contains("served-by-web"));
    wait_no_leftovers(&tokio, &rt, "svc", p["id"].as_i64().unwrap());
}

/// Accepts one HTTP request on 127.0.0.1; returns its URL and a receiver of (head, body).
fn one_shot_listener() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; len.min(1 << 20)];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = tx.send((head, body));
    });
    (url, rx)
}

#[test]
fn webhook_is_signed_and_sent_when_a_pipeline_ends() {
    let (_tokio, _rt) = docker();
    let f = Fixture::new();
    f.create_repo("hook");
    let (url, rx) = one_shot_listener();
    let (s, b) = f.server.api(
        "POST",
        "/repos/alice/hook/hooks",
        Some(&f.token),
        Some(json!({"url": url, "secret": "hook-key"})),
    );
    assert_eq!(s, 201, "{b}");
    assert!(!b.to_string().contains("hook-key"));
    let (s, e) = f.server.api(
        "POST",
        "/repos/alice/hook/hooks",
        Some(&f.token),
        Some(json!({"url": "file:///etc/passwd", "secret": "x"})),
    );
    assert_eq!((s, error_code(&e).as_str()), (422, "invalid"));
    f.push(
        "hook",
        &format!("steps:\n  one: {{image: {IMAGE}, commands: [echo hi]}}\n"),
    );
    let (head, body) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("webhook was not called");
    let sig = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-slipway-signature-256"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .expect("signature header");
    assert_eq!(sig, slipway_ci::webhooks::signature("hook-key", &body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["event"], "pipeline");
    assert_eq!(v["repo"], "alice/hook");
    assert_eq!(v["pipeline"]["status"], "success");
    assert_eq!(v["pipeline"]["number"], 1);
    // The outcome is kept with the webhook.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, hooks) = f
            .server
            .api("GET", "/repos/alice/hook/hooks", Some(&f.token), None);
        if hooks[0]["last_status"] == "delivered" {
            assert_eq!(hooks[0]["last_error"], Value::Null);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{hooks}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cache_directories_survive_between_pipelines() {
    let (tokio, rt) = docker();
    let f = Fixture::new();
    f.create_repo("cached");
    let yaml = format!(
        "cache: [deps, build/out]
steps:
  count:
    image: {IMAGE}
    commands:
      - n=$(cat deps/count 2>/dev/null || echo 0)
      - n=$((n+1)); echo $n > deps/count; echo run-$n
      - touch build/out/marker-$n; ls build/out
      - if [ -e stray ]; then echo stray-survived; fi; touch stray
"
    );
    f.push("cached", &yaml);
    let p = f.wait("cached", 1, Duration::from_secs(60));
    assert_eq!(
        p["status"],
        "success",
        "{p}\n{}",
        f.logs("cached", 1, "count")
    );
    assert!(f.logs("cached", 1, "count").contains("run-1"));

    f.push("cached", &yaml);
    let p = f.wait("cached", 2, Duration::from_secs(60));
    let log = f.logs("cached", 2, "count");
    assert_eq!(p["status"], "success", "{p}\n{log}");
    assert!(log.contains("run-2"), "the cache kept deps/count: {log}");
    assert!(
        log.contains("marker-1"),
        "nested cache directories work too: {log}"
    );
    assert!(
        !log.contains("stray-survived"),
        "the rest of the workspace is fresh: {log}"
    );

    // The cache volumes outlive the pipelines, and go with the repository.
    let filter = LabelFilter::managed()
        .with("io.slipway.owner", "ci-cache")
        .with("io.slipway.repo", "alice/cached");
    let volumes = tokio
        .block_on(rt.list_volumes(&filter))
        .expect("list volumes");
    assert!(volumes.len() >= 2, "{volumes:?}");
    let (s, _) = f
        .server
        .api("DELETE", "/repos/alice/cached", Some(&f.token), None);
    assert_eq!(s, 204);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = tokio
            .block_on(rt.list_volumes(&filter))
            .expect("list volumes");
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            for v in &left {
                tokio.block_on(rt.remove_volume(&v.name)).ok();
            }
            panic!("deleting the repository left its cache volumes: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cache_paths_are_validated() {
    let f = Fixture::new();
    f.create_repo("badcache");
    f.push(
        "badcache",
        &format!(
            "cache: [../outside]\nsteps:\n  a:\n    image: {IMAGE}\n    commands: [\"true\"]\n"
        ),
    );
    let p = f.wait("badcache", 1, Duration::from_secs(30));
    assert_eq!(p["status"], "error", "{p}");
    assert!(p.to_string().contains("cache directory"), "{p}");
}

#[test]
fn push_prints_the_pipeline_or_the_file_error_and_leaves_no_volume() {
    let (tokio, rt) = docker();
    let f = Fixture::new();
    f.create_repo("said");
    let dir = f.work.path().join("said");
    let url = f.server.git_url("alice", "said", Some(("alice", &f.token)));
    let push = |yaml: &str| {
        std::fs::write(dir.join(".slipway.yml"), yaml).unwrap();
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "-m", "ci"]);
        let out = git(&dir, &["push", &url, "main"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = push(&format!(
        "steps:\n  - name: a\n    image: {IMAGE}\n    commands: [echo a]\n"
    ));
    assert!(
        said.contains("remote: Slipway: pipeline #1 queued for main:")
            && said.contains("/ui/pipeline?r=alice%2Fsaid&n=1"),
        "{said}"
    );
    let said = push("steps:\n  - name: a\n    image: [unclosed\n");
    assert!(
        said.contains(
            "remote: Slipway: pipeline #2 for main did not run: .slipway.yml is invalid:"
        ),
        "{said}"
    );
    assert!(said.contains("remote:   .slipway.yml: "), "{said}");

    // The pipeline that ran removed everything it made, its workspace volume too.
    let p = f.wait("said", 1, Duration::from_secs(60));
    assert_eq!(p["status"], "success", "{p}");
    wait_no_leftovers(&tokio, &rt, "said", p["id"].as_i64().unwrap());
    let filter = LabelFilter::managed()
        .with("io.slipway.owner", "ci")
        .with("io.slipway.repo", "alice/said")
        .with("io.slipway.pipeline", p["id"].as_i64().unwrap().to_string());
    let start = Instant::now();
    loop {
        let volumes = tokio.block_on(rt.list_volumes(&filter)).unwrap();
        if volumes.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "volumes left behind: {:?}\n{}",
            volumes.iter().map(|v| &v.name).collect::<Vec<_>>(),
            f.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_push_of_many_refs_records_them_at_once_and_bounds_its_pipelines() {
    let (_tokio, _rt) = docker();
    let f = Fixture::new();
    f.create_repo("mirror");
    let dir = f.work.path().join("mirror");
    std::fs::write(
        dir.join(".slipway.yml"),
        format!("steps:\n  - name: a\n    image: {IMAGE}\n    commands: [echo a]\n"),
    )
    .unwrap();
    git_ok(&dir, &["add", "-A"]);
    git_ok(&dir, &["commit", "-q", "-m", "ci"]);
    // 1,500 tags and 75 branches, as a mirror push of a real project brings.
    let mut refs = String::new();
    for i in 0..1500 {
        refs.push_str(&format!("create refs/tags/v{i} HEAD\n"));
    }
    for i in 0..75 {
        refs.push_str(&format!("create refs/heads/b{i} HEAD\n"));
    }
    let mut update = std::process::Command::new("git")
        .args(["update-ref", "--stdin"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    update
        .stdin
        .take()
        .unwrap()
        .write_all(refs.as_bytes())
        .unwrap();
    assert!(update.wait().unwrap().success());
    let url = f
        .server
        .git_url("alice", "mirror", Some(("alice", &f.token)));
    let started = Instant::now();
    let out = git(&dir, &["push", "--mirror", &url]);
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    eprintln!("mirror push of 1,576 refs took {took:?}");
    assert!(
        said.contains("remote: Slipway: 1556 more refs queued no pipeline (at most 20 per push)"),
        "{}",
        &said[said.len().saturating_sub(3000)..]
    );
    let (_, events) = f.server.api(
        "GET",
        "/repos/alice/mirror/events?limit=1000",
        Some(&f.token),
        None,
    );
    assert!(events.as_array().unwrap().len() >= 100, "events recorded");
    let list = f.get("/repos/alice/mirror/pipelines");
    assert_eq!(
        list.as_array().unwrap().len(),
        20,
        "pipelines are bounded per push"
    );
}
