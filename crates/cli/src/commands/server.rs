//! `slipway server`.

use slipway_api::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `slipway server`; each overrides the config file and environment.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// TOML config file (see README for keys).
    #[arg(long, env = "SLIPWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7700 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory for the database and repositories.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Loads the configuration and serves until interrupted.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::output::init_logging("info,tower_http=warn,sqlx=warn");
    let mut config = Config::load(args.config.as_deref())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    slipway_api::serve(config).await
}
