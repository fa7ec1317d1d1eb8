//! Test harness: real `slipway server` processes in temp folders, a real `git`
//! client, and plain HTTP against them. Nothing of Slipway is mocked.
#![allow(dead_code)]

/// `slipway agent` processes for the cluster tests and the failover bench.
pub mod cluster;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server on a free loopback port with its own data directory.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// Base URL of the server's app proxy (`http://127.0.0.1:PORT`).
    pub proxy_url: String,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts a server with extra `SLIPWAY_*` settings in its environment.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = TestServer {
            dir,
            url: String::new(),
            proxy_url: String::new(),
            child: None,
            env,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        // `SLIPWAY_LISTEN` in the extra env chooses the address (e.g. the
        // host side of a test's veth pair); loopback otherwise.
        let listen = self
            .env
            .iter()
            .find(|(k, _)| k == "SLIPWAY_LISTEN")
            .map_or("127.0.0.1:0", |(_, v)| v.as_str());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.args(["server", "--listen", listen, "--data-dir"])
            .arg(self.data_dir())
            .env("RUST_LOG", "warn")
            .env("SLIPWAY_PROXY_LISTEN", "127.0.0.1:0")
            // The tests' webhook receivers listen on 127.0.0.1, which the
            // server refuses by default; a test may pass its own list
            // (empty: public addresses only).
            .env("SLIPWAY_WEBHOOK_ALLOW_LIST", "127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(self.log_file());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start slipway server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("slipway proxy listening on ") {
                    let _ = tx.send((true, url.to_owned()));
                } else if let Some(url) = line.strip_prefix("slipway listening on ") {
                    let _ = tx.send((false, url.to_owned()));
                }
            }
        });
        loop {
            let (proxy, url) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("server did not report its address within 30 s");
            if proxy {
                self.proxy_url = url;
            } else {
                self.url = url;
                break;
            }
        }
        self.child = Some(child);
    }

    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log file")
    }

    /// What the server wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the server process and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Kills the server process.
    /// Stops the server the way a service manager does (SIGTERM) and waits
    /// for it to exit; true when it exited on its own within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Creates the first administrator through the setup token; returns its token.
    pub fn setup_admin(&self, username: &str) -> String {
        let code =
            std::fs::read_to_string(self.data_dir().join("setup-token")).expect("setup token file");
        let (status, body) = self.api(
            "POST",
            "/setup",
            None,
            Some(json!({"setup_token": code.trim(), "username": username, "password": "admin-password"})),
        );
        assert_eq!(status, 201, "setup failed: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates an ordinary user (as admin) and logs them in; returns their token.
    pub fn create_user(&self, admin_token: &str, username: &str) -> String {
        let (status, body) = self.api(
            "POST",
            "/users",
            Some(admin_token),
            Some(json!({"username": username, "password": "user-password"})),
        );
        assert_eq!(status, 201, "create user failed: {body}");
        let (status, body) = self.api(
            "POST",
            "/auth/login",
            None,
            Some(json!({"username": username, "password": "user-password"})),
        );
        assert_eq!(status, 201, "login failed: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Sends a JSON API request; returns the status and the decoded body (Null when empty).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.request(
            method.parse().unwrap(),
            format!("{}/api/v1{path}", self.url),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().expect("API request");
        let status = res.status().as_u16();
        let text = res.text().unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// The clone URL of `owner/name`, with `user:token` credentials when given.
    pub fn git_url(&self, owner: &str, name: &str, cred: Option<(&str, &str)>) -> String {
        let base = match cred {
            Some((u, t)) => self.url.replacen("http://", &format!("http://{u}:{t}@"), 1),
            None => self.url.clone(),
        };
        format!("{base}/git/{owner}/{name}.git")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Step `name` of a pipeline as the API shows it (panics, showing the
/// pipeline, when there is none).
pub fn step<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {p}"))
}

/// Asserts an API error body has the documented shape and returns its code.
pub fn error_code(body: &Value) -> String {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error body: {body}"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
    code.to_owned()
}

/// Runs `git` in `dir` with a clean, prompt-free environment.
pub fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run git")
}

/// Runs `git` and panics with its stderr when it fails; returns stdout.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Makes a local repository with `commits` commits on main and a `feature` branch.
pub fn make_repo(dir: &Path, commits: usize) {
    std::fs::create_dir_all(dir).unwrap();
    git_ok(dir, &["init", "-q", "-b", "main"]);
    for i in 0..commits {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("src").join(format!("file{i}.txt")),
            format!("content {i}\n"),
        )
        .unwrap();
        std::fs::write(dir.join("README.md"), format!("revision {i}\n")).unwrap();
        git_ok(dir, &["add", "-A"]);
        git_ok(dir, &["commit", "-q", "-m", &format!("commit {i}")]);
    }
    git_ok(dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("feature.txt"), "feature work\n").unwrap();
    git_ok(dir, &["add", "-A"]);
    git_ok(dir, &["commit", "-q", "-m", "feature"]);
    git_ok(dir, &["checkout", "-q", "main"]);
}

/// A small HTTP app for deploy tests and benches: busybox httpd serving
/// `/www` on port 8080, logging each answer (`-v`).
pub const HTTPD_DOCKERFILE: &str = "FROM slipway/busybox:latest\nCOPY www /www\nCMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// One `GET path` through a server's app proxy with `Host: host`, on a new
/// connection; (status, trimmed body), status 0 when nothing answered.
pub fn proxy_get(proxy_url: &str, host: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = proxy_url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    if s.read_to_string(&mut out).is_err() {
        return (0, out);
    }
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    (status, body)
}

/// The deploy instance label of a replica container (which server runs it).
pub fn deploy_instance_of(container: &str) -> Option<String> {
    let tokio = tokio::runtime::Runtime::new().ok()?;
    tokio.block_on(async {
        let rt = slipway_runtime::Runtime::connect().await.ok()?;
        let state = rt.inspect(container).await.ok()?;
        state.labels.get("io.slipway.deploy-instance").cloned()
    })
}

/// Removes every replica a (stopped) test server's deployer left, by its
/// instance label; twice, as a create in flight when the server died may land late.
pub fn remove_deploy_instance(instance: &str) {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        if let Ok(rt) = slipway_runtime::Runtime::connect().await {
            let filter = slipway_runtime::LabelFilter::managed()
                .with("io.slipway.deploy-instance", instance);
            let _ = rt.cleanup(&filter).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = rt.cleanup(&filter).await;
        }
    });
}

/// Runs the real `slipway` binary against one server, with its own CLI
/// profile file and, when given, a token (otherwise `SLIPWAY_TOKEN` is unset).
pub struct Cli {
    /// The CLI profile file (`SLIPWAY_CLI_CONFIG`).
    pub config: PathBuf,
    /// Server URL (`SLIPWAY_SERVER`).
    pub server: String,
    /// Token (`SLIPWAY_TOKEN`), if any.
    pub token: Option<String>,
}

impl Cli {
    /// Runs `slipway args…` with `stdin`; never opens a browser.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.args(args)
            .env("SLIPWAY_CLI_CONFIG", &self.config)
            .env("SLIPWAY_SERVER", &self.server)
            // `slipway open` must never start a browser here.
            .env_remove("BROWSER")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.token {
            Some(t) => cmd.env("SLIPWAY_TOKEN", t),
            None => cmd.env_remove("SLIPWAY_TOKEN"),
        };
        let mut child = cmd.spawn().expect("run slipway");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "slipway {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `--json` and decodes stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all, None);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs and asserts the documented failure: exit 1, one `error: ` line on
    /// stderr, nothing on stdout. Returns the line.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{args:?}: one error line expected, got {err:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        err.trim_end().to_owned()
    }
}

