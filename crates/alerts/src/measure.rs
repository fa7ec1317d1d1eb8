//! Turns what monitoring recorded into a verdict per rule: the 5xx share and
//! p99 latency from the sampler's ring, CPU likewise, and healthy replicas
//! from the deployer and the proxy's active health checks.

use crate::rule::AlertKind;
use crate::state::Verdict;
use slipway_deploy::{Deployer, ReplicaState};
use slipway_domain::AppRecord;
use slipway_metrics::measure::{app_samples as samples, mean};
use slipway_metrics::TimeSeries;
use slipway_store::AlertRuleRow;
use std::collections::HashSet;

/// A measured value against the rule's threshold.
fn judge(value: f64, rule: &AlertRuleRow) -> Verdict {
    if value > rule.threshold {
        Verdict::Above(value)
    } else {
        Verdict::Below(value)
    }
}

/// The verdict of a metric rule (`error_rate`, `p99`, `cpu`) at `now_ms`.
/// The window is the rule's, but never shorter than one sample interval.
pub(crate) fn metric_verdict(
    series: &TimeSeries,
    rule: &AlertRuleRow,
    kind: AlertKind,
    app: &str,
    now_ms: i64,
    interval_ms: i64,
) -> Verdict {
    let window_ms = (rule.window_s * 1000).max(interval_ms);
    let from = now_ms - window_ms;
    let per_sample_s = interval_ms as f64 / 1000.0;
    // Rates are per second over one interval: a sample times the interval is a count.
    let requests: f64 = samples(series, "requests_per_s", app, from, now_ms)
        .iter()
        .sum::<f64>()
        * per_sample_s;
    if kind.needs_traffic() && requests.round() < rule.min_requests as f64 {
        return Verdict::NoData;
    }
    match kind {
        AlertKind::ErrorRate => {
            let errors: f64 = samples(series, "errors_per_s", app, from, now_ms)
                .iter()
                .sum::<f64>()
                * per_sample_s;
            if requests <= 0.0 {
                return Verdict::NoData;
            }
            judge((errors / requests * 100.0).min(100.0), rule)
        }
        AlertKind::P99 | AlertKind::Cpu => {
            let name = if kind == AlertKind::P99 {
                "p99_ms"
            } else {
                "cpu_percent"
            };
            match mean(&samples(series, name, app, from, now_ms)) {
                Some(v) => judge(v, rule),
                None => Verdict::NoData,
            }
        }
        AlertKind::ReplicaDown => Verdict::NoData,
    }
}

/// Replicas of `app` taking traffic: healthy for the deployer and not
/// marked down by the proxy's active health checks (passive ejection after
/// a burst of 5xx is the error-rate rule's business, not this one's).
pub(crate) fn healthy_replicas(deploy: &Deployer, app: &AppRecord) -> usize {
    let down: HashSet<String> = deploy
        .proxy()
        .upstreams()
        .into_iter()
        .filter(|u| u.app == app.name && u.in_table && !u.up)
        .map(|u| u.addr.to_string())
        .collect();
    deploy
        .replicas(app.id)
        .iter()
        .filter(|r| r.state == ReplicaState::Healthy && !down.contains(&r.address))
        .count()
}

/// The verdict of a `replica_down` rule: replicas missing versus desired.
pub(crate) fn replica_verdict(rule: &AlertRuleRow, desired: u32, healthy: usize) -> Verdict {
    let missing = (desired as usize).saturating_sub(healthy);
    judge(missing as f64, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_metrics::{RingLimits, SeriesKey};

    fn rule(kind: &str, threshold: f64, window_s: i64, min_requests: i64) -> AlertRuleRow {
        AlertRuleRow {
            id: 1,
            app_id: 1,
            kind: kind.into(),
            threshold,
            for_s: 0,
            window_s,
            min_requests,
            enabled: true,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    /// Ten samples one second apart ending at t = 10 s.
    fn ring(per_sample: &[(&str, f64)]) -> TimeSeries {
        let ts = TimeSeries::new(RingLimits::default());
        for i in 1..=10 {
            for (name, v) in per_sample {
                ts.record(&SeriesKey::app(name, "web"), i * 1000, *v);
            }
        }
        ts
    }

    #[test]
    fn error_rate_is_the_5xx_share_over_the_window() {
        let ts = ring(&[("requests_per_s", 10.0), ("errors_per_s", 2.5)]);
        let r = rule("error_rate", 20.0, 5, 10);
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::ErrorRate, "web", 10_000, 1000),
            Verdict::Above(25.0)
        );
        let r = rule("error_rate", 30.0, 5, 10);
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::ErrorRate, "web", 10_000, 1000),
            Verdict::Below(25.0)
        );
        // 5 samples of 10 requests: fewer than 51 requests is no verdict.
        let r = rule("error_rate", 1.0, 5, 51);
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::ErrorRate, "web", 10_000, 1000),
            Verdict::NoData
        );
        // Samples older than the window do not count; none at all is no data.
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::ErrorRate, "web", 100_000, 1000),
            Verdict::NoData
        );
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::ErrorRate, "other", 10_000, 1000),
            Verdict::NoData
        );
    }

    #[test]
    fn p99_and_cpu_average_the_window() {
        let ts = ring(&[
            ("requests_per_s", 10.0),
            ("p99_ms", 300.0),
            ("cpu_percent", 50.0),
        ]);
        let r = rule("p99", 250.0, 3, 10);
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::P99, "web", 10_000, 1000),
            Verdict::Above(300.0)
        );
        let r = rule("cpu", 80.0, 60, 0);
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::Cpu, "web", 10_000, 1000),
            Verdict::Below(50.0)
        );
        // A window shorter than the interval still sees the last sample.
        let r = rule("cpu", 10.0, 1, 0);
        assert_eq!(
            metric_verdict(&ts, &r, AlertKind::Cpu, "web", 10_500, 2000),
            Verdict::Above(50.0)
        );
    }

    #[test]
    fn replicas_missing_against_desired() {
        let r = rule("replica_down", 0.0, 0, 0);
        assert_eq!(replica_verdict(&r, 2, 2), Verdict::Below(0.0));
        assert_eq!(replica_verdict(&r, 2, 1), Verdict::Above(1.0));
        assert_eq!(replica_verdict(&r, 1, 3), Verdict::Below(0.0));
        let r = rule("replica_down", 1.0, 0, 0);
        assert_eq!(replica_verdict(&r, 3, 2), Verdict::Below(1.0));
        assert_eq!(replica_verdict(&r, 3, 1), Verdict::Above(2.0));
    }
}
