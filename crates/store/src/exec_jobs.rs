//! Code execution jobs: a durable queue with atomic claims and idempotent completion.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};

/// A job as stored (without its output zip, which is fetched separately).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecJobRecord {
    /// Random id (hex).
    pub id: String,
    /// The submitting user.
    pub owner_id: i64,
    /// Canonical language name.
    pub language: String,
    /// Runtime version.
    pub version: String,
    /// The request as JSON.
    pub request: String,
    /// `pending`, `running`, `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub state: String,
    /// The result as JSON, once finished.
    pub result: Option<String>,
    /// How many times a worker claimed it.
    pub attempts: i64,
    /// Worker holding the claim while running.
    pub claimed_by: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether an output zip is stored.
    pub has_output: bool,
}

/// One user's share of the queue (see [`Store::exec_queue_by_owner`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExecQueueRow {
    /// The user.
    pub owner_id: i64,
    /// Their pending jobs.
    pub pending: i64,
    /// Their running jobs.
    pub running: i64,
    /// Submission time of their oldest pending job.
    pub oldest: DateTime<Utc>,
}

/// What a new job needs.
pub struct NewExecJob<'a> {
    /// Random id.
    pub id: &'a str,
    /// The submitting user.
    pub owner_id: i64,
    /// Canonical language name.
    pub language: &'a str,
    /// Runtime version.
    pub version: &'a str,
    /// The request as JSON.
    pub request: &'a str,
}

const COLUMNS: &str = "id, owner_id, language, version, request, state, result, attempts, \
     claimed_by, created_at, started_at, finished_at, output_zip IS NOT NULL AS has_output";

