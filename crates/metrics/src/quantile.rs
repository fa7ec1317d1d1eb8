//! Latency quantiles from the proxy's bucketed histogram.

use slipway_proxy::LATENCY_BUCKETS;

/// The `q` quantile (0..=1) in milliseconds of non-cumulative bucket counts
/// laid out like [`slipway_proxy::AppSnapshot::latency_buckets`] (one count
/// per [`LATENCY_BUCKETS`] bound plus an overflow bucket), interpolating
/// linearly inside the bucket as Prometheus' `histogram_quantile` does.
/// `None` without samples.
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (seen + count) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                // The overflow bucket has no upper bound: report its lower one.
                return Some(lower * 1000.0);
            };
            let within = ((rank - seen as f64) / count as f64).clamp(0.0, 1.0);
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        seen += count;
    }
    LATENCY_BUCKETS.last().map(|b| b * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(usize, u64)]) -> Vec<u64> {
        let mut b = vec![0; LATENCY_BUCKETS.len() + 1];
        for &(i, n) in pairs {
            b[i] = n;
        }
        b
    }

    #[test]
    fn interpolates_inside_the_bucket() {
        // 100 requests all in (1 ms, 2.5 ms]: p50 is half-way.
        let b = buckets(&[(1, 100)]);
        assert!((quantile_ms(&b, 0.5).unwrap() - 1.75).abs() < 1e-9);
        assert!((quantile_ms(&b, 1.0).unwrap() - 2.5).abs() < 1e-9);
    }

    #[test]
    fn p99_finds_the_slow_tail() {
        // 98 fast (≤ 1 ms), 2 in (0.5 s, 1 s].
        let b = buckets(&[(0, 98), (9, 2)]);
        assert!(quantile_ms(&b, 0.5).unwrap() <= 1.0);
        let p99 = quantile_ms(&b, 0.99).unwrap();
        assert!((500.0..=1000.0).contains(&p99), "{p99}");
    }

    #[test]
    fn overflow_and_empty() {
        assert_eq!(quantile_ms(&buckets(&[]), 0.5), None);
        let b = buckets(&[(LATENCY_BUCKETS.len(), 3)]);
        assert_eq!(quantile_ms(&b, 0.99), Some(5000.0));
    }
}
