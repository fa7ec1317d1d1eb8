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
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(routes::metrics::scrape))
        .nest("/api/v1", api)
        .merge(git)
        .fallback(routes::not_found)
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
    state: AppState,
    /// The first-run setup code, when no account exists yet.
    pub setup_token: Option<String>,
}

impl Server {
    /// Opens the store and repositories and binds the listen address.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
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
        let state = AppState::new(config, store, git);
        start_exec(&state).await;
        Ok(Self {
            listener,
            state,
            setup_token,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // CI worker: recovers pipelines interrupted by a crash, then runs the queue.
        self.state.ci().start();
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// Starts the code execution service when the Docker Engine answers; without
/// Docker the rest of the server still works and exec routes answer 503.
async fn start_exec(state: &AppState) {
    let rt = match slipway_runtime::Runtime::connect().await {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "code execution is disabled");
            return;
        }
    };
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
    println!("slipway listening on http://{addr}");
    server.run(shutdown_signal()).await
}

async fn shutdown_signal() {
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
