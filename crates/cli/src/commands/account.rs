//! `slipway login`, `logout`, `whoami`.

use super::admin::save_login;
use super::{read_password, read_username};
use crate::client::{server_url, Client};
use crate::profile;
use crate::{output, GlobalArgs};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// User name (asked for when omitted).
    #[arg(long, short)]
    username: Option<String>,
    /// Read the password from stdin (one line); also what happens when stdin is not a terminal.
    #[arg(long = "stdin", alias = "password-stdin")]
    password_stdin: bool,
}

/// Exchanges a password for a token and saves both server and token.
pub async fn login(args: LoginArgs, g: &GlobalArgs) -> anyhow::Result<()> {
    let path = profile::path(g.cli_config.as_deref());
    let saved = profile::load(&path)?;
    let username = read_username(args.username)?;
    let password = read_password(args.password_stdin, "Password: ")?;
    let client = Client::new(server_url(g, &saved), None);
    let host = hostname();
    let issued: Value = client
        .call(
            Method::POST,
            "/auth/login",
            Some(&json!({"username": username, "password": password, "token_name": format!("cli@{host}")})),
        )
        .await?;
    save_login(&path, client.base(), &issued)?;
    if g.json {
        return output::json(&issued["user"]);
    }
    println!("Logged in to {} as {username}.", client.base());
    Ok(())
}

/// Removes the saved token (the token stays valid until revoked).
pub fn logout(g: &GlobalArgs) -> anyhow::Result<()> {
    let path = profile::path(g.cli_config.as_deref());
    let mut saved = profile::load(&path)?;
    saved.token = None;
    profile::save(&path, &saved)?;
    println!("Logged out. Revoke the token with `slipway token revoke` if it may have leaked.");
    Ok(())
}

/// Prints the caller's account.
pub async fn whoami(g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    client.require_token()?;
    let user: slipway_domain::User = client.get("/user").await?;
    if g.json {
        return output::json(&user);
    }
    println!(
        "{}{} on {}",
        user.username,
        if user.is_admin {
            " (administrator)"
        } else {
            ""
        },
        client.base()
    );
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}
