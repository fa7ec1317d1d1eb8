//! Per-app traffic metrics kept by the proxy; the monitoring issue exports a
//! [`MetricsSnapshot`] in Prometheus format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (seconds) of the latency histogram buckets; a last, implicit
/// bucket holds everything slower.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Live counters of one app.
#[derive(Debug, Default)]
pub(crate) struct AppMetrics {
    requests: AtomicU64,
    status: [AtomicU64; 5],
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    pub in_flight: AtomicI64,
}

impl AppMetrics {
    /// Records a finished exchange (status and time to the response head).
    pub fn record(&self, status: u16, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.status[class].fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AppSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AppSnapshot {
            requests: load(&self.requests),
            status_1xx: load(&self.status[0]),
            status_2xx: load(&self.status[1]),
            status_3xx: load(&self.status[2]),
            status_4xx: load(&self.status[3]),
            status_5xx: load(&self.status[4]),
            latency_buckets: self.buckets.iter().map(load).collect(),
            latency_sum_seconds: load(&self.latency_sum_us) as f64 / 1e6,
            in_flight: self.in_flight.load(Ordering::Relaxed).max(0) as u64,
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
