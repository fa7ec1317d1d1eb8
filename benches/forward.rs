//! Service-to-service calls through a node's forwarder (`slipway_cluster::
//! forward`): what a stack's `db:5432` costs compared with a direct
//! connection to the replica, and with HAProxy in TCP mode doing the same
//! job (round robin over the same two backends) in the same run.
//!
//! Two loopback backends answer a 64-byte request with a 64-byte reply.
//! Each mode runs `BENCH_CALLS` calls (default 4,000; a new connection per
//! call, as short service calls make) from `BENCH_CONCURRENCY` (default 8)
//! clients, then streams `BENCH_STREAM_MB` (default 64) MiB through one
//! connection. Prints calls/s, p50/p99 call latency, MiB/s and the ratios
//! against HAProxy (goal: the forwarder within 1.2× of HAProxy's latency
//! and throughput). Needs `haproxy` (Debian's package; `scripts/bench.sh
//! forward` installs it); without it the HAProxy columns are skipped with a
//! notice. Traffic stays on 127.0.0.1.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The allocator the `slipway` binary ships with (see src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MESSAGE: usize = 64;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A backend: answers each 64-byte request with 64 bytes; a connection
/// that sends more is drained and closed (the streaming part).
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = 0usize;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            seen += n;
                            if seen == MESSAGE {
                                let _ = s.write_all(&[b'r'; MESSAGE]).await;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// One call: connect, send 64 bytes, read 64 back, close.
async fn call(to: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    s.write_all(&[b'q'; MESSAGE])
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; MESSAGE];
    s.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
    Ok(start.elapsed())
}

struct Result_ {
    calls_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    errors: usize,
    mib_per_s: f64,
}

async fn measure(to: SocketAddr, calls: usize, concurrency: usize, stream_mb: usize) -> Result_ {
    let started = Instant::now();
    let per_client = calls / concurrency;
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(per_client);
                let mut errors = 0;
                for _ in 0..per_client {
                    match call(to).await {
                        Ok(d) => took.push(d),
                        Err(_) => errors += 1,
                    }
                }
                (took, errors)
            })
        })
        .collect();
    let mut took = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (t, e) = c.await.unwrap();
        took.extend(t);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    took.sort();
    let pct = |p: f64| {
        took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    // Streaming: one connection, `stream_mb` MiB one way.
    let chunk = vec![b's'; 256 * 1024];
    let mut s = TcpStream::connect(to).await.unwrap();
    let start = Instant::now();
    for _ in 0..(stream_mb * 4) {
        s.write_all(&chunk).await.unwrap();
    }
    s.shutdown().await.unwrap();
    let mut sink = [0u8; 16];
    let _ = s.read(&mut sink).await;
    let secs = start.elapsed().as_secs_f64();
    Result_ {
        calls_per_s: took.len() as f64 / wall,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        errors,
        mib_per_s: stream_mb as f64 / secs,
    }
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_bin() -> Option<&'static str> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// HAProxy in TCP mode, round robin over `backends`, one thread.
fn haproxy(bin: &str, dir: &std::path::Path, port: u16, backends: &[SocketAddr]) -> Reaped {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server s{i} {a}\n"))
        .collect();
    let cfg = format!(
        "global\n    maxconn 4096\n    nbthread 1\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n    balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Reaped(
        Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("haproxy did not listen on {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn print(name: &str, r: &Result_) {
    println!(
        "{name:<22} {:>10.0} calls/s   p50 {:>7.0} µs   p99 {:>7.0} µs   {:>7.0} MiB/s   errors {}",
        r.calls_per_s, r.p50_us, r.p99_us, r.mib_per_s, r.errors
    );
}

fn main() {
    let calls = env_num("BENCH_CALLS", 4000) as usize;
    let concurrency = env_num("BENCH_CONCURRENCY", 8).max(1) as usize;
    let stream_mb = env_num("BENCH_STREAM_MB", 64) as usize;
    // Two threads, like a 2-core node's agent.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backends = vec![backend().await, backend().await];
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forwarder = listener.local_addr().unwrap();
        let _relay = slipway_cluster::forward::serve(listener, backends.clone());
        println!(
            "forwarder bench: {calls} calls from {concurrency} clients (a connection each), then {stream_mb} MiB on one connection"
        );
        let direct = measure(backends[0], calls, concurrency, stream_mb).await;
        print("direct", &direct);
        let fwd = measure(forwarder, calls, concurrency, stream_mb).await;
        print("slipway forwarder", &fwd);
        assert_eq!(fwd.errors, 0, "the forwarder dropped calls");
        let dir = tempfile::tempdir().unwrap();
        match haproxy_bin() {
            Some(bin) => {
                let port = free_port();
                let _h = haproxy(bin, dir.path(), port, &backends);
                let h = measure(SocketAddr::from(([127, 0, 0, 1], port)), calls, concurrency, stream_mb).await;
                print("haproxy (mode tcp)", &h);
                println!(
                    "forwarder / haproxy: calls/s {:.2}×, p99 {:.2}×, MiB/s {:.2}×",
                    fwd.calls_per_s / h.calls_per_s,
                    fwd.p99_us / h.p99_us,
                    fwd.mib_per_s / h.mib_per_s
                );
            }
            None => println!("haproxy is not installed: no peer ratio (scripts/bench.sh forward installs it)"),
        }
        println!(
            "forwarder / direct: calls/s {:.2}×, p99 {:.2}×",
            fwd.calls_per_s / direct.calls_per_s,
            fwd.p99_us / direct.p99_us
        );
    });
}
