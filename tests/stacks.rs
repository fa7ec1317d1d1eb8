//! End to end: multi-service apps from a Compose file. Real `git push`es of
//! a three-service stack (a web front, a "database" keeping its data in a
//! named volume behind a health check, a migration task), real containers,
//! real HTTP through Slipway's proxy, real `docker kill` and a real server
//! restart. The images are built `FROM slipway/busybox`: the front's CGI
//! scripts call the database service by its name on the stack's network.
//! Docker must be reachable: these tests panic otherwise.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

const COMPOSE: &str = r#"# The stack under test: web needs a healthy db and a finished migration.
services:
  web:
    build: ./web
    ports:
      - "8080:8080"
    x-slipway:
      sticky: true
    environment:
      GREETING: ${GREETING:-hello}
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
  migrate:
    build: ./db
    command: ["sh", "-c", "echo schema-MIGRATION > /data/schema && echo migrated"]
    volumes:
      - db-data:/data
    restart: "no"
    depends_on:
      db:
        condition: service_healthy
  db:
    build: ./db
    volumes:
      - db-data:/data
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1:7000/cgi-bin/count"]
      interval: 1s
      timeout: 2s
      retries: 30
volumes:
  db-data:
"#;

/// A server, an admin, repository `shop` holding the stack, app `shop`.
struct Stack {
    server: TestServer,
    token: String,
    dir: std::path::PathBuf,
    _work: tempfile::TempDir,
    instance: std::cell::RefCell<Option<String>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let instance = self.instance.borrow().clone();
        self.server.stop();
        if let Some(instance) = instance {
            remove_deploy_instance(&instance);
        }
    }
}

