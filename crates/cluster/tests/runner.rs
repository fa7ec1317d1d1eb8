//! Agents running their replicas: a real etcd on loopback, three agents on
//! the local Docker Engine (told apart by their node-id labels), busybox
//! httpd replicas answering HTTP on 127.0.0.1. A machine dies (agent killed,
//! containers gone) and a partitioned node comes back with its old
//! container still running. Needs Docker: fails loudly without it.

use slipway_cluster::agent::Agent;
use slipway_cluster::control::{self, LoopOptions};
use slipway_cluster::etcd::Session;
use slipway_cluster::runner::{self, Runner, RunnerOptions};
use slipway_cluster::testing::replicas::{
    docker, running, start_agent, wait_until, whoami_demand, Cleanup,
};
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{ClusterStore, StoreOptions};
use slipway_runtime::Runtime;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(2);

/// One node: its agent and its replica runner.
struct Node {
    agent: Agent,
    _runner: Runner,
}

/// Starts a node as `slipway agent` does: sweep containers of earlier
/// epochs, register, run the assigned replicas.
async fn start_node(opts: &StoreOptions, rt: &Runtime, id: &str) -> Node {
    let agent = start_agent(opts, rt, id).await;
    let store = ClusterStore::connect(opts.clone()).await.expect("store");
    let runner = Runner::spawn(rt.clone(), store, agent.status(), RunnerOptions::default());
    Node {
        agent,
        _runner: runner,
    }
}

