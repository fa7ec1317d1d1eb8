//! The parts of the app commands that run for a while: waiting for replicas
//! with a spinner, streaming logs until Ctrl-C, and opening a browser.

use crate::client::Client;
use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often `--wait` looks at the app.
const POLL: Duration = Duration::from_millis(500);

/// Whether `app` has settled: every wanted replica healthy, status running,
/// and (when given) the wanted release is the one that should run.
pub fn settled(app: &Value, release: Option<i64>) -> bool {
    let replicas = app["replicas"].as_i64();
    let ready = app["ready"].as_i64();
    replicas.is_some()
        && ready == replicas
        && (app["status"] == "running" || (replicas == Some(0) && app["status"] != "failed"))
        && release.is_none_or(|r| app["release"].as_i64() == Some(r))
}

/// Polls `GET /apps/{app}` until it [`settled`], showing a spinner, and
/// returns the last view. Fails when the app's status turns `failed` or the
/// timeout passes, saying how far it got.
pub async fn wait_ready(
    client: &Client,
    app: &str,
    release: Option<i64>,
    timeout: Duration,
    quiet: bool,
) -> anyhow::Result<Value> {
    let pb = spinner(quiet);
    let start = Instant::now();
    let result = loop {
        let view: Value = match client.get(&format!("/apps/{app}")).await {
            Ok(v) => v,
            Err(e) => break Err(e),
        };
        let progress = format!(
            "{app}: {}/{} replicas ready, {}",
            view["ready"].as_i64().unwrap_or(0),
            view["replicas"].as_i64().unwrap_or(0),
            view["status"].as_str().unwrap_or("unknown"),
        );
        pb.set_message(progress.clone());
        if settled(&view, release) {
            break Ok(view);
        }
        if view["status"] == "failed" {
            break Err(anyhow::anyhow!(
                "{progress}: the rollout failed (see `slipway releases {app}` and `slipway logs {app}`)"
            ));
        }
        if start.elapsed() >= timeout {
            break Err(anyhow::anyhow!(
                "{progress} after {} s: still not ready (see `slipway ps {app}`)",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    pb.finish_and_clear();
    result
}

/// Polls a pipeline (`path` = its API path) until it has ended, with a
/// spinner, and returns its last view. Its step logs were already followed,
/// so this is short unless the pipeline does work outside its steps.
pub async fn wait_pipeline(client: &Client, path: &str, quiet: bool) -> anyhow::Result<Value> {
    let pb = spinner(quiet);
    let result = loop {
        let p: Value = match client.get(path).await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let status = p["status"].as_str().unwrap_or("unknown").to_owned();
        if status != "pending" && status != "running" {
            break Ok(p);
        }
        pb.set_message(format!("pipeline #{}: {status}", p["number"]));
        tokio::time::sleep(POLL).await;
    };
    pb.finish_and_clear();
    result
}

/// A spinner on stderr (hidden when `quiet`, e.g. for `--json`).
fn spinner(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// One log object as people read it: `time replica | line` (UTC), stderr marked.
pub fn render_log(v: &Value) -> String {
    let replica = v["replica"].as_str().unwrap_or("-");
    // A stack's lines name their service: `db/ab12cd`.
    let replica = match v["service"].as_str() {
        Some(service) => format!("{service}/{replica}"),
        None => replica.to_owned(),
    };
    let line = v["line"].as_str().unwrap_or_default();
    let time = v["ts"]
        .as_str()
        .map(|t| format!("{} ", t.replacen('T', " ", 1)))
        .unwrap_or_default();
    if v["stream"] == "stderr" {
        format!("{time}{replica} | [stderr] {line}")
    } else {
        format!("{time}{replica} | {line}")
    }
}

/// Streams `GET /apps/{app}/logs` (NDJSON) to stdout until the server ends
/// it, Ctrl-C is pressed, or stdout goes away (`| head`); all three are a
/// clean end. `json` passes each object through as one line.
pub async fn stream_logs(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let res = client.get_raw(path).await?;
    let mut body = res.bytes_stream();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            chunk = body.next() => match chunk {
                None => break,
                Some(chunk) => {
                    buf.extend_from_slice(&chunk.context("reading the log stream")?);
                    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                    let lines: Vec<u8> = buf.drain(..complete).collect();
                    if !print_lines(&lines, json)? {
                        return Ok(());
                    }
                }
            },
        }
    }
    print_lines(&buf, json)?;
    Ok(())
}

/// Prints complete NDJSON lines; false when stdout is closed.
fn print_lines(bytes: &[u8], json: bool) -> anyhow::Result<bool> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = std::io::stdout().lock();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let shown = if json {
            line.to_owned()
        } else {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => render_log(&v),
                Err(_) => line.to_owned(),
            }
        };
        if let Err(e) = writeln!(out, "{shown}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(false);
            }
            return Err(e.into());
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        other => other.map(|_| true).map_err(Into::into),
    }
}

