//! The rule model: what a rule watches, its bounds and how people read it.
//!
//! Every rule fires when its measured value is *above* its threshold:
//! missing replicas for `replica_down` (threshold 0: fewer healthy replicas
//! than desired), the 5xx share in % for `error_rate`, p99 latency in ms for
//! `p99`, CPU in % (100 = one core) for `cpu`.

use serde::{Deserialize, Serialize};
use slipway_store::{AlertRuleRow, AlertRuleSettings};

/// Rules one app may have.
pub const MAX_RULES_PER_APP: usize = 50;
/// Longest `for` duration: a day.
pub const MAX_FOR_S: i64 = 86_400;
/// Longest window: an hour (the ring keeps a day; longer windows blur alerts).
pub const MAX_WINDOW_S: i64 = 3_600;
/// Default window of the metric rules.
pub const DEFAULT_WINDOW_S: i64 = 60;
/// Default least number of requests for an error-rate or p99 verdict.
pub const DEFAULT_MIN_REQUESTS: i64 = 10;
/// Largest `min_requests`.
pub const MAX_MIN_REQUESTS: i64 = 1_000_000;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Fewer healthy replicas than desired (value: replicas missing).
    ReplicaDown,
    /// Share of 5xx answers over the window, in % (value: percent).
    ErrorRate,
    /// p99 latency through the proxy over the window (value: ms).
    P99,
    /// CPU of the app's replicas over the window (value: %, 100 = one core).
    Cpu,
}

impl AlertKind {
    /// Every kind, as listed in messages.
    pub const ALL: [AlertKind; 4] = [
        AlertKind::ReplicaDown,
        AlertKind::ErrorRate,
        AlertKind::P99,
        AlertKind::Cpu,
    ];

    /// Parses `replica_down`, `error_rate`, `p99`, `cpu` (dashes allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == t)
            .ok_or_else(|| {
                format!(
                    "unknown alert kind {text:?}: use one of replica_down, error_rate, p99, cpu"
                )
            })
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ReplicaDown => "replica_down",
            AlertKind::ErrorRate => "error_rate",
            AlertKind::P99 => "p99",
            AlertKind::Cpu => "cpu",
        }
    }

    /// The unit of the value and the threshold.
    pub fn unit(self) -> &'static str {
        match self {
            AlertKind::ReplicaDown => "replicas",
            AlertKind::ErrorRate | AlertKind::Cpu => "%",
            AlertKind::P99 => "ms",
        }
    }

    /// Whether the value is computed over a window of samples.
    pub fn has_window(self) -> bool {
        self != AlertKind::ReplicaDown
    }

    /// Whether too little traffic leaves the rule without a verdict.
    pub fn needs_traffic(self) -> bool {
        matches!(self, AlertKind::ErrorRate | AlertKind::P99)
    }

    /// Checks a threshold; the message is shown to users.
    fn check_threshold(self, t: f64) -> Result<(), String> {
        let ok = t.is_finite()
            && match self {
                AlertKind::ReplicaDown => {
                    t >= 0.0 && t < f64::from(slipway_domain::app::MAX_REPLICAS) && t.fract() == 0.0
                }
                AlertKind::ErrorRate => (0.0..100.0).contains(&t),
                AlertKind::P99 => t > 0.0 && t <= 60_000.0,
                AlertKind::Cpu => t > 0.0 && t <= 6_400.0,
            };
        if ok {
            return Ok(());
        }
        Err(match self {
            AlertKind::ReplicaDown => format!(
                "threshold of a replica_down rule is the number of missing replicas tolerated: a whole number from 0 to {} (got {t})",
                slipway_domain::app::MAX_REPLICAS - 1
            ),
            AlertKind::ErrorRate => format!(
                "threshold of an error_rate rule is a percentage of 5xx answers: at least 0 and below 100 (got {t})"
            ),
            AlertKind::P99 => format!(
                "threshold of a p99 rule is a latency in milliseconds: above 0 and at most 60000 (got {t})"
            ),
            AlertKind::Cpu => format!(
                "threshold of a cpu rule is a percentage of one core: above 0 and at most 6400 (got {t})"
            ),
        })
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule as users give it: every field optional, so one shape serves
/// creation (missing fields take defaults) and changes (missing fields stay).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// `replica_down`, `error_rate`, `p99` or `cpu`.
    pub kind: Option<String>,
    /// Fires when the value is above it (required except for replica_down).
    pub threshold: Option<f64>,
    /// Seconds the condition must hold before the alert fires (default 0).
    pub for_s: Option<i64>,
    /// Seconds of samples the value is computed over (default 60).
    pub window_s: Option<i64>,
    /// Fewer requests in the window: no verdict (default 10).
    pub min_requests: Option<i64>,
    /// Whether the rule is evaluated (default true).
    pub enabled: Option<bool>,
}

