//! What every handler shares.

use crate::Config;
use slipway_git::GitHost;
use slipway_store::Store;
use std::sync::Arc;

/// Shared server state; cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    git: GitHost,
}

impl AppState {
    /// Bundles the parts handlers need.
    pub fn new(config: Config, store: Store, git: GitHost) -> Self {
        Self {
            inner: Arc::new(Inner { config, store, git }),
        }
    }
    /// The configuration the server started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// The repositories on disk.
    pub fn git(&self) -> &GitHost {
        &self.inner.git
    }
}