/// The program that would open a URL here: `$BROWSER` (first entry, `%s`
/// replaced by the URL), else `xdg-open` when a display exists; else none.
pub fn browser_command(url: &str) -> Option<Vec<String>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(b) = env("BROWSER") {
        let first = b.split(':').next().unwrap_or_default();
        let mut words: Vec<String> = first.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() {
            return None;
        }
        if words.iter().any(|w| w.contains("%s")) {
            for w in &mut words {
                *w = w.replace("%s", url);
            }
        } else {
            words.push(url.to_owned());
        }
        return Some(words);
    }
    let display = env("DISPLAY").is_some() || env("WAYLAND_DISPLAY").is_some();
    let xdg_open = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("xdg-open").is_file())
    });
    (display && xdg_open).then(|| vec!["xdg-open".to_owned(), url.to_owned()])
}

/// Runs the browser command; a failure is a warning (the URL was printed).
pub fn open_browser(cmd: &[String]) {
    let Some((program, args)) = cmd.split_first() else {
        return;
    };
    match std::process::Command::new(program).args(args).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: {program} exited with {s}"),
        Err(e) => eprintln!("warning: cannot run {program}: {e}"),
    }
}

/// Fails when `value` is not a JSON object with a `number` (a release).
pub fn release_number(value: &Value) -> anyhow::Result<i64> {
    match value["number"].as_i64() {
        Some(n) => Ok(n),
        None => bail!("unexpected answer from the server: no release number in {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settled_needs_all_ready_and_running() {
        let app = json!({"replicas": 3, "ready": 3, "status": "running", "release": 4});
        assert!(settled(&app, None));
        assert!(settled(&app, Some(4)));
        assert!(!settled(&app, Some(5)));
        assert!(!settled(
            &json!({"replicas": 3, "ready": 2, "status": "running"}),
            None
        ));
        assert!(!settled(
            &json!({"replicas": 3, "ready": 3, "status": "deploying"}),
            None
        ));
        assert!(settled(
            &json!({"replicas": 0, "ready": 0, "status": "idle"}),
            None
        ));
    }

    #[test]
    fn log_lines() {
        let out = json!({"replica": "ab12cd", "stream": "stdout", "line": "hello"});
        let err = json!({"replica": "ab12cd", "stream": "stderr", "line": "oops"});
        assert_eq!(render_log(&out), "ab12cd | hello");
        assert_eq!(render_log(&err), "ab12cd | [stderr] oops");
        let db = json!({"replica": "ab12cd", "service": "db", "stream": "stdout", "line": "up"});
        assert_eq!(render_log(&db), "db/ab12cd | up");
        let timed = json!({"ts": "2025-01-02T03:04:05.678Z", "replica": "ab12cd",
                           "stream": "stderr", "line": "GET /"});
        assert_eq!(
            render_log(&timed),
            "2025-01-02 03:04:05.678Z ab12cd | [stderr] GET /"
        );
    }
}
