//! Cluster mode: the one view of the cluster state a server keeps, which
//! both the proxy's routes (`cluster_routes`) and release readiness, `ps`
//! and `ready` (`cluster_demand`) read.
//!
//! One task per server follows the apps' demands (`apps/`), the
//! assignments (`assign/`) and the agents' reports (`status/`) of all
//! nodes: one snapshot, then a watch from the snapshot's revision + 1, so
//! nothing is missed and nothing is polled. When the watch breaks (a member
//! went away, the revision was compacted) it reads a new snapshot. A report
//! counts while its assignment exists under the report's epoch. After each
//! burst of changes the routes are republished and the apps whose replicas
//! changed are woken (a rollout is live the moment the last replica reports
//! healthy).

use crate::Deployer;
use futures::{FutureExt, StreamExt};
use slipway_cluster::etcd::{
    replica_key, AssignmentRecord, ReplicaReport, RoutingSnapshot, WatchEvent, WatchKind,
};
use slipway_cluster::{AppDemand, ClusterStore, ReplicaId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Pause before reading a new snapshot after etcd failed.
const RETRY: Duration = Duration::from_millis(500);

/// One replica as an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeReplica {
    pub node: String,
    pub index: u32,
    pub report: ReplicaReport,
}

/// Demands, assignments and reports of every node.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub(crate) demands: BTreeMap<String, AppDemand>,
    /// (node, replica) → the epoch of its assignment.
    assignments: HashMap<(String, ReplicaId), u64>,
    /// (node, replica) → the agent's report.
    reports: HashMap<(String, ReplicaId), ReplicaReport>,
}

impl View {
    /// The view of a snapshot.
    pub fn from_snapshot(snap: RoutingSnapshot) -> Self {
        let mut view = View::default();
        for d in snap.demands {
            view.demands.insert(d.app.clone(), d);
        }
        for a in snap.assignments {
            let a = a.record.assignment;
            view.assignments.insert((a.node, a.replica), a.epoch);
        }
        for r in snap.reports {
            view.reports.insert((r.node, r.replica), r.report);
        }
        view
    }

    /// Whether `node` holds an assignment of a replica of `app`.
    pub fn assigned(&self, node: &str, app: &str) -> bool {
        self.assignments
            .keys()
            .any(|(n, replica)| n == node && owner(&replica.app) == app)
    }

    /// The demands of the services of stack `app` (`app.service`), with
    /// each service's name.
    pub fn members<'a>(&'a self, app: &str) -> impl Iterator<Item = (&'a str, &'a AppDemand)> {
        let prefix = format!("{app}.");
        self.demands
            .range(prefix.clone()..)
            .map_while(move |(k, d)| Some((k.strip_prefix(&prefix)?, d)))
    }

    /// The nodes holding an assignment of a replica of demand `name`.
    pub fn nodes_of(&self, name: &str) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .assignments
            .keys()
            .filter(|(_, replica)| replica.app == name)
            .map(|(n, _)| n.clone())
            .collect();
        nodes.sort();
        nodes
    }

    /// Applies one watched change (undecodable values count as deletions);
    /// the app it concerns, if any.
    pub fn apply(&mut self, ev: &WatchEvent) -> Option<String> {
        let value = ev.value.as_deref();
        if let Some(app) = ev.key.strip_prefix("apps/") {
            match value.and_then(|v| serde_json::from_slice::<AppDemand>(v).ok()) {
                Some(d) => self.demands.insert(app.to_owned(), d),
                None => self.demands.remove(app),
            };
            Some(owner(app).to_owned())
        } else if let Some(rest) = ev.key.strip_prefix("assign/") {
            let key = replica_key(rest)?;
            let app = key.1.app.clone();
            match value.and_then(|v| serde_json::from_slice::<AssignmentRecord>(v).ok()) {
                Some(a) => self.assignments.insert(key, a.assignment.epoch),
                None => self.assignments.remove(&key),
            };
            Some(owner(&app).to_owned())
        } else if let Some(rest) = ev.key.strip_prefix("status/") {
            let key = replica_key(rest)?;
            let app = key.1.app.clone();
            match value.and_then(|v| serde_json::from_slice::<ReplicaReport>(v).ok()) {
                Some(r) => self.reports.insert(key, r),
                None => self.reports.remove(&key),
            };
            Some(owner(&app).to_owned())
        } else {
            None
        }
    }

    /// Reports whose assignment is current: (node, replica, report).
    pub fn current_reports(&self) -> impl Iterator<Item = (&str, &ReplicaId, &ReplicaReport)> {
        self.reports
            .iter()
            .filter(|(key, report)| self.assignments.get(*key) == Some(&report.epoch))
            .map(|((node, replica), report)| (node.as_str(), replica, report))
    }

    /// The current reports of `app`, by replica index then node.
    pub fn replicas(&self, app: &str) -> Vec<NodeReplica> {
        let mut out: Vec<NodeReplica> = self
            .current_reports()
            .filter(|(_, replica, _)| replica.app == app)
            .map(|(node, replica, report)| NodeReplica {
                node: node.to_owned(),
                index: replica.index,
                report: report.clone(),
            })
            .collect();
        out.sort_by(|a, b| (a.index, &a.node).cmp(&(b.index, &b.node)));
        out
    }
}

