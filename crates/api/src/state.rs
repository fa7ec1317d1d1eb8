//! What every handler shares.

use crate::Config;
use slipway_git::GitHost;
use slipway_store::Store;
use std::sync::Arc;

/// Shared server state; cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    git: GitHost,
    /// Continuous integration: queue, worker, cancel and retry.
    ci: slipway_ci::Ci,
    /// Continuous deployment: releases, replicas and the proxy's routes.
    deploy: slipway_deploy::Deployer,
    /// The embedded image registry served under `/v2`.
    registry: slipway_registry::Registry,
    /// Code execution, set once Docker answered at start-up.
    exec: std::sync::OnceLock<slipway_exec::ExecService>,
    /// Prometheus registry served at `/metrics`; subsystems register at start-up.
    metrics: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    /// Monitoring: the time series of every app and the Prometheus collectors.
    monitor: slipway_metrics::Monitor,
    /// Alerting: rules per app, their evaluator and webhook delivery.
    alerts: slipway_alerts::Alerts,
    /// Horizontal autoscaling: policies per app and their evaluator.
    autoscale: slipway_autoscale::Autoscaler,
    /// Cluster mode (set at start-up when etcd endpoints are configured).
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    /// Base URL people reach this server at, for links printed to users
    /// (`public_url`, or the bound address; set once at start-up).
    public_url: std::sync::OnceLock<String>,
    /// Backoff of password guesses (`POST /auth/login`).
    login_throttle: slipway_auth::throttle::LoginThrottle,
}

impl AppState {
    /// Bundles the parts handlers need. Fails on a bad `webhook_allow_list`.
    pub fn new(config: Config, store: Store, git: GitHost) -> anyhow::Result<Self> {
        let egress = slipway_egress::EgressPolicy::parse(&config.webhook_allow_list)
            .map_err(|e| anyhow::anyhow!("webhook_allow_list: {e}"))?;
        let deploy = slipway_deploy::Deployer::new(
            store.clone(),
            slipway_deploy::DeployOptions {
                data_dir: config.data_dir.clone(),
                apps_domain: config.apps_domain.clone(),
                releases_kept: config.releases_kept,
                app_logs: slipway_deploy::Retention {
                    max_file_bytes: config.app_log_max_bytes,
                    files: config.app_log_files,
                },
                // Checked by `Server::bind` before the state is made.
                limits: config
                    .app_limits()
                    .unwrap_or(slipway_deploy::DEFAULT_APP_LIMITS),
            },
        );
        let ci = slipway_ci::Ci::new(
            store.clone(),
            slipway_ci::CiOptions {
                data_dir: config.data_dir.clone(),
                git_bin: config.git_bin.clone(),
                concurrency: config.ci_concurrency,
                // Checked by `Server::bind` before the state is made.
                limits: config
                    .ci_limits()
                    .unwrap_or(slipway_ci::DEFAULT_STEP_LIMITS),
                images: slipway_ci::image_policy::ImagePolicy::new(&config.ci_allowed_images)
                    .unwrap_or_default(),
                egress: egress.clone(),
            },
        );
        ci.set_deployer(deploy.clone());
        let registry = slipway_registry::Registry::with_limits(
            config.data_dir.join("registry"),
            slipway_registry::Limits {
                quota_bytes: config.registry_quota_bytes,
                owner_quotas: config.registry_quotas.clone(),
                ..Default::default()
            },
        );
        let monitor = slipway_metrics::Monitor::new(
            deploy.clone(),
            slipway_metrics::MonitorOptions {
                interval: std::time::Duration::from_millis(config.metrics_interval_ms.max(50)),
                ..Default::default()
            },
        );
        deploy.set_registry(registry.clone());
        let alerts = slipway_alerts::Alerts::new(
            store.clone(),
            deploy.clone(),
            monitor.clone(),
            slipway_alerts::AlertOptions {
                data_dir: config.data_dir.clone(),
                interval: monitor.interval(),
                egress,
            },
        );
        let autoscale =
            slipway_autoscale::Autoscaler::new(store.clone(), deploy.clone(), monitor.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                autoscale,
                deploy,
                ci,
                config,
                store,
                git,
                registry,
                exec: std::sync::OnceLock::new(),
                metrics: Default::default(),
                monitor,
                alerts,
                cluster: std::sync::OnceLock::new(),
                public_url: std::sync::OnceLock::new(),
                login_throttle: Default::default(),
            }),
        })
    }
    /// Base URL for links shown to users (git's `remote:` lines, notifications),
    /// without a trailing slash.
    pub fn public_url(&self) -> &str {
        self.inner
            .public_url
            .get()
            .map_or("http://127.0.0.1:7700", String::as_str)
    }
    /// Sets the base URL for links (once, at start-up).
    pub fn set_public_url(&self, url: &str) {
        let _ = self
            .inner
            .public_url
            .set(url.trim_end_matches('/').to_owned());
    }
    /// The password-guessing throttle of `POST /auth/login`.
    pub fn login_throttle(&self) -> &slipway_auth::throttle::LoginThrottle {
        &self.inner.login_throttle
    }
    /// Cluster mode, when this server is part of a cluster.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.inner.cluster.get()
    }
    /// Installs cluster mode (once, at start-up).
    pub fn set_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.inner.cluster.set(cluster);
    }
    /// Alerting: rules, alerts and webhooks (its evaluator is started by the server).
    pub fn alerts(&self) -> &slipway_alerts::Alerts {
        &self.inner.alerts
    }
    /// Autoscaling: policies per app (its evaluator is started by the server).
    pub fn autoscale(&self) -> &slipway_autoscale::Autoscaler {
        &self.inner.autoscale
    }
    /// The configuration the server started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// The repositories on disk.
    pub fn git(&self) -> &GitHost {
        &self.inner.git
    }
    /// The deploy service (started by the server when Docker answers).
    pub fn deploy(&self) -> &slipway_deploy::Deployer {
        &self.inner.deploy
    }
    /// The image registry (`<data_dir>/registry`), served under `/v2`.
    pub fn registry(&self) -> &slipway_registry::Registry {
        &self.inner.registry
    }
    /// The CI service (its worker is started by the server).
    pub fn ci(&self) -> &slipway_ci::Ci {
        &self.inner.ci
    }
    /// The code execution service, if it started (it needs Docker).
    pub fn exec(&self) -> Option<&slipway_exec::ExecService> {
        self.inner.exec.get()
    }
    /// The Prometheus registry behind `GET /metrics`: lock it and `register`
    /// (or `sub_registry_with_prefix`) a subsystem's metrics at start-up.
    pub fn metrics_registry(
        &self,
    ) -> &Arc<std::sync::Mutex<prometheus_client::registry::Registry>> {
        &self.inner.metrics
    }
    /// Monitoring: app time series (charts) and the Prometheus collectors.
    pub fn monitor(&self) -> &slipway_metrics::Monitor {
        &self.inner.monitor
    }
    /// Installs the code execution service (once, at start-up).
    pub fn set_exec(&self, exec: slipway_exec::ExecService) {
        let _ = self.inner.exec.set(exec);
    }
}
