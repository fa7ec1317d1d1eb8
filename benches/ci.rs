//! CI latency and per-step overhead, against plain container runs in the same run.
//!
//! 1. Time from `git push` returning to the first step's container running
//!    (Docker reports it `running`), over several pushes (median).
//! 2. Per-step cost inside a pipeline — (time of a 6-step chain − time of a
//!    1-step pipeline) / 5, push-to-end — against the same command (`true`)
//!    run as a plain container through the runtime crate (create, start,
//!    wait, logs, remove). Prints both and the ratio (lower is better).
//!
//! Needs Docker; run with `cargo bench --bench ci`. `BENCH_ROUNDS` sets the
//! repetitions (default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use slipway_runtime::{ContainerSpec, LabelFilter, Runtime, BUSYBOX_IMAGE};
use std::time::{Duration, Instant};
use support::*;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Bench {
    server: TestServer,
    token: String,
    dir: std::path::PathBuf,
    _work: tempfile::TempDir,
    pushes: i64,
}

impl Bench {
    fn new() -> Self {
        let server = TestServer::start();
        let token = server.setup_admin("bench");
        let (s, b) = server.api("POST", "/repos", Some(&token), Some(json!({"name": "b"})));
        assert_eq!(s, 201, "{b}");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("b");
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        Bench {
            server,
            token,
            dir,
            _work: work,
            pushes: 0,
        }
    }

    /// Commits `yaml` and pushes; returns the pipeline number and when the push returned.
    fn push(&mut self, yaml: &str) -> (i64, Instant) {
        std::fs::write(self.dir.join(".slipway.yml"), yaml).unwrap();
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "--allow-empty", "-m", "bench"]);
        let url = self
            .server
            .git_url("bench", "b", Some(("bench", &self.token)));
        git_ok(&self.dir, &["push", "-q", &url, "main"]);
        let t = Instant::now();
        self.pushes += 1;
        (self.pushes, t)
    }

    fn wait_end(&self, n: i64) -> Value {
        let start = Instant::now();
        loop {
            let (_, p) = self.server.api(
                "GET",
                &format!("/repos/bench/b/pipelines/{n}"),
                Some(&self.token),
                None,
            );
            if !matches!(p["status"].as_str(), Some("pending" | "running")) {
                assert_eq!(p["status"], "success", "{p}");
                return p;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "stuck: {p}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn chain(n: usize) -> String {
    let mut y = String::from("steps:\n");
    for i in 0..n {
        let dep = if i == 0 {
            String::new()
        } else {
            format!(", depends_on: [s{}]", i - 1)
        };
        y.push_str(&format!(
            "  s{i}: {{image: {BUSYBOX_IMAGE}, commands: [\"true\"]{dep}}}\n"
        ));
    }
    y
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio.block_on(async {
        let rt = Runtime::connect()
            .await
            .expect("the CI benchmark needs a reachable Docker Engine");
        slipway_runtime::images::ensure_busybox(&rt).await.unwrap();
        rt
    });
    let mut b = Bench::new();

    // 1. Push → first container running.
    let running = LabelFilter::managed()
        .with("io.slipway.owner", "ci")
        .with("io.slipway.repo", "bench/b")
        .has("io.slipway.step");
    let mut to_running = Vec::new();
    for _ in 0..rounds {
        let (n, t0) = b.push(&format!(
            "steps:\n  first: {{image: {BUSYBOX_IMAGE}, commands: [sleep 1]}}\n"
        ));
        loop {
            let list = tokio.block_on(rt.list_containers(&running)).unwrap();
            if list.iter().any(|c| c.state == "running") {
                to_running.push(t0.elapsed());
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "never ran");
            std::thread::sleep(Duration::from_millis(2));
        }
        b.wait_end(n);
    }

    // 2. Per-step cost: 6-step chain vs 1 step, push to end.
    let (mut one, mut six) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (n, t0) = b.push(&chain(1));
        b.wait_end(n);
        one.push(t0.elapsed());
        let (n, t0) = b.push(&chain(6));
        b.wait_end(n);
        six.push(t0.elapsed());
    }
    let per_step = median(six).saturating_sub(median(one)) / 5;

    // Peer: the same command as a plain container run, sequentially.
    let mut plain = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..6 {
            let out = tokio
                .block_on(rt.run(&ContainerSpec::new(BUSYBOX_IMAGE).shell("true")))
                .unwrap();
            assert_eq!(out.status.code, 0);
        }
        plain.push(t.elapsed() / 6);
    }
    let plain = median(plain);

    println!(
        "ci: push returned → first step container running: median {} over {rounds} pushes",
        ms(median(to_running))
    );
    println!(
        "ci: per-step cost in a pipeline (chain of 6 − 1, /5): {}",
        ms(per_step)
    );
    println!(
        "ci: plain container run of the same command (runtime crate): {}",
        ms(plain)
    );
    println!(
        "ci: per-step overhead ratio pipeline/plain: {:.2}x",
        per_step.as_secs_f64() / plain.as_secs_f64()
    );
}
