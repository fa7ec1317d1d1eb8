//! Git over HTTP: clone and push of a generated repository (≈50 MB in 5,000
//! files) through Slipway, and through the reference setup — `git
//! http-backend` behind nginx + fcgiwrap — in the same run. Prints the times
//! and Slipway's ratio (lower is better; the goal is ≤ 1.2×).
//!
//! Run with `scripts/bench.sh git` (installs nginx and fcgiwrap) or
//! `cargo bench --bench git_http`. `BENCH_FILES` and `BENCH_FILE_BYTES` change
//! the repository's size; `BENCH_ROUNDS` the repetitions (median is printed).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository of `files` files of `size` pseudo-random (incompressible) bytes.
fn generate_repo(dir: &Path, files: usize, size: usize) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for i in 0..files {
        let sub = dir.join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(sub.join(format!("f{i}.bin")), data).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "generated"]);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Target {
    name: &'static str,
    /// `(push URL, clone URL)` for round `i` (a fresh empty repository each round).
    urls: Box<dyn Fn(usize) -> (String, String)>,
    /// Prepares the empty repository of round `i`.
    prepare: Box<dyn Fn(usize)>,
}

/// One push into a fresh repository and one clone of it: `(push, clone)` times.
fn round(t: &Target, src: &Path, work: &Path, i: usize) -> (Duration, Duration) {
    (t.prepare)(i);
    let (push_url, clone_url) = (t.urls)(i);
    let start = Instant::now();
    git(src, &["push", "-q", &push_url, "main"]);
    let push = start.elapsed();
    let dest = work.join(format!("clone-{}-{i}", t.name));
    let start = Instant::now();
    git(work, &["clone", "-q", &clone_url, dest.to_str().unwrap()]);
    let clone = start.elapsed();
    // A clone that skipped its checkout would be unfairly fast: make sure it did not.
    assert!(
        dest.join("d00").join("f0.bin").exists(),
        "{} clone has no work tree",
        t.name
    );
    let _ = std::fs::remove_dir_all(&dest);
    (push, clone)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Slipway {
    _process: Reaped,
    url: String,
    token: String,
}

fn start_slipway(data: &Path) -> Slipway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start slipway");
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("slipway listening on ").map(str::to_owned))
        .expect("slipway address");
    let code = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let res: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{line}/api/v1/setup"))
        .json(&serde_json::json!({"setup_token": code.trim(), "username": "bench", "password": "bench-password"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    Slipway {
        _process: Reaped(child),
        url: line,
        token: res["token"].as_str().unwrap().to_owned(),
    }
}

/// A child process killed when dropped, so a failed run leaves no server behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists())
}

/// nginx + fcgiwrap running `git http-backend` on `root`.
fn start_peer(dir: &Path, root: &Path) -> Option<(Vec<Reaped>, String)> {
    let nginx = which("nginx")?;
    let fcgiwrap = which("fcgiwrap")?;
    let git_backend =
        String::from_utf8(Command::new("git").arg("--exec-path").output().ok()?.stdout).ok()?;
    let backend = Path::new(git_backend.trim()).join("git-http-backend");
    let sock = dir.join("fcgi.sock");
    let fcgi = Command::new(fcgiwrap)
        .args(["-c", "2", "-s"])
        .arg(format!("unix:{}", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let fcgi = Reaped(fcgi);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 2; {user} pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; client_max_body_size 0; client_body_temp_path {d}/body;
  server {{
    listen 127.0.0.1:{port};
    location /git/ {{
      fastcgi_pass unix:{sock};
      fastcgi_buffering off; fastcgi_request_buffering off;
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL 1;
      fastcgi_param REMOTE_USER bench;
      fastcgi_param PATH_INFO $uri;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
    }}
  }}
}}
",
            user = if is_root() { "user root;" } else { "" },
            d = dir.display(),
            sock = sock.display(),
            backend = backend.display(),
            root = root.display(),
        ),
    )
    .ok()?;
    let ng = Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let ng = Reaped(ng);
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((vec![fcgi, ng], format!("http://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn main() {
    let files = env_num("BENCH_FILES", 5000);
    let size = env_num("BENCH_FILE_BYTES", 10_000);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let src = work.join("src");
    eprintln!("generating {files} files of {size} bytes ...");
    generate_repo(&src, files, size);

    let slipway = start_slipway(&work.join("slipway"));
    let client = reqwest::blocking::Client::new();
    let s_url = slipway.url.clone();
    let s_token = slipway.token.clone();
    let slip = Target {
        name: "slipway",
        urls: Box::new(move |i| {
            let authed = s_url.replacen("http://", &format!("http://bench:{s_token}@"), 1);
            (
                format!("{authed}/git/bench/r{i}.git"),
                format!("{authed}/git/bench/r{i}.git"),
            )
        }),
        prepare: {
            let (url, token) = (slipway.url.clone(), slipway.token.clone());
            Box::new(move |i| {
                let res = client
                    .post(format!("{url}/api/v1/repos"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"name": format!("r{i}")}))
                    .send()
                    .unwrap();
                assert_eq!(res.status().as_u16(), 201);
            })
        },
    };
    let peer_root = work.join("peer").join("git");
    std::fs::create_dir_all(&peer_root).unwrap();
    // nginx maps /git/rN.git to <peer>/git/rN.git, where the bare repositories are.
    let peer = start_peer(&work.join("peer"), &work.join("peer"));
    let peer_target = peer.as_ref().map(|(_, url)| {
        let (url, root) = (url.clone(), peer_root.clone());
        Target {
            name: "nginx",
            urls: Box::new(move |i| (format!("{url}/git/r{i}.git"), format!("{url}/git/r{i}.git"))),
            prepare: Box::new(move |i| {
                git(
                    &root,
                    &["init", "-q", "--bare", "-b", "main", &format!("r{i}.git")],
                )
            }),
        }
    });

    // Rounds alternate between the two servers so that a change in machine
    // load during the run affects both alike.
    let (mut s_runs, mut p_runs) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        s_runs.push(round(&slip, &src, work, i));
        if let Some(p) = &peer_target {
            p_runs.push(round(p, &src, work, i));
        }
    }
    drop(slipway);
    drop(peer);
    let medians = |runs: &[(Duration, Duration)]| {
        (
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
        )
    };
    let (s_push, s_clone) = medians(&s_runs);
    let size_mb = (files * size) as f64 / 1e6;
    println!(
        "git over HTTP, {files} files, {size_mb:.1} MB, median of {rounds} rounds, load average {}",
        load_average()
    );
    println!("{:<28} {:>10} {:>10}", "", "push", "clone");
    println!(
        "{:<28} {:>9.2}s {:>9.2}s",
        "slipway",
        s_push.as_secs_f64(),
        s_clone.as_secs_f64()
    );
    if p_runs.is_empty() {
        println!("peer not measured: install it with `apt-get install nginx-light fcgiwrap`");
        return;
    }
    let (p_push, p_clone) = medians(&p_runs);
    println!(
        "{:<28} {:>9.2}s {:>9.2}s",
        "nginx+fcgiwrap http-backend",
        p_push.as_secs_f64(),
        p_clone.as_secs_f64()
    );
    println!(
        "{:<28} {:>9.2}x {:>9.2}x   (goal: <= 1.20x)",
        "ratio slipway/peer",
        s_push.as_secs_f64() / p_push.as_secs_f64(),
        s_clone.as_secs_f64() / p_clone.as_secs_f64()
    );
}
