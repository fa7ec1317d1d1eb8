//! The proxy's route table, rebuilt from the healthy replicas of every app.

use crate::replica::ReplicaState;
use crate::Deployer;
use slipway_domain::HealthSpec;
use slipway_proxy::{HealthCheck, Pool, Route, RouteTable};
use std::time::Duration;

/// How one app is reached: its host names and its health check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AppRoute {
    pub app: String,
    pub hosts: Vec<String>,
    pub health: HealthSpec,
}

impl Deployer {
    /// Replaces the proxy's routes with the healthy replicas of every app.
    pub(crate) fn rebuild_routes(&self) {
        let _guard = self.inner.routes_lock.lock().unwrap();
        let apps = self.inner.apps.lock().unwrap();
        let mut table = RouteTable::new();
        let mut names: Vec<_> = apps
            .values()
            .filter_map(|a| a.route.as_ref().map(|r| (r, a)))
            .collect();
        names.sort_by(|a, b| a.0.app.cmp(&b.0.app));
        for (route, app) in names {
            let upstreams: Vec<_> = app
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Healthy)
                .map(|r| r.addr)
                .collect();
            let h = &route.health;
            let pool = Pool::new(route.app.clone(), upstreams).health(HealthCheck {
                path: h.path.clone(),
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                rise: h.rise,
                fall: h.fall,
            });
            for host in &route.hosts {
                table = table.route(Route::new(host, "/", pool.clone()));
            }
        }
        drop(apps);
        self.inner.proxy.set_routes(table);
    }
}
