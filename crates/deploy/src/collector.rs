//! Keeps what every replica prints: one task per replica follows its Docker
//! log stream (with the engine's timestamps) into the app log store, from
//! the container's first line, or — for a replica adopted after a server
//! restart — from the last line stored for it, so nothing is stored twice
//! and nothing printed while the server was down is lost. The stored lines
//! outlive the container.
//!
//! The reconcile loop only spawns these tasks; file writes happen on the
//! blocking pool, so a slow disk never holds up a rollout.

use crate::Deployer;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use slipway_logs::{LogRecord, LogStore, ResumePoint, Stream};
use slipway_runtime::{LogChunk, LogOptions, LogStream, Runtime};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Times a follower reconnects to a still running replica before giving up.
const MAX_RECONNECTS: u32 = 30;
/// Chunks read from Docker before they are written in one batch.
const BATCH: usize = 512;
/// Longest wait for a stopped replica's follower to store its last lines.
const SETTLE_FOLLOWER: Duration = Duration::from_secs(2);
/// Longest catch-up read of a replica that died while nobody followed it.
const SETTLE_CATCH_UP: Duration = Duration::from_secs(5);

/// The followers running now, by container id; each signals when it ends.
#[derive(Default)]
pub(crate) struct Collectors {
    active: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

impl Deployer {
    /// The store of every app's logs.
    pub fn log_store(&self) -> &LogStore {
        &self.inner.logs
    }

    /// Starts following `container`'s output into the store (once per
    /// container); its lines carry `service` (stack apps; "" for none).
    pub(crate) fn collect_logs(&self, app_id: i64, container: &str, release: i64, service: &str) {
        let Some(rt) = self.runtime().cloned() else {
            return;
        };
        let (done_tx, done_rx) = watch::channel(false);
        {
            let mut active = self.inner.collectors.active.lock().unwrap();
            if active.contains_key(container) {
                return;
            }
            active.insert(container.to_string(), done_rx);
        }
        let d = self.clone();
        let container = container.to_string();
        let service = service.to_string();
        tokio::spawn(async move {
            let store = d.log_store().clone();
            collect(&rt, &store, app_id, &container, release, &service, true).await;
            d.inner.collectors.active.lock().unwrap().remove(&container);
            let _ = done_tx.send(true);
        });
    }

