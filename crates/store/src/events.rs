//! Push events: the hand-off from git hosting to the pipeline queue.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};
use slipway_domain::{PushEvent, RefUpdate, Repo};

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

impl From<EventRow> for PushEvent {
    fn from(r: EventRow) -> Self {
        PushEvent {
            id: r.id,
            repo_id: r.repo_id,
            repo: r.repo,
            ref_name: r.ref_name,
            old_sha: r.old_sha,
            new_sha: r.new_sha,
            pusher: r.pusher,
            created_at: r.created_at,
        }
    }
}

impl Store {
    /// Records the ref updates of one accepted push, atomically.
    pub async fn record_push(
        &self,
        repo: &Repo,
        pusher: &str,
        updates: &[RefUpdate],
    ) -> Result<Vec<PushEvent>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut events = Vec::with_capacity(updates.len());
        let at = now();
        for u in updates {
            let row = sqlx::query_as::<_, EventRow>(
                "INSERT INTO push_events (repo_id, repo, ref_name, old_sha, new_sha, pusher, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            )
            .bind(repo.id)
            .bind(repo.full_name())
            .bind(&u.ref_name)
            .bind(&u.old_sha)
            .bind(&u.new_sha)
            .bind(pusher)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            events.push(row.into());
        }
        tx.commit().await?;
        Ok(events)
    }

    /// The newest push event of `ref_name` in a repository, if any.
    pub async fn last_push_event_of_ref(
        &self,
        repo_id: i64,
        ref_name: &str,
    ) -> Result<Option<PushEvent>, StoreError> {
        let row = sqlx::query_as::<_, EventRow>(
            "SELECT * FROM push_events WHERE repo_id = ? AND ref_name = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(repo_id)
        .bind(ref_name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Push events of a repository with ids above `after`, oldest first.
    pub async fn push_events(
        &self,
        repo_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PushEvent>, StoreError> {
        let rows = sqlx::query_as::<_, EventRow>(
            "SELECT * FROM push_events WHERE repo_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(repo_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
