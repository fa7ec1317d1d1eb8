//! Push-to-live time of a small HTTP app (busybox httpd built from its
//! Dockerfile), 2 replicas, rolling update: from `git push` returning to the
//! new release active with every replica healthy and the proxy answering
//! with the new page. The first push (cold build) is reported apart; then
//! `BENCH_ROUNDS` (default 5) pushes with the base image cached give the
//! median, min and max. Goal from the issue: < 10 s once the image is cached.
//!
//! Needs Docker; run with `./scripts/bench.sh deploy` or `cargo bench --bench deploy`.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio.block_on(async {
        let rt = slipway_runtime::Runtime::connect()
            .await
            .unwrap_or_else(|e| panic!("the deploy bench needs Docker (run scripts/deps.sh): {e}"));
        slipway_runtime::images::ensure_busybox(&rt)
            .await
            .expect("busybox");
        rt
    });
    let server = TestServer::start();
    let token = server.setup_admin("bench");
    let (s, b) = server.api("POST", "/repos", Some(&token), Some(json!({"name": "web"})));
    assert_eq!(s, 201, "{b}");
    let (s, b) = server.api(
        "POST",
        "/apps",
        Some(&token),
        Some(json!({"name": "web", "repo": "bench/web", "replicas": 2, "health": {"path": "/health", "interval_ms": 500}})),
    );
    assert_eq!(s, 201, "{b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("web");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("Dockerfile"), HTTPD_DOCKERFILE).unwrap();
    std::fs::write(dir.join("www/health"), "ok\n").unwrap();
    git_ok(
        &dir,
        &[
            "remote",
            "add",
            "origin",
            &server.git_url("bench", "web", Some(("bench", &token))),
        ],
    );

    let mut times = Vec::new();
    for round in 0..=rounds {
        let page = format!("version {round}");
        std::fs::write(dir.join("www/index.html"), format!("{page}\n")).unwrap();
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "-m", &page]);
        let pushed = Instant::now();
        git_ok(&dir, &["push", "-q", "origin", "main"]);
        loop {
            let (_, app) = server.api("GET", "/apps/web", Some(&token), None);
            if app["release"] == (round + 1) as i64
                && app["status"] == "running"
                && app["ready"] == 2
                && proxy_get(&server.proxy_url, "web.localhost", "/").1 == page
            {
                break;
            }
            assert!(
                pushed.elapsed() < Duration::from_secs(300),
                "round {round} never went live: {app}\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = pushed.elapsed();
        if round == 0 {
            println!(
                "deploy push-to-live, first push (cold build): {:.2} s",
                took.as_secs_f64()
            );
        } else {
            times.push(took);
        }
    }
    times.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "deploy push-to-live, cached base image, 2 replicas, {rounds} rounds: median {:.2} s, min {:.2} s, max {:.2} s (goal < 10 s)",
        secs(times[times.len() / 2]),
        secs(times[0]),
        secs(times[times.len() - 1])
    );
    // Remove the replicas this bench started.
    let (_, replicas) = server.api("GET", "/apps/web/replicas", Some(&token), None);
    let (s, _) = server.api("DELETE", "/apps/web", Some(&token), None);
    assert_eq!(s, 204);
    std::thread::sleep(Duration::from_secs(2));
    tokio.block_on(async {
        for r in replicas.as_array().into_iter().flatten() {
            let _ = rt.remove(r["container"].as_str().unwrap_or("")).await;
        }
    });
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