impl RuleInput {
    /// The settings of a new rule, validated.
    pub fn create(&self) -> Result<AlertRuleSettings, String> {
        let kind = AlertKind::parse(
            self.kind
                .as_deref()
                .ok_or("kind is required: one of replica_down, error_rate, p99, cpu")?,
        )?;
        self.merge(kind, None)
    }

    /// `rule`'s settings with these changes applied, validated.
    pub fn apply(&self, rule: &AlertRuleRow) -> Result<AlertRuleSettings, String> {
        let old = AlertKind::parse(&rule.kind)?;
        let kind = match &self.kind {
            Some(k) => AlertKind::parse(k)?,
            None => old,
        };
        if kind != old && self.threshold.is_none() && kind != AlertKind::ReplicaDown {
            return Err(format!(
                "changing the kind to {kind} needs a threshold in {}",
                kind.unit()
            ));
        }
        // Another kind starts from its own defaults.
        self.merge(kind, (kind == old).then_some(rule))
    }

    fn merge(
        &self,
        kind: AlertKind,
        base: Option<&AlertRuleRow>,
    ) -> Result<AlertRuleSettings, String> {
        let threshold = match (self.threshold, base) {
            (Some(t), _) => t,
            (None, Some(b)) => b.threshold,
            (None, None) if kind == AlertKind::ReplicaDown => 0.0,
            (None, None) => {
                return Err(format!(
                    "threshold is required for a {kind} rule (in {})",
                    kind.unit()
                ))
            }
        };
        kind.check_threshold(threshold)?;
        let for_s = self.for_s.or(base.map(|b| b.for_s)).unwrap_or(0);
        if !(0..=MAX_FOR_S).contains(&for_s) {
            return Err(format!(
                "for_s must be between 0 and {MAX_FOR_S} seconds (24h), got {for_s}"
            ));
        }
        let window_s = if kind.has_window() {
            let w = self
                .window_s
                .or(base.map(|b| b.window_s))
                .unwrap_or(DEFAULT_WINDOW_S);
            if !(1..=MAX_WINDOW_S).contains(&w) {
                return Err(format!(
                    "window_s must be between 1 and {MAX_WINDOW_S} seconds (1h), got {w}"
                ));
            }
            w
        } else {
            if self.window_s.is_some_and(|w| w != 0) {
                return Err("window_s does not apply to replica_down rules (they look at the replicas now); use for_s".into());
            }
            0
        };
        let min_requests = if kind.needs_traffic() {
            let m = self
                .min_requests
                .or(base.map(|b| b.min_requests))
                .unwrap_or(DEFAULT_MIN_REQUESTS);
            if !(1..=MAX_MIN_REQUESTS).contains(&m) {
                return Err(format!(
                    "min_requests must be between 1 and {MAX_MIN_REQUESTS}, got {m}"
                ));
            }
            m
        } else {
            if self.min_requests.is_some_and(|m| m != 0) {
                return Err(format!(
                    "min_requests applies only to error_rate and p99 rules, not {kind}"
                ));
            }
            0
        };
        Ok(AlertRuleSettings {
            kind: kind.as_str().to_string(),
            threshold,
            for_s,
            window_s,
            min_requests,
            enabled: self.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        })
    }
}

