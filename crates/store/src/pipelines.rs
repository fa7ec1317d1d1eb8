//! CI pipelines, their steps, step logs and repository secrets.
//!
//! The `pipelines` table is also the persistent queue: `pending` rows wait,
//! [`Store::claim_pipeline`] atomically turns the oldest into `running`, so a
//! restart neither loses nor duplicates a pipeline.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};
use slipway_domain::{LogLine, PipelineRecord, PushEvent, Status, StepRecord};
use std::collections::HashMap;

/// What is needed to queue (or record as failed) a pipeline.
#[derive(Debug, Clone)]
pub struct NewPipeline {
    /// Repository id.
    pub repo_id: i64,
    /// Push event that triggered it, if any (one pipeline per event).
    pub event_id: Option<i64>,
    /// `push`, `tag` or `manual`.
    pub event: String,
    /// Full ref name.
    pub ref_name: String,
    /// Commit.
    pub sha: String,
    /// Who triggered it.
    pub actor: String,
    /// `Pending` to queue, or `Error` for a file that failed validation.
    pub status: Status,
    /// Error message when `status` is `Error`.
    pub error: Option<String>,
    /// Validated pipeline as JSON (None when invalid).
    pub config: Option<String>,
    /// Pipeline retried by this one.
    pub retry_of: Option<i64>,
    /// Its steps, in file order.
    pub steps: Vec<NewStep>,
}

/// A step row created with its pipeline.
#[derive(Debug, Clone)]
pub struct NewStep {
    /// Step name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Names of steps it waits for.
    pub depends_on: Vec<String>,
    /// `Pending`, or `Skipped` when its `when:` does not match.
    pub status: Status,
    /// Why it is skipped, if it is.
    pub error: Option<String>,
    /// Memory and CPU limits its container gets.
    pub limits: slipway_domain::Resources,
}

