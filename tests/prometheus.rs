//! End to end: `/metrics` against Prometheus' own tools. A real server runs a
//! real code execution job (so counters, gauges and histograms all have
//! samples), then `/metrics` is fetched in each format the `Accept` header
//! can ask for and linted by `promtool check metrics`, and a real
//! `prometheus` server scrapes it with an admin token until the target is up
//! and the samples are queryable. Needs Debian's `prometheus` package (it
//! fails in CI without it) and Docker (for the job).

mod support;

#[path = "support/prometheus.rs"]
mod prom;

use prom::{assert_lint_clean, promtool_check, tool, PrometheusServer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

/// Runs one busybox-sh job to completion as `token`.
fn run_job(server: &TestServer, token: &str) {
    let (s, job) = server.api(
        "POST",
        "/exec/jobs",
        Some(token),
        Some(json!({"language": "busybox-sh",
                    "files": [{"name": "main.sh", "content": "echo hello"}]})),
    );
    assert_eq!(s, 202, "submit: {job}\n{}", server.log());
    let id = job["id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (s, job) = server.api("GET", &format!("/exec/jobs/{id}"), Some(token), None);
        assert_eq!(s, 200, "{job}");
        match job["state"].as_str().unwrap() {
            "pending" | "running" => {}
            "succeeded" => return,
            _ => panic!("job failed: {job}\n{}", server.log()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "job {id} did not finish: {job}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The counter families of an OpenMetrics body (`# TYPE name counter`).
fn counter_families(body: &str) -> HashSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn promtool_lints_both_formats_and_prometheus_scrapes() {
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        return;
    };
    let server = TestServer::start();
    let admin = server.setup_admin("admin");
    run_job(&server, &admin);

    // The classic text format: for `text/plain`, `*/*`, other types and no Accept.
    for accept in [
        Some("text/plain"),
        Some("text/plain; version=0.0.4"),
        Some("*/*"),
        Some("text/html, application/json;q=0.9"),
        None,
    ] {
        let (s, ctype, body) = prom::scrape(&server.url, &admin, accept);
        assert_eq!(s, 200, "{body}");
        assert_eq!(ctype, prom::TEXT_TYPE, "Accept: {accept:?}");
        assert!(!body.contains("# EOF"), "{body}");
        for name in [
            "slipway_http_requests_total{",
            "slipway_exec_rejected_total ",
            "slipway_exec_jobs_total{",
            "slipway_exec_run_seconds_bucket{",
            "slipway_exec_queue_length ",
        ] {
            assert!(body.contains(name), "{name} missing\n{body}");
        }
        assert_lint_clean(&promtool, &body);
    }

    // OpenMetrics only when asked for; Prometheus asks for it when it scrapes.
    for accept in [
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ] {
        let (s, ctype, body) = prom::scrape(&server.url, &admin, Some(accept));
        assert_eq!(s, 200, "{body}");
        assert_eq!(ctype, prom::OPENMETRICS_TYPE, "Accept: {accept}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        // promtool lints with the classic parser only: in OpenMetrics a
        // counter family `x` has samples `x_total`, which that parser reads
        // as a family of its own without help. Anything else is a real finding.
        let (_, out) = promtool_check(&promtool, &body);
        let counters = counter_families(&body);
        assert!(counters.contains("slipway_http_requests"), "{body}");
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let family = line
                .strip_suffix("_total no help text")
                .filter(|f| counters.contains(*f));
            assert!(
                family.is_some(),
                "promtool check metrics on OpenMetrics: {line}\n{out}\n--- body ---\n{body}"
            );
        }
    }

    // A real Prometheus scrapes it (Bearer token from a file, as documented).
    let target = server.url.trim_start_matches("http://").to_owned();
    let prom = PrometheusServer::start(&prometheus, &target, &admin);
    let up = prom.wait_for("target up", Duration::from_secs(90), |p| {
        let data = p.api("targets")?;
        let t = data["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["job"] == "slipway")?
            .clone();
        (t["health"] == "up" && t["lastError"] == "").then_some(t)
    });
    assert_eq!(up["scrapeUrl"], format!("{}/metrics", server.url), "{up}");
    let result = prom.wait_for(
        "samples of slipway_http_requests_total",
        Duration::from_secs(60),
        |p| {
            let data = p.api("query?query=slipway_http_requests_total")?;
            let result = data["result"].as_array()?.clone();
            (!result.is_empty()).then_some(result)
        },
    );
    assert!(
        result
            .iter()
            .any(|r| r["metric"]["route_class"] == "metrics" && r["metric"]["class"] == "2xx"),
        "{result:?}"
    );
    // Prometheus negotiated OpenMetrics: its metadata names the counter
    // family without `_total` (the classic format would name it with it),
    // with the help text.
    let meta: Value = prom.wait_for("metadata", Duration::from_secs(30), |p| {
        let data = p.api("metadata?metric=slipway_http_requests")?;
        let m = data["slipway_http_requests"].as_array()?.first()?.clone();
        Some(m)
    });
    assert_eq!(meta["type"], "counter", "{meta}");
    assert!(
        meta["help"]
            .as_str()
            .is_some_and(|h| h.starts_with("Requests Slipway's own HTTP server answered")),
        "{meta}"
    );
    // Histograms come through too.
    let buckets = prom.wait_for(
        "slipway_exec_run_seconds_bucket",
        Duration::from_secs(30),
        |p| {
            let data = p.api("query?query=slipway_exec_run_seconds_bucket")?;
            let r = data["result"].as_array()?.clone();
            (!r.is_empty()).then_some(r)
        },
    );
    assert!(
        buckets.iter().any(|b| b["metric"]["le"] == "+Inf"),
        "{buckets:?}"
    );
    drop(prom);
}