    /// Before a stopped replica's container is removed: lets its follower
    /// store the last lines, or, when nobody followed it (it died while the
    /// server was down), reads what it printed since the last stored line.
    /// Bounded: a few seconds at most.
    pub(crate) async fn settle_logs(&self, app_id: i64, container: &str, release: Option<i64>) {
        let follower = self
            .inner
            .collectors
            .active
            .lock()
            .unwrap()
            .get(container)
            .cloned();
        if let Some(mut done) = follower {
            let _ = tokio::time::timeout(SETTLE_FOLLOWER, done.wait_for(|d| *d)).await;
            return;
        }
        let Some(rt) = self.runtime().cloned() else {
            return;
        };
        let Ok(state) = rt.inspect(container).await else {
            return;
        };
        let release = release.unwrap_or_else(|| crate::release_label(&state.labels));
        let service = state
            .labels
            .get(crate::SERVICE_LABEL)
            .cloned()
            .unwrap_or_default();
        let store = self.log_store().clone();
        let catch_up = collect(&rt, &store, app_id, container, release, &service, false);
        if tokio::time::timeout(SETTLE_CATCH_UP, catch_up)
            .await
            .is_err()
        {
            tracing::warn!(
                app_id,
                container,
                "catching up a dead replica's logs took too long"
            );
        }
    }
}

/// Reads `container`'s output (following it while it runs when `follow`)
/// into the store, starting after the last line stored for it.
async fn collect(
    rt: &Runtime,
    store: &LogStore,
    app_id: i64,
    container: &str,
    release: i64,
    service: &str,
    follow: bool,
) {
    let replica: String = container.chars().take(12).collect();
    let point = {
        let (store, replica) = (store.clone(), replica.clone());
        tokio::task::spawn_blocking(move || store.resume_point(app_id, &replica)).await
    };
    let point = match point {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::warn!(app_id, %replica, error = %e, "cannot read the stored logs; following from the start");
            None
        }
        Err(_) => None,
    };
    let mut position = Position::new(point);
    let max_line = store.retention().max_line();
    for _ in 0..=MAX_RECONNECTS {
        let since = position.since_secs();
        let mut chunks = Box::pin(
            rt.logs(
                container,
                LogOptions {
                    follow,
                    timestamps: true,
                    since,
                    ..Default::default()
                },
            )
            .ready_chunks(BATCH),
        );
        let mut lines = Lines::new(max_line);
        let mut broken = false;
        while let Some(batch) = chunks.next().await {
            let mut out = Vec::new();
            for chunk in batch {
                match chunk {
                    Ok(c) => lines.push(c, &mut out),
                    Err(e) => {
                        tracing::debug!(%replica, error = %e, "log stream of a replica broke");
                        broken = true;
                        break;
                    }
                }
            }
            let at = (&replica[..], release, service);
            write(store, app_id, &mut position, at, max_line, out).await;
            if broken {
                break;
            }
        }
        let rest = lines.finish();
        let at = (&replica[..], release, service);
        write(store, app_id, &mut position, at, max_line, rest).await;
        if !follow {
            return;
        }
        // The stream ends when the container stops; if it still runs, the
        // connection broke: pick up where the stored lines end.
        match rt.inspect(container).await {
            Ok(s) if s.running => {
                position.rewind();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => return,
        }
    }
    tracing::warn!(app_id, %replica, "stopped following a replica's logs after repeated failures");
}

/// Stores the new ones of `lines` (on the blocking pool).
async fn write(
    store: &LogStore,
    app_id: i64,
    position: &mut Position,
    (replica, release, service): (&str, i64, &str),
    max_line: usize,
    lines: Vec<(DateTime<Utc>, Stream, String)>,
) {
    let records: Vec<LogRecord> = lines
        .into_iter()
        .map(|(ts, stream, line)| {
            LogRecord::new(ts, replica, release, stream, &line, max_line)
                .with_service(Some(service))
        })
        .filter(|r| position.accept(r))
        .collect();
    if records.is_empty() {
        return;
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.append(app_id, records)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(app_id, replica, error = %e, "cannot store app log lines"),
        Err(e) => tracing::warn!(app_id, replica, error = %e, "storing app log lines failed"),
    }
}

/// Where the stored lines of one replica end, to skip what Docker sends again.
struct Position {
    /// Newest stored millisecond.
    ms: i64,
    /// Lines stored at `ms`.
    stored_at_ms: Vec<(Stream, String)>,
    /// Lines at `ms` still to be skipped once each when Docker repeats them.
    skip: Vec<(Stream, String)>,
}

impl Position {
    fn new(point: Option<ResumePoint>) -> Self {
        match point {
            Some(p) => {
                let stored: Vec<(Stream, String)> =
                    p.at_ms.into_iter().map(|r| (r.stream, r.line)).collect();
                Position {
                    ms: p.ms,
                    skip: stored.clone(),
                    stored_at_ms: stored,
                }
            }
            None => Position {
                ms: i64::MIN,
                stored_at_ms: Vec::new(),
                skip: Vec::new(),
            },
        }
    }

    /// Docker's `since` (whole seconds) covering everything after `ms`.
    fn since_secs(&self) -> Option<i64> {
        (self.ms != i64::MIN).then(|| self.ms.div_euclid(1000))
    }

    /// Whether `r` is new (then it counts as stored).
    fn accept(&mut self, r: &LogRecord) -> bool {
        let ms = r.ms();
        if ms < self.ms {
            return false;
        }
        if ms == self.ms {
            if let Some(i) = self
                .skip
                .iter()
                .position(|(s, l)| *s == r.stream && *l == r.line)
            {
                self.skip.swap_remove(i);
                return false;
            }
        } else {
            self.ms = ms;
            self.stored_at_ms.clear();
            self.skip.clear();
        }
        self.stored_at_ms.push((r.stream, r.line.clone()));
        true
    }

    /// Before reading again from `since_secs`: what is stored gets skipped.
    fn rewind(&mut self) {
        self.skip = self.stored_at_ms.clone();
    }
}

/// Turns Docker's timestamped messages into lines: a message is
/// `<RFC 3339 time> <text>`, and a line longer than Docker's 16 KiB comes as
/// several messages, only the last ending in a newline.
struct Lines {
    max_line: usize,
    /// Per stream (stdout, stderr): the start of an unfinished line.
    pending: [Option<(DateTime<Utc>, String)>; 2],
}

impl Lines {
    fn new(max_line: usize) -> Self {
        Lines {
            max_line,
            pending: [None, None],
        }
    }

