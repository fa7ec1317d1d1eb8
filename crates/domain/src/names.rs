//! Validated names. A name that passed these checks is safe to use as one path
//! segment on disk and in URLs: no separators, no dot-segments, bounded length.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a user-supplied name was refused; the message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// A user (and namespace) name: lowercase letters, digits and single dashes,
/// 1–39 characters, starting with a letter or digit — the rule GitHub users know.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Checks `raw` and wraps it; see the type's doc for the rule.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if raw.is_empty()
            || raw.len() > 39
            || !ok_chars
            || raw.starts_with('-')
            || raw.ends_with('-')
            || raw.contains("--")
        {
            return Err(NameError(format!(
                "invalid user name {raw:?}: use 1-39 lowercase letters, digits or single dashes, not starting or ending with a dash"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A repository name: letters, digits, `.`, `_`, `-`, 1–100 characters, not
/// starting with `.` or `-`, and not ending in `.git` (that suffix belongs to URLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

impl RepoName {
    /// Checks `raw` and wraps it; see the type's doc for the rule.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if raw.is_empty()
            || raw.len() > 100
            || !ok_chars
            || raw.starts_with('.')
            || raw.starts_with('-')
            || raw.ends_with(".git")
            || raw.contains("..")
        {
            return Err(NameError(format!(
                "invalid repository name {raw:?}: use 1-100 letters, digits, '.', '_' or '-', not starting with '.' or '-' and without a .git suffix"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(n: $t) -> String {
                n.0
            }
        }
    };
}
string_newtype_impls!(Username);
string_newtype_impls!(RepoName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "a", "bob-2", "x9"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "-a",
            "a-",
            "a--b",
            "a/b",
            "..",
            "a.b",
            &"x".repeat(40),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repo_names_refuse_traversal() {
        for ok in ["web", "my.site", "a_b-c", "A1"] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "a/b",
            ".hidden",
            "-x",
            "x.git",
            "a..b",
            "a b",
            "a\0b",
            "a%2fb",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
