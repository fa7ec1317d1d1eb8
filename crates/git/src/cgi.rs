//! Runs `git http-backend` as a CGI child for one request, streaming both ways.

use crate::{GitError, GitHost, Service};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use slipway_domain::{RefUpdate, RepoName, Username};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Longest CGI header block accepted from http-backend.
const MAX_CGI_HEADER_BYTES: usize = 64 * 1024;
/// How much of git's stderr is kept for the server log.
const MAX_STDERR_BYTES: usize = 16 * 1024;
/// Read size for streaming the response.
const CHUNK: usize = 64 * 1024;

/// Called once a push has been fully accepted, with its ref updates, before the
/// response ends — so a client that sees its push succeed also finds its events.
/// The lines it returns are shown to the pusher (git prints them as `remote:`).
pub type PushCompletion = Box<dyn FnOnce(Vec<RefUpdate>) -> BoxFuture<'static, Vec<String>> + Send>;

/// One authorised smart-HTTP request, as the API layer hands it over.
pub struct GitRequest {
    /// Which endpoint.
    pub service: Service,
    /// Repository owner.
    pub owner: Username,
    /// Repository name (without `.git`).
    pub name: RepoName,
    /// Path after `<name>.git/`, e.g. `info/refs`.
    pub rest: String,
    /// HTTP method.
    pub method: String,
    /// Raw query string.
    pub query: String,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// `Content-Length` header, if any (absent for chunked bodies).
    pub content_length: Option<u64>,
    /// `Content-Encoding` header (git gzips some requests).
    pub content_encoding: Option<String>,
    /// `Git-Protocol` header (protocol v2 negotiation).
    pub git_protocol: Option<String>,
    /// Authenticated user name, if any (shown to hooks as `REMOTE_USER`).
    pub remote_user: Option<String>,
    /// Client address.
    pub remote_addr: String,
    /// The request body, streamed.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    /// Largest body accepted; beyond it the request fails with `BodyTooLarge`.
    pub max_body_bytes: u64,
    /// For pushes: what to do with the accepted ref updates.
    pub on_push: Option<PushCompletion>,
}

/// The CGI answer: status, headers and a streamed body.
pub struct GitResponse {
    /// HTTP status from the CGI `Status:` header (200 when absent).
    pub status: u16,
    /// Every other header http-backend set.
    pub headers: Vec<(String, String)>,
    /// The body, streamed from git's output as it is produced.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
}

impl GitHost {
    /// Serves one smart-HTTP request by running `git http-backend`.
    pub async fn serve(&self, req: GitRequest) -> Result<GitResponse, GitError> {
        if let Some(len) = req.content_length {
            if len > req.max_body_bytes {
                return Err(GitError::BodyTooLarge(req.max_body_bytes));
            }
        }
        let push_log = req
            .service
            .is_push()
            .then(|| self.unique_path(&self.tmp_dir, "push"));
        // Who pushes where, on disk before git may move a ref (journal.rs).
        if let (Some(log), Some(pusher)) = (&push_log, &req.remote_user) {
            let who = crate::journal::who_text(&req.owner, &req.name, pusher);
            crate::journal::write_synced(&beside(log, crate::journal::WHO), &who)
                .await
                .map_err(|e| GitError::Git(format!("cannot journal the push: {e}")))?;
        }
        let mut child = self
            .backend_command(&req, push_log.as_ref())
            .spawn()
            .map_err(|e| {
                GitError::Git(format!(
                    "cannot run {} http-backend: {e}",
                    self.git_bin.display()
                ))
            })?;

        let too_large = Arc::new(AtomicBool::new(false));
        let stdin = child.stdin.take().expect("stdin is piped");
        let pump = tokio::spawn(pump_request_body(
            req.body,
            stdin,
            req.max_body_bytes,
            too_large.clone(),
        ));
        let stderr = tokio::spawn(read_bounded(child.stderr.take().expect("stderr is piped")));
        let mut stdout =
            BufReader::with_capacity(CHUNK, child.stdout.take().expect("stdout is piped"));

        // Both POST services read their whole request before answering, and
        // http-backend sends its headers first; so the body is taken in full
        // before the status is decided, and an oversized push becomes a 413
        // (with git killed before it could update a ref) rather than a 200.
        let _ = pump.await;
        let head = read_cgi_head(&mut stdout).await;
        if too_large.load(Ordering::SeqCst) {
            let _ = child.kill().await;
            remove_quietly(push_log).await;
            return Err(GitError::BodyTooLarge(req.max_body_bytes));
        }
        let (status, headers) = match head {
            Ok(head) => head,
            Err(e) => {
                let _ = child.kill().await;
                let detail = stderr.await.unwrap_or_default();
                remove_quietly(push_log).await;
                return Err(GitError::Git(format!("{e}; git said: {}", detail.trim())));
            }
        };

        let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        tokio::spawn(finish_response(
            stdout,
            child,
            stderr,
            tx,
            push_log,
            req.on_push,
        ));
        let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(GitResponse {
            status,
            headers,
            body: Box::pin(body),
        })
    }

