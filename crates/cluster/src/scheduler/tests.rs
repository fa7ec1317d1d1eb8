use super::*;
use crate::model::Labels;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const GIB: u64 = 1 << 30;

fn node(id: &str, cpu: u64, mem_gib: u64) -> NodeView {
    NodeView {
        id: id.into(),
        capacity: Resources::new(cpu, mem_gib * GIB),
        labels: Labels::new(),
        state: NodeState::Ready,
        epoch: 1,
    }
}

fn app(name: &str, replicas: u32, cpu: u64, mem_mib: u64) -> AppDemand {
    AppDemand {
        app: name.into(),
        replicas,
        request: Resources::new(cpu, mem_mib << 20),
        constraints: Labels::new(),
        container: None,
        hosts: Vec::new(),
        ..Default::default()
    }
}

fn nodes_of(plan: &Plan, app: &str) -> Vec<String> {
    plan.assignments
        .iter()
        .filter(|a| a.replica.app == app)
        .map(|a| a.node.clone())
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn replicas_spread_across_nodes_first() {
    let nodes = [node("a", 4000, 8), node("b", 4000, 8), node("c", 4000, 8)];
    let plan = schedule(&nodes, &[app("web", 3, 100, 64)], &[], &Options::default());
    let mut on = nodes_of(&plan, "web");
    on.sort();
    assert_eq!(on, ["a", "b", "c"]);
    assert!(plan.unschedulable.is_empty());
    assert_eq!(plan.added.len(), 3);
    // Six replicas: two per node.
    let plan = schedule(&nodes, &[app("web", 6, 100, 64)], &[], &Options::default());
    for n in ["a", "b", "c"] {
        assert_eq!(nodes_of(&plan, "web").iter().filter(|x| *x == n).count(), 2);
    }
}

#[test]
fn least_loaded_node_wins_among_equals() {
    let nodes = [node("a", 4000, 8), node("b", 4000, 8)];
    let busy = app("busy", 1, 3000, 64);
    let current = [Assignment {
        replica: ReplicaId {
            app: "busy".into(),
            index: 0,
        },
        node: "a".into(),
        epoch: 1,
    }];
    let plan = schedule(
        &nodes,
        &[busy, app("web", 1, 100, 64)],
        &current,
        &Options::default(),
    );
    assert_eq!(nodes_of(&plan, "web"), ["b"]);
    assert_eq!(nodes_of(&plan, "busy"), ["a"]);
}

#[test]
fn capacity_and_labels_are_respected() {
    let mut ssd = node("ssd", 1000, 1);
    ssd.labels = labels(&[("disk", "ssd")]);
    let nodes = [ssd, node("plain", 8000, 16)];
    let mut db = app("db", 3, 400, 256);
    db.constraints = labels(&[("disk", "ssd")]);
    let plan = schedule(&nodes, &[db], &[], &Options::default());
    // Two fit on the ssd node (800 of 1000 millis); the third does not.
    assert_eq!(nodes_of(&plan, "db"), ["ssd", "ssd"]);
    assert_eq!(plan.unschedulable.len(), 1);
    assert!(
        plan.unschedulable[0]
            .reason
            .contains("not enough free capacity"),
        "{:?}",
        plan.unschedulable
    );
    let mut gpu = app("ml", 1, 1, 1);
    gpu.constraints = labels(&[("gpu", "yes")]);
    let plan = schedule(&nodes, &[gpu], &[], &Options::default());
    assert!(plan.unschedulable[0].reason.contains("gpu=yes"));
}

#[test]
fn cordoned_draining_and_lost_nodes_get_nothing_new() {
    let mut nodes = vec![node("a", 4000, 8), node("b", 4000, 8), node("c", 4000, 8)];
    nodes[0].state = NodeState::Cordoned;
    nodes[1].state = NodeState::Draining;
    nodes[2].state = NodeState::Lost;
    let plan = schedule(&nodes, &[app("web", 2, 1, 1)], &[], &Options::default());
    assert!(plan.assignments.is_empty());
    assert_eq!(plan.unschedulable.len(), 2);
    assert!(plan.unschedulable[0].reason.contains("no ready node"));
}

#[test]
fn existing_assignments_stay_and_cordon_keeps_them() {
    let mut nodes = vec![node("a", 4000, 8), node("b", 4000, 8), node("c", 4000, 8)];
    let demands = [app("web", 3, 100, 64)];
    let first = schedule(&nodes, &demands, &[], &Options::default());
    let again = schedule(&nodes, &demands, &first.assignments, &Options::default());
    assert!(again.is_noop(), "{again:?}");
    nodes[0].state = NodeState::Cordoned;
    let cordoned = schedule(&nodes, &demands, &first.assignments, &Options::default());
    assert!(
        cordoned.is_noop(),
        "cordon must not move replicas: {cordoned:?}"
    );
}

#[test]
fn lost_and_draining_nodes_are_emptied_elsewhere() {
    let mut nodes = vec![node("a", 4000, 8), node("b", 4000, 8), node("c", 4000, 8)];
    let demands = [app("web", 3, 100, 64), app("api", 2, 100, 64)];
    let first = schedule(&nodes, &demands, &[], &Options::default());
    nodes[1].state = NodeState::Lost;
    let plan = schedule(&nodes, &demands, &first.assignments, &Options::default());
    assert!(plan.assignments.iter().all(|a| a.node != "b"));
    assert_eq!(plan.assignments.len(), 5);
    assert!(plan
        .removed
        .iter()
        .all(|r| r.assignment.node == "b" && r.reason == RemovalReason::NodeLost));
    // Only the lost node's replicas moved.
    let kept = first.assignments.iter().filter(|a| a.node != "b").count();
    assert_eq!(plan.added.len(), first.assignments.len() - kept);
    nodes[1].state = NodeState::Ready;
    nodes[2].state = NodeState::Draining;
    let drained = schedule(&nodes, &demands, &plan.assignments, &Options::default());
    assert!(drained.assignments.iter().all(|a| a.node != "c"));
    assert!(drained
        .removed
        .iter()
        .any(|r| r.reason == RemovalReason::NodeDraining));
}

#[test]
fn a_node_that_came_back_has_its_old_assignments_fenced() {
    let mut nodes = vec![node("a", 4000, 8), node("b", 4000, 8)];
    let demands = [app("web", 2, 100, 64)];
    let first = schedule(&nodes, &demands, &[], &Options::default());
    // b re-registered (new epoch) before the scheduler saw it lost.
    nodes[1].epoch = 2;
    let plan = schedule(&nodes, &demands, &first.assignments, &Options::default());
    let fenced: Vec<_> = plan
        .removed
        .iter()
        .filter(|r| r.reason == RemovalReason::Fenced)
        .collect();
    assert_eq!(fenced.len(), 1);
    assert_eq!(fenced[0].assignment.node, "b");
    assert_eq!(fenced[0].assignment.epoch, 1);
    // Re-placed under the new epoch (anti-affinity sends it back to b).
    let on_b: Vec<_> = plan.assignments.iter().filter(|a| a.node == "b").collect();
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0].epoch, 2);
}

