//! Real etcd clusters on loopback for tests and benchmarks: N members with
//! free ports and temporary data directories, killed when dropped.
//!
//! Needs the `etcd` binary (Debian's `etcd-server`, installed by
//! `scripts/deps.sh`); without it, starting panics with that advice.
//!
//! Also the pieces the cluster tests and the failover bench share around
//! replicas in the local Docker Engine: see [`replicas`].

pub mod replicas;

use crate::etcd::StoreOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member process.
pub struct EtcdMember {
    /// Member name (`m0`, `m1`…).
    pub name: String,
    /// Its client URL, e.g. `http://127.0.0.1:40123`.
    pub client_url: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A cluster of etcd members on 127.0.0.1.
pub struct EtcdCluster {
    /// The members, in start order.
    pub members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
}

/// The etcd binary: `$ETCD_BIN`, else `etcd` on the PATH.
fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcd is not installed (no `etcd` on the PATH, e.g. /usr/bin/etcd): \
                 run `bash scripts/deps.sh` (Debian package etcd-server)"
            )
        })
}

/// `n` distinct free ports on 127.0.0.1 (held together while chosen).
fn free_ports(n: usize) -> Vec<u16> {
    free_ports_on("127.0.0.1", n)
}

/// `n` distinct free ports on `ip` (held together while chosen).
fn free_ports_on(ip: &str, n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((ip, 0)).expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl EtcdCluster {
    /// Starts `n` members and waits (at most 30 s) until each is healthy.
    pub fn start(n: usize) -> Self {
        Self::start_on(n, &[])
    }

    /// Like [`EtcdCluster::start`], but the members also serve clients on
    /// `hosts` (same port as on 127.0.0.1), e.g. the host side of test
    /// network namespaces' veth pairs; see [`EtcdCluster::endpoints_at`].
    pub fn start_on(n: usize, hosts: &[std::net::Ipv4Addr]) -> Self {
        assert!(n >= 1);
        let bin = etcd_bin();
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let ports = if hosts.is_empty() {
            free_ports(2 * n)
        } else {
            // Free on every address, not only on loopback.
            free_ports_on("0.0.0.0", 2 * n)
        };
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..n).map(|i| format!("m{i}={}", peer(i))).collect();
        let initial = initial.join(",");
        let token = format!("slipway-test-{}", std::process::id());
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{i}");
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let client_urls = std::iter::once(client_url.clone())
                .chain(hosts.iter().map(|h| format!("http://{h}:{}", ports[2 * i])))
                .collect::<Vec<_>>()
                .join(",");
            let log = dir.path().join(format!("{name}.log"));
            let log_file = std::fs::File::create(&log).expect("etcd log file");
            let child = Command::new(&bin)
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args(["--listen-client-urls", &client_urls])
                .args(["--advertise-client-urls", &client_urls])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                // Fast failure detection among members on one machine.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            members.push(EtcdMember {
                name,
                client_url,
                child: Some(child),
                log,
            });
        }
        let cluster = Self { members, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in &cluster.members {
            while !healthy(&m.client_url) {
                if Instant::now() > deadline {
                    panic!(
                        "etcd member {} did not become healthy within 30 s; its log:\n{}",
                        m.name,
                        std::fs::read_to_string(&m.log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// Client URLs of the members still running.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect()
    }

    /// Client URLs of the running members on `host` (one given to
    /// [`EtcdCluster::start_on`]).
    pub fn endpoints_at(&self, host: std::net::Ipv4Addr) -> Vec<String> {
        self.endpoints()
            .iter()
            .map(|u| {
                let port = u.rsplit(':').next().unwrap_or_default();
                format!("http://{host}:{port}")
            })
            .collect()
    }

    /// Store options for all members with `prefix` and a lease TTL.
    pub fn store_options(&self, prefix: &str, lease_ttl: Duration) -> StoreOptions {
        let mut o = StoreOptions::new(self.endpoints());
        o.prefix = prefix.into();
        o.lease_ttl = lease_ttl;
        o
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the members keep their data and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `GET /health` answers `"health":"true"`.
fn healthy(client_url: &str) -> bool {
    let addr = client_url.trim_start_matches("http://");
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}
