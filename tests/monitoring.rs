//! End to end: monitoring. A real app (busybox httpd built from its
//! Dockerfile) deployed as real replicas, real requests through Slipway's
//! proxy, then `/metrics` (Prometheus text, parsed), the app's chart series
//! and the OpenAPI document. Docker must be reachable: the test panics
//! otherwise.

mod support;

#[path = "support/deployed.rs"]
mod deployed;

#[path = "support/prometheus.rs"]
mod prom;

use deployed::{docker, ServerGuard};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

/// Requests sent through the proxy.
const REQUESTS: usize = 40;

/// `GET /metrics` with `token`: the body.
fn scrape(server: &TestServer, token: &str) -> String {
    let res = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(token)
        .send()
        .expect("scrape");
    assert_eq!(res.status(), 200);
    res.text().unwrap()
}

/// The value of sample `name` whose labels include all of `labels` (summed when several match).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            _ => None,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn app_traffic_and_resources_show_in_prometheus_and_charts() {
    let (_tokio, _rt) = docker();
    let server = TestServer::start_with_env(&[("SLIPWAY_METRICS_INTERVAL_MS", "250")]);
    let mut guard = ServerGuard::new(server);
    let server = &guard.server;
    let token = server.setup_admin("alice");
    let api = |m: &str, p: &str, b: Option<Value>| server.api(m, p, Some(&token), b);

    // The API description is served and lists the app routes.
    let (s, doc) = server.api("GET", "/openapi.json", None, None);
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/apps/{app}/scale"]["put"].is_object(),
        "{doc}"
    );
    assert!(doc["paths"]["/apps/{app}/metrics"]["get"].is_object());

    // A repository with the app's files and an app with 2 replicas.
    let (s, b) = api(
        "POST",
        "/repos",
        Some(json!({"name": "web", "private": true})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = api(
        "POST",
        "/apps",
        Some(
            json!({"name": "web", "repo": "alice/web", "port": 8080, "replicas": 2,
                    "health": {"path": "/health", "interval_ms": 500}}),
        ),
    );
    assert_eq!(s, 201, "{b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("web");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("Dockerfile"), HTTPD_DOCKERFILE).unwrap();
    std::fs::write(dir.join("www/health"), "ok\n").unwrap();
    std::fs::write(dir.join("www/index.html"), "v1\n").unwrap();
    git_ok(&dir, &["add", "-A"]);
    git_ok(&dir, &["commit", "-q", "-m", "v1"]);
    let url = server.git_url("alice", "web", Some(("alice", &token)));
    git_ok(&dir, &["push", "-q", &url, "main"]);

    // Live: release 1 running on 2 healthy replicas.
    let start = Instant::now();
    loop {
        let (_, app) = api("GET", "/apps/web", None);
        let (_, replicas) = api("GET", "/apps/web/replicas", None);
        if guard.instance.is_none() {
            if let Some(c) = replicas[0]["container"].as_str() {
                guard.instance = deploy_instance_of(c);
            }
        }
        if app["status"] == "running" && app["ready"] == 2 && app["release"] == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "app not live: {app}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        guard.instance.is_some(),
        "replicas carry the instance label"
    );

    // Requests through the proxy: the counter moves by exactly that many.
    let before = sample(
        &scrape(server, &token),
        "slipway_app_requests_total",
        &[("app", "web")],
    )
    .unwrap_or(0.0);
    for _ in 0..REQUESTS {
        assert_eq!(proxy_get(&server.proxy_url, "web.localhost", "/").0, 200);
    }
    let text = scrape(server, &token);
    let total = sample(&text, "slipway_app_requests_total", &[("app", "web")]);
    assert_eq!(
        total,
        Some(before + REQUESTS as f64),
        "request counter\n{text}"
    );
    let ok = sample(
        &text,
        "slipway_app_requests_total",
        &[("app", "web"), ("class", "2xx")],
    );
    assert_eq!(ok, Some(before + REQUESTS as f64), "{text}");
    assert_eq!(
        sample(
            &text,
            "slipway_app_replicas",
            &[("app", "web"), ("state", "healthy")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "slipway_app_replicas", &[("app", "web")]),
        Some(2.0),
        "no starting or draining replica\n{text}"
    );
    assert!(
        text.contains("slipway_app_request_duration_seconds_bucket{"),
        "{text}"
    );
    // Prometheus' linter accepts the text format, app series included
    // (outside CI, skipped when promtool is not installed).
    if let Some(promtool) = prom::tool("promtool") {
        prom::assert_lint_clean(&promtool, &text);
    }
    assert!(
        sample(
            &text,
            "slipway_http_requests_total",
            &[("route_class", "api")]
        )
        .is_some_and(|v| v > 0.0),
        "{text}"
    );

    // Chart series: the sampler (every 250 ms) saw the traffic and the memory.
    let start = Instant::now();
    let series = loop {
        let (s, m) = api("GET", "/apps/web/metrics?range=5m&step=1s", None);
        assert_eq!(s, 200, "{m}");
        let nonzero = |k: &str| {
            m["series"][k]
                .as_array()
                .is_some_and(|pts| pts.iter().any(|p| p[1].as_f64() > Some(0.0)))
        };
        if nonzero("requests_per_s") && nonzero("memory_bytes") && nonzero("replicas") {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "series stayed empty: {m}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let pts = series["series"]["requests_per_s"].as_array().unwrap();
    let t = pts[0][0].as_i64().expect("unix seconds");
    assert!(t > 1_600_000_000, "{series}");
    let text = scrape(server, &token);
    assert!(
        sample(&text, "slipway_app_memory_bytes", &[("app", "web")]).is_some_and(|v| v > 0.0),
        "{text}"
    );
    // The single-node "node" counts these replicas and what they use.
    let (s, nodes) = api("GET", "/nodes", None);
    assert_eq!(s, 200, "{nodes}");
    assert_eq!(nodes[0]["replicas"], 2, "{nodes}");
    assert!(
        nodes[0]["used"]["memory_bytes"].as_u64() > Some(0),
        "measured memory of the replicas: {nodes}"
    );
    assert!(nodes[0]["used"]["cpu_millis"].is_u64(), "{nodes}");

    // Bad windows are refused with JSON errors; other users' apps are hidden.
    for q in [
        "range=1w",
        "range=2d",
        "step=0s",
        "range=1h&step=2h",
        "range=abc",
        "x=1",
    ] {
        let (s, b) = api("GET", &format!("/apps/web/metrics?{q}"), None);
        assert_eq!(s, 422, "{q}: {b}");
        assert_eq!(error_code(&b), "invalid");
    }
    let bob = server.create_user(&token, "bob");
    let (s, b) = server.api("GET", "/apps/web/metrics", Some(&bob), None);
    assert_eq!(s, 404, "{b}");
    let (s, _) = server.api("GET", "/apps/web/metrics", None, None);
    assert_eq!(s, 401);
}
