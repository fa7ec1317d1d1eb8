//! The embedded time-series store: per series a fixed-size ring of samples,
//! with a bound on the number of series, so memory stays bounded however
//! long the server runs and however many apps come and go.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Names one series: a metric name plus sorted `label=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Metric name, e.g. `requests_per_s`.
    pub name: String,
    /// Labels, sorted by key.
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    /// A series with the given labels (sorted here).
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Self {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        SeriesKey {
            name: name.to_string(),
            labels,
        }
    }

    /// A per-app series (`{app="name"}`).
    pub fn app(name: &str, app: &str) -> Self {
        Self::new(name, &[("app", app)])
    }

    /// A Slipway-wide series without labels.
    pub fn global(name: &str) -> Self {
        Self::new(name, &[])
    }
}

/// How samples falling in one step are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// Mean of the samples (rates, percentages, latencies).
    Avg,
    /// The latest sample (gauges such as replica counts).
    Last,
    /// The largest sample (peaks).
    Max,
}

/// Bounds of a [`TimeSeries`].
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// Samples kept per series; older ones are overwritten.
    pub points_per_series: usize,
    /// Series kept; a new series beyond it evicts the least recently written one.
    pub max_series: usize,
}

impl Default for RingLimits {
    /// 24 h at one sample per 10 s, for up to 10,000 series.
    fn default() -> Self {
        RingLimits {
            points_per_series: 8_640,
            max_series: 10_000,
        }
    }
}

/// Bounded in-memory time series; timestamps are Unix milliseconds.
#[derive(Debug)]
pub struct TimeSeries {
    limits: RingLimits,
    series: Mutex<HashMap<SeriesKey, VecDeque<(i64, f64)>>>,
}

impl TimeSeries {
    /// An empty store with `limits`.
    pub fn new(limits: RingLimits) -> Self {
        TimeSeries {
            limits: RingLimits {
                points_per_series: limits.points_per_series.max(1),
                max_series: limits.max_series.max(1),
            },
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Appends a sample at `t_ms`. Samples older than the series' newest are
    /// dropped (returns false), as are non-finite values.
    pub fn record(&self, key: &SeriesKey, t_ms: i64, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains_key(key) && all.len() >= self.limits.max_series {
            let oldest = all
                .iter()
                .min_by_key(|(_, ring)| ring.back().map_or(i64::MIN, |s| s.0))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                all.remove(&k);
            }
        }
        let ring = all.entry(key.clone()).or_default();
        if ring.back().is_some_and(|last| last.0 > t_ms) {
            return false;
        }
        if ring.len() >= self.limits.points_per_series {
            ring.pop_front();
        }
        ring.push_back((t_ms, value));
        true
    }

    /// Samples with `from_ms <= t <= to_ms`, combined per `step_ms` bucket
    /// (buckets aligned on multiples of the step; the time of a point is its
    /// bucket's start). Buckets without samples are left out.
    pub fn query(
        &self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        agg: Agg,
    ) -> Vec<(i64, f64)> {
        let step = step_ms.max(1);
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ring) = all.get(key) else {
            return Vec::new();
        };
        let mut out: Vec<(i64, f64)> = Vec::new();
        let mut count = 0u32;
        for &(t, v) in ring.iter().filter(|(t, _)| *t >= from_ms && *t <= to_ms) {
            let bucket = t.div_euclid(step) * step;
            match out.last_mut() {
                Some(last) if last.0 == bucket => {
                    count += 1;
                    last.1 = match agg {
                        Agg::Avg => last.1 + (v - last.1) / f64::from(count),
                        Agg::Last => v,
                        Agg::Max => last.1.max(v),
                    };
                }
                _ => {
                    out.push((bucket, v));
                    count = 1;
                }
            }
        }
        out
    }

    /// The newest sample of a series.
    pub fn latest(&self, key: &SeriesKey) -> Option<(i64, f64)> {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        all.get(key).and_then(|r| r.back().copied())
    }

