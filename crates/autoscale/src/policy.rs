//! The policy model: what a client sends, its bounds, and how people read it.

use serde::{Deserialize, Serialize};
use slipway_domain::app::MAX_REPLICAS;
use slipway_store::{AutoscaleRow, AutoscaleSettings};

/// Default scale-down stabilisation window: five minutes, like Kubernetes'.
pub const DEFAULT_SCALE_DOWN_WINDOW_S: i64 = 300;
/// Longest stabilisation window: an hour.
pub const MAX_WINDOW_S: i64 = 3_600;
/// Highest CPU target, in % of the replica's limit (or of one core).
pub const MAX_CPU_PERCENT: f64 = 1_000.0;
/// Highest requests/s target per replica.
pub const MAX_RPS_PER_REPLICA: f64 = 1_000_000.0;

/// A policy as a client sends it (`PUT /apps/{app}/autoscale`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// Fewest replicas, 1 when absent.
    pub min: Option<i64>,
    /// Most replicas.
    pub max: i64,
    /// Target CPU % per replica (of its CPU limit, or of one core).
    pub cpu_percent: Option<f64>,
    /// Target requests/s per replica.
    pub rps_per_replica: Option<f64>,
    /// Seconds of recommendations a scale-down waits for (300 when absent).
    pub scale_down_window_s: Option<i64>,
    /// Seconds of recommendations a scale-up waits for (0 when absent).
    pub scale_up_window_s: Option<i64>,
}

impl PolicyInput {
    /// Checks the bounds and gives the settings to store; the message says
    /// what is wrong in words a user can act on.
    pub fn validate(&self) -> Result<AutoscaleSettings, String> {
        let max_r = i64::from(MAX_REPLICAS);
        let min = self.min.unwrap_or(1);
        if !(1..=max_r).contains(&min) {
            return Err(format!(
                "min must be between 1 and {max_r} replicas (got {min})"
            ));
        }
        if !(1..=max_r).contains(&self.max) {
            return Err(format!(
                "max must be between 1 and {max_r} replicas (got {})",
                self.max
            ));
        }
        if min > self.max {
            return Err(format!("min ({min}) must not be above max ({})", self.max));
        }
        match (self.cpu_percent, self.rps_per_replica) {
            (Some(_), Some(_)) => {
                return Err(
                    "give one target: cpu_percent or rps_per_replica, not both".to_string(),
                )
            }
            (None, None) => {
                return Err(
                    "give a target: cpu_percent (CPU % per replica) or rps_per_replica (requests/s per replica)"
                        .to_string(),
                )
            }
            (Some(p), None) if !(p.is_finite() && p > 0.0 && p <= MAX_CPU_PERCENT) => {
                return Err(format!(
                    "cpu_percent must be above 0 and at most {MAX_CPU_PERCENT} (got {p})"
                ))
            }
            (None, Some(r)) if !(r.is_finite() && r > 0.0 && r <= MAX_RPS_PER_REPLICA) => {
                return Err(format!(
                    "rps_per_replica must be above 0 and at most {MAX_RPS_PER_REPLICA} (got {r})"
                ))
            }
            _ => {}
        }
        let window = |name: &str, v: Option<i64>, default: i64| -> Result<i64, String> {
            let v = v.unwrap_or(default);
            if (0..=MAX_WINDOW_S).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "{name} must be between 0 and {MAX_WINDOW_S} seconds (got {v})"
                ))
            }
        };
        Ok(AutoscaleSettings {
            min_replicas: min,
            max_replicas: self.max,
            cpu_percent: self.cpu_percent,
            rps_per_replica: self.rps_per_replica,
            scale_down_window_s: window(
                "scale_down_window_s",
                self.scale_down_window_s,
                DEFAULT_SCALE_DOWN_WINDOW_S,
            )?,
            scale_up_window_s: window("scale_up_window_s", self.scale_up_window_s, 0)?,
        })
    }
}

/// What a policy aims at per replica.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// CPU % of the replica's CPU limit (or of one core without a limit).
    CpuPercent(f64),
    /// Requests per second through the proxy.
    RpsPerReplica(f64),
}

impl Target {
    /// The target of a stored policy.
    pub fn of(row: &AutoscaleRow) -> Target {
        match (row.cpu_percent, row.rps_per_replica) {
            (Some(p), _) => Target::CpuPercent(p),
            (None, Some(r)) => Target::RpsPerReplica(r),
            // The schema's CHECK rules this out; a harmless fallback.
            (None, None) => Target::CpuPercent(100.0),
        }
    }

    /// The value aimed at per replica.
    pub fn value(self) -> f64 {
        match self {
            Target::CpuPercent(v) | Target::RpsPerReplica(v) => v,
        }
    }

    /// The unit, for people.
    pub fn unit(self) -> &'static str {
        match self {
            Target::CpuPercent(_) => "% CPU",
            Target::RpsPerReplica(_) => "req/s",
        }
    }
}

/// A policy in one line, for events: `1–3 replicas, 5 req/s per replica`.
pub fn summary(row: &AutoscaleRow) -> String {
    let t = Target::of(row);
    format!(
        "{}–{} replicas at {} {} per replica, scale-down window {} s",
        row.min_replicas,
        row.max_replicas,
        number(t.value()),
        t.unit(),
        row.scale_down_window_s
    )
}

/// A measurement as people read it: at most one decimal.
pub(crate) fn number(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(min: i64, max: i64, cpu: Option<f64>, rps: Option<f64>) -> PolicyInput {
        PolicyInput {
            min: Some(min),
            max,
            cpu_percent: cpu,
            rps_per_replica: rps,
            ..Default::default()
        }
    }

    #[test]
    fn bounds_are_checked_with_readable_messages() {
        let ok = input(1, 3, None, Some(5.0)).validate().unwrap();
        assert_eq!(ok.scale_down_window_s, DEFAULT_SCALE_DOWN_WINDOW_S);
        assert_eq!(ok.scale_up_window_s, 0);
        let err = |i: PolicyInput| i.validate().unwrap_err();
        assert!(err(input(3, 2, None, Some(5.0))).contains("min (3) must not be above max (2)"));
        assert!(err(input(1, 3, Some(50.0), Some(5.0))).contains("not both"));
        assert!(err(input(1, 3, None, None)).contains("give a target"));
        assert!(err(input(0, 3, None, Some(5.0))).contains("min must be between 1 and 50"));
        assert!(err(input(1, 51, None, Some(5.0))).contains("max must be between 1 and 50"));
        assert!(err(input(1, 3, Some(0.0), None)).contains("cpu_percent must be above 0"));
        assert!(err(input(1, 3, None, Some(-1.0))).contains("rps_per_replica must be above 0"));
        let mut i = input(1, 3, Some(60.0), None);
        i.scale_down_window_s = Some(-1);
        assert!(err(i).contains("scale_down_window_s must be between 0 and 3600"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(5.0), "5");
        assert_eq!(number(38.46), "38.5");
    }
}
