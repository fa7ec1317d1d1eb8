//! A step's log on its way to the store: masked lines, batched, bounded.

use crate::mask::LineMasker;
use slipway_runtime::LogStream;
use slipway_store::Store;

/// Most lines stored per step; the rest is dropped with a note.
pub const MAX_LINES: i64 = 20_000;
/// Most bytes stored per step.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Lines buffered before a write even if the flush tick has not come.
const BATCH: usize = 200;

/// The log writer of one running step.
pub(crate) struct StepLog {
    store: Store,
    step_id: i64,
    stdout: LineMasker,
    stderr: LineMasker,
    pending: Vec<(String, String)>,
    next_number: i64,
    bytes: usize,
    truncated: bool,
}

impl StepLog {
    /// A log for `step_id` masking `secrets`.
    pub fn new(store: Store, step_id: i64, secrets: Vec<String>) -> Self {
        Self {
            store,
            step_id,
            stdout: LineMasker::new(&secrets),
            stderr: LineMasker::new(&secrets),
            pending: Vec::new(),
            next_number: 1,
            bytes: 0,
            truncated: false,
        }
    }

    /// Feeds raw container output.
    pub async fn push(&mut self, stream: LogStream, data: &[u8]) {
        let (masker, name) = match stream {
            LogStream::Stdout => (&mut self.stdout, "stdout"),
            LogStream::Stderr => (&mut self.stderr, "stderr"),
        };
        for line in masker.push(data) {
            self.add(name, line);
        }
        if self.pending.len() >= BATCH {
            self.flush().await;
        }
    }

    /// Adds a message from Slipway itself (timeouts, errors).
    pub fn system(&mut self, text: &str) {
        let masked = self.stdout.mask(text);
        self.add_unbounded("system", masked);
    }

    fn add(&mut self, stream: &str, line: String) {
        if self.truncated {
            return;
        }
        let count = self.next_number - 1 + self.pending.len() as i64;
        if count >= MAX_LINES || self.bytes + line.len() > MAX_BYTES {
            self.truncated = true;
            self.add_unbounded(
                "system",
                format!(
                    "log truncated: a step keeps at most {MAX_LINES} lines / {MAX_BYTES} bytes"
                ),
            );
            return;
        }
        self.bytes += line.len();
        self.pending.push((stream.to_string(), line));
    }

    fn add_unbounded(&mut self, stream: &str, line: String) {
        self.pending.push((stream.to_string(), line));
    }

    /// Writes buffered lines to the store.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending);
        match self
            .store
            .append_step_logs(self.step_id, self.next_number, &lines)
            .await
        {
            Ok(()) => self.next_number += lines.len() as i64,
            Err(e) => tracing::error!(step = self.step_id, error = %e, "could not store log lines"),
        }
    }

    /// Flushes the last partial lines and everything buffered.
    pub async fn close(&mut self) {
        if let Some(l) = self.stdout.finish() {
            self.add("stdout", l);
        }
        if let Some(l) = self.stderr.finish() {
            self.add("stderr", l);
        }
        self.flush().await;
    }
}
