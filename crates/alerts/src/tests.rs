//! The evaluator and delivery against a real store, a real (idle) deployer
//! and monitoring ring fed with samples, and a real HTTP receiver on
//! loopback.

use super::*;
use slipway_metrics::{MonitorOptions, SeriesKey};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    deploy: Deployer,
    monitor: Monitor,
    data_dir: PathBuf,
    app: AppRecord,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let store = Store::open(&data_dir.join("slipway.db")).await.unwrap();
        let user = store.create_user("alice", "x", true).await.unwrap();
        let repo = store.create_repo(user.id, "web", "", false).await.unwrap();
        let app = store
            .create_app("web", repo.id, user.id, &Default::default())
            .await
            .unwrap();
        let deploy = Deployer::new(
            store.clone(),
            slipway_deploy::DeployOptions {
                limits: slipway_deploy::DEFAULT_APP_LIMITS,
                data_dir: data_dir.clone(),
                apps_domain: "localhost".into(),
                releases_kept: 3,
                app_logs: Default::default(),
            },
        );
        let monitor = Monitor::new(
            deploy.clone(),
            MonitorOptions {
                interval: Duration::from_secs(1),
                ..Default::default()
            },
        );
        Fixture {
            _dir: dir,
            store,
            deploy,
            monitor,
            data_dir,
            app,
        }
    }

    /// A fresh alerting service on the same store (as after a restart).
    fn alerts(&self) -> Alerts {
        Alerts::new(
            self.store.clone(),
            self.deploy.clone(),
            self.monitor.clone(),
            AlertOptions {
                data_dir: self.data_dir.clone(),
                interval: Duration::from_secs(1),
                // The receivers of these tests listen on loopback.
                egress: slipway_egress::EgressPolicy::parse(&["127.0.0.1"]).unwrap(),
            },
        )
    }

    /// One sample per second over `from_s..to_s` (seconds → ms).
    fn traffic(&self, from_s: i64, to_s: i64, requests: f64, errors: f64) {
        let s = self.monitor.series();
        for t in from_s..to_s {
            s.record(&SeriesKey::app("requests_per_s", "web"), t * 1000, requests);
            s.record(&SeriesKey::app("errors_per_s", "web"), t * 1000, errors);
        }
    }

    async fn events(&self) -> Vec<AlertEventRow> {
        self.store.alert_events(self.app.id, 100).await.unwrap()
    }
}

fn error_rule(for_s: i64) -> RuleInput {
    RuleInput {
        kind: Some("error_rate".into()),
        threshold: Some(10.0),
        window_s: Some(5),
        min_requests: Some(5),
        for_s: Some(for_s),
        enabled: None,
    }
}

#[tokio::test]
async fn an_error_rate_alert_fires_once_and_resolves_once() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    let rule = alerts.add_rule(&f.app, &error_rule(0)).await.unwrap();
    assert_eq!(rule.status.state, "inactive");

    // Too little traffic: no verdict, nothing fires.
    f.traffic(1, 11, 0.5, 0.5);
    alerts.evaluate_at(10_000).await.unwrap();
    assert!(f.events().await.is_empty());

    // 40 % errors over the window: fires, and further ticks change nothing.
    f.traffic(11, 21, 10.0, 4.0);
    for _ in 0..3 {
        alerts.evaluate_at(20_000).await.unwrap();
    }
    let events = f.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].state, "firing");
    assert_eq!(events[0].value, 40.0);
    assert_eq!(events[0].threshold, 10.0);
    let rules = alerts.rules(&f.app).await.unwrap();
    assert_eq!(rules[0].status.state, "firing");
    assert_eq!(rules[0].status.value, Some(40.0));

    // No traffic at all: it stays firing (nothing proved it healed).
    alerts.evaluate_at(100_000).await.unwrap();
    assert_eq!(f.events().await[0].state, "firing");

    // Clean traffic: resolved, once.
    f.traffic(101, 111, 10.0, 0.0);
    alerts.evaluate_at(110_000).await.unwrap();
    alerts.evaluate_at(110_000).await.unwrap();
    let events = f.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].state, "resolved");
    assert_eq!(events[0].value, 0.0);
    assert!(events[0].resolved_at.is_some());
}

