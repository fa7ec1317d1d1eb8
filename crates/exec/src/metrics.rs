//! Prometheus metrics of the execution service: queue (and how many users
//! share it), jobs, latencies and the warm pool. Registered into the
//! server's registry with [`crate::ExecService::register_metrics`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set naming a language runtime.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LanguageLabel {
    /// Canonical language name (`python`, `c`, …).
    pub language: String,
}

/// Label set of a finished job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// Canonical language name.
    pub language: String,
    /// Final state: `succeeded`, `failed`, `timed_out`, `error`, `cancelled`.
    pub outcome: String,
}

type Histograms = Family<LanguageLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms … ~82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric of the service; cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    /// Jobs waiting to be claimed.
    pub queue_length: Gauge,
    /// Users with jobs waiting.
    pub queue_users: Gauge,
    /// Users with jobs waiting who are at the per-user running cap.
    pub users_at_cap: Gauge,
    /// Finished jobs by language and outcome.
    pub jobs: Family<JobLabels, Counter>,
    /// Submissions refused with 429.
    pub rejected: Counter,
    /// Seconds from submission to a worker claiming the job.
    pub queue_wait: Histograms,
    /// Seconds from claim to stored result (sandbox hand-over, compile, run, collect).
    pub run_latency: Histograms,
    /// Warm sandboxes waiting for a job.
    pub pool_idle: Family<LanguageLabel, Gauge>,
    /// Jobs served by a warm sandbox.
    pub pool_hits: Family<LanguageLabel, Counter>,
    /// Jobs that had to start a sandbox of their own.
    pub pool_misses: Family<LanguageLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            queue_length: Gauge::default(),
            queue_users: Gauge::default(),
            users_at_cap: Gauge::default(),
            jobs: Family::default(),
            rejected: Counter::default(),
            queue_wait: Family::new_with_constructor(latency_histogram),
            run_latency: Family::new_with_constructor(latency_histogram),
            pool_idle: Family::default(),
            pool_hits: Family::default(),
            pool_misses: Family::default(),
        }
    }
}

/// The label set of `language`.
pub fn lang(language: &str) -> LanguageLabel {
    LanguageLabel {
        language: language.to_string(),
    }
}

impl Metrics {
    /// Add every metric to `registry` under the `slipway_exec_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("slipway_exec");
        r.register(
            "queue_length",
            "Code execution jobs waiting for a worker",
            self.queue_length.clone(),
        );
        r.register(
            "queue_users",
            "Users with code execution jobs waiting",
            self.queue_users.clone(),
        );
        r.register(
            "users_at_running_cap",
            "Users with jobs waiting who already run as many jobs as one user may",
            self.users_at_cap.clone(),
        );
        r.register(
            "jobs",
            "Finished code execution jobs by language and outcome",
            self.jobs.clone(),
        );
        r.register(
            "rejected",
            "Code execution submissions refused because a queue bound was reached",
            self.rejected.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Time from submission until a worker claims the job",
            self.queue_wait.clone(),
        );
        r.register(
            "run_seconds",
            "Time from claim until the result is stored",
            self.run_latency.clone(),
        );
        r.register(
            "pool_idle",
            "Warm sandboxes waiting for a job",
            self.pool_idle.clone(),
        );
        r.register(
            "pool_hits",
            "Jobs handed to a warm sandbox",
            self.pool_hits.clone(),
        );
        r.register(
            "pool_misses",
            "Jobs that started a sandbox of their own (no warm one was ready)",
            self.pool_misses.clone(),
        );
    }
}
