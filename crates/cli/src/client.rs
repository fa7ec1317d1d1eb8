//! A small typed client of the REST API that turns error bodies into readable errors.

use crate::profile::{self, Profile};
use crate::GlobalArgs;
use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default server when nothing is configured: the server's own default address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// An API client bound to one server and (optionally) one token.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// Builds a client from flags, environment and the saved profile, in that order.
    pub fn from_args(g: &GlobalArgs) -> anyhow::Result<Self> {
        let saved = profile::load(&profile::path(g.cli_config.as_deref()))?;
        Ok(Self::new(
            server_url(g, &saved),
            g.token.clone().or(saved.token),
        ))
    }

    /// A client for `base` with `token`.
    pub fn new(base: String, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Fails with advice when no token is configured.
    pub fn require_token(&self) -> anyhow::Result<()> {
        if self.token.is_none() {
            bail!("not logged in: run `slipway login` first (or pass --token)");
        }
        Ok(())
    }

    /// Sends a request and decodes the JSON answer (`()`-like for 204).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let res = self.send(method, path, body).await?;
        let url = res.url().to_string();
        let bytes = res.bytes().await.context("reading the server's answer")?;
        let text = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(text).with_context(|| format!("unexpected answer from {url}"))
    }

    /// Sends a GET and returns the successful response unread (plain text, event streams).
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.send::<()>(Method::GET, path, None).await
    }

    /// Sends a POST with a JSON body and returns the successful response
    /// unread (streamed answers such as `slipway run`'s output).
    pub async fn post_raw<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<reqwest::Response> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Sends a PUT whose body is streamed (`content_type`) and decodes the
    /// JSON answer (volume restores).
    pub async fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
        content_type: &str,
    ) -> anyhow::Result<T> {
        let url = format!("{}/api/v1{path}", self.base);
        let req = self
            .http
            .request(Method::PUT, &url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let res = self.dispatch(req).await?;
        let bytes = res.bytes().await.context("reading the server's answer")?;
        serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from {url}"))
    }

    /// Sends `method path` with an optional JSON body (through `dispatch`).
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.dispatch(req).await
    }

    /// Sends `req` with the token; a non-2xx answer becomes a readable error.
    async fn dispatch(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach the Slipway server at {} (is `slipway server` running?)",
                self.base
            )
        })?;
        let status = res.status();
        if !status.is_success() {
            let bytes = res.bytes().await.unwrap_or_default();
            return Err(api_error(status, &bytes));
        }
        Ok(res)
    }

    /// GET helper.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }
}

/// The server URL from flags/env, else the profile, else the default.
pub fn server_url(g: &GlobalArgs, saved: &Profile) -> String {
    g.server
        .clone()
        .or_else(|| saved.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

fn api_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    anyhow!("{message} (HTTP {})", status.as_u16())
}
