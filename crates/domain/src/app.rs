//! Apps and releases: what the deployer is asked to run.
//!
//! An [`AppSpec`] is the operator's desired state for an app (port, replica
//! count, health check, environment…); a [`ReleaseRecord`] freezes one image
//! together with the spec it runs with, so a rollback restores both.

use crate::names::NameError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Most replicas one app may ask for.
pub const MAX_REPLICAS: u32 = 50;
/// Most environment variables (config + secrets) of one app.
pub const MAX_ENV: usize = 200;
/// Largest value of one environment variable, in bytes.
pub const MAX_ENV_VALUE: usize = 32 * 1024;
/// Most domains one app may answer.
pub const MAX_DOMAINS: usize = 20;

/// An app name: 1–40 lowercase letters, digits and single dashes, starting
/// with a letter — safe as a DNS label, a container name part and an image name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    /// Checks `raw` and wraps it; see the type's doc for the rule.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let starts_with_letter = raw.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        if raw.is_empty()
            || raw.len() > 40
            || !ok_chars
            || !starts_with_letter
            || raw.ends_with('-')
            || raw.contains("--")
        {
            return Err(NameError(format!(
                "invalid app name {raw:?}: use 1-40 lowercase letters, digits or single dashes, starting with a letter and not ending with a dash"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AppName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<AppName> for String {
    fn from(n: AppName) -> String {
        n.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the deployer and the proxy decide that a replica can take traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSpec {
    /// Path requested with `GET`; 2xx and 3xx answers are healthy.
    pub path: String,
    /// Time between checks, in milliseconds.
    pub interval_ms: u64,
    /// Time allowed for one check, in milliseconds.
    pub timeout_ms: u64,
    /// Consecutive successes before a replica gets traffic.
    pub rise: u32,
    /// Consecutive failures before a replica loses traffic.
    pub fall: u32,
    /// How long a new replica may take to become healthy before the rollout
    /// is abandoned, in milliseconds.
    pub start_timeout_ms: u64,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            path: "/".into(),
            interval_ms: 1000,
            timeout_ms: 1000,
            rise: 1,
            fall: 3,
            start_timeout_ms: 60_000,
        }
    }
}

impl HealthSpec {
    /// Checks bounds; the message is shown to users.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.len() > 1024 || self.path.contains(' ') {
            return Err(format!(
                "health.path {:?} must start with / and have no spaces",
                self.path
            ));
        }
        if !(100..=60_000).contains(&self.interval_ms) {
            return Err("health.interval_ms must be between 100 and 60000".into());
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("health.timeout_ms must be between 100 and 60000".into());
        }
        if !(1..=10).contains(&self.rise) || !(1..=10).contains(&self.fall) {
            return Err("health.rise and health.fall must be between 1 and 10".into());
        }
        if !(1_000..=3_600_000).contains(&self.start_timeout_ms) {
            return Err("health.start_timeout_ms must be between 1000 and 3600000".into());
        }
        Ok(())
    }
}

/// The desired state of an app, as set by its operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSpec {
    /// The branch whose pushes are built and deployed.
    pub branch: String,
    /// Dockerfile path in the repository.
    pub dockerfile: String,
    /// Port the app listens on inside its container.
    pub port: u16,
    /// Replicas wanted.
    pub replicas: u32,
    /// Health check.
    pub health: HealthSpec,
    /// Host names the proxy routes to this app (empty: `<app>.<apps domain>`).
    pub domains: Vec<String>,
    /// Plain configuration passed as environment variables.
    pub env: BTreeMap<String, String>,
    /// Memory limit per replica, in MiB.
    pub memory_mb: Option<u32>,
    /// CPU limit per replica, in cores.
    pub cpus: Option<f64>,
    /// Extra replicas a rolling update may start above `replicas`.
    pub max_surge: u32,
    /// Replicas a rolling update may take away below `replicas`.
    pub max_unavailable: u32,
    /// Sticky sessions: the proxy sends a client back to the replica that
    /// served it first (a cookie), while that replica is healthy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
    /// Compose file path in the repository (`None`: the first of
    /// `compose.yaml`, `compose.yml`, `docker-compose.yaml`,
    /// `docker-compose.yml` found, else the Dockerfile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose: Option<String>,
    /// The stack a release runs (set on releases built from a Compose file
    /// only; an app's own settings never carry one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<crate::stack::StackSpec>,
    /// Stacks: replicas per service set with `slipway scale APP SERVICE=N`;
    /// they win over the Compose file's `deploy.replicas`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_replicas: BTreeMap<String, u32>,
}

impl Default for AppSpec {
    fn default() -> Self {
        AppSpec {
            branch: "main".into(),
            dockerfile: "Dockerfile".into(),
            port: 8080,
            replicas: 1,
            health: HealthSpec::default(),
            domains: Vec::new(),
            env: BTreeMap::new(),
            memory_mb: None,
            cpus: None,
            max_surge: 1,
            max_unavailable: 0,
            sticky: false,
            compose: None,
            stack: None,
            service_replicas: BTreeMap::new(),
        }
    }
}

/// Refuses a replica count over [`MAX_REPLICAS`] (the message is shown
/// to users as is).
pub fn check_replicas(replicas: u32) -> Result<(), String> {
    if replicas > MAX_REPLICAS {
        return Err(format!("replicas must be between 0 and {MAX_REPLICAS}"));
    }
    Ok(())
}

/// Whether `path` is a relative path inside a repository (no `..`, no
/// empty or absolute parts, no control characters).
pub fn valid_repo_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && !path.starts_with('/')
        && !path.split('/').any(|s| s == ".." || s.is_empty())
        && !path.chars().any(|c| c.is_control())
}

