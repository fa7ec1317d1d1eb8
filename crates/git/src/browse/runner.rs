//! Runs read-only git commands on a bare repository with a clean
//! environment, a time limit and a bound on how much output is kept.

use super::BrowseError;
use crate::GitHost;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Longest a browsing git command may run.
const TIME_LIMIT: Duration = Duration::from_secs(30);
/// How much of git's stderr is kept for error messages.
const MAX_STDERR: usize = 4096;

/// What a finished (or cut short) git command produced.
pub(crate) struct Run {
    /// Standard output, at most the requested number of bytes.
    pub stdout: Vec<u8>,
    /// True when git wrote more than was kept (it was then stopped).
    pub truncated: bool,
    /// True when git exited with status 0.
    pub success: bool,
    /// The start of git's stderr.
    pub stderr: String,
}

impl GitHost {
    /// `git --git-dir=<repo>` with only the environment it needs: no system or
    /// user configuration, literal pathspecs, no replace objects, no prompts.
    pub(crate) fn read_command(&self, repo: &Path) -> Command {
        let mut cmd = Command::new(&self.git_bin);
        cmd.arg("--git-dir")
            .arg(repo)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home_dir)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "safe.directory")
            .env("GIT_CONFIG_VALUE_0", "*")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `git <args>` on `repo`, feeding `stdin`, keeping at most
    /// `max_out` bytes of output (git is stopped beyond that).
    pub(crate) async fn run_read(
        &self,
        repo: &Path,
        args: &[&str],
        stdin: Option<&[u8]>,
        max_out: usize,
    ) -> Result<Run, BrowseError> {
        let mut cmd = self.read_command(repo);
        cmd.args(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| BrowseError::Git(format!("cannot run {}: {e}", self.git_bin.display())))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let input = input.to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
                let _ = pipe.shutdown().await;
            });
        }
        let stderr = tokio::spawn(read_keeping_start(
            child.stderr.take().expect("stderr is piped"),
            MAX_STDERR,
        ));
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let work = async {
            let (out, truncated) = read_up_to(&mut stdout, max_out).await;
            if truncated {
                let _ = child.start_kill();
            }
            let status = child.wait().await;
            (out, truncated, status)
        };
        let (out, truncated, status) = tokio::time::timeout(TIME_LIMIT, work)
            .await
            .map_err(|_| BrowseError::Git(format!("git {} took too long", args[0])))?;
        let status = status.map_err(|e| BrowseError::Git(format!("waiting for git: {e}")))?;
        let err = stderr.await.unwrap_or_default();
        Ok(Run {
            stdout: out,
            truncated,
            success: status.success() && !truncated,
            stderr: String::from_utf8_lossy(&err).trim().to_owned(),
        })
    }

    /// Like [`run_read`](Self::run_read) but a failure is an error.
    pub(crate) async fn run_ok(
        &self,
        repo: &Path,
        args: &[&str],
        max_out: usize,
    ) -> Result<Run, BrowseError> {
        let run = self.run_read(repo, args, None, max_out).await?;
        if !run.success && !run.truncated {
            return Err(BrowseError::Git(format!("git {}: {}", args[0], run.stderr)));
        }
        Ok(run)
    }
}

/// Reads up to `max` bytes; the flag says more was there.
async fn read_up_to<R: AsyncRead + Unpin>(mut r: R, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, false),
            Ok(n) => {
                let room = max - kept.len();
                if n > room {
                    kept.extend_from_slice(&buf[..room]);
                    return (kept, true);
                }
                kept.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Reads to the end, keeping the first `max` bytes (so git never blocks on a
/// full pipe).
async fn read_keeping_start<R: AsyncRead + Unpin>(mut r: R, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}
