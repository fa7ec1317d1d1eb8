//! The [`Proxy`]: listener loops, the shared upstream registry and the
//! atomically replaced route table.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::error::ProxyError;
use crate::forward::Client;
use crate::health;
use crate::metrics::{self, AppMetrics, MetricsSnapshot};
use crate::pool::ConnPool;
use crate::route::RouteTable;
use crate::sockio::SockIo;
use crate::table::{LivePool, LiveTable};
use crate::tls::TlsConfig;
use crate::upstream::{Upstream, UpstreamStatus};

/// Tunables of the proxy; `Default` suits production.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Largest request header block accepted; larger answers 431.
    pub max_header_bytes: usize,
    /// Time allowed to connect to an upstream.
    pub connect_timeout: Duration,
    /// Time allowed for an upstream's response head; then 504.
    pub response_timeout: Duration,
    /// Time a client has to send its request head (slow-loris guard).
    pub header_read_timeout: Duration,
    /// Consecutive 5xx or broken exchanges that eject an upstream (0: never).
    pub eject_after_errors: u32,
    /// How long an ejected upstream is skipped.
    pub eject_cooldown: Duration,
    /// Idle keep-alive connections kept per upstream by each proxy thread
    /// (connections are pooled per thread, see the pool module).
    pub pool_max_idle_per_host: usize,
    /// How long an idle upstream connection is kept.
    pub pool_idle_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_header_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(30),
            eject_after_errors: 5,
            eject_cooldown: Duration::from_secs(10),
            pool_max_idle_per_host: 256,
            pool_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Slipway's reverse proxy and load balancer. Cheap to clone; clones share
/// the route table, upstream state and metrics.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
}

type UpstreamKey = (String, SocketAddr);

pub(crate) struct Inner {
    pub config: ProxyConfig,
    pub table: ArcSwap<LiveTable>,
    clock: Instant,
    server: auto::Builder<TokioExecutor>,
    routes: Mutex<RouteTable>,
    upstreams: Mutex<HashMap<UpstreamKey, Arc<Upstream>>>,
    retired: Mutex<Vec<Weak<Upstream>>>,
    metrics: Mutex<HashMap<String, Arc<AppMetrics>>>,
}

