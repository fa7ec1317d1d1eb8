//! Cluster mode: the proxy of every server routes to the healthy replicas
//! that agents run on any node.
//!
//! The routes come from the server's view of the cluster state
//! (`cluster_view`), republished after every burst of changes. An app's
//! upstreams are `address:host_port` of its reports in state `healthy`
//! whose assignment is current (it exists, with the report's epoch): a
//! report deleted with its node's lease, a replica turning unhealthy or
//! moved away leaves the table at once.

use crate::cluster_view::View;
use crate::Deployer;
use slipway_cluster::etcd::ReplicaReport;
use slipway_proxy::{HealthCheck, Pool};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// How one cluster app is reached: its host names and healthy replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterRoute {
    /// The demand's name (an app, or `app.service` for a stack's service).
    pub app: String,
    pub hosts: Vec<String>,
    /// Path prefix (`/` but for a stack service's `x-slipway.path`).
    pub path: String,
    /// Cookie-based sticky sessions.
    pub sticky: bool,
    /// The app the pool's requests are counted under (a stack's services
    /// count under the stack's app).
    pub owner: String,
    /// The demand's health path (`/` when it has none).
    pub health_path: String,
    /// `address:host_port` of the healthy, current replicas, sorted.
    pub upstreams: Vec<SocketAddr>,
}

impl ClusterRoute {
    /// The proxy pool: active checks on the health path with the default
    /// interval and thresholds.
    pub fn pool(&self) -> Pool {
        Pool::new(self.owner.clone(), self.upstreams.clone())
            .health(HealthCheck {
                path: self.health_path.clone(),
                ..HealthCheck::default()
            })
            .sticky(self.sticky)
    }
}

impl View {
    /// The routes of every app with host names, sorted by app.
    pub fn routes(&self) -> Vec<ClusterRoute> {
        let mut upstreams: HashMap<&str, Vec<SocketAddr>> = HashMap::new();
        for (_, replica, report) in self.current_reports() {
            if report.state != "healthy" {
                continue;
            }
            if let Some(addr) = upstream(report) {
                upstreams.entry(&replica.app).or_default().push(addr);
            }
        }
        self.demands
            .values()
            .filter(|d| !d.hosts.is_empty())
            .map(|d| {
                let mut ups = upstreams.remove(d.app.as_str()).unwrap_or_default();
                ups.sort();
                ups.dedup();
                let member = d.container.as_ref().and_then(|t| t.stack.as_ref());
                ClusterRoute {
                    app: d.app.clone(),
                    hosts: d.hosts.clone(),
                    path: member
                        .and_then(|m| m.route_path.clone())
                        .unwrap_or_else(|| "/".into()),
                    sticky: member.is_some_and(|m| m.sticky),
                    owner: member.map_or_else(|| d.app.clone(), |m| m.app.clone()),
                    health_path: d
                        .container
                        .as_ref()
                        .and_then(|t| t.health_path.clone())
                        .unwrap_or_else(|| "/".into()),
                    upstreams: ups,
                }
            })
            .collect()
    }
}

/// `address:host_port` of a report (address 127.0.0.1 when it has none);
/// `None` without a port or with an address that is not an IP.
fn upstream(report: &ReplicaReport) -> Option<SocketAddr> {
    let port = report.host_port.filter(|p| *p != 0)?;
    let ip = match report.address.as_deref().map(str::trim) {
        None | Some("") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(a) => match a.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => ip,
            Err(_) => {
                tracing::debug!(address = a, "cluster routes: not an IP address; skipped");
                return None;
            }
        },
    };
    Some(SocketAddr::new(ip, port))
}

impl Deployer {
    /// Installs new cluster routes; rebuilds the proxy's table when they changed.
    pub(crate) fn set_cluster_routes(&self, routes: Vec<ClusterRoute>) {
        {
            let mut current = self.inner.cluster_routes.lock().unwrap();
            if *current == routes {
                return;
            }
            *current = routes;
        }
        self.rebuild_routes();
    }

