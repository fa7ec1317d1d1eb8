//! Scheduling throughput: 1,000 replicas (100 apps × 10) placed on 50
//! simulated nodes, and the time to reschedule one lost node's replicas.
//!
//! 1. The pure placement function (`slipway_cluster::scheduler::schedule`),
//!    against its peer in the same run: a naive round-robin first-fit with
//!    no anti-affinity or load scoring (the cost of placing well).
//! 2. End to end on a real 3-member etcd cluster on loopback: read a
//!    snapshot, schedule, write the 1,000 assignments in leader-fenced
//!    transactions; then one node's lease is revoked and the pass that moves
//!    its replicas is timed.
//!
//! Run with `cargo bench --bench scheduler` (needs `etcd`: scripts/deps.sh).

use slipway_cluster::control;
use slipway_cluster::etcd::{NodeSpec, Session};
use slipway_cluster::scheduler::{schedule, Options, Plan};
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{
    AppDemand, Assignment, ClusterStore, Labels, NodeState, NodeView, ReplicaId, Resources,
};
use std::time::{Duration, Instant};

const NODES: usize = 50;
const APPS: usize = 100;
const PER_APP: u32 = 10;

fn nodes() -> Vec<NodeView> {
    (0..NODES)
        .map(|i| NodeView {
            id: format!("node-{i:02}"),
            capacity: Resources::new(16_000, 64 << 30),
            labels: [("zone".to_string(), format!("z{}", i % 3))].into(),
            state: NodeState::Ready,
            epoch: 1,
        })
        .collect()
}

fn demands() -> Vec<AppDemand> {
    (0..APPS)
        .map(|i| AppDemand {
            app: format!("app-{i:03}"),
            replicas: PER_APP,
            request: Resources::new(100 + (i as u64 % 5) * 50, (128 + (i as u64 % 4) * 64) << 20),
            constraints: if i % 10 == 0 {
                [("zone".to_string(), "z1".to_string())].into()
            } else {
                Labels::new()
            },
            container: None,
            hosts: Vec::new(),
            ..Default::default()
        })
        .collect()
}

/// The peer: round-robin first fit, no spreading or load scoring.
fn naive(nodes: &[NodeView], demands: &[AppDemand]) -> Vec<Assignment> {
    let mut used = vec![Resources::default(); nodes.len()];
    let mut out = Vec::new();
    let mut next = 0;
    for d in demands {
        for index in 0..d.replicas {
            for k in 0..nodes.len() {
                let ni = (next + k) % nodes.len();
                let n = &nodes[ni];
                if slipway_cluster::labels_match(&n.labels, &d.constraints)
                    && used[ni].plus(d.request).fits_in(n.capacity)
                {
                    used[ni] = used[ni].plus(d.request);
                    out.push(Assignment {
                        replica: ReplicaId {
                            app: d.app.clone(),
                            index,
                        },
                        node: n.id.clone(),
                        epoch: n.epoch,
                    });
                    next = ni + 1;
                    break;
                }
            }
        }
    }
    out
}

/// Best of `rounds` runs of `f`.
fn best<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let v = std::hint::black_box(f());
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.unwrap())
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let total = APPS * PER_APP as usize;
    let (nodes, demands) = (nodes(), demands());
    let opts = Options::default();

    // 1. Pure placement.
    let (t_place, plan): (Duration, Plan) = best(20, || schedule(&nodes, &demands, &[], &opts));
    assert_eq!(plan.assignments.len(), total, "{:?}", plan.unschedulable);
    let (t_naive, naive_out) = best(20, || naive(&nodes, &demands));
    assert_eq!(naive_out.len(), total);
    println!(
        "scheduler: {total} replicas on {NODES} nodes in {:.2} ms = {:.0} replicas/s \
         (peer, naive round-robin first fit: {:.2} ms = {:.0}/s; ratio {:.2}x the peer's time)",
        t_place.as_secs_f64() * 1e3,
        per_sec(total, t_place),
        t_naive.as_secs_f64() * 1e3,
        per_sec(total, t_naive),
        t_place.as_secs_f64() / t_naive.as_secs_f64(),
    );
    let mut lost = nodes.clone();
    lost[7].state = NodeState::Lost;
    let on_lost = plan
        .assignments
        .iter()
        .filter(|a| a.node == "node-07")
        .count();
    let (t_lost, replan) = best(20, || schedule(&lost, &demands, &plan.assignments, &opts));
    assert!(replan.assignments.iter().all(|a| a.node != "node-07"));
    println!(
        "scheduler: rescheduling a lost node's {on_lost} replicas (1,000 running) in {:.3} ms",
        t_lost.as_secs_f64() * 1e3
    );

    // 2. End to end through etcd.
    let etcd = EtcdCluster::start(3);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let store = ClusterStore::connect(etcd.store_options("/bench", Duration::from_secs(3)))
            .await
            .expect("etcd");
        let shared = Session::start(&store).await.unwrap();
        let lone = Session::start(&store).await.unwrap();
        for n in &nodes {
            let lease = if n.id == "node-07" { lone.id() } else { shared.id() };
            let spec = NodeSpec {
                id: n.id.clone(),
                capacity: n.capacity,
                labels: n.labels.clone(),
                hostname: "bench".into(),
            };
            store.register_node(&spec, lease).await.unwrap();
        }
        for d in &demands {
            store.put_demand(d).await.unwrap();
        }
        let leader_session = Session::start(&store).await.unwrap();
        let leader = store.campaign(&leader_session, "bench").await.unwrap();
        let t = Instant::now();
        let (plan, _) = control::pass(&store, &leader, &opts).await.unwrap();
        let t_etcd = t.elapsed();
        assert_eq!(plan.added.len(), total);
        println!(
            "etcd (3 members): snapshot + schedule + write {total} assignments in {:.0} ms = {:.0} replicas placed/s ({:.1}x the pure placement's time)",
            t_etcd.as_secs_f64() * 1e3,
            per_sec(total, t_etcd),
            t_etcd.as_secs_f64() / t_place.as_secs_f64(),
        );
        lone.close().await.unwrap();
        let t = Instant::now();
        let (plan, _) = control::pass(&store, &leader, &opts).await.unwrap();
        let t_fail = t.elapsed();
        let moved = plan
            .removed
            .iter()
            .filter(|r| r.assignment.node == "node-07")
            .count();
        assert!(moved > 0);
        println!(
            "etcd (3 members): rescheduling the lost node's {moved} replicas in {:.1} ms (snapshot of {} assignments included)",
            t_fail.as_secs_f64() * 1e3,
            total
        );
    });
}
