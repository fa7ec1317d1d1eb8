//! CI records: pipelines, their steps and log lines, as stored and shown.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a pipeline or a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Queued (pipeline) or waiting for its dependencies (step).
    Pending,
    /// Containers are running.
    Running,
    /// Everything exited 0.
    Success,
    /// A step exited non-zero or timed out.
    Failure,
    /// Stopped on request.
    Cancelled,
    /// Could not run at all (invalid file, missing image, server restart…).
    Error,
    /// Not run: a dependency failed or `when:` did not match.
    Skipped,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Running,
        Status::Success,
        Status::Failure,
        Status::Cancelled,
        Status::Error,
        Status::Skipped,
    ];

    /// The stored and displayed word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Cancelled => "cancelled",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }

    /// Whether nothing will change any more.
    pub fn is_finished(self) -> bool {
        !matches!(self, Status::Pending | Status::Running)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// One run of a repository's `.slipway.yml` for one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// Global id (labels containers).
    pub id: i64,
    /// Repository id.
    pub repo_id: i64,
    /// 1, 2, 3… per repository; what users type.
    pub number: i64,
    /// Push event that started it (None for retries and manual runs).
    pub event_id: Option<i64>,
    /// `push`, `tag` or `manual`.
    pub event: String,
    /// Full ref, e.g. `refs/heads/main`.
    pub ref_name: String,
    /// Commit built.
    pub sha: String,
    /// Overall status.
    pub status: Status,
    /// Why it errored (validation message, server restart…).
    pub error: Option<String>,
    /// Pipeline this one retries.
    pub retry_of: Option<i64>,
    /// Who pushed or retried.
    pub actor: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker picked it up.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl PipelineRecord {
    /// The branch name when the ref is a branch.
    pub fn branch(&self) -> Option<&str> {
        self.ref_name.strip_prefix("refs/heads/")
    }
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Global id.
    pub id: i64,
    /// Pipeline id.
    pub pipeline_id: i64,
    /// Position in the file.
    pub position: i64,
    /// Step name.
    pub name: String,
    /// Image it runs.
    pub image: String,
    /// Names of steps it waits for.
    pub depends_on: Vec<String>,
    /// Status.
    pub status: Status,
    /// Exit code of its container once it ended.
    pub exit_code: Option<i64>,
    /// Why it failed or was skipped, when not just its exit code.
    pub error: Option<String>,
    /// When its container started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Memory and CPU limits its container runs with (none for steps
    /// recorded before limits existed).
    #[serde(default)]
    pub limits: crate::Resources,
}

/// One stored output line of a step (already masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1-based line number within the step.
    pub number: i64,
    /// `stdout`, `stderr` or `system` (messages from Slipway).
    pub stream: String,
    /// The text, without newline.
    pub text: String,
    /// When it was received.
    pub at: DateTime<Utc>,
}