#[tokio::test]
async fn a_firing_alert_survives_a_restart_without_firing_again() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    alerts.add_rule(&f.app, &error_rule(0)).await.unwrap();
    f.traffic(1, 11, 10.0, 5.0);
    alerts.evaluate_at(10_000).await.unwrap();
    assert_eq!(f.events().await.len(), 1);

    // A new service loads the open alert: the same verdict fires nothing.
    let restarted = f.alerts();
    restarted.load().await.unwrap();
    let rules = restarted.rules(&f.app).await.unwrap();
    assert_eq!(rules[0].status.state, "firing");
    restarted.evaluate_at(10_000).await.unwrap();
    assert_eq!(f.events().await.len(), 1);

    // Even without loading, the store refuses a second open alert per rule.
    let forgetful = f.alerts();
    forgetful.evaluate_at(10_000).await.unwrap();
    let events = f.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        forgetful.rules(&f.app).await.unwrap()[0].status.state,
        "firing"
    );
    // And the one that took it over resolves it.
    f.traffic(11, 21, 10.0, 0.0);
    forgetful.evaluate_at(20_000).await.unwrap();
    assert_eq!(f.events().await[0].state, "resolved");
}

#[tokio::test]
async fn pending_waits_for_the_for_duration() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    alerts.add_rule(&f.app, &error_rule(3600)).await.unwrap();
    f.traffic(1, 11, 10.0, 5.0);
    alerts.evaluate_at(10_000).await.unwrap();
    let rules = alerts.rules(&f.app).await.unwrap();
    assert_eq!(rules[0].status.state, "pending");
    assert!(rules[0].status.since.is_some());
    assert!(f.events().await.is_empty());
}

#[tokio::test]
async fn deleting_or_disabling_a_firing_rule_resolves_its_alert() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    let a = alerts.add_rule(&f.app, &error_rule(0)).await.unwrap();
    let b = alerts.add_rule(&f.app, &error_rule(0)).await.unwrap();
    f.traffic(1, 11, 10.0, 5.0);
    alerts.evaluate_at(10_000).await.unwrap();
    assert_eq!(f.store.firing_alert_events().await.unwrap().len(), 2);

    assert!(alerts.delete_rule(&f.app, a.id).await.unwrap());
    let off = RuleInput {
        enabled: Some(false),
        ..Default::default()
    };
    let b = alerts.update_rule(&f.app, b.id, &off).await.unwrap();
    assert_eq!(b.status.state, "disabled");
    alerts.evaluate_at(10_000).await.unwrap();
    let events = f.events().await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.state == "resolved"), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.rule_id.is_none()).count(), 1);
}

#[tokio::test]
async fn rules_per_app_are_bounded_and_validated() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    let bad = RuleInput {
        kind: Some("disk".into()),
        ..Default::default()
    };
    assert!(matches!(
        alerts.add_rule(&f.app, &bad).await,
        Err(AlertError::Invalid(m)) if m.contains("unknown alert kind")
    ));
    for _ in 0..MAX_RULES_PER_APP {
        alerts.add_rule(&f.app, &error_rule(0)).await.unwrap();
    }
    assert!(matches!(
        alerts.add_rule(&f.app, &error_rule(0)).await,
        Err(AlertError::Invalid(m)) if m.contains("at most") || m.contains("most allowed")
    ));
    assert!(matches!(
        alerts.update_rule(&f.app, 9999, &error_rule(0)).await,
        Err(AlertError::NotFound(_))
    ));
}

