//! Load balancer throughput and tail latency: `wrk` drives two tiny hyper
//! backends through Slipway's proxy and through HAProxy configured the same
//! way (HTTP mode, round robin, keep-alive both sides, X-Forwarded-For) in the
//! same run. Prints requests/s, p99 latency, CPU time per request, errors and
//! the ratios (goal: ≥ 1.0× HAProxy's throughput at equal p99, no errors).
//!
//! On a small shared machine the throughput of *either* proxy swings by
//! ±15 % from one 5-second window to the next (the whole machine's speed
//! varies), so the proxies alternate in many short rounds and the headline
//! is the median of the per-round ratios (each ratio compares two adjacent
//! windows), with the spread printed beside it.
//!
//! Needs `wrk` and `haproxy` (Debian packages). Run with
//! `cargo bench --bench proxy`; `BENCH_SECONDS` (default 5), `BENCH_ROUNDS`
//! (default 10, alternating) and `BENCH_CONNECTIONS` (default 64) bound the
//! load. The proxy runs thread-per-core ([`Proxy::serve_on`]: one
//! current-thread runtime per thread, `BENCH_PROXY_THREADS`, default 2, like
//! `nbthread 2`);
//! `BENCH_PROXY_MODE=shared` puts it on one multi-thread runtime instead.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use slipway_proxy::{Pool, Proxy, ProxyConfig, Route, RouteTable};
use tokio::net::TcpListener;

