//! Slipway's command line. `slipway server` runs the platform; every other
//! command is a client of its REST API (the same API the web UI uses).

mod client;
mod commands;
mod output;
mod profile;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Self-hosted software delivery: git, CI, deploys, proxy, monitoring, code execution.
#[derive(Parser)]
#[command(name = "slipway", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every client command understands.
#[derive(clap::Args, Clone)]
pub struct GlobalArgs {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Server URL (default: the one saved by `slipway login`).
    #[arg(long, global = true, env = "SLIPWAY_SERVER")]
    server: Option<String>,
    /// Access token (default: the one saved by `slipway login`).
    #[arg(long, global = true, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the CLI keeps its server and token (default: ~/.config/slipway/cli.toml).
    #[arg(long, global = true, env = "SLIPWAY_CLI_CONFIG")]
    cli_config: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Slipway server (API, git hosting, and more).
    Server(commands::server::ServerArgs),
    /// Run a cluster node agent: `slipway agent --join URL --token JOIN_TOKEN`.
    Agent(commands::agent::AgentArgs),
    /// Cluster nodes (list, cordon, uncordon, drain, remove), join tokens, cluster status.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Administer a server: first-run setup, accounts.
    #[command(subcommand)]
    Admin(commands::admin::AdminCommand),
    /// Log in and save the server and a new token for later commands.
    Login(commands::account::LoginArgs),
    /// Forget the saved token.
    Logout,
    /// Show the account the saved token belongs to.
    Whoami,
    /// Create, list and delete repositories.
    #[command(subcommand)]
    Repo(commands::repo::RepoCommand),
    /// Create, list and revoke personal access tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// CI pipelines: list, show, follow logs, cancel, retry.
    #[command(subcommand)]
    Pipeline(commands::pipeline::PipelineCommand),
    /// Pipeline secrets of a repository: set, list, remove.
    #[command(subcommand)]
    Secret(commands::secret::SecretCommand),
    /// Webhooks of a repository, called when a pipeline ends: add, list, remove.
    #[command(subcommand)]
    Webhook(commands::webhook::WebhookCommand),
    /// Local base images (no registry): busybox, Debian, language layers.
    #[command(subcommand)]
    Images(commands::images::ImagesCommand),
    /// Run code in sandboxed containers; list jobs, runtimes; build language images.
    #[command(subcommand)]
    Exec(commands::exec::ExecCommand),
    /// Apps deployed from repositories: create, list, show, set, delete, secrets.
    #[command(subcommand)]
    App(commands::app::AppCommand),
    /// Alert rules per app, alerts firing now and their history, webhooks.
    #[command(subcommand)]
    Alert(commands::alert::AlertCommand),
    /// Horizontal autoscaling of an app: `slipway autoscale APP --min 1 --max 5 --rps 50`,
    /// `--off`, or just APP to show it.
    Autoscale(commands::autoscale::AutoscaleArgs),
    #[command(flatten)]
    Deploy(commands::app::DeployCommand),
}

/// Entry point of the `slipway` binary: parses arguments, runs the command and
/// turns any error into one readable line and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Server(args) => commands::server::run(args).await,
        Command::Agent(args) => commands::agent::run(args, &g).await,
        Command::Node(cmd) => commands::node::run(cmd, &g).await,
        Command::Admin(cmd) => commands::admin::run(cmd, &g).await,
        Command::Login(args) => commands::account::login(args, &g).await,
        Command::Logout => commands::account::logout(&g),
        Command::Whoami => commands::account::whoami(&g).await,
        Command::Repo(cmd) => commands::repo::run(cmd, &g).await,
        Command::Token(cmd) => commands::token::run(cmd, &g).await,
        Command::Exec(cmd) => commands::exec::run(cmd, &g).await,
        Command::Pipeline(cmd) => commands::pipeline::run(cmd, &g).await,
        Command::Secret(cmd) => commands::secret::run(cmd, &g).await,
        Command::Webhook(cmd) => commands::webhook::run(cmd, &g).await,
        Command::Images(cmd) => commands::images::run(cmd, &g).await,
        Command::App(cmd) => commands::app::run(cmd, &g).await,
        Command::Alert(cmd) => commands::alert::run(cmd, &g).await,
        Command::Autoscale(args) => commands::autoscale::run(args, &g).await,
        Command::Deploy(cmd) => commands::app::run_verb(cmd, &g).await,
    }
}