    fn backend_command(&self, req: &GitRequest, push_log: Option<&PathBuf>) -> Command {
        let mut cmd = Command::new(&self.git_bin);
        cmd.arg("http-backend")
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home_dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_PROJECT_ROOT", &self.repos_dir)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("REQUEST_METHOD", &req.method)
            .env("QUERY_STRING", &req.query)
            .env(
                "PATH_INFO",
                format!("/{}/{}.git/{}", req.owner, req.name, req.rest),
            )
            .env("REMOTE_ADDR", &req.remote_addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Authorisation was done by the server, so pushing is enabled here for
        // every request that reaches git; hooks come from Slipway's folder only.
        let config = [
            ("http.receivepack", "true".to_owned()),
            ("http.uploadpack", "true".to_owned()),
            ("uploadpack.allowFilter", "true".to_owned()),
            ("core.hooksPath", self.hooks_dir.display().to_string()),
            ("safe.directory", "*".to_owned()),
        ];
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key);
            cmd.env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        let optional = [
            ("CONTENT_TYPE", req.content_type.clone()),
            ("CONTENT_LENGTH", req.content_length.map(|n| n.to_string())),
            ("HTTP_CONTENT_ENCODING", req.content_encoding.clone()),
            ("GIT_PROTOCOL", req.git_protocol.clone()),
            ("REMOTE_USER", req.remote_user.clone()),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                cmd.env(key, v);
            }
        }
        if let Some(log) = push_log {
            cmd.env("SLIPWAY_PUSH_LOG", log);
        }
        cmd
    }
}

/// How much of an oversized body is still read (and thrown away) after the
/// limit is hit, so the client finishes sending and can read the 413 instead
/// of failing with a broken pipe. Beyond this the connection is simply cut.
const OVERSIZE_DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// Copies the request body into git's stdin, stopping (and flagging) once it
/// exceeds `max` bytes; git then sees a truncated pack, so no ref changes.
async fn pump_request_body(
    mut body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    mut stdin: ChildStdin,
    max: u64,
    too_large: Arc<AtomicBool>,
) {
    let mut seen: u64 = 0;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { return };
        seen += chunk.len() as u64;
        if seen > max {
            too_large.store(true, Ordering::SeqCst);
            drop(stdin);
            drain(body, OVERSIZE_DRAIN_BYTES).await;
            return;
        }
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Reads and discards up to `limit` more bytes of a body.
async fn drain(mut body: BoxStream<'static, Result<Bytes, std::io::Error>>, limit: u64) {
    let mut dropped: u64 = 0;
    while let Some(Ok(chunk)) = body.next().await {
        dropped += chunk.len() as u64;
        if dropped > limit {
            return;
        }
    }
}

/// Reads the CGI header block: `Status:` becomes the status, the rest headers.
async fn read_cgi_head<R: AsyncRead + Unpin>(
    out: &mut BufReader<R>,
) -> Result<(u16, Vec<(String, String)>), String> {
    let mut status = 200;
    let mut headers = Vec::new();
    let mut total = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).await.map_err(|e| e.to_string())?;
        total += n;
        if n == 0 {
            return Err("git http-backend ended before its headers".into());
        }
        if total > MAX_CGI_HEADER_BYTES {
            return Err("git http-backend sent oversized headers".into());
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Ok((status, headers));
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!("bad CGI header line {text:?}"));
        };
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| format!("bad CGI status {value:?}"))?;
        } else {
            headers.push((name.to_owned(), value));
        }
    }
}