#[test]
fn scale_down_removes_highest_indices_and_app_removal_everything() {
    let nodes = [node("a", 4000, 8), node("b", 4000, 8)];
    let first = schedule(&nodes, &[app("web", 4, 1, 1)], &[], &Options::default());
    let down = schedule(
        &nodes,
        &[app("web", 2, 1, 1)],
        &first.assignments,
        &Options::default(),
    );
    let idx: Vec<u32> = down.assignments.iter().map(|a| a.replica.index).collect();
    assert_eq!(idx, [0, 1]);
    assert!(down
        .removed
        .iter()
        .all(|r| r.reason == RemovalReason::ScaledDown && r.assignment.replica.index >= 2));
    let gone = schedule(&nodes, &[], &first.assignments, &Options::default());
    assert!(gone.assignments.is_empty());
    assert_eq!(gone.removed.len(), 4);
    assert!(gone
        .removed
        .iter()
        .all(|r| r.reason == RemovalReason::AppRemoved));
}

#[test]
fn duplicates_unknown_nodes_and_label_changes_are_withdrawn() {
    let mut nodes = vec![node("a", 4000, 8), node("b", 4000, 8)];
    let r0 = ReplicaId {
        app: "web".into(),
        index: 0,
    };
    let current = [
        Assignment {
            replica: r0.clone(),
            node: "a".into(),
            epoch: 1,
        },
        Assignment {
            replica: r0.clone(),
            node: "b".into(),
            epoch: 1,
        },
        Assignment {
            replica: ReplicaId {
                app: "web".into(),
                index: 1,
            },
            node: "zz".into(),
            epoch: 1,
        },
    ];
    let plan = schedule(
        &nodes,
        &[app("web", 2, 1, 1)],
        &current,
        &Options::default(),
    );
    let reasons: Vec<_> = plan.removed.iter().map(|r| r.reason).collect();
    assert!(reasons.contains(&RemovalReason::Duplicate));
    assert!(reasons.contains(&RemovalReason::NodeUnknown));
    assert_eq!(plan.assignments.len(), 2);
    let mut pinned = app("web", 1, 1, 1);
    pinned.constraints = labels(&[("zone", "x")]);
    nodes[0].labels = labels(&[("zone", "x")]);
    let on_a = schedule(
        &nodes,
        std::slice::from_ref(&pinned),
        &[],
        &Options::default(),
    );
    assert_eq!(nodes_of(&on_a, "web"), ["a"]);
    nodes[0].labels = labels(&[("zone", "y")]);
    nodes[1].labels = labels(&[("zone", "x")]);
    let moved = schedule(&nodes, &[pinned], &on_a.assignments, &Options::default());
    assert_eq!(nodes_of(&moved, "web"), ["b"]);
    assert_eq!(moved.removed[0].reason, RemovalReason::LabelsChanged);
}

