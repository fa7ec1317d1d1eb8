//! Compose stacks on a cluster, end to end: a real etcd, a real `slipway
//! server` in cluster mode and three real `slipway agent`s on 127.0.0.2,
//! .3 and .4 (one labelled `disk=ssd`), a real `git push` of a stack whose
//! images are built `FROM slipway/busybox`:
//!
//! - `db` keeps its data in a named volume behind a health check, reads
//!   an app secret from `/run/secrets`, and is constrained to
//!   `node.labels.disk == ssd`; it is pinned to that node;
//! - `migrate` is a one-off task that calls `db` by name (it runs once per
//!   release, before `web`);
//! - `web` (2 replicas, at most one per node) serves through the proxy,
//!   bind-mounts a directory of the repository (fetched by the agents from
//!   the server) and calls `db:7000` by name — from nodes that do not run
//!   `db`, through each node's forwarder;
//! - `agent` is a `global` service: one replica on every node, each
//!   publishing a raw port (`x-slipway.publish`) on its node's address.
//!
//! Then a release that changes only `web` (db keeps its container, the
//! migration runs again), one whose migration fails (the release fails,
//! the previous one keeps serving), and the death of the node holding
//! db's volume (db waits for it, the app's events say so). Needs Docker, etcd and git; fails
//! loudly without them.

#[path = "support/cluster_env.rs"]
mod cluster_env;
#[path = "support/deployed.rs"]
mod deployed;
mod support;

use cluster_env::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

const COMPOSE: &str = r#"services:
  web:
    build: ./web
    ports:
      - "8080"
    volumes:
      - ./conf:/conf:ro
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
  migrate:
    build: ./db
    command: ["sh", "-c", "wget -qO- http://db:7000/cgi-bin/add && echo MIGRATE_OK"]
    restart: "no"
    depends_on:
      db:
        condition: service_healthy
  db:
    build: ./db
    expose:
      - "7000"
    secrets:
      - db_token
    volumes:
      - db-data:/data
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1:7000/cgi-bin/count"]
      interval: 1s
      timeout: 2s
      retries: 30
    deploy:
      placement:
        constraints:
          - node.labels.disk == ssd
  agent:
    build: ./db
    command: ["sh", "-c", "exec httpd -f -p 7100 -h /srv"]
    expose:
      - "7100"
    x-slipway:
      publish: ["17731:7100"]
    deploy:
      mode: global
volumes:
  db-data:
secrets:
  db_token:
    file: ./db_token.txt
"#;

/// The repository of the stack, ready to push.
fn stack_repo(dir: &Path, url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    git_ok(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("compose.yaml"), COMPOSE).unwrap();
    write_vote_services(
        dir,
        &[("vote", "add"), ("count", "count"), ("token", "token")],
    );
    write_exec(
        &dir.join("db/srv/cgi-bin/token"),
        &cgi("cat /run/secrets/db_token"),
    );
    // A directory of the repository web bind-mounts (agents fetch it).
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/motd"), "hello from conf\n").unwrap();
    write_exec(&dir.join("web/www/cgi-bin/motd"), &cgi("cat /conf/motd"));
    std::fs::write(dir.join("db/srv/index.html"), "agent\n").unwrap();
    write_exec(
        &dir.join("web/www/cgi-bin/agent"),
        &cgi("wget -qO- http://agent:7100/"),
    );
    write_exec(&dir.join("web/www/cgi-bin/host"), &cgi("hostname"));
    // Images unique to this run (no build cache shared with other tests).
    let nonce = format!("{}-{:?}", std::process::id(), Instant::now());
    std::fs::write(dir.join("db/srv/test-nonce"), &nonce).unwrap();
    std::fs::write(dir.join("web/www/test-nonce"), &nonce).unwrap();
    git_ok(dir, &["remote", "add", "origin", url]);
}

fn push(dir: &Path, version: &str) {
    std::fs::write(dir.join("web/www/index.html"), format!("{version}\n")).unwrap();
    git_ok(dir, &["add", "-A"]);
    git_ok(dir, &["commit", "-q", "-m", version]);
    git_ok(dir, &["push", "-q", "origin", "main"]);
}

