//! Compose files read into Slipway's stack model.
//!
//! Users deploy multi-service apps with the Compose file they already have
//! (`compose.yaml`, `docker-compose.yml`, in the Compose Specification's own
//! syntax). [`parse`] reads one into a [`StackSpec`]: every key Slipway
//! understands is checked and converted, keys that would weaken the
//! isolation of the host (`privileged`, `network_mode`, host paths…) and
//! keys Slipway does not know are refused, each error naming the file, the
//! line and the key (`compose.yaml:12: services.db.privileged: not allowed
//! (containers run unprivileged)`). Things that are accepted but behave
//! differently from `docker compose` (host ports, `container_name`…) become
//! [`StackSpec::notices`]. `docs/stacks.md` lists the supported subset.
//!
//! Nothing here does I/O of its own: the other files of the deployed commit
//! (`env_file`, bind-mounted directories) are reached through [`RepoFiles`].

#![warn(missing_docs)]

mod compose;
mod interp;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

use slipway_domain::stack::StackSpec;
use std::collections::BTreeMap;
use std::fmt;

/// The names `docker compose` looks for, in its lookup order: the first that
/// exists in the repository (at its root) is the stack's file.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Largest Compose file accepted (also the limit for each `env_file`).
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// Most services one file may declare.
pub const MAX_SERVICES: usize = 64;

/// Most errors reported at once (more are counted, not listed).
pub const MAX_ERRORS: usize = 20;

/// Where the parser reads other files of the deployed commit (`env_file`)
/// and checks directories (bind mounts). Paths are relative to the
/// repository root, normalized (`deploy/conf`, no `.` or `..`; the root
/// itself is `.`).
pub trait RepoFiles {
    /// The content of the file at `path`, or `None` if there is no such file.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// Whether `path` is a directory of the commit.
    fn is_dir(&self, path: &str) -> bool;
}

/// What [`parse`] reads.
#[derive(Clone, Copy)]
pub struct ParseInput<'a> {
    /// The file's path in the repository, e.g. `compose.yaml` or
    /// `deploy/docker-compose.yml`: relative paths in it are relative to its
    /// directory, and errors name it.
    pub file_name: &'a str,
    /// The file's content.
    pub text: &'a str,
    /// The app's configuration: the values of `${VAR}` interpolation (and of
    /// bare `KEY` entries of `environment`).
    pub vars: &'a BTreeMap<String, String>,
    /// The other files of the deployed commit.
    pub files: &'a dyn RepoFiles,
}

/// One problem of a Compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackError {
    /// The file it is in (the Compose file's path in the repository).
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The key path, e.g. `services.db.privileged` (empty when the problem
    /// is not about a key, e.g. invalid YAML).
    pub path: String,
    /// What is wrong, and if possible what to do instead.
    pub message: String,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.path, self.message
            )
        }
    }
}

/// Every problem found in a Compose file (at most [`MAX_ERRORS`] listed), in
/// line order. Displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackErrors {
    /// The problems listed, in line order.
    pub errors: Vec<StackError>,
    /// How many more were found but not listed.
    pub more: usize,
}

impl fmt::Display for StackErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.more > 0 {
            write!(f, "\n… and {} more", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for StackErrors {}

/// Reads a Compose file into a [`StackSpec`]: services in start order (each
/// after the services it depends on, file order otherwise), the top-level
/// named volumes, and notices for what was accepted but behaves
/// differently. Any error refuses the whole file: all errors found are
/// returned (up to [`MAX_ERRORS`]).
pub fn parse(input: &ParseInput) -> Result<StackSpec, StackErrors> {
    compose::parse(input)
}

/// The first of [`DEFAULT_FILES`] that exists at the root of `files`.
pub fn default_file(files: &dyn RepoFiles) -> Option<&'static str> {
    DEFAULT_FILES
        .into_iter()
        .find(|name| files.read(name).is_some())
}
