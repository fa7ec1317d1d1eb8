//! The `.slipway.yml` pipeline file: its model, parsing and validation.
//!
//! Close to Woodpecker/GitLab: `steps:` (a list of named steps or a map from
//! name to step) and optional `services:` (side containers reachable by name).
//! Files come from pushes, so they are untrusted: size, counts and names are
//! bounded, unknown keys are refused, and every error names its line/column
//! or the step at fault.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use slipway_domain::limits::{self, LimitPolicy, Resources};

/// Largest pipeline file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// Most steps one pipeline may have.
pub const MAX_STEPS: usize = 50;
/// Most services one pipeline may have.
pub const MAX_SERVICES: usize = 10;
/// Step timeout when the file gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest step timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Name of the pipeline file at the root of a repository.
pub const PIPELINE_FILE: &str = ".slipway.yml";

impl Pipeline {
    /// Fills in the server's default limits and refuses requests over its
    /// maximums (done when the pipeline is queued, so a refusal is the
    /// pipeline's validation error).
    pub fn apply_limits(&mut self, policy: &LimitPolicy) -> Result<(), ConfigError> {
        for s in &mut self.steps {
            s.resources = policy
                .resolve(s.resources, &format!("step {:?}", s.name))
                .map_err(ConfigError::new)?;
        }
        for s in &mut self.services {
            s.resources = policy
                .resolve(s.resources, &format!("service {:?}", s.name))
                .map_err(ConfigError::new)?;
        }
        Ok(())
    }
}

/// Why a pipeline file was refused; the message is shown on the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{PIPELINE_FILE}: {message}")]
pub struct ConfigError {
    /// What is wrong, with line and column when the parser knows them.
    pub message: String,
    /// 1-based line of the problem, if known.
    pub line: Option<usize>,
    /// 1-based column of the problem, if known.
    pub column: Option<usize>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// A validated pipeline, ready to be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Steps in file order.
    pub steps: Vec<Step>,
    /// Side containers started before the steps.
    pub services: Vec<Service>,
    /// Workspace directories kept between pipelines of the repository
    /// (dependency caches, build outputs), relative to the workspace.
    #[serde(default)]
    pub cache: Vec<String>,
    /// App images built (and deployed) after the steps succeed; added by the
    /// queue for apps deployed from the pushed branch, never by the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageBuild>,
}

/// An app image to build from the commit once the steps succeed, then
/// release through the deployer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuild {
    /// The app's id.
    pub app_id: i64,
    /// The app's name.
    pub app: String,
    /// Dockerfile path in the repository.
    pub dockerfile: String,
    /// Memory and CPU of the build's `RUN` containers (the server's CI defaults).
    #[serde(default)]
    pub resources: Resources,
}

impl ImageBuild {
    /// Name of the pipeline step that builds it (`:` never appears in file step names).
    pub fn step_name(&self) -> String {
        format!("image:{}", self.app)
    }
}

/// One step: a container running shell commands in the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique name (also its DNS name when services exist).
    pub name: String,
    /// Local image to run.
    pub image: String,
    /// Shell lines, run with `set -e`.
    pub commands: Vec<String>,
    /// Extra environment variables.
    pub environment: BTreeMap<String, String>,
    /// Names of repository secrets injected as environment variables.
    pub secrets: Vec<String>,
    /// Conditions under which the step runs (otherwise it is skipped).
    pub when: When,
    /// Steps that must succeed before this one starts.
    pub depends_on: Vec<String>,
    /// Longest the step may run before it is killed.
    pub timeout: Duration,
    /// Memory and CPU: asked for in the file, then the limits applied
    /// (server defaults filled in when the pipeline is queued).
    #[serde(default)]
    pub resources: Resources,
}

impl Step {
    /// The script given to `sh -c`: `set -e` then the commands.
    pub fn script(&self) -> String {
        let mut s = String::from("set -e\n");
        for c in &self.commands {
            s.push_str(c);
            s.push('\n');
        }
        s
    }
}

