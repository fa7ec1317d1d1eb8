//! `slipway node list|cordon|uncordon|drain|remove|join-token|cluster`:
//! the cluster's nodes and servers (administrators).

use crate::client::Client;
use crate::{output, GlobalArgs};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_cluster::etcd::NodeInfo;

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// List the nodes with their state, epoch, capacity and load.
    List,
    /// Place no new replicas on a node (running ones stay).
    Cordon {
        /// Node id (see `slipway node list`).
        id: String,
    },
    /// Let a cordoned or drained node take replicas again.
    Uncordon {
        /// Node id.
        id: String,
    },
    /// Move a node's replicas to other nodes.
    Drain {
        /// Node id.
        id: String,
    },
    /// Forget a lost or drained node.
    Remove {
        /// Node id.
        id: String,
    },
    /// Create a join token for `slipway agent --join URL --token T` (printed once).
    JoinToken {
        /// Hours until it expires (1-8760).
        #[arg(long, default_value_t = 24)]
        ttl_hours: u32,
    },
    /// Show the cluster: mode, leader, servers.
    Cluster,
}

/// Runs a node command.
pub async fn run(cmd: NodeCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    client.require_token()?;
    match cmd {
        NodeCommand::List => {
            let nodes: Vec<NodeInfo> = client.get("/nodes").await?;
            if g.json {
                return output::json(&nodes);
            }
            print_nodes(&nodes);
        }
        NodeCommand::Cordon { id } => change(&client, g, &id, "cordon", "cordoned").await?,
        NodeCommand::Uncordon { id } => change(&client, g, &id, "uncordon", "uncordoned").await?,
        NodeCommand::Drain { id } => change(&client, g, &id, "drain", "draining").await?,
        NodeCommand::Remove { id } => {
            client
                .call::<(), Value>(Method::DELETE, &format!("/nodes/{}", seg(&id)), None)
                .await?;
            if g.json {
                return output::json(&json!({"removed": id}));
            }
            println!("Node {id} removed.");
        }
        NodeCommand::JoinToken { ttl_hours } => {
            let issued: Value = client
                .call(
                    Method::POST,
                    "/cluster/join-tokens",
                    Some(&json!({"ttl_hours": ttl_hours})),
                )
                .await?;
            if g.json {
                return output::json(&issued);
            }
            println!("{}", issued["token"].as_str().unwrap_or_default());
            eprintln!(
                "Join token created (expires {}). Copy it now: it will not be shown again.\n  slipway agent --join {} --token <token>",
                issued["expires_at"].as_str().unwrap_or_default(),
                client.base()
            );
        }
        NodeCommand::Cluster => {
            let c: Value = client.get("/cluster").await?;
            if g.json {
                return output::json(&c);
            }
            println!("Mode:    {}", c["mode"].as_str().unwrap_or_default());
            println!("Server:  {}", c["server_id"].as_str().unwrap_or_default());
            println!("Leader:  {}", c["leader"].as_str().unwrap_or("(none)"));
            let rows = c["members"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            vec![
                                m["id"].as_str().unwrap_or_default().to_owned(),
                                m["api_url"].as_str().unwrap_or_default().to_owned(),
                                if m["leader"].as_bool() == Some(true) {
                                    "yes"
                                } else {
                                    ""
                                }
                                .into(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            output::table(
                &["SERVER", "API", "LEADER"],
                rows,
                "No cluster members (single-node mode).",
            );
        }
    }
    Ok(())
}

/// A node id as a path segment (ids are validated by the server; this keeps
/// a mistyped one from changing the path).
fn seg(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32 & 0xff)
            }
        })
        .collect()
}

async fn change(
    client: &Client,
    g: &GlobalArgs,
    id: &str,
    verb: &str,
    done: &str,
) -> anyhow::Result<()> {
    let node: NodeInfo = client
        .call::<(), NodeInfo>(Method::POST, &format!("/nodes/{}/{verb}", seg(id)), None)
        .await?;
    if g.json {
        return output::json(&node);
    }
    println!("Node {id} {done} (state {}).", node.state.as_str());
    Ok(())
}

fn print_nodes(nodes: &[NodeInfo]) {
    let mib = |b: u64| b / (1024 * 1024);
    let rows = nodes
        .iter()
        .map(|n| {
            let r = &n.record;
            vec![
                r.id.clone(),
                n.state.as_str().to_owned(),
                r.epoch.to_string(),
                n.replicas.to_string(),
                format!(
                    "{}/{}m{}",
                    n.allocated.cpu_millis,
                    r.capacity.cpu_millis,
                    n.used
                        .map(|u| format!(" (used {}m)", u.cpu_millis))
                        .unwrap_or_default()
                ),
                format!(
                    "{}/{} MiB{}",
                    mib(n.allocated.memory_bytes),
                    mib(r.capacity.memory_bytes),
                    n.used
                        .map(|u| format!(" (used {} MiB)", mib(u.memory_bytes)))
                        .unwrap_or_default()
                ),
                r.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                r.hostname.clone(),
            ]
        })
        .collect();
    output::table(
        &["NODE", "STATE", "EPOCH", "REPLICAS", "CPU", "MEMORY", "LABELS", "HOST"],
        rows,
        "No nodes. Join one with `slipway agent --join URL --token T` (token from `slipway node join-token`).",
    );
}
