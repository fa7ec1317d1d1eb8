//! Issue 16, "tenants are isolated", as probed by an ordinary user against a
//! live server: token lifetimes, password guessing, registry quotas and
//! webhooks aimed at the server's own network.

mod support;

use serde_json::{json, Value};
use sha2::Digest as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use support::{error_code, TestServer};

fn expiry(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("no expiry: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn a_token_never_mints_one_that_outlives_it_and_logins_expire() {
    let server = TestServer::start();
    let admin = server.setup_admin("root");
    server.create_user(&admin, "bob");
    // A login token expires (30 days by default) and slides on use.
    let (s, login) = server.api(
        "POST",
        "/auth/login",
        None,
        Some(json!({"username": "bob", "password": "user-password"})),
    );
    assert_eq!(s, 201, "{login}");
    let bob = login["token"].as_str().unwrap().to_owned();
    let until = expiry(&login["info"]["expires_at"]) - chrono::Utc::now();
    assert!(
        until > chrono::Duration::days(29) && until <= chrono::Duration::days(30),
        "{login}"
    );
    assert_eq!(login["info"]["renews_on_use"], true);

    // A 1-day token made from it…
    let (s, day) = server.api(
        "POST",
        "/user/tokens",
        Some(&bob),
        Some(json!({"name": "one-day", "expires_in_days": 1})),
    );
    assert_eq!(s, 201, "{day}");
    let day_token = day["token"].as_str().unwrap().to_owned();
    let day_end = expiry(&day["info"]["expires_at"]);
    assert_eq!(day["info"]["renews_on_use"], false);
    // …cannot mint a longer one,
    let (s, e) = server.api(
        "POST",
        "/user/tokens",
        Some(&day_token),
        Some(json!({"name": "forever", "expires_in_days": 3650})),
    );
    assert_eq!((s, error_code(&e).as_str()), (422, "invalid"), "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("no later") && msg.contains("at most 1"),
        "{msg}"
    );
    // and a token asked for without an expiry expires with it, not never.
    let (s, child) = server.api(
        "POST",
        "/user/tokens",
        Some(&day_token),
        Some(json!({"name": "child"})),
    );
    assert_eq!(s, 201, "{child}");
    assert_eq!(expiry(&child["info"]["expires_at"]), day_end);
    let (s, grandchild) = server.api(
        "POST",
        "/user/tokens",
        Some(child["token"].as_str().unwrap()),
        Some(json!({"name": "grandchild", "expires_in_days": 1})),
    );
    assert_eq!(s, 201, "{grandchild}");
    assert!(expiry(&grandchild["info"]["expires_at"]) <= day_end);

    // `slipway token list` shows every expiry (and the sliding one).
    let cli = support::Cli {
        config: server.dir.path().join("cli.toml"),
        server: server.url.clone(),
        token: Some(bob.clone()),
    };
    let listed = cli.json(&["token", "list"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(
        listed.iter().all(|t| t["expires_at"].is_string()),
        "{listed:?}"
    );
    let table = cli.ok(&["token", "list"], None);
    assert!(
        table.contains("EXPIRES") && table.contains("(renews on use)"),
        "{table}"
    );
}

/// `POST /auth/login` from `from` (a loopback address of its own, so each
/// client is a separate address for the server's throttle).
fn login_from(
    server: &TestServer,
    from: IpAddr,
    user: &str,
    password: &str,
) -> (u16, Option<u64>, Value, Duration) {
    let client = reqwest::blocking::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client
        .post(format!("{}/api/v1/auth/login", server.url))
        .json(&json!({"username": user, "password": password}))
        .send()
        .expect("login request");
    let took = started.elapsed();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, res.json().unwrap_or(Value::Null), took)
}

#[test]
fn password_guessing_is_throttled_and_the_owner_gets_back_in() {
    let server = TestServer::start();
    let admin = server.setup_admin("root");
    server.create_user(&admin, "bob");
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let mut throttled = None;
    for i in 0..30 {
        let (s, retry, body, _) = login_from(&server, attacker, "bob", &format!("guess-{i}"));
        match s {
            401 => assert_eq!(error_code(&body), "unauthorized"),
            429 => {
                assert_eq!(error_code(&body), "too_many_requests", "{body}");
                let retry = retry.expect("429 without Retry-After");
                assert!((1..=900).contains(&retry), "{retry}");
                throttled.get_or_insert((i, retry));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (first, _) = throttled.expect("30 wrong passwords were never throttled");
    assert!(first <= 10, "first 429 only after {first} guesses");
    // While it backs off, even the right password gets 429 (not checked).
    let (s, retry, _, _) = login_from(&server, attacker, "bob", "user-password");
    assert_eq!(s, 429);
    // An unknown user is throttled the same way: a 429 tells nothing.
    for i in 0..8 {
        login_from(
            &server,
            "127.0.0.2".parse().unwrap(),
            "nobody-here",
            &format!("g{i}"),
        );
    }
    let (s, _, _, _) = login_from(&server, "127.0.0.2".parse().unwrap(), "nobody-here", "g");
    assert_eq!(s, 429);
    // The owner on another address is not locked out meanwhile…
    let (s, _, body, _) = login_from(
        &server,
        "127.0.0.3".parse().unwrap(),
        "bob",
        "user-password",
    );
    assert_eq!(s, 201, "{body}");
    // …and once the backoff is over the right password works from the
    // attacker's address too.
    std::thread::sleep(Duration::from_secs(retry.unwrap()) + Duration::from_millis(300));
    let (s, _, body, _) = login_from(&server, attacker, "bob", "user-password");
    assert_eq!(s, 201, "{body}");
    // The lockout is in the server log, at warn.
    let log = server.log();
    assert!(
        log.contains("WARN") && log.contains("login locked out") && log.contains("bob"),
        "{log}"
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn unknown_and_known_users_take_the_same_time_to_refuse() {
    let server = TestServer::start();
    let admin = server.setup_admin("root");
    const N: u8 = 15;
    for i in 0..N {
        let (s, b) = server.api(
            "POST",
            "/users",
            Some(&admin),
            Some(json!({"username": format!("known-{i}"), "password": "user-password"})),
        );
        assert_eq!(s, 201, "{b}");
    }
    // Warm-up (connections, caches), then interleaved so that load on the
    // machine hits both kinds alike; every attempt is a first one for its
    // account and its client address, so the throttle stays out of it.
    login_from(
        &server,
        "127.0.2.250".parse().unwrap(),
        "warm-up",
        "wrong-password",
    );
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..N {
        let a: IpAddr = format!("127.0.2.{}", 2 * i + 1).parse().unwrap();
        let b: IpAddr = format!("127.0.2.{}", 2 * i + 2).parse().unwrap();
        let (s, _, _, t) = login_from(&server, a, &format!("known-{i}"), "wrong-password");
        assert_eq!(s, 401);
        known.push(t);
        let (s, _, _, t) = login_from(&server, b, &format!("ghost-{i}"), "wrong-password");
        assert_eq!(s, 401);
        unknown.push(t);
    }
    let (k, u) = (median(known), median(unknown));
    let diff = (k.as_secs_f64() - u.as_secs_f64()).abs() / k.as_secs_f64();
    eprintln!(
        "login refusal medians: known user {k:?}, unknown user {u:?} ({:.1}% apart)",
        diff * 100.0
    );
    assert!(
        diff < 0.2,
        "known {k:?} vs unknown {u:?}: {:.0}% apart",
        diff * 100.0
    );
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A registry request with Basic `user:token` credentials.
fn registry(
    server: &TestServer,
    method: &str,
    path: &str,
    cred: (&str, &str),
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", server.url))
        .basic_auth(cred.0, Some(cred.1))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .expect("registry request")
}

fn oci_error(res: reqwest::blocking::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().expect("OCI error body");
    (
        status,
        body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn registry_storage_is_capped_per_user() {
    let server = TestServer::start_with_env(&[("SLIPWAY_REGISTRY_QUOTA_BYTES", "100000")]);
    let admin = server.setup_admin("root");
    let bob = server.create_user(&admin, "bob");
    let carol = server.create_user(&admin, "carol");
    let blob = |fill: u8| vec![fill; 60_000];
    let put = |who: (&str, &str), repo: &str, data: Vec<u8>| {
        let d = sha256(&data);
        registry(
            &server,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            who,
            data,
        )
    };
    // Monolithic: the first blob fits, the second does not; nothing is kept.
    let res = put(("bob", &bob), "bob/app", blob(1));
    assert_eq!(res.status().as_u16(), 201);
    let (s, code, msg) = oci_error(put(("bob", &bob), "bob/app", blob(2)));
    assert_eq!((s, code.as_str()), (413, "DENIED"), "{msg}");
    assert!(msg.contains("quota") && msg.contains("bob"), "{msg}");
    // Nor in another repository of his.
    let (s, _, _) = oci_error(put(("bob", &bob), "bob/other", blob(3)));
    assert_eq!(s, 413);
    // Chunked: the session's bytes count as they arrive.
    let res = registry(
        &server,
        "POST",
        "/v2/bob/app/blobs/uploads/",
        ("bob", &bob),
        vec![],
    );
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let data = blob(4);
    let res = registry(
        &server,
        "PATCH",
        &location,
        ("bob", &bob),
        data[..30_000].to_vec(),
    );
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let (s, code, _) = oci_error(registry(
        &server,
        "PUT",
        &format!("{location}{sep}digest={}", sha256(&data)),
        ("bob", &bob),
        data[30_000..].to_vec(),
    ));
    assert_eq!((s, code.as_str()), (413, "DENIED"));
    // The same blob again costs nothing more.
    assert_eq!(
        put(("bob", &bob), "bob/app", blob(1)).status().as_u16(),
        201
    );
    // Another user has a quota of their own.
    assert_eq!(
        put(("carol", &carol), "carol/app", blob(2))
            .status()
            .as_u16(),
        201
    );
}

/// A listener on 127.0.0.1 that counts the connections it gets.
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            use std::io::Write;
            if let Ok(mut s) = stream {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        }
    });
    (port, hits)
}

#[test]
fn webhooks_cannot_reach_the_servers_own_network() {
    // No allow-list: public addresses only (the default of a real server).
    let server = TestServer::start_with_env(&[("SLIPWAY_WEBHOOK_ALLOW_LIST", "")]);
    let admin = server.setup_admin("root");
    let bob = server.create_user(&admin, "bob");
    let (port, hits) = counting_listener();
    let (s, b) = server.api("POST", "/repos", Some(&bob), Some(json!({"name": "web"})));
    assert_eq!(s, 201, "{b}");
    let (s, b) = server.api(
        "POST",
        "/apps",
        Some(&bob),
        Some(json!({"name": "web", "repo": "bob/web", "port": 8080})),
    );
    assert_eq!(s, 201, "{b}");
    for (url, why) in [
        (format!("http://127.0.0.1:{port}/hook"), "loopback"),
        (format!("http://[::1]:{port}/hook"), "loopback"),
        (format!("http://0x7f000001:{port}/hook"), "loopback"),
        (format!("http://2130706433:{port}/hook"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/hook"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "link-local",
        ),
        ("http://10.0.0.1/hook".into(), "private"),
        ("http://192.168.1.1/hook".into(), "private"),
        ("http://100.64.0.1/hook".into(), "shared"),
        ("http://[fd00::1]/hook".into(), "unique-local"),
    ] {
        for path in ["/repos/bob/web/hooks", "/apps/web/alert-webhooks"] {
            let (s, e) = server.api(
                "POST",
                path,
                Some(&bob),
                Some(json!({"url": url, "secret": "k"})),
            );
            assert_eq!(
                (s, error_code(&e).as_str()),
                (422, "invalid"),
                "{path} {url}: {e}"
            );
            let msg = e["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains(why) && msg.contains("webhook_allow_list"),
                "{url}: {msg}"
            );
        }
    }
    // A name is checked where it resolves, at delivery: `localhost` is
    // accepted as a URL, but its delivery is refused and recorded as such.
    let url = format!("http://localhost:{port}/hook");
    let (s, hook) = server.api(
        "POST",
        "/apps/web/alert-webhooks",
        Some(&bob),
        Some(json!({"url": url, "secret": "k"})),
    );
    assert_eq!(s, 201, "{hook}");
    let (s, d) = server.api(
        "POST",
        &format!("/apps/web/alert-webhooks/{}/test", hook["id"]),
        Some(&bob),
        None,
    );
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["status"], "failed", "{d}");
    let err = d["error"].as_str().unwrap();
    assert!(
        err.contains("localhost") && err.contains("loopback"),
        "{err}"
    );
    let (s, ci) = server.api(
        "POST",
        "/repos/bob/web/hooks",
        Some(&bob),
        Some(json!({"url": url, "secret": "k"})),
    );
    assert_eq!(s, 201, "{ci}");
    assert_eq!(ci["last_status"], Value::Null);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the listener was reached"
    );
}
