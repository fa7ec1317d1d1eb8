//! Cluster mode end to end: a 3-member etcd cluster on loopback, two real
//! `slipway server` processes sharing it, and three real `slipway agent`
//! processes joined with a join token. Nodes are listed, cordoned, drained
//! and removed through the API and the CLI; an agent is killed with SIGKILL
//! (its replicas are reassigned, and it comes back under a new epoch); the
//! scheduler's leader is killed and the other server takes over.

mod support;

use serde_json::{json, Value};
use slipway_cluster::testing::{replicas, EtcdCluster};
use slipway_cluster::{AppDemand, ClusterStore, Labels, Resources, StoreOptions};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::cluster::AgentProc;
use support::*;

const TTL_MS: &str = "3000";
const TTL: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_secs(2);

/// `slipway agent` with `--label label`.
fn start_agent(server: &str, token: &str, label: &str, dir: &Path) -> AgentProc {
    AgentProc::start(server, token, dir, &["--label", label])
}

fn cluster_env<'a>(endpoints: &'a str, prefix: &'a str, id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SLIPWAY_CLUSTER_ETCD_ENDPOINTS", endpoints),
        ("SLIPWAY_CLUSTER_PREFIX", prefix),
        ("SLIPWAY_CLUSTER_NODE_ID", id),
        ("SLIPWAY_CLUSTER_LEASE_TTL_MS", TTL_MS),
    ]
}

/// Polls `f` every 50 ms until it returns `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> (T, Duration) {
    replicas::wait_for(limit, Duration::from_millis(50), what, f)
}

fn node<'a>(nodes: &'a Value, id: &str) -> &'a Value {
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("node {id} not in {nodes}"))
}

