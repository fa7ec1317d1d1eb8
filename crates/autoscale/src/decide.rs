//! The scaling arithmetic, Kubernetes HPA style, as pure functions.
//!
//! 1. **Recommend**: `desired = ceil(current × measured / target)` where
//!    `measured` is the load per replica; as the measured load is the app's
//!    total divided by `current`, this is `ceil(total / target)`. A ratio
//!    `measured / target` within ±10 % of 1 keeps `current` (no flapping
//!    around the target). The result is clamped to `[min, max]`.
//! 2. **Stabilise**: every recommendation is remembered with its time. A
//!    scale-up goes to the *lowest* recommendation of the scale-up window
//!    (0 s by default: the latest, so up is immediate); a scale-down goes
//!    only to the *highest* recommendation of the scale-down window (300 s
//!    by default), so a short dip never removes replicas.
//! 3. **Bound growth**: one step at most doubles the replicas (at least +1),
//!    so a burst measured on few replicas cannot overshoot wildly.

use std::collections::VecDeque;

/// Ratios of measured to target load this close to 1 change nothing.
pub const TOLERANCE: f64 = 0.1;

/// The replica count that would meet `target` per replica for the `total`
/// load now spread over `current` replicas, clamped to `[min, max]`.
pub fn recommend(current: u32, total: f64, target: f64, min: u32, max: u32) -> u32 {
    let total = total.max(0.0);
    if current > 0 {
        let ratio = total / (f64::from(current) * target);
        if (ratio - 1.0).abs() <= TOLERANCE {
            return current.clamp(min, max);
        }
    }
    // A hair below an integer is that integer (float noise must not add a replica).
    let raw = (total / target - 1e-9).ceil().max(0.0);
    let raw = if raw > f64::from(max) {
        max
    } else {
        raw as u32
    };
    raw.clamp(min, max)
}

/// Recommendations with the time (ms, any monotonic clock) they were made,
/// oldest first, trimmed to the longest window.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(t_ms, replicas, counts for scaling up)`.
    entries: VecDeque<(i64, u32, bool)>,
}

impl History {
    /// Remembers `replicas` recommended at `now_ms` and forgets what is older
    /// than `keep_ms` before it.
    pub fn push(&mut self, now_ms: i64, replicas: u32, keep_ms: i64) {
        self.add(now_ms, replicas, true, keep_ms);
    }

    /// Remembers `replicas` as a floor for scale-downs only (the replicas
    /// found at the first look, or set by someone else): they hold for the
    /// down window but never slow a scale-up.
    pub fn hold(&mut self, now_ms: i64, replicas: u32, keep_ms: i64) {
        self.add(now_ms, replicas, false, keep_ms);
    }

