//! `slipway agent --join URL --token T`: the node agent of cluster mode.
//!
//! It joins through a server (the join token proves it may), keeps the node
//! id it gets in its data directory, then registers the node in etcd under a
//! lease and keeps it alive; `slipway node list` shows it. Its state goes to
//! stdout (one line per change) and to `<data-dir>/agent-status.json`. The
//! replicas assigned to the node run in the local Docker Engine
//! ([`slipway_cluster::runner`]), their ports published on
//! `--advertise-address`; release images are pulled from the servers'
//! registry with the pull credential each join issues (kept in node.json).

use crate::client::Client;
use crate::GlobalArgs;
use anyhow::{bail, Context};
use reqwest::Method;
use slipway_api::shutdown_signal;
use slipway_cluster::agent::{
    Agent, AgentConfig, AgentStatus, JoinRequest, JoinResponse, Phase, SavedNode,
};
use slipway_cluster::{Labels, Resources, StoreOptions};
use slipway_runtime::images::RegistryAuth;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `slipway agent`; the join token is the global `--token`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// URL of a server of the cluster, e.g. http://10.0.0.1:7700.
    #[arg(long)]
    join: String,
    /// A node label for placement constraints, key=value (repeatable).
    #[arg(long = "label", value_parser = slipway_cluster::parse_label)]
    labels: Vec<(String, String)>,
    /// Where the agent keeps its node id and status.
    #[arg(long, default_value = "slipway-agent-data")]
    data_dir: PathBuf,
    /// CPU cores offered to replicas (default: the machine's).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory offered to replicas, in MiB (default: the machine's).
    #[arg(long)]
    memory_mb: Option<u64>,
    /// The IP address replica ports are published on and that the servers'
    /// proxies dial (this machine's address on the cluster's network).
    #[arg(long, default_value = "127.0.0.1", value_parser = advertise_address)]
    advertise_address: IpAddr,
}

/// `--advertise-address`: a concrete IP address (not 0.0.0.0 or ::).
fn advertise_address(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{s} cannot be dialled: give this machine's address on the cluster's network"
        ));
    }
    Ok(ip)
}

/// Joins, registers and keeps the node alive until interrupted (or removed).
pub async fn run(args: AgentArgs, g: &GlobalArgs) -> anyhow::Result<()> {
    crate::output::init_logging("info");
    let Some(token) = g.token.clone() else {
        bail!("give the join token with --token (create one with `slipway node join-token`)");
    };
    if !(args.join.starts_with("http://") || args.join.starts_with("https://")) {
        bail!("--join {:?} is not an http:// or https:// URL", args.join);
    }
    let mut saved = SavedNode::load(&args.data_dir)
        .with_context(|| format!("reading {}", SavedNode::path(&args.data_dir).display()))?;
    let hostname = slipway_cluster::machine::hostname();
    let client = Client::new(args.join.clone(), Some(token));
    let joined: JoinResponse = client
        .call(
            Method::POST,
            "/cluster/join",
            Some(&JoinRequest {
                node_id: saved.node_id.clone(),
                hostname: hostname.clone(),
            }),
        )
        .await
        .context("joining the cluster")?;
    // A join issues a new pull credential (the previous one stops working).
    if saved.node_id.as_deref() != Some(joined.node_id.as_str())
        || saved.server.is_none()
        || joined.credential.is_some()
    {
        saved.node_id = Some(joined.node_id.clone());
        saved.server = Some(args.join.clone());
        saved.credential = joined.credential.clone();
        saved
            .save(&args.data_dir)
            .with_context(|| format!("saving the node id in {}", args.data_dir.display()))?;
    }
    let machine = slipway_cluster::machine::capacity();
    let capacity = Resources::new(
        args.cpus
            .map(|c| (c.max(0.0) * 1000.0) as u64)
            .unwrap_or(machine.cpu_millis),
        args.memory_mb
            .map(|m| m.saturating_mul(1024 * 1024))
            .unwrap_or(machine.memory_bytes),
    );
    let mut store = StoreOptions::new(joined.etcd_endpoints.clone());
    store.prefix = joined.prefix.clone();
    store.lease_ttl = Duration::from_millis(joined.lease_ttl_ms.max(1000));
    // The node runs its replicas through the local Docker Engine. A new
    // registration begins a new epoch: containers of earlier ones go first.
    let docker = slipway_runtime::Runtime::connect()
        .await
        .context("the agent runs replicas through the local Docker Engine")?;
    // Replicas may not open connections to this node's own ports.
    if let Err(e) = tokio::task::spawn_blocking(slipway_runtime::host_guard::block_host_access)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    {
        tracing::warn!(error = %e, "replicas can open connections to this node's ports through their network's gateway");
    }
    slipway_cluster::runner::sweep(&docker, &joined.node_id)
        .await
        .context("removing replica containers of an earlier epoch")?;
    let runner_store = slipway_cluster::ClusterStore::connect(store.clone())
        .await
        .context("connecting to etcd")?;
    let agent = Agent::start(AgentConfig {
        store,
        node_id: joined.node_id.clone(),
        labels: args.labels.into_iter().collect::<Labels>(),
        capacity,
        hostname,
    })
    .await
    .context("registering the node in etcd")?;
    let runner_opts = slipway_cluster::runner::RunnerOptions {
        address: args.advertise_address,
        pull_auth: saved.credential.clone().map(|password| RegistryAuth {
            username: joined.node_id.clone(),
            password,
        }),
        // Absolute: the engine bind-mounts directories from it.
        files_dir: std::path::absolute(args.data_dir.join("stack-files"))
            .context("the agent's data directory")?,
        ..Default::default()
    };
    // Stack services reach each other by name through the node's forwarder.
    let _forwarder = slipway_cluster::forward::Forwarder::spawn(
        docker.clone(),
        runner_store.clone(),
        agent.status(),
        Duration::from_millis(500),
    );
    let _runner =
        slipway_cluster::runner::Runner::spawn(docker, runner_store, agent.status(), runner_opts);
    let mut status = agent.status();
    let mut last = (Phase::Registering, 0u64, usize::MAX);
    loop {
        let now = status.borrow_and_update().clone();
        report(&args.data_dir, &now, &mut last);
        match now.phase {
            Phase::Removed => bail!("node {} was removed from the cluster", now.node_id),
            Phase::Superseded => bail!(
                "another agent registered as node {} (epoch {}+); this one stops",
                now.node_id,
                now.epoch
            ),
            _ => {}
        }
        tokio::select! {
            _ = shutdown_signal() => {
                agent.stop().await?;
                println!("slipway agent: node {} stopped", now.node_id);
                return Ok(());
            }
            changed = status.changed() => if changed.is_err() {
                bail!("the agent stopped unexpectedly");
            },
        }
    }
}

/// Prints a line when the phase, epoch or assignment count changes and
/// keeps `<data>/agent-status.json` current.
fn report(data_dir: &Path, s: &AgentStatus, last: &mut (Phase, u64, usize)) {
    let now = (s.phase, s.epoch, s.assignments.len());
    if now == *last {
        return;
    }
    *last = now;
    let phase = serde_json::to_value(s.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "slipway agent: node {} {phase} (epoch {}, {} replica(s) assigned)",
        s.node_id,
        s.epoch,
        s.assignments.len()
    );
    let _ = std::io::stdout().flush();
    if let Ok(bytes) = serde_json::to_vec_pretty(s) {
        let tmp = data_dir.join("agent-status.json.tmp");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(tmp, data_dir.join("agent-status.json"));
        }
    }
}
