//! Apps, releases, app secrets and app events: the deployer's desired state
//! and its history.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};
use slipway_domain::{AppRecord, AppSpec, ReleaseRecord, ReleaseStatus};
use std::collections::HashMap;

/// Events kept per app; older ones are trimmed as new ones arrive.
const EVENTS_KEPT: i64 = 500;

#[derive(sqlx::FromRow)]
struct AppRow {
    id: i64,
    name: String,
    repo_id: i64,
    owner_id: i64,
    spec: String,
    release: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AppRow> for AppRecord {
    type Error = StoreError;
    fn try_from(r: AppRow) -> Result<Self, StoreError> {
        Ok(AppRecord {
            spec: parse_spec(&r.spec)?,
            id: r.id,
            name: r.name,
            repo_id: r.repo_id,
            owner_id: r.owner_id,
            release: r.release,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReleaseRow {
    id: i64,
    app_id: i64,
    number: i64,
    image: String,
    sha: String,
    pipeline_id: Option<i64>,
    spec: String,
    description: String,
    created_by: String,
    status: String,
    error: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ReleaseRow> for ReleaseRecord {
    type Error = StoreError;
    fn try_from(r: ReleaseRow) -> Result<Self, StoreError> {
        Ok(ReleaseRecord {
            spec: parse_spec(&r.spec)?,
            status: ReleaseStatus::parse(&r.status).unwrap_or(ReleaseStatus::Failed),
            id: r.id,
            app_id: r.app_id,
            number: r.number,
            image: r.image,
            sha: r.sha,
            pipeline_id: r.pipeline_id,
            description: r.description,
            created_by: r.created_by,
            error: r.error,
            created_at: r.created_at,
        })
    }
}

fn parse_spec(text: &str) -> Result<AppSpec, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Io(format!("stored app spec: {e}")))
}

fn spec_json(spec: &AppSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Io(e.to_string()))
}

/// What is needed to record a release.
#[derive(Debug, Clone)]
pub struct NewRelease {
    /// App id.
    pub app_id: i64,
    /// Image reference.
    pub image: String,
    /// Commit.
    pub sha: String,
    /// Pipeline that built the image.
    pub pipeline_id: Option<i64>,
    /// Spec the release runs with.
    pub spec: AppSpec,
    /// Why it exists.
    pub description: String,
    /// Who caused it.
    pub created_by: String,
}

/// One entry of an app's history.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AppEvent {
    /// Id (increasing).
    pub id: i64,
    /// App id.
    #[serde(skip)]
    pub app_id: i64,
    /// `deploy`, `rollout`, `crash`, `scale`, …
    pub kind: String,
    /// What happened, for people.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl Store {
    /// Creates an app; `Conflict` when the name is taken.
    pub async fn create_app(
        &self,
        name: &str,
        repo_id: i64,
        owner_id: i64,
        spec: &AppSpec,
    ) -> Result<AppRecord, StoreError> {
        let at = now();
        let row = sqlx::query_as::<_, AppRow>(
            "INSERT INTO apps (name, repo_id, owner_id, spec, release, created_at, updated_at)
             VALUES (?, ?, ?, ?, NULL, ?, ?) RETURNING *",
        )
        .bind(name)
        .bind(repo_id)
        .bind(owner_id)
        .bind(spec_json(spec)?)
        .bind(at)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if crate::error::is_unique_violation(&e) {
                StoreError::Conflict(format!("app {name:?} already exists"))
            } else {
                StoreError::Db(e)
            }
        })?;
        row.try_into()
    }