impl Store {
    /// Persists a pending job.
    pub async fn insert_exec_job(&self, j: NewExecJob<'_>) -> Result<ExecJobRecord, StoreError> {
        Ok(sqlx::query_as::<_, ExecJobRecord>(&format!(
            "INSERT INTO exec_jobs (id, owner_id, language, version, request, state, created_at)
             VALUES (?, ?, ?, ?, ?, 'pending', ?) RETURNING {COLUMNS}"
        ))
        .bind(j.id)
        .bind(j.owner_id)
        .bind(j.language)
        .bind(j.version)
        .bind(j.request)
        .bind(now())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Number of pending jobs, overall and of `owner_id` (queue bounds).
    pub async fn count_pending_exec_jobs(&self, owner_id: i64) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(owner_id = ?), 0) FROM exec_jobs WHERE state = 'pending'",
        )
        .bind(owner_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Per user with pending jobs: how many wait, how many run, and when
    /// the oldest waiting one was submitted (the fair scheduler's input).
    pub async fn exec_queue_by_owner(&self) -> Result<Vec<ExecQueueRow>, StoreError> {
        Ok(sqlx::query_as::<_, ExecQueueRow>(
            "WITH pending AS (
                 SELECT owner_id, COUNT(*) AS pending, MIN(created_at) AS oldest
                 FROM exec_jobs WHERE state = 'pending' GROUP BY owner_id),
             running AS (
                 SELECT owner_id, COUNT(*) AS running
                 FROM exec_jobs WHERE state = 'running' GROUP BY owner_id)
             SELECT p.owner_id, p.pending, COALESCE(r.running, 0) AS running, p.oldest
             FROM pending p LEFT JOIN running r ON r.owner_id = p.owner_id
             ORDER BY p.owner_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Atomically claims `owner_id`'s oldest pending job for `worker`,
    /// marking it running; None when they have none (any more).
    pub async fn claim_exec_job_of(
        &self,
        worker: &str,
        owner_id: i64,
    ) -> Result<Option<ExecJobRecord>, StoreError> {
        let t = now();
        Ok(sqlx::query_as::<_, ExecJobRecord>(&format!(
            "UPDATE exec_jobs SET state = 'running', claimed_by = ?, claimed_at = ?, started_at = ?,
                    attempts = attempts + 1
             WHERE id = (SELECT id FROM exec_jobs WHERE state = 'pending' AND owner_id = ?
                         ORDER BY created_at, rowid LIMIT 1)
               AND state = 'pending'
             RETURNING {COLUMNS}"
        ))
        .bind(worker)
        .bind(t)
        .bind(t)
        .bind(owner_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records the end of a job; applies only while it is still running under
    /// `worker`'s claim, so a late or repeated completion changes nothing.
    /// True when it applied.
    pub async fn complete_exec_job(
        &self,
        id: &str,
        worker: &str,
        state: &str,
        result: &str,
        output_zip: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE exec_jobs SET state = ?, result = ?, output_zip = ?, finished_at = ?,
                    claimed_by = NULL
             WHERE id = ? AND state = 'running' AND claimed_by = ?",
        )
        .bind(state)
        .bind(result)
        .bind(output_zip)
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Cancels `owner_id`'s job if it has not finished; returns the state it had
    /// (None when no such job of theirs exists).
    pub async fn cancel_exec_job(
        &self,
        id: &str,
        owner_id: i64,
    ) -> Result<Option<String>, StoreError> {
        let before: Option<String> =
            sqlx::query_scalar("SELECT state FROM exec_jobs WHERE id = ? AND owner_id = ?")
                .bind(id)
                .bind(owner_id)
                .fetch_optional(&self.pool)
                .await?;
        if matches!(before.as_deref(), Some("pending" | "running")) {
            sqlx::query(
                "UPDATE exec_jobs SET state = 'cancelled', finished_at = ?, claimed_by = NULL
                 WHERE id = ? AND state IN ('pending', 'running')",
            )
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(before)
    }

    /// At start-up: jobs left running by a previous process go back to pending
    /// while they have attempts left; the others fail. Returns (requeued, failed).
    pub async fn requeue_exec_jobs(
        &self,
        max_attempts: i64,
        exhausted_result: &str,
    ) -> Result<(u64, u64), StoreError> {
        let failed = sqlx::query(
            "UPDATE exec_jobs SET state = 'failed', result = ?, finished_at = ?, claimed_by = NULL
             WHERE state = 'running' AND attempts >= ?",
        )
        .bind(exhausted_result)
        .bind(now())
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        let requeued = sqlx::query(
            "UPDATE exec_jobs SET state = 'pending', claimed_by = NULL, claimed_at = NULL
             WHERE state = 'running'",
        )
        .execute(&self.pool)
        .await?;
        Ok((requeued.rows_affected(), failed.rows_affected()))
    }

    /// One job by id.
    pub async fn exec_job(&self, id: &str) -> Result<Option<ExecJobRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ExecJobRecord>(&format!(
            "SELECT {COLUMNS} FROM exec_jobs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `owner_id`'s most recent jobs, newest first.
    pub async fn list_exec_jobs(
        &self,
        owner_id: i64,
        limit: i64,
    ) -> Result<Vec<ExecJobRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ExecJobRecord>(&format!(
            "SELECT {COLUMNS} FROM exec_jobs WHERE owner_id = ?
             ORDER BY created_at DESC, rowid DESC LIMIT ?"
        ))
        .bind(owner_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The output zip of a job, if it stored one.
    pub async fn exec_job_output(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<Vec<u8>>>(
            "SELECT output_zip FROM exec_jobs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_is_counted_and_claimed_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let a = store.create_user("alice", "hash", false).await.unwrap().id;
        let b = store.create_user("bob", "hash", false).await.unwrap().id;
        for (id, owner) in [("a1", a), ("a2", a), ("a3", a), ("b1", b)] {
            store
                .insert_exec_job(NewExecJob {
                    id,
                    owner_id: owner,
                    language: "busybox-sh",
                    version: "1",
                    request: "{}",
                })
                .await
                .unwrap();
        }
        let first = store.claim_exec_job_of("w1", a).await.unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.state.as_str()), ("a1", "running"));
        let queue = store.exec_queue_by_owner().await.unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(
            (queue[0].owner_id, queue[0].pending, queue[0].running),
            (a, 2, 1)
        );
        assert_eq!(
            (queue[1].owner_id, queue[1].pending, queue[1].running),
            (b, 1, 0)
        );
        let theirs = store.claim_exec_job_of("w2", b).await.unwrap().unwrap();
        assert_eq!(theirs.id, "b1");
        assert!(store.claim_exec_job_of("w2", b).await.unwrap().is_none());
        let queue = store.exec_queue_by_owner().await.unwrap();
        assert_eq!(queue.len(), 1, "bob has nothing waiting: {queue:?}");
        assert_eq!(store.count_pending_exec_jobs(a).await.unwrap(), (2, 2));
    }
}