/// A side container (database, cache…) reachable by its name from the steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Unique name, its host name on the pipeline network.
    pub name: String,
    /// Local image to run.
    pub image: String,
    /// Shell lines to run instead of the image's command (optional).
    pub commands: Vec<String>,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Memory and CPU, as for steps.
    #[serde(default)]
    pub resources: Resources,
}

/// Conditions on a step: every given list must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct When {
    /// Branch glob patterns (`main`, `release/*`); empty = any branch.
    pub branch: Vec<String>,
    /// Events (`push`, `tag`, `manual`); empty = any event.
    pub event: Vec<String>,
}

/// Events a pipeline can be started by.
pub const EVENTS: &[&str] = &["push", "tag", "manual"];

impl When {
    /// Whether a pipeline for `branch` started by `event` runs this step.
    pub fn matches(&self, branch: &str, event: &str) -> bool {
        let branch_ok = self.branch.is_empty()
            || self.branch.iter().any(|p| {
                glob::Pattern::new(p)
                    .map(|g| g.matches_with(branch, glob_options()))
                    .unwrap_or(false)
            });
        let event_ok = self.event.is_empty() || self.event.iter().any(|e| e == event);
        branch_ok && event_ok
    }
}

fn glob_options() -> glob::MatchOptions {
    glob::MatchOptions {
        case_sensitive: true,
        // `release/*` must not match `release/a/b`; `**` does.
        require_literal_separator: true,
        require_literal_leading_dot: false,
    }
}

/// Parses and validates a pipeline file.
pub fn parse(text: &str) -> Result<Pipeline, ConfigError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigError::new(format!(
            "the file is {} bytes; at most {MAX_FILE_BYTES} bytes are accepted",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        return Err(ConfigError::new(
            "the file is empty; it needs a `steps:` section",
        ));
    }
    let raw: RawFile = serde_norway::from_str(text).map_err(|e| {
        let loc = e.location();
        ConfigError {
            message: e.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
        }
    })?;
    validate(raw)
}

// ---- raw file shape -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    steps: Named<RawStep>,
    #[serde(default)]
    services: Option<Named<RawService>>,
    #[serde(default)]
    cache: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    name: Option<String>,
    image: String,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, Scalar>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    when: Option<RawWhen>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    timeout: Option<Scalar>,
    #[serde(default)]
    resources: Option<RawResources>,
}

/// `resources: {memory: 512m, cpus: 1.5}` of a step or service.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    memory: Option<Scalar>,
    #[serde(default)]
    cpus: Option<Scalar>,
}

