//! Real `slipway agent` processes for the cluster tests and the failover
//! bench: started with a join token, ready once they print their node id
//! and epoch, killed with SIGKILL when dropped. Needs only the slipway
//! binary and std.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `slipway agent` process. Its stdout lines, and its stderr lines
/// prefixed `stderr: `, can be waited for; stderr also goes to
/// `<data dir>/agent.log`.
pub struct AgentProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The node id it registered under.
    pub node_id: String,
    /// The epoch of its latest registration.
    pub epoch: u64,
    log: PathBuf,
}

impl AgentProc {
    /// `slipway agent --join server --token token` with 2 CPUs, 2 GiB,
    /// `--data-dir dir` and `extra` arguments; waits (30 s) until ready.
    pub fn start(server: &str, token: &str, dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_slipway")),
            "warn",
            server,
            token,
            dir,
            extra,
        )
    }

    /// Like [`AgentProc::start`], inside network namespace `netns`
    /// (`ip netns exec`), logging at info level.
    pub fn start_in_netns(
        netns: &str,
        server: &str,
        token: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_slipway")]);
        Self::spawn(cmd, "info", server, token, dir, extra)
    }

    fn spawn(
        mut cmd: Command,
        rust_log: &str,
        server: &str,
        token: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Self {
        let log = dir.join("agent.log");
        let mut log_file = std::fs::File::create(&log).expect("agent log");
        let mut child = cmd
            .args(["agent", "--join", server, "--token", token])
            .args(extra)
            .args(["--cpus", "2", "--memory-mb", "2048", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", rust_log)
            .env_remove("SLIPWAY_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slipway agent");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                let _ = tx2.send(format!("stderr: {line}"));
            }
        });
        let mut agent = AgentProc {
            child,
            lines,
            seen: Vec::new(),
            node_id: String::new(),
            epoch: 0,
            log,
        };
        let line = agent.wait_line(Duration::from_secs(30), |l| l.contains(" ready (epoch "));
        agent.note_ready(&line);
        agent
    }

    /// "slipway agent: node ID ready (epoch N, …)" → id and epoch.
    pub fn note_ready(&mut self, line: &str) {
        self.node_id = line.split_whitespace().nth(3).unwrap().to_owned();
        self.epoch = line
            .split("(epoch ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
    }

    /// The next line for which `f` holds, within `limit`; panics with the
    /// lines seen and the log's tail otherwise.
    pub fn wait_line(&mut self, limit: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "agent: no expected line within {limit:?}; saw {:#?}\nlog:\n{}",
                    self.seen,
                    self.log_tail()
                ),
            }
        }
    }

    /// The last 40 lines of its stderr log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}
