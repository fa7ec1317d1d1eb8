//! Cluster deploys end to end: a real etcd on loopback, two real `slipway
//! server`s in cluster mode and three real `slipway agent`s, each
//! advertising its own loopback address (127.0.0.2/3/4: its replicas
//! publish there, and its containers carry its node id label). Replicas
//! run in the local Docker Engine; the proxy of every server routes to
//! them by Host header, whichever node runs them.
//!
//! - Routes on their own: a demand written straight into etcd (busybox
//!   httpd answering `replica N on NODE`), answered through both proxies
//!   from all three nodes; a dead machine (agent killed with SIGKILL, its
//!   containers removed) and the time until both proxies answer from
//!   three healthy replicas elsewhere (printed); scale down; the demand
//!   removed.
//! - The whole path: a git push to server A builds the app and writes its
//!   demand; agents pull the image from A's registry; both proxies answer.
//!   A dead machine again (printed), a push during a client loop through
//!   B's proxy (2xx only, both versions, then only the new one), the
//!   leading server killed with SIGKILL (B leads: it started first; A
//!   holds the app) and a scale through A that the new leader schedules.
//!
//! Needs Docker, etcd and git; fails loudly without them. Every wait is
//! bounded; containers (by node id label) and processes are removed on
//! the way out, panics included. The two tests run one at a time.

#[path = "support/cluster_env.rs"]
mod cluster_env;
#[path = "support/deployed.rs"]
mod deployed;
mod support;

use cluster_env::*;
use serde_json::json;
use slipway_cluster::testing::replicas::whoami_demand;
use slipway_cluster::AppDemand;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// The demand of the routes test: busybox httpd answering `replica N on NODE`.
fn hello_demand(app: &str, replicas: u32, host: &str) -> AppDemand {
    AppDemand {
        hosts: vec![host.into()],
        ..whoami_demand(app, replicas)
    }
}

/// `replica N on NODE` answers as (N, NODE).
fn who(bodies: &[String]) -> BTreeSet<(u32, String)> {
    bodies
        .iter()
        .filter_map(|b| {
            let rest = b.strip_prefix("replica ")?;
            let (n, node) = rest.split_once(" on ")?;
            Some((n.parse().ok()?, node.to_owned()))
        })
        .collect()
}

#[test]
fn every_proxy_routes_to_healthy_replicas_on_any_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("routes");
    c.start_server("server-a");
    c.start_server("server-b");
    let token = c.servers[1].setup_admin("admin");
    c.start_agents(1, &token);
    let app = format!("hello-{}", std::process::id());
    let host = format!("{app}.cluster.test");
    let proxies: Vec<String> = c.servers.iter().map(|s| s.proxy_url.clone()).collect();

    c.tokio
        .block_on(c.store.put_demand(&hello_demand(&app, 3, &host)))
        .unwrap();
    // Both proxies answer from all three nodes, at their own addresses.
    for p in &proxies {
        wait_for(Duration::from_secs(60), "answers from 3 nodes", || {
            let seen = who(&sample(p, &host, "/", 9)?);
            let nodes: BTreeSet<_> = seen.iter().map(|x| x.1.clone()).collect();
            (nodes.len() == 3).then_some(()).ok_or(format!("{seen:?}"))
        });
    }
    let healthy = c.healthy(&app);
    assert_eq!(healthy.len(), 3, "{healthy:?}");
    for h in &healthy {
        let i = c.nodes.iter().position(|n| *n == h.node).unwrap();
        assert_eq!(h.address.as_deref(), Some(ADDRESSES[i]), "{h:?}");
    }
    // Another server's proxy cannot be asked for an unknown host.
    assert_eq!(proxy_get(&proxies[1], "nothing.cluster.test", "/").0, 404);

    // A dead machine: the proxies answer from three healthy replicas
    // elsewhere; requests meanwhile are counted.
    let victim = 0;
    let dead = c.nodes[victim].clone();
    let killed = Instant::now();
    c.kill_machine(victim);
    let mut failed = 0usize;
    let mut total = 0usize;
    let mut reported = None;
    wait_for(FAILOVER_LIMIT, "three healthy replicas elsewhere", || {
        for p in &proxies {
            total += 1;
            if proxy_get(p, &host, "/").0 != 200 {
                failed += 1;
            }
        }
        let h = c.healthy(&app);
        if h.len() != 3 || h.iter().any(|x| x.node == dead) {
            return Err(format!("reports: {h:?}"));
        }
        reported.get_or_insert_with(|| killed.elapsed());
        for p in &proxies {
            let seen = who(&sample(p, &host, "/", 9)?);
            let indices: BTreeSet<u32> = seen.iter().map(|x| x.0).collect();
            if indices.len() != 3 || seen.iter().any(|x| x.1 == dead) {
                return Err(format!("{p}: {seen:?}"));
            }
        }
        Ok(())
    });
    let took = killed.elapsed();
    println!(
        "routes: machine {dead} died (lease TTL {TTL_MS} ms): 3 healthy replicas elsewhere in \
         etcd after {:?}, both proxies answer from them after {took:?}; {failed} of {total} \
         requests meanwhile failed",
        reported.unwrap_or(took)
    );
    assert!(took < FAILOVER_LIMIT);

    // Scale down: the replica that goes leaves both tables at once.
    c.tokio
        .block_on(c.store.put_demand(&hello_demand(&app, 2, &host)))
        .unwrap();
    for p in &proxies {
        wait_for(Duration::from_secs(5), "scaled down to 2", || {
            let seen = who(&sample(p, &host, "/", 12)?);
            let indices: BTreeSet<u32> = seen.iter().map(|x| x.0).collect();
            (indices == BTreeSet::from([0, 1]))
                .then_some(())
                .ok_or(format!("{seen:?}"))
        });
    }
    // The demand goes: so does the route.
    c.tokio.block_on(c.store.delete_demand(&app)).unwrap();
    for p in &proxies {
        wait_for(Duration::from_secs(5), "route removed", || {
            let (s, b) = proxy_get(p, &host, "/");
            (s == 404).then_some(()).ok_or(format!("{s} {b}"))
        });
    }
}