#[test]
fn webhook_urls_are_checked() {
    assert!(check_url("http://127.0.0.1:9/hook").is_ok());
    assert!(check_url("https://example.com/a?b=c").is_ok());
    for bad in [
        "ftp://example.com/",
        "/relative",
        "http://user:pw@example.com/",
        "not a url",
        "file:///etc/passwd",
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
    assert!(check_url(&format!("http://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
}

/// One HTTP request read off a connection: (headers lowercased, body).
async fn read_request(s: &mut tokio::net::TcpStream) -> (HashMap<String, String>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    (headers, body)
}

#[tokio::test]
async fn deliveries_are_signed_retried_and_recorded() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    alerts.set_public_url("http://slipway.test:7700/");
    // A receiver that refuses the first request and accepts the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for i in 0.. {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (headers, body) = read_request(&mut s).await;
            let status = if i == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let _ = tx.send((headers, body));
        }
    });
    let url = format!("http://{addr}/hook");
    for bad in ["", &"x".repeat(1025)] {
        assert!(alerts.add_webhook(&f.app, &url, bad).await.is_err());
    }
    let hook = alerts.add_webhook(&f.app, &url, "s3cret").await.unwrap();
    let stored = f.store.alert_webhooks(f.app.id).await.unwrap();
    assert!(!stored[0].secret.contains("s3cret"), "sealed at rest");

    alerts.add_rule(&f.app, &error_rule(0)).await.unwrap();
    f.traffic(1, 11, 10.0, 5.0);
    alerts.evaluate_at(10_000).await.unwrap();

    let mut got = Vec::new();
    while got.len() < 2 {
        let r = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("the receiver got the retried delivery")
            .unwrap();
        got.push(r);
    }
    for (headers, body) in &got {
        assert_eq!(headers["x-slipway-event"], "alert");
        assert!(slipway_auth::signing::verify(
            "s3cret",
            body,
            &headers["x-slipway-signature-256"]
        ));
    }
    assert_eq!(got[0].1, got[1].1, "a retry sends the same body");
    assert_eq!(
        got[0].0["x-slipway-delivery"], got[1].0["x-slipway-delivery"],
        "a retry keeps its delivery id"
    );
    let payload: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(payload["state"], "firing");
    assert_eq!(payload["app"], "web");
    assert_eq!(payload["kind"], "error_rate");
    assert_eq!(payload["value"], 50.0);
    assert_eq!(payload["threshold"], 10.0);
    assert_eq!(payload["unit"], "%");
    assert_eq!(payload["url"], "http://slipway.test:7700/ui/app?name=web");
    assert!(payload["started_at"].is_string() && payload["resolved_at"].is_null());

    let start = std::time::Instant::now();
    let d = loop {
        let d = alerts.deliveries(&f.app, 10).await.unwrap();
        if d[0].status != "pending" {
            break d;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].status, "delivered");
    assert_eq!(d[0].attempts, 2);
    assert_eq!(d[0].response_status, Some(200));
    assert_eq!(d[0].webhook_id, hook.id);

    // An inactive webhook gets nothing; a ping reaches an active one at once.
    alerts
        .set_webhook_active(&f.app, hook.id, false)
        .await
        .unwrap();
    f.traffic(11, 21, 10.0, 0.0);
    alerts.evaluate_at(20_000).await.unwrap();
    assert_eq!(f.events().await[0].state, "resolved");
    alerts
        .set_webhook_active(&f.app, hook.id, true)
        .await
        .unwrap();
    let ping = alerts.test_webhook(&f.app, hook.id).await.unwrap();
    assert_eq!((ping.status.as_str(), ping.attempts), ("delivered", 1));
    let (headers, body) = rx.recv().await.unwrap();
    assert_eq!(headers["x-slipway-event"], "ping");
    assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["event"] == "ping");
    assert!(rx.try_recv().is_err(), "nothing was sent while inactive");
}

#[tokio::test]
async fn an_unreachable_webhook_fails_after_its_attempts() {
    let f = Fixture::new().await;
    let alerts = f.alerts();
    // A port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hook = alerts
        .add_webhook(&f.app, &format!("http://{addr}/"), "k")
        .await
        .unwrap();
    let ping = alerts.test_webhook(&f.app, hook.id).await.unwrap();
    assert_eq!(ping.status, "failed");
    assert_eq!(ping.attempts, 1);
    assert!(ping.response_status.is_none());
    let e = ping.error.unwrap();
    assert!(
        !e.contains(&addr.to_string()),
        "errors leave the URL out: {e}"
    );
}
