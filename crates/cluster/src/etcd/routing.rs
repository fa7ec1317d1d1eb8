//! What the proxy of every server routes by: the apps' demands (host names,
//! health path), the assignments and the agents' replica reports of all
//! nodes, read at one revision so a watch can continue from it.

use super::{decode, ClusterStore, ReplicaReport, Result, StoredAssignment};
use crate::model::{AppDemand, ReplicaId};
use etcd_client::GetOptions;

/// One agent's report with the replica and node it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The reporting node.
    pub node: String,
    /// The replica.
    pub replica: ReplicaId,
    /// What the agent said.
    pub report: ReplicaReport,
}

/// Demands, assignments and reports at one etcd revision.
#[derive(Debug, Clone, Default)]
pub struct RoutingSnapshot {
    /// The etcd revision of the reads: watch from `revision + 1`.
    pub revision: i64,
    /// Every app's demand.
    pub demands: Vec<AppDemand>,
    /// Every assignment (any node, any epoch).
    pub assignments: Vec<StoredAssignment>,
    /// Every replica report of every node.
    pub reports: Vec<NodeReport>,
}

/// `{node}/{app}/{index}` (an `assign/` or `status/` key without its
/// directory) as the node and the replica.
pub fn replica_key(rest: &str) -> Option<(String, ReplicaId)> {
    let mut parts = rest.split('/');
    let (node, app, index) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || node.is_empty() || app.is_empty() {
        return None;
    }
    let index = index.parse().ok()?;
    Some((
        node.to_owned(),
        ReplicaId {
            app: app.to_owned(),
            index,
        },
    ))
}

impl ClusterStore {
    /// Reads demands, assignments and reports at one revision. A value that
    /// does not decode is skipped with a warning (one bad record must not
    /// take every route down).
    pub async fn routing_snapshot(&self) -> Result<RoutingSnapshot> {
        let first = self
            .get_raw(&self.key("apps/"), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = first.header().map(|h| h.revision()).unwrap_or(0);
        let at = GetOptions::new().with_prefix().with_revision(revision);
        let assign = self.get_raw(&self.key("assign/"), Some(at.clone())).await?;
        let status = self.get_raw(&self.key("status/"), Some(at)).await?;
        let mut snap = RoutingSnapshot {
            revision,
            ..Default::default()
        };
        let decoded = |kv: &etcd_client::KeyValue| {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            (key, kv.value().to_vec(), kv.mod_revision())
        };
        for (key, value, _) in first.kvs().iter().map(decoded) {
            match decode::<AppDemand>(&key, &value) {
                Ok(d) => snap.demands.push(d),
                Err(e) => tracing::warn!(error = %e, "routing: skipped a demand"),
            }
        }
        for (key, value, rev) in assign.kvs().iter().map(decoded) {
            match decode(&key, &value) {
                Ok(record) => snap.assignments.push(StoredAssignment {
                    record,
                    revision: rev,
                }),
                Err(e) => tracing::warn!(error = %e, "routing: skipped an assignment"),
            }
        }
        let status_dir = self.key("status/");
        for (key, value, _) in status.kvs().iter().map(decoded) {
            let Some((node, replica)) = key.strip_prefix(&status_dir).and_then(replica_key) else {
                continue;
            };
            match decode::<ReplicaReport>(&key, &value) {
                Ok(report) => snap.reports.push(NodeReport {
                    node,
                    replica,
                    report,
                }),
                Err(e) => tracing::warn!(error = %e, "routing: skipped a replica report"),
            }
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_keys_parse() {
        let (node, r) = replica_key("node-1/web/2").unwrap();
        assert_eq!(
            (node.as_str(), r.app.as_str(), r.index),
            ("node-1", "web", 2)
        );
        assert!(replica_key("node-1/web").is_none());
        assert!(replica_key("node-1/web/x").is_none());
        assert!(replica_key("node-1/web/1/extra").is_none());
        assert!(replica_key("/web/1").is_none());
    }
}
