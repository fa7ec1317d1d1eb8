//! `slipway token create|list|revoke`.

use crate::client::Client;
use crate::{output, GlobalArgs};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_domain::{Scope, TokenInfo};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and cannot be shown again.
    Create {
        /// A label, e.g. "ci" or "laptop".
        name: String,
        /// Scopes (repeatable): read, write, admin. Default: read and write.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Expire after this many days (at most as long as the token making
        /// the request lives; by default the new token expires with it).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List your tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The id from `slipway token list`.
        id: i64,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

/// Runs a token command.
pub async fn run(cmd: TokenCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    client.require_token()?;
    match cmd {
        TokenCommand::Create {
            name,
            scopes,
            expires_days,
        } => {
            let scopes = (!scopes.is_empty()).then_some(scopes);
            let issued: Value = client
                .call(
                    Method::POST,
                    "/user/tokens",
                    Some(&json!({"name": name, "scopes": scopes, "expires_in_days": expires_days})),
                )
                .await?;
            if g.json {
                return output::json(&issued);
            }
            println!("{}", issued["token"].as_str().unwrap_or_default());
            let expires = issued["info"]["expires_at"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .map_or_else(
                    || "never expires".to_owned(),
                    |t| format!("expires {}", output::when(&t)),
                );
            eprintln!(
                "Token {name:?} created ({expires}). Copy it now: it will not be shown again."
            );
        }
        TokenCommand::List => {
            let tokens: Vec<TokenInfo> = client.get("/user/tokens").await?;
            if g.json {
                return output::json(&tokens);
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        format!("{}…", t.prefix),
                        t.scopes
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        output::when(&t.created_at),
                        t.last_used_at
                            .as_ref()
                            .map(output::when)
                            .unwrap_or_else(|| "never".into()),
                        match (&t.expires_at, t.renews_on_use) {
                            (Some(at), true) => format!("{} (renews on use)", output::when(at)),
                            (Some(at), false) => output::when(at),
                            (None, _) => "never".into(),
                        },
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "NAME",
                    "TOKEN",
                    "SCOPES",
                    "CREATED",
                    "LAST USED",
                    "EXPIRES",
                ],
                rows,
                "No tokens.",
            );
        }
        TokenCommand::Revoke { id } => {
            client
                .call::<(), Value>(Method::DELETE, &format!("/user/tokens/{id}"), None)
                .await?;
            if g.json {
                return output::json(&json!({"revoked": id}));
            }
            println!("Token {id} revoked.");
        }
    }
    Ok(())
}