#[test]
fn rebalance_on_join_is_bounded_and_converges() {
    let mut nodes: Vec<NodeView> = (0..3).map(|i| node(&format!("n{i}"), 8000, 16)).collect();
    let demands: Vec<AppDemand> = (0..4)
        .map(|i| app(&format!("app{i}"), 6, 200, 128))
        .collect();
    let first = schedule(&nodes, &demands, &[], &Options::default());
    nodes.push(node("n3", 8000, 16));
    let opts = Options {
        max_moves: 3,
        ..Options::default()
    };
    let mut current = first.assignments.clone();
    let mut passes = 0;
    loop {
        let plan = schedule(&nodes, &demands, &current, &opts);
        assert!(plan.removed.len() <= 3, "bounded: {}", plan.removed.len());
        assert!(plan
            .removed
            .iter()
            .all(|r| r.reason == RemovalReason::Rebalanced));
        if plan.is_noop() {
            break;
        }
        current = plan.assignments;
        passes += 1;
        assert!(passes < 20, "rebalance does not converge");
    }
    let on_new = current.iter().filter(|a| a.node == "n3").count();
    assert!(on_new >= 4, "the new node got {on_new} replicas");
    for d in &demands {
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for a in current.iter().filter(|a| a.replica.app == d.app) {
            *per_node.entry(a.node.as_str()).or_default() += 1;
        }
        let max = per_node.values().max().unwrap();
        let min = nodes
            .iter()
            .map(|n| per_node.get(n.id.as_str()).copied().unwrap_or(0))
            .min()
            .unwrap();
        assert!(max - min <= 1, "{}: {per_node:?}", d.app);
    }
    // Without rebalancing nothing running moves.
    let still = schedule(
        &nodes,
        &demands,
        &first.assignments,
        &Options {
            rebalance: false,
            ..Options::default()
        },
    );
    assert!(still.is_noop());
}

