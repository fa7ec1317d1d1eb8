//! Prometheus' own tools against `/metrics`: `promtool check metrics` (the
//! linter of the classic text format) and a real `prometheus` server that
//! scrapes a test server. Both come from Debian's `prometheus` package
//! (`scripts/deps.sh --test`). Missing tools fail the test when `CI=true`;
//! elsewhere the caller gets `None` and skips with a notice.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `Accept` header that asks for OpenMetrics.
pub const OPENMETRICS: &str = "application/openmetrics-text";
/// `Content-Type` of the OpenMetrics answer.
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic text format answer.
pub const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path of Prometheus tool `name` on `PATH`; `None` (with a notice)
/// outside CI when it is missing, a panic in CI.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!(
            "`{name}` is missing: install Debian's `prometheus` package (bash scripts/deps.sh --test)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("skipping: {msg}");
    }
    found
}

/// `GET /metrics` of `base_url` with `token` and `accept` (none when
/// `None`); returns the status, the `Content-Type` and the body.
pub fn scrape(base_url: &str, token: &str, accept: Option<&str>) -> (u16, String, String) {
    // reqwest adds `Accept: */*` unless the request sets one; `None` must
    // send no Accept header at all, so it goes out over a raw connection.
    let Some(accept) = accept else {
        return scrape_without_accept(base_url, token);
    };
    let res = reqwest::blocking::Client::new()
        .get(format!("{base_url}/metrics"))
        .bearer_auth(token)
        .header("accept", accept)
        .send()
        .expect("scrape /metrics");
    let status = res.status().as_u16();
    let ctype = content_type(res.headers());
    (status, ctype, res.text().unwrap())
}

fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// HTTP/1.0 by hand: a request with no `Accept` header at all.
fn scrape_without_accept(base_url: &str, token: &str) -> (u16, String, String) {
    use std::io::Read;
    let addr = base_url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the server");
    write!(
        conn,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

/// Runs `promtool check metrics` on `body`; returns its exit code and what
/// it printed (stdout and stderr).
pub fn promtool_check(promtool: &Path, body: &str) -> (i32, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Asserts `promtool check metrics` accepts `body` (classic text format)
/// without a single warning.
pub fn assert_lint_clean(promtool: &Path, body: &str) {
    let (code, out) = promtool_check(promtool, body);
    assert!(
        code == 0 && out.trim().is_empty(),
        "promtool check metrics: exit {code}\n{out}\n--- body ---\n{body}"
    );
}

/// A `prometheus` server on a free loopback port, scraping one target;
/// killed on drop. Its data and config live in a temp dir; it talks to
/// nothing but loopback.
pub struct PrometheusServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl PrometheusServer {
    /// Starts `binary` scraping `target` (`host:port`) every second with
    /// `token` as bearer credentials.
    pub fn start(binary: &Path, target: &str, token: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: slipway\n    metrics_path: /metrics\n\
                 \x20   authorization:\n      type: Bearer\n      credentials_file: {}\n\
                 \x20   static_configs:\n      - targets: [\"{target}\"]\n",
                token_file.display()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.external-url=http://127.0.0.1:{port}/"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        PrometheusServer {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        }
    }

    /// What Prometheus logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/{path}` of Prometheus' HTTP API: its `data`, or `None`
    /// while it is not answering.
    pub fn api(&self, path: &str) -> Option<serde_json::Value> {
        let res = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/{path}", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?;
        let body: serde_json::Value = res.json().ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// Polls `f` until it returns `Some`, for at most `limit`; panics with
    /// `what` and Prometheus' log otherwise.
    pub fn wait_for<T>(&self, what: &str, limit: Duration, f: impl Fn(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "Prometheus: {what} not within {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
