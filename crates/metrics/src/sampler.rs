//! The sampler task: every interval it turns the proxy's counters, the
//! replicas' Docker stats and Slipway's queues into samples of the ring and
//! into the live values the Prometheus collector reads.

use crate::ring::SeriesKey;
use crate::{AppUsage, Monitor};
use bollard::container::{MemoryStatsStats, Stats, StatsOptions};
use futures::StreamExt;
use slipway_proxy::{AppSnapshot, MetricsSnapshot};
use slipway_runtime::Runtime;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Docker stats requests in flight at once.
const STATS_CONCURRENCY: usize = 8;

/// What one sampler remembers between ticks to turn counters into rates.
struct Previous {
    at: Instant,
    proxy: MetricsSnapshot,
    /// Per container: when its CPU counter was read, and the counter (ns).
    cpu: HashMap<String, (Instant, u64)>,
}

/// One replica's resource use read from Docker.
/// What the replicas of one service of a stack use, summed.
#[derive(Default)]
struct ServiceTotals {
    replicas: usize,
    memory_bytes: u64,
    cpu_percent: Option<f64>,
}

struct ReplicaUsage {
    container: String,
    read_at: Instant,
    cpu_ns: u64,
    memory_bytes: u64,
}

pub(crate) fn spawn(monitor: Monitor, rt: Option<Runtime>) {
    tokio::spawn(async move {
        let interval = monitor
            .inner
            .options
            .interval
            .max(Duration::from_millis(50));
        let mut prev = Previous {
            // The proxy's counters start with the process: a zero baseline is exact.
            at: monitor.inner.started,
            proxy: MetricsSnapshot::default(),
            cpu: HashMap::new(),
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = tick(&monitor, rt.as_ref(), &mut prev).await {
                tracing::warn!(error = %e, "metrics sample failed");
            }
        }
    });
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn tick(
    monitor: &Monitor,
    rt: Option<&Runtime>,
    prev: &mut Previous,
) -> Result<(), slipway_store::StoreError> {
    let deploy = &monitor.inner.deploy;
    let store = deploy.store();
    let t = now_ms();
    let series = &monitor.inner.series;
    let apps: Vec<(i64, String)> = store
        .list_apps()
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();

    // Traffic: rates and quantiles over the interval since the last tick.
    let now = Instant::now();
    let snap = deploy.proxy().metrics();
    let secs = now.duration_since(prev.at).as_secs_f64().max(1e-3);
    let empty = AppSnapshot {
        requests: 0,
        status_1xx: 0,
        status_2xx: 0,
        status_3xx: 0,
        status_4xx: 0,
        status_5xx: 0,
        latency_buckets: vec![0; slipway_proxy::LATENCY_BUCKETS.len() + 1],
        latency_sum_seconds: 0.0,
        in_flight: 0,
    };
    for (_, name) in &apps {
        let cur = snap.apps.get(name).unwrap_or(&empty);
        let old = prev.proxy.apps.get(name).unwrap_or(&empty);
        // A smaller counter means the app's counters were recreated: count from zero.
        let old = if cur.requests < old.requests {
            &empty
        } else {
            old
        };
        let requests = cur.requests - old.requests;
        let errors = cur.status_5xx.saturating_sub(old.status_5xx);
        series.record(
            &SeriesKey::app("requests_per_s", name),
            t,
            requests as f64 / secs,
        );
        series.record(
            &SeriesKey::app("errors_per_s", name),
            t,
            errors as f64 / secs,
        );
        let delta: Vec<u64> = cur
            .latency_buckets
            .iter()
            .zip(old.latency_buckets.iter().chain(std::iter::repeat(&0)))
            .map(|(c, o)| c.saturating_sub(*o))
            .collect();
        for (q, key) in [(0.5, "p50_ms"), (0.99, "p99_ms")] {
            if let Some(v) = crate::quantile::quantile_ms(&delta, q) {
                series.record(&SeriesKey::app(key, name), t, v);
            }
        }
    }
    prev.proxy = snap;
    prev.at = now;

    // Resources: Docker stats of every replica, a few at a time.
    let mut usage: HashMap<String, AppUsage> = HashMap::new();
    let mut services: BTreeMap<(String, String), AppUsage> = BTreeMap::new();
    let mut cpu_seen = HashMap::new();
    for (id, name) in &apps {
        let replicas = deploy.replicas(*id);
        let restarts = u64::from(deploy.restarts(*id));
        series.record(&SeriesKey::app("replicas", name), t, replicas.len() as f64);
        series.record(&SeriesKey::app("restarts", name), t, restarts as f64);
        // A stack's services: their replicas are counted apart too.
        let service_of: HashMap<String, String> = replicas
            .iter()
            .filter_map(|r| Some((r.container.clone(), r.service.clone()?)))
            .collect();
        let mut per_service: BTreeMap<&str, ServiceTotals> = BTreeMap::new();
        for svc in service_of.values() {
            per_service.entry(svc.as_str()).or_default().replicas += 1;
        }
        let Some(rt) = rt else { continue };
        let reads: Vec<ReplicaUsage> = futures::stream::iter(replicas)
            .map(|r| read_stats(rt, r.container))
            .buffer_unordered(STATS_CONCURRENCY)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        if reads.is_empty() {
            continue;
        }
        let memory: u64 = reads.iter().map(|r| r.memory_bytes).sum();
        let mut cpu_percent = None;
        for r in &reads {
            let service = service_of
                .get(&r.container)
                .and_then(|s| per_service.get_mut(s.as_str()));
            let mut cpu = None;
            if let Some((at, ns)) = prev.cpu.get(&r.container) {
                let wall = r.read_at.duration_since(*at).as_nanos() as f64;
                if wall > 0.0 && r.cpu_ns >= *ns {
                    let p = (r.cpu_ns - ns) as f64 / wall * 100.0;
                    *cpu_percent.get_or_insert(0.0) += p;
                    cpu = Some(p);
                }
            }
            if let Some(t) = service {
                t.memory_bytes += r.memory_bytes;
                if let Some(p) = cpu {
                    *t.cpu_percent.get_or_insert(0.0) += p;
                }
            }
            cpu_seen.insert(r.container.clone(), (r.read_at, r.cpu_ns));
        }
        for (svc, tot) in &per_service {
            let key = |metric: &str| SeriesKey::new(metric, &[("app", name), ("service", svc)]);
            series.record(&key("replicas"), t, tot.replicas as f64);
            series.record(&key("memory_bytes"), t, tot.memory_bytes as f64);
            if let Some(p) = tot.cpu_percent {
                series.record(&key("cpu_percent"), t, p);
            }
            services.insert(
                (name.clone(), svc.to_string()),
                AppUsage {
                    cpu_ratio: tot.cpu_percent.map(|p| p / 100.0),
                    memory_bytes: tot.memory_bytes,
                },
            );
        }
        series.record(&SeriesKey::app("memory_bytes", name), t, memory as f64);
        if let Some(p) = cpu_percent {
            series.record(&SeriesKey::app("cpu_percent", name), t, p);
        }
        usage.insert(
            name.clone(),
            AppUsage {
                cpu_ratio: cpu_percent.map(|p| p / 100.0),
                memory_bytes: memory,
            },
        );
    }
    prev.cpu = cpu_seen;

    // Slipway-wide queues.
    let (exec_queue, _) = store.count_pending_exec_jobs(0).await?;
    let running = store.running_pipelines().await?.len() as i64;
    series.record(
        &SeriesKey::global("exec_queue_length"),
        t,
        exec_queue as f64,
    );
    series.record(&SeriesKey::global("pipelines_running"), t, running as f64);

    let mut live = monitor.inner.live.lock().unwrap_or_else(|e| e.into_inner());
    live.apps = apps;
    live.usage = usage;
    live.services = services;
    live.pipelines_running = Some(running);
    live.exec_queue_length = Some(exec_queue);
    Ok(())
}

/// One `docker stats` read (no streaming, one shot) of a replica; `None`
/// when the container is gone or the engine does not answer.
async fn read_stats(rt: &Runtime, container: String) -> Option<ReplicaUsage> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let mut stream = rt.docker().stats(&container, Some(options));
    let stats: Stats = match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(s))) => s,
        Ok(Some(Err(e))) => {
            tracing::debug!(%container, error = %e, "docker stats failed");
            return None;
        }
        _ => return None,
    };
    Some(ReplicaUsage {
        read_at: Instant::now(),
        cpu_ns: stats.cpu_stats.cpu_usage.total_usage,
        memory_bytes: memory_in_use(&stats),
        container,
    })
}

/// Memory in use the way `docker stats` shows it: usage minus the inactive
/// page cache (cgroup v1 `total_inactive_file`, v2 `inactive_file`).
fn memory_in_use(stats: &Stats) -> u64 {
    let usage = stats.memory_stats.usage.unwrap_or(0);
    let cache = match stats.memory_stats.stats {
        Some(MemoryStatsStats::V1(v1)) => v1.total_inactive_file,
        Some(MemoryStatsStats::V2(v2)) => v2.inactive_file,
        None => 0,
    };
    usage.saturating_sub(cache)
}
