//! The proxy's route table, rebuilt from the healthy replicas of every app.

use crate::cluster_routes::ClusterRoute;
use crate::replica::ReplicaState;
use crate::Deployer;
use slipway_domain::HealthSpec;
use slipway_proxy::{HealthCheck, Pool, Route, RouteTable};
use std::collections::BTreeMap;
use std::time::Duration;

/// How one app is reached: its host names and its health check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AppRoute {
    pub app: String,
    pub hosts: Vec<String>,
    pub health: HealthSpec,
    pub sticky: bool,
}

/// How one service of a stack is reached from outside: host names, path
/// prefix and the path the proxy checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceRoute {
    pub service: String,
    pub hosts: Vec<String>,
    pub path: String,
    pub health: HealthSpec,
    pub sticky: bool,
}

impl Deployer {
    /// Replaces the proxy's routes with the healthy replicas of every app:
    /// this server's own, and in cluster mode those agents run on any node
    /// (an app with both gets one pool holding all of them).
    pub(crate) fn rebuild_routes(&self) {
        let _guard = self.inner.routes_lock.lock().unwrap();
        let mut cluster: BTreeMap<String, ClusterRoute> = self
            .cluster_routes()
            .into_iter()
            .map(|r| (r.app.clone(), r))
            .collect();
        let apps = self.inner.apps.lock().unwrap();
        let mut table = RouteTable::new();
        let mut names: Vec<_> = apps
            .values()
            .filter_map(|a| a.route.as_ref().map(|r| (r, a)))
            .collect();
        names.sort_by(|a, b| a.0.app.cmp(&b.0.app));
        for (route, app) in names {
            if !app.service_routes.is_empty() {
                // A stack: one pool per service with ingress, all under the
                // app's name (its metrics and drains are the app's).
                for sr in &app.service_routes {
                    let upstreams: Vec<_> = app
                        .replicas
                        .iter()
                        .filter(|r| r.state == ReplicaState::Healthy && r.service == sr.service)
                        .map(|r| r.addr)
                        .collect();
                    let pool = Pool::new(route.app.clone(), upstreams)
                        .health(check(&sr.health))
                        .sticky(sr.sticky);
                    for host in &sr.hosts {
                        table = table.route(Route::new(host, &sr.path, pool.clone()));
                    }
                }
                continue;
            }
            let upstreams: Vec<_> = app
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Healthy)
                .map(|r| r.addr)
                .collect();
            let h = &route.health;
            let mut hosts = route.hosts.clone();
            let mut upstreams = upstreams;
            if let Some(c) = cluster.remove(&route.app) {
                upstreams.extend(c.upstreams);
                upstreams.sort();
                upstreams.dedup();
                hosts.extend(c.hosts.into_iter().filter(|x| !route.hosts.contains(x)));
            }
            let pool = Pool::new(route.app.clone(), upstreams)
                .health(check(h))
                .sticky(route.sticky);
            for host in &hosts {
                table = table.route(Route::new(host, "/", pool.clone()));
            }
        }
        drop(apps);
        for route in cluster.into_values() {
            let pool = route.pool();
            for host in &route.hosts {
                table = table.route(Route::new(host, &route.path, pool.clone()));
            }
        }
        self.inner.proxy.set_routes(table);
    }
}

/// The proxy's active check for a health spec.
fn check(h: &HealthSpec) -> HealthCheck {
    HealthCheck {
        path: h.path.clone(),
        interval: Duration::from_millis(h.interval_ms),
        timeout: Duration::from_millis(h.timeout_ms),
        rise: h.rise,
        fall: h.fall,
    }
}