/// A CGI script for busybox httpd answering `body`'s output as text.
pub fn cgi(body: &str) -> String {
    format!("#!/bin/sh\necho 'Content-Type: text/plain'\necho\n{body}\n")
}

/// Writes an executable file (creating its directory).
pub fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The Dockerfile of the stack tests' busybox "database" (`db/`).
pub const VOTE_DB_DOCKERFILE: &str = "FROM slipway/busybox:latest\nCOPY srv /srv\nRUN chmod +x /srv/cgi-bin/*\nCMD [\"sh\", \"-c\", \"echo db-ready-on-7000 && mkdir -p /data && touch /data/votes && exec httpd -f -p 7000 -h /srv\"]\n";
/// The Dockerfile of the stack tests' web front (`web/`).
pub const VOTE_WEB_DOCKERFILE: &str = "FROM slipway/busybox:latest\nCOPY www /www\nRUN chmod +x /www/cgi-bin/*\nCMD [\"sh\", \"-c\", \"echo web-ready-on-8080 && exec httpd -f -p 8080 -h /www\"]\n";

/// Writes the stack tests' two busybox services into repository `dir`:
/// `db/` (httpd on 7000; CGI `add` appends a vote to `/data/votes` and
/// answers the count, `count` answers it) and `web/` (httpd on 8080;
/// `cgi-bin/NAME` answers db's `cgi-bin/PATH` for each `(NAME, PATH)` of
/// `calls`, through the name `db`).
pub fn write_vote_services(dir: &Path, calls: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("db/srv/cgi-bin")).unwrap();
    std::fs::write(dir.join("db/Dockerfile"), VOTE_DB_DOCKERFILE).unwrap();
    write_exec(
        &dir.join("db/srv/cgi-bin/add"),
        &cgi("echo vote >> /data/votes\nwc -l < /data/votes"),
    );
    write_exec(
        &dir.join("db/srv/cgi-bin/count"),
        &cgi("wc -l < /data/votes"),
    );
    std::fs::create_dir_all(dir.join("web/www/cgi-bin")).unwrap();
    std::fs::write(dir.join("web/Dockerfile"), VOTE_WEB_DOCKERFILE).unwrap();
    for (name, path) in calls {
        write_exec(
            &dir.join(format!("web/www/cgi-bin/{name}")),
            &cgi(&format!("wget -qO- http://db:7000/cgi-bin/{path}")),
        );
    }
}
