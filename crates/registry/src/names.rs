//! Validation of repository names, tags and digests before any path is
//! built from them (OCI distribution spec grammar).

use crate::error::{RegistryError, Result};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Longest repository name accepted (the spec's practical bound).
const MAX_NAME_LEN: usize = 255;

/// Path components the storage layout uses for itself; a repository name
/// may not contain them, so `<name>/tags` can never be another repository
/// and URL tails split unambiguously.
pub const RESERVED_COMPONENTS: [&str; 5] = ["tags", "manifests", "blobs", "pushed", "uploads"];

/// Checks `name` against `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(RegistryError::NameInvalid(format!("{name:?}: {why}")));
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("a repository name has 1 to 255 characters");
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return bad("components are lowercase letters and digits, joined by '.', '_', '__' or dashes, separated by '/'");
        }
        if RESERVED_COMPONENTS.contains(&component) {
            return bad("tags, manifests, blobs, pushed and uploads are reserved component names");
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks `tag` against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let bytes = tag.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && bytes.len() <= 128 {
        Ok(())
    } else {
        Err(RegistryError::TagInvalid(format!(
            "{tag:?}: a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )))
    }
}

/// A validated `sha256:<64 lowercase hex>` content digest (the only
/// algorithm this registry stores).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; anything else is `DIGEST_INVALID`.
    pub fn parse(s: &str) -> Result<Self> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            RegistryError::DigestInvalid(format!("{s:?}: only sha256 digests are supported"))
        })?;
        Self::from_hex(hex)
            .ok_or_else(|| RegistryError::DigestInvalid(format!("{s:?} is not a sha256 digest")))
    }

    /// From the bare 64 hex digits (storage paths), if well formed.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher computed.
    pub fn from_hasher(h: Sha256) -> Self {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The bare hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "alice/web", "a.b/c_d/e__f/g--h", "x0/y-1"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "..",
            "a/../b",
            "/abs",
            "a//b",
            "Alice/web",
            "a/",
            "a_",
            "-a",
            "a___b",
            "a/tags",
            "a/b/manifests",
            "a\\b",
            "a b",
            "a.-b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_and_digests() {
        validate_tag("v1.0_rc-1").unwrap();
        validate_tag("_x").unwrap();
        for bad in ["", ".x", "-x", "a/b", "..", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad:?} accepted");
        }
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        for bad in ["sha256:../x", "md5:abc", "sha256:E3B0", "sha256:"] {
            assert!(Digest::parse(bad).is_err());
        }
    }
}
