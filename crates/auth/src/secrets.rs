//! Secrets encrypted at rest (CI repository secrets, app secrets).
//!
//! Values are sealed with XChaCha20-Poly1305 under a per-data-directory key
//! (`<data>/ci-secrets.key`, 32 random bytes, mode 0600) before they reach the
//! database; the repository id and secret name are authenticated with them,
//! so a sealed value cannot be moved to another secret. A database copy alone
//! does not reveal secrets.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;

const PREFIX: &str = "x1:";
const NONCE_LEN: usize = 24;

/// The sealing key of one data directory.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// Reads the key file, creating it (0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let key = match std::fs::read(path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k: [u8; 32] = rand::random();
                write_private(path, &k)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                k.to_vec()
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if key.len() != 32 {
            return Err(format!(
                "{} must hold exactly 32 bytes; restore it from a backup",
                path.display()
            ));
        }
        Ok(Self {
            cipher: XChaCha20Poly1305::new(key.as_slice().into()),
        })
    }

    fn aad(repo_id: i64, name: &str) -> Vec<u8> {
        format!("slipway-secret:{repo_id}:{name}").into_bytes()
    }

    /// Encrypts `value` for secret `name` of repository `repo_id`.
    pub fn seal(&self, repo_id: i64, name: &str, value: &str) -> Result<String, String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = Self::aad(repo_id, name);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Decrypts a value sealed by [`SecretBox::seal`] for the same repository and name.
    pub fn open(&self, repo_id: i64, name: &str, stored: &str) -> Result<String, String> {
        let bad = || {
            format!(
                "secret {name:?} cannot be decrypted (was ci-secrets.key replaced?); set it again"
            )
        };
        let raw = stored.strip_prefix(PREFIX).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let aad = Self::aad(repo_id, name);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_repo_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let b = SecretBox::load_or_create(&path).unwrap();
        let sealed = b.seal(1, "TOKEN", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(b.open(1, "TOKEN", &sealed).unwrap(), "hunter2");
        assert!(b.open(2, "TOKEN", &sealed).is_err());
        assert!(b.open(1, "OTHER", &sealed).is_err());
        // The same key file opens it again after a restart.
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open(1, "TOKEN", &sealed).unwrap(), "hunter2");
        assert!(again.open(1, "TOKEN", "plain").is_err());
    }
}