#[test]
fn rebalance_evens_load_between_nodes() {
    let nodes = [node("a", 1000, 4), node("b", 1000, 4)];
    // Two apps of one replica each, both placed on a by history.
    let demands = [app("x", 1, 400, 64), app("y", 1, 400, 64)];
    let current: Vec<Assignment> = ["x", "y"]
        .iter()
        .map(|n| Assignment {
            replica: ReplicaId {
                app: n.to_string(),
                index: 0,
            },
            node: "a".into(),
            epoch: 1,
        })
        .collect();
    let plan = schedule(&nodes, &demands, &current, &Options::default());
    assert_eq!(plan.removed.len(), 1);
    assert_eq!(plan.added[0].node, "b");
    let next = schedule(&nodes, &demands, &plan.assignments, &Options::default());
    assert!(next.is_noop(), "{next:?}");
}

// ---- property-style checks on random clusters ----

fn random_cluster(rng: &mut StdRng) -> (Vec<NodeView>, Vec<AppDemand>) {
    let zones = ["a", "b", "c"];
    let nodes = (0..rng.gen_range(1..25))
        .map(|i| NodeView {
            id: format!("node-{i:02}"),
            capacity: Resources::new(rng.gen_range(0..8) * 1000, rng.gen_range(0..32) * GIB),
            labels: labels(&[("zone", zones[rng.gen_range(0..3)])]),
            state: match rng.gen_range(0..10) {
                0 => NodeState::Cordoned,
                1 => NodeState::Draining,
                2 => NodeState::Lost,
                _ => NodeState::Ready,
            },
            epoch: rng.gen_range(1..4),
        })
        .collect();
    let apps = (0..rng.gen_range(0..15))
        .map(|i| AppDemand {
            app: format!("app-{i}"),
            replicas: rng.gen_range(0..12),
            request: Resources::new(rng.gen_range(0..1500), rng.gen_range(0..3000) << 20),
            constraints: if rng.gen_bool(0.3) {
                labels(&[("zone", zones[rng.gen_range(0..3)])])
            } else {
                Labels::new()
            },
            container: None,
            hosts: Vec::new(),
            ..Default::default()
        })
        .collect();
    (nodes, apps)
}

/// Perturbs the cluster between two passes: nodes lost, back with a new
/// epoch, cordoned, drained, joined; apps scaled.
fn perturb(rng: &mut StdRng, nodes: &mut Vec<NodeView>, apps: &mut [AppDemand]) {
    for n in nodes.iter_mut() {
        match rng.gen_range(0..12) {
            0 => n.state = NodeState::Lost,
            1 => {
                n.state = NodeState::Ready;
                n.epoch += 1;
            }
            2 => n.state = NodeState::Cordoned,
            3 => n.state = NodeState::Draining,
            4 => n.state = NodeState::Ready,
            _ => {}
        }
    }
    if rng.gen_bool(0.3) {
        let i = nodes.len();
        nodes.push(NodeView {
            id: format!("node-{i:02}"),
            capacity: Resources::new(4000, 8 * GIB),
            labels: Labels::new(),
            state: NodeState::Ready,
            epoch: 1,
        });
    }
    for a in apps.iter_mut() {
        if rng.gen_bool(0.2) {
            a.replicas = rng.gen_range(0..12);
        }
    }
}

