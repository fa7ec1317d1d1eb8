//! Language runtimes, one TOML file each under `crates/exec/runtimes/`,
//! embedded at build time so the binary carries its own catalogue.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The embedded runtime files (name, contents).
const FILES: &[(&str, &str)] = &[
    ("busybox-sh", include_str!("../runtimes/busybox-sh.toml")),
    ("bash", include_str!("../runtimes/bash.toml")),
    ("c", include_str!("../runtimes/c.toml")),
    ("cpp", include_str!("../runtimes/cpp.toml")),
    ("go", include_str!("../runtimes/go.toml")),
    ("javascript", include_str!("../runtimes/javascript.toml")),
    ("python", include_str!("../runtimes/python.toml")),
    ("ruby", include_str!("../runtimes/ruby.toml")),
];

/// One language runtime: what image runs it and how a program is compiled and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeDef {
    /// Canonical language name clients send (`python`, `c`, `busybox-sh`…).
    pub language: String,
    /// Version of the toolchain in the image.
    pub version: String,
    /// Other names accepted for the language.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Local image tag the program runs in.
    pub image: String,
    /// File name given to the first file when the client sends no name.
    pub source_file: String,
    /// Shell command compiling the files in `/work` (none for interpreters).
    #[serde(default)]
    pub compile: Option<String>,
    /// Shell command running the program; `"$@"` are the job's arguments.
    pub run: String,
    /// Debian packages of the image (empty for the busybox runtime).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Extra environment of the sandbox (toolchain caches pointing at /tmp…).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl RuntimeDef {
    /// Whether `name` is this runtime's language or one of its aliases (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        self.language.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Whether the image is the tiny busybox one (bootstrapped, not built with apt).
    pub fn is_busybox(&self) -> bool {
        self.packages.is_empty()
    }
}

/// Every runtime, parsed once. Panics at first use if an embedded file is
/// malformed (a unit test parses them all, so that never ships).
pub fn all() -> &'static [RuntimeDef] {
    static ALL: OnceLock<Vec<RuntimeDef>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, text)| {
                toml::from_str(text)
                    .unwrap_or_else(|e| panic!("embedded runtime {name}.toml is invalid: {e}"))
            })
            .collect()
    })
}

/// The runtime for `language` (name or alias) and optional `version`
/// (`None`, `""` or `"*"` = any; otherwise an exact match or a prefix like `3`).
pub fn find(language: &str, version: Option<&str>) -> Option<&'static RuntimeDef> {
    all().iter().find(|r| {
        r.answers_to(language)
            && match version.map(str::trim) {
                None | Some("") | Some("*") => true,
                Some(v) => r.version == v || r.version.starts_with(&format!("{v}.")),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_parses_and_names_are_unique() {
        let all = all();
        assert_eq!(all.len(), FILES.len());
        for r in all {
            assert!(!r.run.is_empty() && !r.image.is_empty(), "{r:?}");
            let others = all.iter().filter(|o| o.language != r.language);
            for o in others {
                assert!(
                    !o.answers_to(&r.language),
                    "{} shadows {}",
                    o.language,
                    r.language
                );
            }
        }
        for lang in [
            "go",
            "javascript",
            "c",
            "python",
            "c++",
            "ruby",
            "bash",
            "busybox-sh",
        ] {
            assert!(find(lang, None).is_some(), "{lang} missing");
        }
    }

    #[test]
    fn lookup_by_alias_and_version() {
        assert_eq!(find("PY", Some("3")).unwrap().language, "python");
        assert_eq!(find("node", Some("*")).unwrap().language, "javascript");
        assert!(find("python", Some("2")).is_none());
        assert!(find("cobol", None).is_none());
    }
}
