//! Slipway's monitoring.
//!
//! * [`TimeSeries`] — an embedded, bounded ring of samples per series
//!   (24 h at 10 s by default), queried with downsampling for the charts
//!   behind `GET /api/v1/apps/{app}/metrics`.
//! * The sampler ([`Monitor::start`]) — every interval, per app: requests/s,
//!   5xx/s and p50/p99 latency from the proxy's counters, CPU and memory from
//!   Docker stats of its replicas, replica count and restarts; Slipway-wide:
//!   the code execution queue and running pipelines.
//! * Prometheus ([`Monitor::register`]) — a collector that reads the live
//!   values at scrape time, and the API's request counter; [`Format`]
//!   negotiates and writes the exposition format of `/metrics`.

#![warn(missing_docs)]

mod collector;
pub mod exposition;
pub mod measure;
pub mod quantile;
pub mod ring;
mod sampler;

pub use collector::HttpLabels;
pub use exposition::Format;
pub use ring::{Agg, RingLimits, SeriesKey, TimeSeries};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use slipway_deploy::Deployer;
use slipway_runtime::Runtime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How monitoring is set up by the server.
#[derive(Debug, Clone, Copy)]
pub struct MonitorOptions {
    /// Time between samples (10 s by default).
    pub interval: Duration,
    /// Bounds of the time-series ring.
    pub limits: RingLimits,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            interval: Duration::from_secs(10),
            limits: RingLimits::default(),
        }
    }
}

/// Resource use of one app at the last sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AppUsage {
    /// CPU over the last interval (1.0 = one core); unknown on the first read.
    cpu_ratio: Option<f64>,
    memory_bytes: u64,
}

/// Values the sampler read last, for the Prometheus collector.
#[derive(Debug, Default)]
pub(crate) struct Live {
    apps: Vec<(i64, String)>,
    usage: HashMap<String, AppUsage>,
    /// (app, service) → what the service's replicas use (stacks).
    services: std::collections::BTreeMap<(String, String), AppUsage>,
    pipelines_running: Option<i64>,
    exec_queue_length: Option<i64>,
}

/// Monitoring service: the time series, the sampler and the exporters.
/// Cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    deploy: Deployer,
    options: MonitorOptions,
    series: TimeSeries,
    live: Mutex<Live>,
    http: Family<HttpLabels, Counter>,
    started: Instant,
}

impl Monitor {
    /// Monitoring of `deploy`'s apps (its store and proxy); nothing is
    /// sampled until [`Monitor::start`].
    pub fn new(deploy: Deployer, options: MonitorOptions) -> Self {
        Monitor {
            inner: Arc::new(Inner {
                deploy,
                series: TimeSeries::new(options.limits),
                options,
                live: Mutex::new(Live::default()),
                http: Family::default(),
                started: Instant::now(),
            }),
        }
    }

    /// Adds the per-app collector and the API request counter to `registry`
    /// (once, at start-up).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(collector::AppCollector(self.clone())));
        registry.register(
            "slipway_http_requests",
            "Requests Slipway's own HTTP server answered, by route class and status class",
            self.inner.http.clone(),
        );
    }

    /// Starts the sampler task; without `rt` (no Docker) CPU and memory are
    /// not sampled. Needs a Tokio runtime.
    pub fn start(&self, rt: Option<Runtime>) {
        sampler::spawn(self.clone(), rt);
    }

    /// The sample interval.
    pub fn interval(&self) -> Duration {
        self.inner.options.interval
    }

    /// The recorded series.
    pub fn series(&self) -> &TimeSeries {
        &self.inner.series
    }

    /// Counts one answered request of Slipway's HTTP server.
    pub fn count_http(&self, route_class: &str, status: u16) {
        let class = format!("{}xx", (status / 100).clamp(1, 5));
        self.inner
            .http
            .get_or_create(&HttpLabels {
                route_class: route_class.to_string(),
                class,
            })
            .inc();
    }

    /// Code execution jobs waiting, at the last sample.
    pub fn exec_queue_length(&self) -> Option<i64> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exec_queue_length
    }
}
