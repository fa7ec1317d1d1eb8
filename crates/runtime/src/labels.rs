//! Labels that mark everything Slipway creates, and filters that find it again.
//!
//! Every container, network, volume and bootstrapped image carries
//! `io.slipway.managed=true`; callers add their own (`io.slipway.owner=ci`,
//! `io.slipway.pipeline=42`, …) so a crash can be cleaned up by label.

use std::collections::HashMap;

/// Label present on every object Slipway creates, so leftovers can be found.
pub const MANAGED: &str = "io.slipway.managed";
/// Conventional label naming the subsystem that owns an object (`ci`, `deploy`, `exec`).
pub const OWNER: &str = "io.slipway.owner";
/// Conventional label carrying a CI pipeline id.
pub const PIPELINE: &str = "io.slipway.pipeline";
/// Conventional label carrying an application name.
pub const APP: &str = "io.slipway.app";

/// Caller labels merged with `io.slipway.managed=true` (the managed label always wins).
pub fn with_managed<'a, I>(caller: I) -> HashMap<String, String>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let mut out: HashMap<String, String> = caller
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert(MANAGED.to_string(), "true".to_string());
    out
}

/// A set of label conditions, all of which must match (Docker's `label=` filter).
///
/// It always includes `io.slipway.managed=true`, so a filter can never select
/// objects that Slipway did not create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    conditions: Vec<(String, Option<String>)>,
}

impl Default for LabelFilter {
    fn default() -> Self {
        Self::managed()
    }
}

impl LabelFilter {
    /// Everything Slipway manages (only `io.slipway.managed=true`).
    pub fn managed() -> Self {
        LabelFilter {
            conditions: vec![(MANAGED.to_string(), Some("true".to_string()))],
        }
    }

    /// Also require `key=value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.conditions.push((key.into(), Some(value.into())));
        self
    }

    /// Also require that `key` is present, whatever its value.
    pub fn has(mut self, key: impl Into<String>) -> Self {
        self.conditions.push((key.into(), None));
        self
    }

    /// The conditions in Docker's filter syntax (`key=value` or `key`).
    pub fn to_docker(&self) -> Vec<String> {
        self.conditions
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect()
    }

    /// The `filters` map expected by Docker list endpoints.
    pub(crate) fn to_filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), self.to_docker())])
    }

    /// Whether a label set satisfies every condition (used to double-check engine answers).
    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        self.conditions
            .iter()
            .all(|(k, v)| match (labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_label_is_always_added_and_wins() {
        let caller = HashMap::from([
            (MANAGED.to_string(), "false".to_string()),
            (OWNER.to_string(), "ci".to_string()),
        ]);
        let merged = with_managed(&caller);
        assert_eq!(merged[MANAGED], "true");
        assert_eq!(merged[OWNER], "ci");
    }

    #[test]
    fn filter_renders_and_matches() {
        let f = LabelFilter::managed().with(OWNER, "ci").has(PIPELINE);
        assert_eq!(
            f.to_docker(),
            vec![
                "io.slipway.managed=true",
                "io.slipway.owner=ci",
                "io.slipway.pipeline"
            ]
        );
        let mut labels = with_managed(&HashMap::from([
            (OWNER.to_string(), "ci".to_string()),
            (PIPELINE.to_string(), "42".to_string()),
        ]));
        assert!(f.matches(&labels));
        labels.remove(PIPELINE);
        assert!(!f.matches(&labels));
    }
}