    /// The cluster routes in force (sorted by app).
    pub(crate) fn cluster_routes(&self) -> Vec<ClusterRoute> {
        self.inner.cluster_routes.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_cluster::etcd::{
        AssignmentRecord, NodeReport, RoutingSnapshot, StoredAssignment, WatchEvent,
    };
    use slipway_cluster::{AppDemand, Assignment, ContainerTemplate, Labels, ReplicaId, Resources};

    fn demand(app: &str, hosts: &[&str]) -> AppDemand {
        AppDemand {
            app: app.into(),
            replicas: 2,
            request: Resources::default(),
            constraints: Labels::new(),
            container: Some(ContainerTemplate {
                revision: 1,
                image: "img".into(),
                command: vec![],
                env: Default::default(),
                port: 8080,
                health_path: Some("/health".into()),
                secrets: None,
                ..Default::default()
            }),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    fn replica(app: &str, index: u32) -> ReplicaId {
        ReplicaId {
            app: app.into(),
            index,
        }
    }

    /// A report as an agent stores it (JSON, so fields added later default).
    fn report(state: &str, epoch: u64, port: u16, address: Option<&str>) -> ReplicaReport {
        serde_json::from_value(serde_json::json!({
            "state": state, "detail": "", "epoch": epoch,
            "updated_at": "2026-11-26T00:00:00Z", "container": "c",
            "host_port": port, "address": address,
        }))
        .unwrap()
    }

    fn assigned(node: &str, app: &str, index: u32, epoch: u64) -> StoredAssignment {
        StoredAssignment {
            record: AssignmentRecord {
                assignment: Assignment {
                    replica: replica(app, index),
                    node: node.into(),
                    epoch,
                },
                assigned_at: chrono::Utc::now(),
            },
            revision: 1,
        }
    }

    fn event(key: &str, value: Option<Vec<u8>>) -> WatchEvent {
        WatchEvent {
            key: key.into(),
            value,
            revision: 2,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn healthy_current_replicas_are_upstreams_and_changes_apply_at_once() {
        let mut view = View::from_snapshot(RoutingSnapshot {
            revision: 1,
            demands: vec![demand("web", &["web.example.com"]), demand("hidden", &[])],
            assignments: vec![
                assigned("n1", "web", 0, 3),
                assigned("n2", "web", 1, 1),
                assigned("n3", "web", 2, 2),
                assigned("n1", "hidden", 0, 3),
            ],
            reports: vec![
                NodeReport {
                    node: "n1".into(),
                    replica: replica("web", 0),
                    report: report("healthy", 3, 4000, None),
                },
                NodeReport {
                    node: "n2".into(),
                    replica: replica("web", 1),
                    report: report("healthy", 1, 4001, Some("127.0.0.2")),
                },
                // A report of an older epoch than the assignment: stale.
                NodeReport {
                    node: "n3".into(),
                    replica: replica("web", 2),
                    report: report("healthy", 1, 4002, Some("127.0.0.3")),
                },
                NodeReport {
                    node: "n1".into(),
                    replica: replica("hidden", 0),
                    report: report("healthy", 3, 4003, None),
                },
            ],
        });
        let routes = view.routes();
        assert_eq!(routes.len(), 1, "apps without hosts get no route");
        assert_eq!(routes[0].app, "web");
        assert_eq!(routes[0].health_path, "/health");
        assert_eq!(
            routes[0].upstreams,
            [addr("127.0.0.1:4000"), addr("127.0.0.2:4001")]
        );

        // The report of n2 is deleted (its lease expired): gone at once.
        view.apply(&event("status/n2/web/1", None));
        assert_eq!(view.routes()[0].upstreams, [addr("127.0.0.1:4000")]);
        // n1's replica turns unhealthy.
        let sick = serde_json::to_vec(&report("running", 3, 4000, None)).unwrap();
        view.apply(&event("status/n1/web/0", Some(sick)));
        assert!(view.routes()[0].upstreams.is_empty());
        // n3 reports under its current epoch.
        let fresh = serde_json::to_vec(&report("healthy", 2, 4005, Some("127.0.0.3"))).unwrap();
        view.apply(&event("status/n3/web/2", Some(fresh)));
        assert_eq!(view.routes()[0].upstreams, [addr("127.0.0.3:4005")]);
        // Its assignment moves away: out.
        view.apply(&event("assign/n3/web/2", None));
        assert!(view.routes()[0].upstreams.is_empty());
        // The demand goes: no route.
        view.apply(&event("apps/web", None));
        assert!(view.routes().is_empty());
        // Unknown keys and garbage are ignored.
        view.apply(&event("nodes/n1", Some(b"{}".to_vec())));
        view.apply(&event("status/n1/web", Some(b"x".to_vec())));
    }

    #[test]
    fn addresses_must_be_ips() {
        assert_eq!(
            upstream(&report("healthy", 1, 80, Some("[::1]"))),
            Some(addr("[::1]:80"))
        );
        assert_eq!(
            upstream(&report("healthy", 1, 80, Some("node.example"))),
            None
        );
        let mut no_port = report("healthy", 1, 80, None);
        no_port.host_port = None;
        assert_eq!(upstream(&no_port), None);
    }

    #[test]
    fn pools_check_the_health_path() {
        let r = ClusterRoute {
            app: "web".into(),
            hosts: vec!["w".into()],
            path: "/".into(),
            sticky: false,
            owner: "web".into(),
            health_path: "/health".into(),
            upstreams: vec![addr("127.0.0.2:1")],
        };
        let pool = r.pool();
        assert_eq!(pool.upstreams, [addr("127.0.0.2:1")]);
        let check = pool.health.unwrap();
        assert_eq!(check.path, "/health");
        assert_eq!(check.interval, HealthCheck::default().interval);
    }
}
