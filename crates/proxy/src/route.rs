//! The route table: which pool of upstreams serves a request, chosen by its
//! Host header and path. The deployer builds one and hands it to
//! [`crate::Proxy::set_routes`], which swaps it in atomically.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a pool picks among its healthy upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each upstream in turn (the default; best for uniform requests).
    #[default]
    RoundRobin,
    /// The upstream with the fewest requests in flight (best for uneven ones).
    LeastConnections,
}

/// Active health check of a pool's upstreams, in HAProxy's terms: `GET path`
/// every `interval` (HAProxy `inter`); an upstream goes down after `fall`
/// consecutive failures and up again after `rise` consecutive successes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Path requested with `GET`; any 2xx or 3xx answer is a success.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time allowed for one check (connect + response head).
    pub timeout: Duration,
    /// Consecutive successes that bring a down upstream back.
    pub rise: u32,
    /// Consecutive failures that take an up upstream down.
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// The replicas of one app behind one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// App name: labels metrics and access-log lines.
    pub app: String,
    /// Replica addresses (ports published on 127.0.0.1).
    pub upstreams: Vec<SocketAddr>,
    /// How requests are spread over the healthy upstreams.
    #[serde(default)]
    pub balance: Balance,
    /// Active health check; `None` relies on passive ejection only.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Sticky sessions: a cookie sends a client back to the replica that
    /// served it first, while that replica is healthy.
    #[serde(default)]
    pub sticky: bool,
}

impl Pool {
    /// A round-robin pool without active checks.
    pub fn new(app: impl Into<String>, upstreams: Vec<SocketAddr>) -> Self {
        Pool {
            app: app.into(),
            upstreams,
            balance: Balance::RoundRobin,
            health: None,
            sticky: false,
        }
    }

    /// Turns sticky sessions on or off.
    pub fn sticky(mut self, sticky: bool) -> Self {
        self.sticky = sticky;
        self
    }

    /// Sets the balancing strategy.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Enables active health checks.
    pub fn health(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }
}

/// Which Host headers a route answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPattern {
    /// One host name (compared case-insensitively, port ignored).
    Exact(String),
    /// Any sub-domain of this suffix: `*.example.com` is `Wildcard("example.com")`
    /// and matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Wildcard(String),
    /// Every host (a fallback; the most specific pattern always wins).
    Any,
}

impl HostPattern {
    /// Parses `host`, `*.suffix` or `*`.
    pub fn parse(pattern: &str) -> Self {
        let p = pattern.trim().to_ascii_lowercase();
        if p == "*" {
            HostPattern::Any
        } else if let Some(suffix) = p.strip_prefix("*.") {
            HostPattern::Wildcard(suffix.to_string())
        } else {
            HostPattern::Exact(p)
        }
    }
}

/// One routing rule: host pattern + path prefix → pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Hosts this route answers.
    pub host: HostPattern,
    /// Path prefix, matched on segment boundaries (`/api` matches `/api` and
    /// `/api/x`, not `/apix`); the longest matching prefix wins.
    pub path_prefix: String,
    /// Where matching requests go.
    pub pool: Pool,
}

impl Route {
    /// A route for `host` (`example.com`, `*.example.com` or `*`) and `path_prefix`.
    pub fn new(host: &str, path_prefix: &str, pool: Pool) -> Self {
        let mut prefix = path_prefix.trim().to_string();
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        Route {
            host: HostPattern::parse(host),
            path_prefix: prefix,
            pool,
        }
    }
}

/// The whole set of routes, replaced atomically at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// Rules; order does not matter (specificity decides).
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// An empty table (every request answers 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route (builder style).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }
}

/// Normalises a Host header or URI authority: lower case, port and trailing
/// dot removed, IPv6 brackets kept. Borrows when nothing needs lowering.
pub(crate) fn normalize_host(host: &str) -> Cow<'_, str> {
    let h = host.trim();
    let h = if h.starts_with('[') {
        match h.find(']') {
            Some(end) => &h[..=end],
            None => h,
        }
    } else {
        h.rsplit_once(':').map_or(h, |(name, _)| name)
    };
    let h = h.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// Whether `prefix` covers `path` on a segment boundary.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How specifically a host pattern matches `host` (`None`: no match).
pub(crate) fn host_rank(pattern: &HostPattern, host: &str) -> Option<usize> {
    match pattern {
        HostPattern::Exact(h) => (h == host).then_some(usize::MAX),
        HostPattern::Wildcard(suffix) => {
            let dotted = host.strip_suffix(suffix.as_str())?;
            (dotted.len() > 1 && dotted.ends_with('.')).then_some(1 + suffix.len())
        }
        HostPattern::Any => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_normalise() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("a.example.com."), "a.example.com");
    }

    #[test]
    fn prefixes_match_on_segments() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(prefix_matches("/api/", "/api/v1"));
        assert!(!prefix_matches("/api", "/apix"));
    }

    #[test]
    fn wildcard_needs_a_label() {
        let w = HostPattern::parse("*.example.com");
        assert!(host_rank(&w, "a.example.com").is_some());
        assert!(host_rank(&w, "a.b.example.com").is_some());
        assert!(host_rank(&w, "example.com").is_none());
        assert!(host_rank(&w, "badexample.com").is_none());
    }
}