/// Whether `key` is a usable environment variable name.
pub fn valid_env_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.as_bytes()[0].is_ascii_digit()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `host` is a plausible host name (letters, digits, dashes, dots;
/// `*.` prefix allowed for wildcards).
pub fn valid_domain(host: &str) -> bool {
    let h = host.strip_prefix("*.").unwrap_or(host);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl AppSpec {
    /// The memory and CPU this app asks for per replica (`None` = the server's default).
    pub fn resources(&self) -> crate::Resources {
        crate::Resources {
            memory_bytes: self.memory_mb.map(|mb| i64::from(mb) << 20),
            nano_cpus: self.cpus.map(|c| (c * 1e9).round() as i64),
        }
    }

    /// Checks every field; the message is shown to users as is.
    pub fn validate(&self) -> Result<(), String> {
        if self.branch.is_empty()
            || self.branch.len() > 200
            || self.branch.starts_with('-')
            || self.branch.contains("..")
            || self
                .branch
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("invalid branch {:?}", self.branch));
        }
        if let Some(path) = &self.compose {
            if !valid_repo_path(path) {
                return Err(format!(
                    "invalid compose path {path:?}: give a relative path inside the repository"
                ));
            }
        }
        let df = &self.dockerfile;
        if df.is_empty()
            || df.len() > 255
            || df.starts_with('/')
            || df.split('/').any(|s| s == ".." || s.is_empty())
            || df.chars().any(|c| c.is_control())
        {
            return Err(format!(
                "invalid dockerfile path {df:?}: give a relative path inside the repository"
            ));
        }
        if self.port == 0 {
            return Err("port must be between 1 and 65535".into());
        }
        check_replicas(self.replicas)?;
        if self.service_replicas.len() > crate::stack::MAX_SERVICES {
            return Err(format!(
                "at most {} per-service replica counts",
                crate::stack::MAX_SERVICES
            ));
        }
        for (service, n) in &self.service_replicas {
            if !crate::stack::valid_service_name(service) {
                return Err(format!("invalid service name {service:?}"));
            }
            if *n > MAX_REPLICAS {
                return Err(format!(
                    "replicas of {service} must be between 0 and {MAX_REPLICAS}"
                ));
            }
        }
        self.health.validate()?;
        if self.domains.len() > MAX_DOMAINS {
            return Err(format!("at most {MAX_DOMAINS} domains"));
        }
        for d in &self.domains {
            if !valid_domain(d) {
                return Err(format!(
                    "invalid domain {d:?}: use lowercase host names like app.example.com"
                ));
            }
        }
        if self.env.len() > MAX_ENV {
            return Err(format!("at most {MAX_ENV} environment variables"));
        }
        for (k, v) in &self.env {
            if !valid_env_key(k) {
                return Err(format!(
                    "invalid variable name {k:?}: use letters, digits and _, not starting with a digit"
                ));
            }
            if v.len() > MAX_ENV_VALUE || v.contains('\0') {
                return Err(format!(
                    "value of {k} is too long or contains a NUL byte (at most {MAX_ENV_VALUE} bytes)"
                ));
            }
        }
        if let Some(m) = self.memory_mb {
            if !(8..=65_536).contains(&m) {
                return Err("memory_mb must be between 8 and 65536".into());
            }
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && (0.01..=64.0).contains(&c)) {
                return Err("cpus must be between 0.01 and 64".into());
            }
        }
        if self.max_surge == 0 && self.max_unavailable == 0 {
            return Err("max_surge and max_unavailable cannot both be 0".into());
        }
        if self.max_surge > MAX_REPLICAS || self.max_unavailable > MAX_REPLICAS {
            return Err(format!(
                "max_surge and max_unavailable must be at most {MAX_REPLICAS}"
            ));
        }
        Ok(())
    }
}

