//! Replicas in the local Docker Engine for tests and benchmarks: the busybox
//! httpd app that says which replica it is, Docker connect-or-panic, the
//! app's containers by label, their removal on the way out, bounded waits
//! and plain HTTP to the replicas' reported addresses.

use crate::agent::{Agent, AgentConfig};
use crate::etcd::{ClusterStore, StoreOptions};
use crate::model::{AppDemand, ContainerTemplate, Labels, Resources};
use crate::runner;
use slipway_runtime::{labels, ContainerInfo, LabelFilter, Runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The busybox httpd replica the tests and the bench run: it answers
/// `GET /` on 8080 with `replica N on NODE`, so a client can tell which
/// replica on which node answered.
pub fn whoami_template() -> ContainerTemplate {
    ContainerTemplate {
        revision: 1,
        image: slipway_runtime::BUSYBOX_IMAGE.into(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p /tmp/www && echo \"replica $SLIPWAY_REPLICA on $SLIPWAY_NODE\" \
             > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
                .into(),
        ],
        env: Default::default(),
        port: 8080,
        health_path: Some("/".into()),
        secrets: None,
        ..Default::default()
    }
}

/// A demand of `replicas` × `container` (100 mCPU, 32 MiB each, no
/// constraints, no host names): what the tests write straight into etcd.
pub fn demand(app: &str, replicas: u32, container: Option<ContainerTemplate>) -> AppDemand {
    AppDemand {
        app: app.into(),
        replicas,
        request: Resources::new(100, 32 << 20),
        constraints: Labels::new(),
        container,
        hosts: Vec::new(),
        ..Default::default()
    }
}

/// [`demand`] of `replicas` × [`whoami_template`].
pub fn whoami_demand(app: &str, replicas: u32) -> AppDemand {
    demand(app, replicas, Some(whoami_template()))
}

/// The local Docker Engine with the busybox image in it; panics (never
/// skips) when Docker is unreachable.
pub async fn docker() -> Runtime {
    let rt = Runtime::connect().await.unwrap_or_else(|e| {
        panic!("this test runs replicas in Docker, which is unreachable (run scripts/deps.sh): {e}")
    });
    slipway_runtime::images::ensure_busybox(&rt)
        .await
        .expect("bootstrap the slipway/busybox image");
    rt
}

/// Starts node `id`'s agent as `slipway agent` does: sweeps containers of
/// earlier epochs, then registers (4 CPUs, 8 GiB, no labels).
pub async fn start_agent(opts: &StoreOptions, rt: &Runtime, id: &str) -> Agent {
    runner::sweep(rt, id).await.expect("sweep");
    Agent::start(AgentConfig {
        store: opts.clone(),
        node_id: id.into(),
        labels: Labels::new(),
        capacity: Resources::new(4000, 8 << 30),
        hostname: format!("host-{id}"),
    })
    .await
    .expect("agent registers")
}

/// The labels of every container agents run for `app`.
pub fn app_filter(app: &str) -> LabelFilter {
    LabelFilter::managed()
        .with(labels::OWNER, runner::OWNER)
        .with(labels::APP, app)
}

/// Running containers of `app`.
pub async fn running(rt: &Runtime, app: &str) -> Vec<ContainerInfo> {
    rt.list_containers(&app_filter(app))
        .await
        .expect("list containers")
        .into_iter()
        .filter(|c| c.state == "running")
        .collect()
}

/// Removes the containers matching `filter` (and `image`, if any) when
/// dropped, panics included; declare it before the agents so that it is
/// dropped after them.
pub struct Cleanup {
    /// The Docker Engine.
    pub rt: Runtime,
    /// Which containers to remove.
    pub filter: LabelFilter,
    /// An image to remove too (e.g. one the agents pulled).
    pub image: Option<String>,
}

impl Cleanup {
    /// Removes `app`'s containers on the way out.
    pub fn app(rt: &Runtime, app: &str) -> Self {
        Cleanup {
            rt: rt.clone(),
            filter: app_filter(app),
            image: None,
        }
    }

    /// Also removes `image` (e.g. one the agents pulled).
    pub fn with_image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (rt, filter, image) = (self.rt.clone(), self.filter.clone(), self.image.clone());
        let _ = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio");
            tokio.block_on(async {
                let _ = rt.cleanup(&filter).await;
                if let Some(image) = image {
                    let _ = slipway_runtime::images::remove_image(&rt, &image, true).await;
                }
            })
        })
        .join();
    }
}

/// Polls (bounded, every 25 ms) until `f` gives `Some`; returns it and the
/// time taken.
pub async fn wait_until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Blocking [`wait_until`]: polls `f` every `every` until it returns
/// `Some`, at most `limit`; returns it and the time taken.
pub fn wait_for<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(every);
    }
}

/// `GET /` on addr:port within 1 s; the body when it answers 200.
pub fn http_get(addr: &str, port: u16) -> Option<String> {
    let sock: std::net::SocketAddr = format!("{addr}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: replica\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.trim().to_owned())
}

/// Per node among `nodes` (id, address to use when a report has none),
/// the replica indices whose healthy report's address:port answers HTTP
/// with that replica's own [`whoami_template`] page.
pub fn answering<A: Display>(
    tokio: &tokio::runtime::Runtime,
    store: &ClusterStore,
    nodes: &[(String, A)],
) -> BTreeMap<String, BTreeSet<u32>> {
    let mut found = BTreeMap::new();
    for (n, address) in nodes {
        let Ok(reports) = tokio.block_on(store.reports(n)) else {
            continue;
        };
        for (replica, r) in reports {
            let Some(port) = r.host_port.filter(|_| r.state == "healthy") else {
                continue;
            };
            let addr = r.address.clone().unwrap_or_else(|| address.to_string());
            let expected = format!("replica {} on {n}", replica.index);
            if http_get(&addr, port).as_deref() == Some(expected.as_str()) {
                found
                    .entry(n.clone())
                    .or_insert_with(BTreeSet::new)
                    .insert(replica.index);
            }
        }
    }
    found
}

/// Replica indices answering over all nodes of an [`answering`] result
/// (sorted, with repeats).
pub fn indices(found: &BTreeMap<String, BTreeSet<u32>>) -> Vec<u32> {
    let mut v: Vec<u32> = found.values().flatten().copied().collect();
    v.sort();
    v
}
