//! Repositories and their collaborators.

use crate::{error::is_unique_violation, now, Store, StoreError};
use chrono::{DateTime, Utc};
use slipway_domain::{Access, Collaborator, Repo};

#[derive(sqlx::FromRow)]
struct RepoRow {
    id: i64,
    owner_id: i64,
    owner: String,
    name: String,
    description: String,
    private: bool,
    created_at: DateTime<Utc>,
}

impl From<RepoRow> for Repo {
    fn from(r: RepoRow) -> Self {
        Repo {
            id: r.id,
            owner_id: r.owner_id,
            owner: r.owner,
            name: r.name,
            description: r.description,
            private: r.private,
            created_at: r.created_at,
        }
    }
}

const REPO_SELECT: &str =
    "SELECT r.id, r.owner_id, u.username AS owner, r.name, r.description, r.private, r.created_at
     FROM repos r JOIN users u ON u.id = r.owner_id";

impl Store {
    /// Records a new repository; `Conflict` when the owner already has one by that name.
    pub async fn create_repo(
        &self,
        owner_id: i64,
        name: &str,
        description: &str,
        private: bool,
    ) -> Result<Repo, StoreError> {
        let result = sqlx::query_scalar::<_, i64>(
            "INSERT INTO repos (owner_id, name, description, private, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(owner_id)
        .bind(name)
        .bind(description)
        .bind(private)
        .bind(now())
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(id) => self
                .repo_by_id(id)
                .await?
                .ok_or_else(|| StoreError::NotFound("repository".into())),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "repository {name:?} already exists (names are unique regardless of case)"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Looks a repository up by id.
    pub async fn repo_by_id(&self, id: i64) -> Result<Option<Repo>, StoreError> {
        let row = sqlx::query_as::<_, RepoRow>(&format!("{REPO_SELECT} WHERE r.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    /// Looks a repository up by `owner/name`.
    pub async fn repo(&self, owner: &str, name: &str) -> Result<Option<Repo>, StoreError> {
        let row = sqlx::query_as::<_, RepoRow>(&format!(
            "{REPO_SELECT} WHERE u.username = ? AND r.name = ? COLLATE NOCASE"
        ))
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Repositories `viewer` may see: public ones, their own, those they
    /// collaborate on, or all for an admin (`viewer` = `(user id, is_admin)`).
    /// `owner` narrows the list to one namespace.
    pub async fn list_repos(
        &self,
        viewer: Option<(i64, bool)>,
        owner: Option<&str>,
    ) -> Result<Vec<Repo>, StoreError> {
        let (viewer_id, is_admin) = viewer.unwrap_or((-1, false));
        let rows = sqlx::query_as::<_, RepoRow>(&format!(
            "{REPO_SELECT}
             WHERE (? OR r.private = 0 OR r.owner_id = ?
                    OR EXISTS (SELECT 1 FROM collaborators c WHERE c.repo_id = r.id AND c.user_id = ?))
               AND (? IS NULL OR u.username = ?)
             ORDER BY u.username, r.name"
        ))
        .bind(is_admin)
        .bind(viewer_id)
        .bind(viewer_id)
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Changes a repository's description and visibility.
    pub async fn update_repo(
        &self,
        id: i64,
        description: &str,
        private: bool,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE repos SET description = ?, private = ? WHERE id = ?")
            .bind(description)
            .bind(private)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("repository".into()));
        }
        Ok(())
    }

    /// Forgets a repository (its collaborators go with it; push events stay).
    pub async fn delete_repo(&self, id: i64) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM repos WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("repository".into()));
        }
        Ok(())
    }

    /// The level a collaborator was granted on a repository, if any.
    pub async fn collaborator_access(
        &self,
        repo_id: i64,
        user_id: i64,
    ) -> Result<Option<Access>, StoreError> {
        let level: Option<String> = sqlx::query_scalar(
            "SELECT access FROM collaborators WHERE repo_id = ? AND user_id = ?",
        )
        .bind(repo_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(level.and_then(|l| l.parse().ok()))
    }

    /// Grants (or changes) a collaborator's access.
    pub async fn set_collaborator(
        &self,
        repo_id: i64,
        user_id: i64,
        access: Access,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO collaborators (repo_id, user_id, access) VALUES (?, ?, ?)
             ON CONFLICT (repo_id, user_id) DO UPDATE SET access = excluded.access",
        )
        .bind(repo_id)
        .bind(user_id)
        .bind(access.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Withdraws a collaborator's access.
    pub async fn remove_collaborator(&self, repo_id: i64, user_id: i64) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM collaborators WHERE repo_id = ? AND user_id = ?")
            .bind(repo_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("collaborator".into()));
        }
        Ok(())
    }

    /// A repository's collaborators, by name.
    pub async fn list_collaborators(&self, repo_id: i64) -> Result<Vec<Collaborator>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT u.username, c.access FROM collaborators c JOIN users u ON u.id = c.user_id
             WHERE c.repo_id = ? ORDER BY u.username",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(username, a)| {
                Some(Collaborator {
                    username,
                    access: a.parse().ok()?,
                })
            })
            .collect())
    }
}
