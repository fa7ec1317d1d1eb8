//! End to end: alerts against a real failing app. A busybox httpd app whose
//! CGI scripts answer 500 (`/cgi-bin/fail`) or fail their health check on
//! demand (`/cgi-bin/sick`, `/cgi-bin/heal`), deployed as a real replica;
//! real requests through Slipway's proxy; a webhook receiver on 127.0.0.1
//! that checks every signature with its own HMAC. An error-rate alert fires,
//! survives a server restart without firing again, and resolves; a
//! replica-down alert fires when the replica fails its health check and
//! resolves when it heals. Docker must be reachable: the test panics otherwise.

mod support;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/deployed.rs"]
mod deployed;

use browser::{browser, login_and_leave, texts, until, Driver};
use deployed::{docker, ServerGuard};
use fantoccini::Locator;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const SECRET: &str = "receiver-secret";

/// CGI scripts of the app (busybox httpd runs /www/cgi-bin/*).
const FAIL: &str = "#!/bin/sh\nprintf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nboom\\n'\n";
const HEALTH: &str = "#!/bin/sh\nif [ -e /tmp/sick ]; then\n  printf 'Status: 503 Service Unavailable\\r\\nContent-Type: text/plain\\r\\n\\r\\nsick\\n'\nelse\n  printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\nfi\n";
const SICK: &str =
    "#!/bin/sh\ntouch /tmp/sick\nprintf 'Content-Type: text/plain\\r\\n\\r\\nsick now\\n'\n";
const HEAL: &str =
    "#!/bin/sh\nrm -f /tmp/sick\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhealed\\n'\n";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// Whether the receiver accepted it (200) or refused it (500).
    accepted: bool,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON payload")
    }
}

/// A webhook receiver on 127.0.0.1 that refuses its first `refuse` requests.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start(refuse: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let store = hits.clone();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut s) = conn else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((headers, body)) = read_request(&mut s) else {
                    continue;
                };
                let accepted = i >= refuse;
                let status = if accepted {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
                store.lock().unwrap().push(Hit {
                    headers,
                    body,
                    accepted,
                });
            }
        });
        Receiver { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Accepted alert payloads of `kind` in `state`.
    fn accepted(&self, kind: &str, state: &str) -> Vec<Value> {
        self.hits()
            .iter()
            .filter(|h| h.accepted)
            .map(Hit::json)
            .filter(|p| p["kind"] == kind && p["state"] == state)
            .collect()
    }
}

fn read_request(s: &mut std::net::TcpStream) -> Option<(HashMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

/// Checks `X-Slipway-Signature-256` with an HMAC computed here.
fn assert_signed(hit: &Hit) {
    let header = hit
        .headers
        .get("x-slipway-signature-256")
        .expect("signature header");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&hit.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header, &expected, "signature of {}", hit.json());
}

