//! Replica placement: a pure, deterministic function from the cluster's nodes,
//! the apps' demands and the current assignments to the next assignments.
//!
//! Rules, in order:
//! 1. Existing assignments stay where they are (stability) unless their app is
//!    gone or scaled down, their node is unknown, lost or draining, their
//!    epoch is not the node's current one (fencing), their node no longer
//!    carries the app's labels, or the same replica is assigned twice.
//! 2. Missing replicas go to ready nodes that carry the app's labels and have
//!    room for the request: the node with the fewest replicas of that app
//!    first (anti-affinity), then the least loaded (dominant share of CPU or
//!    memory after placement), then the smallest id. Cordoned, draining and
//!    lost nodes get nothing new. A replica no node can take is reported with
//!    the reason.
//! 3. A bounded rebalance (at most `max_moves` per pass) evens out an app's
//!    spread (a node with two more replicas than another eligible one gives
//!    one up) and then load (the most loaded ready node gives a replica to a
//!    less loaded one when their shares differ by more than the threshold).
//!    Every move strictly lowers (spread imbalance, sorted loads), so passes
//!    converge and never oscillate; a node that joins fills up over a few passes.
//!
//! The result does not depend on the order of the inputs.

use crate::model::{
    labels_match, AppDemand, Assignment, NodeState, NodeView, ReplicaId, Resources,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Knobs of a scheduling pass.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether to rebalance running replicas at all.
    pub rebalance: bool,
    /// Most replicas moved by one pass's rebalance (failover moves are not counted).
    pub max_moves: usize,
    /// Load difference (in thousandths of the dominant share) that justifies a move.
    pub load_threshold_permille: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rebalance: true,
            max_moves: 4,
            load_threshold_permille: 200,
        }
    }
}

/// Why an existing assignment is withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// The app no longer exists.
    AppRemoved,
    /// The app wants fewer replicas.
    ScaledDown,
    /// The node is not part of the cluster.
    NodeUnknown,
    /// The node's lease expired.
    NodeLost,
    /// The node is being drained.
    NodeDraining,
    /// Made under an older epoch of the node: the node came back since.
    Fenced,
    /// The node no longer carries the labels the app requires.
    LabelsChanged,
    /// The replica was assigned to another node too.
    Duplicate,
    /// The node holds more replicas of the app than `max_per_node`.
    PerNodeLimit,
    /// Moved by the rebalance.
    Rebalanced,
}

/// An assignment taken away, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The withdrawn assignment.
    pub assignment: Assignment,
    /// Why.
    pub reason: RemovalReason,
}

/// A replica that could not be placed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unschedulable {
    /// The replica.
    pub replica: ReplicaId,
    /// For people: what is missing.
    pub reason: String,
}

/// The outcome of a pass: the full next set of assignments and the difference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Every assignment after the pass, sorted by replica.
    pub assignments: Vec<Assignment>,
    /// Assignments to create.
    pub added: Vec<Assignment>,
    /// Assignments to delete.
    pub removed: Vec<Removal>,
    /// Replicas left without a node.
    pub unschedulable: Vec<Unschedulable>,
}

impl Plan {
    /// Whether applying the plan changes nothing.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// One pass of the scheduler (see the module documentation for the rules).
pub fn schedule(
    nodes: &[NodeView],
    demands: &[AppDemand],
    current: &[Assignment],
    opts: &Options,
) -> Plan {
    Pass::new(nodes, demands).run(current, opts)
}

/// The working state of a pass: nodes and apps sorted by id, with the
/// per-node usage and per-app spread of the assignments made so far.
struct Pass<'a> {
    nodes: Vec<&'a NodeView>,
    node_ix: HashMap<&'a str, usize>,
    apps: Vec<&'a AppDemand>,
    app_ix: HashMap<&'a str, usize>,
    used: Vec<Resources>,
    /// `count[app][node]`: replicas of the app on the node.
    count: Vec<Vec<u32>>,
    /// Replicas each app wants (for a global app: one per allowed live node).
    wanted: Vec<u32>,
    /// replica → (node index, epoch).
    placed: BTreeMap<ReplicaId, (usize, u64)>,
}

