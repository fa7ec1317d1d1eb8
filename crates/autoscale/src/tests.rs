//! The evaluator against a real store, deployer and monitoring ring (no
//! Docker: scaling records the desired replicas, which is what it does).

use crate::{Autoscaler, PolicyInput};
use slipway_deploy::{DeployOptions, Deployer, Retention};
use slipway_domain::{AppRecord, AppSpec};
use slipway_metrics::{Monitor, MonitorOptions, SeriesKey};
use slipway_store::{NewRelease, Store};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    monitor: Monitor,
    deploy: Deployer,
    autoscaler: Autoscaler,
    app_id: i64,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let owner = store.create_user("alice", "x", true).await.unwrap();
        let repo = store.create_repo(owner.id, "web", "", false).await.unwrap();
        let app = store
            .create_app("web", repo.id, owner.id, &AppSpec::default())
            .await
            .unwrap();
        store
            .create_release(&NewRelease {
                app_id: app.id,
                image: "web:1".into(),
                sha: "0".repeat(40),
                pipeline_id: None,
                spec: AppSpec::default(),
                description: "deploy".into(),
                created_by: "alice".into(),
            })
            .await
            .unwrap();
        let deploy = Deployer::new(
            store.clone(),
            DeployOptions {
                limits: slipway_deploy::DEFAULT_APP_LIMITS,
                data_dir: dir.path().to_path_buf(),
                apps_domain: "localhost".into(),
                releases_kept: 3,
                app_logs: Retention::default(),
            },
        );
        let monitor = Monitor::new(
            deploy.clone(),
            MonitorOptions {
                interval: Duration::from_secs(1),
                ..Default::default()
            },
        );
        let autoscaler = Autoscaler::new(store.clone(), deploy.clone(), monitor.clone());
        Fixture {
            _dir: dir,
            store,
            monitor,
            deploy,
            autoscaler,
            app_id: app.id,
        }
    }

    async fn app(&self) -> AppRecord {
        self.store.app_by_id(self.app_id).await.unwrap().unwrap()
    }

    /// Records one requests/s sample now (a few ms apart from the last one).
    async fn sample(&self, rps: f64) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        self.monitor
            .series()
            .record(&SeriesKey::app("requests_per_s", "web"), t, rps);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    /// One evaluation; the replicas wanted after it.
    async fn look(&self) -> u32 {
        self.autoscaler.evaluate().await.unwrap();
        self.app().await.spec.replicas
    }

    /// alice sets [`policy`]`(max, down_s)` on `app`.
    async fn set_policy(&self, app: &AppRecord, max: i64, down_s: i64) {
        self.autoscaler
            .set(app, &policy(max, down_s), "alice")
            .await
            .unwrap();
    }

    async fn events(&self, kind: &str) -> Vec<String> {
        self.store
            .app_events(self.app_id, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.message)
            .collect()
    }
}

fn policy(max: i64, down_s: i64) -> PolicyInput {
    PolicyInput {
        min: Some(1),
        max,
        rps_per_replica: Some(5.0),
        scale_down_window_s: Some(down_s),
        ..Default::default()
    }
}

#[tokio::test]
async fn load_scales_up_at_once_and_down_after_the_window() {
    let f = Fixture::new().await;
    let app = f.app().await;
    f.set_policy(&app, 3, 0).await;

    // No samples: no decision.
    assert_eq!(f.look().await, 1);
    assert!(f
        .autoscaler
        .view(&app)
        .await
        .unwrap()
        .last_measurement
        .is_none());

    // 40 req/s at 5 per replica: 8 wanted, max 3, at most double per step.
    f.sample(40.0).await;
    assert_eq!(f.look().await, 2);
    // The same sample is not used twice.
    assert_eq!(f.look().await, 2);
    f.sample(40.0).await;
    assert_eq!(f.look().await, 3);
    let view = f.autoscaler.view(&f.app().await).await.unwrap();
    let m = view.last_measurement.unwrap();
    assert_eq!((m.total, m.recommended, m.replicas), (40.0, 3, 2));
    assert_eq!(view.last_decision.unwrap().to, 3);

    // Within 10 % of the target: nothing moves (3 × 5 = 15 req/s ± 1.5).
    f.sample(14.0).await;
    assert_eq!(f.look().await, 3);

    // No traffic (a sample of 0 is data): down to min.
    f.sample(0.0).await;
    assert_eq!(f.look().await, 1);

    let decisions = f.events("autoscale").await;
    assert_eq!(decisions.len(), 4, "{decisions:?}");
    assert!(
        decisions[0].starts_with("autoscaling on by alice: 1–3 replicas at 5 req/s per replica")
    );
    assert!(
        decisions[1].starts_with(
            "scaled up from 1 to 2: 40 req/s per replica over 1 (target 5), 3 recommended; at most double per step"
        ),
        "{decisions:?}"
    );
    assert!(decisions[2].starts_with("scaled up from 2 to 3: 20 req/s per replica over 2"));
    assert!(decisions[3].starts_with("scaled down from 3 to 1: 0 req/s per replica over 3"));
    // The autoscaler's changes are not doubled by generic scale events.
    assert!(f.events("scale").await.is_empty());
}

#[tokio::test]
async fn a_scale_down_waits_for_the_highest_recommendation_of_its_window() {
    let f = Fixture::new().await;
    let app = f.app().await;
    f.set_policy(&app, 3, 60).await;
    f.sample(40.0).await;
    assert_eq!(f.look().await, 2);
    f.sample(0.0).await;
    // The 3 recommended a moment ago holds for 60 s.
    assert_eq!(f.look().await, 2);
    f.sample(0.0).await;
    assert_eq!(f.look().await, 2);
}

#[tokio::test]
async fn manual_scales_are_clamped_and_ranges_enforced() {
    let f = Fixture::new().await;
    let app = f.app().await;
    f.set_policy(&app, 3, 60).await;
    f.deploy.scale(&app, 10, "alice").await.unwrap();
    assert_eq!(f.app().await.spec.replicas, 3);
    let scaled = f.events("scale").await;
    assert_eq!(
        scaled,
        vec!["scaled from 1 to 3 by alice (asked 10; autoscaling keeps 1–3)".to_string()]
    );
    // A narrower policy brings the replicas into its range at once, data or not.
    f.set_policy(&f.app().await, 2, 60).await;
    assert_eq!(f.look().await, 2);
    let last = f.events("autoscale").await.pop().unwrap();
    assert_eq!(
        last,
        "scaled down from 3 to 2: the policy keeps 1–2 replicas"
    );
    // Off: replicas stay, manual scales are free again.
    assert!(f.autoscaler.remove(&f.app().await, "alice").await.unwrap());
    assert!(!f.autoscaler.remove(&f.app().await, "alice").await.unwrap());
    f.deploy.scale(&f.app().await, 5, "alice").await.unwrap();
    assert_eq!(f.look().await, 5);
}
