//! A real network partition: three `slipway agent` processes, each in its
//! own network namespace (`ip netns`, a veth pair to the host), one etcd
//! member and a `slipway server` in cluster mode on the host side of the
//! veths. Busybox httpd replicas run in the host's Docker Engine (agents
//! reach it through its unix socket, which works from any network
//! namespace) and publish their port on their node's host-side address.
//!
//! One agent's namespace loses its link (`ip link set … down`): its node
//! is lost, its replica becomes healthy elsewhere, and the cut-off agent
//! stops its own container (it lost its lease). The link comes back: the
//! agent registers under a new epoch, no replica index ever runs twice in
//! `docker ps` meanwhile, and the app converges to 3 healthy replicas.
//!
//! Needs root (network namespaces), iproute2, etcd and Docker; fails
//! loudly without them, never skips. Traffic goes only to loopback and to
//! the namespaces the test creates; everything is removed on the way out,
//! panics included.

mod support;

use serde_json::{json, Value};
use slipway_cluster::testing::replicas::{
    answering, app_filter, docker, indices, running, wait_for, whoami_demand, Cleanup,
};
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{runner, ClusterStore, StoreOptions};
use slipway_runtime::ContainerInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::AgentProc;
use support::*;

const TTL_MS: &str = "2000";

/// Runs a command; its stdout, or the error with stderr.
fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip args…`, panicking with a clear message when it fails.
fn ip(args: &[&str]) {
    if let Err(e) = run("ip", args) {
        panic!("{e} (this test needs root and iproute2's `ip netns`; run `bash scripts/deps.sh`)");
    }
}

/// One network namespace and its veth pair: the host side carries
/// `host_ip`, the namespace side `ns_ip`, both in 10.213.X.0/24.
struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: Ipv4Addr,
}

impl Netns {
    /// `ip -n NAME args…` (inside the namespace).
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Cuts the namespace off: its side of the veth goes down.
    fn cut(&self) {
        self.ip(&["link", "set", &self.ns_if, "down"]);
    }

    /// Brings its link back up (and the default route, which went with it).
    fn restore(&self) {
        self.ip(&["link", "set", &self.ns_if, "up"]);
        self.ip(&[
            "route",
            "replace",
            "default",
            "via",
            &self.host_ip.to_string(),
        ]);
    }
}

/// The test's namespaces; deleted (with their veths) when dropped.
struct Network {
    spaces: Vec<Netns>,
}

/// Third octets of 10.213.X.0/24 that no address or route of this machine uses.
fn free_subnets(n: usize) -> Vec<u8> {
    let mut used = run("ip", &["-4", "-o", "addr", "show"]).unwrap_or_else(|e| panic!("{e}"));
    used += &run("ip", &["-4", "route", "show", "table", "all"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !used.contains("10.213.0.0/16"),
        "10.213.0.0/16 is routed on this machine; the partition test needs it free:\n{used}"
    );
    let words: Vec<&str> = used.split_whitespace().collect();
    let start = std::process::id() as usize % 200;
    let picked: Vec<u8> = (0..250)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .filter(|o| {
            let net = format!("10.213.{o}.");
            !words.iter().any(|w| w.starts_with(&net))
        })
        .take(n)
        .collect();
    assert_eq!(picked.len(), n, "no free 10.213.X.0/24 subnets: {used}");
    picked
}

impl Network {
    /// Creates `n` namespaces `slw<pid><a|b|c…>`, each with a veth pair,
    /// its loopback up and a default route to the host side.
    fn create(n: usize) -> Self {
        let uid = run("id", &["-u"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            uid.trim(),
            "0",
            "the network partition test creates network namespaces and must run as root (uid {})",
            uid.trim()
        );
        if let Err(e) = run("ip", &["netns", "list"]) {
            panic!("`ip netns` is not available ({e}); install iproute2 (bash scripts/deps.sh)");
        }
        let pid = std::process::id();
        let mut net = Network { spaces: Vec::new() };
        for (i, octet) in free_subnets(n).into_iter().enumerate() {
            let tag = (b'a' + i as u8) as char;
            let ns = Netns {
                name: format!("slw{pid}{tag}"),
                host_if: format!("slw{pid}h{tag}"),
                ns_if: format!("slw{pid}n{tag}"),
                host_ip: Ipv4Addr::new(10, 213, octet, 1),
            };
            assert!(ns.host_if.len() <= 15, "{} is too long", ns.host_if);
            let ns_ip = Ipv4Addr::new(10, 213, octet, 2);
            ip(&["netns", "add", &ns.name]);
            net.spaces.push(ns);
            let ns = net.spaces.last().unwrap();
            ip(&[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns.ns_if,
            ]);
            ip(&["link", "set", &ns.ns_if, "netns", &ns.name]);
            ip(&[
                "addr",
                "add",
                &format!("{}/24", ns.host_ip),
                "dev",
                &ns.host_if,
            ]);
            ip(&["link", "set", &ns.host_if, "up"]);
            ns.ip(&["addr", "add", &format!("{ns_ip}/24"), "dev", &ns.ns_if]);
            ns.ip(&["link", "set", "lo", "up"]);
            ns.restore();
        }
        net
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.spaces {
            let _ = run("ip", &["netns", "del", &ns.name]);
            // Deleting the namespace destroys the pair; this is in case not.
            let _ = run("ip", &["link", "del", &ns.host_if]);
        }
    }
}

/// The agents and the app's containers: agents are killed first (so none
/// starts a container again), then the containers are removed by label.
struct Fleet {
    agents: Vec<AgentProc>,
    _cleanup: Cleanup,
}

/// How often the test polls.
const POLL: Duration = Duration::from_millis(25);

/// Replica indices running more than once in one `docker ps` sample.
fn doubles(sample: &[ContainerInfo]) -> Vec<String> {
    let mut by_index: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in sample {
        let index = c.labels.get(runner::REPLICA_LABEL).map_or("?", |s| s);
        let node = c
            .labels
            .get(runner::NODE_LABEL)
            .cloned()
            .unwrap_or_default();
        let epoch = c
            .labels
            .get(runner::EPOCH_LABEL)
            .cloned()
            .unwrap_or_default();
        by_index
            .entry(index)
            .or_default()
            .push(format!("{node} epoch {epoch}"));
    }
    by_index
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(i, v)| format!("replica {i} on {v:?}"))
        .collect()
}

/// The state `GET /nodes` shows for `id`.
fn node_state(server: &TestServer, token: &str, id: &str) -> String {
    let (s, nodes) = server.api("GET", "/nodes", Some(token), None);
    assert_eq!(s, 200, "{nodes}");
    nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == id))
        .and_then(|n| n["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

#[test]
fn a_partitioned_agent_is_replaced_stops_its_replica_and_rejoins_without_doubles() {
    // Root and `ip netns` first: the clearest failure when they are missing.
    let net = Network::create(3);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio.block_on(docker());
    let hosts: Vec<Ipv4Addr> = net.spaces.iter().map(|n| n.host_ip).collect();
    let etcd = EtcdCluster::start_on(1, &hosts);
    // The server and etcd as the namespaces see them: on the host side of
    // the first veth (any host address is reachable from every namespace).
    let endpoints: Vec<String> = hosts.iter().flat_map(|h| etcd.endpoints_at(*h)).collect();
    let endpoints = endpoints.join(",");
    let prefix = format!("/netns-{}", std::process::id());
    let listen = format!("{}:0", hosts[0]);
    let server = TestServer::start_with_env(&[
        ("SLIPWAY_LISTEN", listen.as_str()),
        ("SLIPWAY_CLUSTER_ETCD_ENDPOINTS", endpoints.as_str()),
        ("SLIPWAY_CLUSTER_PREFIX", prefix.as_str()),
        ("SLIPWAY_CLUSTER_NODE_ID", "server-1"),
        ("SLIPWAY_CLUSTER_LEASE_TTL_MS", TTL_MS),
    ]);
    let admin = server.setup_admin("admin");
    let (s, issued) = server.api(
        "POST",
        "/cluster/join-tokens",
        Some(&admin),
        Some(json!({"ttl_hours": 1})),
    );
    assert_eq!(s, 201, "{issued}");
    let join = issued["token"].as_str().unwrap().to_owned();

    let app = format!("part-{}", std::process::id());
    // Dropped in reverse: agents and containers go first, then their data
    // directories, the server, etcd and last the namespaces.
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut fleet = Fleet {
        agents: Vec::new(),
        _cleanup: Cleanup::app(&rt, &app),
    };
    for (ns, dir) in net.spaces.iter().zip(&dirs) {
        let address = ns.host_ip.to_string();
        fleet.agents.push(AgentProc::start_in_netns(
            &ns.name,
            &server.url,
            &join,
            dir.path(),
            &["--advertise-address", &address],
        ));
    }
    let nodes: Vec<(String, Ipv4Addr)> = fleet
        .agents
        .iter()
        .zip(&hosts)
        .map(|(a, h)| (a.node_id.clone(), *h))
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "{ids:?}");

    // The demand: 3 busybox httpd replicas, each saying who it is.
    let mut opts = StoreOptions::new(etcd.endpoints());
    opts.prefix = prefix.clone();
    let store = tokio.block_on(ClusterStore::connect(opts)).unwrap();
    tokio
        .block_on(store.put_demand(&whoami_demand(&app, 3)))
        .unwrap();
    let (_, took) = wait_for(
        Duration::from_secs(60),
        POLL,
        "one healthy replica per node",
        || {
            let found = answering(&tokio, &store, &nodes);
            (found.len() == 3 && indices(&found) == [0, 1, 2]).then_some(())
        },
    );
    println!("3 replicas healthy and answering on 3 namespaced nodes {took:?} after the demand");

    // Cut the third namespace off (not the one whose host-side address the
    // server listens on: the server stays reachable for the others either way).
    let cut = 2;
    let cut_id = ids[cut].clone();
    let cut_index: u32 = *answering(&tokio, &store, &nodes)[&cut_id]
        .iter()
        .next()
        .unwrap();
    let mine = app_filter(&app).with(runner::NODE_LABEL, cut_id.clone());
    let own_running = || {
        tokio
            .block_on(rt.list_containers(&mine))
            .expect("docker ps")
            .into_iter()
            .filter(|c| c.state == "running")
            .count()
    };
    assert_eq!(own_running(), 1, "the node to cut runs one replica");
    let t_cut = Instant::now();
    net.spaces[cut].cut();
    let others: Vec<(String, Ipv4Addr)> = nodes
        .iter()
        .filter(|(n, _)| *n != cut_id)
        .cloned()
        .collect();
    // Watch the three things at once; each is noted when first seen.
    let (mut lost, mut moved, mut stopped) = (None, None, None);
    let limit = Duration::from_secs(30);
    while lost.is_none() || moved.is_none() || stopped.is_none() {
        assert!(
            t_cut.elapsed() < limit,
            "after the cut (lost {lost:?}, replica healthy elsewhere {moved:?}, own container stopped {stopped:?}): not within {limit:?}\nagent log:\n{}",
            fleet.agents[cut].log_tail()
        );
        if lost.is_none() && node_state(&server, &admin, &cut_id) == "lost" {
            lost = Some(t_cut.elapsed());
        }
        if moved.is_none() {
            let found = answering(&tokio, &store, &others);
            if indices(&found) == [0, 1, 2] {
                moved = Some(t_cut.elapsed());
            }
        }
        if stopped.is_none() && own_running() == 0 {
            stopped = Some(t_cut.elapsed());
        }
        std::thread::sleep(POLL);
    }
    let (lost, moved, stopped) = (lost.unwrap(), moved.unwrap(), stopped.unwrap());
    println!(
        "link of {cut_id} down (lease TTL {TTL_MS} ms): (a) node lost after {lost:?}, \
         (b) its replica {cut_index} healthy on another node after {moved:?}, \
         (c) the cut-off agent stopped its own container after {stopped:?}"
    );

    // Restore the link: a new epoch, and never one replica index twice.
    let stop = Arc::new(AtomicBool::new(false));
    let seen_doubles = Arc::new(Mutex::new(Vec::<String>::new()));
    let samples = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let (rt, app, stop, seen, samples) = (
            rt.clone(),
            app.clone(),
            stop.clone(),
            seen_doubles.clone(),
            samples.clone(),
        );
        tokio.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let now = running(&rt, &app).await;
                let d = doubles(&now);
                if !d.is_empty() {
                    seen.lock().unwrap().extend(d);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t_restore = Instant::now();
    net.spaces[cut].restore();
    let old_epoch = fleet.agents[cut].epoch;
    let line = fleet.agents[cut].wait_line(Duration::from_secs(30), |l| {
        l.contains(" ready (epoch ") && !l.contains(&format!("(epoch {old_epoch},"))
    });
    fleet.agents[cut].note_ready(&line);
    let rejoined = t_restore.elapsed();
    assert_eq!(fleet.agents[cut].node_id, cut_id);
    assert!(
        fleet.agents[cut].epoch > old_epoch,
        "epoch {} after {old_epoch}",
        fleet.agents[cut].epoch
    );
    let (_, converged) = wait_for(
        Duration::from_secs(40),
        POLL,
        "3 healthy replicas, one per node, after the restore",
        || {
            let found = answering(&tokio, &store, &nodes);
            (found.len() == 3 && indices(&found) == [0, 1, 2]).then_some(())
        },
    );
    // Keep sampling a little after convergence.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    tokio.block_on(sampler).unwrap();
    let doubles = seen_doubles.lock().unwrap().clone();
    let samples = samples.load(Ordering::Relaxed);
    println!(
        "link restored: re-registered under epoch {} after {rejoined:?}, 3 healthy replicas \
         (one per node) after {:?}; {samples} docker ps samples, replica indices running twice: {}",
        fleet.agents[cut].epoch,
        rejoined + converged,
        doubles.len()
    );
    assert!(
        doubles.is_empty(),
        "a replica index ran twice during the restore: {doubles:?}"
    );
    assert!(samples > 10, "only {samples} docker ps samples");
    let final_running = tokio.block_on(running(&rt, &app));
    assert_eq!(final_running.len(), 3, "{final_running:?}");
    let (_, n) = server.api("GET", "/nodes", Some(&admin), None);
    for id in &ids {
        let state = n
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id.as_str()))
            .map(|x| x["state"].clone())
            .unwrap_or(Value::Null);
        assert_eq!(state, "ready", "{n}");
    }
    drop(fleet);
    assert!(tokio.block_on(running(&rt, &app)).is_empty());
}
