//! End to end: horizontal autoscaling of a real app. The busybox httpd app
//! runs as a real replica; a policy of 5 requests/s per replica (1–3
//! replicas, 3 s scale-down window) is set with the CLI; a bounded load loop
//! (~40 requests/s for at most 60 s) through Slipway's proxy scales it up to
//! 3 healthy replicas; once the load stops it goes back to 1 after the
//! window. Every decision is an app event. Bad input, other users and the
//! CLI are checked too. Docker must be reachable: the test panics otherwise.

mod support;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/deployed.rs"]
mod deployed;

use browser::{browser, login_and_leave, until, Driver};
use deployed::{docker, Deployed};
use fantoccini::Locator;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// Polls `GET /apps/web` until `ok` holds; panics after `limit`.
fn wait_app(d: &Deployed, what: &str, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (_, app) = d.api("GET", "/apps/web", None);
        if ok(&app) {
            return app;
        }
        let (_, policy) = d.api("GET", "/apps/web/autoscale", None);
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}: app {app}\nautoscale {policy}\n{}",
            d.server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Requests through the proxy at about `per_s` a second, from one thread,
/// until `stop` is set or `limit` has passed (the loop is bounded either way).
fn load(
    proxy: String,
    per_s: u64,
    limit: Duration,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let every = Duration::from_millis(1000 / per_s);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            let (status, _) = proxy_get(&proxy, "web.localhost", "/");
            if status == 200 {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            next += every;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

fn events(d: &Deployed, kind: &str) -> Vec<String> {
    let (s, list) = d.api("GET", "/apps/web/events", None);
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn load_scales_an_app_up_and_back_down() {
    let (tokio, _rt) = docker();
    let d = Deployed::new(&[("SLIPWAY_METRICS_INTERVAL_MS", "1000")], json!({}));
    d.push("v1");
    d.wait_live(1, Duration::from_secs(180));

    // Off at first; the view still shows the replicas.
    let (s, off) = d.api("GET", "/apps/web/autoscale", None);
    assert_eq!(s, 200, "{off}");
    assert_eq!(off["enabled"], false, "{off}");
    assert_eq!(off["replicas"], 1, "{off}");

    // Bad input: readable 422s in the JSON error shape.
    for (body, says) in [
        (
            json!({"min": 3, "max": 2, "rps_per_replica": 5}),
            "min (3) must not be above max (2)",
        ),
        (
            json!({"max": 3, "cpu_percent": 50, "rps_per_replica": 5}),
            "not both",
        ),
        (json!({"max": 3}), "give a target"),
        (
            json!({"max": 51, "rps_per_replica": 5}),
            "max must be between 1 and 50",
        ),
        (
            json!({"min": 0, "max": 3, "rps_per_replica": 5}),
            "min must be between 1 and 50",
        ),
        (
            json!({"max": 3, "rps_per_replica": 0}),
            "rps_per_replica must be above 0",
        ),
        (
            json!({"max": 3, "cpu_percent": 5000}),
            "cpu_percent must be above 0 and at most 1000",
        ),
        (
            json!({"max": 3, "rps_per_replica": 5, "scale_down_window_s": -1}),
            "scale_down_window_s",
        ),
        (
            json!({"max": 3, "rps_per_replica": 5, "replicas": 2}),
            "replicas",
        ),
    ] {
        let (s, b) = d.api("PUT", "/apps/web/autoscale", Some(body.clone()));
        assert_eq!(s, 422, "{body}: {b}");
        assert_eq!(error_code(&b), "invalid", "{body}: {b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let good = json!({"min": 1, "max": 3, "rps_per_replica": 5, "scale_down_window_s": 3});
    let (s, b) = d.api("PUT", "/apps/nope/autoscale", Some(good.clone()));
    assert_eq!((s, error_code(&b)), (404, "not_found".to_string()), "{b}");
    let (s, b) = d.api("GET", "/apps/nope/autoscale", None);
    assert_eq!(s, 404, "{b}");
    let (s, b) = d.api("DELETE", "/apps/web/autoscale", None);
    assert_eq!(s, 404, "turning off what is off: {b}");

    // A reader sees the policy but cannot change it; an outsider sees nothing.
    let carol = d.server.create_user(&d.token, "carol");
    let bob = d.server.create_user(&d.token, "bob");
    let (s, b) = d.api(
        "PUT",
        "/repos/alice/web/collaborators/carol",
        Some(json!({"access": "read"})),
    );
    assert!(s == 200 || s == 204, "{b}");
    let (s, b) = d
        .server
        .api("GET", "/apps/web/autoscale", Some(&carol), None);
    assert_eq!(s, 200, "{b}");
    for m in ["PUT", "DELETE"] {
        let (s, b) = d
            .server
            .api(m, "/apps/web/autoscale", Some(&carol), Some(good.clone()));
        assert_eq!(
            (s, error_code(&b)),
            (403, "forbidden".to_string()),
            "reader {m}: {b}"
        );
        let (s, b) = d
            .server
            .api(m, "/apps/web/autoscale", Some(&bob), Some(good.clone()));
        assert_eq!(s, 404, "outsider {m}: {b}");
    }
    let (s, b) = d.server.api("GET", "/apps/web/autoscale", None, None);
    assert_eq!(s, 401, "{b}");

    // On, with the CLI: 1–3 replicas at 5 requests/s each, 3 s down window.
    let home = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: home.path().join("cli.toml"),
        server: d.server.url.clone(),
        token: Some(d.token.clone()),
    };
    let err = cli.fails(
        &["autoscale", "web", "--min", "3", "--max", "2", "--rps", "5"],
        None,
    );
    assert!(err.contains("min (3) must not be above max (2)"), "{err}");
    let err = cli.fails(&["autoscale", "web", "--max", "2"], None);
    assert!(err.contains("--cpu") && err.contains("--rps"), "{err}");
    let err = cli.fails(
        &[
            "autoscale",
            "web",
            "--max",
            "2",
            "--rps",
            "5",
            "--down-window",
            "soon",
        ],
        None,
    );
    assert!(err.contains("--down-window must be a duration"), "{err}");
    let on = cli.json(&[
        "autoscale",
        "web",
        "--min",
        "1",
        "--max",
        "3",
        "--rps",
        "5",
        "--down-window",
        "3s",
    ]);
    assert_eq!(on["enabled"], true, "{on}");
    assert_eq!(
        (
            &on["min"],
            &on["max"],
            &on["rps_per_replica"],
            &on["scale_down_window_s"]
        ),
        (&json!(1), &json!(3), &json!(5.0), &json!(3)),
        "{on}"
    );
    assert_eq!(on["scale_up_window_s"], 0, "{on}");

    // Load: ~40 requests/s through the proxy, at most 60 s.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let loader = load(
        d.server.proxy_url.clone(),
        40,
        Duration::from_secs(60),
        stop.clone(),
        sent.clone(),
    );
    wait_app(
        &d,
        "3 healthy replicas under load",
        Duration::from_secs(55),
        |a| a["replicas"] == 3 && a["ready"] == 3,
    );
    let up = started.elapsed();
    let (_, view) = d.api("GET", "/apps/web/autoscale", None);
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let stopped = Instant::now();
    let m = &view["last_measurement"];
    assert_eq!(m["metric"], "rps_per_replica", "{view}");
    assert!(m["total"].as_f64().unwrap() > 5.0, "{view}");
    assert!(view["last_decision"]["to"].as_u64().unwrap() >= 2, "{view}");

    // No load: back to 1 once the 3 s window has passed.
    wait_app(
        &d,
        "1 replica after the load",
        Duration::from_secs(60),
        |a| a["replicas"] == 1 && a["ready"] == 1,
    );
    let down = stopped.elapsed();
    // The last high recommendation is at most one 1 s interval older than
    // the stop, and it holds for 3 s: no scale-down within 2 s of the stop.
    assert!(
        down >= Duration::from_secs(2),
        "scaled down before the 3 s window: {down:?}"
    );
    println!(
        "autoscale: {} requests sent; load start -> 3 healthy replicas {:.1} s; load stop -> 1 replica {:.1} s",
        sent.load(Ordering::Relaxed),
        up.as_secs_f64(),
        down.as_secs_f64()
    );

    // Every decision is an app event; the generic scale events are not doubled.
    let decisions = events(&d, "autoscale");
    assert!(
        decisions[0].starts_with("autoscaling on by alice: 1–3 replicas at 5 req/s"),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|e| e.starts_with("scaled up from 1 to ")
                && e.contains("req/s per replica over 1 (target 5)")),
        "{decisions:?}"
    );
    assert!(
        decisions.iter().any(|e| e.contains(" to 3: ")),
        "{decisions:?}"
    );
    assert!(
        decisions.iter().any(|e| e.starts_with("scaled down from ")
            && e.contains(" to 1: ")
            && e.contains("highest over the last 3 s")),
        "{decisions:?}"
    );
    assert!(events(&d, "scale").is_empty(), "{:?}", events(&d, "scale"));
    let text = cli.ok(&["events", "web"], None);
    assert!(
        text.contains("autoscale") && text.contains("scaled down from"),
        "{text}"
    );

    // The app page shows the policy and the last decision.
    let driver = Driver::start();
    let client = tokio.block_on(browser(&driver));
    let c = &client;
    let base = d.server.url.clone();
    let line = tokio.block_on(async {
        login_and_leave(c, &base).await;
        c.goto(&format!("{base}/ui/app?name=web")).await.unwrap();
        until(
            Duration::from_secs(15),
            "the autoscale line",
            || async move {
                let t = c
                    .find(Locator::Id("autoscale"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                t.contains(
                    "Autoscaling 1–3 replicas at 5 req/s per replica; scale-down window 3 s.",
                )
                .then_some(t)
            },
        )
        .await
    });
    assert!(line.contains("Last decision: scaled down from"), "{line}");
    tokio.block_on(client.close()).expect("close the browser");

    // The CLI shows it; a manual scale is clamped into the range, and said so.
    let shown = cli.ok(&["autoscale", "web"], None);
    assert!(
        shown.contains("Autoscaling web: 1–3 replicas at 5 req/s per replica.")
            && shown.contains("Last decision: scaled down from"),
        "{shown}"
    );
    let said = cli.ok(&["scale", "web=5"], None);
    assert!(said.contains("to 3 replica(s), not 5"), "{said}");
    let scaled = events(&d, "scale");
    assert!(
        scaled
            .iter()
            .any(|e| e.contains("to 3 by alice (asked 5; autoscaling keeps 1–3)")),
        "{scaled:?}"
    );

    // Off: replicas stay; a second --off is one readable error.
    let off = cli.json(&["autoscale", "web", "--off"]);
    assert_eq!(off["enabled"], false, "{off}");
    let err = cli.fails(&["autoscale", "web", "--off"], None);
    assert!(err.contains("autoscaling is not on for app web"), "{err}");
    assert!(cli
        .ok(&["autoscale", "web"], None)
        .contains("Autoscaling is off for web"));
    assert!(events(&d, "autoscale")
        .last()
        .unwrap()
        .starts_with("autoscaling off by alice; replicas stay at"));
}
