//! Code execution throughput and latency with the warm pool: a trivial program
//! submitted through the API (`POST /api/v1/exec/run`, synchronous) at
//! concurrency 1, 8 and 32, beside the floor measured in the same run: a raw
//! `docker run --rm` of the same program with the same image. Reports jobs/s,
//! p50/p99, the overhead over the floor (p50 difference, negative = faster
//! than the floor) and the jobs/s ratio. Busybox always; python `print(1)` and
//! a C compile+run when their images exist (`slipway exec images build python c`).
//!
//! Run: `cargo bench --bench exec` (a few minutes; bounded). Needs Docker.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Jobs per measurement at a concurrency (bounded load).
fn jobs(concurrency: usize) -> usize {
    (2 * concurrency).max(24)
}

/// Warm sandboxes per language in the benchmarked server (the pool size knob).
const POOL: &str = "8";

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
        // One user measures the service's throughput: every worker is theirs.
        .env("SLIPWAY_EXEC_MAX_RUNNING_PER_USER", "8")
        .env("SLIPWAY_EXEC_MAX_PENDING", "1000")
        .env("SLIPWAY_EXEC_SUBMISSIONS_PER_MINUTE", "100000")
        .env("SLIPWAY_EXEC_MAX_PENDING_PER_USER", "1000")
        .env("SLIPWAY_EXEC_POOL_SIZE", POOL)
        .env("SLIPWAY_EXEC_POOL_MAX_TOTAL", "24")
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
    let total_jobs = jobs(concurrency);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (one, lat, next) = (one.clone(), latencies.clone(), next.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total_jobs {
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
    (total_jobs as f64 / total, pct(0.5), pct(0.99))
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
        ("python", "slipway/exec-python:3.11", "main.py", "print(1)", vec!["python3", "-c", "print(1)"]),
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
    // Let the first jobs of each language fill its warm pool, like a server in use.
    for (lang, image, name, program, _) in &cases {
        if image_exists(image) {
            for _ in 0..3 {
                let _ = http
                    .post(format!("{url}/api/v1/exec/run"))
                    .bearer_auth(&token)
                    .json(&json!({"language": lang, "files": [{"name": name, "content": program}]}))
                    .send();
            }
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "exec benchmark: warm pool {POOL}/language, 8 workers; jobs per row = max(24, 2 x conc); 2 cores; load average {}",
        load_average()
    );
    println!(
        "{:<11} {:>4}  {:>24}  {:>24}  {:>9}  {:>6}",
        "runtime",
        "conc",
        "slipway jobs/s p50 p99",
        "docker run jobs/s p50 p99",
        "overhead",
        "ratio"
    );
    for (lang, image, name, program, raw) in cases {
        if !image_exists(image) {
            println!("{lang:<11} skipped: {image} not built (slipway exec images build {lang})");
            continue;
        }
        for concurrency in [1, 8, 32] {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            let body = json!({"language": lang, "files": [{"name": name, "content": program}]});
            let expected = if lang == "python" { "1\n" } else { "hi\n" };
            let api: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let job: Value = http
                    .post(format!("{url}/api/v1/exec/run"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                assert_eq!(job["run"]["stdout"], expected, "{job}");
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
                assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
            });
            let (s_rate, s50, s99) = measure(concurrency, api);
            let (d_rate, d50, d99) = measure(concurrency, docker);
            println!(
                "{lang:<11} {concurrency:>4}  {s_rate:>7.2} {s50:>7.0}ms {s99:>6.0}ms  {d_rate:>7.2} {d50:>7.0}ms {d99:>6.0}ms  {:>+7.0}ms  {:>5.2}x",
                s50 - d50,
                s_rate / d_rate
            );
        }
    }
    println!("load average after: {}", load_average());
}

/// The 1/5/15-minute load averages (other work on the machine skews figures).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
