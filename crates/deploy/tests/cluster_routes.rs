//! The proxy's cluster routes against a real 3-member etcd (no Docker: the
//! agents' assignments and reports are written as agents write them).
//! Reports appear, turn stale, expire with their lease; the etcd member
//! that carries the route watch is killed and the routes keep following
//! (a new snapshot from another member, then a new watch).

use serde_json::json;
use slipway_cluster::etcd::AssignmentRecord;
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{
    AppDemand, Assignment, ClusterStore, ContainerTemplate, Labels, ReplicaId, Resources,
};
use slipway_deploy::{DeployOptions, Deployer, Retention};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HOST: &str = "web.example.com";

/// The upstreams and health path the proxy routes `HOST` to, if routed.
fn routed(d: &Deployer) -> Option<(Vec<SocketAddr>, String)> {
    let table = d.proxy().routes();
    let route = table
        .routes
        .iter()
        .find(|r| r.host == slipway_proxy::HostPattern::parse(HOST))?;
    let path = route.pool.health.as_ref().map(|h| h.path.clone())?;
    Some((route.pool.upstreams.clone(), path))
}

/// Waits (at most `limit`) until `HOST` routes to exactly `want`.
async fn wait_routes(d: &Deployer, want: &[&str], limit: Duration) -> Duration {
    let want: Vec<SocketAddr> = want.iter().map(|a| a.parse().unwrap()).collect();
    let start = Instant::now();
    loop {
        let now = routed(d);
        if now.as_ref().map(|(u, _)| u) == Some(&want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "routes: {now:?}, expected {want:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn put(store: &ClusterStore, key: &str, value: Vec<u8>, lease: Option<i64>) {
    let opts = lease.map(|l| etcd_client::PutOptions::new().with_lease(l));
    store
        .client()
        .put(store.key(key), value, opts)
        .await
        .expect("etcd put");
}

fn assignment(node: &str, index: u32, epoch: u64) -> Vec<u8> {
    serde_json::to_vec(&AssignmentRecord {
        assignment: Assignment {
            replica: ReplicaId {
                app: "web".into(),
                index,
            },
            node: node.into(),
            epoch,
        },
        assigned_at: chrono::Utc::now(),
    })
    .unwrap()
}

fn report(state: &str, epoch: u64, port: u16) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "state": state, "detail": "", "epoch": epoch, "updated_at": chrono::Utc::now(),
        "container": "c", "host_port": port, "address": "127.0.0.2", "revision": 1,
    }))
    .unwrap()
}

/// Watch streams each member serves (etcd's `/metrics`).
async fn watch_streams(client_url: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = client_url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watch_stream_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_reports_and_survive_the_loss_of_the_watched_member() {
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let db = slipway_store::Store::open(&dir.path().join("slipway.db"))
        .await
        .unwrap();
    let d = Deployer::new(
        db,
        DeployOptions {
            limits: slipway_deploy::DEFAULT_APP_LIMITS,
            data_dir: dir.path().to_path_buf(),
            apps_domain: "localhost".into(),
            releases_kept: 3,
            app_logs: Retention::default(),
        },
    );
    let opts = etcd.store_options("/t-routes", Duration::from_secs(2));
    let writer = ClusterStore::connect(opts.clone()).await.unwrap();
    d.set_cluster(ClusterStore::connect(opts).await.unwrap());

    writer
        .put_demand(&AppDemand {
            app: "web".into(),
            replicas: 2,
            request: Resources::default(),
            constraints: Labels::new(),
            container: Some(ContainerTemplate {
                revision: 1,
                image: "img".into(),
                command: vec![],
                env: Default::default(),
                port: 8080,
                health_path: Some("/health".into()),
                secrets: None,
                ..Default::default()
            }),
            hosts: vec![HOST.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let lease = writer.client().lease_grant(30, None).await.unwrap().id();
    put(&writer, "assign/n1/web/0", assignment("n1", 0, 1), None).await;
    put(
        &writer,
        "status/n1/web/0",
        report("healthy", 1, 4000),
        Some(lease),
    )
    .await;
    // n2 re-registered (epoch 2): its epoch-1 report is stale.
    put(&writer, "assign/n2/web/1", assignment("n2", 1, 2), None).await;
    put(&writer, "status/n2/web/1", report("healthy", 1, 4001), None).await;
    wait_routes(&d, &["127.0.0.2:4000"], Duration::from_secs(5)).await;
    assert_eq!(routed(&d).unwrap().1, "/health");

    // n2 reports under its epoch; then n1's replica turns unhealthy.
    put(&writer, "status/n2/web/1", report("healthy", 2, 4001), None).await;
    wait_routes(
        &d,
        &["127.0.0.2:4000", "127.0.0.2:4001"],
        Duration::from_secs(2),
    )
    .await;
    put(
        &writer,
        "status/n1/web/0",
        report("running", 1, 4000),
        Some(lease),
    )
    .await;
    wait_routes(&d, &["127.0.0.2:4001"], Duration::from_secs(2)).await;
    put(
        &writer,
        "status/n1/web/0",
        report("healthy", 1, 4000),
        Some(lease),
    )
    .await;
    wait_routes(
        &d,
        &["127.0.0.2:4000", "127.0.0.2:4001"],
        Duration::from_secs(2),
    )
    .await;
    // n1's lease ends (as when its agent dies): its report goes, and the route with it.
    writer.client().lease_revoke(lease).await.unwrap();
    let took = wait_routes(&d, &["127.0.0.2:4001"], Duration::from_secs(2)).await;
    println!(
        "a report deleted with its lease left the routes {took:?} after etcd answered the revoke"
    );

    // Kill the member that serves the route watch (the only watch here).
    let mut watched = None;
    for (i, m) in etcd.members.iter().enumerate() {
        if watch_streams(&m.client_url).await.unwrap_or(0) > 0 {
            watched = Some(i);
        }
    }
    let watched = watched.expect("one etcd member serves the route watch");
    etcd.kill(watched);
    // Changes made meanwhile reach the routes through a new snapshot and watch.
    let mut others = etcd.store_options("/t-routes", Duration::from_secs(2));
    others.endpoints = etcd.endpoints();
    let writer = ClusterStore::connect(others).await.unwrap();
    put(&writer, "assign/n3/web/0", assignment("n3", 0, 1), None).await;
    put(&writer, "status/n3/web/0", report("healthy", 1, 4002), None).await;
    let took = wait_routes(
        &d,
        &["127.0.0.2:4001", "127.0.0.2:4002"],
        Duration::from_secs(10),
    )
    .await;
    println!(
        "etcd member {watched} (the route watch's) killed: routes current {took:?} after the next writes were answered"
    );
    // The watch now runs on a surviving member.
    let mut moved = false;
    for m in etcd
        .members
        .iter()
        .filter(|m| etcd.endpoints().contains(&m.client_url))
    {
        moved |= watch_streams(&m.client_url).await.unwrap_or(0) > 0;
    }
    assert!(moved, "no surviving member serves the route watch");
    // And the watch keeps following: the demand goes, so does the route.
    writer.delete_demand("web").await.unwrap();
    let start = Instant::now();
    while routed(&d).is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "route not removed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