#[test]
fn two_servers_three_agents_failover_and_node_admin() {
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints().join(",");
    let prefix = format!("/e2e-{}", std::process::id());
    let mut s1 = TestServer::start_with_env(&cluster_env(&endpoints, &prefix, "server-1"));
    let mut s2 = TestServer::start_with_env(&cluster_env(&endpoints, &prefix, "server-2"));
    let t1 = s1.setup_admin("admin");
    let t2 = s2.setup_admin("admin");

    // Both servers are members; one leads.
    let (cluster, _) = wait_for(Duration::from_secs(10), "two members and a leader", || {
        let (s, c) = s1.api("GET", "/cluster", Some(&t1), None);
        assert_eq!(s, 200, "{c}");
        (c["members"].as_array().map_or(0, |m| m.len()) == 2 && c["leader"].is_string())
            .then_some(c)
    });
    assert_eq!(cluster["mode"], "cluster");
    assert_eq!(cluster["server_id"], "server-1");
    let leader = cluster["leader"].as_str().unwrap().to_owned();

    // A join token from server 1 (CLI), used through both servers.
    let cli1 = Cli {
        config: s1.dir.path().join("cli.toml"),
        server: s1.url.clone(),
        token: Some(t1.clone()),
    };
    let cli2 = Cli {
        config: s2.dir.path().join("cli.toml"),
        server: s2.url.clone(),
        token: Some(t2.clone()),
    };
    let issued = cli1.json(&["node", "join-token", "--ttl-hours", "1"]);
    let join = issued["token"].as_str().unwrap().to_owned();
    assert!(join.starts_with("slpj_"));
    // A bad join token is refused.
    let (s, b) = s1.api("POST", "/cluster/join", Some("slpj_wrong"), Some(json!({})));
    assert_eq!((s, error_code(&b).as_str()), (401, "unauthorized"));
    let (s, _) = s1.api("POST", "/cluster/join", Some(&t1), Some(json!({})));
    assert_eq!(s, 401, "an access token is not a join token");

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents: Vec<AgentProc> = (0..3)
        .map(|i| {
            let via = if i == 0 { &s1.url } else { &s2.url };
            start_agent(via, &join, &format!("zone=z{i}"), dirs[i].path())
        })
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3);
    let (nodes, _) = wait_for(Duration::from_secs(10), "3 ready nodes", || {
        let (s, n) = s2.api("GET", "/nodes", Some(&t2), None);
        assert_eq!(s, 200, "{n}");
        (n.as_array().unwrap().len() == 3
            && n.as_array().unwrap().iter().all(|x| x["state"] == "ready"))
        .then_some(n)
    });
    let a0 = node(&nodes, &ids[0]);
    assert_eq!(a0["labels"]["zone"], "z0");
    assert_eq!(a0["capacity"]["cpu_millis"], 2000);
    assert_eq!(a0["capacity"]["memory_bytes"], 2048u64 << 20);
    assert_eq!(a0["epoch"], 1);
    // The node id is kept in the agent's data directory.
    let saved = std::fs::read_to_string(dirs[0].path().join("node.json")).unwrap();
    assert!(saved.contains(&ids[0]));

    // Admin only; bad ids are 422, unknown ones 404.
    let user = s1.create_user(&t1, "bob");
    let (s, b) = s1.api("GET", "/nodes", Some(&user), None);
    assert_eq!((s, error_code(&b).as_str()), (403, "forbidden"));
    let (s, b) = s1.api("POST", "/nodes/Bad_Id/cordon", Some(&t1), None);
    assert_eq!((s, error_code(&b).as_str()), (422, "invalid"));
    let (s, b) = s1.api("DELETE", "/nodes/no-such-node", Some(&t1), None);
    assert_eq!((s, error_code(&b).as_str()), (404, "not_found"));
    let err = cli2.fails(&["node", "drain", "no-such-node"], None);
    assert!(err.contains("not found"), "{err}");

    // Cordon, drain and uncordon through the CLI of server 2, seen by server 1.
    let listed = cli2.json(&["node", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let table = cli2.ok(&["node", "list"], None);
    for id in &ids {
        assert!(table.contains(id.as_str()), "{table}");
    }
    let out = cli2.json(&["node", "cordon", &ids[0]]);
    assert_eq!(out["state"], "cordoned");
    let (_, n) = s1.api("GET", "/nodes", Some(&t1), None);
    assert_eq!(node(&n, &ids[0])["schedule"], "cordoned");
    assert_eq!(cli2.json(&["node", "drain", &ids[0]])["state"], "draining");
    assert_eq!(cli2.json(&["node", "uncordon", &ids[0]])["state"], "ready");
    let status = cli1.ok(&["node", "cluster"], None);
    assert!(
        status.contains("server-1") && status.contains("server-2"),
        "{status}"
    );

    // Demands go straight into etcd (the deployer will write them next):
    // the leader spreads the replicas, one per node.
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let mut opts = StoreOptions::new(etcd.endpoints());
    opts.prefix = prefix.clone();
    let store = tokio.block_on(ClusterStore::connect(opts)).unwrap();
    let put_demand = |app: &str, replicas: u32| {
        tokio
            .block_on(store.put_demand(&AppDemand {
                app: app.into(),
                replicas,
                request: Resources::new(250, 128 << 20),
                constraints: Labels::new(),
                container: None,
                hosts: Vec::new(),
                ..Default::default()
            }))
            .unwrap()
    };
    let placement = || {
        let snap = tokio.block_on(store.snapshot()).unwrap();
        let all: Vec<(String, String, u64)> = snap
            .assignments
            .iter()
            .map(|a| {
                let x = &a.record.assignment;
                (x.replica.to_string(), x.node.clone(), x.epoch)
            })
            .collect();
        let distinct: BTreeSet<&String> = all.iter().map(|(r, _, _)| r).collect();
        assert_eq!(
            distinct.len(),
            all.len(),
            "a replica is assigned twice: {all:?}"
        );
        all
    };
    put_demand("web", 3);
    wait_for(Duration::from_secs(10), "3 replicas on 3 nodes", || {
        let p = placement();
        (p.len() == 3 && p.iter().map(|x| &x.1).collect::<BTreeSet<_>>().len() == 3).then_some(())
    });
    agents[1].wait_line(Duration::from_secs(5), |l| {
        l.contains("1 replica(s) assigned")
    });
    let (s, b) = s1.api("DELETE", &format!("/nodes/{}", ids[0]), Some(&t1), None);
    assert_eq!((s, error_code(&b).as_str()), (409, "conflict"), "{b}");

    // kill -9 agent 1: its node is lost after the TTL and its replica moves.
    let killed = Instant::now();
    agents[1].kill();
    let (_, lost) = wait_for(TTL + MARGIN, "node seen lost", || {
        let (_, n) = s1.api("GET", "/nodes", Some(&t1), None);
        (node(&n, &ids[1])["state"] == "lost").then_some(())
    });
    let (_, moved) = wait_for(
        TTL + MARGIN + Duration::from_secs(1),
        "replica moved",
        || {
            let p = placement();
            (p.len() == 3 && p.iter().all(|x| x.1 != ids[1])).then_some(())
        },
    );
    println!(
        "agent killed (lease TTL {TTL:?}): node lost after {lost:?}, its replica reassigned after {:?}",
        killed.elapsed().min(lost + moved)
    );
    // The leader recorded why (what `slipway events web` shows).
    let events = tokio.block_on(store.app_events("web", 50)).unwrap();
    let lost_node = format!("node {} was lost", ids[1]);
    assert!(
        events
            .iter()
            .any(|e| e.kind == "moved" && e.message.contains(&lost_node)),
        "no move event for the lost node: {events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.kind == "placed").count(),
        3,
        "{events:?}"
    );

    // It comes back (same data dir → same id) under epoch 2 and gets nothing
    // of epoch 1; no replica is ever assigned twice.
    agents[1] = start_agent(&s2.url, &join, "zone=z1", dirs[1].path());
    assert_eq!(agents[1].node_id, ids[1]);
    assert_eq!(agents[1].epoch, 2);
    wait_for(
        Duration::from_secs(10),
        "rebalanced onto the returning node",
        || {
            let p = placement();
            p.iter()
                .find(|x| x.1 == ids[1])
                .map(|x| assert_eq!(x.2, 2, "an epoch-1 assignment survived: {p:?}"))
        },
    );

    // Drain node 2 through the CLI, then remove it: its agent stops.
    cli1.ok(&["node", "drain", &ids[2]], None);
    wait_for(Duration::from_secs(10), "node 2 drained", || {
        placement().iter().all(|x| x.1 != ids[2]).then_some(())
    });
    let out = cli1.ok(&["node", "remove", &ids[2]], None);
    assert!(out.contains("removed"), "{out}");
    agents[2].wait_line(Duration::from_secs(5), |l| l.contains("removed"));
    let (_, n) = s2.api("GET", "/nodes", Some(&t2), None);
    assert_eq!(n.as_array().unwrap().len(), 2, "{n}");

    // kill -9 the leading server: the other takes over and keeps scheduling.
    let s1_led = leader == "server-1";
    let died = Instant::now();
    if s1_led {
        s1.stop();
    } else {
        s2.stop();
    }
    let (survivor, surv_token, dead) = if s1_led {
        (&s2, &t2, "server-1")
    } else {
        (&s1, &t1, "server-2")
    };
    let (_, took) = wait_for(TTL + MARGIN + Duration::from_secs(1), "new leader", || {
        let (s, c) = survivor.api("GET", "/cluster", Some(surv_token), None);
        (s == 200 && c["leader"] != dead && c["leader"].is_string() && c["is_leader"] == true)
            .then_some(())
    });
    println!(
        "leader {dead} killed (lease TTL {TTL:?}): the other server leads after {:?}",
        died.elapsed().min(took + Duration::from_millis(50))
    );
    put_demand("api", 2);
    wait_for(Duration::from_secs(10), "the new leader schedules", || {
        (placement()
            .iter()
            .filter(|x| x.0.starts_with("api/"))
            .count()
            == 2)
            .then_some(())
    });
}

#[test]
fn single_node_mode_has_one_local_node_and_no_cluster_changes() {
    let server = TestServer::start();
    let token = server.setup_admin("admin");
    let (s, nodes) = server.api("GET", "/nodes", Some(&token), None);
    assert_eq!(s, 200, "{nodes}");
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["id"], "local");
    assert_eq!(nodes[0]["state"], "ready");
    assert!(nodes[0]["capacity"]["cpu_millis"].as_u64().unwrap() >= 1000);
    let (s, c) = server.api("GET", "/cluster", Some(&token), None);
    assert_eq!((s, c["mode"].as_str()), (200, Some("single")));
    for (method, path) in [
        ("POST", "/nodes/local/cordon"),
        ("POST", "/nodes/local/drain"),
        ("DELETE", "/nodes/local"),
    ] {
        let (s, b) = server.api(method, path, Some(&token), None);
        assert_eq!(
            (s, error_code(&b).as_str()),
            (409, "conflict"),
            "{method} {path}"
        );
    }
    let (s, b) = server.api(
        "POST",
        "/cluster/join-tokens",
        Some(&token),
        Some(json!({})),
    );
    assert_eq!((s, error_code(&b).as_str()), (409, "conflict"));
    let (s, b) = server.api("POST", "/cluster/join", Some("slpj_x"), Some(json!({})));
    assert_eq!((s, error_code(&b).as_str()), (409, "conflict"));
    let (s, _) = server.api("GET", "/nodes", None, None);
    assert_eq!(s, 401);
    let cli = Cli {
        config: server.dir.path().join("cli.toml"),
        server: server.url.clone(),
        token: Some(token.clone()),
    };
    let table = cli.ok(&["node", "list"], None);
    assert!(
        table.contains("local") && table.contains("ready"),
        "{table}"
    );
    let err = cli.fails(&["node", "cordon", "local"], None);
    assert!(err.contains("single-node mode"), "{err}");
    // An agent pointed at a single-node server fails with one clear line.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
            "agent",
            "--join",
            &server.url,
            "--token",
            "slpj_x",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("SLIPWAY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("single-node mode"), "{err}");
}
