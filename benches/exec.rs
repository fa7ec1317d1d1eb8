//! Code execution throughput and latency: a trivial program submitted through
//! the API (`POST /api/v1/exec/run`, synchronous) at concurrency 1, 8 and 32,
//! beside the floor measured in the same run: a raw `docker run --rm` of the
//! same program with the same image. Busybox always; python and C when their
//! images exist (`slipway exec images build python c`).
//!
//! Run: `cargo bench --bench exec`. Needs Docker.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Jobs per measurement (bounded load).
const JOBS: usize = 48;

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &std::path::Path) -> (Reaped, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "error")
        .env("SLIPWAY_EXEC_WORKERS", "8")
        .env("SLIPWAY_EXEC_MAX_PENDING", "1000")
        .env("SLIPWAY_EXEC_SUBMISSIONS_PER_MINUTE", "100000")
        .env("SLIPWAY_EXEC_MAX_PENDING_PER_USER", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start slipway");
    let url = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("slipway listening on ").map(str::to_owned))
        .expect("slipway address");
    let code = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let res: Value = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/setup"))
        .json(
            &json!({"setup_token": code.trim(), "username": "bench", "password": "bench-password"}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    (
        Reaped(child),
        url,
        res["token"].as_str().unwrap().to_owned(),
    )
}

/// Runs `jobs` calls of `one` on `concurrency` threads; returns (jobs/s, p50 ms, p99 ms).
fn measure(concurrency: usize, one: Arc<dyn Fn() + Send + Sync>) -> (f64, f64, f64) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (one, lat, next) = (one.clone(), latencies.clone(), next.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < JOBS {
                    let t = Instant::now();
                    one();
                    lat.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    (JOBS as f64 / total, pct(0.5), pct(0.99))
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    let docker_ok = Command::new("docker")
        .arg("version")
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(docker_ok, Ok(true)),
        "this benchmark needs a running Docker Engine"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, token) = start(dir.path());
    // (language, image, file name, program, docker run command)
    let cases = [
        ("busybox-sh", "slipway/busybox:latest", "main.sh", "echo hi", vec!["sh", "-c", "echo hi"]),
        ("python", "slipway/exec-python:3.11", "main.py", "print('hi')", vec!["python3", "-c", "print('hi')"]),
        ("c", "slipway/exec-c:12", "main.c", "#include <stdio.h>\nint main(){puts(\"hi\");}", vec!["sh", "-c", "printf '#include <stdio.h>\\nint main(){puts(\"hi\");}' > /tmp/m.c && gcc -o /tmp/m /tmp/m.c && /tmp/m"]),
    ];
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    // Warm-up: the server bootstraps busybox and starts its workers.
    for _ in 0..60 {
        let r = http
            .post(format!("{url}/api/v1/exec/run"))
            .bearer_auth(&token)
            .json(&json!({"language": "busybox-sh", "files": [{"content": "echo warm"}]}))
            .send();
        if r.map(|r| r.status().is_success()).unwrap_or(false) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("exec benchmark: {JOBS} trivial jobs per row, 2 cores");
    println!(
        "{:<11} {:>4}  {:>24}  {:>24}  {:>6}",
        "runtime", "conc", "slipway jobs/s p50 p99", "docker run jobs/s p50 p99", "ratio"
    );
    for (lang, image, name, program, raw) in cases {
        if !image_exists(image) {
            println!("{lang:<11} skipped: {image} not built (slipway exec images build {lang})");
            continue;
        }
        for concurrency in [1, 8, 32] {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            let body = json!({"language": lang, "files": [{"name": name, "content": program}]});
            let api: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let job: Value = http
                    .post(format!("{url}/api/v1/exec/run"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                assert_eq!(job["run"]["stdout"], "hi\n", "{job}");
            });
            let (image, raw) = (
                image.to_string(),
                raw.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            let docker: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let out = Command::new("docker")
                    .args([
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "--user",
                        "1000:1000",
                        "--tmpfs",
                        "/tmp:exec",
                    ])
                    .arg(&image)
                    .args(&raw)
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
            });
            let (s_rate, s50, s99) = measure(concurrency, api);
            let (d_rate, d50, d99) = measure(concurrency, docker);
            println!(
                "{lang:<11} {concurrency:>4}  {s_rate:>7.2} {s50:>7.0}ms {s99:>6.0}ms  {d_rate:>7.2} {d50:>7.0}ms {d99:>6.0}ms  {:>5.2}x",
                s_rate / d_rate
            );
        }
    }
}
