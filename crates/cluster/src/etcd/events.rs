//! Scheduling events per app (`events/{app}/{time}`): what the leader did
//! to an app's replicas and why — placed, moved off a lost node, removed
//! on a scale-down, unplaceable. Every server reads them, so `slipway
//! events APP` shows them whichever server answers. They expire with a
//! one-day lease, which bounds what a flapping cluster can pile up.

use super::{decode, encode, ClusterStore, Result};
use crate::model::Assignment;
use crate::scheduler::{Plan, RemovalReason, Unschedulable};
use chrono::{DateTime, Utc};
use etcd_client::{GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long scheduling events are kept.
pub const EVENT_TTL_SECS: i64 = 24 * 3600;

/// Most events written in one transaction (etcd's default limit is 128 ops).
const EVENTS_PER_TXN: usize = 100;

/// One thing the scheduler did to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// The app.
    pub app: String,
    /// `placed`, `moved`, `removed`, `unschedulable`.
    pub kind: String,
    /// What happened, for people.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl ClusterEvent {
    /// An event of demand `app`; a stack service's (`shop.db`) is filed
    /// under its app (`shop`) and names the service.
    fn new(app: &str, kind: &str, message: String) -> Self {
        let (app, message) = match app.split_once('.') {
            Some((owner, service)) => (owner, format!("service {service}: {message}")),
            None => (app, message),
        };
        Self {
            app: app.to_owned(),
            kind: kind.to_owned(),
            message,
            at: Utc::now(),
        }
    }
}

/// Why a replica left a node, in words.
fn reason_text(reason: RemovalReason, node: &str) -> String {
    match reason {
        RemovalReason::AppRemoved => "the app was removed".into(),
        RemovalReason::ScaledDown => "scaled down".into(),
        RemovalReason::NodeUnknown => format!("node {node} is not in the cluster"),
        RemovalReason::NodeLost => format!("node {node} was lost"),
        RemovalReason::NodeDraining => format!("node {node} is draining"),
        RemovalReason::Fenced => format!("node {node} came back under a new epoch"),
        RemovalReason::LabelsChanged => {
            format!("node {node} no longer satisfies the placement rules")
        }
        RemovalReason::PerNodeLimit => format!("node {node} holds too many of its replicas"),
        RemovalReason::Duplicate => "it was assigned twice".into(),
        RemovalReason::Rebalanced => "rebalancing".into(),
    }
}

/// The events a plan makes: a removal and an addition of the same replica
/// read as one move.
pub fn plan_events(plan: &Plan) -> Vec<ClusterEvent> {
    let added: BTreeMap<_, &Assignment> = plan.added.iter().map(|a| (&a.replica, a)).collect();
    let mut events = Vec::new();
    let mut moved = std::collections::BTreeSet::new();
    for r in &plan.removed {
        let a = &r.assignment;
        if r.reason == RemovalReason::AppRemoved {
            continue;
        }
        let why = reason_text(r.reason, &a.node);
        match added.get(&a.replica) {
            Some(to) => {
                moved.insert(&a.replica);
                events.push(ClusterEvent::new(
                    &a.replica.app,
                    "moved",
                    format!(
                        "replica {} moved from {} to {} ({why})",
                        a.replica.index, a.node, to.node
                    ),
                ));
            }
            None => events.push(ClusterEvent::new(
                &a.replica.app,
                "removed",
                format!(
                    "replica {} removed from {} ({why})",
                    a.replica.index, a.node
                ),
            )),
        }
    }
    for a in &plan.added {
        if !moved.contains(&a.replica) {
            events.push(ClusterEvent::new(
                &a.replica.app,
                "placed",
                format!("replica {} placed on {}", a.replica.index, a.node),
            ));
        }
    }
    events
}

/// The event for a replica that fits nowhere.
pub fn unschedulable_event(u: &Unschedulable) -> ClusterEvent {
    ClusterEvent::new(
        &u.replica.app,
        "unschedulable",
        format!("replica {} cannot be placed: {}", u.replica.index, u.reason),
    )
}

impl ClusterStore {
    /// Records events (best effort for callers: scheduling has already
    /// happened when they are written).
    pub async fn record_events(&self, events: &[ClusterEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let lease = self
            .call(|mut c| async move { c.lease_grant(EVENT_TTL_SECS, None).await })
            .await?
            .id();
        let base = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        for (chunk_no, chunk) in events.chunks(EVENTS_PER_TXN).enumerate() {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    // Time-ordered keys, unique within this call.
                    let n = base + (chunk_no * EVENTS_PER_TXN + i) as i64;
                    TxnOp::put(
                        self.key(&format!("events/{}/{n:020}", e.app)),
                        encode(e),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                })
                .collect();
            self.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(())
    }

    /// The latest `limit` events of an app, oldest first.
    pub async fn app_events(&self, app: &str, limit: i64) -> Result<Vec<ClusterEvent>> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(limit.max(1));
        let res = self
            .get_raw(&self.key(&format!("events/{app}/")), Some(opts))
            .await?;
        let mut events = res
            .kvs()
            .iter()
            .map(|kv| decode::<ClusterEvent>(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReplicaId;
    use crate::scheduler::Removal;

    fn a(app: &str, index: u32, node: &str) -> Assignment {
        Assignment {
            replica: ReplicaId {
                app: app.into(),
                index,
            },
            node: node.into(),
            epoch: 1,
        }
    }

    #[test]
    fn a_removal_and_an_addition_of_one_replica_read_as_a_move() {
        let plan = Plan {
            assignments: vec![],
            added: vec![a("web", 0, "node-b"), a("web", 2, "node-c")],
            removed: vec![
                Removal {
                    assignment: a("web", 0, "node-a"),
                    reason: RemovalReason::NodeLost,
                },
                Removal {
                    assignment: a("web", 1, "node-a"),
                    reason: RemovalReason::ScaledDown,
                },
                Removal {
                    assignment: a("gone", 0, "node-a"),
                    reason: RemovalReason::AppRemoved,
                },
            ],
            unschedulable: vec![],
        };
        let text: Vec<_> = plan_events(&plan)
            .into_iter()
            .map(|e| format!("{} {} {}", e.app, e.kind, e.message))
            .collect();
        assert_eq!(
            text,
            [
                "web moved replica 0 moved from node-a to node-b (node node-a was lost)",
                "web removed replica 1 removed from node-a (scaled down)",
                "web placed replica 2 placed on node-c",
            ]
        );
    }
}
