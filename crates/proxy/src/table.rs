//! The compiled, immutable form of a [`RouteTable`] that requests read
//! through an atomic pointer, and the balancing among a pool's upstreams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metrics::AppMetrics;
use crate::route::{host_rank, prefix_matches, Balance, HostPattern};
use crate::shard::{self, Padded};
use crate::upstream::Upstream;

/// A pool with live upstream state.
pub(crate) struct LivePool {
    pub app: String,
    pub balance: Balance,
    pub upstreams: Vec<Arc<Upstream>>,
    pub metrics: Arc<AppMetrics>,
    /// Sticky sessions: the cookie naming the replica a client sticks to
    /// (one name per app and path prefix, so two routes of one host do not
    /// overwrite each other's).
    pub sticky_cookie: Option<String>,
    /// Round-robin positions, one per thread: a single shared counter would
    /// move its cache line between cores on every request.
    next: Box<[Padded<AtomicUsize>]>,
}

impl LivePool {
    pub fn new(
        app: String,
        balance: Balance,
        upstreams: Vec<Arc<Upstream>>,
        metrics: Arc<AppMetrics>,
    ) -> Self {
        LivePool {
            app,
            balance,
            upstreams,
            metrics,
            sticky_cookie: None,
            next: (0..shard::SHARDS).map(|_| Padded::default()).collect(),
        }
    }

    /// Makes the pool sticky with a cookie named after its app and prefix.
    pub fn with_sticky(mut self, prefix: &str) -> Self {
        self.sticky_cookie = Some(format!(
            "slipway_{:08x}",
            crate::upstream::stable_hash(&format!("{}|{prefix}", self.app)) as u32
        ));
        self
    }

    /// The healthy upstream a sticky-session token names, if any.
    pub fn pick_affine(&self, token: &str) -> Option<Arc<Upstream>> {
        self.upstreams
            .iter()
            .find(|u| u.affinity == token && u.is_healthy())
            .cloned()
    }

    /// Picks a healthy upstream other than `exclude`.
    pub fn pick(&self, exclude: Option<&Arc<Upstream>>) -> Option<Arc<Upstream>> {
        let n = self.upstreams.len();
        if n == 0 {
            return None;
        }
        let usable =
            |u: &Arc<Upstream>| u.is_healthy() && !matches!(exclude, Some(e) if Arc::ptr_eq(e, u));
        let start = self.next[shard::index()].0.fetch_add(1, Ordering::Relaxed);
        match self.balance {
            Balance::RoundRobin => (0..n)
                .map(|i| &self.upstreams[(start + i) % n])
                .find(|u| usable(u))
                .cloned(),
            Balance::LeastConnections => (0..n)
                .map(|i| &self.upstreams[(start + i) % n])
                .filter(|u| usable(u))
                .min_by_key(|u| u.in_flight())
                .cloned(),
        }
    }
}

struct LiveRoute {
    host: HostPattern,
    prefix: String,
    pool: Arc<LivePool>,
}

/// The route table requests see.
#[derive(Default)]
pub(crate) struct LiveTable {
    routes: Vec<LiveRoute>,
}

impl LiveTable {
    pub fn push(&mut self, host: HostPattern, prefix: String, pool: Arc<LivePool>) {
        self.routes.push(LiveRoute { host, prefix, pool });
    }

    /// The most specific route: best host match first, then longest prefix.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<LivePool>> {
        self.routes
            .iter()
            .filter_map(|r| {
                let rank = host_rank(&r.host, host)?;
                prefix_matches(&r.prefix, path).then_some((rank, r.prefix.len(), &r.pool))
            })
            .max_by_key(|(rank, len, _)| (*rank, *len))
            .map(|(_, _, pool)| pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn pool(app: &str, n: u16, balance: Balance) -> Arc<LivePool> {
        let clock = Instant::now();
        let ups = (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Arc::new(Upstream::new(
                    app,
                    addr,
                    clock,
                    None,
                    crate::pool::ConnPool::new(1, std::time::Duration::from_secs(1)),
                ))
            })
            .collect();
        Arc::new(LivePool::new(app.into(), balance, ups, Default::default()))
    }

    #[test]
    fn most_specific_host_then_longest_prefix_wins() {
        let mut t = LiveTable::default();
        t.push(
            HostPattern::Any,
            "/".into(),
            pool("any", 1, Balance::RoundRobin),
        );
        t.push(
            HostPattern::parse("*.x.com"),
            "/".into(),
            pool("wild", 1, Balance::RoundRobin),
        );
        t.push(
            HostPattern::parse("a.x.com"),
            "/".into(),
            pool("exact", 1, Balance::RoundRobin),
        );
        t.push(
            HostPattern::parse("a.x.com"),
            "/api".into(),
            pool("api", 1, Balance::RoundRobin),
        );
        let app = |h: &str, p: &str| t.find(h, p).map(|p| p.app.clone());
        assert_eq!(app("a.x.com", "/api/1").as_deref(), Some("api"));
        assert_eq!(app("a.x.com", "/").as_deref(), Some("exact"));
        assert_eq!(app("b.x.com", "/api").as_deref(), Some("wild"));
        assert_eq!(app("y.org", "/").as_deref(), Some("any"));
    }

    #[test]
    fn unhealthy_and_excluded_upstreams_are_skipped() {
        let p = pool("web", 3, Balance::RoundRobin);
        p.upstreams[1].set_up(false);
        for _ in 0..6 {
            assert_ne!(p.pick(None).unwrap().addr, p.upstreams[1].addr);
        }
        let first = p.upstreams[0].clone();
        assert!(Arc::ptr_eq(&p.pick(Some(&first)).unwrap(), &p.upstreams[2]));
        p.upstreams[2].eject(std::time::Duration::from_secs(60), "test");
        assert!(p.pick(Some(&first)).is_none());
    }
}
