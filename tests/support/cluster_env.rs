//! The cluster test environment shared by the cluster tests: a real etcd
//! on loopback, real `slipway server`s in cluster mode and real `slipway
//! agent`s advertising their own loopback addresses (127.0.0.2/3/4), all on
//! the local Docker Engine; everything they started is removed on drop.
//! Include with `#[path = "support/cluster_env.rs"] mod cluster_env;`
//! next to `mod support;` and `#[path = "support/deployed.rs"] mod deployed;`.

#![allow(dead_code)]

use crate::deployed;
use crate::support::cluster::AgentProc;
use crate::support::*;
use serde_json::json;
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{forward, runner, ClusterStore, StoreOptions};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TTL_MS: &str = "2000";
/// Each agent's own loopback address.
pub const ADDRESSES: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
/// The failover goal is 5 s; more than this fails.
pub const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

/// Both tests start whole clusters: one at a time on a 2-core machine.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A free port on 127.0.0.1 (for servers whose public URL is set up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, at most `limit`; panics
/// with `what` and the last state `f` described otherwise.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}; last: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A healthy, current replica as the agents report it in etcd.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Healthy {
    pub node: String,
    pub index: u32,
    pub address: Option<String>,
    pub revision: Option<u64>,
}

/// etcd, the servers, the agents, and the cleanup of all of them.
pub struct Cluster {
    // Dropped in this order: agents (so nothing restarts containers), then
    // containers are removed (Drop), then servers and etcd.
    pub agents: Vec<Option<AgentProc>>,
    pub nodes: Vec<String>,
    pub servers: Vec<TestServer>,
    pub store: ClusterStore,
    pub tokio: tokio::runtime::Runtime,
    pub docker: slipway_runtime::Runtime,
    _dirs: Vec<tempfile::TempDir>,
    _etcd: EtcdCluster,
    pub endpoints: String,
    pub prefix: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in self.agents.iter_mut().flatten() {
            a.kill();
        }
        for n in &self.nodes {
            self.remove_containers(n);
        }
        for s in &mut self.servers {
            s.stop();
        }
        self.remove_images();
    }
}

impl Cluster {
    /// etcd (one member) and the Docker Engine; no servers yet.
    pub fn new(name: &str) -> Self {
        let (tokio, docker) = deployed::docker();
        let etcd = EtcdCluster::start(1);
        let endpoints = etcd.endpoints().join(",");
        let prefix = format!("/{name}-{}", std::process::id());
        let mut opts = StoreOptions::new(etcd.endpoints());
        opts.prefix = prefix.clone();
        let store = tokio.block_on(ClusterStore::connect(opts)).unwrap();
        Cluster {
            agents: Vec::new(),
            nodes: Vec::new(),
            servers: Vec::new(),
            store,
            tokio,
            docker,
            _dirs: Vec::new(),
            _etcd: etcd,
            endpoints,
            prefix,
        }
    }

    /// Starts a server in cluster mode with a public URL (agents pull
    /// release images from its registry); returns its index.
    pub fn start_server(&mut self, id: &str) -> usize {
        let listen = format!("127.0.0.1:{}", free_port());
        let url = format!("http://{listen}");
        let server = TestServer::start_with_env(&[
            ("SLIPWAY_CLUSTER_ETCD_ENDPOINTS", &self.endpoints),
            ("SLIPWAY_CLUSTER_PREFIX", &self.prefix),
            ("SLIPWAY_CLUSTER_NODE_ID", id),
            ("SLIPWAY_CLUSTER_LEASE_TTL_MS", TTL_MS),
            ("SLIPWAY_LISTEN", &listen),
            ("SLIPWAY_PUBLIC_URL", &url),
        ]);
        assert_eq!(
            server.url, url,
            "the server must listen where its public URL says"
        );
        self.servers.push(server);
        self.servers.len() - 1
    }

    /// Joins three agents through server `via`, one per loopback address.
    pub fn start_agents(&mut self, via: usize, token: &str) {
        self.start_agents_with(via, token, &[&[], &[], &[]]);
    }

    /// Joins one agent per entry of `extra` (its extra arguments, e.g.
    /// `--label disk=ssd`) through server `via`, on 127.0.0.2, .3, .4….
    pub fn start_agents_with(&mut self, via: usize, token: &str, extra: &[&[&str]]) {
        let join =
            self.servers[via].api("POST", "/cluster/join-tokens", Some(token), Some(json!({})));
        assert_eq!(join.0, 201, "{}", join.1);
        let join = join.1["token"].as_str().unwrap().to_owned();
        for (address, more) in ADDRESSES.iter().zip(extra) {
            let dir = tempfile::tempdir().unwrap();
            let mut args = vec!["--advertise-address", address];
            args.extend_from_slice(more);
            let agent = AgentProc::start(&self.servers[via].url, &join, dir.path(), &args);
            // Known before it can run anything: cleaned up whatever happens.
            self.nodes.push(agent.node_id.clone());
            self.agents.push(Some(agent));
            self._dirs.push(dir);
        }
    }