#[derive(sqlx::FromRow)]
struct PipelineRow {
    id: i64,
    repo_id: i64,
    number: i64,
    event_id: Option<i64>,
    event: String,
    ref_name: String,
    sha: String,
    status: String,
    error: Option<String>,
    retry_of: Option<i64>,
    actor: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

fn status(s: &str) -> Status {
    s.parse().unwrap_or(Status::Error)
}

impl From<PipelineRow> for PipelineRecord {
    fn from(r: PipelineRow) -> Self {
        PipelineRecord {
            id: r.id,
            repo_id: r.repo_id,
            number: r.number,
            event_id: r.event_id,
            event: r.event,
            ref_name: r.ref_name,
            sha: r.sha,
            status: status(&r.status),
            error: r.error,
            retry_of: r.retry_of,
            actor: r.actor,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

const PIPELINE_COLS: &str = "id, repo_id, number, event_id, event, ref_name, sha, status, error, retry_of, actor, created_at, started_at, finished_at";

#[derive(sqlx::FromRow)]
struct StepRow {
    id: i64,
    pipeline_id: i64,
    position: i64,
    name: String,
    image: String,
    depends_on: String,
    status: String,
    exit_code: Option<i64>,
    error: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    memory_bytes: Option<i64>,
    nano_cpus: Option<i64>,
}

impl From<StepRow> for StepRecord {
    fn from(r: StepRow) -> Self {
        StepRecord {
            id: r.id,
            pipeline_id: r.pipeline_id,
            position: r.position,
            name: r.name,
            image: r.image,
            depends_on: serde_json::from_str(&r.depends_on).unwrap_or_default(),
            status: status(&r.status),
            exit_code: r.exit_code,
            error: r.error,
            started_at: r.started_at,
            finished_at: r.finished_at,
            limits: slipway_domain::Resources {
                memory_bytes: r.memory_bytes,
                nano_cpus: r.nano_cpus,
            },
        }
    }
}

const STEP_COLS: &str = "id, pipeline_id, position, name, image, depends_on, status, exit_code, error, started_at, finished_at, memory_bytes, nano_cpus";

#[derive(sqlx::FromRow)]
struct LogRow {
    number: i64,
    stream: String,
    text: String,
    at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    repo_id: i64,
    repo: String,
    ref_name: String,
    old_sha: String,
    new_sha: String,
    pusher: String,
    created_at: DateTime<Utc>,
}

impl Store {
    /// Queues (or records as failed) a pipeline with its steps, numbering it
    /// per repository. `Conflict` when its push event already has one.
    pub async fn create_pipeline(&self, new: &NewPipeline) -> Result<PipelineRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let finished = new.status.is_finished().then_some(at);
        let inserted = sqlx::query_as::<_, PipelineRow>(&format!(
            "INSERT INTO pipelines (repo_id, number, event_id, event, ref_name, sha, status, error, retry_of, actor, config, created_at, finished_at)
             VALUES (?, (SELECT COALESCE(MAX(number), 0) + 1 FROM pipelines WHERE repo_id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             RETURNING {PIPELINE_COLS}"
        ))
        .bind(new.repo_id)
        .bind(new.repo_id)
        .bind(new.event_id)
        .bind(&new.event)
        .bind(&new.ref_name)
        .bind(&new.sha)
        .bind(new.status.as_str())
        .bind(&new.error)
        .bind(new.retry_of)
        .bind(&new.actor)
        .bind(&new.config)
        .bind(at)
        .bind(finished)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(r) => r,
            Err(e) if crate::error::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(
                    "this push event already has a pipeline".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        for (i, s) in new.steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO pipeline_steps (pipeline_id, position, name, image, depends_on, status, error, finished_at, memory_bytes, nano_cpus)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(row.id)
            .bind(i as i64)
            .bind(&s.name)
            .bind(&s.image)
            .bind(serde_json::to_string(&s.depends_on).unwrap_or_else(|_| "[]".into()))
            .bind(s.status.as_str())
            .bind(&s.error)
            .bind(s.status.is_finished().then_some(at))
            .bind(s.limits.memory_bytes)
            .bind(s.limits.nano_cpus)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row.into())
    }

    /// A pipeline by its global id.
    pub async fn pipeline_by_id(&self, id: i64) -> Result<Option<PipelineRecord>, StoreError> {
        let row = sqlx::query_as::<_, PipelineRow>(&format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// A pipeline by repository and number.
    pub async fn pipeline(
        &self,
        repo_id: i64,
        number: i64,
    ) -> Result<Option<PipelineRecord>, StoreError> {
        let row = sqlx::query_as::<_, PipelineRow>(&format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE repo_id = ? AND number = ?"
        ))
        .bind(repo_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Pipelines of a repository, newest first, numbered below `before` when given.
    pub async fn list_pipelines(
        &self,
        repo_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<PipelineRecord>, StoreError> {
        let rows = sqlx::query_as::<_, PipelineRow>(&format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE repo_id = ? AND number < ? ORDER BY number DESC LIMIT ?"
        ))
        .bind(repo_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The newest pipeline of a commit (for commit statuses).
    pub async fn latest_pipeline_for_sha(
        &self,
        repo_id: i64,
        sha: &str,
    ) -> Result<Option<PipelineRecord>, StoreError> {
        let row = sqlx::query_as::<_, PipelineRow>(&format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE repo_id = ? AND sha = ? ORDER BY id DESC LIMIT 1"
        ))
        .bind(repo_id)
        .bind(sha)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// The newest pipeline of a ref (for badges).
    pub async fn latest_pipeline_for_ref(
        &self,
        repo_id: i64,
        ref_name: &str,
    ) -> Result<Option<PipelineRecord>, StoreError> {
        let row = sqlx::query_as::<_, PipelineRow>(&format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE repo_id = ? AND ref_name = ? ORDER BY id DESC LIMIT 1"
        ))
        .bind(repo_id)
        .bind(ref_name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// The validated pipeline (JSON) a pipeline was queued with.
    pub async fn pipeline_config(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>("SELECT config FROM pipelines WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// Atomically takes the oldest queued pipeline and marks it running.
    pub async fn claim_pipeline(&self) -> Result<Option<PipelineRecord>, StoreError> {
        let row = sqlx::query_as::<_, PipelineRow>(&format!(
            "UPDATE pipelines SET status = 'running', started_at = ?
             WHERE id = (SELECT id FROM pipelines WHERE status = 'pending' ORDER BY id LIMIT 1)
               AND status = 'pending'
             RETURNING {PIPELINE_COLS}"
        ))
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Pipelines marked running (after a crash: the ones nobody runs any more).
    pub async fn running_pipelines(&self) -> Result<Vec<PipelineRecord>, StoreError> {
        let rows = sqlx::query_as::<_, PipelineRow>(&format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE status = 'running' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Ends a pipeline that is still pending or running; its unfinished steps
    /// become `step_status`. False when it had already ended.
    pub async fn finish_pipeline(
        &self,
        id: i64,
        status: Status,
        error: Option<&str>,
        step_status: Status,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let done = sqlx::query(
            "UPDATE pipelines SET status = ?, error = COALESCE(?, error), finished_at = ?
             WHERE id = ? AND status IN ('pending', 'running')",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE pipeline_steps SET status = ?, finished_at = ?
             WHERE pipeline_id = ? AND status IN ('pending', 'running')",
        )
        .bind(step_status.as_str())
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Asks the worker running a pipeline to stop it. False when it is not running.
    pub async fn request_cancel(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pipelines SET cancel_requested = 1 WHERE id = ? AND status = 'running'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether a cancel was requested for a pipeline.
    pub async fn cancel_requested(&self, id: i64) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, bool>("SELECT cancel_requested FROM pipelines WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(false),
        )
    }

    /// Steps of a pipeline in file order.
    pub async fn pipeline_steps(&self, pipeline_id: i64) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query_as::<_, StepRow>(&format!(
            "SELECT {STEP_COLS} FROM pipeline_steps WHERE pipeline_id = ? ORDER BY position"
        ))
        .bind(pipeline_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One step by name.
    pub async fn pipeline_step(
        &self,
        pipeline_id: i64,
        name: &str,
    ) -> Result<Option<StepRecord>, StoreError> {
        let row = sqlx::query_as::<_, StepRow>(&format!(
            "SELECT {STEP_COLS} FROM pipeline_steps WHERE pipeline_id = ? AND name = ?"
        ))
        .bind(pipeline_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// One step by id (status polling of log followers).
    pub async fn step_by_id(&self, id: i64) -> Result<Option<StepRecord>, StoreError> {
        let row = sqlx::query_as::<_, StepRow>(&format!(
            "SELECT {STEP_COLS} FROM pipeline_steps WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Marks a step running.
    pub async fn start_step(&self, step_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE pipeline_steps SET status = 'running', started_at = ? WHERE id = ?")
            .bind(now())
            .bind(step_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a step that has not ended yet.
    pub async fn finish_step(
        &self,
        step_id: i64,
        status: Status,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pipeline_steps SET status = ?, exit_code = ?, error = ?, finished_at = ?
             WHERE id = ? AND status IN ('pending', 'running')",
        )
        .bind(status.as_str())
        .bind(exit_code)
        .bind(error)
        .bind(now())
        .bind(step_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Appends already-masked lines to a step's log, numbered from
    /// `first_number`, in one transaction.
    pub async fn append_step_logs(
        &self,
        step_id: i64,
        first_number: i64,
        lines: &[(String, String)],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let at = now();
        let mut bytes = 0i64;
        for (i, (stream, text)) in lines.iter().enumerate() {
            bytes += text.len() as i64;
            sqlx::query(
                "INSERT OR IGNORE INTO step_logs (step_id, number, stream, text, at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(step_id)
            .bind(first_number + i as i64)
            .bind(stream)
            .bind(text)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE pipeline_steps SET log_lines = ?, log_bytes = log_bytes + ? WHERE id = ?",
        )
        .bind(first_number + lines.len() as i64 - 1)
        .bind(bytes)
        .bind(step_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Log lines of a step numbered above `after`, oldest first.
    pub async fn step_logs(
        &self,
        step_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, StoreError> {
        let rows = sqlx::query_as::<_, LogRow>(
            "SELECT number, stream, text, at FROM step_logs WHERE step_id = ? AND number > ? ORDER BY number LIMIT ?",
        )
        .bind(step_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LogLine {
                number: r.number,
                stream: r.stream,
                text: r.text,
                at: r.at,
            })
            .collect())
    }

    /// Push events of every repository with ids above `after`, oldest first
    /// (the CI catch-up after a crash between recording and queueing).
    pub async fn push_events_since(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PushEvent>, StoreError> {
        let rows = sqlx::query_as::<_, EventRow>(
            "SELECT * FROM push_events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PushEvent {
                id: r.id,
                repo_id: r.repo_id,
                repo: r.repo,
                ref_name: r.ref_name,
                old_sha: r.old_sha,
                new_sha: r.new_sha,
                pusher: r.pusher,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Id of the newest push event (0 when there is none).
    pub async fn last_push_event_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM push_events")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Creates or replaces a repository secret.
    pub async fn set_secret(
        &self,
        repo_id: i64,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO repo_secrets (repo_id, name, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (repo_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(repo_id)
        .bind(name)
        .bind(value)
        .bind(at)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a repository secret; false when it did not exist.
    pub async fn delete_secret(&self, repo_id: i64, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM repo_secrets WHERE repo_id = ? AND name = ?")
            .bind(repo_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Names of a repository's secrets with their last change (never values).
    pub async fn secret_names(
        &self,
        repo_id: i64,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(sqlx::query_as::<_, (String, DateTime<Utc>)>(
            "SELECT name, updated_at FROM repo_secrets WHERE repo_id = ? ORDER BY name",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Secret values of a repository by name, for injection into steps only.
    pub async fn secret_values(&self, repo_id: i64) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT name, value FROM repo_secrets WHERE repo_id = ?",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_repo() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let user = store.create_user("alice", "hash", true).await.unwrap();
        let repo = store.create_repo(user.id, "web", "", false).await.unwrap();
        (dir, store, repo.id)
    }

    fn new(repo_id: i64, event_id: Option<i64>) -> NewPipeline {
        NewPipeline {
            repo_id,
            event_id,
            event: "push".into(),
            ref_name: "refs/heads/main".into(),
            sha: "a".repeat(40),
            actor: "alice".into(),
            status: Status::Pending,
            error: None,
            config: Some("{}".into()),
            retry_of: None,
            steps: vec![NewStep {
                name: "build".into(),
                image: "img".into(),
                depends_on: vec![],
                status: Status::Pending,
                error: None,
                limits: Default::default(),
            }],
        }
    }

    #[tokio::test]
    async fn queue_claims_once_in_order_and_numbers_per_repo() {
        let (_d, store, repo) = store_with_repo().await;
        let a = store.create_pipeline(&new(repo, Some(1))).await.unwrap();
        let b = store.create_pipeline(&new(repo, Some(2))).await.unwrap();
        assert_eq!((a.number, b.number), (1, 2));
        assert!(matches!(
            store.create_pipeline(&new(repo, Some(1))).await,
            Err(StoreError::Conflict(_))
        ));
        let c1 = store.claim_pipeline().await.unwrap().unwrap();
        let c2 = store.claim_pipeline().await.unwrap().unwrap();
        assert_eq!((c1.id, c2.id), (a.id, b.id));
        assert_eq!(c1.status, Status::Running);
        assert!(store.claim_pipeline().await.unwrap().is_none());
        assert_eq!(store.running_pipelines().await.unwrap().len(), 2);
        assert!(store
            .finish_pipeline(a.id, Status::Error, Some("boom"), Status::Skipped)
            .await
            .unwrap());
        assert!(!store
            .finish_pipeline(a.id, Status::Success, None, Status::Skipped)
            .await
            .unwrap());
        let a = store.pipeline(repo, 1).await.unwrap().unwrap();
        assert_eq!(
            (a.status, a.error.as_deref()),
            (Status::Error, Some("boom"))
        );
        let steps = store.pipeline_steps(a.id).await.unwrap();
        assert_eq!(steps[0].status, Status::Skipped);
    }

    #[tokio::test]
    async fn logs_and_secrets() {
        let (_d, store, repo) = store_with_repo().await;
        let p = store.create_pipeline(&new(repo, None)).await.unwrap();
        let step = store.pipeline_step(p.id, "build").await.unwrap().unwrap();
        let lines = vec![
            ("stdout".to_string(), "one".to_string()),
            ("stderr".to_string(), "two".to_string()),
        ];
        store.append_step_logs(step.id, 1, &lines).await.unwrap();
        let got = store.step_logs(step.id, 1, 10).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].number, got[0].text.as_str()), (2, "two"));
        store.set_secret(repo, "TOKEN", "v1").await.unwrap();
        store.set_secret(repo, "TOKEN", "v2").await.unwrap();
        assert_eq!(store.secret_values(repo).await.unwrap()["TOKEN"], "v2");
        assert_eq!(store.secret_names(repo).await.unwrap().len(), 1);
        assert!(store.delete_secret(repo, "TOKEN").await.unwrap());
        assert!(!store.delete_secret(repo, "TOKEN").await.unwrap());
    }
}
