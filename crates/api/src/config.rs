//! Server configuration: defaults that work with no file at all, overridden by
//! an optional TOML file, then by `SLIPWAY_*` environment variables.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `slipway server` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (`SLIPWAY_LISTEN`). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the database, repositories and logs live (`SLIPWAY_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The git program used for hosting (`SLIPWAY_GIT_BIN`).
    pub git_bin: PathBuf,
    /// Largest git push accepted, in bytes (`SLIPWAY_MAX_PUSH_BYTES`).
    pub max_push_bytes: u64,
    /// Largest JSON request body accepted by the API, in bytes.
    pub max_api_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("slipway-data"),
            git_bin: PathBuf::from("git"),
            max_push_bytes: 2 * 1024 * 1024 * 1024,
            max_api_body_bytes: 1024 * 1024,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then `SLIPWAY_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    path.display()
                ))));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only variables naming a server setting: the CLI's own SLIPWAY_* variables
        // (SLIPWAY_TOKEN, SLIPWAY_SERVER, …) share the prefix.
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        fig.merge(
            Env::prefixed("SLIPWAY_").filter(move |key| known.iter().any(|k| key == k.as_str())),
        )
        .extract()
        .map_err(Box::new)
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("slipway.db")
    }
}
