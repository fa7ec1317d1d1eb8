//! Server configuration: defaults that work with no file at all, overridden by
//! an optional TOML file, then by `SLIPWAY_*` environment variables.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `slipway server` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (`SLIPWAY_LISTEN`). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the database, repositories and logs live (`SLIPWAY_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The git program used for hosting (`SLIPWAY_GIT_BIN`).
    pub git_bin: PathBuf,
    /// Largest git push accepted, in bytes (`SLIPWAY_MAX_PUSH_BYTES`).
    pub max_push_bytes: u64,
    /// Largest JSON request body accepted by the API, in bytes.
    pub max_api_body_bytes: usize,
    /// CI pipelines run at the same time (`SLIPWAY_CI_CONCURRENCY`).
    pub ci_concurrency: usize,
    /// Code execution jobs run at once (`SLIPWAY_EXEC_WORKERS`).
    pub exec_workers: usize,
    /// Code execution jobs of one user run at once
    /// (`SLIPWAY_EXEC_MAX_RUNNING_PER_USER`; default half the workers,
    /// rounded up; at most `exec_workers`). Workers beyond it stay free for
    /// other users even when only one user has jobs waiting.
    pub exec_max_running_per_user: Option<usize>,
    /// Pending code execution jobs before submissions get 429 (`SLIPWAY_EXEC_MAX_PENDING`).
    pub exec_max_pending: i64,
    /// Pending jobs of one user before their submissions get 429.
    pub exec_max_pending_per_user: i64,
    /// Submissions one user may make per minute.
    pub exec_submissions_per_minute: usize,
    /// Largest run wall time a job may ask for, in milliseconds.
    pub exec_max_run_timeout_ms: u64,
    /// Largest memory limit a job may ask for, in bytes.
    pub exec_max_memory_bytes: i64,
    /// Memory limit of a job that asks for none, in bytes
    /// (`SLIPWAY_EXEC_MEMORY_BYTES`, 256 MiB; at most `exec_max_memory_bytes`).
    pub exec_memory_bytes: i64,
    /// CPUs of each sandbox (`SLIPWAY_EXEC_CPUS`, 1; fractions allowed).
    pub exec_cpus: f64,
    /// Processes and threads of each sandbox (`SLIPWAY_EXEC_PIDS`, 64; at least 16).
    pub exec_pids: i64,
    /// Warm sandboxes kept per language once used (`SLIPWAY_EXEC_POOL_SIZE`; 0 = no pool).
    pub exec_pool_size: usize,
    /// Per-language overrides of `exec_pool_size` (TOML table `[exec_pool_sizes]`, e.g. `python = 4`).
    pub exec_pool_sizes: std::collections::BTreeMap<String, usize>,
    /// Warm sandboxes across all languages (`SLIPWAY_EXEC_POOL_MAX_TOTAL`).
    pub exec_pool_max_total: usize,
    /// Seconds an unused warm sandbox is kept before it is destroyed.
    pub exec_pool_idle_secs: u64,
    /// Serve `GET /metrics` without an admin token (`SLIPWAY_METRICS_PUBLIC`).
    pub metrics_public: bool,
    /// Milliseconds between monitoring samples (`SLIPWAY_METRICS_INTERVAL_MS`, 10 s by default).
    pub metrics_interval_ms: u64,
    /// Base URL people reach this server at, for links in alert notifications
    /// (`SLIPWAY_PUBLIC_URL`; default `http://<listen address>`).
    pub public_url: Option<String>,
    /// Address of the built-in proxy that serves the apps (`SLIPWAY_PROXY_LISTEN`).
    pub proxy_listen: SocketAddr,
    /// Address of the proxy's HTTPS listener (`SLIPWAY_PROXY_TLS_LISTEN`; none by default).
    pub proxy_tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for HTTPS (a self-signed one is made when absent).
    pub proxy_tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    pub proxy_tls_key: Option<PathBuf>,
    /// Apps without domains answer `<app>.<apps_domain>` (`SLIPWAY_APPS_DOMAIN`).
    pub apps_domain: String,
    /// Releases whose images are kept per app (`SLIPWAY_RELEASES_KEPT`).
    pub releases_kept: usize,
    /// An app's log file is rotated before it grows past this many bytes
    /// (`SLIPWAY_APP_LOG_MAX_BYTES`, 8 MiB; at least 1 KiB).
    pub app_log_max_bytes: u64,
    /// Log files kept per app, the active one included (`SLIPWAY_APP_LOG_FILES`, 5):
    /// an app's logs never take more than `app_log_files × app_log_max_bytes`.
    pub app_log_files: usize,
    /// Images CI steps, services and Dockerfiles may use besides Slipway's base
    /// images and the registry's (`SLIPWAY_CI_ALLOWED_IMAGES`, comma-separated
    /// glob patterns such as `alpine`, `postgres:16*`, `ghcr.io/acme/*`).
    #[serde(deserialize_with = "crate::cluster::endpoints_list")]
    pub ci_allowed_images: Vec<String>,
    /// Memory of a CI step, service or image build that asks for none
    /// (`SLIPWAY_CI_STEP_MEMORY`, e.g. `2g`).
    pub ci_step_memory: String,
    /// Most memory a step may ask for (`SLIPWAY_CI_STEP_MAX_MEMORY`).
    pub ci_step_max_memory: String,
    /// CPUs of a step that asks for none (`SLIPWAY_CI_STEP_CPUS`).
    pub ci_step_cpus: f64,
    /// Most CPUs a step may ask for (`SLIPWAY_CI_STEP_MAX_CPUS`).
    pub ci_step_max_cpus: f64,
    /// Processes one CI container may run (`SLIPWAY_CI_STEP_PIDS`).
    pub ci_step_pids: i64,
    /// Memory of an app replica whose app sets none (`SLIPWAY_APP_MEMORY`).
    pub app_memory: String,
    /// Most memory an app may set per replica (`SLIPWAY_APP_MAX_MEMORY`).
    pub app_max_memory: String,
    /// CPUs of a replica whose app sets none (`SLIPWAY_APP_CPUS`).
    pub app_cpus: f64,
    /// Most CPUs an app may set per replica (`SLIPWAY_APP_MAX_CPUS`).
    pub app_max_cpus: f64,
    /// IPv4 range the networks of pipelines and apps take their subnets
    /// from, one /25 each (`SLIPWAY_NETWORK_POOL`; must not overlap the
    /// host's own networks).
    pub network_pool: String,
    /// Cluster mode: client URLs of the etcd members holding the cluster state
    /// (`SLIPWAY_CLUSTER_ETCD_ENDPOINTS`, comma-separated). Empty (the default)
    /// is single-node mode: nothing of the cluster runs.
    #[serde(deserialize_with = "crate::cluster::endpoints_list")]
    pub cluster_etcd_endpoints: Vec<String>,
    /// This server's id among the cluster's servers (`SLIPWAY_CLUSTER_NODE_ID`;
    /// default: generated once and kept in `<data_dir>/cluster-node-id`).
    pub cluster_node_id: Option<String>,
    /// Lease TTL of servers and node agents, in milliseconds: how long a silent
    /// one keeps its place (`SLIPWAY_CLUSTER_LEASE_TTL_MS`; etcd counts whole seconds).
    pub cluster_lease_ttl_ms: u64,
    /// Key prefix of the cluster's state in etcd (`SLIPWAY_CLUSTER_PREFIX`).
    pub cluster_prefix: String,
    /// Days a login token (`POST /auth/login`, `slipway login`) stays valid
    /// after its last use (`SLIPWAY_LOGIN_TOKEN_TTL_DAYS`, 30; sliding, the
    /// new expiry written at most once an hour). 0: login tokens never expire.
    pub login_token_ttl_days: u32,
    /// Private, loopback or other special addresses that webhooks (CI and
    /// alerts) may reach anyway (`SLIPWAY_WEBHOOK_ALLOW_LIST`, comma-separated):
    /// networks (`10.0.0.0/8`), addresses (`127.0.0.1`) or host names. Empty
    /// by default: webhooks reach public addresses only.
    #[serde(deserialize_with = "crate::cluster::endpoints_list")]
    pub webhook_allow_list: Vec<String>,
    /// Image registry storage each user may use, in bytes
    /// (`SLIPWAY_REGISTRY_QUOTA_BYTES`, 10 GiB; 0 = unlimited): blobs and
    /// manifests of their repositories plus uploads in progress. Past it a
    /// push gets 413 (`DENIED`).
    pub registry_quota_bytes: u64,
    /// Largest archive `slipway volume restore` accepts, in bytes
    /// (`SLIPWAY_VOLUME_RESTORE_MAX_BYTES`, 2 GiB); it is stored under the
    /// data directory while it is checked and unpacked.
    pub volume_restore_max_bytes: u64,
    /// Per-user overrides of `registry_quota_bytes` (TOML table
    /// `[registry_quotas]`, e.g. `ci-bot = 53687091200`; 0 = unlimited).
    pub registry_quotas: std::collections::BTreeMap<String, u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("slipway-data"),
            git_bin: PathBuf::from("git"),
            max_push_bytes: 2 * 1024 * 1024 * 1024,
            max_api_body_bytes: 1024 * 1024,
            ci_concurrency: 2,
            exec_workers: 4,
            exec_max_running_per_user: None,
            exec_max_pending: 256,
            exec_max_pending_per_user: 64,
            exec_submissions_per_minute: 600,
            exec_max_run_timeout_ms: 60_000,
            exec_max_memory_bytes: 1 << 30,
            exec_memory_bytes: 256 << 20,
            exec_cpus: 1.0,
            exec_pids: 64,
            exec_pool_size: 2,
            exec_pool_sizes: Default::default(),
            exec_pool_max_total: 8,
            exec_pool_idle_secs: 300,
            metrics_public: false,
            metrics_interval_ms: 10_000,
            public_url: None,
            proxy_listen: SocketAddr::from(([127, 0, 0, 1], 7780)),
            proxy_tls_listen: None,
            proxy_tls_cert: None,
            proxy_tls_key: None,
            apps_domain: "localhost".into(),
            releases_kept: 10,
            app_log_max_bytes: 8 * 1024 * 1024,
            app_log_files: 5,
            ci_allowed_images: Vec::new(),
            network_pool: slipway_runtime::network::DEFAULT_NETWORK_POOL.into(),
            ci_step_memory: "2g".into(),
            ci_step_max_memory: "8g".into(),
            ci_step_cpus: 2.0,
            ci_step_max_cpus: 4.0,
            ci_step_pids: 4096,
            app_memory: "512m".into(),
            app_max_memory: "4g".into(),
            app_cpus: 1.0,
            app_max_cpus: 4.0,
            cluster_etcd_endpoints: Vec::new(),
            cluster_node_id: None,
            cluster_lease_ttl_ms: 3000,
            cluster_prefix: "/slipway".into(),
            login_token_ttl_days: 30,
            webhook_allow_list: Vec::new(),
            registry_quota_bytes: 10 << 30,
            registry_quotas: Default::default(),
            volume_restore_max_bytes: 2 << 30,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then `SLIPWAY_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    path.display()
                ))));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only variables naming a server setting: the CLI's own SLIPWAY_* variables
        // (SLIPWAY_TOKEN, SLIPWAY_SERVER, …) share the prefix.
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        fig.merge(
            Env::prefixed("SLIPWAY_").filter(move |key| known.iter().any(|k| key == k.as_str())),
        )
        .extract()
        .map_err(Box::new)
    }

    /// The code execution service's settings.
    pub fn exec_config(&self) -> slipway_exec::ExecConfig {
        let d = slipway_exec::ExecConfig::default();
        let workers = self.exec_workers.max(1);
        slipway_exec::ExecConfig {
            workers: self.exec_workers,
            max_running_per_user: self
                .exec_max_running_per_user
                .unwrap_or_else(|| slipway_exec::ExecConfig::default_running_cap(workers))
                .clamp(1, workers),
            max_pending: self.exec_max_pending,
            max_pending_per_user: self.exec_max_pending_per_user,
            submissions_per_minute: self.exec_submissions_per_minute,
            run_timeout_ms: (
                d.run_timeout_ms.0.min(self.exec_max_run_timeout_ms),
                self.exec_max_run_timeout_ms,
            ),
            memory_bytes: (
                self.exec_memory_bytes
                    .clamp(8 << 20, self.exec_max_memory_bytes.max(8 << 20)),
                self.exec_max_memory_bytes.max(8 << 20),
            ),
            pids: self.exec_pids.max(16),
            nano_cpus: ((self.exec_cpus * 1e9) as i64).max(10_000_000),
            pool: slipway_exec::PoolConfig {
                size: self.exec_pool_size,
                sizes: self.exec_pool_sizes.clone(),
                max_total: self.exec_pool_max_total,
                idle: std::time::Duration::from_secs(self.exec_pool_idle_secs.max(1)),
            },
            ..d
        }
    }

    /// Limits of CI containers from the `ci_step_*` settings.
    pub fn ci_limits(&self) -> Result<slipway_domain::LimitPolicy, String> {
        limit_policy(
            ("ci_step", &self.ci_step_memory, &self.ci_step_max_memory),
            (self.ci_step_cpus, self.ci_step_max_cpus),
            self.ci_step_pids,
        )
    }

    /// Limits of app replicas from the `app_*` settings.
    pub fn app_limits(&self) -> Result<slipway_domain::LimitPolicy, String> {
        limit_policy(
            ("app", &self.app_memory, &self.app_max_memory),
            (self.app_cpus, self.app_max_cpus),
            slipway_deploy::REPLICA_PIDS_LIMIT,
        )
    }

    /// Makes every path setting absolute, against the working directory the
    /// server started in. Paths are handed to other programs that run in other
    /// directories (git runs hooks from inside the bare repository, so a
    /// relative `core.hooksPath` would silently find no hook), so no relative
    /// path may leave the configuration. A bare program name such as `git`
    /// stays as it is: it is looked up on `PATH`.
    pub fn resolve_paths(&mut self) -> std::io::Result<()> {
        self.data_dir = std::path::absolute(&self.data_dir)?;
        if self.git_bin.components().count() > 1 {
            self.git_bin = std::path::absolute(&self.git_bin)?;
        }
        for file in [&mut self.proxy_tls_cert, &mut self.proxy_tls_key]
            .into_iter()
            .flatten()
        {
            *file = std::path::absolute(&*file)?;
        }
        Ok(())
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("slipway.db")
    }
}

/// A limit policy from settings, refusing defaults over maximums.
fn limit_policy(
    (prefix, memory, max_memory): (&str, &str, &str),
    (cpus, max_cpus): (f64, f64),
    pids: i64,
) -> Result<slipway_domain::LimitPolicy, String> {
    use slipway_domain::limits::{parse_cpus, parse_memory};
    let setting = |name: &str, e: String| format!("setting {prefix}_{name}: {e}");
    let policy = slipway_domain::LimitPolicy {
        default_memory_bytes: parse_memory(memory).map_err(|e| setting("memory", e))?,
        max_memory_bytes: parse_memory(max_memory).map_err(|e| setting("max_memory", e))?,
        default_nano_cpus: parse_cpus(&cpus.to_string()).map_err(|e| setting("cpus", e))?,
        max_nano_cpus: parse_cpus(&max_cpus.to_string()).map_err(|e| setting("max_cpus", e))?,
        pids: pids.max(16),
    };
    policy
        .resolve(Default::default(), &format!("the {prefix} defaults"))
        .map_err(|e| format!("{e} (raise {prefix}_max_memory / {prefix}_max_cpus)"))?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_limits_come_from_the_settings() {
        let c = Config::default().exec_config();
        assert_eq!((c.workers, c.max_running_per_user), (4, 2));
        assert_eq!((c.memory_bytes, c.pids), ((256 << 20, 1 << 30), 64));
        assert_eq!(c.nano_cpus, 1_000_000_000);
        let c = Config {
            exec_workers: 3,
            exec_max_running_per_user: Some(10),
            exec_memory_bytes: 2 << 30,
            exec_cpus: 0.5,
            exec_pids: 1,
            ..Config::default()
        }
        .exec_config();
        assert_eq!(c.max_running_per_user, 3, "never more than the workers");
        assert_eq!(
            c.memory_bytes,
            (1 << 30, 1 << 30),
            "default within the maximum"
        );
        assert_eq!((c.nano_cpus, c.pids), (500_000_000, 16));
        let one = Config {
            exec_workers: 1,
            ..Config::default()
        };
        assert_eq!(one.exec_config().max_running_per_user, 1);
    }

    #[test]
    fn relative_paths_become_absolute_and_program_names_stay() {
        let mut config = Config {
            proxy_tls_cert: Some("certs/app.pem".into()),
            ..Config::default()
        };
        config.resolve_paths().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.data_dir, cwd.join("slipway-data"));
        assert_eq!(config.proxy_tls_cert, Some(cwd.join("certs/app.pem")));
        assert_eq!(config.git_bin, PathBuf::from("git"));
        config.git_bin = "./bin/git".into();
        config.resolve_paths().unwrap();
        assert!(config.git_bin.is_absolute());
    }
}
