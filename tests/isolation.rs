//! Tenant isolation and crash safety (issue 16), as a second, ordinary user
//! against a real server, real containers and real git:
//!
//! - a CI step may not run another tenant's image (by tag, ID prefix or
//!   digest), nor a Dockerfile build on one;
//! - a step over its memory limit ends `out of memory`, the server stays up;
//! - a step reaches neither another user's replica nor another pipeline's
//!   service, a replica not another app's replica; its own service it does;
//! - a server killed at random moments during pushes loses no pipeline and
//!   leaves no temporary object directory.
//!
//! Docker must be reachable: these tests panic otherwise.

#[path = "support/deployed.rs"]
mod deployed;
mod support;

use deployed::{docker, wait_app, ServerGuard, SiteRepo};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

const IMAGE: &str = "slipway/busybox:latest";

/// A second user of `server` with their own repository `name` and work tree.
struct Tenant {
    user: String,
    token: String,
    dir: std::path::PathBuf,
    _work: tempfile::TempDir,
}

impl Tenant {
    fn new(server: &TestServer, token: &str, user: &str, repo: &str) -> Self {
        let (s, b) = server.api("POST", "/repos", Some(token), Some(json!({"name": repo})));
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join(repo);
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        git_ok(
            &dir,
            &[
                "remote",
                "add",
                "origin",
                &server.git_url(user, repo, Some((user, token))),
            ],
        );
        Tenant {
            user: user.into(),
            token: token.into(),
            dir,
            _work: work,
        }
    }