/// A stored app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Internal id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Repository whose pushes deploy the app.
    pub repo_id: i64,
    /// User who created it.
    pub owner_id: i64,
    /// Desired state.
    pub spec: AppSpec,
    /// Number of the release that should run (`None` before the first deploy).
    pub release: Option<i64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change of the spec or release.
    pub updated_at: DateTime<Utc>,
}

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Recorded; the deployer has not started it.
    Pending,
    /// Replicas are being started and checked.
    Deploying,
    /// Serving traffic.
    Active,
    /// Its replicas never became healthy; the previous release kept serving.
    Failed,
    /// Replaced by a later release.
    Superseded,
}

impl ReleaseStatus {
    /// Text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Deploying => "deploying",
            ReleaseStatus::Active => "active",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::Superseded => "superseded",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ReleaseStatus::Pending,
            "deploying" => ReleaseStatus::Deploying,
            "active" => ReleaseStatus::Active,
            "failed" => ReleaseStatus::Failed,
            "superseded" => ReleaseStatus::Superseded,
            _ => return None,
        })
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One numbered release: an image and the spec it runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Internal id.
    pub id: i64,
    /// App id.
    pub app_id: i64,
    /// 1, 2, 3… per app.
    pub number: i64,
    /// Local image reference the replicas run.
    pub image: String,
    /// Commit the image was built from.
    pub sha: String,
    /// Pipeline that built it, if any.
    pub pipeline_id: Option<i64>,
    /// Spec frozen at release time (secrets are not in it).
    pub spec: AppSpec,
    /// Why it exists: "deploy 1a2b3c4", "config: set FOO", "rollback to v2".
    pub description: String,
    /// Who caused it.
    pub created_by: String,
    /// Where it is in its life.
    pub status: ReleaseStatus,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for ok in ["web", "a", "my-app-2"] {
            assert!(AppName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "-x",
            "x-",
            "a--b",
            "1app",
            "a_b",
            "a.b",
            "../x",
            &"a".repeat(41),
        ] {
            assert!(AppName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_replicas_are_kept_only_when_set_and_validated() {
        let plain = serde_json::to_value(AppSpec::default()).unwrap();
        assert!(plain.get("service_replicas").is_none(), "{plain}");
        let old: AppSpec = serde_json::from_value(plain).unwrap();
        assert!(old.service_replicas.is_empty());
        let mut spec = AppSpec::default();
        spec.service_replicas.insert("web".into(), 3);
        let back: AppSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(back.service_replicas["web"], 3);
        assert!(spec.validate().is_ok());
        spec.service_replicas.insert("web".into(), MAX_REPLICAS + 1);
        assert!(spec.validate().unwrap_err().contains("replicas of web"));
        spec.service_replicas.clear();
        spec.service_replicas.insert("Bad Name".into(), 1);
        assert!(spec
            .validate()
            .unwrap_err()
            .contains("invalid service name"));
    }

    #[test]
    fn spec_validation() {
        assert!(AppSpec::default().validate().is_ok());
        let bad = |f: fn(&mut AppSpec)| {
            let mut s = AppSpec::default();
            f(&mut s);
            s.validate().is_err()
        };
        assert!(bad(|s| s.port = 0));
        assert!(bad(|s| s.replicas = 51));
        assert!(bad(|s| s.dockerfile = "../Dockerfile".into()));
        assert!(bad(|s| s.dockerfile = "/etc/passwd".into()));
        assert!(bad(|s| s.health.path = "nope".into()));
        assert!(bad(|s| s.domains = vec!["Bad Host".into()]));
        assert!(bad(|s| {
            s.env.insert("1X".into(), "v".into());
        }));
        assert!(bad(|s| s.cpus = Some(f64::NAN)));
        assert!(bad(|s| {
            s.max_surge = 0;
            s.max_unavailable = 0
        }));
        assert!(valid_domain("*.apps.example.com"));
        assert!(valid_env_key("DATABASE_URL"));
    }
}