/// `GET /` on 127.0.0.1:port; the body when it answers 200.
async fn http_get(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.").then_some(())?;
        head.contains(" 200 ").then(|| body.trim().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

/// Nodes (among `nodes`) whose healthy reports' host ports answer HTTP
/// with the replica's own page; one entry per answering replica.
async fn answering(store: &ClusterStore, nodes: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for n in nodes {
        let Ok(reports) = store.reports(n).await else {
            continue;
        };
        for (replica, r) in reports {
            let Some(port) = r.host_port.filter(|_| r.state == "healthy") else {
                continue;
            };
            let expected = format!("replica {} on {n}", replica.index);
            if http_get(port).await.as_deref() == Some(expected.as_str()) {
                found.push(n.clone());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_run_replicas_fail_over_and_fence_a_returning_node() {
    let rt = docker().await;
    let etcd = EtcdCluster::start(1);
    let tag = format!("{}", std::process::id());
    let app = format!("web-{tag}");
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("rn-{tag}-{n}"))
        .collect();
    let _cleanup = Cleanup::app(&rt, &app);
    let mut opts = etcd.store_options("/t-runner", TTL);
    opts.lease_ttl = TTL;
    let store = ClusterStore::connect(opts.clone()).await.unwrap();

    // The leader's scheduling loop.
    let session = Session::start(&store).await.unwrap();
    let leader = store.campaign(&session, "server-1").await.unwrap();
    let (s, l) = (store.clone(), leader.clone());
    let _scheduler = tokio::spawn(async move {
        let opts = LoopOptions {
            rebalance_pause: Duration::from_millis(200),
            ..LoopOptions::default()
        };
        let _ = control::run_scheduler(&s, &l, opts, std::future::pending()).await;
    });

    let mut nodes: Vec<Option<Node>> = Vec::new();
    for id in &ids {
        nodes.push(Some(start_node(&opts, &rt, id).await));
    }
    store.put_demand(&whoami_demand(&app, 3)).await.unwrap();

    // One replica per node, each answering HTTP on its published port.
    let all = ids.clone();
    let (_, took) = wait_until(Duration::from_secs(30), "3 replicas, one per node", || {
        let (store, all) = (&store, &all);
        async move {
            let found = answering(store, all).await;
            (found == *all).then_some(())
        }
    })
    .await;
    println!(
        "3 replicas answering HTTP on 3 nodes {:?} after the demand",
        took
    );
    assert_eq!(running(&rt, &app).await.len(), 3);

    // The machine of node a dies: agent killed, its containers gone.
    let dead = nodes[0].take().unwrap();
    dead.agent.crash();
    drop(dead._runner);
    runner::sweep(&rt, &ids[0]).await.unwrap();
    let killed = Instant::now();
    let rest = vec![ids[1].clone(), ids[2].clone()];
    let (_, _) = wait_until(Duration::from_secs(20), "the replacement answers", || {
        let (store, rest) = (&store, &rest);
        async move { (answering(store, rest).await.len() == 3).then_some(()) }
    })
    .await;
    let failover = killed.elapsed();
    println!("machine died: replacement replica answers HTTP after {failover:?} (goal < 5 s, lease TTL {TTL:?})");
    assert_eq!(running(&rt, &app).await.len(), 3);

    // Node a comes back (empty) and gets a replica again by rebalancing.
    nodes[0] = Some(start_node(&opts, &rt, &ids[0]).await);
    wait_until(Duration::from_secs(20), "spread again over 3 nodes", || {
        let (store, all) = (&store, &all);
        async move { (answering(store, all).await == *all).then_some(()) }
    })
    .await;

    // Node b is partitioned: its agent dies, its container keeps running.
    let stale: Vec<String> = running(&rt, &app)
        .await
        .into_iter()
        .filter(|c| c.labels.get(runner::NODE_LABEL) == Some(&ids[1]))
        .map(|c| c.id)
        .collect();
    assert_eq!(stale.len(), 1, "node b runs one replica");
    let cut = nodes[1].take().unwrap();
    cut.agent.crash();
    drop(cut._runner);
    let others = vec![ids[0].clone(), ids[2].clone()];
    let (_, rescheduled) = wait_until(Duration::from_secs(20), "rescheduled away from b", || {
        let (store, others) = (&store, &others);
        async move { (answering(store, others).await.len() == 3).then_some(()) }
    })
    .await;
    println!("partitioned node: its replica answers elsewhere after {rescheduled:?}");
    assert_eq!(
        running(&rt, &app).await.len(),
        4,
        "the partitioned node's container still runs"
    );

    // Node b comes back with its old container still there.
    let back = Instant::now();
    nodes[1] = Some(start_node(&opts, &rt, &ids[1]).await);
    let (_, removed) = wait_until(Duration::from_secs(10), "stale container removed", || {
        let (rt, app, stale) = (&rt, &app, &stale);
        async move {
            let now = running(rt, app).await;
            (!now.iter().any(|c| stale.contains(&c.id))).then_some(())
        }
    })
    .await;
    println!("returning node: stale container removed {removed:?} after its agent restarted ({:?} incl. registration)", back.elapsed());
    // From now on the app never runs more than 3 containers, through the
    // rebalancing that gives node b a replica again.
    let watch_until = Instant::now() + Duration::from_secs(6);
    let mut max = 0;
    let mut spread = false;
    while Instant::now() < watch_until {
        let n = running(&rt, &app).await.len();
        max = max.max(n);
        assert!(
            n <= 3,
            "{n} containers of the app run after node b came back"
        );
        if !spread && answering(&store, &all).await == all {
            spread = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(spread, "the app did not spread over the 3 nodes again");
    println!("after node b came back: at most {max} running containers");

    // A replica crashes: its agent replaces it (woken by the container's exit).
    let victim = running(&rt, &app).await.remove(0);
    rt.kill(&victim.id, None).await.unwrap();
    let (_, restarted) = wait_until(Duration::from_secs(15), "crashed replica replaced", || {
        let (rt, app, store, all, victim) = (&rt, &app, &store, &all, &victim.id);
        async move {
            let now = running(rt, app).await;
            let replaced = now.len() == 3 && !now.iter().any(|c| c.id == *victim);
            (replaced && answering(store, all).await == *all).then_some(())
        }
    })
    .await;
    println!("crashed replica answering again after {restarted:?}");

    // Stop everything and remove the containers by label.
    for n in nodes.into_iter().flatten() {
        n.agent.stop().await.unwrap();
    }
    let report = rt.cleanup(&_cleanup.filter).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(running(&rt, &app).await.is_empty());
}
