//! `slipway admin …`: first-run setup and account management.

use super::{read_password, read_username};
use crate::client::{server_url, Client};
use crate::profile::{self, Profile};
use crate::{output, GlobalArgs};
use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Create the first administrator with the setup token the server printed.
    Setup {
        /// The one-time setup token (also in <data-dir>/setup-token).
        #[arg(long = "setup-token")]
        setup_token: String,
        /// The administrator's user name.
        #[arg(long)]
        username: Option<String>,
        /// Read the password from stdin (one line); also what happens when stdin is not a terminal.
        #[arg(long = "stdin", alias = "password-stdin")]
        password_stdin: bool,
    },
    /// Create an account: through the API, or directly in a data directory with --data-dir.
    CreateUser {
        /// The new user's name.
        username: String,
        /// Make the user a site administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from stdin (one line); also what happens when stdin is not a terminal.
        #[arg(long = "stdin", alias = "password-stdin")]
        password_stdin: bool,
        /// Write straight into this data directory (works with the server stopped or running).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List accounts.
    Users,
}

/// Runs an admin command.
pub async fn run(cmd: AdminCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Setup {
            setup_token,
            username,
            password_stdin,
        } => {
            let username = read_username(username)?;
            let password = read_password(password_stdin, "Password: ")?;
            let path = profile::path(g.cli_config.as_deref());
            let saved = profile::load(&path)?;
            let client = Client::new(server_url(g, &saved), None);
            let issued: Value = client
                .call(
                    Method::POST,
                    "/setup",
                    Some(&json!({"setup_token": setup_token, "username": username, "password": password})),
                )
                .await?;
            save_login(&path, client.base(), &issued)?;
            if g.json {
                return output::json(&issued["user"]);
            }
            println!(
                "Administrator {username} created and logged in to {}.",
                client.base()
            );
            Ok(())
        }
        AdminCommand::CreateUser {
            username,
            admin,
            password_stdin,
            data_dir,
        } => {
            let password = read_password(password_stdin, "Password for the new user: ")?;
            let user: Value = match data_dir {
                Some(dir) => create_offline(&dir, &username, &password, admin).await?,
                None => {
                    let client = Client::from_args(g)?;
                    client.require_token()?;
                    client
                        .call(
                            Method::POST,
                            "/users",
                            Some(&json!({"username": username, "password": password, "is_admin": admin})),
                        )
                        .await?
                }
            };
            if g.json {
                return output::json(&user);
            }
            println!(
                "User {} created{}.",
                user["username"].as_str().unwrap_or(&username),
                if admin { " (administrator)" } else { "" }
            );
            Ok(())
        }
        AdminCommand::Users => {
            let client = Client::from_args(g)?;
            client.require_token()?;
            let users: Vec<slipway_domain::User> = client.get("/users").await?;
            if g.json {
                return output::json(&users);
            }
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        u.username.clone(),
                        if u.is_admin { "admin" } else { "" }.into(),
                        output::when(&u.created_at),
                    ]
                })
                .collect();
            output::table(&["USER", "ROLE", "CREATED"], rows, "No users.");
            Ok(())
        }
    }
}

/// Saves a login answer (`{token, user}`) as the CLI profile.
pub fn save_login(path: &std::path::Path, server: &str, issued: &Value) -> anyhow::Result<()> {
    let profile = Profile {
        server: Some(server.to_owned()),
        username: issued["user"]["username"].as_str().map(str::to_owned),
        token: issued["token"].as_str().map(str::to_owned),
    };
    profile::save(path, &profile)
}

async fn create_offline(
    dir: &std::path::Path,
    username: &str,
    password: &str,
    admin: bool,
) -> anyhow::Result<Value> {
    let name = slipway_domain::Username::parse(username)?;
    let hash = slipway_auth::hash_password(password)?;
    let store = slipway_store::Store::open(&dir.join("slipway.db"))
        .await
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    let user = store.create_user(name.as_str(), &hash, admin).await?;
    if admin {
        // The first administrator exists now, so the setup token is spent.
        let _ = store.delete_setting("setup_token_digest").await;
        let _ = std::fs::remove_file(dir.join("setup-token"));
    }
    Ok(serde_json::to_value(user)?)
}
