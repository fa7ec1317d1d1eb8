//! The README as a new user meets it. `five_minute_tour_runs_as_written`
//! starts the server with the README's first command (`./scripts/up.sh`, at
//! the checkout's root, default settings) and runs every command of the
//! "Five-minute tour" in order, in one shell, with a throw-away HOME; the
//! README cannot drift from the product without this test failing.
//! `server_started_in_a_fresh_directory_with_defaults` starts `slipway
//! server` with no options in an empty directory (so the data directory is
//! the relative default) and checks that a push runs a pipeline and deploys.
//!
//! Both use the default ports (7700, 7780), so they run one at a time.

#[path = "support/deployed.rs"]
mod deployed;
mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

/// Held by the test that uses the default ports.
static DEFAULT_PORTS: Mutex<()> = Mutex::new(());

/// Lines of the tour this test does not run, and why: they build and use a
/// Debian-based language image, which takes minutes.
const SKIPPED: &[&str] = &[
    "slipway exec images build python",
    "echo 'print(sum(range(10)))' > sum.py && slipway exec run sum.py",
];

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shell blocks of the README's "## Five-minute tour" section, in order.
fn tour_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("\n## Five-minute tour")
        .expect("README has a \"## Five-minute tour\" section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The command of a line without its trailing `# comment` (quotes respected
/// well enough for the README: a `#` after two spaces starts a comment).
fn command_of(line: &str) -> &str {
    line.split("  #").next().unwrap_or(line).trim()
}

/// Panics unless nothing listens on `addr`.
fn assert_free(addr: &str) {
    if std::net::TcpListener::bind(addr).is_err() {
        panic!("{addr} is in use: this test starts Slipway on its default ports; stop whatever listens there");
    }
}

/// Deploy instances of replicas present now (so the test removes only its own).
fn deploy_instances() -> std::collections::BTreeSet<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=io.slipway.deploy-instance",
            "--format",
            "{{.Label \"io.slipway.deploy-instance\"}}",
        ])
        .output()
        .expect("run docker ps (Docker is needed: scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A server process started as a user would; on drop it is stopped with
/// SIGTERM (as Ctrl-C would), the replicas it left are removed, and so is
/// its data directory when the test made it.
struct UserServer {
    child: Option<Child>,
    log: PathBuf,
    instances_before: std::collections::BTreeSet<String>,
    data_dir: Option<PathBuf>,
}

impl UserServer {
    /// Runs `cmd`, whose output goes to `log`, until it prints the API
    /// address (within `limit`: the README's command may build first).
    fn start(mut cmd: Command, log: PathBuf, limit: Duration) -> UserServer {
        let instances_before = deploy_instances();
        let file = std::fs::File::create(&log).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let copy = log.clone();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new().append(true).open(copy).unwrap();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(out, "{line}");
                if line.starts_with("slipway listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        let server = UserServer {
            child: Some(child),
            log,
            instances_before,
            data_dir: None,
        };
        if rx.recv_timeout(limit).is_err() {
            panic!(
                "the server did not report its address within {limit:?}:\n{}",
                server.log_tail(60)
            );
        }
        server
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for UserServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for instance in deploy_instances().difference(&self.instances_before) {
            remove_deploy_instance(instance);
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn five_minute_tour_runs_as_written() {
    let _ports = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();
    let blocks = tour_blocks(&readme);
    assert!(blocks.len() >= 5, "the tour has too few blocks: {blocks:?}");

    // The first block starts the server: exactly the README's first command.
    let first: Vec<&str> = blocks[0]
        .lines()
        .map(command_of)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        first,
        ["./scripts/up.sh"],
        "the tour starts the server with ./scripts/up.sh"
    );
    assert!(
        readme.contains("./scripts/up.sh ")
            && readme[..readme.find("## ").unwrap()].contains("./scripts/up.sh"),
        "the README starts with ./scripts/up.sh"
    );

    let data = checkout().join("slipway-data");
    assert!(
        !data.exists(),
        "{} exists: the tour's server keeps its data there; move it away to run this test",
        data.display()
    );
    assert_free("127.0.0.1:7700");
    assert_free("127.0.0.1:7780");

    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let user_env = |cmd: &mut Command| {
        cmd.env("HOME", &home)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("SLIPWAY_TOKEN")
            .env_remove("SLIPWAY_SERVER")
            .env_remove("SLIPWAY_CLI_CONFIG")
            .env_remove("SLIPWAY_CONFIG")
            .env_remove("SLIPWAY_DATA_DIR")
            .env_remove("SLIPWAY_LISTEN")
            .env_remove("SLIPWAY_PROXY_LISTEN")
            .env_remove("RUST_LOG")
            // A user's machine knows who commits; a fresh HOME does not.
            .env("GIT_AUTHOR_NAME", "Tour User")
            .env("GIT_AUTHOR_EMAIL", "tour@example.com")
            .env("GIT_COMMITTER_NAME", "Tour User")
            .env("GIT_COMMITTER_EMAIL", "tour@example.com");
    };

    eprintln!(
        "starting ./scripts/up.sh (it builds the release binary when it is missing: minutes)"
    );
    let mut up = Command::new("./scripts/up.sh");
    up.current_dir(checkout());
    user_env(&mut up);
    let mut server = UserServer::start(
        up,
        scratch.path().join("server.log"),
        Duration::from_secs(40 * 60),
    );
    server.data_dir = Some(data.clone());

    // The rest of the tour, as one terminal session.
    let mut script = String::from("set -euo pipefail\nset -x\n");
    let mut skipped = Vec::new();
    for block in &blocks[1..] {
        for line in block.lines() {
            if SKIPPED
                .iter()
                .any(|s| command_of(line) == *s || command_of(line).starts_with(&format!("{s} ")))
            {
                skipped.push(line.to_owned());
                script.push_str(&format!("# skipped by the test: {line}\n"));
            } else {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    assert_eq!(
        skipped.len(),
        SKIPPED.len(),
        "every skipped line must be in the tour, once: {skipped:?}"
    );
    for line in &skipped {
        eprintln!("skipped (builds a Debian language image, minutes): {line}");
    }
    let script_path = scratch.path().join("tour.sh");
    std::fs::write(&script_path, &script).unwrap();
    let mut tour = Command::new("bash");
    tour.arg(&script_path)
        .current_dir(checkout())
        .stdin(Stdio::null());
    user_env(&mut tour);
    let started = Instant::now();
    let out = tour.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    };
    assert!(
        out.status.success(),
        "the tour failed ({}):\n--- output ---\n{}\n--- commands and errors ---\n{}\n--- server ---\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr),
        server.log_tail(40)
    );
    eprintln!("tour ran in {:.1} s", started.elapsed().as_secs_f64());

    // What a reader is promised along the way.
    for (promise, text) in [
        (
            "git push names the pipeline",
            "Slipway: pipeline #1 queued for main",
        ),
        (
            "git push says what it deploys",
            "Slipway: deploying app web release 1",
        ),
    ] {
        assert!(
            stderr.contains(text),
            "{promise}: {text:?} not in:\n{}",
            tail(&stderr)
        );
    }
    for (promise, text) in [
        ("the pipeline's steps ran", "packaging"),
        ("the sandbox answered", "hello from the sandbox"),
        (
            "the app answers through the proxy",
            "<h1>hello from web</h1>",
        ),
        ("config list shows the variable", "GREETING"),
        ("the stack's front answers", "<h1>hello from the shop</h1>"),
        ("services reach each other by name", "kept-in-a-volume"),
        ("ps names the services", "SERVICE"),
        ("volume ls lists the named volume", "store-data"),
        ("node list shows the replicas", "REPLICAS"),
        ("metrics are served", "# HELP"),
    ] {
        assert!(
            stdout.contains(text),
            "{promise}: {text:?} not in:\n{}",
            tail(&stdout)
        );
    }

    // What the user made is theirs to remove; the test's own cleanup.
    let slipway = checkout().join("target/release/slipway");
    let mut delete = Command::new(&slipway);
    delete.args(["app", "delete", "web", "--yes"]);
    user_env(&mut delete);
    let _ = delete.output();
    drop(server);
    assert!(!data.exists(), "the test's data directory was not removed");
}

#[test]
fn server_started_in_a_fresh_directory_with_defaults() {
    let _ports = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    assert_free("127.0.0.1:7700");
    assert_free("127.0.0.1:7780");
    let (_tokio, _rt) = deployed::docker();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("server")
        .current_dir(cwd.path())
        .env("HOME", cwd.path())
        .env_remove("SLIPWAY_DATA_DIR")
        .env_remove("SLIPWAY_LISTEN")
        .env_remove("SLIPWAY_PROXY_LISTEN")
        .env_remove("SLIPWAY_CONFIG");
    let server = UserServer::start(cmd, cwd.path().join("server.log"), Duration::from_secs(60));
    let api = "http://127.0.0.1:7700/api/v1";
    let http = reqwest::blocking::Client::new();
    let call = |method: &str, path: &str, token: Option<&str>, body: Value| -> (u16, Value) {
        let mut req = http.request(method.parse().unwrap(), format!("{api}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().expect("API request");
        let status = res.status().as_u16();
        (status, res.json().unwrap_or(Value::Null))
    };

    // The relative default data directory, in the directory it started in.
    let setup = std::fs::read_to_string(cwd.path().join("slipway-data/setup-token"))
        .expect("setup token in ./slipway-data");
    let (status, body) = call(
        "POST",
        "/setup",
        None,
        json!({"setup_token": setup.trim(), "username": "admin", "password": "admin-password"}),
    );
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, body) = call("POST", "/repos", Some(&token), json!({"name": "site"}));
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        "POST",
        "/apps",
        Some(&token),
        json!({"name": "site", "repo": "admin/site", "replicas": 1}),
    );
    assert_eq!(status, 201, "{body}");

    let work = cwd.path().join("work");
    std::fs::create_dir_all(work.join("www")).unwrap();
    std::fs::write(work.join("www/index.html"), "relative paths work\n").unwrap();
    std::fs::write(work.join("Dockerfile"), HTTPD_DOCKERFILE).unwrap();
    std::fs::write(
        work.join(".slipway.yml"),
        "steps:\n  - name: check\n    image: slipway/busybox:latest\n    commands: [test -f /workspace/Dockerfile]\n",
    )
    .unwrap();
    git_ok(&work, &["init", "-q", "-b", "main"]);
    git_ok(&work, &["add", "-A"]);
    git_ok(&work, &["commit", "-q", "-m", "site"]);
    let url = format!("http://admin:{token}@127.0.0.1:7700/git/admin/site.git");
    let push = git(&work, &["push", "-q", &url, "main"]);
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let said = String::from_utf8_lossy(&push.stderr).into_owned();
    assert!(
        said.contains("remote: Slipway: pipeline #1 queued for main"),
        "git push did not name the pipeline:\n{said}"
    );

    // The hook found the server: the pipeline runs its step and the image build, and the app is live.
    let deadline = Instant::now() + Duration::from_secs(180);
    let pipeline = loop {
        let (status, p) = call(
            "GET",
            "/repos/admin/site/pipelines/1",
            Some(&token),
            Value::Null,
        );
        if status == 200
            && ["success", "failure", "error", "cancelled"]
                .contains(&p["status"].as_str().unwrap_or(""))
        {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline 1 did not finish (status {status}): {p}\n{}",
            server.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        pipeline["status"],
        "success",
        "{pipeline}\n{}",
        server.log_tail(40)
    );
    let (status, body) = proxy_get("http://127.0.0.1:7780", "site.localhost", "/");
    assert_eq!((status, body.as_str()), (200, "relative paths work"));
    let (status, _) = call("DELETE", "/apps/site", Some(&token), Value::Null);
    assert_eq!(status, 204);
    // Its log went to a file, not a terminal: plain text, no colour codes.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("INFO") && !log.contains('\u{1b}'), "{log}");
    drop(server);
}
