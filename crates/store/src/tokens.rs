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
    /// Sliding expiry (login tokens): each use moves `expires_at` to now plus
    /// this many seconds. `None`: `expires_at` is fixed.
    pub renew_secs: Option<i64>,
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
    renew_secs: Option<i64>,
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
            renews_on_use: r.renew_secs.is_some(),
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

/// How far a sliding expiry must have moved before a use writes it again:
/// at most one write an hour per login token.
pub const RENEW_RESOLUTION: Duration = Duration::hours(1);

const TOKEN_COLUMNS: &str =
    "id, name, prefix, scopes, created_at, last_used_at, expires_at, renew_secs";

impl Store {
    /// Keeps a new token.
    pub async fn create_token(&self, t: NewTokenRecord<'_>) -> Result<TokenInfo, StoreError> {
        let row = sqlx::query_as::<_, TokenRow>(&format!(
            "INSERT INTO tokens (user_id, name, digest, prefix, scopes, created_at, expires_at, renew_secs)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(t.user_id)
        .bind(t.name)
        .bind(t.digest)
        .bind(t.prefix)
        .bind(join_scopes(t.scopes))
        .bind(now())
        .bind(t.expires_at)
        .bind(t.renew_secs)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// Resolves a presented token (by digest) to its owner, if it is live: not
    /// revoked and not expired. Records the use, and pushes a sliding
    /// expiry forward (both written at most once per their resolution).
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
            "SELECT t.id, t.name, t.prefix, t.scopes, t.created_at, t.last_used_at, t.expires_at, t.renew_secs,
                    u.id AS user_id, u.username, u.is_admin, u.created_at AS user_created_at
             FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.digest = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(mut row) = row else { return Ok(None) };
        let renewed = row
            .token
            .renew_secs
            .map(|secs| now + Duration::seconds(secs))
            .filter(|new| {
                row.token
                    .expires_at
                    .is_none_or(|old| *new - old > RENEW_RESOLUTION)
            });
        if renewed.is_some()
            || row
                .token
                .last_used_at
                .is_none_or(|t| now - t > LAST_USED_RESOLUTION)
        {
            sqlx::query(
                "UPDATE tokens SET last_used_at = ?, expires_at = COALESCE(?, expires_at) WHERE id = ?",
            )
            .bind(now)
            .bind(renewed)
            .bind(row.token.id)
            .execute(&self.pool)
            .await?;
            row.token.last_used_at = Some(now);
            if renewed.is_some() {
                row.token.expires_at = renewed;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn token(store: &Store, user: i64, digest: &str, renew: Option<i64>) -> TokenInfo {
        store
            .create_token(NewTokenRecord {
                user_id: user,
                name: "t",
                digest,
                prefix: "slp_x",
                scopes: &[Scope::Read],
                expires_at: Some(now() + Duration::seconds(renew.unwrap_or(60))),
                renew_secs: renew,
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sliding_expiry_moves_on_use_at_most_once_per_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let user = store.create_user("alice", "x", false).await.unwrap();
        let day = 24 * 3600;
        let fixed = token(&store, user.id, "d1", None).await;
        let sliding = token(&store, user.id, "d2", Some(day)).await;
        assert!(!fixed.renews_on_use && sliding.renews_on_use);
        // Fresh: within the resolution, a use writes no new expiry.
        let (_, seen) = store.authenticate_token("d2").await.unwrap().unwrap();
        assert_eq!(seen.expires_at, sliding.expires_at);
        // Pretend it was issued two hours ago: the next use slides it.
        let old = now() + Duration::seconds(day) - Duration::hours(2);
        sqlx::query("UPDATE tokens SET expires_at = ? WHERE digest = 'd2'")
            .bind(old)
            .execute(&store.pool)
            .await
            .unwrap();
        let (_, seen) = store.authenticate_token("d2").await.unwrap().unwrap();
        let slid = seen.expires_at.unwrap();
        assert!(slid - old > Duration::minutes(119), "{old} → {slid}");
        assert_eq!(
            store.list_tokens(user.id).await.unwrap()[0].expires_at,
            Some(slid)
        );
        // A fixed expiry never moves, and a passed one no longer authenticates.
        let (_, seen) = store.authenticate_token("d1").await.unwrap().unwrap();
        assert_eq!(seen.expires_at, fixed.expires_at);
        sqlx::query("UPDATE tokens SET expires_at = ? WHERE digest = 'd2'")
            .bind(now() - Duration::seconds(1))
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(store.authenticate_token("d2").await.unwrap().is_none());
    }
}