impl Stack {
    fn new() -> Self {
        docker_ready();
        // Samples every half second: the per-service metrics show up soon.
        let server = TestServer::start_with_env(&[("SLIPWAY_METRICS_INTERVAL_MS", "500")]);
        let token = server.setup_admin("alice");
        let (s, b) = server.api(
            "POST",
            "/repos",
            Some(&token),
            Some(json!({"name": "shop"})),
        );
        assert_eq!(s, 201, "{b}");
        let (s, b) = server.api(
            "POST",
            "/apps",
            Some(&token),
            Some(json!({"name": "shop", "repo": "alice/shop", "port": 8080})),
        );
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("shop");
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("compose.yaml"), COMPOSE).unwrap();
        write_vote_services(
            &dir,
            &[("vote", "add"), ("count", "count"), ("schema", "schema")],
        );
        write_exec(&dir.join("db/srv/cgi-bin/schema"), &cgi("cat /data/schema"));
        write_exec(
            &dir.join("web/www/cgi-bin/greeting"),
            &cgi("echo $GREETING"),
        );
        write_exec(&dir.join("web/www/cgi-bin/host"), &cgi("hostname"));
        // Each test's images differ: tests building the same Dockerfile at
        // once would share (or not) each other's build cache, and an image
        // rebuilt on a cache of another test's gets another content id.
        let nonce = work
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        std::fs::write(dir.join("db/srv/test-nonce"), &nonce).unwrap();
        std::fs::write(dir.join("web/www/test-nonce"), &nonce).unwrap();
        git_ok(
            &dir,
            &[
                "remote",
                "add",
                "origin",
                &server.git_url("alice", "shop", Some(("alice", &token))),
            ],
        );
        Stack {
            server,
            token,
            dir,
            _work: work,
            instance: std::cell::RefCell::new(None),
        }
    }

    /// Commits the front page `version` (and a compose file) and pushes.
    fn push(&self, version: &str, compose: Option<&str>) {
        std::fs::write(self.dir.join("web/www/index.html"), format!("{version}\n")).unwrap();
        if let Some(c) = compose {
            std::fs::write(self.dir.join("compose.yaml"), c).unwrap();
        }
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", version]);
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.api(method, path, Some(&self.token), body)
    }

    fn release(&self, number: i64) -> Value {
        let (_, releases) = self.api("GET", "/apps/shop/releases", None);
        releases
            .as_array()
            .and_then(|l| l.iter().find(|r| r["number"] == number).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until release `number` is active or failed; returns it.
    fn wait_release(&self, number: i64) -> Value {
        let start = Instant::now();
        loop {
            let r = self.release(number);
            self.learn_instance();
            if r["status"] == "active" || r["status"] == "failed" {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "v{number} did not settle: {r}\npipelines {}\n{}",
                self.api("GET", "/repos/alice/shop/pipelines", None).1,
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `GET path` through the proxy with `Host: shop.localhost` (CGI
    /// answers come chunked, so a real HTTP client reads them).
    fn get(&self, path: &str) -> (u16, String) {
        let res = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("{}{path}", self.server.proxy_url))
            .header("Host", "shop.localhost")
            .send();
        match res {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().unwrap_or_default().trim().to_string())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// Waits until `path` answers 200 with `want`.
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

    fn replicas(&self) -> Vec<Value> {
        let (s, r) = self.api("GET", "/apps/shop/replicas", None);
        assert_eq!(s, 200, "{r}");
        r.as_array().unwrap().clone()
    }

    /// The container of `service` (exactly one expected).
    fn container_of(&self, service: &str) -> String {
        let found: Vec<String> = self
            .replicas()
            .iter()
            .filter(|r| r["service"] == service)
            .map(|r| r["container"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(found.len(), 1, "{service}: {:?}", self.replicas());
        found[0].clone()
    }

    fn cli(&self) -> Cli {
        Cli {
            config: self._work.path().join("cli.toml"),
            server: self.server.url.clone(),
            token: Some(self.token.clone()),
        }
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

fn docker_ready() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let rt = slipway_runtime::Runtime::connect()
            .await
            .unwrap_or_else(|e| {
                panic!("the stack tests need a reachable Docker Engine (run scripts/deps.sh): {e}")
            });
        slipway_runtime::images::ensure_busybox(&rt)
            .await
            .expect("bootstrap slipway/busybox");
    });
}

/// `docker inspect` of one field.
fn inspect(container: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", format, container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tar archive of `(name, type flag, link name, contents)` entries, made
/// by hand (ASCII, so it passes as the CLI's stdin text).
fn ustar(entries: &[(&str, u8, &str, &str)]) -> String {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = [0u8; 512];
        let mut put = |at: usize, value: &[u8]| h[at..at + value.len()].copy_from_slice(value);
        put(0, name.as_bytes());
        put(100, b"0000644\0");
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{:011o}\0", data.len()).as_bytes());
        put(136, b"00000000000\0");
        put(148, b"        ");
        put(156, &[*kind]);
        put(157, link.as_bytes());
        put(257, b"ustar\x0000");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data.as_bytes());
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    String::from_utf8(out).unwrap()
}

/// Task containers of the app (`docker ps -a` by label).
fn task_containers(instance: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=io.slipway.deploy-instance={instance}"),
            "--filter",
            "label=io.slipway.task=1",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_compose_stack_deploys_in_dependency_order_keeps_its_data_and_survives_failures() {
    let s = Stack::new();
    s.push("v1", None);
    let r1 = s.wait_release(1);
    assert_eq!(r1["status"], "active", "{r1}\n{}", s.server.log());

    // Every service runs; the front reaches the database by its name.
    s.wait_body("/", "v1");
    s.wait_body("/cgi-bin/greeting", "hello");
    let (_, app) = s.api("GET", "/apps/shop", None);
    assert_eq!(
        app["status"], "running",
        "every service has its replicas: {app}"
    );
    // x-slipway.sticky: the proxy sets its affinity cookie.
    let res = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/", s.server.proxy_url))
        .header("Host", "shop.localhost")
        .send()
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(cookie.starts_with("slipway_"), "{cookie:?}");
    s.wait_body("/cgi-bin/schema", "schema-MIGRATION");
    assert_eq!(s.get("/cgi-bin/vote"), (200, "1".into()));
    assert_eq!(s.get("/cgi-bin/vote"), (200, "2".into()));
    let services: Vec<String> = s
        .replicas()
        .iter()
        .map(|r| r["service"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        services.contains(&"web".into()) && services.contains(&"db".into()),
        "{services:?}"
    );

    // A one-off command in a new container of a service: its volume, its
    // network, its exit code.
    let cli = s.cli();
    let out = cli.run(
        &[
            "run",
            "shop",
            "db",
            "--",
            "sh",
            "-c",
            "cat /data/schema; wget -qO- http://db:7000/cgi-bin/count; echo oops >&2; exit 4",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "schema-MIGRATION\n2\n",
        "{out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    let volumes = cli.json(&["volume", "ls", "shop"]);
    assert_eq!(volumes[0]["name"], "db-data", "{volumes}");
    let ps = cli.ok(&["ps", "shop"], None);
    assert!(ps.contains("SERVICE") && ps.contains("db"), "{ps}");

    // depends_on was honoured: db healthy, then the migration ran to its
    // end, then web started.
    let instance = s.instance.borrow().clone().expect("instance");
    let tasks = task_containers(&instance);
    assert_eq!(tasks.len(), 1, "one migration task for v1: {tasks:?}");
    let db = s.container_of("db");
    let web = s.container_of("web");
    let db_started = inspect(&db, "{{.State.StartedAt}}");
    let task_started = inspect(&tasks[0], "{{.State.StartedAt}}");
    let task_finished = inspect(&tasks[0], "{{.State.FinishedAt}}");
    let web_started = inspect(&web, "{{.State.StartedAt}}");
    assert!(db_started < task_started, "{db_started} < {task_started}");
    assert!(
        task_finished < web_started,
        "{task_finished} < {web_started}"
    );
    assert_eq!(inspect(&tasks[0], "{{.State.ExitCode}}"), "0");

    // A push that changes only the front rolls the front alone: the
    // database keeps its container and its data.
    s.push("v2", None);
    let r2 = s.wait_release(2);
    assert_eq!(r2["status"], "active", "{r2}\n{}", s.server.log());
    s.wait_body("/", "v2");
    assert_eq!(s.container_of("db"), db, "db was not restarted");
    assert_eq!(s.get("/cgi-bin/count"), (200, "2".into()));

    // A migration that fails fails the release; v2 keeps serving.
    let failing = COMPOSE.replace(
        "echo schema-MIGRATION > /data/schema && echo migrated",
        "echo broken migration >&2; exit 3",
    );
    s.push("v3", Some(&failing));
    let r3 = s.wait_release(3);
    assert_eq!(r3["status"], "failed", "{r3}");
    let why = r3["error"].as_str().unwrap_or("");
    assert!(
        why.contains("migrate") && why.contains("code 3") && why.contains("broken migration"),
        "{why}"
    );
    assert_eq!(s.get("/"), (200, "v2".into()));
    assert_eq!(s.get("/cgi-bin/count"), (200, "2".into()));

    // The database crashes: it is restarted, its volume intact.
    let out = std::process::Command::new("docker")
        .args(["kill", &db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    s.wait_body("/cgi-bin/count", "2");
    assert_ne!(s.container_of("db"), db, "a new db container");

    // A server restart adopts the running stack: nothing restarts.
    let db = s.container_of("db");
    let web = s.container_of("web");
    let mut server = s;
    server.server.restart();
    server.wait_body("/", "v2");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.container_of("db"), db);
    assert_eq!(server.container_of("web"), web);
    assert_eq!(server.get("/cgi-bin/vote"), (200, "3".into()));
}

#[test]
fn a_refused_compose_file_deploys_nothing_and_says_where() {
    let s = Stack::new();
    s.push("v1", None);
    assert_eq!(s.wait_release(1)["status"], "active");
    s.wait_body("/", "v1");
    let web = s.container_of("web");
    // Autoscaling is for single-service apps (for now): said, not ignored.
    let (status, body) = s.api(
        "PUT",
        "/apps/shop/autoscale",
        Some(json!({"min": 1, "max": 3, "rps_per_replica": 50.0})),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("stack"),
        "{body}"
    );
    // Forbidden or malformed files, each refused with its line and key;
    // nothing is released and v1 keeps serving.
    let cases: Vec<(String, &str)> = vec![
        (
            COMPOSE.replace(
                "    build: ./web\n",
                "    build: ./web\n    privileged: true\n",
            ),
            "compose.yaml:5: services.web.privileged",
        ),
        (
            COMPOSE.replace(
                "    build: ./web\n",
                "    build: ./web\n    network_mode: host\n",
            ),
            "compose.yaml:5: services.web.network_mode",
        ),
        (
            COMPOSE.replace(
                "      - db-data:/data\n    restart",
                "      - /var/run/docker.sock:/data\n    restart",
            ),
            "compose.yaml:20: services.migrate.volumes",
        ),
        (
            COMPOSE.replace(
                "    build: ./db\n    volumes:",
                "    build: ./db\n    depends_on: [web]\n    volumes:",
            ),
            "cycle",
        ),
        (
            COMPOSE.replace("    build: ./web\n", "    build: ./web\n    colour: blue\n"),
            "compose.yaml:5: services.web.colour",
        ),
        (
            COMPOSE.replace("interval: 1s", "interval: soon"),
            "services.db.healthcheck.interval",
        ),
    ];
    for (i, (bad, want)) in cases.iter().enumerate() {
        let number = i as i64 + 2;
        s.push(&format!("bad{number}"), Some(bad));
        let start = Instant::now();
        let pipeline = loop {
            let (_, p) = s.api(
                "GET",
                &format!("/repos/alice/shop/pipelines/{number}"),
                None,
            );
            if p["status"] == "failure" || p["status"] == "success" {
                break p;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "{p}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(pipeline["status"], "failure", "{pipeline}");
        let step = step(&pipeline, "image:shop");
        let error = step["error"].as_str().unwrap_or("");
        assert!(error.contains(want), "case {i}: want {want:?} in {error}");
    }
    assert!(s.release(2).is_null(), "no release was made");
    assert_eq!(s.container_of("web"), web);
    assert_eq!(s.get("/"), (200, "v1".into()));
}

#[test]
fn stack_volumes_back_up_and_restore_services_scale_and_log_apart() {
    let s = Stack::new();
    s.push("v1", None);
    let r1 = s.wait_release(1);
    assert_eq!(r1["status"], "active", "{r1}\n{}", s.server.log());
    s.wait_body("/", "v1");
    s.wait_body("/cgi-bin/schema", "schema-MIGRATION");
    assert_eq!(s.get("/cgi-bin/vote"), (200, "1".into()));
    assert_eq!(s.get("/cgi-bin/vote"), (200, "2".into()));
    let cli = s.cli();

    // Metrics per service: the charts' series and Prometheus.
    let start = Instant::now();
    loop {
        let (code, m) = s.api("GET", "/apps/shop/metrics?range=5m&service=db", None);
        assert_eq!(code, 200, "{m}");
        assert_eq!(m["service"], "db");
        assert!(m["series"].get("requests_per_s").is_none(), "{m}");
        let last = |k: &str| {
            m["series"][k]
                .as_array()
                .and_then(|p| p.last())
                .map(|p| p[1].as_f64())
        };
        if last("replicas") == Some(Some(1.0))
            && last("memory_bytes").flatten().unwrap_or(0.0) > 0.0
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no db series: {m}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, e) = s.api("GET", "/apps/shop/metrics?service=nope", None);
    assert_eq!(code, 404, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("web"),
        "{e}"
    );
    let scrape = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", s.server.url))
        .bearer_auth(&s.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        scrape.contains(r#"slipway_service_memory_bytes{app="shop",service="db"}"#)
            && scrape.contains(
                r#"slipway_service_replicas{app="shop",service="web",state="healthy"} 1"#
            ),
        "{scrape}"
    );

    // Logs per service: db's lines only, each marked with its service.
    let start = Instant::now();
    loop {
        let out = cli.ok(&["logs", "shop", "--service", "db", "--json"], None);
        let records: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(records.iter().all(|r| r["service"] == "db"), "{out}");
        if records.iter().any(|r| r["line"] == "db-ready-on-7000") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no db line: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = cli.ok(&["logs", "shop", "--service", "db"], None);
    assert!(
        text.contains("db/") && !text.contains("web-ready") && !text.contains("migrated"),
        "{text}"
    );
    let all = cli.ok(&["logs", "shop"], None);
    assert!(
        all.contains("db-ready-on-7000")
            && all.contains("web-ready-on-8080")
            && all.contains("migrated"),
        "{all}"
    );
    let (code, body) = s.api("GET", "/apps/shop/logs?service=No", None);
    assert_eq!(code, 422, "{body}");

    // Per-service scale: two web replicas, both routed; the database stays one.
    let out = cli.ok(
        &["scale", "shop", "web=2", "--wait", "--timeout", "60"],
        None,
    );
    assert!(out.contains("web of shop: 2/2 replicas ready"), "{out}");
    let webs: Vec<Value> = s
        .replicas()
        .into_iter()
        .filter(|r| r["service"] == "web")
        .collect();
    assert_eq!(webs.len(), 2, "{webs:?}");
    assert!(webs.iter().all(|r| r["state"] == "healthy"), "{webs:?}");
    assert_eq!(
        s.replicas().iter().filter(|r| r["service"] == "db").count(),
        1
    );
    let ps = cli.ok(&["ps", "shop"], None);
    assert_eq!(
        ps.lines()
            .filter(|l| l
                .trim_start_matches(|c: char| c == '│' || c.is_whitespace())
                .starts_with("web "))
            .count(),
        2,
        "{ps}"
    );
    let mut hosts = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (code, host) = s.get("/cgi-bin/host");
        assert_eq!(code, 200);
        hosts.insert(host);
        if hosts.len() == 2 {
            break;
        }
    }
    assert_eq!(hosts.len(), 2, "both web replicas answer: {hosts:?}");
    let (_, app) = s.api("GET", "/apps/shop", None);
    let web = app["services"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == "web"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(web["replicas"], 2, "{app}");
    assert_eq!(web["scaled"], true, "{app}");
    let (_, events) = s.api("GET", "/apps/shop/events", None);
    assert!(
        events
            .to_string()
            .contains("scaled web from 1 to 2 by alice"),
        "{events}"
    );
    let err = cli.fails(&["scale", "shop", "migrate=2"], None);
    assert!(err.contains("one-off task") && err.contains("422"), "{err}");
    let err = cli.fails(&["scale", "shop", "cache=1"], None);
    assert!(
        err.contains("no service cache") && err.contains("migrate") && err.contains("404"),
        "{err}"
    );

    // Volume backup: a tar of the volume's contents, on stdout.
    let out = cli.run(&["volume", "backup", "shop", "db-data"], None);
    assert!(out.status.success(), "{out:?}");
    let tar_path = s._work.path().join("db-data.tar");
    std::fs::write(&tar_path, &out.stdout).unwrap();
    let listing = std::process::Command::new("tar")
        .args(["tf", tar_path.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l == "./votes") && listing.lines().any(|l| l == "./schema"),
        "{listing}"
    );
    // The data changes after the backup…
    assert_eq!(s.get("/cgi-bin/vote"), (200, "3".into()));
    assert_eq!(s.get("/cgi-bin/vote"), (200, "4".into()));

    // …a bad archive or an unknown volume changes nothing…
    let db = s.container_of("db");
    let err = cli.fails(
        &["volume", "restore", "shop", "db-data"],
        Some(&"not a tar archive ".repeat(100)),
    );
    assert!(
        err.contains("not a valid tar archive") && err.contains("422"),
        "{err}"
    );
    let err = cli.fails(
        &["volume", "backup", "shop", "nope", "-o", "/dev/null"],
        None,
    );
    assert!(
        err.contains("no volume \"nope\"") && err.contains("db-data"),
        "{err}"
    );
    assert_eq!(s.container_of("db"), db);
    assert_eq!(s.get("/cgi-bin/count"), (200, "4".into()));
    // …an archive the engine cannot unpack (a hard link to a file it does
    // not hold) leaves the volume as it was: its contents are put back.
    let broken = ustar(&[("./x", b'0', "", "x\n"), ("./y", b'1', "./missing", "")]);
    let err = cli.fails(&["volume", "restore", "shop", "db-data"], Some(&broken));
    assert!(
        err.contains("could not be unpacked") && err.contains("previous contents were put back"),
        "{err}"
    );
    s.wait_body("/cgi-bin/count", "4");
    assert_eq!(s.get("/cgi-bin/schema"), (200, "schema-MIGRATION".into()));
    let db = s.container_of("db");
    // …restoring needs admin access to the app (backups: write access).
    let bob = s.server.create_user(&s.token, "bob");
    let (code, body) = s.api(
        "PUT",
        "/repos/alice/shop/collaborators/bob",
        Some(json!({"access": "write"})),
    );
    assert!(code == 200 || code == 204, "{body}");
    let (code, _) = s
        .server
        .api("GET", "/apps/shop/volumes/db-data/backup", Some(&bob), None);
    assert_eq!(code, 200);
    let (code, body) = s.server.api(
        "PUT",
        "/apps/shop/volumes/db-data/restore",
        Some(&bob),
        None,
    );
    assert_eq!(code, 403, "{body}");

    // The restore stops db, puts the backup's contents back, starts db
    // again: the count is the one of the backup.
    let tar_text = String::from_utf8(out.stdout.clone()).expect("a tar of text files is ASCII");
    let restored = cli.ok(&["volume", "restore", "shop", "db-data"], Some(&tar_text));
    assert!(
        restored.contains("Restored volume db-data of shop") && restored.contains("db start again"),
        "{restored}"
    );
    s.wait_body("/cgi-bin/count", "2");
    assert_ne!(s.container_of("db"), db, "db was restarted");
    assert_eq!(s.get("/cgi-bin/schema"), (200, "schema-MIGRATION".into()));
    assert_eq!(s.get("/cgi-bin/vote"), (200, "3".into()));
    let (_, events) = s.api("GET", "/apps/shop/events", None);
    let events = events.to_string();
    assert!(
        events.contains("restoring volume db-data by alice: stopping db")
            && events.contains("volume db-data restored"),
        "{events}"
    );
    // From a file too, with --output and --input.
    let file = s._work.path().join("again.tar");
    cli.ok(
        &[
            "volume",
            "backup",
            "shop",
            "db-data",
            "-o",
            file.to_str().unwrap(),
        ],
        None,
    );
    let json = cli.json(&[
        "volume",
        "restore",
        "shop",
        "db-data",
        "-i",
        file.to_str().unwrap(),
    ]);
    assert_eq!(json["services"], json!(["db"]), "{json}");
    s.wait_body("/cgi-bin/count", "3");
}
