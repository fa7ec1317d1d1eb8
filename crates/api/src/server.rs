//! Binding, routing and serving until shutdown.

use crate::config::Config;
use crate::error::ApiError;
use crate::routes;
use crate::setup;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::Router;
use slipway_git::GitHost;
use slipway_store::Store;
use std::net::SocketAddr;
use tower_http::trace::TraceLayer;

/// The whole HTTP application for `state`.
pub fn router(state: AppState) -> Router {
    let api_limit = state.config().max_api_body_bytes;
    let api = routes::api_routes().layer(DefaultBodyLimit::max(api_limit));
    let git = Router::new()
        .route("/git/{owner}/{repo}/{*rest}", any(routes::git::serve))
        .layer(DefaultBodyLimit::disable());
    // Image registry under /v2: bodies are streamed and bounded per blob by the registry.
    let registry = routes::registry::router(&state).layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(routes::metrics::scrape))
        .nest("/api/v1", api)
        .merge(git)
        .merge(registry)
        // The web dashboard under /ui (and / redirecting to it).
        .merge(slipway_web::router())
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http_metrics::count,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state.store().count_users().await?;
    Ok(axum::Json(
        serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

/// A server that is bound and ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    proxy_listener: tokio::net::TcpListener,
    proxy_tls_listener: Option<tokio::net::TcpListener>,
    state: AppState,
    /// The first-run setup code, when no account exists yet.
    pub setup_token: Option<String>,
}

impl Server {
    /// Opens the store and repositories and binds the listen address.
    pub async fn bind(mut config: Config) -> anyhow::Result<Self> {
        config
            .resolve_paths()
            .map_err(|e| anyhow::anyhow!("cannot resolve the configured paths: {e}"))?;
        config.ci_limits().map_err(anyhow::Error::msg)?;
        let network_pool: ipnet::Ipv4Net = config.network_pool.parse().map_err(|e| {
            anyhow::anyhow!(
                "setting network_pool {:?}: {e} (an IPv4 range such as 10.220.0.0/16)",
                config.network_pool
            )
        })?;
        config.app_limits().map_err(anyhow::Error::msg)?;
        slipway_ci::image_policy::ImagePolicy::new(&config.ci_allowed_images)
            .map_err(|e| anyhow::anyhow!("setting ci_allowed_images: {e}"))?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let store = Store::open(&config.database_path()).await?;
        let git = GitHost::new(&config.data_dir, &config.git_bin)?;
        let setup_token = setup::prepare(&store, &config.data_dir).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                "cannot listen on {}: {e} (set another address with --listen or SLIPWAY_LISTEN)",
                config.listen
            )
            })?;
        let proxy_listener = tokio::net::TcpListener::bind(config.proxy_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} for the app proxy: {e} (set another address with SLIPWAY_PROXY_LISTEN)",
                    config.proxy_listen
                )
            })?;
        let proxy_tls_listener = match config.proxy_tls_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} for the app proxy's HTTPS: {e} (set SLIPWAY_PROXY_TLS_LISTEN)"
                )
            })?),
            None => None,
        };
        // The dummy password hash that unknown user names are checked against
        // is made now, so the first such login costs no more than any other.
        tokio::task::spawn_blocking(slipway_auth::dummy_hash).await?;
        let state = AppState::new(config, store, git)?;
        state
            .deploy()
            .set_proxy_address("http", proxy_listener.local_addr()?.port());
        let public_url = public_url(state.config(), listener.local_addr()?)?;
        state.set_public_url(&public_url);
        state
            .ci()
            .set_registry_hosts(registry_hosts(&public_url, listener.local_addr()?));
        // Pushes a crash cut short: recorded before anything is served.
        crate::routes::git::recover_interrupted_pushes(&state).await;
        // Cluster mode first: the deployer must know it before it starts
        // (it then writes demands instead of running local replicas).
        start_cluster(&state, &public_url).await?;
        // One Docker connection for every part that needs the engine; without
        // Docker, git, CI queueing and the API still work.
        let rt = match slipway_runtime::Runtime::connect().await {
            Ok(rt) => Some(rt.with_network_pool(network_pool)),
            Err(e) => {
                tracing::warn!(error = %e, "no Docker Engine: code execution and deployments are disabled");
                None
            }
        };
        if let Some(rt) = &rt {
            guard_host().await;
            start_exec(&state, rt.clone()).await;
            start_deploy(&state, rt.clone()).await;
        }
        start_monitor(&state, rt);
        state.alerts().set_public_url(&public_url);
        state.alerts().start();
        state.autoscale().start();
        Ok(Self {
            listener,
            proxy_listener,
            proxy_tls_listener,
            state,
            setup_token,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the app proxy actually bound.
    pub fn proxy_addr(&self) -> std::io::Result<SocketAddr> {
        self.proxy_listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // CI worker: recovers pipelines interrupted by a crash, then runs the queue.
        self.state.ci().start();
        // The app proxy runs thread-per-core (one current-thread runtime per
        // core): the shape with the least cross-core work per request.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let _proxy_threads = self
            .state
            .deploy()
            .proxy()
            .serve_on(self.proxy_listener.into_std()?, threads)?;
        if let Some(listener) = self.proxy_tls_listener {
            let tls = proxy_tls(self.state.config())?;
            let proxy = self.state.deploy().proxy().clone();
            tokio::spawn(async move {
                if let Err(e) = proxy.serve_tls(listener, tls).await {
                    tracing::error!(error = %e, "the app proxy (HTTPS) stopped");
                }
            });
        }
        let state = self.state.clone();
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        if let Some(exec) = state.exec() {
            let drained =
                tokio::time::timeout(std::time::Duration::from_secs(10), exec.shutdown()).await;
            tracing::info!(sandboxes = ?drained.ok(), "warm sandboxes removed");
        }
        if let Some(cluster) = state.cluster() {
            // Hands the scheduler's leadership over without waiting for the lease.
            cluster.shutdown().await;
        }
        Ok(())
    }
}

/// Joins the cluster when etcd endpoints are configured (single-node mode
/// otherwise); members and agents reach this server at `public_url`.
async fn start_cluster(state: &AppState, api_url: &str) -> anyhow::Result<()> {
    let config = state.config();
    if config.cluster_etcd_endpoints.is_empty() {
        return Ok(());
    }
    let cluster = crate::cluster::Cluster::start(config, api_url.to_owned()).await?;
    // The deployer writes demands to it (agents pull release images from
    // this server's registry at the public URL's host:port), and the proxy
    // routes to the replicas agents run on every node.
    state.deploy().set_cluster_public_url(api_url);
    state.deploy().set_cluster(cluster.store().clone());
    state.set_cluster(cluster);
    Ok(())
}

/// Starts the code execution service on the engine (without Docker it never
/// starts and exec routes answer 503).
async fn start_exec(state: &AppState, rt: slipway_runtime::Runtime) {
    let config = state.config().exec_config();
    match slipway_exec::ExecService::start(state.store().clone(), rt, config).await {
        Ok(exec) => {
            exec.register_metrics(
                &mut state
                    .metrics_registry()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            state.set_exec(exec)
        }
        Err(e) => tracing::error!(error = %e, "code execution could not start"),
    }
}

/// Starts the deployer on the engine (without Docker apps cannot run; the
/// rest of the server still works).
async fn start_deploy(state: &AppState, rt: slipway_runtime::Runtime) {
    if let Err(e) = state.deploy().start(rt).await {
        tracing::error!(error = %e, "the deployer could not start");
    }
}

/// Registers the monitoring collectors and starts the sampler (CPU and memory
/// need Docker; traffic and queues are sampled without it).
fn start_monitor(state: &AppState, rt: Option<slipway_runtime::Runtime>) {
    state.monitor().register(
        &mut state
            .metrics_registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    state.monitor().start(rt);
}

/// The URL people and other nodes reach this server at: `public_url`, or the
/// address the API is bound to. Cluster members, agents, notification links
/// and git's `remote:` lines all use it.
fn public_url(config: &Config, bound: SocketAddr) -> anyhow::Result<String> {
    match &config.public_url {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(url.clone()),
        Some(url) => anyhow::bail!(
            "public_url {url:?} must start with http:// or https:// (SLIPWAY_PUBLIC_URL)"
        ),
        None => Ok(format!("http://{bound}")),
    }
}

/// Installs the firewall rule that keeps tenant containers from opening
/// connections to this host (`slipway_runtime::host_guard`); without it
/// (no iptables, not root) the server still runs, and says what is open.
pub(crate) async fn guard_host() {
    match tokio::task::spawn_blocking(slipway_runtime::host_guard::block_host_access).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            error = %e,
            "containers of pipelines and apps can open connections to this host's ports \
             through their network's gateway; bind Slipway, etcd and PostgreSQL to \
             127.0.0.1 or run the server as root with iptables installed"
        ),
        Err(e) => tracing::warn!(error = %e, "the host guard task failed"),
    }
}

/// The `host:port` names images of this server's registry are pulled by:
/// the public URL's authority and the bound address (plus `localhost` for a
/// loopback address).
fn registry_hosts(public_url: &str, bound: SocketAddr) -> Vec<String> {
    let mut hosts = vec![bound.to_string()];
    if bound.ip().is_loopback() {
        hosts.push(format!("localhost:{}", bound.port()));
    }
    if let Some(authority) = public_url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
    {
        hosts.push(authority.to_string());
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The proxy's certificate: the configured files, or a self-signed one for
/// the apps domain (local use).
fn proxy_tls(config: &Config) -> anyhow::Result<slipway_proxy::TlsConfig> {
    match (&config.proxy_tls_cert, &config.proxy_tls_key) {
        (Some(cert), Some(key)) => Ok(slipway_proxy::TlsConfig::from_pem_files(cert, key)?),
        (None, None) => {
            let wildcard = format!("*.{}", config.apps_domain);
            let (tls, _) = slipway_proxy::TlsConfig::self_signed(&[
                config.apps_domain.as_str(),
                wildcard.as_str(),
            ])?;
            Ok(tls)
        }
        _ => anyhow::bail!("set both proxy_tls_cert and proxy_tls_key, or neither"),
    }
}

/// Binds and serves `config` until Ctrl-C or SIGTERM, printing where it listens.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    if let Some(code) = &server.setup_token {
        eprintln!(
            "\n  First run: create the administrator with\n\n    slipway --server http://{addr} admin setup --setup-token {code} --username admin\n\n  (the code is also in {})\n",
            setup::setup_token_path(&data_dir).display()
        );
    }
    println!("slipway proxy listening on http://{}", server.proxy_addr()?);
    println!("slipway listening on http://{addr}");
    server.run(shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM: the one way every long-running command
/// (server, cluster agent) learns it should stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
