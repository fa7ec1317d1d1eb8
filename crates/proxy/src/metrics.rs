//! Per-app traffic metrics kept by the proxy; the monitoring issue exports a
//! [`MetricsSnapshot`] in Prometheus format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::shard::{self, Padded};

/// Upper bounds (seconds) of the latency histogram buckets; a last, implicit
/// bucket holds everything slower.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Counters one thread writes (see [`crate::shard`]).
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    status: [AtomicU64; 5],
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    /// Signed: a request may start on one thread and end on another; the
    /// sum over shards is exact.
    in_flight: AtomicI64,
}

/// Live counters of one app, sharded per thread so that recording a request
/// never bounces a cache line between cores; snapshots sum the shards.
#[derive(Debug)]
pub(crate) struct AppMetrics {
    shards: Box<[Padded<Counters>]>,
}

impl Default for AppMetrics {
    fn default() -> Self {
        AppMetrics {
            shards: (0..shard::SHARDS).map(|_| Padded::default()).collect(),
        }
    }
}

impl AppMetrics {
    fn mine(&self) -> &Counters {
        &self.shards[shard::index()].0
    }

    /// Records a finished exchange (status and time to the response head).
    pub fn record(&self, status: u16, latency: Duration) {
        let c = self.mine();
        c.requests.fetch_add(1, Ordering::Relaxed);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        c.status[class].fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        c.buckets[idx].fetch_add(1, Ordering::Relaxed);
        c.latency_sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a request entering flight.
    pub fn start(&self) {
        self.mine().in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request leaving flight.
    pub fn end(&self) {
        self.mine().in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AppSnapshot {
        let sum = |f: &dyn Fn(&Counters) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|s| f(&s.0).load(Ordering::Relaxed))
                .sum()
        };
        let in_flight: i64 = self
            .shards
            .iter()
            .map(|s| s.0.in_flight.load(Ordering::Relaxed))
            .sum();
        AppSnapshot {
            requests: sum(&|c| &c.requests),
            status_1xx: sum(&|c| &c.status[0]),
            status_2xx: sum(&|c| &c.status[1]),
            status_3xx: sum(&|c| &c.status[2]),
            status_4xx: sum(&|c| &c.status[3]),
            status_5xx: sum(&|c| &c.status[4]),
            latency_buckets: (0..=LATENCY_BUCKETS.len())
                .map(|i| sum(&|c| &c.buckets[i]))
                .collect(),
            latency_sum_seconds: sum(&|c| &c.latency_sum_us) as f64 / 1e6,
            in_flight: in_flight.max(0) as u64,
        }
    }
}

/// Counters of one app at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSnapshot {
    /// Requests answered (proxy-made errors included).
    pub requests: u64,
    /// Informational answers (101 for upgrades).
    pub status_1xx: u64,
    /// Successes.
    pub status_2xx: u64,
    /// Redirects.
    pub status_3xx: u64,
    /// Client errors.
    pub status_4xx: u64,
    /// Server errors (502/503 made by the proxy included).
    pub status_5xx: u64,
    /// Non-cumulative counts per [`LATENCY_BUCKETS`] bound, plus one overflow bucket.
    pub latency_buckets: Vec<u64>,
    /// Sum of latencies (time to response head).
    pub latency_sum_seconds: f64,
    /// Requests in flight now.
    pub in_flight: u64,
}

/// All apps' counters, keyed by app name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Per-app counters.
    pub apps: BTreeMap<String, AppSnapshot>,
}

pub(crate) fn snapshot<'a>(
    apps: impl Iterator<Item = (&'a String, &'a std::sync::Arc<AppMetrics>)>,
) -> MetricsSnapshot {
    MetricsSnapshot {
        apps: apps.map(|(k, v)| (k.clone(), v.snapshot())).collect(),
    }
}