/// `GET path` through a proxy with `Host: shop.localhost` (CGI answers are
/// chunked: a real HTTP client reads them).
fn get(proxy: &str, path: &str) -> (u16, String) {
    let res = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{proxy}{path}"))
        .header("Host", "shop.localhost")
        .send();
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().unwrap_or_default().trim().to_string())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Waits until release `number` of `shop` is active or failed.
fn settle(c: &Cluster, token: &str, number: i64) -> Value {
    wait_for(Duration::from_secs(300), "the release settles", || {
        let (_, releases) = c.servers[0].api("GET", "/apps/shop/releases", Some(token), None);
        let r = releases
            .as_array()
            .and_then(|l| l.iter().find(|r| r["number"] == number).cloned())
            .unwrap_or(Value::Null);
        if r["status"] == "active" || r["status"] == "failed" {
            Ok(r)
        } else {
            let (_, events) = c.servers[0].api("GET", "/apps/shop/events", Some(token), None);
            Err(format!("v{number}: {r}; events {events}"))
        }
    })
}

#[test]
fn a_compose_stack_runs_across_nodes_with_placement_tasks_and_service_names() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("stack");
    c.start_server("server-a");
    let token = c.servers[0].setup_admin("alice");
    c.start_agents_with(0, &token, &[&["--label", "disk=ssd"], &[], &[]]);
    let (ssd, proxy) = (c.nodes[0].clone(), c.servers[0].proxy_url.clone());
    let (s, b) = c.servers[0].api(
        "POST",
        "/repos",
        Some(&token),
        Some(json!({"name": "shop"})),
    );
    assert_eq!(s, 201, "{b}");
    let app = json!({"name": "shop", "repo": "alice/shop", "port": 8080,
                     "health": {"start_timeout_ms": 60000}});
    let (s, b) = c.servers[0].api("POST", "/apps", Some(&token), Some(app));
    assert_eq!(s, 201, "{b}");
    let secret = "tok-9c1e55aa";
    let (s, b) = c.servers[0].api(
        "PUT",
        "/apps/shop/secrets/db_token",
        Some(&token),
        Some(json!({ "value": secret })),
    );
    assert!((200..300).contains(&s), "{s} {b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("shop");
    stack_repo(
        &dir,
        &c.servers[0].git_url("alice", "shop", Some(("alice", &token))),
    );

    // v1: every service placed by its rules, the task done before web.
    let pushed = Instant::now();
    push(&dir, "v1");
    let v1 = settle(&c, &token, 1);
    assert_eq!(v1["status"], "active", "{v1}\n{}", c.explain("shop.web"));
    println!(
        "cluster stack: v1 pushed → live after {:?}",
        pushed.elapsed()
    );
    let db = c.healthy("shop.db");
    assert_eq!(db.len(), 1, "{db:?}");
    assert_eq!(db[0].node, ssd, "db runs on the ssd node only");
    let demand = c
        .tokio
        .block_on(c.store.demand("shop.db"))
        .unwrap()
        .unwrap();
    assert_eq!(
        demand.pinned_node.as_deref(),
        Some(ssd.as_str()),
        "db's volume pins it"
    );
    let web = c.healthy("shop.web");
    let web_nodes: BTreeSet<_> = web.iter().map(|h| h.node.clone()).collect();
    assert_eq!(
        (web.len(), web_nodes.len()),
        (2, 2),
        "2 web replicas on 2 nodes: {web:?}"
    );
    let agents: BTreeSet<_> = c
        .healthy("shop.agent")
        .into_iter()
        .map(|h| h.node)
        .collect();
    assert_eq!(agents.len(), 3, "the global service runs on every node");
    // Its raw published port answers on every node's own address.
    for address in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let (s, body) = get(&format!("http://{address}:17731"), "/");
        assert_eq!((s, body.as_str()), (200, "agent"), "{address}");
    }

    // web reaches db by name from every node it runs on (the migration
    // already voted once): every answer counts up by one.
    let (s, count) = get(&proxy, "/cgi-bin/count");
    assert_eq!((s, count.as_str()), (200, "1"), "the migration voted once");
    for want in 2..=7 {
        let got = get(&proxy, "/cgi-bin/vote");
        assert_eq!(got, (200, want.to_string()), "vote {want}");
    }
    let hosts: BTreeSet<String> = (0..8).map(|_| get(&proxy, "/cgi-bin/host").1).collect();
    assert_eq!(hosts.len(), 2, "both web replicas answered: {hosts:?}");
    assert_eq!(get(&proxy, "/cgi-bin/agent"), (200, "agent".to_string()));
    // web's bind-mounted repository directory reached every node it runs on.
    assert_eq!(
        get(&proxy, "/cgi-bin/motd"),
        (200, "hello from conf".to_string())
    );
    // db's secret is a file on its node; etcd holds only its name.
    assert_eq!(get(&proxy, "/cgi-bin/token"), (200, secret.to_string()));
    assert!(!serde_json::to_string(&demand).unwrap().contains(secret));
    assert_eq!(get(&proxy, "/").1, "v1");
    let (_, replicas) = c.servers[0].api("GET", "/apps/shop/replicas", Some(&token), None);
    let services: BTreeSet<_> = replicas
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["service"].as_str().map(String::from))
        .collect();
    assert_eq!(
        services,
        ["agent", "db", "web"].map(String::from).into(),
        "{replicas}"
    );
    // The app's view lists every service with its wanted and ready
    // replicas (a global service: one per node).
    let (_, shown) = c.servers[0].api("GET", "/apps/shop", Some(&token), None);
    let view = |name: &str| {
        shown["services"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    for (name, wanted) in [("agent", 3), ("db", 1), ("web", 2)] {
        let v = view(name);
        assert_eq!(
            (
                v["replicas"].as_u64(),
                v["ready"].as_u64(),
                v["state"].as_str()
            ),
            (Some(wanted), Some(wanted), Some("running")),
            "{shown}"
        );
    }
    assert_eq!(view("migrate")["task"], true, "{shown}");
    assert_eq!(shown["status"], "running", "{shown}");

    // v2 changes only web: db keeps its container (and its data), the
    // migration runs again for the new release.
    let db_container = c
        .tokio
        .block_on(c.store.routing_snapshot())
        .unwrap()
        .reports
        .into_iter()
        .find(|r| r.replica.app == "shop.db")
        .and_then(|r| r.report.container);
    push(&dir, "v2");
    let v2 = settle(&c, &token, 2);
    assert_eq!(v2["status"], "active", "{v2}");
    wait_for(Duration::from_secs(30), "v2 served", || {
        let got = get(&proxy, "/");
        (got.1 == "v2").then_some(()).ok_or(format!("{got:?}"))
    });
    assert_eq!(get(&proxy, "/cgi-bin/count"), (200, "8".to_string()));
    let db_after = c
        .tokio
        .block_on(c.store.routing_snapshot())
        .unwrap()
        .reports
        .into_iter()
        .find(|r| r.replica.app == "shop.db")
        .and_then(|r| r.report.container);
    assert_eq!(db_container, db_after, "db was left alone");

    // v3's migration fails: the release fails, v2 keeps serving.
    let failing = COMPOSE.replace(
        "wget -qO- http://db:7000/cgi-bin/add && echo MIGRATE_OK",
        "echo MIGRATION_BROKE; exit 3",
    );
    std::fs::write(dir.join("compose.yaml"), failing).unwrap();
    push(&dir, "v3");
    let v3 = settle(&c, &token, 3);
    assert_eq!(v3["status"], "failed", "{v3}");
    let error = v3["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("task migrate failed") && error.contains("code 3"),
        "{v3}"
    );
    assert_eq!(get(&proxy, "/").1, "v2", "the previous release serves");
    assert_eq!(get(&proxy, "/cgi-bin/count"), (200, "8".to_string()));

    // The node holding db's volume dies: db is not recreated empty
    // elsewhere, and the app's events say why.
    c.kill_machine(0);
    let events = wait_for(
        Duration::from_secs(30),
        "an event about db's volume",
        || {
            let (_, events) = c.servers[0].api("GET", "/apps/shop/events", Some(&token), None);
            let text = events.to_string();
            (text.contains("service db") && text.contains("never recreated empty"))
                .then_some(text)
                .ok_or(events.to_string())
        },
    );
    assert!(events.contains(&ssd), "{events}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.healthy("shop.db").is_empty(), "{}", c.explain("shop.db"));
    // web moves to the remaining nodes and keeps serving its page.
    wait_for(
        Duration::from_secs(30),
        "web serves from the other nodes",
        || {
            let got = get(&proxy, "/");
            (got.1 == "v2").then_some(()).ok_or(format!("{got:?}"))
        },
    );
}