    /// How many series are kept now.
    pub fn series_count(&self) -> usize {
        self.series.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many samples a series holds now.
    pub fn len(&self, key: &SeriesKey) -> usize {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        all.get(key).map_or(0, VecDeque::len)
    }
}

impl Default for TimeSeries {
    fn default() -> Self {
        Self::new(RingLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(points: usize, series: usize) -> TimeSeries {
        TimeSeries::new(RingLimits {
            points_per_series: points,
            max_series: series,
        })
    }

    #[test]
    fn keeps_only_the_newest_points() {
        let ts = small(3, 10);
        let k = SeriesKey::app("requests_per_s", "web");
        for i in 0..5 {
            assert!(ts.record(&k, i * 1000, i as f64));
        }
        assert_eq!(ts.len(&k), 3);
        assert_eq!(
            ts.query(&k, 0, 10_000, 1000, Agg::Avg),
            vec![(2000, 2.0), (3000, 3.0), (4000, 4.0)]
        );
    }

    #[test]
    fn default_limits_hold_a_day_at_ten_seconds() {
        let ts = TimeSeries::default();
        let k = SeriesKey::global("pipelines_running");
        for i in 0..9_000i64 {
            ts.record(&k, i * 10_000, 1.0);
        }
        assert_eq!(ts.len(&k), 8_640);
        assert_eq!(ts.latest(&k), Some((8_999 * 10_000, 1.0)));
    }

    #[test]
    fn downsamples_by_average_last_and_max() {
        let ts = small(100, 10);
        let k = SeriesKey::app("p99_ms", "web");
        for (t, v) in [(0, 1.0), (10, 3.0), (20, 8.0), (30, 2.0), (40, 4.0)] {
            ts.record(&k, t, v);
        }
        assert_eq!(
            ts.query(&k, 0, 100, 30, Agg::Avg),
            vec![(0, 4.0), (30, 3.0)]
        );
        assert_eq!(
            ts.query(&k, 0, 100, 30, Agg::Last),
            vec![(0, 8.0), (30, 4.0)]
        );
        assert_eq!(
            ts.query(&k, 0, 100, 30, Agg::Max),
            vec![(0, 8.0), (30, 4.0)]
        );
        // The window bounds are inclusive and filter before bucketing.
        assert_eq!(
            ts.query(&k, 10, 30, 10, Agg::Avg),
            vec![(10, 3.0), (20, 8.0), (30, 2.0)]
        );
        assert!(ts.query(&k, 50, 100, 10, Agg::Avg).is_empty());
    }

    #[test]
    fn refuses_out_of_order_and_non_finite_samples() {
        let ts = small(10, 10);
        let k = SeriesKey::global("exec_queue_length");
        assert!(ts.record(&k, 100, 1.0));
        assert!(!ts.record(&k, 50, 2.0));
        assert!(!ts.record(&k, 200, f64::NAN));
        assert!(ts.record(&k, 100, 3.0), "equal timestamps are kept");
        assert_eq!(ts.len(&k), 2);
    }

    #[test]
    fn series_count_is_bounded_by_evicting_the_stalest() {
        let ts = small(10, 2);
        let a = SeriesKey::app("memory_bytes", "a");
        let b = SeriesKey::app("memory_bytes", "b");
        let c = SeriesKey::app("memory_bytes", "c");
        ts.record(&a, 10, 1.0);
        ts.record(&b, 20, 1.0);
        ts.record(&a, 30, 1.0);
        ts.record(&c, 40, 1.0);
        assert_eq!(ts.series_count(), 2);
        assert_eq!(ts.len(&b), 0, "b was written least recently");
        assert_eq!(ts.len(&a), 2);
        assert_eq!(ts.len(&c), 1);
    }

    #[test]
    fn labels_are_order_insensitive() {
        assert_eq!(
            SeriesKey::new("x", &[("b", "2"), ("a", "1")]),
            SeriesKey::new("x", &[("a", "1"), ("b", "2")])
        );
    }
}