    fn push(&mut self, chunk: LogChunk, out: &mut Vec<(DateTime<Utc>, Stream, String)>) {
        let (stream, slot) = match chunk.stream {
            LogStream::Stdout => (Stream::Stdout, 0),
            LogStream::Stderr => (Stream::Stderr, 1),
        };
        let data = String::from_utf8_lossy(&chunk.data);
        let (ts, text) = split_timestamp(&data);
        let mut rest = text;
        loop {
            let (piece, ended, next) = match rest.find('\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, ""),
            };
            let (start, mut line) = self.pending[slot]
                .take()
                .unwrap_or_else(|| (ts, String::new()));
            if line.len() < self.max_line {
                line.push_str(slipway_logs::cut(piece, self.max_line - line.len()));
            }
            if ended {
                out.push((start, stream, line.trim_end_matches('\r').to_string()));
            } else {
                if !piece.is_empty() || !line.is_empty() {
                    self.pending[slot] = Some((start, line));
                }
                break;
            }
            if next.is_empty() {
                break;
            }
            rest = next;
        }
    }

    /// Unfinished lines when the stream ends.
    fn finish(mut self) -> Vec<(DateTime<Utc>, Stream, String)> {
        let mut out = Vec::new();
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            if let Some((ts, line)) = self.pending[slot].take() {
                out.push((ts, stream, line));
            }
        }
        out.sort_by_key(|(ts, _, _)| *ts);
        out
    }
}

/// The engine's timestamp in front of a message, and the text after it
/// (now, and the whole message, when there is none).
fn split_timestamp(message: &str) -> (DateTime<Utc>, &str) {
    if let Some((head, text)) = message.split_once(' ') {
        if let Ok(ts) = DateTime::parse_from_rfc3339(head) {
            return (ts.with_timezone(&Utc), text);
        }
    }
    (Utc::now(), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chunk(stream: LogStream, text: &str) -> LogChunk {
        LogChunk {
            stream,
            data: Bytes::from(text.to_owned()),
        }
    }

    #[test]
    fn messages_become_timestamped_lines() {
        let mut lines = Lines::new(100);
        let mut out = Vec::new();
        lines.push(
            chunk(
                LogStream::Stderr,
                "2025-01-02T03:04:05.678901234Z GET / 200\n",
            ),
            &mut out,
        );
        lines.push(
            chunk(
                LogStream::Stdout,
                "2025-01-02T03:04:06.000000001Z part one ",
            ),
            &mut out,
        );
        lines.push(
            chunk(
                LogStream::Stdout,
                "2025-01-02T03:04:06.100000000Z and two\n",
            ),
            &mut out,
        );
        lines.push(
            chunk(LogStream::Stdout, "2025-01-02T03:04:07Z unfinished"),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, Stream::Stderr);
        assert_eq!(out[0].2, "GET / 200");
        assert_eq!(out[0].0.timestamp_subsec_millis(), 678);
        assert_eq!(out[1].2, "part one and two");
        assert_eq!(
            out[1].0.timestamp_subsec_millis(),
            0,
            "the first part's time"
        );
        let rest = lines.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].2, "unfinished");
    }

    #[test]
    fn long_lines_are_cut() {
        let mut lines = Lines::new(10);
        let mut out = Vec::new();
        let long = format!("2025-01-02T03:04:05Z {}", "x".repeat(30));
        lines.push(chunk(LogStream::Stdout, &long), &mut out);
        lines.push(
            chunk(LogStream::Stdout, "2025-01-02T03:04:05Z yyy\n"),
            &mut out,
        );
        assert_eq!(out[0].2, "xxxxxxxxxx");
        assert_eq!(split_timestamp("no timestamp here").1, "no timestamp here");
    }

    #[test]
    fn a_resumed_position_skips_what_is_stored() {
        let rec = |ms: i64, line: &str| {
            LogRecord::new(slipway_logs::from_ms(ms), "r", 1, Stream::Stdout, line, 100)
        };
        let mut p = Position::new(Some(ResumePoint {
            ms: 5_500,
            at_ms: vec![rec(5_500, "a"), rec(5_500, "a")],
        }));
        assert_eq!(p.since_secs(), Some(5));
        assert!(!p.accept(&rec(5_000, "older")));
        assert!(!p.accept(&rec(5_500, "a")));
        assert!(!p.accept(&rec(5_500, "a")));
        assert!(p.accept(&rec(5_500, "a")), "a third one is new");
        assert!(p.accept(&rec(5_500, "b")));
        assert!(p.accept(&rec(6_000, "c")));
        p.rewind();
        assert!(!p.accept(&rec(6_000, "c")), "a reconnect repeats it");
        assert!(p.accept(&rec(6_001, "d")));
        assert_eq!(Position::new(None).since_secs(), None);
    }
}