    fn add(&mut self, now_ms: i64, replicas: u32, up: bool, keep_ms: i64) {
        self.entries.push_back((now_ms, replicas, up));
        while let Some(&(t, _, _)) = self.entries.front() {
            if now_ms - t > keep_ms {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    fn within(&self, now_ms: i64, window_ms: i64, up_only: bool) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .filter(move |(t, _, up)| now_ms - t <= window_ms && (*up || !up_only))
            .map(|(_, r, _)| *r)
    }

    /// How many recommendations are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The replica count to apply now: `current` raised to the lowest
/// recommendation of the up window, lowered to the highest of the down
/// window, growth bounded. Call after pushing the latest recommendation.
pub fn stabilise(
    current: u32,
    history: &History,
    now_ms: i64,
    up_window_ms: i64,
    down_window_ms: i64,
) -> u32 {
    let up = history.within(now_ms, up_window_ms, true).min();
    let down = history.within(now_ms, down_window_ms, false).max();
    let mut next = current;
    if let Some(up) = up {
        if next < up {
            next = up;
        }
    }
    if let Some(down) = down {
        if next > down {
            next = down;
        }
    }
    if next > current {
        next = next.min(current.saturating_mul(2).max(current + 1));
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommendations_follow_the_load_per_replica() {
        // 40 req/s at 5 per replica: 8, clamped to max 3.
        assert_eq!(recommend(1, 40.0, 5.0, 1, 3), 3);
        assert_eq!(recommend(1, 40.0, 5.0, 1, 10), 8);
        // No traffic: the minimum.
        assert_eq!(recommend(3, 0.0, 5.0, 1, 3), 1);
        assert_eq!(recommend(3, 0.0, 5.0, 2, 3), 2);
        // Exactly on target, and float noise, stay.
        assert_eq!(recommend(2, 10.0, 5.0, 1, 10), 2);
        assert_eq!(recommend(4, 20.000000001, 5.0, 1, 10), 4);
        // Within the 10 % band: no change either way.
        assert_eq!(recommend(2, 10.9, 5.0, 1, 10), 2);
        assert_eq!(recommend(2, 9.1, 5.0, 1, 10), 2);
        // Just outside it: change.
        assert_eq!(recommend(2, 11.5, 5.0, 1, 10), 3);
        assert_eq!(recommend(4, 14.0, 5.0, 1, 10), 3);
        // CPU: 2 replicas at 90 % each against 60 %: ceil(180 / 60) = 3.
        assert_eq!(recommend(2, 180.0, 60.0, 1, 10), 3);
        // From zero replicas, the load decides (never below min).
        assert_eq!(recommend(0, 12.0, 5.0, 1, 10), 3);
        assert_eq!(recommend(0, 0.0, 5.0, 1, 10), 1);
        // Absurd loads do not overflow.
        assert_eq!(recommend(1, 1e300, 1e-3, 1, 50), 50);
    }

    #[test]
    fn up_is_immediate_and_bounded_down_waits_for_the_window() {
        let (up, down) = (0, 3_000);
        let mut h = History::default();
        // Load arrives: 1 → 2 (at most double) → 3.
        h.push(0, 3, 10_000);
        assert_eq!(stabilise(1, &h, 0, up, down), 2);
        h.push(1_000, 3, 10_000);
        assert_eq!(stabilise(2, &h, 1_000, up, down), 3);
        // Load stops: the 3 of t = 1 s holds until it leaves the 3 s window.
        for t in [2_000, 3_000, 4_000] {
            h.push(t, 1, 10_000);
            assert_eq!(stabilise(3, &h, t, up, down), 3, "t = {t}");
        }
        h.push(4_001, 1, 10_000);
        assert_eq!(stabilise(3, &h, 4_001, up, down), 1);
        // A dip inside the window is ignored when load comes back.
        h.push(5_000, 3, 10_000);
        h.push(6_000, 1, 10_000);
        assert_eq!(stabilise(3, &h, 6_000, up, down), 3);
    }

    #[test]
    fn an_up_window_waits_for_sustained_load() {
        let mut h = History::default();
        h.push(0, 1, 10_000);
        h.push(1_000, 4, 10_000);
        // The lowest of the last 2 s is 1: stay.
        assert_eq!(stabilise(1, &h, 1_000, 2_000, 0), 1);
        h.push(2_000, 4, 10_000);
        h.push(3_001, 4, 10_000);
        assert_eq!(stabilise(1, &h, 3_001, 2_000, 0), 2);
    }

    #[test]
    fn held_replicas_slow_scale_downs_only() {
        let mut h = History::default();
        // Found at 3 with no load: the 3 holds for the 5 s down window…
        h.hold(0, 3, 5_000);
        h.push(0, 1, 5_000);
        assert_eq!(stabilise(3, &h, 0, 0, 5_000), 3);
        h.push(5_001, 1, 5_000);
        assert_eq!(stabilise(3, &h, 5_001, 0, 5_000), 1);
        // …but a held 1 never keeps a scale-up back.
        let mut h = History::default();
        h.hold(0, 1, 5_000);
        h.push(0, 3, 5_000);
        assert_eq!(stabilise(1, &h, 0, 0, 5_000), 2);
    }

    #[test]
    fn history_forgets_what_no_window_needs() {
        let mut h = History::default();
        for t in 0..10 {
            h.push(t * 1_000, 1, 3_000);
        }
        assert_eq!(h.len(), 4);
        assert!(!h.is_empty());
    }
}
