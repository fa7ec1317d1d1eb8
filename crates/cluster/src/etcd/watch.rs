//! etcd watches as streams of changes under the cluster prefix.

use super::{AssignmentRecord, ClusterError, ClusterStore, Result, StoredAssignment};
use etcd_client::{EventType, WatchOptions};
use futures::stream::BoxStream;
use futures::StreamExt;
use std::collections::VecDeque;

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchKind {
    /// Node records, heartbeats and epochs: joins, losses, cordons.
    Nodes,
    /// Assignments: all, or one node's.
    Assignments(Option<String>),
    /// App demands.
    Demands,
    /// What the scheduler reacts to: nodes and demands.
    Scheduling,
    /// What every server's proxy routes by: demands, assignments and the
    /// agents' replica reports of all nodes.
    Routing,
}

impl WatchKind {
    /// The watched range (relative to the prefix) and the sub-prefixes kept.
    fn range(&self) -> (String, Vec<&'static str>) {
        match self {
            WatchKind::Nodes => (String::new(), vec!["nodes/", "alive/", "epochs/"]),
            WatchKind::Assignments(Some(node)) => (format!("assign/{node}/"), vec![""]),
            WatchKind::Assignments(None) => ("assign/".into(), vec![""]),
            WatchKind::Demands => ("apps/".into(), vec![""]),
            WatchKind::Scheduling => (String::new(), vec!["nodes/", "alive/", "epochs/", "apps/"]),
            WatchKind::Routing => (String::new(), vec!["apps/", "assign/", "status/"]),
        }
    }
}

/// One change: the key relative to the prefix, the new value (`None` when
/// deleted, including by a lease's expiry) and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Key without the cluster prefix, e.g. `alive/node-1`.
    pub key: String,
    /// The value put, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
    /// The etcd revision of the change.
    pub revision: i64,
}

impl WatchEvent {
    /// The assignment put by this change, when it is one.
    pub fn assignment(&self) -> Option<StoredAssignment> {
        let record: AssignmentRecord = serde_json::from_slice(self.value.as_ref()?).ok()?;
        Some(StoredAssignment {
            record,
            revision: self.revision,
        })
    }
}

/// A stream of changes; it ends with an error if etcd cancels the watch
/// (e.g. the start revision was compacted): read a snapshot and watch again.
pub type Watch = BoxStream<'static, Result<WatchEvent>>;

impl ClusterStore {
    /// Watches `kind` from `start_revision` (0: from now). Take the revision
    /// of a snapshot plus one to miss nothing between reading and watching.
    pub async fn watch(&self, kind: WatchKind, start_revision: i64) -> Result<Watch> {
        let (range, keep) = kind.range();
        let base = self.key(&range);
        let mut opts = WatchOptions::new().with_prefix();
        if start_revision > 0 {
            opts = opts.with_start_revision(start_revision);
        }
        let stream = self
            .call(|mut c| {
                let (base, opts) = (base.clone(), opts.clone());
                async move { c.watch(base, Some(opts)).await }
            })
            .await?;
        let prefix_len = self.key("").len();
        let state = (stream, VecDeque::<WatchEvent>::new(), false);
        let out = futures::stream::unfold(state, move |(mut stream, mut buf, done)| {
            let keep = keep.clone();
            async move {
                loop {
                    if let Some(ev) = buf.pop_front() {
                        return Some((Ok(ev), (stream, buf, done)));
                    }
                    if done {
                        return None;
                    }
                    match stream.message().await {
                        Ok(Some(res)) => {
                            if res.canceled() {
                                let why = format!(
                                    "etcd cancelled the watch (compacted at {}): {}",
                                    res.compact_revision(),
                                    res.cancel_reason()
                                );
                                return Some((
                                    Err(ClusterError::Conflict(why)),
                                    (stream, buf, true),
                                ));
                            }
                            for ev in res.events() {
                                let Some(kv) = ev.kv() else { continue };
                                let full = String::from_utf8_lossy(kv.key());
                                let Some(rel) = full.get(prefix_len..) else {
                                    continue;
                                };
                                let rel = rel.trim_start_matches('/');
                                if !keep.iter().any(|k| rel.starts_with(k)) {
                                    continue;
                                }
                                buf.push_back(WatchEvent {
                                    key: rel.to_owned(),
                                    value: match ev.event_type() {
                                        EventType::Put => Some(kv.value().to_vec()),
                                        EventType::Delete => None,
                                    },
                                    revision: kv.mod_revision(),
                                });
                            }
                        }
                        Ok(None) => {
                            let e = ClusterError::Conflict("etcd closed the watch".into());
                            return Some((Err(e), (stream, buf, true)));
                        }
                        Err(e) => return Some((Err(e.into()), (stream, buf, true))),
                    }
                }
            }
        });
        Ok(out.boxed())
    }
}
