//! The life of one rule's alert, Prometheus style: inactive → pending (the
//! condition holds, not yet for long enough) → firing → resolved (inactive
//! again). A pure function of the previous phase and one evaluation, so
//! repeated ticks with the same verdict change nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What one evaluation of a rule found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The condition holds; the measured value.
    Above(f64),
    /// The condition does not hold; the measured value.
    Below(f64),
    /// Nothing to judge by (no samples, too little traffic, app not deployed):
    /// a pending alert starts over, a firing one stays firing.
    NoData,
}

/// Where a rule's alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The condition does not hold.
    Inactive,
    /// The condition holds since `since`; fires once it held for the rule's `for`.
    Pending {
        /// When the condition started to hold.
        since: DateTime<Utc>,
    },
    /// An alert is open (stored as `event_id`).
    Firing {
        /// The stored alert.
        event_id: i64,
        /// When it fired.
        since: DateTime<Utc>,
    },
}

impl Phase {
    /// `inactive`, `pending` or `firing`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending { .. } => "pending",
            Phase::Firing { .. } => "firing",
        }
    }
}

/// What the evaluator must do after a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Nothing to store or send.
    None,
    /// Open an alert (then the phase becomes `Firing`) and notify.
    Fire {
        /// The value that fired it.
        value: f64,
    },
    /// Resolve the open alert and notify.
    Resolve {
        /// The value that resolved it.
        value: f64,
    },
}

/// The next phase and what to do, given the rule's `for_s`. A `Fire` keeps
/// the phase as it was: the caller moves to `Firing` once the alert is stored.
pub fn step(phase: Phase, verdict: Verdict, now: DateTime<Utc>, for_s: i64) -> (Phase, Action) {
    match (phase, verdict) {
        (Phase::Firing { .. }, Verdict::Below(v)) => {
            (Phase::Inactive, Action::Resolve { value: v })
        }
        (Phase::Firing { .. }, _) => (phase, Action::None),
        (Phase::Inactive, Verdict::Above(v)) if for_s <= 0 => (phase, Action::Fire { value: v }),
        (Phase::Inactive, Verdict::Above(_)) => (Phase::Pending { since: now }, Action::None),
        (Phase::Pending { since }, Verdict::Above(v)) => {
            if (now - since).num_milliseconds() >= for_s.saturating_mul(1000) {
                (phase, Action::Fire { value: v })
            } else {
                (phase, Action::None)
            }
        }
        (Phase::Pending { .. }, _) => (Phase::Inactive, Action::None),
        (Phase::Inactive, _) => (Phase::Inactive, Action::None),
    }
}

/// A rule's state as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    /// `inactive`, `pending` or `firing`.
    pub state: &'static str,
    /// Since when it is pending or firing.
    pub since: Option<DateTime<Utc>>,
    /// The last measured value (None: no data).
    pub value: Option<f64>,
    /// When it was last evaluated.
    pub evaluated_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn fires_at_once_without_for() {
        let (p, a) = step(Phase::Inactive, Verdict::Above(9.0), t(0), 0);
        assert_eq!(p, Phase::Inactive);
        assert_eq!(a, Action::Fire { value: 9.0 });
    }

    #[test]
    fn pends_for_the_duration_then_fires() {
        let (p, a) = step(Phase::Inactive, Verdict::Above(9.0), t(0), 30);
        assert_eq!((p, a), (Phase::Pending { since: t(0) }, Action::None));
        let (p, a) = step(p, Verdict::Above(9.0), t(29), 30);
        assert_eq!((p, a), (Phase::Pending { since: t(0) }, Action::None));
        let (_, a) = step(p, Verdict::Above(8.0), t(30), 30);
        assert_eq!(a, Action::Fire { value: 8.0 });
    }

    #[test]
    fn pending_starts_over_when_the_condition_breaks_or_data_is_missing() {
        let p = Phase::Pending { since: t(0) };
        assert_eq!(step(p, Verdict::Below(1.0), t(10), 30).0, Phase::Inactive);
        assert_eq!(step(p, Verdict::NoData, t(10), 30).0, Phase::Inactive);
    }

    #[test]
    fn firing_is_idempotent_and_resolves_only_on_a_measurement() {
        let f = Phase::Firing {
            event_id: 7,
            since: t(0),
        };
        for v in [Verdict::Above(9.0), Verdict::NoData] {
            assert_eq!(step(f, v, t(100), 0), (f, Action::None));
        }
        assert_eq!(
            step(f, Verdict::Below(0.5), t(100), 0),
            (Phase::Inactive, Action::Resolve { value: 0.5 })
        );
        // Resolved is inactive: the same verdict again does nothing.
        assert_eq!(
            step(Phase::Inactive, Verdict::Below(0.5), t(101), 0),
            (Phase::Inactive, Action::None)
        );
    }
}