impl Proxy {
    /// A proxy with an empty route table (every request answers 404).
    pub fn new(config: ProxyConfig) -> Self {
        let mut server = auto::Builder::new(TokioExecutor::new());
        server
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192));
        server
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(config.max_header_bytes.min(u32::MAX as usize) as u32);
        Proxy {
            inner: Arc::new(Inner {
                config,
                table: ArcSwap::from_pointee(LiveTable::default()),
                clock: Instant::now(),
                server,
                routes: Mutex::new(RouteTable::default()),
                upstreams: Mutex::new(HashMap::new()),
                retired: Mutex::new(Vec::new()),
                metrics: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Replaces the route table atomically. Upstreams that stay keep their
    /// health state and connections; new ones start up (healthy) with their
    /// active checks; removed ones get no new requests while their in-flight
    /// ones finish (see [`Proxy::wait_idle`]). Must run inside a Tokio runtime.
    pub fn set_routes(&self, table: RouteTable) {
        let inner = &self.inner;
        let mut ups = inner.upstreams.lock().expect("upstreams lock");
        let mut apps = inner.metrics.lock().expect("metrics lock");
        let mut live = LiveTable::default();
        let mut keep: HashSet<UpstreamKey> = HashSet::new();
        for route in &table.routes {
            let pool = &route.pool;
            let metrics = apps.entry(pool.app.clone()).or_default().clone();
            let mut list: Vec<Arc<Upstream>> = Vec::new();
            for addr in &pool.upstreams {
                let key = (pool.app.clone(), *addr);
                if !keep.insert(key.clone()) && list.iter().any(|u| u.addr == *addr) {
                    continue;
                }
                let up = ups
                    .entry(key)
                    .or_insert_with(|| {
                        let conns = ConnPool::new(
                            inner.config.pool_max_idle_per_host,
                            inner.config.pool_idle_timeout,
                        );
                        let up =
                            Arc::new(Upstream::new(&pool.app, *addr, inner.clock, None, conns));
                        tokio::spawn(health::run(up.clone()));
                        up
                    })
                    .clone();
                *up.health.lock().expect("health lock") = pool.health.clone();
                list.push(up);
            }
            let sticky = pool.sticky;
            let mut pool = LivePool::new(pool.app.clone(), pool.balance, list, metrics);
            if sticky {
                pool = pool.with_sticky(&route.path_prefix);
            }
            live.push(
                route.host.clone(),
                route.path_prefix.clone(),
                Arc::new(pool),
            );
        }
        let mut retired = inner.retired.lock().expect("retired lock");
        retired.retain(|w| w.strong_count() > 0);
        ups.retain(|key, up| {
            let stays = keep.contains(key);
            if !stays {
                up.removed.store(true, Ordering::Relaxed);
                up.conns.clear();
                retired.push(Arc::downgrade(up));
                tracing::info!(app = %up.app, upstream = %up.addr, in_flight = up.in_flight(), "upstream draining");
            }
            stays
        });
        inner.table.store(Arc::new(live));
        *inner.routes.lock().expect("routes lock") = table;
    }

    /// The route table in force.
    pub fn routes(&self) -> RouteTable {
        self.inner.routes.lock().expect("routes lock").clone()
    }

    /// Every known upstream: those in the table and those still draining.
    pub fn upstreams(&self) -> Vec<UpstreamStatus> {
        let mut out: Vec<UpstreamStatus> = self
            .inner
            .upstreams
            .lock()
            .expect("upstreams lock")
            .values()
            .map(|u| u.status())
            .collect();
        let retired = self.inner.retired.lock().expect("retired lock");
        out.extend(retired.iter().filter_map(Weak::upgrade).map(|u| u.status()));
        out.sort_by(|a, b| (&a.app, a.addr, !a.in_table).cmp(&(&b.app, b.addr, !b.in_table)));
        out
    }

    /// Requests in flight to `addr` of `app` (table and draining alike).
    pub fn in_flight(&self, app: &str, addr: SocketAddr) -> usize {
        self.matching(app, addr).iter().map(|u| u.in_flight()).sum()
    }

    /// Waits until `addr` of `app` has no request in flight, at most
    /// `timeout`; true when it drained. The deployer removes a replica from
    /// the table, waits here, then stops it.
    pub async fn wait_idle(&self, app: &str, addr: SocketAddr, timeout: Duration) -> bool {
        let targets = self.matching(app, addr);
        let all = async {
            for up in &targets {
                up.idle().await;
            }
        };
        tokio::time::timeout(timeout, all).await.is_ok()
    }

    fn matching(&self, app: &str, addr: SocketAddr) -> Vec<Arc<Upstream>> {
        let mut out: Vec<Arc<Upstream>> = self
            .inner
            .upstreams
            .lock()
            .expect("upstreams lock")
            .get(&(app.to_string(), addr))
            .cloned()
            .into_iter()
            .collect();
        let retired = self.inner.retired.lock().expect("retired lock");
        out.extend(
            retired
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|u| u.app == app && u.addr == addr),
        );
        out
    }

    /// Per-app counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        let apps = self.inner.metrics.lock().expect("metrics lock");
        metrics::snapshot(apps.iter())
    }

    /// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) on
    /// `listener` until the task is dropped.
    pub async fn serve(&self, listener: TcpListener) -> Result<(), ProxyError> {
        loop {
            let Some((stream, remote)) = accept(&listener).await else {
                continue;
            };
            let inner = self.inner.clone();
            tokio::spawn(async move {
                inner
                    .serve_connection(SockIo::new(stream), remote, "http")
                    .await
            });
        }
    }

    /// Serves HTTPS on `listener` (ALPN picks HTTP/2 or HTTP/1.1).
    pub async fn serve_tls(&self, listener: TcpListener, tls: TlsConfig) -> Result<(), ProxyError> {
        let acceptor = tls.acceptor();
        loop {
            let Some((stream, remote)) = accept(&listener).await else {
                continue;
            };
            let inner = self.inner.clone();
            let acceptor = acceptor.clone();
            let timeout = inner.config.header_read_timeout;
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        inner
                            .serve_connection(TokioIo::new(tls), remote, "https")
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(client = %remote, error = %e, "tls handshake failed")
                    }
                    Err(_) => tracing::debug!(client = %remote, "tls handshake timed out"),
                }
            });
        }
    }
}

/// Accepts one connection; on errors such as EMFILE pauses briefly.
pub(crate) async fn accept(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, remote))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

impl Drop for Inner {
    /// Stops the health tasks once the last handle and connection are gone.
    fn drop(&mut self) {
        if let Ok(ups) = self.upstreams.lock() {
            for up in ups.values() {
                up.removed.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Inner {
    pub(crate) async fn serve_connection<I>(
        self: Arc<Self>,
        io: I,
        remote: SocketAddr,
        scheme: &'static str,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        // Per request only this connection's own handle is cloned: no
        // reference count shared with other cores is touched.
        let conn = Arc::new((self.clone(), Client::new(remote, scheme)));
        let svc = service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(conn.0.handle(req, &conn.1).await) }
        });
        if let Err(e) = self.server.serve_connection_with_upgrades(io, svc).await {
            tracing::debug!(client = %remote, error = %e, "client connection ended");
        }
    }
}