impl RawResources {
    fn parse(raw: Option<RawResources>, name: &str) -> Result<Resources, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Resources::default());
        };
        let at = |m: String| ConfigError::new(format!("{name:?}: resources: {m}"));
        Ok(Resources {
            memory_bytes: raw
                .memory
                .map(|m| limits::parse_memory(&m.into_string()).map_err(at))
                .transpose()?,
            nano_cpus: raw
                .cpus
                .map(|c| limits::parse_cpus(&c.into_string()).map_err(at))
                .transpose()?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    name: Option<String>,
    image: String,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, Scalar>,
    #[serde(default)]
    resources: Option<RawResources>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    branch: Option<OneOrMany>,
    #[serde(default)]
    event: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A YAML scalar used as a string (`PORT: 5432` is fine in `environment`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

trait HasName {
    fn set_name(&mut self, name: String);
}
impl HasName for RawStep {
    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }
}
impl HasName for RawService {
    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }
}

/// A list of named items, written either as a YAML list or as a map from name to item.
struct Named<T>(Vec<T>);

impl<'de, T: Deserialize<'de> + HasName> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + HasName> Visitor<'de> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of items with `name:` or a map from name to item")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<T>()? {
                    out.push(item);
                    if out.len() > MAX_STEPS {
                        return Err(de::Error::custom(format!("more than {MAX_STEPS} entries")));
                    }
                }
                Ok(Named(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let mut item: T = map.next_value()?;
                    item.set_name(key);
                    out.push(item);
                    if out.len() > MAX_STEPS {
                        return Err(de::Error::custom(format!("more than {MAX_STEPS} entries")));
                    }
                }
                Ok(Named(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

// ---- validation -----------------------------------------------------------

fn validate(raw: RawFile) -> Result<Pipeline, ConfigError> {
    let err = |m: String| Err(ConfigError::new(m));
    if raw.steps.0.is_empty() {
        return err("`steps:` is empty; add at least one step".into());
    }
    if raw.steps.0.len() > MAX_STEPS {
        return err(format!(
            "{} steps; at most {MAX_STEPS} are allowed",
            raw.steps.0.len()
        ));
    }
    let raw_services = raw.services.map(|s| s.0).unwrap_or_default();
    if raw_services.len() > MAX_SERVICES {
        return err(format!(
            "{} services; at most {MAX_SERVICES} are allowed",
            raw_services.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut services = Vec::new();
    for (i, s) in raw_services.into_iter().enumerate() {
        let name = s
            .name
            .ok_or_else(|| ConfigError::new(format!("service #{} has no `name:`", i + 1)))?;
        check_name(&name, "service")?;
        if !seen.insert(name.clone()) {
            return err(format!("the name {name:?} is used twice"));
        }
        check_image(&s.image, &name)?;
        services.push(Service {
            resources: RawResources::parse(s.resources, &name)?,
            environment: env_map(s.environment, &name)?,
            name,
            image: s.image,
            commands: s.commands,
        });
    }
    let mut steps = Vec::new();
    for (i, s) in raw.steps.0.into_iter().enumerate() {
        let name = s
            .name
            .ok_or_else(|| ConfigError::new(format!("step #{} has no `name:`", i + 1)))?;
        check_name(&name, "step")?;
        if !seen.insert(name.clone()) {
            return err(format!("the name {name:?} is used twice"));
        }
        check_image(&s.image, &name)?;
        if s.commands.is_empty() {
            return err(format!("step {name:?} has no `commands:`"));
        }
        for secret in &s.secrets {
            if !is_env_name(secret) {
                return err(format!(
                    "step {name:?}: secret name {secret:?} must look like an environment variable (A-Z, 0-9, _)"
                ));
            }
        }
        let when = match s.when {
            None => When::default(),
            Some(w) => {
                let when = When {
                    branch: w.branch.map(OneOrMany::into_vec).unwrap_or_default(),
                    event: w.event.map(OneOrMany::into_vec).unwrap_or_default(),
                };
                for p in &when.branch {
                    if let Err(e) = glob::Pattern::new(p) {
                        return err(format!("step {name:?}: bad branch pattern {p:?}: {e}"));
                    }
                }
                for e in &when.event {
                    if !EVENTS.contains(&e.as_str()) {
                        return err(format!(
                            "step {name:?}: unknown event {e:?} (known: {})",
                            EVENTS.join(", ")
                        ));
                    }
                }
                when
            }
        };
        let timeout = match s.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_duration(&t.into_string())
                .map_err(|m| ConfigError::new(format!("step {name:?}: {m}")))?,
        };
        steps.push(Step {
            resources: RawResources::parse(s.resources, &name)?,
            environment: env_map(s.environment, &name)?,
            name,
            image: s.image,
            commands: s.commands,
            secrets: s.secrets,
            when,
            depends_on: s.depends_on,
            timeout,
        });
    }
    check_graph(&steps)?;
    let cache = validate_cache(raw.cache)?;
    Ok(Pipeline {
        steps,
        services,
        cache,
        images: Vec::new(),
    })
}

fn check_name(name: &str, what: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{what} name {name:?} must be 1-63 characters of a-z, 0-9, - and _, starting with a letter or digit"
        )))
    }
}

fn check_image(image: &str, step: &str) -> Result<(), ConfigError> {
    if image.is_empty() || image.len() > 255 || image.chars().any(|c| c.is_whitespace()) {
        return Err(ConfigError::new(format!(
            "{step:?}: `image:` must be a non-empty image reference without spaces"
        )));
    }
    Ok(())
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn env_map(
    raw: BTreeMap<String, Scalar>,
    owner: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    raw.into_iter()
        .map(|(k, v)| {
            if is_env_name(&k) {
                Ok((k, v.into_string()))
            } else {
                Err(ConfigError::new(format!(
                    "{owner:?}: environment variable name {k:?} must be letters, digits and _"
                )))
            }
        })
        .collect()
}

/// Most `cache:` directories one pipeline may declare.
const MAX_CACHE_DIRS: usize = 10;

/// Checks `cache:` entries: relative paths inside the workspace, made of
/// plain segments, without duplicates.
fn validate_cache(paths: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if paths.len() > MAX_CACHE_DIRS {
        return Err(ConfigError::new(format!(
            "{} cache directories; at most {MAX_CACHE_DIRS} are allowed",
            paths.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(paths.len());
    for raw in paths {
        let path = raw.trim().trim_end_matches('/').to_owned();
        let plain = |seg: &str| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if path.is_empty()
            || path.len() > 200
            || path.starts_with('/')
            || !path.split('/').all(plain)
        {
            return Err(ConfigError::new(format!(
                "cache directory {raw:?} must be a relative path inside the workspace made of letters, digits, '.', '_' and '-' (no '..')"
            )));
        }
        if !seen.insert(path.clone()) {
            return Err(ConfigError::new(format!(
                "cache directory {path:?} is listed twice"
            )));
        }
        out.push(path);
    }
    Ok(out)
}

/// Parses `30s`, `10m`, `1h30m`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("timeout {s:?} is not a duration like 30s, 10m or 1h30m");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let total = if let Ok(n) = s.parse::<u64>() {
        n
    } else {
        let mut total: u64 = 0;
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return Err(bad()),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            total = total.saturating_add(n.saturating_mul(unit));
            num.clear();
        }
        if !num.is_empty() {
            return Err(bad());
        }
        total
    };
    let d = Duration::from_secs(total);
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!("timeout {s:?} must be between 1s and 24h"));
    }
    Ok(d)
}

/// Unknown or self dependencies, and cycles, named in the message.
fn check_graph(steps: &[Step]) -> Result<(), ConfigError> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for s in steps {
        for d in &s.depends_on {
            if d == &s.name {
                return Err(ConfigError::new(format!(
                    "step {:?} depends on itself",
                    s.name
                )));
            }
            if !index.contains_key(d.as_str()) {
                return Err(ConfigError::new(format!(
                    "step {:?} depends on {d:?}, which is not a step of this pipeline",
                    s.name
                )));
            }
        }
    }
    // Depth-first search with colours; the grey path is the cycle when one closes.
    #[derive(Clone, Copy, PartialEq)]
    enum C {
        White,
        Grey,
        Black,
    }
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        colour: &mut [C],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        colour[i] = C::Grey;
        path.push(i);
        for d in &steps[i].depends_on {
            let j = index[d.as_str()];
            match colour[j] {
                C::Grey => {
                    let start = path.iter().position(|&p| p == j).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                C::White => {
                    if let Some(c) = visit(j, steps, index, colour, path) {
                        return Some(c);
                    }
                }
                C::Black => {}
            }
        }
        path.pop();
        colour[i] = C::Black;
        None
    }
    let mut colour = vec![C::White; steps.len()];
    for i in 0..steps.len() {
        if colour[i] == C::White {
            if let Some(cycle) = visit(i, steps, &index, &mut colour, &mut Vec::new()) {
                let names: Vec<&str> = cycle.iter().map(|&k| steps[k].name.as_str()).collect();
                return Err(ConfigError::new(format!(
                    "depends_on forms a cycle: {}",
                    names.join(" -> ")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_map_forms_parse_alike() {
        let list = parse(
            "steps:\n  - name: a\n    image: busybox\n    commands: [echo a]\n  - name: b\n    image: busybox\n    commands: [echo b]\n    depends_on: [a]\n",
        )
        .unwrap();
        let map = parse(
            "steps:\n  a:\n    image: busybox\n    commands: [echo a]\n  b:\n    image: busybox\n    commands: [echo b]\n    depends_on: [a]\n",
        )
        .unwrap();
        assert_eq!(list, map);
        assert_eq!(list.steps[1].depends_on, vec!["a"]);
        assert_eq!(list.steps[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(list.steps[0].script(), "set -e\necho a\n");
    }

    #[test]
    fn full_step_fields() {
        let p = parse(
            "services:\n  db:\n    image: busybox\n    environment: {PORT: 5432}\nsteps:\n  - name: t\n    image: img\n    commands: [\"true\"]\n    environment: {A: x, N: 3, B: true}\n    secrets: [TOKEN]\n    when: {branch: [main, 'release/*'], event: push}\n    timeout: 1m30s\n    resources: {memory: 512m, cpus: 1.5}\n",
        )
        .unwrap();
        let s = &p.steps[0];
        assert_eq!(s.resources.memory_bytes, Some(512 << 20));
        assert_eq!(s.resources.nano_cpus, Some(1_500_000_000));
        assert_eq!(p.services[0].resources, Resources::default());
        assert!(
            parse("steps:\n  a: {image: x, commands: [ls], resources: {memory: lots}}\n")
                .unwrap_err()
                .message
                .contains("resources: memory")
        );
        assert_eq!(s.environment["N"], "3");
        assert_eq!(s.environment["B"], "true");
        assert_eq!(s.timeout, Duration::from_secs(90));
        assert_eq!(p.services[0].environment["PORT"], "5432");
        assert!(s.when.matches("main", "push"));
        assert!(s.when.matches("release/1.0", "push"));
        assert!(!s.when.matches("release/1.0/x", "push"));
        assert!(!s.when.matches("dev", "push"));
        assert!(!s.when.matches("main", "tag"));
    }

    #[test]
    fn unknown_key_has_line_and_column() {
        let e = parse("steps:\n  - name: a\n    image: x\n    comands: [ls]\n").unwrap_err();
        assert!(e.message.contains("comands"), "{e}");
        assert_eq!((e.line, e.column), (Some(4), Some(5)), "{e:?}");
        let e = parse("stages: []\n").unwrap_err();
        assert!(e.message.contains("stages"), "{e}");
    }

    #[test]
    fn bad_yaml_is_located() {
        let e = parse("steps:\n  - name: a\n    image: [unclosed\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
    }

    #[test]
    fn cycle_is_named() {
        let e = parse(
            "steps:\n  a: {image: x, commands: [ls], depends_on: [c]}\n  b: {image: x, commands: [ls], depends_on: [a]}\n  c: {image: x, commands: [ls], depends_on: [b]}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("cycle: a -> c -> b -> a"), "{e}");
        let e = parse("steps:\n  a: {image: x, commands: [ls], depends_on: [a]}\n").unwrap_err();
        assert!(e.message.contains("depends on itself"), "{e}");
    }

    #[test]
    fn unknown_dependency_and_duplicates() {
        let e = parse("steps:\n  a: {image: x, commands: [ls], depends_on: [zz]}\n").unwrap_err();
        assert!(e.message.contains("\"zz\""), "{e}");
        let e = parse(
            "steps:\n  - {name: a, image: x, commands: [ls]}\n  - {name: a, image: x, commands: [ls]}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("used twice"), "{e}");
    }

    #[test]
    fn bounds() {
        let huge = format!(
            "steps:\n  a: {{image: x, commands: [ls]}}\n#{}\n",
            "x".repeat(MAX_FILE_BYTES)
        );
        assert!(parse(&huge).unwrap_err().message.contains("bytes"));
        let mut many = String::from("steps:\n");
        for i in 0..=MAX_STEPS {
            many.push_str(&format!("  s{i}: {{image: x, commands: [ls]}}\n"));
        }
        assert!(parse(&many).unwrap_err().message.contains("50"));
        assert!(parse("").is_err());
        assert!(parse("steps: []\n").unwrap_err().message.contains("empty"));
        assert!(parse("steps:\n  Bad Name: {image: x, commands: [ls]}\n").is_err());
        assert!(parse("steps:\n  a: {image: x}\n")
            .unwrap_err()
            .message
            .contains("commands"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }
}