/// `90` → `1m30s`, `3600` → `1h`, `0` → `0s`.
pub fn fmt_duration(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A number without a useless `.0`.
pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{:.2}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The rule as people read it, e.g. `error rate above 5% over 1m for 30s`.
pub fn summary(rule: &AlertRuleRow) -> String {
    let Ok(kind) = AlertKind::parse(&rule.kind) else {
        return rule.kind.clone();
    };
    let t = fmt_number(rule.threshold);
    let window = fmt_duration(rule.window_s);
    let mut s = match kind {
        AlertKind::ReplicaDown if rule.threshold == 0.0 => {
            "fewer healthy replicas than desired".to_string()
        }
        AlertKind::ReplicaDown => format!("more than {t} replicas down"),
        AlertKind::ErrorRate => format!("error rate above {t}% over {window}"),
        AlertKind::P99 => format!("p99 latency above {t} ms over {window}"),
        AlertKind::Cpu => format!("CPU above {t}% over {window}"),
    };
    if rule.for_s > 0 {
        s.push_str(&format!(" for {}", fmt_duration(rule.for_s)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: AlertRuleSettings) -> AlertRuleRow {
        AlertRuleRow {
            id: 1,
            app_id: 1,
            kind: s.kind,
            threshold: s.threshold,
            for_s: s.for_s,
            window_s: s.window_s,
            min_requests: s.min_requests,
            enabled: s.enabled,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn input(kind: &str, threshold: Option<f64>) -> RuleInput {
        RuleInput {
            kind: Some(kind.into()),
            threshold,
            ..Default::default()
        }
    }

    #[test]
    fn kinds_parse_with_dashes_and_refuse_unknown_ones() {
        assert_eq!(AlertKind::parse("error-rate"), Ok(AlertKind::ErrorRate));
        assert_eq!(AlertKind::parse("replica_down"), Ok(AlertKind::ReplicaDown));
        assert_eq!(AlertKind::parse("P99"), Ok(AlertKind::P99));
        let e = AlertKind::parse("disk").unwrap_err();
        assert!(
            e.contains("unknown alert kind") && e.contains("error_rate"),
            "{e}"
        );
    }

    #[test]
    fn defaults_per_kind() {
        let s = input("error_rate", Some(5.0)).create().unwrap();
        assert_eq!((s.window_s, s.min_requests, s.for_s), (60, 10, 0));
        assert!(s.enabled);
        let s = input("replica_down", None).create().unwrap();
        assert_eq!((s.threshold, s.window_s, s.min_requests), (0.0, 0, 0));
        let s = input("cpu", Some(80.0)).create().unwrap();
        assert_eq!((s.window_s, s.min_requests), (60, 0));
    }

    #[test]
    fn bounds_are_checked_with_readable_messages() {
        for (kind, t) in [
            ("error_rate", -1.0),
            ("error_rate", 100.0),
            ("error_rate", f64::NAN),
            ("p99", 0.0),
            ("p99", 60_001.0),
            ("cpu", -5.0),
            ("replica_down", 1.5),
            ("replica_down", 50.0),
        ] {
            let e = input(kind, Some(t)).create().unwrap_err();
            assert!(e.contains("threshold"), "{kind} {t}: {e}");
        }
        assert!(input("p99", None)
            .create()
            .unwrap_err()
            .contains("required"));
        assert!(RuleInput::default()
            .create()
            .unwrap_err()
            .contains("kind is required"));
        let mut i = input("error_rate", Some(5.0));
        i.for_s = Some(-1);
        assert!(i.create().unwrap_err().contains("for_s"));
        i.for_s = Some(86_401);
        assert!(i.create().is_err());
        i.for_s = Some(0);
        i.window_s = Some(0);
        assert!(i.create().unwrap_err().contains("window_s"));
        i.window_s = Some(3_601);
        assert!(i.create().is_err());
        i.window_s = Some(30);
        i.min_requests = Some(0);
        assert!(i.create().unwrap_err().contains("min_requests"));
        let mut i = input("replica_down", None);
        i.window_s = Some(60);
        assert!(i.create().unwrap_err().contains("does not apply"));
        let mut i = input("cpu", Some(50.0));
        i.min_requests = Some(5);
        assert!(i.create().unwrap_err().contains("only to error_rate"));
    }

    #[test]
    fn changes_keep_what_they_do_not_name() {
        let mut i = input("error_rate", Some(5.0));
        i.window_s = Some(120);
        i.for_s = Some(30);
        let rule = row(i.create().unwrap());
        let patch = RuleInput {
            threshold: Some(7.5),
            enabled: Some(false),
            ..Default::default()
        };
        let s = patch.apply(&rule).unwrap();
        assert_eq!(
            (s.threshold, s.window_s, s.for_s, s.enabled),
            (7.5, 120, 30, false)
        );
        // Another kind needs its own threshold and starts from its defaults.
        let to_p99 = RuleInput {
            kind: Some("p99".into()),
            ..Default::default()
        };
        assert!(to_p99
            .apply(&rule)
            .unwrap_err()
            .contains("needs a threshold"));
        let to_down = RuleInput {
            kind: Some("replica_down".into()),
            ..Default::default()
        };
        let s = to_down.apply(&rule).unwrap();
        assert_eq!((s.threshold, s.window_s, s.min_requests), (0.0, 0, 0));
    }

    #[test]
    fn summaries_read_well() {
        let mut i = input("error_rate", Some(5.0));
        i.for_s = Some(30);
        assert_eq!(
            summary(&row(i.create().unwrap())),
            "error rate above 5% over 1m for 30s"
        );
        assert_eq!(
            summary(&row(input("replica_down", None).create().unwrap())),
            "fewer healthy replicas than desired"
        );
        assert_eq!(
            summary(&row(input("p99", Some(250.5)).create().unwrap())),
            "p99 latency above 250.5 ms over 1m"
        );
        assert_eq!(fmt_duration(5400), "1h30m");
        assert_eq!(fmt_duration(61), "1m1s");
    }
}