impl<'a> Pass<'a> {
    fn new(nodes: &'a [NodeView], demands: &'a [AppDemand]) -> Self {
        let mut nodes: Vec<&NodeView> = nodes.iter().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes.dedup_by(|a, b| a.id == b.id);
        let mut apps: Vec<&AppDemand> = demands.iter().collect();
        apps.sort_by(|a, b| a.app.cmp(&b.app));
        apps.dedup_by(|a, b| a.app == b.app);
        let node_ix = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let app_ix = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.app.as_str(), i))
            .collect();
        let wanted = apps
            .iter()
            .map(|a| {
                if a.global {
                    let live = nodes.iter().filter(|n| {
                        matches!(n.state, NodeState::Ready | NodeState::Cordoned)
                            && node_allows(a, n)
                    });
                    live.count() as u32
                } else {
                    a.replicas
                }
            })
            .collect();
        Self {
            used: vec![Resources::default(); nodes.len()],
            count: vec![vec![0; nodes.len()]; apps.len()],
            wanted,
            nodes,
            node_ix,
            apps,
            app_ix,
            placed: BTreeMap::new(),
        }
    }

    fn run(mut self, current: &[Assignment], opts: &Options) -> Plan {
        let mut current: Vec<&Assignment> = current.iter().collect();
        current.sort();
        let mut removed = Vec::new();
        for a in &current {
            match self.validate(a) {
                Ok((ai, ni)) => self.put(ai, a.replica.clone(), ni, a.epoch),
                Err(reason) => removed.push(Removal {
                    assignment: (*a).clone(),
                    reason,
                }),
            }
        }
        let unschedulable = self.place_missing();
        if opts.rebalance {
            let mut moves = 0;
            while moves < opts.max_moves && (self.spread_move() || self.load_move(opts)) {
                moves += 1;
            }
        }
        // The difference with the current assignments.
        let assignments: Vec<Assignment> = self
            .placed
            .iter()
            .map(|(r, &(ni, epoch))| Assignment {
                replica: r.clone(),
                node: self.nodes[ni].id.clone(),
                epoch,
            })
            .collect();
        let next: BTreeSet<&Assignment> = assignments.iter().collect();
        let before: BTreeSet<&Assignment> = current.iter().copied().collect();
        let withdrawn: BTreeSet<Assignment> =
            removed.iter().map(|r| r.assignment.clone()).collect();
        for a in before.difference(&next) {
            if !withdrawn.contains(*a) {
                removed.push(Removal {
                    assignment: (*a).clone(),
                    reason: RemovalReason::Rebalanced,
                });
            }
        }
        removed.sort_by(|a, b| a.assignment.cmp(&b.assignment));
        let added = next.difference(&before).map(|a| (*a).clone()).collect();
        Plan {
            assignments,
            added,
            removed,
            unschedulable,
        }
    }

    /// Whether an existing assignment may stay: `(app index, node index)`.
    fn validate(&self, a: &Assignment) -> Result<(usize, usize), RemovalReason> {
        let ai = *self
            .app_ix
            .get(a.replica.app.as_str())
            .ok_or(RemovalReason::AppRemoved)?;
        let app = self.apps[ai];
        if a.replica.index >= self.wanted[ai] {
            return Err(RemovalReason::ScaledDown);
        }
        let ni = *self
            .node_ix
            .get(a.node.as_str())
            .ok_or(RemovalReason::NodeUnknown)?;
        let node = self.nodes[ni];
        match node.state {
            NodeState::Lost => return Err(RemovalReason::NodeLost),
            NodeState::Draining => return Err(RemovalReason::NodeDraining),
            NodeState::Ready | NodeState::Cordoned => {}
        }
        if a.epoch != node.epoch {
            return Err(RemovalReason::Fenced);
        }
        if !node_allows(app, node) {
            return Err(RemovalReason::LabelsChanged);
        }
        if self.placed.contains_key(&a.replica) {
            return Err(RemovalReason::Duplicate);
        }
        if self.count[ai][ni] >= self.per_node_limit(ai) {
            return Err(RemovalReason::PerNodeLimit);
        }
        Ok((ai, ni))
    }

    fn put(&mut self, ai: usize, replica: ReplicaId, ni: usize, epoch: u64) {
        self.used[ni] = self.used[ni].plus(self.apps[ai].request);
        self.count[ai][ni] += 1;
        self.placed.insert(replica, (ni, epoch));
    }

    fn take(&mut self, ai: usize, replica: &ReplicaId) -> usize {
        let (ni, _) = self.placed.remove(replica).expect("placed replica");
        self.used[ni] = self.used[ni].minus(self.apps[ai].request);
        self.count[ai][ni] -= 1;
        ni
    }

    /// Thousandths of the node's dominant resource in use with `extra` added.
    fn share(&self, ni: usize, extra: Resources) -> u64 {
        share_of(self.used[ni].plus(extra), self.nodes[ni].capacity)
    }

    /// Most replicas of app `ai` one node may hold.
    fn per_node_limit(&self, ai: usize) -> u32 {
        let app = self.apps[ai];
        match (app.global, app.max_per_node) {
            (true, _) => 1,
            (false, Some(max)) => max.max(1),
            (false, None) => u32::MAX,
        }
    }

    /// Whether app `ai` may get a new replica on node `ni`.
    fn eligible(&self, ai: usize, ni: usize) -> bool {
        let node = self.nodes[ni];
        let app = self.apps[ai];
        node.state == NodeState::Ready
            && node_allows(app, node)
            && self.count[ai][ni] < self.per_node_limit(ai)
            && self.used[ni].plus(app.request).fits_in(node.capacity)
    }

    /// The best node for one more replica of app `ai`, if any.
    fn best_node(&self, ai: usize) -> Option<usize> {
        let request = self.apps[ai].request;
        (0..self.nodes.len())
            .filter(|&ni| self.eligible(ai, ni))
            .min_by_key(|&ni| (self.count[ai][ni], self.share(ni, request), ni))
    }

    fn place_missing(&mut self) -> Vec<Unschedulable> {
        let mut unschedulable = Vec::new();
        for ai in 0..self.apps.len() {
            let app = self.apps[ai];
            for index in 0..self.wanted[ai] {
                let replica = ReplicaId {
                    app: app.app.clone(),
                    index,
                };
                if self.placed.contains_key(&replica) {
                    continue;
                }
                match self.best_node(ai) {
                    Some(ni) => {
                        let epoch = self.nodes[ni].epoch;
                        self.put(ai, replica, ni, epoch);
                    }
                    None => {
                        let reason = self.why_not(ai);
                        unschedulable.push(Unschedulable { replica, reason });
                    }
                }
            }
        }
        unschedulable
    }

    fn why_not(&self, ai: usize) -> String {
        let app = self.apps[ai];
        let ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&ni| self.nodes[ni].state == NodeState::Ready)
            .collect();
        if ready.is_empty() {
            return "no ready node (all are cordoned, draining or lost)".into();
        }
        let matching = ready
            .iter()
            .filter(|&&ni| node_allows(app, self.nodes[ni]))
            .count();
        if matching == 0 {
            if let Some(node) = &app.pinned_node {
                return format!(
                    "its volume is on node {node}, which is not ready: the replica waits for it (it is never recreated empty elsewhere)"
                );
            }
            let mut wanted = Vec::new();
            if !app.constraints.is_empty() {
                let labels: Vec<String> = app
                    .constraints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                wanted.push(format!("the labels {}", labels.join(",")));
            }
            wanted.extend(app.rules.iter().map(|r| r.to_string()));
            return format!("no ready node has {}", wanted.join(" and "));
        }
        let limit = self.per_node_limit(ai);
        if limit != u32::MAX
            && ready
                .iter()
                .filter(|&&ni| node_allows(app, self.nodes[ni]))
                .all(|&ni| self.count[ai][ni] >= limit)
        {
            return format!(
                "each of the {matching} ready node(s) it may run on already holds {limit} of its replicas (max_replicas_per_node)"
            );
        }
        format!(
            "not enough free capacity on the {matching} ready node(s) with matching labels (each replica needs {})",
            app.request
        )
    }

    /// The highest-index replica of app `ai` on node `ni`.
    fn replica_on(&self, ai: usize, ni: usize) -> Option<ReplicaId> {
        let name = &self.apps[ai].app;
        let start = ReplicaId {
            app: name.clone(),
            index: 0,
        };
        self.placed
            .range(start..)
            .take_while(|(r, _)| &r.app == name)
            .filter(|(_, &(n, _))| n == ni)
            .map(|(r, _)| r.clone())
            .last()
    }

    fn move_replica(&mut self, ai: usize, replica: ReplicaId, to: usize) {
        self.take(ai, &replica);
        let epoch = self.nodes[to].epoch;
        self.put(ai, replica, to, epoch);
    }

    /// Moves one replica of the first app whose spread over its eligible
    /// ready nodes differs by two or more.
    fn spread_move(&mut self) -> bool {
        for ai in 0..self.apps.len() {
            let request = self.apps[ai].request;
            let ready: Vec<usize> = (0..self.nodes.len())
                .filter(|&ni| {
                    self.nodes[ni].state == NodeState::Ready
                        && node_allows(self.apps[ai], self.nodes[ni])
                })
                .collect();
            let Some(&src) = ready
                .iter()
                .filter(|&&ni| self.count[ai][ni] > 0)
                .max_by_key(|&&ni| {
                    (
                        self.count[ai][ni],
                        self.share(ni, Resources::default()),
                        std::cmp::Reverse(ni),
                    )
                })
            else {
                continue;
            };
            let dst = ready
                .iter()
                .copied()
                .filter(|&ni| ni != src && self.eligible(ai, ni))
                .min_by_key(|&ni| (self.count[ai][ni], self.share(ni, request), ni));
            if let Some(dst) = dst {
                if self.count[ai][src] >= self.count[ai][dst] + 2 {
                    if let Some(r) = self.replica_on(ai, src) {
                        self.move_replica(ai, r, dst);
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Moves one replica off the most loaded ready node to a less loaded
    /// one, when the difference is over the threshold, the move lowers the
    /// higher of the two shares and does not worsen the app's spread.
    fn load_move(&mut self, opts: &Options) -> bool {
        let zero = Resources::default();
        let ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&ni| self.nodes[ni].state == NodeState::Ready)
            .collect();
        let Some(&src) = ready
            .iter()
            .max_by_key(|&&ni| (self.share(ni, zero), std::cmp::Reverse(ni)))
        else {
            return false;
        };
        let src_share = self.share(src, zero);
        let mut dsts: Vec<usize> = ready.iter().copied().filter(|&ni| ni != src).collect();
        dsts.sort_by_key(|&ni| (self.share(ni, zero), ni));
        for dst in dsts {
            if src_share.saturating_sub(self.share(dst, zero)) <= opts.load_threshold_permille {
                break;
            }
            let on_src: Vec<(usize, ReplicaId)> = self
                .placed
                .iter()
                .filter(|(_, &(n, _))| n == src)
                .map(|(r, _)| (self.app_ix[r.app.as_str()], r.clone()))
                .collect();
            for (ai, r) in on_src {
                let request = self.apps[ai].request;
                if !self.eligible(ai, dst) || self.count[ai][dst] >= self.count[ai][src] {
                    continue;
                }
                let src_after = share_of(self.used[src].minus(request), self.nodes[src].capacity);
                if self.share(dst, request) < src_share && src_after < src_share {
                    self.move_replica(ai, r, dst);
                    return true;
                }
            }
        }
        false
    }
}

/// Whether `node` may hold replicas of `app` at all: its labels, the
/// placement rules, and the node holding the app's volume.
fn node_allows(app: &AppDemand, node: &NodeView) -> bool {
    labels_match(&node.labels, &app.constraints)
        && app.rules.iter().all(|r| r.matches(&node.id, &node.labels))
        && app.pinned_node.as_ref().is_none_or(|p| *p == node.id)
}

/// Thousandths of `cap`'s dominant resource that `used` takes (a node
/// without a resource is full as soon as anything uses it).
fn share_of(used: Resources, cap: Resources) -> u64 {
    let part = |u: u64, c: u64| -> u64 {
        if c == 0 {
            if u == 0 {
                0
            } else {
                u64::MAX
            }
        } else {
            ((u as u128 * 1000) / c as u128).min(u64::MAX as u128) as u64
        }
    };
    part(used.cpu_millis, cap.cpu_millis).max(part(used.memory_bytes, cap.memory_bytes))
}

#[cfg(test)]
mod tests;