fn check_invariants(nodes: &[NodeView], apps: &[AppDemand], before: &[Assignment], plan: &Plan) {
    let by_id: HashMap<&str, &NodeView> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let by_app: HashMap<&str, &AppDemand> = apps.iter().map(|a| (a.app.as_str(), a)).collect();
    let before: BTreeSet<&Assignment> = before.iter().collect();
    let mut seen = BTreeSet::new();
    let mut used: HashMap<&str, Resources> = HashMap::new();
    for a in &plan.assignments {
        assert!(seen.insert(&a.replica), "{} assigned twice", a.replica);
        let node = by_id[a.node.as_str()];
        let app = by_app[a.replica.app.as_str()];
        assert!(a.replica.index < app.replicas);
        assert_eq!(a.epoch, node.epoch, "assignment under a stale epoch");
        assert!(labels_match(&node.labels, &app.constraints));
        assert!(
            matches!(node.state, NodeState::Ready | NodeState::Cordoned),
            "{} on a {:?} node",
            a.replica,
            node.state
        );
        if !before.contains(a) {
            assert_eq!(
                node.state,
                NodeState::Ready,
                "new placement on {:?}",
                node.state
            );
        }
        let u = used.entry(a.node.as_str()).or_default();
        *u = u.plus(app.request);
    }
    // New placements never overcommit (kept ones predate any capacity change).
    for a in &plan.added {
        let node = by_id[a.node.as_str()];
        assert!(
            used[a.node.as_str()].fits_in(node.capacity),
            "{} overcommitted",
            node.id
        );
    }
    // Every wanted replica is placed or reported, never both.
    for app in apps {
        for index in 0..app.replicas {
            let r = ReplicaId {
                app: app.app.clone(),
                index,
            };
            let reported = plan.unschedulable.iter().any(|u| u.replica == r);
            assert!(seen.contains(&r) != reported, "{r}: placed xor reported");
        }
    }
    // The diff is exact.
    let after: BTreeSet<&Assignment> = plan.assignments.iter().collect();
    let removed: BTreeSet<&Assignment> = plan.removed.iter().map(|r| &r.assignment).collect();
    let added: BTreeSet<&Assignment> = plan.added.iter().collect();
    let expect_removed: BTreeSet<&Assignment> = before.difference(&after).copied().collect();
    let expect_added: BTreeSet<&Assignment> = after.difference(&before).copied().collect();
    assert_eq!(removed, expect_removed);
    assert_eq!(added, expect_added);
}

#[test]
fn random_clusters_keep_the_invariants() {
    let opts = Options::default();
    for seed in 0..400u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut nodes, mut apps) = random_cluster(&mut rng);
        let mut current = Vec::new();
        for _round in 0..6 {
            let plan = schedule(&nodes, &apps, &current, &opts);
            check_invariants(&nodes, &apps, &current, &plan);
            current = plan.assignments;
            perturb(&mut rng, &mut nodes, &mut apps);
        }
    }
}

#[test]
fn the_result_does_not_depend_on_input_order() {
    let opts = Options::default();
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut nodes, mut apps) = random_cluster(&mut rng);
        let current = schedule(&nodes, &apps, &[], &opts).assignments;
        perturb(&mut rng, &mut nodes, &mut apps);
        let plan = schedule(&nodes, &apps, &current, &opts);
        let (mut n2, mut a2, mut c2) = (nodes.clone(), apps.clone(), current.clone());
        n2.shuffle(&mut rng);
        a2.shuffle(&mut rng);
        c2.shuffle(&mut rng);
        assert_eq!(plan, schedule(&n2, &a2, &c2, &opts), "seed {seed}");
    }
}

#[test]
fn repeated_passes_reach_a_fixed_point() {
    let opts = Options::default();
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut nodes, mut apps) = random_cluster(&mut rng);
        let mut current = schedule(&nodes, &apps, &[], &opts).assignments;
        perturb(&mut rng, &mut nodes, &mut apps);
        let mut passes = 0;
        loop {
            let plan = schedule(&nodes, &apps, &current, &opts);
            if plan.is_noop() {
                break;
            }
            // After the first pass, only rebalancing moves remain.
            if passes > 0 {
                assert!(
                    plan.removed
                        .iter()
                        .all(|r| r.reason == RemovalReason::Rebalanced),
                    "seed {seed}: {:?}",
                    plan.removed
                );
            }
            current = plan.assignments;
            passes += 1;
            assert!(passes < 200, "seed {seed}: no fixed point");
        }
    }
}

