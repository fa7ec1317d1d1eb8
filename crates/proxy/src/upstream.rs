//! Live state of one upstream (a replica of an app): health as seen by the
//! active checks and by passive ejection, and its in-flight count, which the
//! deployer waits on to drain a replica before stopping it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::pool::ConnPool;
use crate::route::HealthCheck;
use crate::table::LivePool;

/// One upstream's state; shared by the route table, the health task and the
/// requests in flight to it (which keep it alive after it left the table).
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The sticky-session token naming this upstream: a hash of its
    /// address, the same on every server, so a cookie set by one server's
    /// proxy is honoured by the others.
    pub affinity: String,
    pub app: String,
    pub addr: SocketAddr,
    clock: Instant,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Verdict of the active checks (true until they say otherwise).
    active_up: AtomicBool,
    /// Passive ejection: milliseconds since `clock` before which it is skipped.
    ejected_until_ms: AtomicU64,
    /// Consecutive 5xx answers (passive).
    error_streak: AtomicU32,
    /// Set when the upstream left the route table: the health task stops.
    pub removed: AtomicBool,
    /// The pool's active check, updated when the table changes.
    pub health: Mutex<Option<HealthCheck>>,
    /// Keep-alive connections to it.
    pub conns: ConnPool,
}

impl Upstream {
    pub fn new(
        app: &str,
        addr: SocketAddr,
        clock: Instant,
        health: Option<HealthCheck>,
        conns: ConnPool,
    ) -> Self {
        Upstream {
            app: app.to_string(),
            affinity: format!("{:016x}", stable_hash(&addr.to_string())),
            addr,
            clock,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            active_up: AtomicBool::new(true),
            ejected_until_ms: AtomicU64::new(0),
            error_streak: AtomicU32::new(0),
            removed: AtomicBool::new(false),
            health: Mutex::new(health),
            conns,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Whether new requests may go here.
    pub fn is_healthy(&self) -> bool {
        self.active_up.load(Ordering::Relaxed) && !self.is_ejected()
    }

    /// Whether passive ejection currently excludes it.
    pub fn is_ejected(&self) -> bool {
        // Never ejected (the usual case): no clock read.
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Whether the active checks consider it up.
    pub fn is_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Requests currently in flight (response bodies and tunnels included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Skips the upstream for `cooldown` (passive ejection).
    pub fn eject(&self, cooldown: Duration, why: &str) {
        let until = self.now_ms() + cooldown.as_millis() as u64;
        self.ejected_until_ms.fetch_max(until, Ordering::Relaxed);
        self.error_streak.store(0, Ordering::Relaxed);
        tracing::warn!(app = %self.app, upstream = %self.addr, reason = why, cooldown_ms = cooldown.as_millis() as u64, "upstream ejected");
    }

    /// Records an answer's status for passive ejection after `limit` 5xx in a row.
    pub fn record_status(&self, server_error: bool, limit: u32, cooldown: Duration) {
        if !server_error {
            if self.error_streak.load(Ordering::Relaxed) != 0 {
                self.error_streak.store(0, Ordering::Relaxed);
            }
            return;
        }
        let streak = self.error_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if limit > 0 && streak >= limit {
            self.eject(cooldown, "5xx streak");
        }
    }

    /// Sets the active checks' verdict, logging transitions.
    pub fn set_up(&self, up: bool) {
        let was = self.active_up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(app = %self.app, upstream = %self.addr, "upstream up");
                self.ejected_until_ms.store(0, Ordering::Relaxed);
            } else {
                tracing::warn!(app = %self.app, upstream = %self.addr, "upstream down");
            }
        }
    }

    /// Resolves when no request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A snapshot for the deployer and the dashboard.
    pub fn status(&self) -> UpstreamStatus {
        UpstreamStatus {
            app: self.app.clone(),
            addr: self.addr,
            up: self.is_up(),
            ejected: self.is_ejected(),
            in_flight: self.in_flight(),
            in_table: !self.removed.load(Ordering::Relaxed),
        }
    }
}

/// State of one upstream as reported by [`crate::Proxy::upstreams`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamStatus {
    /// App the upstream serves.
    pub app: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Active checks consider it up.
    pub up: bool,
    /// Passively ejected right now (connection errors or a 5xx streak).
    pub ejected: bool,
    /// Requests in flight to it.
    pub in_flight: usize,
    /// Still in the route table (false: draining).
    pub in_table: bool,
}

/// Counts one request against an upstream and its app for as long as it
/// lives: dropped when the response body ends or the tunnel closes. It owns
/// the handles the request needs, so the hot path clones no `Arc`.
pub(crate) struct InFlight {
    pub upstream: Arc<Upstream>,
    pub pool: Arc<LivePool>,
}

impl InFlight {
    pub fn new(upstream: Arc<Upstream>, pool: Arc<LivePool>) -> Self {
        upstream.in_flight.fetch_add(1, Ordering::AcqRel);
        pool.metrics.start();
        InFlight { upstream, pool }
    }

    /// Moves the request to another upstream (a retry).
    pub fn retarget(&mut self, upstream: Arc<Upstream>) {
        upstream.in_flight.fetch_add(1, Ordering::AcqRel);
        let old = std::mem::replace(&mut self.upstream, upstream);
        Self::leave(&old);
    }

    fn leave(upstream: &Upstream) {
        if upstream.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            upstream.idle.notify_waiters();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool.metrics.end();
        Self::leave(&self.upstream);
    }
}

/// FNV-1a: a hash that is the same in every process and version (sticky
/// session tokens and cookie names must not change between servers).
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