/// Polls `done` every 100 ms until it returns Some, at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut done: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = done() {
            println!("{what}: {:?}", start.elapsed());
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` straight to a replica (not through the proxy).
fn replica_get(address: &str, path: &str) -> u16 {
    proxy_get(&format!("http://{address}"), "replica", path).0
}

#[test]
fn alerts_fire_and_resolve_against_a_real_failing_app() {
    let (tokio, _rt) = docker();
    let server = TestServer::start_with_env(&[("SLIPWAY_METRICS_INTERVAL_MS", "500")]);
    let mut guard = ServerGuard::new(server);
    let token = guard.server.setup_admin("alice");

    // A private repository with the app, deployed as one replica whose
    // health check is a CGI script the test can make fail.
    let (s, b) = guard.server.api(
        "POST",
        "/repos",
        Some(&token),
        Some(json!({"name": "web", "private": true})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = guard.server.api(
        "POST",
        "/apps",
        Some(&token),
        Some(
            json!({"name": "web", "repo": "alice/web", "port": 8080, "replicas": 1,
                    "health": {"path": "/cgi-bin/health", "interval_ms": 500, "fall": 2}}),
        ),
    );
    assert_eq!(s, 201, "{b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("web");
    std::fs::create_dir_all(dir.join("www/cgi-bin")).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("Dockerfile"), HTTPD_DOCKERFILE).unwrap();
    std::fs::write(dir.join("www/index.html"), "ok\n").unwrap();
    for (name, script) in [
        ("fail", FAIL),
        ("health", HEALTH),
        ("sick", SICK),
        ("heal", HEAL),
    ] {
        let path = dir.join("www/cgi-bin").join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    git_ok(&dir, &["add", "-A"]);
    git_ok(&dir, &["commit", "-q", "-m", "v1"]);
    let url = guard
        .server
        .git_url("alice", "web", Some(("alice", &token)));
    git_ok(&dir, &["push", "-q", &url, "main"]);

    // Bad input, refused with JSON errors, while the image builds.
    {
        let server = &guard.server;
        let api = |m: &str, p: &str, b: Option<Value>| server.api(m, p, Some(&token), b);
        for (body, needle) in [
            (
                json!({"kind": "disk", "threshold": 5}),
                "unknown alert kind",
            ),
            (json!({"kind": "error_rate", "threshold": -1}), "threshold"),
            (json!({"kind": "error_rate", "threshold": 100}), "threshold"),
            (json!({"kind": "p99"}), "threshold is required"),
            (
                json!({"kind": "cpu", "threshold": 50, "for_s": -5}),
                "for_s",
            ),
            (
                json!({"kind": "error_rate", "threshold": 5, "window_s": 0}),
                "window_s",
            ),
            (
                json!({"kind": "replica_down", "window_s": 60}),
                "does not apply",
            ),
            (json!({"threshold": 5}), "kind is required"),
        ] {
            let (s, b) = api("POST", "/apps/web/alerts", Some(body.clone()));
            assert_eq!(s, 422, "{body}: {b}");
            assert_eq!(error_code(&b), "invalid");
            assert!(
                b["error"]["message"].as_str().unwrap().contains(needle),
                "{body}: {b}"
            );
        }
        let (s, b) = api(
            "POST",
            "/apps/web/alerts",
            Some(json!({"kind": "cpu", "threshold": 5, "colour": "red"})),
        );
        assert_eq!(s, 422, "unknown field: {b}");
        error_code(&b);
        for (body, needle) in [
            (json!({"url": "ftp://example.com/", "secret": "x"}), "http"),
            (json!({"url": "not a url", "secret": "x"}), "http"),
            (
                json!({"url": "http://u:p@127.0.0.1:9/", "secret": "x"}),
                "user:password",
            ),
            (
                json!({"url": "http://127.0.0.1:9/", "secret": ""}),
                "secret",
            ),
        ] {
            let (s, b) = api("POST", "/apps/web/alert-webhooks", Some(body.clone()));
            assert_eq!(s, 422, "{body}: {b}");
            assert!(
                b["error"]["message"].as_str().unwrap().contains(needle),
                "{body}: {b}"
            );
        }
        for (m, p) in [
            ("GET", "/apps/nope/alerts"),
            ("GET", "/apps/nope/alerts/events"),
            ("GET", "/apps/nope/alert-webhooks"),
            ("PATCH", "/apps/web/alerts/999"),
            ("DELETE", "/apps/web/alerts/999"),
            ("DELETE", "/apps/web/alerts/abc"),
            ("DELETE", "/apps/web/alert-webhooks/999"),
            ("POST", "/apps/web/alert-webhooks/999/test"),
        ] {
            let body = (m == "PATCH").then(|| json!({"enabled": false}));
            let (s, b) = api(m, p, body);
            assert_eq!(s, 404, "{m} {p}: {b}");
            assert_eq!(error_code(&b), "not_found");
        }
        for q in ["state=open", "limit=0", "limit=x", "colour=red"] {
            let (s, b) = api("GET", &format!("/alerts?{q}"), None);
            assert_eq!(s, 422, "{q}: {b}");
        }
        let (s, _) = server.api("GET", "/alerts", None, None);
        assert_eq!(s, 401);
    }

    // Outsiders see nothing; readers see rules but change nothing.
    let bob = guard.server.create_user(&token, "bob");
    let carol = guard.server.create_user(&token, "carol");
    let (s, b) = guard.server.api(
        "PUT",
        "/repos/alice/web/collaborators/carol",
        Some(&token),
        Some(json!({"access": "read"})),
    );
    assert!(s == 200 || s == 204, "{b}");
    for (m, p) in [
        ("GET", "/apps/web/alerts"),
        ("POST", "/apps/web/alerts"),
        ("GET", "/apps/web/alerts/events"),
        ("GET", "/apps/web/alert-webhooks"),
        ("GET", "/apps/web/alert-deliveries"),
    ] {
        let body = (m == "POST").then(|| json!({"kind": "cpu", "threshold": 50}));
        let (s, b) = guard.server.api(m, p, Some(&bob), body);
        assert_eq!(s, 404, "outsider {m} {p}: {b}");
    }
    let (s, b) = guard
        .server
        .api("GET", "/apps/web/alerts", Some(&carol), None);
    assert_eq!(s, 200, "{b}");
    for (m, p) in [
        ("POST", "/apps/web/alerts"),
        ("GET", "/apps/web/alert-webhooks"),
        ("GET", "/apps/web/alert-deliveries"),
    ] {
        let body = (m == "POST").then(|| json!({"kind": "cpu", "threshold": 50}));
        let (s, b) = guard.server.api(m, p, Some(&carol), body);
        assert_eq!(s, 403, "reader {m} {p}: {b}");
        assert_eq!(error_code(&b), "forbidden");
    }

    // The webhook (its first delivery is refused, so it is retried) and two
    // rules, added with the CLI.
    let receiver = Receiver::start(1);
    let cli = |server: &TestServer| Cli {
        config: work.path().join("cli.toml"),
        server: server.url.clone(),
        token: Some(token.clone()),
    };
    let out = cli(&guard.server).ok(
        &[
            "alert",
            "webhook",
            "add",
            "web",
            &receiver.url,
            "--secret-stdin",
        ],
        Some(&format!("{SECRET}\n")),
    );
    assert!(out.contains("added"), "{out}");
    assert!(!out.contains(SECRET), "the secret is never printed: {out}");
    let hooks = cli(&guard.server).json(&["alert", "webhook", "list", "web"]);
    assert_eq!(hooks[0]["url"], receiver.url.as_str(), "{hooks}");
    assert!(hooks[0].get("secret").is_none(), "{hooks}");
    let err = cli(&guard.server).fails(
        &["alert", "add", "web", "--kind", "disk", "--above", "5"],
        None,
    );
    assert!(err.contains("unknown alert kind"), "{err}");
    let err = cli(&guard.server).fails(
        &[
            "alert", "add", "web", "--kind", "cpu", "--above", "5", "--for", "soon",
        ],
        None,
    );
    assert!(err.contains("--for"), "{err}");
    let err_rule = cli(&guard.server).json(&[
        "alert",
        "add",
        "web",
        "--kind",
        "error-rate",
        "--above",
        "20",
        "--window",
        "4s",
        "--for",
        "1s",
        "--min-requests",
        "4",
    ]);
    assert_eq!(err_rule["kind"], "error_rate", "{err_rule}");
    assert_eq!(err_rule["summary"], "error rate above 20% over 4s for 1s");
    let (s, down_rule) = guard.server.api(
        "POST",
        "/apps/web/alerts",
        Some(&token),
        Some(json!({"kind": "replica_down", "for_s": 1})),
    );
    assert_eq!(s, 201, "{down_rule}");
    let list = cli(&guard.server).json(&["alert", "list", "web"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // Live: release 1 on one healthy replica.
    let start = Instant::now();
    let replica = loop {
        let (_, app) = guard.server.api("GET", "/apps/web", Some(&token), None);
        let (_, replicas) = guard
            .server
            .api("GET", "/apps/web/replicas", Some(&token), None);
        if guard.instance.is_none() {
            if let Some(c) = replicas[0]["container"].as_str() {
                guard.instance = deploy_instance_of(c);
            }
        }
        if app["status"] == "running" && app["ready"] == 1 {
            break replicas[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "app not live: {app}\n{}",
            guard.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("app live: {:?}", start.elapsed());
    let address = replica["address"].as_str().unwrap().to_string();
    assert_eq!(replica_get(&address, "/cgi-bin/health"), 200);

    // Failing requests through the proxy (every other one, so the proxy
    // never ejects the replica): the error-rate alert fires.
    let firing = {
        let proxy = guard.server.proxy_url.clone();
        let mut sent = 0;
        wait_for(
            "error_rate firing delivered",
            Duration::from_secs(40),
            || {
                for _ in 0..10 {
                    assert_eq!(proxy_get(&proxy, "web.localhost", "/cgi-bin/fail").0, 500);
                    assert_eq!(proxy_get(&proxy, "web.localhost", "/").0, 200);
                    sent += 2;
                }
                assert!(sent < 20_000, "load loop bound");
                std::thread::sleep(Duration::from_millis(50));
                receiver.accepted("error_rate", "firing").into_iter().next()
            },
        )
    };
    assert_eq!(firing["event"], "alert");
    assert_eq!(firing["app"], "web");
    assert_eq!(firing["rule_id"], err_rule["id"]);
    assert_eq!(firing["rule"], "error rate above 20% over 4s for 1s");
    assert_eq!(firing["threshold"], 20.0);
    assert_eq!(firing["unit"], "%");
    let value = firing["value"].as_f64().unwrap();
    assert!(value > 20.0 && value <= 100.0, "{firing}");
    assert!(firing["started_at"].is_string() && firing["resolved_at"].is_null());
    assert!(
        firing["url"]
            .as_str()
            .unwrap()
            .ends_with("/ui/app?name=web"),
        "{firing}"
    );
    let alert_id = firing["alert_id"].clone();
    // Every request was signed; the refused first attempt was sent again as is.
    let hits = receiver.hits();
    assert!(hits.len() >= 2, "{hits:?}");
    assert!(!hits[0].accepted);
    assert_eq!(hits[0].body, hits[1].body, "a retry sends the same body");
    assert_eq!(
        hits[0].headers["x-slipway-delivery"],
        hits[1].headers["x-slipway-delivery"]
    );
    for h in &hits {
        assert_signed(h);
        assert_eq!(h.headers["x-slipway-event"], "alert");
        assert_eq!(h.headers["content-type"], "application/json");
    }

    // It shows as firing: in the rule, the app's history and /alerts — but
    // not to an outsider.
    let (_, rules) = guard
        .server
        .api("GET", "/apps/web/alerts", Some(&token), None);
    let rule = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == err_rule["id"])
        .unwrap();
    assert_eq!(rule["state"], "firing", "{rules}");
    let (_, all) = guard.server.api("GET", "/alerts", Some(&token), None);
    assert!(
        all.as_array().unwrap().iter().any(|a| a["id"] == alert_id),
        "{all}"
    );
    let (s, theirs) = guard.server.api("GET", "/alerts", Some(&bob), None);
    assert_eq!(s, 200);
    assert_eq!(theirs, json!([]), "outsiders see no alert of web");
    let (_, carols) = guard.server.api("GET", "/alerts", Some(&carol), None);
    assert!(carols
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == alert_id));

    // A restart keeps the alert open and does not fire it again.
    guard.server.restart();
    let (_, all) = guard.server.api("GET", "/alerts", Some(&token), None);
    let open: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["app"] == "web" && a["kind"] == "error_rate")
        .collect();
    assert_eq!(open.len(), 1, "{all}");
    assert_eq!(open[0]["id"], alert_id);
    assert_eq!(open[0]["state"], "firing");

    // Good traffic only: it resolves, and the receiver hears it once.
    let resolved = {
        let proxy = guard.server.proxy_url.clone();
        let mut sent = 0;
        wait_for(
            "error_rate resolved delivered",
            Duration::from_secs(40),
            || {
                // Answers while the restarted server adopts its replica may be
                // errors; the alert resolves once a window holds only good ones.
                for _ in 0..10 {
                    proxy_get(&proxy, "web.localhost", "/");
                    sent += 1;
                }
                assert!(sent < 20_000, "load loop bound");
                std::thread::sleep(Duration::from_millis(50));
                receiver
                    .accepted("error_rate", "resolved")
                    .into_iter()
                    .next()
            },
        )
    };
    assert_eq!(resolved["alert_id"], alert_id);
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    assert!(resolved["value"].as_f64().unwrap() <= 20.0, "{resolved}");
    assert_eq!(
        receiver.accepted("error_rate", "firing").len(),
        1,
        "fired once, restart included"
    );
    for h in receiver.hits() {
        assert_signed(&h);
    }

    // Recorded: the alert in the history, both deliveries with their attempts.
    let history = cli(&guard.server).json(&["alert", "history", "web"]);
    let done = history
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == alert_id)
        .unwrap();
    assert_eq!(done["state"], "resolved", "{history}");
    assert!(done["resolved_at"].is_string());
    let deliveries = wait_for("deliveries recorded", Duration::from_secs(10), || {
        let d = cli(&guard.server).json(&["alert", "deliveries", "web"]);
        let mine: Vec<Value> = d
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["alert_id"] == alert_id)
            .cloned()
            .collect();
        (mine.len() == 2 && mine.iter().all(|x| x["status"] == "delivered")).then_some(mine)
    });
    let by_state = |s: &str| deliveries.iter().find(|d| d["state"] == s).unwrap().clone();
    assert_eq!(by_state("firing")["attempts"], 2, "{deliveries:?}");
    assert_eq!(by_state("resolved")["attempts"], 1, "{deliveries:?}");
    assert_eq!(by_state("firing")["response_status"], 200);

    // The replica fails its health check (asked directly, not through the
    // proxy): replica_down fires, then resolves when it heals.
    let (_, replicas) = guard
        .server
        .api("GET", "/apps/web/replicas", Some(&token), None);
    assert_eq!(
        replicas[0]["address"], address,
        "the restarted server adopted the replica"
    );
    assert_eq!(replica_get(&address, "/cgi-bin/sick"), 200);
    let down = wait_for(
        "replica_down firing delivered",
        Duration::from_secs(40),
        || {
            receiver
                .accepted("replica_down", "firing")
                .into_iter()
                .next()
        },
    );
    assert_eq!(down["rule_id"], down_rule["id"]);
    assert_eq!(down["value"], 1.0);
    assert_eq!(down["threshold"], 0.0);
    assert_eq!(down["rule"], "fewer healthy replicas than desired for 1s");
    let (_, firing_now) = guard.server.api("GET", "/alerts", Some(&token), None);
    assert!(
        firing_now
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "replica_down" && a["state"] == "firing"),
        "{firing_now}"
    );
    assert_eq!(replica_get(&address, "/cgi-bin/heal"), 200);
    let up = wait_for(
        "replica_down resolved delivered",
        Duration::from_secs(40),
        || {
            receiver
                .accepted("replica_down", "resolved")
                .into_iter()
                .next()
        },
    );
    assert_eq!(up["alert_id"], down["alert_id"]);
    assert_eq!(up["value"], 0.0);

    // Webhook ping, then removal; the dashboard page is served.
    let hook_id = hooks[0]["id"].as_i64().unwrap();
    let ping = cli(&guard.server).ok(
        &["alert", "webhook", "test", "web", &hook_id.to_string()],
        None,
    );
    assert!(ping.contains("delivered"), "{ping}");
    assert!(receiver
        .hits()
        .iter()
        .any(|h| h.headers["x-slipway-event"] == "ping"));
    cli(&guard.server).ok(
        &["alert", "webhook", "remove", "web", &hook_id.to_string()],
        None,
    );
    let hooks = cli(&guard.server).json(&["alert", "webhook", "list", "web"]);
    assert_eq!(hooks, json!([]));
    let page = reqwest::blocking::get(format!("{}/ui/alerts", guard.server.url)).unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap().contains("script-src 'self'")));
    assert!(page.text().unwrap().contains("/ui/static/alerts.js"));
    for file in ["alerts.js", "alert-format.js", "app-alerts.js"] {
        let r = reqwest::blocking::get(format!("{}/ui/static/{file}", guard.server.url)).unwrap();
        assert_eq!(r.status(), 200, "{file}");
    }

    // A rule changes in place; its past alerts keep the rule as it read then.
    let err_id = err_rule["id"].to_string();
    let changed = cli(&guard.server).json(&["alert", "set", "web", &err_id, "--above", "25"]);
    assert_eq!(changed["summary"], "error rate above 25% over 4s for 1s");
    assert_eq!(changed["window_s"], 4, "{changed}");
    let err = cli(&guard.server).fails(&["alert", "set", "web", &err_id], None);
    assert!(err.contains("nothing to change"), "{err}");

    // In a real browser: the replica fails again; the Alerts page shows the
    // alert firing and the resolved ones, and leads to the app page, which
    // lists the rules with their state.
    assert_eq!(replica_get(&address, "/cgi-bin/sick"), 200);
    wait_for("replica_down firing again", Duration::from_secs(40), || {
        let (_, all) = guard.server.api("GET", "/alerts", Some(&token), None);
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "replica_down")
            .then_some(())
    });
    let driver = Driver::start();
    let base = guard.server.url.clone();
    let client = tokio.block_on(browser(&driver));
    let c = &client;
    tokio.block_on(async {
        login_and_leave(c, &base).await;
        c.goto(&format!("{base}/ui/alerts")).await.unwrap();
        let firing = until(Duration::from_secs(15), "the firing alert", || async move {
            let rows = texts(c, "#firing tbody tr").await;
            rows.iter()
                .any(|r| r.contains("web") && r.contains("fewer healthy replicas"))
                .then_some(rows)
        })
        .await;
        assert_eq!(firing.len(), 1, "{firing:?}");
        assert!(firing[0].contains("firing"), "{firing:?}");
        let history = texts(c, "#history tbody tr").await;
        assert!(
            history
                .iter()
                .any(|r| r.contains("error rate above 20%") && r.contains("resolved")),
            "{history:?}"
        );
        assert_eq!(texts(c, "#nav a.active").await, vec!["Alerts".to_string()]);
        c.find(Locator::Css("#firing a.app-link"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let rules = until(Duration::from_secs(15), "the app's rules", || async move {
            let url = c.current_url().await.ok()?;
            let rows = texts(c, "#alert-rules tbody tr").await;
            (url.path() == "/ui/app" && rows.len() == 2).then_some(rows)
        })
        .await;
        assert!(
            rules
                .iter()
                .any(|r| r.contains("fewer healthy replicas") && r.contains("firing")),
            "{rules:?}"
        );
        assert!(
            rules
                .iter()
                .any(|r| r.contains("error rate above 25%") && r.contains("inactive")),
            "{rules:?}"
        );
        let count = texts(c, "#alert-count").await;
        assert_eq!(count, vec!["1 firing".to_string()]);
    });
    tokio.block_on(client.close()).expect("close the browser");
}
