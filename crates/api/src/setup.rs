//! First run: while no account exists, a one-time setup code (printed by the
//! server and written to `<data>/setup-token`) lets the operator create the
//! first administrator — the way Jenkins' initial admin password works.

use slipway_store::{Store, StoreError};
use std::path::{Path, PathBuf};

const SETUP_DIGEST_KEY: &str = "setup_token_digest";

/// Where the setup code is written for the operator.
pub fn setup_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("setup-token")
}

/// If the server has no accounts yet, makes a fresh setup code, stores its
/// digest and writes it to the data folder; returns it for printing.
pub async fn prepare(store: &Store, data_dir: &Path) -> Result<Option<String>, StoreError> {
    if store.count_users().await? > 0 {
        let _ = std::fs::remove_file(setup_token_path(data_dir));
        return Ok(None);
    }
    let code = slipway_auth::random_code(32);
    store
        .set_setting(SETUP_DIGEST_KEY, &slipway_auth::token_digest(&code))
        .await?;
    write_private(&setup_token_path(data_dir), &code)
        .map_err(|e| StoreError::Io(format!("cannot write setup token: {e}")))?;
    Ok(Some(code))
}

/// True when `code` is the current setup code.
pub async fn check(store: &Store, code: &str) -> Result<bool, StoreError> {
    let expected = store.setting(SETUP_DIGEST_KEY).await?;
    Ok(expected.is_some_and(|d| d == slipway_auth::token_digest(code)))
}

/// Retires the setup code once the first administrator exists.
pub async fn finish(store: &Store, data_dir: &Path) -> Result<(), StoreError> {
    store.delete_setting(SETUP_DIGEST_KEY).await?;
    let _ = std::fs::remove_file(setup_token_path(data_dir));
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(format!("{text}\n").as_bytes())
}
