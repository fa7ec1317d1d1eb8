//! A whole five-service stack going live: Slipway against `docker-compose`
//! on the same Compose file and the same images, in the same run.
//!
//! The stack is the voting app of `tests/stack_vote.rs`
//! (`tests/support/vote_app.rs`: Flask front and results, Python worker,
//! Redis, PostgreSQL with a named volume, a migration task; built `FROM
//! slipway/debian:bookworm`). A first push builds the images (reported
//! apart). Then, `BENCH_ROUNDS` (default 3) times each:
//!
//! - **Slipway**: a fresh app on the already built image set, from `git
//!   push` starting to its release active and the front and the results
//!   answering through Slipway's proxy. Includes the pipeline, the cached
//!   `docker build`s of the five images, a new network and volume,
//!   PostgreSQL's initdb, the health checks and the migration task.
//! - **docker-compose**: `docker-compose up -d` of a fresh project on the
//!   same file, the `build:` services given Slipway's images (`image:`, so
//!   nothing is built), until the front and the results answer on their
//!   loopback ports. Debian's docker-compose 1.29 has no `--wait`; its
//!   `up -d` waits for `service_healthy` and
//!   `service_completed_successfully` dependencies itself, and the front is
//!   polled. Also `up -d --build` with Docker's build cache warm, the
//!   closest to Slipway's builds.
//!
//! Each round is torn down (app deleted with its volume, `down -v`) before
//! the next. Medians are printed with the ratio. Loopback only.
//!
//! Needs Docker, debootstrap and Debian's docker-compose: run with
//! `./scripts/bench.sh stack`, or `cargo bench --bench stack`.

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/vote_app.rs"]
mod vote_app;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// Longest wait for anything to go live (the first push builds everything).
const LIMIT: Duration = Duration::from_secs(900);

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    preflight();
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let token = server.setup_admin("bench");
    let bench = Bench {
        server,
        token,
        work: work.path().to_path_buf(),
    };

    // The first push builds the images; the rounds reuse them.
    let (first, sha) = bench.slipway_round("vote0");
    println!("first push (images built or found in Docker's cache): {first:.1} s");
    let images = images_file(work.path(), "vote0", &sha);
    bench.delete_app("vote0");

    let mut slipway = Vec::new();
    let mut compose = Vec::new();
    let mut compose_build = Vec::new();
    for round in 1..=rounds {
        let (t, _) = bench.slipway_round(&format!("vote{round}"));
        bench.delete_app(&format!("vote{round}"));
        let c = compose_round(&bench.work, round, Some(&images));
        let b = compose_round(&bench.work, round + rounds, None);
        println!(
            "round {round}: slipway {t:.1} s, docker-compose up -d {c:.1} s, up -d --build {b:.1} s"
        );
        slipway.push(t);
        compose.push(c);
        compose_build.push(b);
    }
    let (s, c, b) = (median(&slipway), median(&compose), median(&compose_build));
    println!();
    println!("push → five-service stack live, cached images, median of {rounds}:");
    summary(
        "slipway: git push → release active, front + results answer via the proxy",
        &slipway,
    );
    summary(
        "docker-compose up -d: images given, nothing built",
        &compose,
    );
    summary(
        "docker-compose up -d --build: Docker's build cache warm",
        &compose_build,
    );
    println!(
        "  ratio slipway / docker-compose up -d:         {:.2}",
        s / c
    );
    println!(
        "  ratio slipway / docker-compose up -d --build: {:.2}",
        s / b
    );
}

fn summary(what: &str, times: &[f64]) {
    println!(
        "  {what:<75} {:>5.1} s (min {:.1}, max {:.1})",
        median(times),
        min(times),
        max(times)
    );
}

/// Docker, the Debian base image and docker-compose, or a loud panic.
fn preflight() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        slipway_runtime::Runtime::connect()
            .await
            .unwrap_or_else(|e| panic!("the stack bench needs Docker (run scripts/deps.sh): {e}"));
    });
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["images", "bootstrap", "--debian", "--json"])
        .output()
        .expect("run slipway images bootstrap");
    assert!(
        out.status.success(),
        "slipway images bootstrap --debian: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = Command::new("docker-compose").arg("version").output();
    assert!(
        v.as_ref().is_ok_and(|o| o.status.success()),
        "the stack bench compares with docker-compose: run ./scripts/bench.sh stack (installs Debian's docker-compose)"
    );
}

