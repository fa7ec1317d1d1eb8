//! The leader's scheduling loop: watch nodes and demands, run the
//! scheduler on a consistent snapshot, write the plan fenced on leadership.

use crate::etcd::{
    plan_events, unschedulable_event, ClusterError, ClusterStore, Leadership, Result, WatchKind,
};
use crate::model::{Assignment, NodeView};
use crate::scheduler::{self, Plan, RemovalReason};
use futures::StreamExt;
use std::time::Duration;

/// Knobs of the loop.
#[derive(Debug, Clone, Copy)]
pub struct LoopOptions {
    /// The scheduler's own options.
    pub scheduler: scheduler::Options,
    /// Pause after a pass that rebalanced before the next rebalancing pass,
    /// so a joining node fills up gradually.
    pub rebalance_pause: Duration,
    /// Changes arriving within this window are handled by one pass.
    pub debounce: Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            scheduler: scheduler::Options::default(),
            rebalance_pause: Duration::from_secs(2),
            debounce: Duration::from_millis(20),
        }
    }
}

/// One pass: read a snapshot, schedule, apply. Returns the plan applied.
pub async fn pass(
    store: &ClusterStore,
    leader: &Leadership,
    opts: &scheduler::Options,
) -> Result<(Plan, i64)> {
    let snap = store.snapshot().await?;
    let views: Vec<NodeView> = snap.nodes.iter().map(|n| n.view()).collect();
    let current: Vec<Assignment> = snap
        .assignments
        .iter()
        .map(|a| a.record.assignment.clone())
        .collect();
    let plan = scheduler::schedule(&views, &snap.demands, &current, opts);
    if !plan.is_noop() {
        store.apply_plan(leader, &plan).await?;
        for r in &plan.removed {
            tracing::info!(replica = %r.assignment.replica, node = %r.assignment.node, reason = ?r.reason, "replica unassigned");
        }
        for a in &plan.added {
            tracing::info!(replica = %a.replica, node = %a.node, epoch = a.epoch, "replica assigned");
        }
        if let Err(e) = store.record_events(&plan_events(&plan)).await {
            tracing::warn!(error = %e, "scheduling events not recorded");
        }
    }
    for u in &plan.unschedulable {
        tracing::debug!(replica = %u.replica, reason = %u.reason, "replica unschedulable");
    }
    Ok((plan, snap.revision))
}

/// Runs passes while `leader` leads, driven by watch events on nodes and
/// demands (no polling). Returns `Ok` when `stop` completes and
/// `Err(NotLeader)` when a write finds the leadership gone.
pub async fn run_scheduler(
    store: &ClusterStore,
    leader: &Leadership,
    opts: LoopOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    // Replicas already reported as unplaceable: recorded once, not per pass.
    let mut stuck = std::collections::BTreeSet::new();
    loop {
        let step = async {
            let (plan, revision) = pass(store, leader, &opts.scheduler).await?;
            let watch = store.watch(WatchKind::Scheduling, revision + 1).await?;
            Ok::<_, ClusterError>((plan, watch))
        };
        let (plan, mut watch) = match step.await {
            Ok(x) => x,
            Err(ClusterError::NotLeader) => return Err(ClusterError::NotLeader),
            // etcd unreachable for a while: try again (the caller's lease
            // decides whether this server still leads).
            Err(e) => {
                tracing::warn!(error = %e, "scheduling pass failed; retrying");
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                }
            }
        };
        let now_stuck: std::collections::BTreeSet<_> = plan
            .unschedulable
            .iter()
            .map(|u| u.replica.clone())
            .collect();
        let fresh: Vec<_> = plan
            .unschedulable
            .iter()
            .filter(|u| !stuck.contains(&u.replica))
            .map(unschedulable_event)
            .collect();
        if let Err(e) = store.record_events(&fresh).await {
            tracing::warn!(error = %e, "scheduling events not recorded");
        }
        stuck = now_stuck;
        let rebalanced = plan
            .removed
            .iter()
            .any(|r| r.reason == RemovalReason::Rebalanced);
        // After a rebalancing pass, the next pass (which may move more) waits
        // at least `rebalance_pause`, unless something else changes.
        let pause = async {
            if rebalanced {
                tokio::time::sleep(opts.rebalance_pause).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = pause => continue,
            ev = watch.next() => match ev {
                Some(Ok(_)) => {
                    // Let a burst of changes settle into one pass.
                    let settle = tokio::time::sleep(opts.debounce);
                    tokio::pin!(settle);
                    loop {
                        tokio::select! {
                            _ = &mut settle => break,
                            more = watch.next() => if !matches!(more, Some(Ok(_))) { break },
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "scheduler watch ended; resyncing"),
                None => {}
            },
        }
    }
}

/// Whether an error means the caller lost the leadership.
pub fn lost_leadership(e: &ClusterError) -> bool {
    matches!(e, ClusterError::NotLeader)
}