/// Streams git's output to the client while the push's hook hands over its
/// ref updates, then waits for git, and only then ends the response.
async fn finish_response<R: AsyncRead + Unpin>(
    mut stdout: BufReader<R>,
    mut child: Child,
    stderr: tokio::task::JoinHandle<String>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    push_log: Option<PathBuf>,
    on_push: Option<PushCompletion>,
) {
    let (git_done, git_done_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = push_log
        .clone()
        .map(|log| tokio::spawn(answer_push_hook(log, on_push, git_done_rx)));
    let mut client_gone = false;
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK);
        match stdout.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) if client_gone => {}
            Ok(_) => client_gone = tx.send(Ok(buf.freeze())).await.is_err(),
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                break;
            }
        }
    }
    let exit = child.wait().await;
    let detail = stderr.await.unwrap_or_default();
    match exit {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!(status = %s, stderr = %detail.trim(), "git http-backend failed"),
        Err(e) => tracing::warn!(error = %e, "could not wait for git http-backend"),
    }
    let _ = git_done.send(());
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    if let Some(log) = push_log {
        remove_push_files(&log).await;
    }
}

/// The file `<log><suffix>`: the hook's files sit beside its push log.
pub(crate) fn beside(log: &std::path::Path, suffix: &str) -> PathBuf {
    let mut path = log.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// How often the server looks for the push hook's hand-over.
const HOOK_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits for the post-receive hook to write the push's ref updates (or for
/// git to end without running it), reports them, and writes the answer the
/// hook prints to the pusher.
async fn answer_push_hook(
    log: PathBuf,
    on_push: Option<PushCompletion>,
    mut git_done: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let ended = !matches!(
            git_done.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        );
        if let Ok(text) = tokio::fs::read_to_string(&log).await {
            let updates: Vec<RefUpdate> = text
                .lines()
                .filter_map(RefUpdate::parse_hook_line)
                .collect();
            let lines = match (on_push, updates.is_empty()) {
                (Some(report), false) => report(updates).await,
                _ => Vec::new(),
            };
            let mut reply = String::new();
            for line in lines {
                reply.push_str(&line);
                reply.push('\n');
            }
            let (part, done) = (beside(&log, ".reply.part"), beside(&log, ".reply"));
            if tokio::fs::write(&part, reply).await.is_ok() {
                let _ = tokio::fs::rename(&part, &done).await;
            }
            return;
        }
        if ended {
            return;
        }
        tokio::time::sleep(HOOK_POLL).await;
    }
}

async fn read_bounded<R: AsyncRead + Unpin>(mut r: R) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_STDERR_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

async fn remove_quietly(path: Option<PathBuf>) {
    if let Some(log) = path {
        remove_push_files(&log).await;
    }
}

/// Removes a push's hand-over files; the journal goes last: the push is
/// recorded, or git ended without applying it.
async fn remove_push_files(log: &std::path::Path) {
    for suffix in [
        "",
        ".part",
        ".reply",
        ".reply.part",
        ".wal.part",
        crate::journal::WAL,
        crate::journal::WHO,
    ] {
        let _ = tokio::fs::remove_file(beside(log, suffix)).await;
    }
}