/// Starts the task that keeps `d`'s view of the cluster current.
pub(crate) fn start(d: Deployer, store: ClusterStore) {
    tokio::spawn(follow(d, store));
}

/// The app a demand belongs to: `shop` for a stack's service `shop.web`.
pub(crate) fn owner(demand: &str) -> &str {
    demand.split_once('.').map_or(demand, |(app, _)| app)
}

/// Snapshot, watch, apply; a new snapshot whenever the watch ends.
async fn follow(d: Deployer, store: ClusterStore) {
    loop {
        let snap = match store.routing_snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot read the cluster state; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Watch first, then publish: once the view shows a snapshot, the
        // watch that follows it is live (or it failed and is retried).
        let watch = store.watch(WatchKind::Routing, snap.revision + 1).await;
        *d.inner.cluster_view.lock().unwrap() = View::from_snapshot(snap);
        d.cluster_view_changed(None);
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot watch the cluster state; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        'watch: while let Some(ev) = watch.next().await {
            let mut touched = HashSet::new();
            let mut next = Some(ev);
            // Apply the whole burst that is ready, then publish once.
            while let Some(ev) = next.take() {
                match ev {
                    Ok(ev) => {
                        if let Some(app) = d.inner.cluster_view.lock().unwrap().apply(&ev) {
                            touched.insert(app);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: the watch ended; reading a new snapshot");
                        break 'watch;
                    }
                }
                next = watch.next().now_or_never().flatten();
            }
            d.cluster_view_changed(Some(&touched));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Deployer {
    /// Publishes the view's routes and wakes the apps this server deploys
    /// among `touched` (`None`: a new snapshot, every app).
    fn cluster_view_changed(&self, touched: Option<&HashSet<String>>) {
        let routes = self.inner.cluster_view.lock().unwrap().routes();
        self.set_cluster_routes(routes);
        for id in self.cluster_app_ids(touched) {
            self.wake(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_cluster::etcd::StoredAssignment;
    use slipway_cluster::Assignment;

    #[test]
    fn a_node_is_assigned_an_app_while_it_holds_one_of_its_replicas() {
        let record = |node: &str, app: &str| StoredAssignment {
            record: AssignmentRecord {
                assignment: Assignment {
                    replica: ReplicaId {
                        app: app.into(),
                        index: 0,
                    },
                    node: node.into(),
                    epoch: 1,
                },
                assigned_at: chrono::Utc::now(),
            },
            revision: 1,
        };
        let view = View::from_snapshot(RoutingSnapshot {
            revision: 1,
            demands: Vec::new(),
            assignments: vec![record("node-a", "web"), record("node-b", "api")],
            reports: Vec::new(),
        });
        assert!(view.assigned("node-a", "web"));
        // A stack's members: its services' demands only, not a neighbour's.
        let mut view = view;
        for name in ["shop", "shop-2.web", "shop.db", "shop.web", "shopping.web"] {
            view.demands.insert(
                name.into(),
                AppDemand {
                    app: name.into(),
                    ..Default::default()
                },
            );
        }
        let members: Vec<&str> = view.members("shop").map(|(svc, _)| svc).collect();
        assert_eq!(members, ["db", "web"]);
        assert!(view.assigned("node-b", "api"));
        assert!(!view.assigned("node-a", "api"));
        assert!(!view.assigned("node-c", "web"));
    }
}
