//! End to end: app logs kept by the server. Real pushes of the busybox httpd
//! app (it logs each request's URL to stderr), real replicas in Docker,
//! real requests through Slipway's proxy; the lines are searched through
//! the API and the CLI, followed live, kept within the configured disk
//! budget, kept after their replica is killed or replaced, and resumed
//! without duplicates or gaps after a server restart (lines printed while
//! the server was down included). Docker must be reachable: these tests
//! panic otherwise.

mod support;

#[path = "support/deployed.rs"]
mod deployed;

use chrono::{DateTime, SecondsFormat, Utc};
use deployed::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::BufRead;
use std::time::{Duration, Instant};
use support::*;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads `GET /apps/web/logs?query` as it streams; each record goes to the channel.
fn follow(app: &Deployed, query: &str) -> std::sync::mpsc::Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = format!("{}/api/v1/apps/web/logs?{query}", app.server.url);
    let token = app.token.clone();
    std::thread::spawn(move || {
        let res = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .get(url)
            .bearer_auth(token)
            .send()
            .expect("follow request");
        assert_eq!(res.status(), 200);
        for line in std::io::BufReader::new(res).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[test]
fn logs_are_searchable_followed_live_and_outlive_their_replicas() {
    let (tokio, rt) = docker();
    let app = Deployed::new(&[], json!({"replicas": 2}));
    app.push("v1");
    app.wait_live(1, Duration::from_secs(180));

    // Requests through the proxy become stored, searchable lines.
    let before = Utc::now();
    for i in 0..10 {
        assert_eq!(app.request(&format!("/search-me-{i}")), 404);
        // Distinct milliseconds: time order is then request order.
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = Utc::now();
    let found = app.wait_logs("q=url:/search-me-", Duration::from_secs(15), |r| {
        r.len() == 10
    });
    for (i, r) in found.iter().enumerate() {
        assert!(
            r["line"]
                .as_str()
                .unwrap()
                .ends_with(&format!("url:/search-me-{i}")),
            "in time order: {found:?}"
        );
        assert_eq!(r["stream"], "stderr", "{r}");
        assert_eq!(r["release"], 1, "{r}");
        let replica = r["replica"].as_str().unwrap();
        assert_eq!(replica.len(), 12, "{r}");
        let ts = r["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "ms precision: {r}");
        let t = DateTime::parse_from_rfc3339(ts)
            .unwrap()
            .with_timezone(&Utc);
        assert!(
            t >= before - chrono::Duration::seconds(1) && t <= after + chrono::Duration::seconds(1),
            "{ts} between {before} and {after}"
        );
    }
    // Text ignores case; replica, release, stream and time narrow it down.
    let one = app.logs("q=URL:/SEARCH-ME-3");
    assert_eq!(one.len(), 1, "{one:?}");
    let replicas: HashSet<String> = app.replica_ids().iter().map(|id| short(id)).collect();
    assert_eq!(replicas.len(), 2);
    let mut per_replica = 0;
    for r in &replicas {
        let mine = app.logs(&format!("q=search-me&replica={r}"));
        assert!(mine.iter().all(|l| l["replica"] == r.as_str()), "{mine:?}");
        let prefix = app.logs(&format!("q=search-me&replica={}", &r[..6]));
        assert_eq!(prefix.len(), mine.len());
        per_replica += mine.len();
    }
    assert_eq!(per_replica, 10, "the two replicas served the ten requests");
    let window = format!(
        "q=search-me&since={}&until={}",
        rfc3339(before - chrono::Duration::seconds(1)),
        rfc3339(after + chrono::Duration::seconds(2))
    );
    assert_eq!(app.logs(&window).len(), 10);
    let earlier = format!(
        "q=search-me&until={}",
        rfc3339(before - chrono::Duration::seconds(1))
    );
    assert!(app.logs(&earlier).is_empty());
    assert_eq!(app.logs("q=search-me&since=10m").len(), 10);
    assert_eq!(app.logs("q=search-me&release=1&stream=stderr").len(), 10);
    assert!(app.logs("q=search-me&release=2").is_empty());
    assert!(app.logs("q=search-me&stream=stdout").is_empty());
    let newest = app.logs("q=url:/search-me&limit=3");
    let lines: Vec<&str> = newest.iter().map(|r| r["line"].as_str().unwrap()).collect();
    assert!(
        lines[0].ends_with("/search-me-7") && lines[2].ends_with("/search-me-9"),
        "{lines:?}"
    );
    let oldest = app.logs("q=url:/search-me&limit=2&direction=forward");
    assert!(oldest[0]["line"]
        .as_str()
        .unwrap()
        .ends_with("/search-me-0"));
    // The CLI's options (`tail` is the older name of `limit`).
    assert!(app.logs("tail=5").len() <= 5);
    let cli = Cli {
        config: app.server.dir.path().join("cli.toml"),
        server: app.server.url.clone(),
        token: Some(app.token.clone()),
    };
    let out = cli.ok(
        &[
            "logs",
            "web",
            "--grep",
            "search-me-5",
            "--since",
            "10m",
            "--release",
            "v1",
        ],
        None,
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("url:/search-me-5") && out.contains("| [stderr] "),
        "{out}"
    );
    assert!(
        out.starts_with(&before.format("%Y-%m-%d ").to_string()),
        "{out}"
    );
    let out = cli.ok(&["logs", "web", "--grep", "search-me-5", "--json"], None);
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(
        first["ts"].is_string() && first["replica"].is_string(),
        "{first}"
    );
    let err = cli.fails(&["logs", "web", "--since", "yesterday"], None);
    assert!(err.contains("since must be"), "{err}");

    // Bad parameters answer 422 with a clear message; outsiders see nothing.
    for bad in [
        "limit=10001",
        "since=yesterday",
        "until=5y",
        "stream=stdin",
        "replica=../../etc",
        "release=abc",
        "follow=maybe",
        "follow=true&until=1m",
        "since=2m&until=5m",
        "tail=1&limit=1",
        "grep=x",
    ] {
        let (s, b) = app.server.api(
            "GET",
            &format!("/apps/web/logs?{bad}"),
            Some(&app.token),
            None,
        );
        assert_eq!(s, 422, "{bad}: {b}");
        assert_eq!(error_code(&b), "invalid", "{bad}");
    }
    let bob = app.server.create_user(&app.token, "bob");
    let (s, body) = app.logs_raw("q=search-me", &bob);
    assert_eq!(s, 404, "{body}");
    assert!(!body.contains("search-me"));
    let (s, _) = app.server.api("GET", "/apps/web/logs", None, None);
    assert_eq!(s, 401);

    // Following: the matching history, then a new line as it is printed.
    let live = follow(&app, "q=live-marker&limit=5&follow=true");
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    app.request("/live-marker-1");
    let got = live
        .recv_timeout(Duration::from_secs(10))
        .expect("the followed line arrives");
    assert!(
        got["line"]
            .as_str()
            .unwrap()
            .ends_with("url:/live-marker-1"),
        "{got}"
    );
    println!(
        "followed line arrived {:?} after the request",
        sent.elapsed()
    );
    app.request("/not-matching");
    app.request("/live-marker-2");
    let got = live.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        got["line"]
            .as_str()
            .unwrap()
            .ends_with("url:/live-marker-2"),
        "only matching lines: {got}"
    );

    // A killed replica's lines stay searchable after it is replaced.
    let ids = app.replica_ids();
    let victim = ids[0].clone();
    for i in 0..8 {
        app.request(&format!("/victim-{i}"));
    }
    let query = format!("q=url:/victim-&replica={}", short(&victim));
    let theirs = app.wait_logs(&query, Duration::from_secs(15), |r| !r.is_empty());
    tokio.block_on(rt.kill(&victim, None)).expect("docker kill");
    let start = Instant::now();
    loop {
        let now = app.replica_ids();
        let (_, a) = app.api("GET", "/apps/web", None);
        if now.len() == 2 && !now.contains(&victim) && a["ready"] == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the killed replica was not replaced: {now:?}\n{}",
            app.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        tokio.block_on(rt.inspect(&victim)).is_err(),
        "the killed container is gone"
    );
    assert_eq!(app.logs(&query), theirs, "its lines are still there");

    // A new release replaces every replica; the old release's lines stay.
    app.push("v2");
    app.wait_live(2, Duration::from_secs(180));
    let old = app.logs("q=url:/search-me&release=1");
    assert_eq!(old.len(), 10, "{old:?}");
    let live_ids: HashSet<String> = app.replica_ids().iter().map(|id| short(id)).collect();
    assert!(old
        .iter()
        .all(|r| !live_ids.contains(r["replica"].as_str().unwrap())));
    app.request("/from-v2");
    let v2 = app.wait_logs("q=url:/from-v2", Duration::from_secs(15), |r| r.len() == 1);
    assert_eq!(v2[0]["release"], 2);
}

#[test]
fn log_files_stay_within_their_size_bound() {
    let _docker = docker();
    let app = Deployed::new(
        &[
            ("SLIPWAY_APP_LOG_MAX_BYTES", "4096"),
            ("SLIPWAY_APP_LOG_FILES", "3"),
        ],
        json!({"replicas": 1}),
    );
    app.push("v1");
    app.wait_live(1, Duration::from_secs(180));
    let dir = app.log_dir();
    let bound = |when: &str| {
        let mut total = 0;
        let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect();
        for (name, len) in &files {
            assert!(*len <= 4096, "{when}: {name} has {len} bytes");
            total += len;
        }
        assert!(files.len() <= 3, "{when}: {files:?}");
        assert!(total <= 3 * 4096, "{when}: {total} bytes");
        (files.len(), total)
    };
    // Each request is two lines of about 150 bytes: 400 are ~10× the budget.
    for i in 0..400 {
        assert_eq!(app.request(&format!("/fill-{i:03}")), 404);
        if i % 50 == 0 {
            bound(&format!("after {i} requests"));
        }
    }
    let newest = app.wait_logs("q=url:/fill-399", Duration::from_secs(15), |r| r.len() == 1);
    assert_eq!(newest[0]["release"], 1);
    let (files, total) = bound("at the end");
    assert_eq!(files, 3, "rotated");
    println!("{files} files, {total} bytes after 400 requests");
    let kept = app.logs("q=url:/fill-&limit=10000");
    assert!(
        kept.len() < 200,
        "old lines were rotated away: {}",
        kept.len()
    );
    assert!(app.logs("q=url:/fill-000").is_empty());
    let lines: Vec<&str> = kept.iter().map(|r| r["line"].as_str().unwrap()).collect();
    assert!(lines.last().unwrap().ends_with("/fill-399"), "{lines:?}");
    // The kept lines are the newest ones, without holes.
    let numbers: Vec<u32> = lines
        .iter()
        .map(|l| l.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
}

#[test]
fn a_restarted_server_resumes_without_duplicates_or_gaps() {
    let (tokio, rt) = docker();
    let mut app = Deployed::new(&[], json!({"replicas": 1}));
    app.push("v1");
    app.wait_live(1, Duration::from_secs(180));
    let replica = app.replica_ids()[0].clone();
    for i in 0..5 {
        app.request(&format!("/before-{i}"));
    }
    app.wait_logs("q=url:/before-", Duration::from_secs(15), |r| r.len() == 5);

    // The server goes down; the replica keeps running and printing.
    app.server.stop();
    tokio.block_on(async {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        for i in 0..3 {
            let exec = rt
                .docker()
                .create_exec(
                    &replica,
                    CreateExecOptions {
                        cmd: Some(vec![
                            "/bin/busybox".to_string(),
                            "wget".to_string(),
                            "-q".to_string(),
                            "-O".to_string(),
                            "/dev/null".to_string(),
                            format!("http://127.0.0.1:8080/during-downtime-{i}"),
                        ]),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .expect("docker exec");
            if let StartExecResults::Attached { mut output, .. } =
                rt.docker().start_exec(&exec.id, None).await.unwrap()
            {
                use futures::StreamExt;
                while output.next().await.is_some() {}
            }
        }
    });
    app.server.restart();
    app.wait_live(1, Duration::from_secs(60));
    assert_eq!(
        app.replica_ids(),
        vec![replica.clone()],
        "adopted, not replaced"
    );
    for i in 0..5 {
        app.request(&format!("/after-{i}"));
    }
    let all = app.wait_logs("q=url:/&limit=10000", Duration::from_secs(20), |r| {
        with_text(r, "url:/after-").len() >= 5
    });
    for (marker, n) in [("before", 5), ("during-downtime", 3), ("after", 5)] {
        for i in 0..n {
            let text = format!("url:/{marker}-{i}");
            let hits: Vec<&Value> = all
                .iter()
                .filter(|r| r["line"].as_str().unwrap().ends_with(&text))
                .collect();
            assert_eq!(hits.len(), 1, "{text} stored once: {hits:?}");
        }
    }
    // No line of the replica is stored twice.
    let every = app.logs(&format!("replica={}&limit=10000", short(&replica)));
    let mut seen = HashSet::new();
    for r in &every {
        let key = (r["ts"].to_string(), r["line"].to_string());
        assert!(seen.insert(key), "duplicate: {r}");
    }
    println!("{} lines of the replica, none twice", every.len());
}
