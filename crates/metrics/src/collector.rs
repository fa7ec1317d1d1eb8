//! The Prometheus side: a [`Collector`] that reads live values at scrape time
//! (the proxy's counters and histogram, the deployer's replicas) plus what
//! the sampler last read from Docker and the store, so nothing is counted
//! twice.

use crate::Monitor;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use slipway_deploy::ReplicaState;
use slipway_proxy::LATENCY_BUCKETS;
use std::fmt::Error;

/// Label set of the API's request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `api`, `git`, `registry`, `metrics`, `health`, `ui` or `other`.
    pub route_class: String,
    /// Status class: `2xx`, `4xx`…
    pub class: String,
}

/// Reads [`Monitor`]'s live sources on every scrape.
#[derive(Debug)]
pub(crate) struct AppCollector(pub Monitor);

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

fn counter(enc: &mut prometheus_client::encoding::MetricEncoder, v: u64) -> Result<(), Error> {
    enc.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

impl Collector for AppCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let inner = &self.0.inner;
        let snap = inner.deploy.proxy().metrics();
        let (apps, usage, services, pipelines) = {
            let live = inner.live.lock().unwrap_or_else(|e| e.into_inner());
            (
                live.apps.clone(),
                live.usage.clone(),
                live.services.clone(),
                live.pipelines_running,
            )
        };

        let mut m = encoder.encode_descriptor(
            "slipway_app_requests",
            "Requests the proxy answered per app, by status class",
            None,
            MetricType::Counter,
        )?;
        for (app, s) in &snap.apps {
            for (class, v) in [
                ("1xx", s.status_1xx),
                ("2xx", s.status_2xx),
                ("3xx", s.status_3xx),
                ("4xx", s.status_4xx),
                ("5xx", s.status_5xx),
            ] {
                let labels = [("app", app.as_str()), ("class", class)];
                counter(&mut m.encode_family(&labels)?, v)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "slipway_app_request_duration_seconds",
            "Time from request to response head through the proxy, per app",
            None,
            MetricType::Histogram,
        )?;
        for (app, s) in &snap.apps {
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(s.latency_buckets.iter().copied())
                .collect();
            let count = s.latency_buckets.iter().sum();
            let labels = [("app", app.as_str())];
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                s.latency_sum_seconds,
                count,
                &buckets,
                None,
            )?;
        }

        let replicas: Vec<_> = apps
            .iter()
            .map(|(id, name)| (name, inner.deploy.replicas(*id)))
            .collect();
        let mut m = encoder.encode_descriptor(
            "slipway_app_replicas",
            "Replicas of each app by state (starting, healthy, draining)",
            None,
            MetricType::Gauge,
        )?;
        for (name, list) in &replicas {
            for (label, state) in [
                ("starting", ReplicaState::Starting),
                ("healthy", ReplicaState::Healthy),
                ("draining", ReplicaState::Draining),
            ] {
                let n = list.iter().filter(|r| r.state == state).count() as i64;
                let labels = [("app", name.as_str()), ("state", label)];
                m.encode_family(&labels)?.encode_gauge(&n)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "slipway_app_restarts",
            "Replicas of the app restarted after crashes since the server started",
            None,
            MetricType::Counter,
        )?;
        for (id, name) in apps.iter() {
            let n = u64::from(inner.deploy.restarts(*id));
            counter(&mut m.encode_family(&[("app", name.as_str())])?, n)?;
        }

        let mut m = encoder.encode_descriptor(
            "slipway_app_cpu_ratio",
            "CPU used by the app's replicas over the last sample interval (1.0 = one core)",
            None,
            MetricType::Gauge,
        )?;
        for (name, u) in &usage {
            if let Some(r) = u.cpu_ratio {
                m.encode_family(&[("app", name.as_str())])?
                    .encode_gauge(&r)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "slipway_app_memory_bytes",
            "Memory in use by the app's replicas (page cache excluded) at the last sample",
            None,
            MetricType::Gauge,
        )?;
        for (name, u) in &usage {
            m.encode_family(&[("app", name.as_str())])?
                .encode_gauge(&u.memory_bytes)?;
        }

        let mut m = encoder.encode_descriptor(
            "slipway_service_replicas",
            "Replicas of each service of a stack by state (starting, healthy, draining)",
            None,
            MetricType::Gauge,
        )?;
        for (name, list) in &replicas {
            let mut names: Vec<&str> = list.iter().filter_map(|r| r.service.as_deref()).collect();
            names.sort_unstable();
            names.dedup();
            for svc in names {
                for (label, state) in [
                    ("starting", ReplicaState::Starting),
                    ("healthy", ReplicaState::Healthy),
                    ("draining", ReplicaState::Draining),
                ] {
                    let n = list
                        .iter()
                        .filter(|r| r.state == state && r.service.as_deref() == Some(svc))
                        .count() as i64;
                    let labels = [("app", name.as_str()), ("service", svc), ("state", label)];
                    m.encode_family(&labels)?.encode_gauge(&n)?;
                }
            }
        }
        let mut m = encoder.encode_descriptor(
            "slipway_service_cpu_ratio",
            "CPU used by the replicas of each service of a stack over the last sample interval (1.0 = one core)",
            None,
            MetricType::Gauge,
        )?;
        for ((app, svc), u) in &services {
            if let Some(r) = u.cpu_ratio {
                m.encode_family(&[("app", app.as_str()), ("service", svc.as_str())])?
                    .encode_gauge(&r)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "slipway_service_memory_bytes",
            "Memory in use by the replicas of each service of a stack (page cache excluded) at the last sample",
            None,
            MetricType::Gauge,
        )?;
        for ((app, svc), u) in &services {
            m.encode_family(&[("app", app.as_str()), ("service", svc.as_str())])?
                .encode_gauge(&u.memory_bytes)?;
        }

        if let Some(n) = pipelines {
            encoder
                .encode_descriptor(
                    "slipway_pipelines_running",
                    "CI pipelines running at the last sample",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&n)?;
        }
        Ok(())
    }
}
