//! Accounts.

use crate::{error::is_unique_violation, now, Store, StoreError};
use slipway_domain::User;

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    is_admin: bool,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            is_admin: r.is_admin,
            created_at: r.created_at,
        }
    }
}

const USER_COLUMNS: &str = "id, username, is_admin, created_at";

impl Store {
    /// Creates an account; `Conflict` when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<User, StoreError> {
        let result = sqlx::query_as::<_, UserRow>(&format!(
            "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?) RETURNING {USER_COLUMNS}"
        ))
        .bind(username)
        .bind(password_hash)
        .bind(is_admin)
        .bind(now())
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(row) => Ok(row.into()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "user {username:?} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Looks an account up by name.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as::<_, UserRow>(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Looks an account up by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    /// The account and its password hash, for checking a login.
    pub async fn user_credentials(
        &self,
        username: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        let row: Option<(i64, String, bool, chrono::DateTime<chrono::Utc>, String)> =
            sqlx::query_as(
                "SELECT id, username, is_admin, created_at, password_hash FROM users WHERE username = ?",
            )
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(id, username, is_admin, created_at, hash)| {
            (
                User {
                    id,
                    username,
                    is_admin,
                    created_at,
                },
                hash,
            )
        }))
    }

    /// Every account, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query_as::<_, UserRow>(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// How many accounts exist; zero means the server still awaits its first admin.
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Replaces an account's password hash.
    pub async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user".into()));
        }
        Ok(())
    }

    /// Deletes an account with its tokens, repositories and grants.
    pub async fn delete_user(&self, user_id: i64) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user".into()));
        }
        Ok(())
    }
}
