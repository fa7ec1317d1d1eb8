//! The refs and paths a browsing request names, validated before git sees
//! them: a ref can only name a ref or an object (never an option or a
//! revision expression such as `a..b` or `HEAD~2`), and a path can only name
//! something below the repository's root.

use super::BrowseError;

/// Longest ref name accepted (git itself has no limit; requests do).
pub const MAX_REF_LEN: usize = 255;
/// Longest path accepted.
pub const MAX_PATH_LEN: usize = 4096;

/// A branch or tag name, `HEAD`, or a full or abbreviated hex object name,
/// valid under `git check-ref-format --allow-onelevel` and not starting with
/// `-`. Exists so that browsing code cannot pass unchecked text to git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rev(String);

impl Rev {
    /// Checks `s` against git's ref-name rules (see `git help check-ref-format`).
    pub fn parse(s: &str) -> Result<Rev, BrowseError> {
        let bad = |why: &str| Err(BrowseError::Invalid(format!("invalid ref {s:?}: {why}")));
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.len() > MAX_REF_LEN {
            return bad("it is longer than 255 bytes");
        }
        if s.starts_with('-') {
            return bad("it starts with '-'");
        }
        if s == "@" {
            return bad("'@' alone is not a ref name");
        }
        if s.contains("..") {
            return bad("it contains '..'");
        }
        if s.contains("@{") {
            return bad("it contains '@{'");
        }
        if let Some(c) = s.chars().find(|c| {
            c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        }) {
            return bad(&format!("it contains {c:?}"));
        }
        if s.starts_with('/') || s.ends_with('/') || s.contains("//") {
            return bad("it has an empty '/' component");
        }
        if s.ends_with('.') {
            return bad("it ends with '.'");
        }
        for part in s.split('/') {
            if part.starts_with('.') {
                return bad("a component starts with '.'");
            }
            if part.ends_with(".lock") {
                return bad("a component ends with '.lock'");
            }
        }
        Ok(Rev(s.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the name is 4 to 64 hex digits (a possible object name).
    pub fn is_hex(&self) -> bool {
        (4..=64).contains(&self.0.len()) && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl std::fmt::Display for Rev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path inside a repository's tree, relative, without `.`/`..` components,
/// NUL or control characters; `""` is the root. A trailing `/` is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreePath(String);

impl TreePath {
    /// Checks `s` and normalises a trailing `/` away.
    pub fn parse(s: &str) -> Result<TreePath, BrowseError> {
        let bad = |why: &str| {
            let shown: String = s.chars().take(100).collect();
            Err(BrowseError::Invalid(format!(
                "invalid path {shown:?}: {why}"
            )))
        };
        if s.len() > MAX_PATH_LEN {
            return bad("it is longer than 4096 bytes");
        }
        if s.starts_with('/') {
            return bad("paths are relative to the repository root (no leading '/')");
        }
        if s.chars().any(|c| c.is_control()) {
            return bad("it contains a control character");
        }
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        if trimmed.is_empty() {
            return Ok(TreePath::default());
        }
        for part in trimmed.split('/') {
            match part {
                "" => return bad("it has an empty component"),
                "." | ".." => return bad("'.' and '..' are not allowed"),
                _ => {}
            }
        }
        Ok(TreePath(trimmed.to_owned()))
    }

    /// The path (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last component (`""` for the root).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// `self/name`.
    pub(crate) fn join(&self, name: &str) -> String {
        if self.0.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.0)
        }
    }
}

impl std::fmt::Display for TreePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ref_names_and_object_names() {
        for ok in [
            "main",
            "feature/x",
            "v1.0",
            "HEAD",
            "release-2024_01",
            "deadbeef",
            "0123456789abcdef0123456789abcdef01234567",
            "ünïcode",
            "a@b",
        ] {
            assert!(Rev::parse(ok).is_ok(), "{ok}");
        }
        assert!(Rev::parse("deadbeef").unwrap().is_hex());
        assert!(!Rev::parse("main").unwrap().is_hex());
    }

    #[test]
    fn refuses_options_ranges_and_expressions() {
        for bad in [
            "",
            "-x",
            "--upload-pack=x",
            "--output=/tmp/x",
            "../x",
            "a..b",
            "HEAD~1",
            "HEAD^",
            "main:README.md",
            "main@{1}",
            "@",
            "a b",
            "a\0b",
            "a\nb",
            "ref*",
            "ref?",
            "ref[",
            "a\\b",
            "/main",
            "main/",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "a/x.lock/b",
            "trailing.",
        ] {
            assert!(Rev::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Rev::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn paths_are_relative_and_bounded() {
        assert_eq!(TreePath::parse("").unwrap().as_str(), "");
        assert!(TreePath::parse("/").is_err());
        assert_eq!(TreePath::parse("src/").unwrap().as_str(), "src");
        assert_eq!(
            TreePath::parse("src/a b.txt").unwrap().file_name(),
            "a b.txt"
        );
        assert_eq!(TreePath::parse("-rf").unwrap().as_str(), "-rf");
        assert_eq!(TreePath::parse("a:b").unwrap().as_str(), "a:b");
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../b",
            "./a",
            "a/.",
            "a//b",
            "a\0b",
            "a\nb",
        ] {
            assert!(TreePath::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(TreePath::parse(&"a/".repeat(3000)).is_err());
        let p = TreePath::parse("src/lib").unwrap();
        assert_eq!(p.join("x.rs"), "src/lib/x.rs");
        assert_eq!(TreePath::default().join("x.rs"), "x.rs");
    }
}