/// The allocator the `slipway` binary ships with (see src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args([
            "-c",
            &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
        ])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: apt-get install -y wrk haproxy"
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A backend answering every request with a 13-byte body.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello, world\n",
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(dir: &std::path::Path, port: u16, backends: &[SocketAddr], threads: usize) -> Reaped {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server s{i} {a}\n"))
        .collect();
    let cfg = format!(
        "global\n    maxconn 4096\n    nbthread {threads}\n\
         defaults\n    mode http\n    option http-keep-alive\n    option forwardfor\n\
         \x20   timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n    balance roundrobin\n    http-reuse always\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    };
    let child = Reaped(
        Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("start haproxy"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
    panic!("haproxy did not listen on {port}: {log}");
}

struct Run {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU time (user + system) the proxy spent per request, in µs.
    cpu_us: f64,
}

/// CPU ticks (user + system) of the threads of process `pid` (this process
/// when `None`) whose name passes `wanted`.
fn cpu_ticks(pid: Option<u32>, wanted: impl Fn(&str) -> bool) -> u64 {
    let dir = pid.map_or("/proc/self/task".to_string(), |p| format!("/proc/{p}/task"));
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut ticks = 0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ..." — the name may hold spaces, so cut at ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !wanted(&stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    ticks
}

/// Runs `wrk` against `port`, charging the CPU time `ticks` reads to it.
fn measured(port: u16, seconds: u64, connections: u64, ticks: &dyn Fn() -> u64) -> Run {
    let before = ticks();
    let mut run = wrk(port, seconds, connections);
    let spent = ticks().saturating_sub(before);
    let requests = run.rps * seconds as f64;
    if requests > 0.0 {
        // Kernel clock ticks are 10 ms.
        run.cpu_us = spent as f64 * 10_000.0 / requests;
    }
    run
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(port: u16, seconds: u64, connections: u64) -> Run {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            "Host: app.example.com",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {text}");
    let mut run = Run {
        rps: 0.0,
        p99_ms: f64::NAN,
        errors: 0,
        cpu_us: f64::NAN,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(0.0),
            ["99%", v] => run.p99_ms = to_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                run.errors += n.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    run
}

fn main() {
    need("wrk");
    need("haproxy");
    let seconds = env_num("BENCH_SECONDS", 5);
    let connections = env_num("BENCH_CONNECTIONS", 64);
    let rounds = env_num("BENCH_ROUNDS", 10).max(1);
    let before = loadavg();

    // Backends on their own runtime, so both proxies face the same upstreams.
    let backends_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("backend")
        .enable_all()
        .build()
        .unwrap();
    let backends = backends_rt.block_on(async { vec![backend().await, backend().await] });

    // The proxy on one current-thread runtime per core: thread-per-core like
    // HAProxy's `nbthread 2`.
    // `BENCH_PROXY_MODE=shared` runs it on one multi-thread runtime instead.
    let threads = env_num("BENCH_PROXY_THREADS", 2) as usize;
    let shared = std::env::var("BENCH_PROXY_MODE").as_deref() == Ok("shared");
    let mode = if shared {
        "slipway on one multi-thread runtime"
    } else {
        "slipway thread-per-core"
    };
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("slipway-proxy")
        .enable_all()
        .build()
        .unwrap();
    let proxy = proxy_rt.block_on(async {
        let proxy = Proxy::new(ProxyConfig::default());
        proxy.set_routes(RouteTable::new().route(Route::new(
            "*",
            "/",
            Pool::new("bench", backends.clone()),
        )));
        proxy
    });
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let slipway_port = std_listener.local_addr().unwrap().port();
    if shared {
        let _guard = proxy_rt.enter();
        let listener = TcpListener::from_std(std_listener).unwrap();
        let p = proxy.clone();
        proxy_rt.spawn(async move { p.serve(listener).await });
    } else {
        // Thread-per-core: one current-thread runtime per thread, new
        // connections handed to the least busy one (see `Proxy::serve_on`).
        let _threads = proxy.serve_on(std_listener, threads).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let haproxy_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let haproxy_proc = haproxy(dir.path(), haproxy_port, &backends, threads);
    let haproxy_pid = haproxy_proc.0.id();
    let slipway_ticks = || cpu_ticks(None, |name| name.starts_with("slipway-proxy"));
    let haproxy_ticks = || cpu_ticks(Some(haproxy_pid), |_| true);

    // Warm both (connection pools, caches), then alternate rounds so that
    // load from elsewhere on the machine hits both alike; medians are shown.
    wrk(slipway_port, 2, connections);
    wrk(haproxy_port, 2, connections);
    let (mut slipway, mut haproxy) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        slipway.push(measured(slipway_port, seconds, connections, &slipway_ticks));
        haproxy.push(measured(haproxy_port, seconds, connections, &haproxy_ticks));
    }
    let ratios: Vec<f64> = slipway
        .iter()
        .zip(&haproxy)
        .map(|(s, h)| s.rps / h.rps)
        .collect();
    let p99_ratios: Vec<f64> = slipway
        .iter()
        .zip(&haproxy)
        .map(|(s, h)| s.p99_ms / h.p99_ms)
        .collect();
    let (slipway, haproxy) = (median(slipway), median(haproxy));

    println!(
        "proxy benchmark: wrk -t2 -c{connections} -d{seconds}s x {rounds} rounds (medians), \
         2 hyper backends, round robin, proxies on {threads} threads ({mode})"
    );
    println!("load average before: {before}; after: {}", loadavg());
    for (name, r) in [("slipway", &slipway), ("haproxy", &haproxy)] {
        println!(
            "{name:>8}: {:>10.0} req/s   p99 {:>7.2} ms   cpu {:>5.1} us/request   errors {}",
            r.rps, r.p99_ms, r.cpu_us, r.errors
        );
    }
    let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let above = ratios.iter().filter(|r| **r >= 1.0).count();
    let spread = sorted(ratios.clone());
    println!(
        "   ratio: throughput {:.2}x HAProxy (median of per-round ratios; goal >= 1.0; \
         {above} of {rounds} rounds >= 1.0, range {:.2}-{:.2}; per round {})",
        mid(ratios),
        spread[0],
        spread[spread.len() - 1],
        per_round.join(" ")
    );
    println!(
        "          p99 {:.2}x HAProxy (median of per-round ratios, lower is better); \
         medians of each proxy's rounds: {:.2}x throughput, {:.2}x cpu per request",
        mid(p99_ratios),
        slipway.rps / haproxy.rps,
        slipway.cpu_us / haproxy.cpu_us
    );
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// The median (upper middle for an even count).
fn mid(v: Vec<f64>) -> f64 {
    let v = sorted(v);
    v[v.len() / 2]
}

/// Median throughput, p99 and CPU per request of the rounds; errors summed.
fn median(runs: Vec<Run>) -> Run {
    Run {
        rps: mid(runs.iter().map(|r| r.rps).collect()),
        p99_ms: mid(runs.iter().map(|r| r.p99_ms).collect()),
        errors: runs.iter().map(|r| r.errors).sum(),
        cpu_us: mid(runs.iter().map(|r| r.cpu_us).collect()),
    }
}
