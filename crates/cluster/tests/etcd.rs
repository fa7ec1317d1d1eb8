//! The cluster state against a real 3-member etcd cluster on loopback:
//! registration, lost leases, epochs and fencing, the leader's scheduling
//! loop, leader election and losing an etcd member. Nothing is mocked.

use futures::StreamExt;
use slipway_cluster::agent::{Agent, AgentConfig, AgentStatus, Phase};
use slipway_cluster::control::{self, LoopOptions};
use slipway_cluster::etcd::{ClusterError, Leadership, Session, WatchKind};
use slipway_cluster::scheduler::{Options, Plan};
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{
    AppDemand, Assignment, ClusterStore, Labels, NodeState, ReplicaId, Resources, Schedule,
    StoreOptions,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(3);
/// Lost-lease detection may take the TTL plus etcd's expiry sweep (500 ms)
/// and the last renewal's age; anything past this margin is a failure.
const MARGIN: Duration = Duration::from_secs(2);

fn options(etcd: &EtcdCluster, prefix: &str) -> StoreOptions {
    etcd.store_options(prefix, TTL)
}

fn agent_config(opts: &StoreOptions, id: &str, labels: &[(&str, &str)]) -> AgentConfig {
    AgentConfig {
        store: opts.clone(),
        node_id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Labels>(),
        capacity: Resources::new(4000, 8 << 30),
        hostname: format!("host-{id}"),
    }
}

fn demand(app: &str, replicas: u32) -> AppDemand {
    AppDemand {
        app: app.into(),
        replicas,
        request: Resources::new(100, 64 << 20),
        constraints: Labels::new(),
        container: None,
        hosts: Vec::new(),
        ..Default::default()
    }
}

/// Waits (bounded) until `f` holds for the agent's status.
async fn wait_status(
    rx: &mut watch::Receiver<AgentStatus>,
    limit: Duration,
    what: &str,
    f: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    let res = tokio::time::timeout(limit, rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match res {
        Ok(Ok(s)) => s,
        _ => panic!("{what}: not within {limit:?}; status {:?}", *rx.borrow()),
    }
}

/// Polls the store (bounded) until `f` holds; returns how long it took.
async fn wait_store<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Campaigns and runs the scheduling loop in the background as a leader would.
async fn start_leader(
    store: &ClusterStore,
    id: &str,
) -> (Session, Leadership, tokio::task::JoinHandle<()>) {
    let session = Session::start(store).await.expect("leader session");
    let leadership = tokio::time::timeout(Duration::from_secs(10), store.campaign(&session, id))
        .await
        .expect("elected within 10 s")
        .expect("campaign");
    let (s, l) = (store.clone(), leadership.clone());
    let task = tokio::spawn(async move {
        let opts = LoopOptions {
            rebalance_pause: Duration::from_millis(200),
            ..LoopOptions::default()
        };
        if let Err(e) = control::run_scheduler(&s, &l, opts, std::future::pending()).await {
            eprintln!("scheduler loop ended: {e}");
        }
    });
    (session, leadership, task)
}

fn replicas_of(statuses: &[&AgentStatus]) -> Vec<ReplicaId> {
    let mut all: Vec<ReplicaId> = statuses
        .iter()
        .flat_map(|s| s.assignments.keys().cloned())
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_register_fail_over_and_a_returning_node_is_fenced() {
    let etcd = EtcdCluster::start(3);
    let opts = options(&etcd, "/t-failover");
    let store = ClusterStore::connect(opts.clone()).await.unwrap();
    let agents: Vec<Agent> = futures::future::join_all(
        ["node-a", "node-b", "node-c"]
            .iter()
            .map(|id| Agent::start(agent_config(&opts, id, &[("zone", "z1")]))),
    )
    .await
    .into_iter()
    .map(|a| a.expect("agent registers"))
    .collect();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert_eq!(n.state, NodeState::Ready, "{n:?}");
        assert_eq!(n.record.epoch, 1);
        assert_eq!(n.record.labels.get("zone").map(String::as_str), Some("z1"));
        assert_eq!(n.record.capacity, Resources::new(4000, 8 << 30));
    }

    // The leader spreads 3 replicas over the 3 nodes.
    store.put_demand(&demand("web", 3)).await.unwrap();
    let (_leader_session, _leadership, _loop) = start_leader(&store, "server-1").await;
    let mut rx: Vec<_> = agents.iter().map(|a| a.status()).collect();
    for r in rx.iter_mut() {
        wait_status(r, Duration::from_secs(10), "one replica per node", |s| {
            s.assignments.len() == 1
        })
        .await;
    }

    // Kill agent b without revoking its lease (as kill -9 would).
    let mut agents = agents;
    let b = agents.remove(1);
    let rx_b = rx.remove(1);
    let old_epoch = rx_b.borrow().epoch;
    let old_assignment = rx_b.borrow().assignments.values().next().unwrap().clone();
    let lost_at = Instant::now();
    b.crash();
    let lost_after = wait_store(TTL + MARGIN, "node-b seen lost", || async {
        store
            .nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.record.id == "node-b" && n.state == NodeState::Lost)
    })
    .await;
    // Its replica now runs elsewhere: a and c hold all three between them.
    let (mut ra, mut rc) = (rx.remove(0), rx.remove(0));
    wait_status(&mut ra, Duration::from_secs(5), "failover", |_| true).await;
    let served = {
        let limit = TTL + MARGIN + Duration::from_secs(2);
        loop {
            let (sa, sc) = (ra.borrow().clone(), rc.borrow().clone());
            if replicas_of(&[&sa, &sc]).len() == 3 {
                break lost_at.elapsed();
            }
            assert!(
                lost_at.elapsed() < limit,
                "replicas not moved within {limit:?}"
            );
            tokio::select! {
                _ = ra.changed() => {}
                _ = rc.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    };
    println!(
        "lease TTL {TTL:?}: node lost after {lost_after:?}, its replica assigned elsewhere after {served:?}"
    );

    // The stale agent's report is refused (its epoch is over).
    let stale = store
        .report(old_epoch, 0, &old_assignment, "running", "container x")
        .await;
    assert!(matches!(stale, Err(ClusterError::Fenced(_))), "{stale:?}");

    // node-b comes back: a new epoch, none of its old assignments.
    let b2 = Agent::start(agent_config(&opts, "node-b", &[("zone", "z1")]))
        .await
        .unwrap();
    let mut rx_b2 = b2.status();
    let s = wait_status(&mut rx_b2, Duration::from_secs(5), "re-registered", |s| {
        s.phase == Phase::Ready
    })
    .await;
    assert_eq!(s.epoch, old_epoch + 1);
    assert!(
        !s.assignments
            .contains_key(&old_assignment.record.assignment.replica)
            || s.assignments[&old_assignment.record.assignment.replica]
                .record
                .assignment
                .epoch
                == s.epoch,
        "the returning node must not run its old assignment"
    );
    // The rebalance gives it one replica back; no replica is ever on two nodes.
    let start = Instant::now();
    loop {
        let all = [
            ra.borrow().clone(),
            rc.borrow().clone(),
            rx_b2.borrow().clone(),
        ];
        let replicas = replicas_of(&all.iter().collect::<Vec<_>>());
        let mut dedup = replicas.clone();
        dedup.dedup();
        assert_eq!(
            dedup.len(),
            replicas.len(),
            "a replica runs twice: {replicas:?}"
        );
        if all.iter().all(|s| s.assignments.len() == 1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no rebalance onto the returning node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the returning node got a replica after {:?}",
        start.elapsed()
    );
    drop(rx_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_before_the_scheduler_noticed_is_fenced() {
    let etcd = EtcdCluster::start(3);
    let opts = options(&etcd, "/t-fence");
    let store = ClusterStore::connect(opts.clone()).await.unwrap();
    let a = Agent::start(agent_config(&opts, "node-a", &[]))
        .await
        .unwrap();
    let mut rx = a.status();
    let session = Session::start(&store).await.unwrap();
    let leader = store.campaign(&session, "s1").await.unwrap();
    // One pass by hand (no loop): replica web/0 on node-a, epoch 1.
    store.put_demand(&demand("web", 1)).await.unwrap();
    let (plan, _) = control::pass(&store, &leader, &Options::default())
        .await
        .unwrap();
    assert_eq!(plan.added.len(), 1);
    let s = wait_status(&mut rx, Duration::from_secs(5), "assigned", |s| {
        s.assignments.len() == 1
    })
    .await;
    let old = s.assignments.values().next().unwrap().clone();
    assert_eq!(old.record.assignment.epoch, 1);
    store
        .report(1, 0, &old, "running", "ok")
        .await
        .expect("a current report is accepted");

    // The agent restarts at once (its old lease is still alive).
    a.crash();
    let a2 = Agent::start(agent_config(&opts, "node-a", &[]))
        .await
        .unwrap();
    let mut rx2 = a2.status();
    let s = wait_status(&mut rx2, Duration::from_secs(5), "epoch 2", |s| {
        s.phase == Phase::Ready
    })
    .await;
    assert_eq!(s.epoch, 2);
    assert!(
        s.assignments.is_empty(),
        "epoch-1 assignment must not be run: {s:?}"
    );
    assert!(matches!(
        store.report(1, 0, &old, "running", "late").await,
        Err(ClusterError::Fenced(_))
    ));
    // The scheduler replaces the fenced assignment with one under epoch 2.
    let (plan, _) = control::pass(&store, &leader, &Options::default())
        .await
        .unwrap();
    assert_eq!(plan.removed.len(), 1, "{plan:?}");
    let s = wait_status(&mut rx2, Duration::from_secs(5), "reassigned", |s| {
        s.assignments.len() == 1
    })
    .await;
    let new = s.assignments.values().next().unwrap().clone();
    assert_eq!(new.record.assignment.epoch, 2);
    assert!(store.report(1, 0, &old, "running", "late").await.is_err());
    store.report(2, 0, &new, "running", "ok").await.unwrap();
    assert_eq!(store.reports("node-a").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_on_resign_and_on_a_lost_lease() {
    let etcd = EtcdCluster::start(3);
    let store = ClusterStore::connect(options(&etcd, "/t-election"))
        .await
        .unwrap();
    assert_eq!(store.leader().await.unwrap(), None);
    let s1 = Session::start(&store).await.unwrap();
    let l1 = store.campaign(&s1, "server-1").await.unwrap();
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("server-1"));
    let mut observed = store.observe_leader().await.unwrap();

    // Candidate 2 waits behind the leader.
    let s2 = Session::start(&store).await.unwrap();
    let (store2, s2_id) = (store.clone(), s2.id());
    let _ = s2_id;
    let c2 = tokio::spawn(async move {
        let l = store2.campaign(&s2, "server-2").await.unwrap();
        (l, s2, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c2.is_finished(), "two leaders at once");

    // Resign: candidate 2 takes over at once.
    let resigned = Instant::now();
    store.resign(&l1).await.unwrap();
    let (l2, s2, elected) = tokio::time::timeout(Duration::from_secs(5), c2)
        .await
        .expect("candidate 2 elected within 5 s")
        .unwrap();
    println!("leader failover on resign: {:?}", elected - resigned);
    assert_eq!(l2.value, "server-2");
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match observed.next().await {
                Some(Ok(v)) if v == "server-2" => break v,
                Some(Ok(_)) => continue,
                other => panic!("observe ended: {other:?}"),
            }
        }
    })
    .await
    .expect("observed the new leader");
    assert_eq!(seen, "server-2");
    // The old leader's writes are fenced.
    let plan = Plan {
        added: vec![Assignment {
            replica: ReplicaId {
                app: "x".into(),
                index: 0,
            },
            node: "n".into(),
            epoch: 1,
        }],
        ..Plan::default()
    };
    assert!(matches!(
        store.apply_plan(&l1, &plan).await,
        Err(ClusterError::NotLeader)
    ));
    store.apply_plan(&l2, &plan).await.unwrap();

    // Candidate 3 waits; leader 2 dies without resigning (lease abandoned).
    let s3 = Session::start(&store).await.unwrap();
    let store3 = store.clone();
    let c3 = tokio::spawn(async move {
        let l = store3.campaign(&s3, "server-3").await.unwrap();
        (l, s3, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let died = Instant::now();
    s2.abandon();
    let (l3, _s3, elected) = tokio::time::timeout(TTL + MARGIN, c3)
        .await
        .expect("candidate 3 elected within TTL + margin")
        .unwrap();
    println!(
        "leader failover on a dead leader (lease TTL {TTL:?}): {:?}",
        elected - died
    );
    assert_eq!(l3.value, "server-3");
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("server-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_working_when_an_etcd_member_dies() {
    let mut etcd = EtcdCluster::start(3);
    let opts = options(&etcd, "/t-member");
    let store = ClusterStore::connect(opts.clone()).await.unwrap();
    let a = Agent::start(agent_config(&opts, "node-a", &[]))
        .await
        .unwrap();
    let rx = a.status();
    let mut nodes_watch = store.watch(WatchKind::Nodes, 0).await.unwrap();
    let killed = Instant::now();
    etcd.kill(0);
    // Writes and reads go on through the other members (bounded retries:
    // a request already on the dead member's connection may fail once).
    let mut first_ok = None;
    for _ in 0..100 {
        match store.set_schedule("node-a", Schedule::Cordoned).await {
            Ok(r) => {
                assert_eq!(r.schedule, Schedule::Cordoned);
                first_ok = Some(killed.elapsed());
                break;
            }
            Err(e) => {
                eprintln!("write after member loss: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let first_ok = first_ok.expect("no write succeeded within 10 s of losing a member");
    println!("first write after losing an etcd member: {first_ok:?}");
    // The node's lease outlives 2 TTLs: keep-alives reach the survivors.
    tokio::time::sleep(TTL * 2).await;
    let s = rx.borrow().clone();
    assert_eq!(s.phase, Phase::Ready, "{s:?}");
    assert_eq!(s.registrations, 1, "the lease must not have been lost");
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes[0].state, NodeState::Cordoned);
    // New sessions, registrations and elections work too.
    let b = Agent::start(agent_config(&opts, "node-b", &[]))
        .await
        .unwrap();
    assert_eq!(b.status().borrow().epoch, 1);
    let s = Session::start(&store).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), store.campaign(&s, "x"))
        .await
        .expect("campaign after member loss")
        .unwrap();
    // A watch opened before is either still delivering or ends with an error
    // (the caller re-lists and watches again); it never hangs silently here.
    store
        .set_schedule("node-a", Schedule::Active)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), nodes_watch.next()).await;
    assert!(ev.is_ok(), "the old watch neither delivered nor ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_drain_and_remove() {
    let etcd = EtcdCluster::start(3);
    let opts = options(&etcd, "/t-admin");
    let store = ClusterStore::connect(opts.clone()).await.unwrap();
    let a = Agent::start(agent_config(&opts, "node-a", &[]))
        .await
        .unwrap();
    let b = Agent::start(agent_config(&opts, "node-b", &[]))
        .await
        .unwrap();
    store.put_demand(&demand("web", 4)).await.unwrap();
    let (_s, _l, _loop) = start_leader(&store, "s1").await;
    let (mut ra, mut rb) = (a.status(), b.status());
    wait_status(&mut ra, Duration::from_secs(10), "2 on a", |s| {
        s.assignments.len() == 2
    })
    .await;
    wait_status(&mut rb, Duration::from_secs(10), "2 on b", |s| {
        s.assignments.len() == 2
    })
    .await;

    // Cordon keeps what runs; a scale-up goes to b only.
    store
        .set_schedule("node-a", Schedule::Cordoned)
        .await
        .unwrap();
    store.put_demand(&demand("web", 5)).await.unwrap();
    wait_status(&mut rb, Duration::from_secs(10), "3 on b", |s| {
        s.assignments.len() == 3
    })
    .await;
    assert_eq!(ra.borrow().assignments.len(), 2);

    // Removing a live node with replicas is refused.
    assert!(matches!(
        store.remove_node("node-a").await,
        Err(ClusterError::Conflict(_))
    ));
    // Drain moves them all to b.
    let drained = Instant::now();
    store
        .set_schedule("node-a", Schedule::Draining)
        .await
        .unwrap();
    wait_status(&mut ra, Duration::from_secs(10), "a drained", |s| {
        s.assignments.is_empty()
    })
    .await;
    wait_status(&mut rb, Duration::from_secs(10), "5 on b", |s| {
        s.assignments.len() == 5
    })
    .await;
    println!("drain of 2 replicas took {:?}", drained.elapsed());
    let info: BTreeMap<String, _> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.record.id.clone(), n))
        .collect();
    assert_eq!(info["node-a"].state, NodeState::Draining);
    assert_eq!(info["node-a"].replicas, 0);
    assert_eq!(info["node-b"].replicas, 5);
    assert_eq!(
        info["node-b"].allocated,
        Resources::new(500, 5 * (64 << 20))
    );

    // Now it can go; its agent learns it was removed and stops.
    store.remove_node("node-a").await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), a.wait())
        .await
        .expect("the removed agent ends")
        .unwrap();
    assert_eq!(end, Phase::Removed);
    assert!(store.node("node-a").await.unwrap().is_none());
    assert!(matches!(
        store.set_schedule("node-a", Schedule::Active).await,
        Err(ClusterError::NotFound(_))
    ));
    // Graceful stop revokes the lease: lost at once, not after the TTL.
    let stopped = Instant::now();
    assert_eq!(b.stop().await.unwrap(), Phase::Stopped);
    let took = wait_store(Duration::from_secs(1), "b lost after stop", || async {
        store.nodes().await.unwrap()[0].state == NodeState::Lost
    })
    .await;
    println!(
        "a stopped agent is lost after {:?}",
        stopped.elapsed().max(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_expire_and_only_digests_are_stored() {
    let etcd = EtcdCluster::start(1);
    let store = ClusterStore::connect(options(&etcd, "/t-join"))
        .await
        .unwrap();
    let (secret, record) = store
        .create_join_token("admin", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(secret.starts_with("slpj_"));
    assert_eq!(store.check_join_token(&secret).await.unwrap(), record);
    assert!(store.check_join_token("slpj_nope").await.is_err());
    assert!(store.check_join_token("not-a-token").await.is_err());
    // The secret itself is nowhere in etcd.
    let mut c = store.client();
    let all = c
        .get(
            "/t-join/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    for kv in all.kvs() {
        assert!(!String::from_utf8_lossy(kv.key()).contains(&secret));
        assert!(!String::from_utf8_lossy(kv.value()).contains(&secret));
    }
    let (short, _) = store
        .create_join_token("admin", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(
        store.check_join_token(&short).await,
        Err(ClusterError::NotFound(m)) if m.contains("expired")
    ));
}