    /// An app by name.
    pub async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        sqlx::query_as::<_, AppRow>("SELECT * FROM apps WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// An app by id.
    pub async fn app_by_id(&self, id: i64) -> Result<Option<AppRecord>, StoreError> {
        sqlx::query_as::<_, AppRow>("SELECT * FROM apps WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// Every app, by name.
    pub async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        sqlx::query_as::<_, AppRow>("SELECT * FROM apps ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// Apps deployed from a repository.
    pub async fn apps_for_repo(&self, repo_id: i64) -> Result<Vec<AppRecord>, StoreError> {
        sqlx::query_as::<_, AppRow>("SELECT * FROM apps WHERE repo_id = ? ORDER BY name")
            .bind(repo_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// Replaces an app's spec.
    pub async fn update_app_spec(&self, id: i64, spec: &AppSpec) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE apps SET spec = ?, updated_at = ? WHERE id = ?")
            .bind(spec_json(spec)?)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("app".into()));
        }
        Ok(())
    }

    /// Points an app at the release that should run.
    pub async fn set_app_release(&self, id: i64, number: Option<i64>) -> Result<(), StoreError> {
        sqlx::query("UPDATE apps SET release = ?, updated_at = ? WHERE id = ?")
            .bind(number)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes an app with its releases, secrets and events.
    pub async fn delete_app(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a release, numbered after the app's last one, and makes it the
    /// one that should run — both in one transaction.
    pub async fn create_release(&self, new: &NewRelease) -> Result<ReleaseRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let row = sqlx::query_as::<_, ReleaseRow>(
            "INSERT INTO releases (app_id, number, image, sha, pipeline_id, spec, description, created_by, status, created_at)
             VALUES (?, (SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app_id = ?), ?, ?, ?, ?, ?, ?, 'pending', ?)
             RETURNING *",
        )
        .bind(new.app_id)
        .bind(new.app_id)
        .bind(&new.image)
        .bind(&new.sha)
        .bind(new.pipeline_id)
        .bind(spec_json(&new.spec)?)
        .bind(&new.description)
        .bind(&new.created_by)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE apps SET release = ?, updated_at = ? WHERE id = ?")
            .bind(row.number)
            .bind(at)
            .bind(new.app_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// Releases of an app, newest first.
    pub async fn releases(
        &self,
        app_id: i64,
        limit: i64,
    ) -> Result<Vec<ReleaseRecord>, StoreError> {
        sqlx::query_as::<_, ReleaseRow>(
            "SELECT * FROM releases WHERE app_id = ? ORDER BY number DESC LIMIT ?",
        )
        .bind(app_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
    }

    /// One release of an app.
    pub async fn release(
        &self,
        app_id: i64,
        number: i64,
    ) -> Result<Option<ReleaseRecord>, StoreError> {
        sqlx::query_as::<_, ReleaseRow>("SELECT * FROM releases WHERE app_id = ? AND number = ?")
            .bind(app_id)
            .bind(number)
            .fetch_optional(&self.pool)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// Moves a release along its life; an active release supersedes the
    /// app's previously active one.
    pub async fn set_release_status(
        &self,
        app_id: i64,
        number: i64,
        status: ReleaseStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if status == ReleaseStatus::Active {
            // The previous active release, and older rollouts overtaken by this one.
            sqlx::query(
                "UPDATE releases SET status = 'superseded' WHERE app_id = ? AND number <> ?
                 AND (status = 'active' OR (status IN ('pending', 'deploying') AND number < ?))",
            )
            .bind(app_id)
            .bind(number)
            .bind(number)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE releases SET status = ?, error = ? WHERE app_id = ? AND number = ?")
            .bind(status.as_str())
            .bind(error)
            .bind(app_id)
            .bind(number)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The app's most recent release that served traffic (its fallback).
    pub async fn active_release(&self, app_id: i64) -> Result<Option<ReleaseRecord>, StoreError> {
        sqlx::query_as::<_, ReleaseRow>(
            "SELECT * FROM releases WHERE app_id = ? AND status = 'active' ORDER BY number DESC LIMIT 1",
        )
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?
        .map(TryInto::try_into)
        .transpose()
    }

    /// Stores a sealed app secret (insert or replace).
    pub async fn set_app_secret(
        &self,
        app_id: i64,
        name: &str,
        sealed: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO app_secrets (app_id, name, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (app_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(app_id)
        .bind(name)
        .bind(sealed)
        .bind(at)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes an app secret; false when there was none.
    pub async fn delete_app_secret(&self, app_id: i64, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM app_secrets WHERE app_id = ? AND name = ?")
            .bind(app_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Names of an app's secrets with their last change (never values).
    pub async fn app_secret_names(
        &self,
        app_id: i64,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(sqlx::query_as::<_, (String, DateTime<Utc>)>(
            "SELECT name, updated_at FROM app_secrets WHERE app_id = ? ORDER BY name",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sealed secret values of an app by name, for the replicas only.
    pub async fn app_secret_values(
        &self,
        app_id: i64,
    ) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT name, value FROM app_secrets WHERE app_id = ?",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Appends to an app's history, trimming the oldest entries.
    pub async fn add_app_event(
        &self,
        app_id: i64,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO app_events (app_id, kind, message, at) VALUES (?, ?, ?, ?)")
            .bind(app_id)
            .bind(kind)
            .bind(message)
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM app_events WHERE app_id = ? AND id <= (SELECT id FROM app_events WHERE app_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        )
        .bind(app_id)
        .bind(app_id)
        .bind(EVENTS_KEPT)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An app's most recent events, oldest first.
    pub async fn app_events(&self, app_id: i64, limit: i64) -> Result<Vec<AppEvent>, StoreError> {
        let mut rows = sqlx::query_as::<_, AppEvent>(
            "SELECT * FROM app_events WHERE app_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(app_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }
}
