//! Personal access tokens, kept as digests.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use slipway_domain::{Scope, TokenInfo, User};

/// What the store needs to keep a new token; the secret itself never reaches it.
pub struct NewTokenRecord<'a> {
    /// Owner.
    pub user_id: i64,
    /// The owner's label for it.
    pub name: &'a str,
    /// SHA-256 of the secret.
    pub digest: &'a str,
    /// First characters of the secret, kept to tell tokens apart.
    pub prefix: &'a str,
    /// What it may be used for.
    pub scopes: &'a [Scope],
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    prefix: String,
    scopes: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenInfo {
    fn from(r: TokenRow) -> Self {
        TokenInfo {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes: parse_scopes(&r.scopes),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
        }
    }
}

fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split(',').filter_map(|s| s.parse().ok()).collect()
}

fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// How stale `last_used_at` may get before a use writes it again: keeps every
/// authenticated request from being a database write.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

const TOKEN_COLUMNS: &str = "id, name, prefix, scopes, created_at, last_used_at, expires_at";

impl Store {
    /// Keeps a new token.
    pub async fn create_token(&self, t: NewTokenRecord<'_>) -> Result<TokenInfo, StoreError> {
        let row = sqlx::query_as::<_, TokenRow>(&format!(
            "INSERT INTO tokens (user_id, name, digest, prefix, scopes, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(t.user_id)
        .bind(t.name)
        .bind(t.digest)
        .bind(t.prefix)
        .bind(join_scopes(t.scopes))
        .bind(now())
        .bind(t.expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// Resolves a presented token (by digest) to its owner, if it is live: not
    /// revoked and not expired. Records the use.
    pub async fn authenticate_token(
        &self,
        digest: &str,
    ) -> Result<Option<(User, TokenInfo)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            token: TokenRow,
            user_id: i64,
            username: String,
            is_admin: bool,
            user_created_at: DateTime<Utc>,
        }
        let now = now();
        let row = sqlx::query_as::<_, Joined>(
            "SELECT t.id, t.name, t.prefix, t.scopes, t.created_at, t.last_used_at, t.expires_at,
                    u.id AS user_id, u.username, u.is_admin, u.created_at AS user_created_at
             FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.digest = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row
            .token
            .last_used_at
            .is_none_or(|t| now - t > LAST_USED_RESOLUTION)
        {
            sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(row.token.id)
                .execute(&self.pool)
                .await?;
        }
        let user = User {
            id: row.user_id,
            username: row.username,
            is_admin: row.is_admin,
            created_at: row.user_created_at,
        };
        Ok(Some((user, row.token.into())))
    }

    /// A user's live tokens, newest first.
    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query_as::<_, TokenRow>(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = ? AND revoked_at IS NULL ORDER BY id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Revokes one of a user's tokens; `NotFound` when it is not theirs or already gone.
    pub async fn revoke_token(&self, user_id: i64, token_id: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(token_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {token_id}")));
        }
        Ok(())
    }
}
