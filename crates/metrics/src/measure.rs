//! Reading what the sampler recorded about one app over a window: shared by
//! the evaluators that act on measurements (alerting, autoscaling), so they
//! agree on which samples a window holds.

use crate::ring::{Agg, SeriesKey, TimeSeries};

/// The samples `(t_ms, value)` of an app's series with `from_ms < t <= to_ms`,
/// oldest first (the window excludes its start so consecutive windows never
/// count a sample twice).
pub fn app_points(
    series: &TimeSeries,
    name: &str,
    app: &str,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, f64)> {
    series.query(&SeriesKey::app(name, app), from_ms + 1, to_ms, 1, Agg::Last)
}

/// The values of [`app_points`].
pub fn app_samples(
    series: &TimeSeries,
    name: &str,
    app: &str,
    from_ms: i64,
    to_ms: i64,
) -> Vec<f64> {
    app_points(series, name, app, from_ms, to_ms)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// The mean of a window's values; `None` when it holds none (no data).
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RingLimits;

    #[test]
    fn windows_exclude_their_start() {
        let ts = TimeSeries::new(RingLimits::default());
        for i in 1..=5 {
            ts.record(&SeriesKey::app("requests_per_s", "web"), i * 1000, i as f64);
        }
        assert_eq!(
            app_points(&ts, "requests_per_s", "web", 2000, 4000),
            vec![(3000, 3.0), (4000, 4.0)]
        );
        let v = app_samples(&ts, "requests_per_s", "web", 0, 5000);
        assert_eq!(mean(&v), Some(3.0));
        assert_eq!(mean(&app_samples(&ts, "cpu_percent", "web", 0, 5000)), None);
    }
}