    /// Removes every replica and endpoint container, network and volume of
    /// `node` (twice: a create in
    /// flight may land late).
    pub fn remove_containers(&self, node: &str) {
        let filter = runner::node_filter(node);
        let endpoints = forward::endpoint_filter(node);
        self.tokio.block_on(async {
            let _ = self.docker.cleanup(&endpoints).await;
            let _ = self.docker.cleanup(&filter).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = self.docker.cleanup(&endpoints).await;
            let _ = self.docker.cleanup(&filter).await;
        });
    }

    /// Removes the release images agents pulled from the servers'
    /// registries (`127.0.0.1:PORT/owner/app:TAG`) and the servers' own
    /// builds of them (`slipway/app-APP:TAG`).
    pub fn remove_images(&self) {
        use slipway_runtime::images::{list_images, remove_image};
        let registries: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{}/", s.url.trim_start_matches("http://")))
            .collect();
        self.tokio.block_on(async {
            let Ok(all) = list_images(&self.docker, None, None).await else {
                return;
            };
            for tag in all.iter().flat_map(|i| &i.tags) {
                let Some(rest) = registries.iter().find_map(|r| tag.strip_prefix(r)) else {
                    continue;
                };
                let _ = remove_image(&self.docker, tag, false).await;
                // owner/app:TAG → slipway/app-app:TAG
                if let Some((app, version)) =
                    rest.split_once('/').and_then(|(_, r)| r.split_once(':'))
                {
                    let local = format!("slipway/app-{app}:{version}");
                    let _ = remove_image(&self.docker, &local, false).await;
                }
            }
        });
    }

    /// A dead machine: agent `i` killed with SIGKILL, its containers gone.
    pub fn kill_machine(&mut self, i: usize) {
        if let Some(mut a) = self.agents[i].take() {
            a.kill();
        }
        self.remove_containers(&self.nodes[i].clone());
    }

    /// The healthy replicas of `app` whose assignment is current, sorted.
    pub fn healthy(&self, app: &str) -> Vec<Healthy> {
        let snap = self.tokio.block_on(self.store.routing_snapshot()).unwrap();
        let mut out: Vec<Healthy> = snap
            .reports
            .iter()
            .filter(|r| r.replica.app == app && r.report.state == "healthy")
            .filter(|r| {
                snap.assignments.iter().any(|a| {
                    let a = &a.record.assignment;
                    a.node == r.node && a.replica == r.replica && a.epoch == r.report.epoch
                })
            })
            .map(|r| Healthy {
                node: r.node.clone(),
                index: r.replica.index,
                address: r.report.address.clone(),
                revision: r.report.revision,
            })
            .collect();
        out.sort();
        out
    }

    /// For a failed assertion: the cluster's events and the agents'
    /// reports of demand `app`.
    pub fn explain(&self, app: &str) -> String {
        let events = self.tokio.block_on(self.store.app_events(app, 20));
        let snap = self.tokio.block_on(self.store.routing_snapshot());
        let reports: Vec<String> = snap
            .iter()
            .flat_map(|s| &s.reports)
            .filter(|r| r.replica.app == app)
            .map(|r| format!("{} #{}: {:?}", r.node, r.replica.index, r.report))
            .collect();
        let assignments: Vec<String> = snap
            .iter()
            .flat_map(|s| &s.assignments)
            .filter(|a| a.record.assignment.replica.app == app)
            .map(|a| format!("{:?}", a.record.assignment))
            .collect();
        format!("events of {app}: {events:?}\nassignments: {assignments:#?}\nreports: {reports:#?}")
    }

    /// The leader's server id, as server `i` sees it.
    pub fn leader(&self, i: usize, token: &str) -> Option<String> {
        let (s, c) = self.servers[i].api("GET", "/cluster", Some(token), None);
        (s == 200).then(|| c["leader"].as_str().map(str::to_owned))?
    }
}

/// `n` requests through a proxy; Ok(bodies) when every one answered 200.
pub fn sample(proxy_url: &str, host: &str, path: &str, n: usize) -> Result<Vec<String>, String> {
    let mut bodies = Vec::new();
    for _ in 0..n {
        let (status, body) = proxy_get(proxy_url, host, path);
        if status != 200 {
            return Err(format!("{proxy_url} answered {status}: {body}"));
        }
        bodies.push(body);
    }
    Ok(bodies)
}