/// A work tree of `alice/site` holding the busybox httpd app with a
/// `/health` page and a CGI `/cgi-bin/who` answering `NODE REPLICA TOKEN`
/// (`TOKEN`: the app secret `SITE_TOKEN`).
struct Site {
    _work: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl Site {
    fn new(git_url: &str) -> Self {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("site");
        std::fs::create_dir_all(dir.join("www/cgi-bin")).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("Dockerfile"), HTTPD_DOCKERFILE).unwrap();
        std::fs::write(dir.join("www/health"), "ok\n").unwrap();
        let who = dir.join("www/cgi-bin/who");
        std::fs::write(
            &who,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$SLIPWAY_NODE $SLIPWAY_REPLICA $SITE_TOKEN\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&who, std::fs::Permissions::from_mode(0o755)).unwrap();
        git_ok(&dir, &["remote", "add", "origin", git_url]);
        Site { _work: work, dir }
    }

    fn set_dockerfile(&self, dockerfile: &str) {
        std::fs::write(self.dir.join("Dockerfile"), dockerfile).unwrap();
    }

    fn push(&self, version: &str) {
        std::fs::write(self.dir.join("www/index.html"), format!("{version}\n")).unwrap();
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", version]);
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
    }
}

/// `NODE REPLICA …` answers of `/cgi-bin/who` as (NODE, REPLICA); the CGI
/// answers chunked, which `proxy_get` leaves as it is: the line is found
/// among the chunk sizes.
fn who_cgi(bodies: &[String]) -> BTreeSet<(String, u32)> {
    bodies
        .iter()
        .filter_map(|b| {
            b.lines().find_map(|l| {
                let mut words = l.split_whitespace();
                let (node, n) = (words.next()?, words.next()?);
                node.starts_with("node-")
                    .then(|| Some((node.to_owned(), n.parse().ok()?)))?
            })
        })
        .collect()
}

