//! Autoscale policies: at most one per app. The model, its validation and
//! the evaluator live in `crates/autoscale`; rows here are plain.

use crate::{now, Store, StoreError};
use chrono::{DateTime, Utc};

/// The settings of an app's autoscale policy (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleSettings {
    /// Fewest replicas (≥ 1).
    pub min_replicas: i64,
    /// Most replicas (≥ min).
    pub max_replicas: i64,
    /// Target CPU % per replica (exclusive with `rps_per_replica`).
    pub cpu_percent: Option<f64>,
    /// Target requests/s per replica (exclusive with `cpu_percent`).
    pub rps_per_replica: Option<f64>,
    /// Seconds of recommendations a scale-down considers.
    pub scale_down_window_s: i64,
    /// Seconds of recommendations a scale-up considers.
    pub scale_up_window_s: i64,
}

/// A stored autoscale policy.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AutoscaleRow {
    /// The app it scales.
    pub app_id: i64,
    /// Fewest replicas.
    pub min_replicas: i64,
    /// Most replicas.
    pub max_replicas: i64,
    /// Target CPU % per replica, when the policy follows CPU.
    pub cpu_percent: Option<f64>,
    /// Target requests/s per replica, when the policy follows traffic.
    pub rps_per_replica: Option<f64>,
    /// Scale-down stabilisation window, seconds.
    pub scale_down_window_s: i64,
    /// Scale-up stabilisation window, seconds.
    pub scale_up_window_s: i64,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Sets (creates or replaces) an app's autoscale policy.
    pub async fn set_autoscale(
        &self,
        app_id: i64,
        s: &AutoscaleSettings,
    ) -> Result<AutoscaleRow, StoreError> {
        let at = now();
        Ok(sqlx::query_as::<_, AutoscaleRow>(
            "INSERT INTO autoscale_policies (app_id, min_replicas, max_replicas, cpu_percent,
                 rps_per_replica, scale_down_window_s, scale_up_window_s, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (app_id) DO UPDATE SET min_replicas = excluded.min_replicas,
                 max_replicas = excluded.max_replicas, cpu_percent = excluded.cpu_percent,
                 rps_per_replica = excluded.rps_per_replica,
                 scale_down_window_s = excluded.scale_down_window_s,
                 scale_up_window_s = excluded.scale_up_window_s, updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(app_id)
        .bind(s.min_replicas)
        .bind(s.max_replicas)
        .bind(s.cpu_percent)
        .bind(s.rps_per_replica)
        .bind(s.scale_down_window_s)
        .bind(s.scale_up_window_s)
        .bind(at)
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// An app's autoscale policy, if it has one.
    pub async fn autoscale(&self, app_id: i64) -> Result<Option<AutoscaleRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, AutoscaleRow>("SELECT * FROM autoscale_policies WHERE app_id = ?")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every policy, for the evaluator.
    pub async fn autoscale_policies(&self) -> Result<Vec<AutoscaleRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, AutoscaleRow>("SELECT * FROM autoscale_policies ORDER BY app_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Turns autoscaling of an app off; false when it was not on.
    pub async fn delete_autoscale(&self, app_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM autoscale_policies WHERE app_id = ?")
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_domain::AppSpec;

    #[tokio::test]
    async fn policies_are_set_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let owner = store.create_user("alice", "x", true).await.unwrap();
        let repo = store.create_repo(owner.id, "web", "", false).await.unwrap();
        let app = store
            .create_app("web", repo.id, owner.id, &AppSpec::default())
            .await
            .unwrap();
        assert_eq!(store.autoscale(app.id).await.unwrap(), None);
        let mut s = AutoscaleSettings {
            min_replicas: 1,
            max_replicas: 3,
            cpu_percent: None,
            rps_per_replica: Some(5.0),
            scale_down_window_s: 300,
            scale_up_window_s: 0,
        };
        let row = store.set_autoscale(app.id, &s).await.unwrap();
        assert_eq!(row.rps_per_replica, Some(5.0));
        s.cpu_percent = Some(70.0);
        s.rps_per_replica = None;
        s.max_replicas = 5;
        let row = store.set_autoscale(app.id, &s).await.unwrap();
        assert_eq!((row.cpu_percent, row.max_replicas), (Some(70.0), 5));
        assert_eq!(store.autoscale_policies().await.unwrap().len(), 1);
        // The schema refuses both targets at once.
        s.rps_per_replica = Some(1.0);
        assert!(store.set_autoscale(app.id, &s).await.is_err());
        assert!(store.delete_autoscale(app.id).await.unwrap());
        assert!(!store.delete_autoscale(app.id).await.unwrap());
        assert!(store.autoscale_policies().await.unwrap().is_empty());
    }
}
