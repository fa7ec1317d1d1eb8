//! Slipway's HTTP server.
//!
//! One axum application serves the REST API under `/api/v1`, git smart HTTP
//! under `/git/{owner}/{repo}.git` and `/healthz`. Handlers stay thin: they
//! authorise the caller, validate input and call the store and the git host.

pub mod cluster;
pub mod config;
mod error;
mod extract;
mod http_metrics;
mod routes;
mod server;
mod setup;
mod state;

pub use config::Config;
pub use error::ApiError;
pub use server::{router, serve, shutdown_signal, Server};
pub use state::AppState;