struct Bench {
    server: TestServer,
    token: String,
    work: std::path::PathBuf,
}

impl Bench {
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.api(method, path, Some(&self.token), body)
    }

    /// A new repository and app `name` holding the voting app; seconds from
    /// `git push` starting to v1 active with the front and the results
    /// answering through the proxy, and the pushed commit.
    fn slipway_round(&self, name: &str) -> (f64, String) {
        let (s, b) = self.api("POST", "/repos", Some(json!({ "name": name })));
        assert_eq!(s, 201, "{b}");
        let (s, b) = self.api(
            "POST",
            "/apps",
            Some(json!({"name": name, "repo": format!("bench/{name}"), "port": 80})),
        );
        assert_eq!(s, 201, "{b}");
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        vote_app::write_repo(&dir, "v1");
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "-m", "v1"]);
        let url = self
            .server
            .git_url("bench", name, Some(("bench", &self.token)));
        git_ok(&dir, &["remote", "add", "origin", &url]);
        let sha = git_ok(&dir, &["rev-parse", "HEAD"]);
        let host = format!("{name}.localhost");
        let pushed = Instant::now();
        git_ok(&dir, &["push", "-q", "origin", "main"]);
        loop {
            let (_, releases) = self.api("GET", &format!("/apps/{name}/releases"), None);
            let v1 = releases
                .as_array()
                .and_then(|l| l.iter().find(|r| r["number"] == 1).cloned())
                .unwrap_or(Value::Null);
            if v1["status"] == "active"
                && proxy_get(&self.server.proxy_url, &host, "/").1 == "v1"
                && proxy_get(&self.server.proxy_url, &host, "/result").0 == 200
            {
                return (pushed.elapsed().as_secs_f64(), sha);
            }
            assert!(
                v1["status"] != "failed" && pushed.elapsed() < LIMIT,
                "{name} never went live: {v1}\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes an app with its volume, and waits until its containers are gone.
    fn delete_app(&self, name: &str) {
        let (s, b) = self.api("DELETE", &format!("/apps/{name}?purge_volumes=true"), None);
        assert!(s == 200 || s == 204, "{s} {b}");
        let start = Instant::now();
        while containers_labelled(&format!("io.slipway.app={name}")) > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{name} not removed"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// An override file giving each built service the image Slipway built for
/// app `app` at `sha` (`slipway/app-<app>-<service>:<sha[..12]>`).
fn images_file(work: &Path, app: &str, sha: &str) -> std::path::PathBuf {
    let mut text = String::from("services:\n");
    for svc in vote_app::SERVICES {
        text.push_str(&format!(
            "  {svc}:\n    image: slipway/app-{app}-{svc}:{}\n",
            &sha[..12]
        ));
    }
    let path = work.join("images.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `docker-compose up -d` of a fresh project (with `--build` when no
/// images are given); seconds until the front and the results answer.
fn compose_round(work: &Path, round: usize, images: Option<&Path>) -> f64 {
    let project = format!("slipwaybench{round}");
    let dir = work.join(&project);
    vote_app::write_repo(&dir, "v1");
    let (vote_port, result_port) = (free_port(), free_port());
    let compose = |args: &[&str]| {
        let mut c = Command::new("docker-compose");
        c.current_dir(&dir)
            .env("VOTE_PORT", vote_port.to_string())
            .env("RESULT_PORT", result_port.to_string())
            .args(["-p", &project, "-f", "compose.yaml"]);
        if let Some(i) = images {
            c.arg("-f").arg(i);
        }
        c.args(args);
        c
    };
    let up: &[&str] = if images.is_some() {
        &["up", "-d", "--no-build"]
    } else {
        &["up", "-d", "--build"]
    };
    let start = Instant::now();
    let out = compose(up).output().expect("docker-compose up");
    assert!(
        out.status.success(),
        "docker-compose up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let front = format!("http://127.0.0.1:{vote_port}");
    let results = format!("http://127.0.0.1:{result_port}");
    loop {
        if proxy_get(&front, "localhost", "/").1 == "v1"
            && proxy_get(&results, "localhost", "/result").0 == 200
        {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "compose project {project} never went live"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed().as_secs_f64();
    let out = compose(&[
        "down",
        "-v",
        "--rmi",
        "local",
        "--remove-orphans",
        "-t",
        "5",
    ])
    .output()
    .expect("docker-compose down");
    assert!(
        out.status.success(),
        "docker-compose down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn containers_labelled(label: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[s.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}
