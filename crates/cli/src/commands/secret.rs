//! `slipway secret set|list|remove`: repository secrets for pipelines.
//! Values are read from stdin (or asked for on a terminal), never from the
//! command line, so they stay out of shell history and process lists.

use super::read_password;
use super::repo::split;
use crate::client::Client;
use crate::{output, GlobalArgs};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum SecretCommand {
    /// Set a secret (value from stdin, or asked for on a terminal).
    Set {
        /// OWNER/NAME of the repository.
        repo: String,
        /// Secret name, e.g. DEPLOY_TOKEN.
        name: String,
        /// Read the value from stdin (one line); also what happens when stdin is not a terminal.
        #[arg(long = "stdin", alias = "value-stdin")]
        value_stdin: bool,
    },
    /// List secret names (values are never shown).
    List {
        /// OWNER/NAME of the repository.
        repo: String,
    },
    /// Remove a secret.
    Remove {
        /// OWNER/NAME of the repository.
        repo: String,
        /// Secret name.
        name: String,
    },
}

/// Runs a secret command.
pub async fn run(cmd: SecretCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    client.require_token()?;
    match cmd {
        SecretCommand::Set {
            repo,
            name,
            value_stdin,
        } => {
            let (owner, repo_name) = split(&repo)?;
            let value = read_password(value_stdin, &format!("Value of {name}: "))?;
            client
                .call::<_, Value>(
                    Method::PUT,
                    &format!("/repos/{owner}/{repo_name}/secrets/{name}"),
                    Some(&json!({ "value": value })),
                )
                .await?;
            if g.json {
                return output::json(&json!({"repo": repo, "secret": name}));
            }
            println!("Secret {name} set on {repo}.");
        }
        SecretCommand::List { repo } => {
            let (owner, repo_name) = split(&repo)?;
            let secrets: Vec<Value> = client
                .get(&format!("/repos/{owner}/{repo_name}/secrets"))
                .await?;
            if g.json {
                return output::json(&secrets);
            }
            let rows = secrets
                .iter()
                .map(|s| {
                    vec![
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        s["updated_at"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["SECRET", "UPDATED"],
                rows,
                "No secrets: add one with `slipway secret set OWNER/REPO NAME`.",
            );
        }
        SecretCommand::Remove { repo, name } => {
            let (owner, repo_name) = split(&repo)?;
            client
                .call::<(), Value>(
                    Method::DELETE,
                    &format!("/repos/{owner}/{repo_name}/secrets/{name}"),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&json!({"repo": repo, "removed": name}));
            }
            println!("Secret {name} removed from {repo}.");
        }
    }
    Ok(())
}
