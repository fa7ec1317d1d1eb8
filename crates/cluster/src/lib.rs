//! Cluster mode: several `slipway server` instances and node agents sharing
//! their state through etcd.
//!
//! - [`scheduler`] places app replicas on nodes (a pure, deterministic function).
//! - [`etcd`] is the cluster state on etcd: nodes held alive by leases, node
//!   epochs that fence stale agents, assignments, watches and leader election.
//! - [`control`] is the elected leader's scheduling loop, driven by watches.
//! - [`agent`] is what `slipway agent` runs on each node.
//! - [`runner`] runs the node's assigned replicas through its Docker Engine.
//! - [`forward`] lets a stack's services reach each other by name across nodes.
//! - [`testing`] starts real etcd clusters on loopback for tests and benches.
//!
//! See `docs/cluster.md` for the design.

pub mod agent;
pub mod control;
pub mod etcd;
pub mod forward;
pub mod machine;
pub mod model;
pub mod runner;
pub mod scheduler;
pub mod testing;

pub use etcd::{ClusterError, ClusterStore, StoreOptions};
pub use model::*;