    /// Writes `files`, commits and pushes main.
    fn push(&self, files: &[(&str, &str)]) {
        for (path, text) in files {
            let p = self.dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(
            &self.dir,
            &["commit", "-q", "--allow-empty", "-m", "change"],
        );
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
    }

    /// The newest pipeline of `repo` once it has ended.
    fn last_pipeline(&self, server: &TestServer, repo: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (s, list) = server.api(
                "GET",
                &format!("/repos/{}/{repo}/pipelines?limit=1", self.user),
                Some(&self.token),
                None,
            );
            assert_eq!(s, 200, "{list}");
            if let Some(p) = list.as_array().and_then(|l| l.first()) {
                let n = p["number"].as_i64().unwrap();
                let (_, p) = server.api(
                    "GET",
                    &format!("/repos/{}/{repo}/pipelines/{n}", self.user),
                    Some(&self.token),
                    None,
                );
                if !matches!(p["status"].as_str(), Some("pending" | "running")) {
                    return p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no pipeline of {repo} ended in time: {list}\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn docker_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn steps_and_builds_may_not_use_other_tenants_images() {
    let (_tokio, _rt) = docker();
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    // Another tenant's private image, as a release leaves it in the engine.
    let private = format!("slipway/app-secret{}:abc123", std::process::id());
    docker_cli(&["tag", IMAGE, &private]);
    let id = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &private]);
    let hex = id.trim_start_matches("sha256:").to_string();
    let bob_token = server.create_user(&admin, "bob");
    let bob = Tenant::new(&server, &bob_token, "bob", "probe");

    for (image, expect) in [
        (hex[..4].to_string(), "image ID"),
        (id.clone(), "image ID"),
        (private.clone(), "not allowed"),
        (
            format!("{}/alice/web:1", server.url.trim_start_matches("http://")),
            "cannot read",
        ),
    ] {
        bob.push(&[(
            ".slipway.yml",
            &format!(
                "steps:\n  - name: read\n    image: \"{image}\"\n    commands: [cat /etc/passwd]\n"
            ),
        )]);
        let p = bob.last_pipeline(&server, "probe");
        assert_eq!(p["status"], "error", "{image}: {p}");
        let error = p["error"].as_str().unwrap_or_default();
        assert!(error.contains(expect), "{image}: {error}");
        assert!(error.contains("\"read\""), "the step is named: {error}");
    }

    // The same through a Dockerfile: the build is refused before it starts.
    let app = json!({"name": "probe", "repo": "bob/probe", "port": 8080});
    let (s, b) = server.api("POST", "/apps", Some(&bob_token), Some(app));
    assert_eq!(s, 201, "{b}");
    bob.push(&[
        (
            ".slipway.yml",
            "steps:\n  - name: ok\n    image: slipway/busybox:latest\n    commands: [\"true\"]\n",
        ),
        (
            "Dockerfile",
            &format!("FROM {IMAGE} AS base\nFROM {private}\nCOPY --from=base /bin/busybox /x\n"),
        ),
    ]);
    let p = bob.last_pipeline(&server, "probe");
    assert_eq!(p["status"], "failure", "{p}");
    let build = step(&p, "image:probe");
    let error = build["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Dockerfile") && error.contains("not allowed"),
        "{build}"
    );
    let _ = std::process::Command::new("docker")
        .args(["rmi", &private])
        .output();
}

#[test]
fn a_step_over_its_memory_limit_ends_out_of_memory() {
    let (_tokio, _rt) = docker();
    let server = TestServer::start_with_env(&[
        ("SLIPWAY_CI_STEP_MEMORY", "256m"),
        ("SLIPWAY_CI_STEP_MAX_MEMORY", "1g"),
    ]);
    let admin = server.setup_admin("alice");
    let bob_token = server.create_user(&admin, "bob");
    let bob = Tenant::new(&server, &bob_token, "bob", "hog");

    // Over the maximum: refused when queued.
    bob.push(&[(
        ".slipway.yml",
        "steps:\n  - name: big\n    image: slipway/busybox:latest\n    resources: {memory: 2g}\n    commands: [\"true\"]\n",
    )]);
    let p = bob.last_pipeline(&server, "hog");
    assert_eq!(p["status"], "error", "{p}");
    assert!(
        p["error"].as_str().unwrap().contains("maximum of 1 GiB"),
        "{p}"
    );

    // 1 GiB held by the shell under a 512 MiB limit.
    bob.push(&[(
        ".slipway.yml",
        "steps:\n  - name: hog\n    image: slipway/busybox:latest\n    resources: {memory: 512m, cpus: 1}\n    commands:\n      - x=$(head -c 1073741824 /dev/zero | tr '\\0' a)\n      - echo survived ${#x}\n  - name: small\n    image: slipway/busybox:latest\n    commands: [\"true\"]\n",
    )]);
    let p = bob.last_pipeline(&server, "hog");
    assert_eq!(p["status"], "failure", "{p}");
    let hog = step(&p, "hog");
    assert_eq!(hog["status"], "failure", "{hog}");
    assert!(
        hog["error"].as_str().unwrap().starts_with("out of memory"),
        "{hog}"
    );
    assert_eq!(hog["limits"]["memory_bytes"], 512 << 20, "{hog}");
    assert_eq!(hog["limits"]["nano_cpus"], 1_000_000_000i64, "{hog}");
    // Steps that ask for nothing get the server's default.
    let small = step(&p, "small");
    assert_eq!(small["limits"]["memory_bytes"], 256 << 20, "{small}");
    let health = reqwest::blocking::get(format!("{}/healthz", server.url)).unwrap();
    assert_eq!(health.status(), 200, "the server stays healthy");
}

/// The address of `container` on its (only) network.
fn container_ip(container: &str) -> String {
    docker_cli(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ])
}

/// The running containers labelled `label` whose names contain `part`.
fn all_labelled(label: &str, part: &str) -> Vec<String> {
    docker_cli(&[
        "ps",
        "--filter",
        &format!("label={label}"),
        "--filter",
        &format!("name={part}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The containers and network of one pipeline (`slipway-ci-<instance>-<n>`),
/// removed on drop: a server stopped mid-pipeline leaves them running.
struct CiLeftovers(String);

impl Drop for CiLeftovers {
    fn drop(&mut self) {
        // Best effort, never a panic (this may run while unwinding).
        let docker = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default()
        };
        let ids = docker(&["ps", "-aq", "--filter", &format!("name={}-", self.0)]);
        for id in ids.lines() {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", &format!("{}-net", self.0)]);
    }
}

/// The container of the first replica of `app`.
fn replica_of(server: &TestServer, token: &str, app: &str) -> String {
    let (s, list) = server.api("GET", &format!("/apps/{app}/replicas"), Some(token), None);
    assert_eq!(s, 200, "{list}");
    list[0]["container"]
        .as_str()
        .unwrap_or_else(|| panic!("no replica of {app}: {list}"))
        .to_string()
}

/// A shell test that `ip:port` answers HTTP: `then` runs when it does.
fn http_probe(target: &str, then: &str, otherwise: &str) -> String {
    format!(
        "if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} | grep -q HTTP; then {then}; else {otherwise}; fi"
    )
}

#[test]
fn tenants_cannot_reach_each_others_replicas_and_services() {
    let (_tokio, _rt) = docker();
    let mut guard = ServerGuard::new(TestServer::start());
    let server = &guard.server;
    let admin = server.setup_admin("alice");
    // Alice: an app with a replica, and a pipeline whose service stays up.
    let site = SiteRepo::create(server, &admin);
    site.push_version("alice-v1");
    wait_app(server, &admin, "site", "alice's replica", |a| {
        a["ready"] == 1
    });
    let alice_replica = replica_of(server, &admin, "site");
    guard.instance = deploy_instance_of(&alice_replica);
    let alice_ip = container_ip(&alice_replica);
    let alice_ci = Tenant::new(server, &admin, "alice", "isolated-svc");
    // Earlier runs on this engine may have left such a service behind (a
    // test server stops mid-pipeline): only a new one is this run's.
    let before: Vec<String> = all_labelled("io.slipway.repo=alice/isolated-svc", "-svc-db");
    alice_ci.push(&[(
        ".slipway.yml",
        "services:\n  - name: db\n    image: slipway/busybox:latest\n    commands: [mkdir -p /w, echo secret > /w/index.html, httpd -f -p 8080 -h /w]\nsteps:\n  - name: hold\n    image: slipway/busybox:latest\n    commands: [sleep 90]\n",
    )]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let alice_service = loop {
        let now = all_labelled("io.slipway.repo=alice/isolated-svc", "-svc-db");
        if let Some(c) = now.into_iter().find(|c| !before.contains(c)) {
            break c;
        }
        assert!(Instant::now() < deadline, "alice's service never started");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Removed with its pipeline's network when the test ends, whatever happens.
    let _leftovers = CiLeftovers(alice_service.trim_end_matches("-svc-db").to_string());
    let service_ip = container_ip(&alice_service);
    // Positive control: from the host, both answer on their addresses.
    assert!(!alice_ip.is_empty() && !service_ip.is_empty());

    // A port of the host open on every address (as Slipway, etcd or
    // PostgreSQL may be): containers must not open connections to it.
    let host_port = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port_number = host_port.local_addr().unwrap().port();
    host_port.set_nonblocking(true).unwrap();
    // Bob's step (a pipeline without services, as most are): Alice's
    // replica and service are out of reach, and so is the host.
    let bob_token = server.create_user(&admin, "bob");
    let bob = Tenant::new(server, &bob_token, "bob", "scan");
    let scan = |yaml: String| {
        bob.push(&[(".slipway.yml", &yaml)]);
        let p = bob.last_pipeline(server, "scan");
        let (_, logs) = server.api(
            "GET",
            &format!("/repos/bob/scan/pipelines/{}/steps/scan/logs", p["number"]),
            Some(&bob_token),
            None,
        );
        (p, logs.to_string())
    };
    let commands = |list: &[String]| {
        list.iter()
            .map(|c| format!("      - {}\n", serde_json::to_string(c).unwrap()))
            .collect::<String>()
    };
    let (p, logs) = scan(format!(
        "steps:\n  - name: scan\n    image: slipway/busybox:latest\n    commands:\n{}",
        commands(&[
            http_probe(
                &format!("{alice_ip} 8080"),
                "echo REACHED alice replica; exit 1",
                "echo replica-unreachable",
            ),
            http_probe(
                &format!("{service_ip} 8080"),
                "echo REACHED alice service; exit 1",
                "echo service-unreachable",
            ),
            format!(
                "gw=$(ip route | awk '/default/ {{print $3}}'); if nc -w 3 $gw {host_port_number} </dev/null; then echo REACHED host; exit 1; else echo host-unreachable $gw; fi"
            ),
        ])
    ));
    assert_eq!(p["status"], "success", "{p}\n{logs}");
    assert!(logs.contains("replica-unreachable"), "{logs}");
    assert!(logs.contains("service-unreachable"), "{logs}");
    assert!(logs.contains("host-unreachable"), "{logs}");
    assert!(
        host_port.accept().is_err(),
        "a step opened a connection to the host"
    );
    // Control: a step does reach its own pipeline's service, by name.
    let (p, logs) = scan(format!(
        "services:\n  - name: own\n    image: slipway/busybox:latest\n    commands: [mkdir -p /w, echo mine > /w/index.html, httpd -f -p 8080 -h /w]\nsteps:\n  - name: scan\n    image: slipway/busybox:latest\n    commands:\n{}",
        commands(&[
            "sleep 1".to_string(),
            http_probe("own 8080", "echo own-service-reached", "echo own-service-unreachable; exit 3"),
        ])
    ));
    assert_eq!(p["status"], "success", "{p}\n{logs}");
    assert!(logs.contains("own-service-reached"), "{logs}");

    // From a replica of another app: Alice's replica is out of reach, the
    // app's own replica (by its name on the app network) is not.
    let (s, b) = server.api(
        "POST",
        "/apps",
        Some(&admin),
        Some(json!({"name": "other", "repo": "alice/site", "port": 8080})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = server.api("POST", "/apps/other/deploy", Some(&admin), Some(json!({})));
    assert!(s == 201 || s == 202 || s == 200, "{s} {b}");
    wait_app(server, &admin, "other", "the other app's replica", |a| {
        a["ready"] == 1
    });
    let other = replica_of(server, &admin, "other");
    let probe = |target: &str| {
        std::process::Command::new("docker")
            .args(["exec", &other, "sh", "-c"])
            .arg(http_probe(target, "echo reached", "echo unreachable"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap()
    };
    assert_eq!(probe(&format!("{alice_ip} 8080")), "unreachable");
    assert_eq!(probe("other 8080"), "reached");
}

/// Refs of a bare repository: `ref name → sha`.
fn refs_of(repo: &Path) -> Vec<(String, String)> {
    git_ok(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(r, s)| (r.to_string(), s.to_string()))
    .collect()
}

#[test]
fn a_server_killed_during_pushes_loses_no_pipeline() {
    let mut server = TestServer::start();
    let token = server.setup_admin("alice");
    let (s, b) = server.api(
        "POST",
        "/repos",
        Some(&token),
        Some(json!({"name": "busy"})),
    );
    assert_eq!(s, 201, "{b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("busy");
    std::fs::create_dir_all(&dir).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    // Steps that never run (no Docker needed): each push still queues a pipeline.
    std::fs::write(
        dir.join(".slipway.yml"),
        "steps:\n  - name: never\n    image: slipway/busybox:latest\n    commands: [\"true\"]\n    when: {branch: nothing-matches}\n",
    )
    .unwrap();
    // Some bulk so that a push takes long enough to be cut in the middle.
    let bulk: String = (0..200_000).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.join("bulk.txt"), &bulk).unwrap();
    git_ok(&dir, &["add", "-A"]);
    git_ok(&dir, &["commit", "-q", "-m", "base"]);
    let mut rng = 0x2545F4914F6CDD1Du64 ^ u64::from(std::process::id());
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut kills = 0;
    for i in 0..50 {
        std::fs::write(dir.join("bulk.txt"), format!("{bulk}{i}\n")).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), format!("{i}\n")).unwrap();
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "-m", &format!("c{i}")]);
        let url = server.git_url("alice", "busy", Some(("alice", &token)));
        let branch = format!("HEAD:refs/heads/b{}", i % 7);
        let mut push = std::process::Command::new("git")
            .args(["push", "-q", "-f", &url, &branch])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if i % 3 == 0 {
            std::thread::sleep(Duration::from_millis(next(400)));
            server.stop(); // SIGKILL
            kills += 1;
            let _ = push.wait();
            server.restart();
        } else {
            let _ = push.wait();
        }
    }
    server.restart();
    assert!(kills >= 16);
    let bare = server.data_dir().join("repos/alice/busy.git");
    let refs = refs_of(&bare);
    assert!(!refs.is_empty(), "some pushes landed");
    let (s, list) = server.api(
        "GET",
        "/repos/alice/busy/pipelines?limit=500",
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{list}");
    let queued: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ref"]
                    .as_str()
                    .or(p["ref_name"].as_str())
                    .unwrap_or("")
                    .to_string(),
                p["sha"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (r, sha) in &refs {
        assert!(
            queued.iter().any(|(qr, qs)| qr == r && qs == sha),
            "{r} moved to {sha} but no pipeline was queued for it; pipelines: {queued:?}\n{}",
            server.log()
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(bare.join("objects"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp_objdir") || n.starts_with("incoming-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary objects left: {leftovers:?}"
    );
    let journal: Vec<String> = std::fs::read_dir(server.data_dir().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("push-"))
        .collect();
    assert!(journal.is_empty(), "journal files left: {journal:?}");
}