#[test]
fn ample_capacity_means_perfect_spread() {
    for seed in 0..100u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(1..12);
        let nodes: Vec<NodeView> = (0..n)
            .map(|i| node(&format!("n{i:02}"), 64_000, 256))
            .collect();
        let apps: Vec<AppDemand> = (0..rng.gen_range(1..8))
            .map(|i| app(&format!("a{i}"), rng.gen_range(0..30), 100, 64))
            .collect();
        let plan = schedule(&nodes, &apps, &[], &Options::default());
        assert!(plan.unschedulable.is_empty());
        for a in &apps {
            let mut counts = vec![0u32; nodes.len()];
            for x in plan.assignments.iter().filter(|x| x.replica.app == a.app) {
                counts[nodes.iter().position(|n| n.id == x.node).unwrap()] += 1;
            }
            let (max, min) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
            assert!(max - min <= 1, "seed {seed} {}: {counts:?}", a.app);
        }
    }
}

fn rule(attribute: &str, equal: bool, value: &str) -> crate::model::PlacementRule {
    crate::model::PlacementRule {
        attribute: attribute.into(),
        equal,
        value: value.into(),
    }
}

#[test]
fn placement_rules_limits_pins_and_global_services() {
    let mut nodes = [node("a", 4000, 8), node("b", 4000, 8), node("c", 4000, 8)];
    nodes[0].labels = labels(&[("zone", "x")]);
    nodes[1].labels = labels(&[("zone", "y")]);
    let opts = Options::default();
    // `!=` on a label: a node without the label is unequal too.
    let mut web = app("web", 4, 100, 64);
    web.rules = vec![rule("node.labels.zone", false, "x")];
    let plan = schedule(&nodes, &[web.clone()], &[], &opts);
    assert!(!nodes_of(&plan, "web").contains(&"a".to_string()));
    assert_eq!(nodes_of(&plan, "web").len(), 4);
    // At most one per node: the fourth replica has nowhere to go, and says why.
    web.max_per_node = Some(1);
    let plan = schedule(&nodes, &[web.clone()], &[], &opts);
    assert_eq!(nodes_of(&plan, "web").len(), 2);
    assert_eq!(plan.unschedulable.len(), 2);
    assert!(
        plan.unschedulable[0]
            .reason
            .contains("max_replicas_per_node"),
        "{:?}",
        plan.unschedulable
    );
    // node.hostname.
    let mut db = app("db", 1, 100, 64);
    db.rules = vec![rule("node.hostname", true, "c")];
    let plan = schedule(&nodes, &[db.clone()], &[], &opts);
    assert_eq!(nodes_of(&plan, "db"), ["c"]);
    // Pinned to its volume's node: when that node is lost, it waits.
    let mut pg = app("pg", 1, 100, 64);
    pg.pinned_node = Some("b".into());
    let plan = schedule(&nodes, &[pg.clone()], &[], &opts);
    assert_eq!(nodes_of(&plan, "pg"), ["b"]);
    let mut lost = nodes.clone();
    lost[1].state = NodeState::Lost;
    let plan = schedule(&lost, &[pg.clone()], &plan.assignments, &opts);
    assert!(nodes_of(&plan, "pg").is_empty());
    assert!(
        plan.unschedulable[0].reason.contains("volume is on node b"),
        "{:?}",
        plan.unschedulable
    );
    // Global: one on every allowed live node, whatever `replicas` says;
    // a lost node's replica is not moved onto another node.
    let mut agent = app("agent", 0, 100, 64);
    agent.global = true;
    let plan = schedule(&nodes, &[agent.clone()], &[], &opts);
    let mut on = nodes_of(&plan, "agent");
    on.sort();
    assert_eq!(on, ["a", "b", "c"]);
    let after = schedule(&lost, &[agent.clone()], &plan.assignments, &opts);
    let mut on = nodes_of(&after, "agent");
    on.sort();
    assert_eq!(on, ["a", "c"]);
    assert!(after.unschedulable.is_empty());
    agent.rules = vec![rule("node.labels.zone", true, "y")];
    let plan = schedule(&nodes, &[agent], &[], &opts);
    assert_eq!(nodes_of(&plan, "agent"), ["b"]);
}