#[test]
fn git_push_deploys_on_agents_failover_rollout_and_leader_takeover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("deploy");
    // B starts first and leads; A (started next) holds the repository and
    // the app, so killing the leader leaves the app's server alive.
    let b = c.start_server("server-b");
    let tb = c.servers[b].setup_admin("admin");
    wait_for(Duration::from_secs(10), "server-b leads", || {
        let l = c.leader(b, &tb);
        (l.as_deref() == Some("server-b"))
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    let a = c.start_server("server-a");
    let ta = c.servers[a].setup_admin("alice");
    c.start_agents(a, &ta);
    let (pa, pb) = (
        c.servers[a].proxy_url.clone(),
        c.servers[b].proxy_url.clone(),
    );
    let host = "site.localhost";

    let (s, body) = c.servers[a].api("POST", "/repos", Some(&ta), Some(json!({"name": "site"})));
    assert_eq!(s, 201, "{body}");
    let app = json!({"name": "site", "repo": "alice/site", "port": 8080, "replicas": 3,
                     "health": {"path": "/health", "interval_ms": 500}});
    let (s, body) = c.servers[a].api("POST", "/apps", Some(&ta), Some(app));
    assert_eq!(s, 201, "{body}");
    let token = "tok-3f9a61c2";
    let (s, body) = c.servers[a].api(
        "PUT",
        "/apps/site/secrets/SITE_TOKEN",
        Some(&ta),
        Some(json!({ "value": token })),
    );
    assert!((200..300).contains(&s), "{s} {body}");
    let site = Site::new(&c.servers[a].git_url("alice", "site", Some(("alice", &ta))));

    // v1: built by A, pulled by the agents, answered by both proxies.
    let pushed = Instant::now();
    site.push("v1");
    for p in [&pa, &pb] {
        wait_for(Duration::from_secs(300), "v1 through both proxies", || {
            let bodies = sample(p, host, "/", 6).map_err(|e| {
                let (_, app) = c.servers[a].api("GET", "/apps/site", Some(&ta), None);
                format!("{e}; app {app}")
            })?;
            (bodies.iter().all(|x| x == "v1"))
                .then_some(())
                .ok_or(format!("{bodies:?}"))
        });
    }
    let v1 = wait_for(
        Duration::from_secs(30),
        "3 healthy replicas of one revision on 3 nodes",
        || {
            let h = c.healthy("site");
            let nodes: BTreeSet<_> = h.iter().map(|x| &x.node).collect();
            let revisions: Vec<_> = h
                .iter()
                .map(|x| x.revision)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            match (h.len(), nodes.len(), revisions.as_slice()) {
                (3, 3, [Some(r)]) => Ok(*r),
                _ => Err(format!("{h:?}")),
            }
        },
    );
    println!(
        "deploy: v1 pushed → answered by both proxies after {:?}",
        pushed.elapsed()
    );
    let bodies = sample(&pb, host, "/cgi-bin/who", 9).unwrap();
    let cgi = who_cgi(&bodies);
    assert_eq!(cgi.len(), 3, "B's proxy reaches every replica: {bodies:?}");
    // The secret reaches every replica's environment (each agent fetched
    // it from A with its node credential), and etcd holds only its name.
    assert!(
        bodies.iter().all(|b| b.contains(token)),
        "every replica has SITE_TOKEN: {bodies:?}"
    );
    let demand = c
        .tokio
        .block_on(c.store.demand("site"))
        .unwrap()
        .expect("the demand of site");
    let template = demand.container.as_ref().unwrap();
    assert_eq!(
        template.secrets.as_ref().map(|s| s.names.clone()),
        Some(vec!["SITE_TOKEN".to_string()])
    );
    assert!(
        !serde_json::to_string(&demand).unwrap().contains(token),
        "no secret value in etcd: {demand:?}"
    );

    // A dead machine.
    let victim = 1;
    let dead = c.nodes[victim].clone();
    let killed = Instant::now();
    c.kill_machine(victim);
    let (mut failed, mut total) = (0usize, 0usize);
    wait_for(FAILOVER_LIMIT, "v1 healthy elsewhere", || {
        for p in [&pa, &pb] {
            total += 1;
            if proxy_get(p, host, "/").0 != 200 {
                failed += 1;
            }
        }
        let h = c.healthy("site");
        if h.len() != 3 || h.iter().any(|x| x.node == dead) {
            return Err(format!("reports: {h:?}"));
        }
        for p in [&pa, &pb] {
            let bodies = sample(p, host, "/", 6)?;
            if bodies.iter().any(|x| x != "v1") {
                return Err(format!("{p}: {bodies:?}"));
            }
            let seen = who_cgi(&sample(p, host, "/cgi-bin/who", 9)?);
            let indices: BTreeSet<u32> = seen.iter().map(|x| x.1).collect();
            if indices.len() != 3 || seen.iter().any(|x| x.0 == dead) {
                return Err(format!("{p}: {seen:?}"));
            }
        }
        Ok(())
    });
    let took = killed.elapsed();
    println!(
        "deploy: machine {dead} died (lease TTL {TTL_MS} ms): v1 healthy elsewhere and answered \
         by both proxies after {took:?}; {failed} of {total} requests meanwhile failed"
    );

    // v2 pushed while a client loop runs through B's proxy.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, pb) = (stop.clone(), pb.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<(u16, String)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(400);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                seen.push(proxy_get(&pb, host, "/"));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    site.push("v2");
    wait_for(
        Duration::from_secs(300),
        "only v2 through both proxies",
        || {
            for p in [&pa, &pb] {
                let bodies = sample(p, host, "/", 9)?;
                if bodies.iter().any(|x| x != "v2") {
                    return Err(format!("{p}: {bodies:?}"));
                }
            }
            // Every replica reports the new revision.
            let h = c.healthy("site");
            (h.len() == 3 && h.iter().all(|x| x.revision.is_some_and(|r| r > v1)))
                .then_some(())
                .ok_or(format!("{h:?}"))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen = client.join().unwrap();
    let bad: Vec<&(u16, String)> = seen.iter().filter(|(s, _)| *s != 200).collect();
    let versions: Vec<&str> = seen.iter().map(|(_, b)| b.as_str()).collect();
    let first_v2 = versions.iter().position(|v| *v == "v2");
    println!(
        "deploy: rollout v1 → v2 through B's proxy: {} requests, {} not 200, v1 {} / v2 {}",
        seen.len(),
        bad.len(),
        versions.iter().filter(|v| **v == "v1").count(),
        versions.iter().filter(|v| **v == "v2").count()
    );
    assert!(
        bad.is_empty(),
        "requests failed during the rollout: {bad:?}"
    );
    assert!(
        versions.contains(&"v1") && first_v2.is_some(),
        "both versions must be seen: {versions:?}"
    );
    let tail = &versions[first_v2.unwrap()..];
    assert!(
        tail.iter().rev().take(10).all(|v| *v == "v2"),
        "only v2 at the end: {tail:?}"
    );

    // v3 listens on 3000, the app's port is 8080: an agent sees it, and A
    // fails the release long before its 60 s start timeout; v2 serves on.
    site.set_dockerfile(&HTTPD_DOCKERFILE.replace("\"8080\"", "\"3000\""));
    site.push("v3");
    let released = wait_for(Duration::from_secs(120), "release v3", || {
        let (_, r) = c.servers[a].api("GET", "/apps/site/releases", Some(&ta), None);
        (r[0]["number"] == 3)
            .then(Instant::now)
            .ok_or(format!("{r}"))
    });
    let failed = wait_for(Duration::from_secs(40), "v3 failed", || {
        let (_, r) = c.servers[a].api("GET", "/apps/site/releases", Some(&ta), None);
        (r[0]["status"] == "failed")
            .then(|| r[0].clone())
            .ok_or(format!("{r}"))
    });
    let took = released.elapsed();
    println!(
        "deploy: v3 on the wrong port failed {took:?} after its release: {}",
        failed["error"]
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("nothing listens on port 8080 inside the container; it listens on 3000"),
        "{error}"
    );
    for p in [&pa, &pb] {
        let bodies = sample(p, host, "/", 6).unwrap();
        assert!(bodies.iter().all(|x| x == "v2"), "{bodies:?}");
    }

    // The leader (B) dies: A takes over and schedules a scale made on A.
    let died = Instant::now();
    c.servers[b].stop();
    let took = wait_for(Duration::from_secs(10), "server-a leads", || {
        let l = c.leader(a, &ta);
        (l.as_deref() == Some("server-a"))
            .then(|| died.elapsed())
            .ok_or(format!("{l:?}"))
    });
    println!("deploy: leader server-b killed: server-a leads after {took:?}");
    let cli = Cli {
        config: c.servers[a].dir.path().join("cli.toml"),
        server: c.servers[a].url.clone(),
        token: Some(ta.clone()),
    };
    cli.ok(&["scale", "site=4"], None);
    wait_for(Duration::from_secs(60), "4 healthy replicas", || {
        let h = c.healthy("site");
        (h.len() == 4).then_some(()).ok_or(format!("{h:?}"))
    });
    wait_for(
        Duration::from_secs(10),
        "A's proxy reaches 4 replicas",
        || {
            let seen = who_cgi(&sample(&pa, host, "/cgi-bin/who", 16)?);
            let indices: BTreeSet<u32> = seen.iter().map(|x| x.1).collect();
            (indices.len() == 4 && !seen.iter().any(|x| x.0 == dead))
                .then_some(())
                .ok_or(format!("{seen:?}"))
        },
    );
}
