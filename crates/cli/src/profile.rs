//! The CLI's saved login: server URL, user and token, in a 0600 TOML file.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `slipway login` remembers.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Server base URL, e.g. `http://127.0.0.1:7700`.
    pub server: Option<String>,
    /// The account name the token belongs to.
    pub username: Option<String>,
    /// The access token.
    pub token: Option<String>,
}

/// Where the profile lives: `--cli-config`, else `~/.config/slipway/cli.toml`.
pub fn path(explicit: Option<&Path>) -> PathBuf {
    explicit.map(Path::to_path_buf).unwrap_or_else(|| {
        dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("slipway")
            .join("cli.toml")
    })
}

/// Reads the profile; an absent file is an empty profile.
pub fn load(path: &Path) -> anyhow::Result<Profile> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the profile, readable by its owner only (it holds a token).
pub fn save(path: &Path, profile: &Profile) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(toml::to_string(profile)?.as_bytes())?;
    Ok(())
}
