//! The Compose file's keys, one by one, into the stack model.

use crate::interp::interpolate;
use crate::values::{
    dir_of, parse_duration, parse_env_file, parse_port, parse_port_entry, repo_path, shell_split,
};
use crate::yaml::{self, Key, Kind, Node};
use crate::{
    ParseInput, RepoFiles, StackError, StackErrors, MAX_ERRORS, MAX_FILE_BYTES, MAX_SERVICES,
};
use slipway_domain::app::valid_domain;
use slipway_domain::limits::{parse_cpus, parse_memory, MIN_MEMORY_BYTES, MIN_NANO_CPUS};
use slipway_domain::stack::{
    BuildSpec, Constraint, Dependency, DependsCondition, DeployMode, Healthcheck, Ingress, Mount,
    MountSource, PublishSpec, RestartPolicy, ServiceDeploy, ServiceSpec, StackSpec, UpdateOrder,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;

type Entries = [(Key, Node)];

/// Most errors collected before giving up on a file (only [`MAX_ERRORS`] are shown).
const COLLECT_ERRORS: usize = 200;

/// Keys of a service that are refused outright, with the reason.
const FORBIDDEN_SERVICE_KEYS: &[(&str, &str)] = &[
    ("network_mode", "not allowed (each stack runs on its own private network)"),
    ("pid", "not allowed (containers cannot share a process namespace)"),
    ("cap_add", "not allowed (containers cannot gain capabilities)"),
    ("devices", "not allowed (host devices cannot be used)"),
    ("device_cgroup_rules", "not allowed (host devices cannot be used)"),
    ("gpus", "not allowed (host devices cannot be used)"),
    ("security_opt", "not allowed (security profiles are set by Slipway)"),
    ("userns_mode", "not allowed (containers cannot use the host's user namespace)"),
    ("uts", "not allowed (containers cannot use the host's UTS namespace)"),
    ("cgroup", "not allowed (containers cannot use the host's cgroup namespace)"),
    ("cgroup_parent", "not allowed (containers are placed in Slipway's cgroups)"),
    ("sysctls", "not allowed (kernel parameters are set by Slipway)"),
    ("runtime", "not allowed (the container runtime is set by Slipway)"),
    ("isolation", "not allowed (the isolation technology is set by Slipway)"),
    ("oom_kill_disable", "not allowed (a container over its memory limit is stopped)"),
    ("oom_score_adj", "not allowed"),
    ("ulimits", "not supported (limits are set by Slipway)"),
    ("extends", "not supported: write the service out in full (YAML anchors, `<<: *x` merges and x- keys work)"),
    ("configs", "not supported: mount a directory of the repository (./dir:/path) or use secrets"),
    ("volumes_from", "not supported: mount the same named volume in both services"),
    ("links", "not supported: services reach each other by service name; use depends_on for start order"),
    ("external_links", "not supported: a stack's services can only reach each other"),
    ("extra_hosts", "not supported: services reach each other by service name"),
    ("dns", "not supported (name resolution is set by Slipway)"),
    ("dns_search", "not supported (name resolution is set by Slipway)"),
    ("dns_opt", "not supported (name resolution is set by Slipway)"),
    ("mac_address", "not supported"),
    ("scale", "not supported: use deploy.replicas"),
    ("develop", "not supported (docker compose watch is a development tool)"),
    ("post_start", "not supported (lifecycle hooks)"),
    ("pre_stop", "not supported (lifecycle hooks)"),
    ("storage_opt", "not supported"),
    ("credential_spec", "not supported"),
];

/// Keys of a service that are accepted and ignored, with what to know.
const IGNORED_SERVICE_KEYS: &[(&str, &str)] = &[
    ("tty", "is ignored (services run without a terminal)"),
    (
        "stdin_open",
        "is ignored (services run without standard input)",
    ),
    (
        "stop_signal",
        "is ignored (containers are stopped with SIGTERM, then SIGKILL)",
    ),
    (
        "pull_policy",
        "is ignored (images are pulled or built by the release)",
    ),
    (
        "platform",
        "is ignored (images run on the servers' platform)",
    ),
    (
        "cap_drop",
        "is ignored (containers already run with a reduced set of capabilities)",
    ),
];

/// A `depends_on` entry as written.
struct Dep {
    service: String,
    condition: DependsCondition,
    required: bool,
    line: usize,
}

/// `x-slipway` of a service.
struct XSlipway {
    line: usize,
    domains: Vec<String>,
    path: Option<String>,
    sticky: bool,
    health: Option<String>,
    port: Option<u16>,
    /// Whether it says anything about HTTP routing (not only `publish`).
    routing: bool,
}

/// One service as read, with what the checks across services need.
struct Svc {
    spec: ServiceSpec,
    line: usize,
    deps: Vec<Dep>,
    deps_line: usize,
    profiles: Vec<String>,
    x: Option<XSlipway>,
    publish_line: usize,
}

/// Top-level declarations that services refer to.
#[derive(Default)]
struct Declared {
    volumes: Vec<String>,
    networks: Vec<String>,
    secrets: Vec<String>,
}

struct Cx<'a> {
    file: &'a str,
    dir: &'a str,
    vars: &'a BTreeMap<String, String>,
    files: &'a dyn RepoFiles,
    errors: Vec<StackError>,
    notices: Vec<(usize, String)>,
    unset_noted: BTreeSet<String>,
}

pub(crate) fn parse(input: &ParseInput) -> Result<StackSpec, StackErrors> {
    let mut cx = Cx {
        file: input.file_name,
        dir: dir_of(input.file_name),
        vars: input.vars,
        files: input.files,
        errors: Vec::new(),
        notices: Vec::new(),
        unset_noted: BTreeSet::new(),
    };
    if input.text.len() > MAX_FILE_BYTES {
        cx.err(
            1,
            "",
            format!(
                "the file is {} KiB; at most {} KiB is accepted",
                input.text.len().div_ceil(1024),
                MAX_FILE_BYTES / 1024
            ),
        );
        return Err(cx.into_errors());
    }
    let spec = match yaml::load(input.text) {
        Ok(Some(doc)) => cx.document(&doc),
        Ok(None) => {
            cx.err(1, "", "the file is empty: `services:` is required");
            StackSpec::default()
        }
        Err(e) => {
            // An unexpected end is reported past the last line: show the last.
            let last = input.text.lines().count().max(1);
            cx.err(e.line.min(last), "", e.message);
            StackSpec::default()
        }
    };
    if cx.errors.is_empty() {
        let mut spec = spec;
        cx.notices.sort_by_key(|(line, _)| *line);
        spec.notices = cx.notices.into_iter().map(|(_, n)| n).collect();
        Ok(spec)
    } else {
        Err(cx.into_errors())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Names of volumes, networks and secrets: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl<'a> Cx<'a> {
    fn into_errors(mut self) -> StackErrors {
        self.errors.sort_by_key(|e| e.line);
        let more = self.errors.len().saturating_sub(MAX_ERRORS);
        self.errors.truncate(MAX_ERRORS);
        StackErrors {
            errors: self.errors,
            more,
        }
    }

    fn err(&mut self, line: usize, path: &str, message: impl Into<String>) {
        if self.errors.len() < COLLECT_ERRORS {
            self.errors.push(StackError {
                file: self.file.to_string(),
                line,
                path: path.to_string(),
                message: message.into(),
            });
        }
    }

    fn notice(&mut self, line: usize, path: &str, message: impl Display) {
        let text = if path.is_empty() {
            format!("{}:{line}: {message}", self.file)
        } else {
            format!("{}:{line}: {path}: {message}", self.file)
        };
        self.notices.push((line, text));
    }

    /// A key this mapping does not accept: `x-*` keys are ignored, others refused.
    fn other_key(&mut self, path: &str, key: &Key) {
        if !key.name.starts_with("x-") {
            self.err(key.line, &join(path, &key.name), "unknown key");
        }
    }

    fn map<'n>(&mut self, n: &'n Node, path: &str) -> Option<&'n Entries> {
        match &n.kind {
            Kind::Map(m) => Some(m),
            _ => {
                self.err(
                    n.line,
                    path,
                    format!("expected a mapping, found {}", n.what()),
                );
                None
            }
        }
    }

    /// A mapping, or nothing (`key:` alone) read as an empty one.
    fn map_or_null<'n>(&mut self, n: &'n Node, path: &str) -> Option<&'n Entries> {
        if n.is_null() {
            Some(&[])
        } else {
            self.map(n, path)
        }
    }

    fn seq<'n>(&mut self, n: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &n.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.err(n.line, path, format!("expected a list, found {}", n.what()));
                None
            }
        }
    }

    fn interp(&mut self, s: &str, line: usize, path: &str) -> Option<String> {
        if !s.contains('$') {
            return Some(s.to_string());
        }
        match interpolate(s, self.vars) {
            Ok(r) => {
                for name in r.unset {
                    if self.unset_noted.insert(name.clone()) {
                        self.notice(
                            line,
                            path,
                            format!("variable {name} is not set: an empty string is used"),
                        );
                    }
                }
                Some(r.text)
            }
            Err(e) => {
                self.err(line, path, e);
                None
            }
        }
    }

    /// A scalar's text, interpolated.
    fn text(&mut self, n: &Node, path: &str) -> Option<String> {
        match &n.kind {
            _ if n.is_null() => {
                self.err(n.line, path, "expected a value, found nothing (null)");
                None
            }
            Kind::Scalar { text, .. } => self.interp(text, n.line, path),
            _ => {
                self.err(
                    n.line,
                    path,
                    format!("expected a string, found {}", n.what()),
                );
                None
            }
        }
    }

    /// A non-empty scalar's text, interpolated.
    fn nonempty(&mut self, n: &Node, path: &str) -> Option<String> {
        let t = self.text(n, path)?;
        if t.trim().is_empty() {
            self.err(n.line, path, "must not be empty");
            return None;
        }
        Some(t)
    }

    /// `true`/`false`, and YAML 1.1's `yes`/`no`/`on`/`off` that older
    /// Compose files use.
    fn boolean(&mut self, n: &Node, path: &str) -> Option<bool> {
        let t = self.text(n, path)?;
        match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => {
                self.err(n.line, path, format!("expected true or false, found {t:?}"));
                None
            }
        }
    }

    fn uint(&mut self, n: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let t = self.text(n, path)?;
        match t.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.err(
                    n.line,
                    path,
                    format!("expected a whole number from {min} to {max}, found {t:?}"),
                );
                None
            }
        }
    }

    fn duration(&mut self, n: &Node, path: &str) -> Option<u64> {
        let t = self.text(n, path)?;
        match parse_duration(&t) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.err(n.line, path, e);
                None
            }
        }
    }

    /// A string or a list of strings, each with its line.
    fn strings(&mut self, n: &Node, path: &str) -> Vec<(usize, String)> {
        match &n.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| self.text(i, path).map(|t| (i.line, t)))
                .collect(),
            _ => self
                .text(n, path)
                .map(|t| (n.line, t))
                .into_iter()
                .collect(),
        }
    }

    /// A list of strings.
    fn string_list(&mut self, n: &Node, path: &str) -> Vec<(usize, String)> {
        if let Kind::Scalar { .. } = n.kind {
            if !n.is_null() {
                self.err(n.line, path, "expected a list");
                return Vec::new();
            }
        }
        self.strings(n, path)
    }

    /// `KEY: value` mapping or `KEY=value` list (`environment`, `labels`,
    /// `args`): (line, key, value; `None` for a bare `KEY` or `KEY:`).
    fn pairs(&mut self, n: &Node, path: &str) -> Vec<(usize, String, Option<String>)> {
        let mut out = Vec::new();
        match &n.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let p = join(path, &k.name);
                    if v.is_null() {
                        out.push((k.line, k.name.clone(), None));
                    } else if let Some(t) = self.text(v, &p) {
                        out.push((k.line, k.name.clone(), Some(t)));
                    }
                }
            }
            Kind::Seq(items) => {
                for item in items {
                    let Some(t) = self.text(item, path) else {
                        continue;
                    };
                    match t.split_once('=') {
                        Some((k, v)) => out.push((item.line, k.to_string(), Some(v.to_string()))),
                        None => out.push((item.line, t, None)),
                    }
                }
            }
            _ if n.is_null() => {}
            _ => self.err(
                n.line,
                path,
                format!(
                    "expected a mapping or a list of KEY=VALUE, found {}",
                    n.what()
                ),
            ),
        }
        for (line, k, _) in &out {
            if k.trim().is_empty() || k.contains(char::is_whitespace) {
                let k = k.clone();
                self.err(*line, path, format!("invalid name {k:?}"));
            }
        }
        out
    }

    // ---- the document ----------------------------------------------------

    fn document(&mut self, doc: &Node) -> StackSpec {
        let Some(top) = self.map(doc, "") else {
            return StackSpec::default();
        };
        let mut declared = Declared::default();
        let mut services = None;
        for (k, v) in top {
            match k.name.as_str() {
                "services" => services = Some((k, v)),
                "volumes" => declared.volumes = self.top_volumes(v),
                "networks" => declared.networks = self.top_networks(k, v),
                "secrets" => declared.secrets = self.top_secrets(v),
                "version" => {
                    self.text(v, "version");
                    self.notice(k.line, "version", "is obsolete and ignored");
                }
                "name" => {
                    self.text(v, "name");
                    self.notice(k.line, "name", "is ignored: the stack is named after the app");
                }
                "configs" => self.err(
                    k.line,
                    "configs",
                    "not supported: mount a directory of the repository (./dir:/path) or use secrets",
                ),
                "include" => self.err(
                    k.line,
                    "include",
                    "not supported: put all services in one file",
                ),
                _ => self.other_key("", k),
            }
        }
        let Some((skey, snode)) = services else {
            self.err(doc.line, "services", "is required");
            return StackSpec::default();
        };
        let Some(entries) = self.map(snode, "services") else {
            return StackSpec::default();
        };
        if entries.is_empty() {
            self.err(skey.line, "services", "at least one service is required");
            return StackSpec::default();
        }
        if entries.len() > MAX_SERVICES {
            self.err(
                skey.line,
                "services",
                format!(
                    "{} services; at most {MAX_SERVICES} are accepted",
                    entries.len()
                ),
            );
            return StackSpec::default();
        }
        let mut svcs: Vec<Svc> = entries
            .iter()
            .map(|(k, v)| self.service(k, v, &declared))
            .collect();
        self.dependencies(&mut svcs);
        let svcs = self.drop_profiled(svcs, skey.line);
        let svcs = self.order(svcs);
        self.routes(&svcs);
        StackSpec {
            services: svcs.into_iter().map(|s| s.spec).collect(),
            volumes: declared.volumes,
            notices: Vec::new(),
        }
    }

    fn top_volumes(&mut self, v: &Node) -> Vec<String> {
        let mut names = Vec::new();
        let Some(entries) = self.map_or_null(v, "volumes") else {
            return names;
        };
        for (k, v) in entries {
            let path = join("volumes", &k.name);
            if !valid_object_name(&k.name) {
                self.err(
                    k.line,
                    &path,
                    "invalid volume name (letters, digits, _ . -)",
                );
            }
            names.push(k.name.clone());
            let Some(opts) = self.map_or_null(v, &path) else {
                continue;
            };
            for (ok, ov) in opts {
                let p = join(&path, &ok.name);
                match ok.name.as_str() {
                    "driver" => {
                        if let Some(d) = self.text(ov, &p) {
                            if d != "local" {
                                self.err(
                                    ov.line,
                                    &p,
                                    format!("volume driver {d:?} is not supported (only local)"),
                                );
                            }
                        }
                    }
                    "driver_opts" => self.err(
                        ok.line,
                        &p,
                        "not allowed (driver options can mount host paths)",
                    ),
                    "external" => {
                        if self.boolean(ov, &p) == Some(true) {
                            self.err(ok.line, &p, "not supported: a stack's volumes are its own");
                        }
                    }
                    "labels" => {
                        self.pairs(ov, &p);
                    }
                    "name" => {
                        self.text(ov, &p);
                        self.notice(
                            ok.line,
                            &p,
                            "is ignored: Slipway names volumes after the app and the volume's key",
                        );
                    }
                    _ => self.other_key(&path, ok),
                }
            }
        }
        names
    }

    fn top_networks(&mut self, key: &Key, v: &Node) -> Vec<String> {
        let mut names = Vec::new();
        let Some(entries) = self.map_or_null(v, "networks") else {
            return names;
        };
        for (k, v) in entries {
            let path = join("networks", &k.name);
            names.push(k.name.clone());
            let Some(opts) = self.map_or_null(v, &path) else {
                continue;
            };
            for (ok, ov) in opts {
                let p = join(&path, &ok.name);
                match ok.name.as_str() {
                    "external" => {
                        if self.boolean(ov, &p) == Some(true) {
                            self.err(
                                ok.line,
                                &p,
                                "not supported: a stack cannot join networks outside it",
                            );
                        }
                    }
                    "driver" | "driver_opts" | "attachable" | "enable_ipv4" | "enable_ipv6"
                    | "ipam" | "internal" | "labels" | "name" => {}
                    _ => self.other_key(&path, ok),
                }
            }
        }
        let custom: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "default")
            .collect();
        if !custom.is_empty() {
            self.notice(
                key.line,
                "networks",
                format!(
                    "custom networks ({}) are merged into the stack's private network: every service can reach every other",
                    custom.join(", ")
                ),
            );
        }
        names
    }

    fn top_secrets(&mut self, v: &Node) -> Vec<String> {
        let mut names = Vec::new();
        let Some(entries) = self.map_or_null(v, "secrets") else {
            return names;
        };
        for (k, v) in entries {
            let path = join("secrets", &k.name);
            if !valid_object_name(&k.name) {
                self.err(
                    k.line,
                    &path,
                    "invalid secret name (letters, digits, _ . -)",
                );
            }
            names.push(k.name.clone());
            let Some(opts) = self.map_or_null(v, &path) else {
                continue;
            };
            let mut source = false;
            for (ok, _) in opts {
                match ok.name.as_str() {
                    "file" | "environment" | "name" | "external" | "labels" | "content"
                    | "driver" | "driver_opts" | "template_driver" => source = true,
                    _ => self.other_key(&path, ok),
                }
            }
            if source {
                self.notice(
                    k.line,
                    &path,
                    format!(
                        "its source is not read: Slipway mounts the app's secret {:?} (set it in the app's secrets)",
                        k.name
                    ),
                );
            }
        }
        names
    }

    // ---- one service -----------------------------------------------------

    fn service(&mut self, key: &Key, node: &Node, decl: &Declared) -> Svc {
        let name = key.name.clone();
        let path = join("services", &name);
        let mut svc = Svc {
            spec: ServiceSpec {
                name: name.clone(),
                ..Default::default()
            },
            line: key.line,
            deps: Vec::new(),
            deps_line: key.line,
            profiles: Vec::new(),
            x: None,
            publish_line: key.line,
        };
        if !valid_service_name(&name) {
            self.err(
                key.line,
                &path,
                "invalid service name (lowercase letters, digits, - and _, starting with a letter or digit, at most 63)",
            );
        }
        let Some(entries) = self.map_or_null(node, &path) else {
            return svc;
        };
        let mut file_env = BTreeMap::new();
        let mut env = BTreeMap::new();
        let mut restart = None;
        let mut deploy_restart = None;
        let mut deploy_limits = (None, None);
        let mut legacy_limits = (None, None);
        let mut labels = BTreeMap::new();
        for (k, v) in entries {
            let p = join(&path, &k.name);
            let p = p.as_str();
            match k.name.as_str() {
                "image" => {
                    if let Some(image) = self.nonempty(v, p) {
                        if image.contains(char::is_whitespace) {
                            self.err(v.line, p, format!("{image:?} is not an image reference"));
                        }
                        svc.spec.image = Some(image);
                    }
                }
                "build" => svc.spec.build = self.build(v, p),
                "command" => svc.spec.command = self.command(v, p),
                "entrypoint" => svc.spec.entrypoint = self.command(v, p),
                "environment" => {
                    for (_, key, value) in self.pairs(v, p) {
                        let value = value
                            .unwrap_or_else(|| self.vars.get(&key).cloned().unwrap_or_default());
                        env.insert(key, value);
                    }
                }
                "env_file" => self.env_file(v, p, &mut file_env),
                "ports" => self.ports(v, p, &mut svc.spec),
                "expose" => {
                    for (line, t) in self.strings(v, p) {
                        let (port, proto) = match t.rsplit_once('/') {
                            Some((port, proto)) => (port, proto.to_ascii_lowercase()),
                            None => (t.as_str(), "tcp".to_string()),
                        };
                        if proto != "tcp" && proto != "udp" {
                            self.err(line, p, format!("{t:?}: protocol must be tcp or udp"));
                            continue;
                        }
                        match parse_port(port) {
                            // Every port is reachable inside the stack's network;
                            // only TCP ones can be routed to.
                            Ok(port) if proto == "tcp" => {
                                if !svc.spec.expose.contains(&port) {
                                    svc.spec.expose.push(port);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => self.err(line, p, e),
                        }
                    }
                }
                "depends_on" => {
                    svc.deps_line = k.line;
                    svc.deps = self.depends_on(v, p);
                }
                "healthcheck" => svc.spec.healthcheck = self.healthcheck(v, p),
                "restart" => restart = self.restart(v, p),
                "volumes" => self.volumes(v, p, &mut svc.spec.mounts, decl),
                "tmpfs" => {
                    for (line, t) in self.strings(v, p) {
                        let target = t.split(':').next().unwrap_or_default().trim().to_string();
                        if !target.starts_with('/') {
                            self.err(
                                line,
                                p,
                                format!("{t:?}: the target must be an absolute path"),
                            );
                            continue;
                        }
                        self.add_mount(
                            &mut svc.spec.mounts,
                            Mount {
                                source: MountSource::Tmpfs,
                                target,
                                read_only: false,
                            },
                            line,
                            p,
                        );
                    }
                }
                "working_dir" => {
                    if let Some(dir) = self.nonempty(v, p) {
                        if !dir.starts_with('/') {
                            self.err(v.line, p, format!("{dir:?} must be an absolute path"));
                        }
                        svc.spec.working_dir = Some(dir);
                    }
                }
                "user" => svc.spec.user = self.nonempty(v, p),
                "labels" => self.labels(v, p, &mut labels),
                "profiles" => {
                    svc.profiles = self.string_list(v, p).into_iter().map(|(_, s)| s).collect()
                }
                "secrets" => svc.spec.secrets = self.service_secrets(v, p, decl),
                "networks" => self.service_networks(v, p, decl),
                "deploy" => {
                    let (deploy, rp, limits) = self.deploy(v, p, &mut labels);
                    svc.spec.deploy = deploy;
                    deploy_restart = rp;
                    deploy_limits = limits;
                }
                "mem_limit" => {
                    legacy_limits.0 = self.text(v, p).and_then(|t| self.memory(&t, v.line, p))
                }
                "cpus" => legacy_limits.1 = self.text(v, p).and_then(|t| self.cpus(&t, v.line, p)),
                "container_name" => {
                    self.text(v, p);
                    self.notice(
                        k.line,
                        p,
                        format!("is ignored: Slipway names containers; other services reach this one as {name:?}"),
                    );
                }
                "hostname" | "domainname" => {
                    self.text(v, p);
                    self.notice(
                        k.line,
                        p,
                        format!("is ignored: other services reach this one as {name:?}"),
                    );
                }
                "stop_grace_period" => {
                    self.duration(v, p);
                    self.notice(k.line, p, "is ignored: Slipway's stop timeout applies");
                }
                "init" => {
                    if self.boolean(v, p) == Some(true) {
                        self.notice(k.line, p, "is ignored: no init process is added");
                    }
                }
                "logging" => {
                    self.map(v, p);
                    self.notice(
                        k.line,
                        p,
                        "is ignored: Slipway collects the output of every container",
                    );
                }
                "privileged" => {
                    if self.boolean(v, p) == Some(true) {
                        self.err(k.line, p, "not allowed (containers run unprivileged)");
                    }
                }
                "ipc" => {
                    if let Some(mode) = self.text(v, p) {
                        if !matches!(mode.as_str(), "private" | "shareable" | "") {
                            self.err(
                                k.line,
                                p,
                                "not allowed (containers cannot share an IPC namespace)",
                            );
                        }
                    }
                }
                "x-slipway" => svc.x = self.x_slipway(v, p, &mut svc.spec, &mut svc.publish_line),
                other => {
                    if let Some((_, why)) = FORBIDDEN_SERVICE_KEYS.iter().find(|(n, _)| *n == other)
                    {
                        self.err(k.line, p, *why);
                    } else if let Some((_, what)) =
                        IGNORED_SERVICE_KEYS.iter().find(|(n, _)| *n == other)
                    {
                        self.notice(k.line, p, what);
                    } else {
                        self.other_key(&path, k);
                    }
                }
            }
        }
        if svc.spec.image.is_none() && svc.spec.build.is_none() && !entries.is_empty() {
            self.err(key.line, &path, "needs `image` or `build`");
        } else if entries.is_empty() {
            self.err(key.line, &path, "is empty: it needs `image` or `build`");
        }
        file_env.extend(env);
        svc.spec.environment = file_env;
        svc.spec.labels = labels;
        svc.spec.restart = restart.or(deploy_restart).unwrap_or_default();
        svc.spec.deploy.memory_bytes = deploy_limits.0.or(legacy_limits.0);
        svc.spec.deploy.nano_cpus = deploy_limits.1.or(legacy_limits.1);
        self.ingress(&mut svc, &path);
        svc
    }

    fn memory(&mut self, t: &str, line: usize, path: &str) -> Option<i64> {
        match parse_memory(t) {
            Ok(b) if b < MIN_MEMORY_BYTES => {
                self.err(line, path, format!("{t:?} is below the smallest limit, 8m"));
                None
            }
            Ok(b) => Some(b),
            Err(e) => {
                self.err(line, path, e);
                None
            }
        }
    }

    fn cpus(&mut self, t: &str, line: usize, path: &str) -> Option<i64> {
        match parse_cpus(t) {
            Ok(n) if n < MIN_NANO_CPUS => {
                self.err(
                    line,
                    path,
                    format!("{t:?} is below the smallest limit, 0.01"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                self.err(line, path, e);
                None
            }
        }
    }

    fn build(&mut self, v: &Node, path: &str) -> Option<BuildSpec> {
        let mut spec = BuildSpec {
            context: ".".into(),
            dockerfile: "Dockerfile".into(),
            ..Default::default()
        };
        let mut context_line = v.line;
        let mut context = ".".to_string();
        let mut dockerfile_line = v.line;
        match &v.kind {
            Kind::Scalar { .. } => context = self.nonempty(v, path)?,
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let p = join(path, &k.name);
                    let p = p.as_str();
                    match k.name.as_str() {
                        "context" => {
                            context_line = v.line;
                            context = self.nonempty(v, p)?;
                        }
                        "dockerfile" => {
                            dockerfile_line = v.line;
                            spec.dockerfile = self.nonempty(v, p)?;
                        }
                        "target" => spec.target = self.nonempty(v, p),
                        "args" => {
                            for (_, key, value) in self.pairs(v, p) {
                                if let Some(value) = value.or_else(|| self.vars.get(&key).cloned())
                                {
                                    spec.args.insert(key, value);
                                }
                            }
                        }
                        "cache_from" | "cache_to" | "labels" | "pull" | "no_cache" | "tags"
                        | "platforms" => {
                            self.notice(k.line, p, "is ignored");
                        }
                        "network" => self.err(
                            k.line,
                            p,
                            "not allowed (builds run on Slipway's build network)",
                        ),
                        "privileged"
                        | "entitlements"
                        | "extra_hosts"
                        | "ssh"
                        | "secrets"
                        | "shm_size"
                        | "isolation"
                        | "ulimits"
                        | "additional_contexts" => {
                            self.err(k.line, p, "not supported in Slipway's builds")
                        }
                        "dockerfile_inline" => self.err(
                            k.line,
                            p,
                            "not supported: commit the Dockerfile and name it in build.dockerfile",
                        ),
                        _ => self.other_key(path, k),
                    }
                }
            }
            _ => {
                self.err(
                    v.line,
                    path,
                    format!("expected a directory or a mapping, found {}", v.what()),
                );
                return None;
            }
        }
        if context.contains("://") || context.starts_with("git@") {
            self.err(
                context_line,
                path,
                format!("{context:?}: remote build contexts are not supported: the build uses the deployed commit"),
            );
            return None;
        }
        spec.context = match repo_path(self.dir, &context) {
            Ok(c) => c,
            Err(e) => {
                self.err(context_line, path, e);
                return None;
            }
        };
        if spec.context != "." && !self.files.is_dir(&spec.context) {
            self.err(
                context_line,
                path,
                format!(
                    "{context:?}: no directory {:?} in the repository",
                    spec.context
                ),
            );
            return None;
        }
        match repo_path(&spec.context, &spec.dockerfile) {
            Ok(df) => {
                if self.files.read(&df).is_none() {
                    self.err(
                        dockerfile_line,
                        path,
                        format!("no Dockerfile {df:?} in the repository"),
                    );
                }
            }
            Err(e) => self.err(dockerfile_line, path, format!("dockerfile: {e}")),
        }
        Some(spec)
    }

    fn command(&mut self, v: &Node, path: &str) -> Option<Vec<String>> {
        match &v.kind {
            _ if v.is_null() => None,
            Kind::Seq(items) => Some(items.iter().filter_map(|i| self.text(i, path)).collect()),
            Kind::Scalar { .. } => {
                let t = self.text(v, path)?;
                match shell_split(&t) {
                    Ok(words) => Some(words),
                    Err(e) => {
                        self.err(v.line, path, e);
                        None
                    }
                }
            }
            Kind::Map(_) => {
                self.err(v.line, path, "expected a string or a list, found a mapping");
                None
            }
        }
    }

    fn env_file(&mut self, v: &Node, path: &str, env: &mut BTreeMap<String, String>) {
        let items: Vec<&Node> = match &v.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![v],
        };
        for item in items {
            let mut required = true;
            let name = match &item.kind {
                Kind::Map(entries) => {
                    let mut name = None;
                    for (k, v) in entries {
                        let p = join(path, &k.name);
                        match k.name.as_str() {
                            "path" => name = self.nonempty(v, &p),
                            "required" => required = self.boolean(v, &p).unwrap_or(true),
                            "format" => {
                                if let Some(f) = self.text(v, &p) {
                                    if f != "dotenv" {
                                        self.err(
                                            v.line,
                                            &p,
                                            format!("{f:?}: only dotenv files are supported"),
                                        );
                                    }
                                }
                            }
                            _ => self.other_key(path, k),
                        }
                    }
                    if name.is_none() {
                        self.err(item.line, path, "`path` is required");
                    }
                    name
                }
                _ => self.nonempty(item, path),
            };
            let Some(name) = name else { continue };
            let file = match repo_path(self.dir, &name) {
                Ok(f) => f,
                Err(e) => {
                    self.err(item.line, path, e);
                    continue;
                }
            };
            let Some(bytes) = self.files.read(&file) else {
                if required {
                    self.err(
                        item.line,
                        path,
                        format!("{name:?}: no file {file:?} in the repository"),
                    );
                }
                continue;
            };
            if bytes.len() > MAX_FILE_BYTES {
                self.err(
                    item.line,
                    path,
                    format!("{name:?} is larger than {} KiB", MAX_FILE_BYTES / 1024),
                );
                continue;
            }
            let Ok(text) = String::from_utf8(bytes) else {
                self.err(item.line, path, format!("{name:?} is not UTF-8 text"));
                continue;
            };
            match parse_env_file(&text) {
                Ok(lines) => {
                    for (key, value) in lines {
                        let value = match value {
                            Some((v, true)) => self.interp(&v, item.line, path).unwrap_or_default(),
                            Some((v, false)) => v,
                            None => match self.vars.get(&key) {
                                Some(v) => v.clone(),
                                None => continue,
                            },
                        };
                        env.insert(key, value);
                    }
                }
                Err((n, msg)) => self.err(item.line, path, format!("{file}:{n}: {msg}")),
            }
        }
    }

    fn ports(&mut self, v: &Node, path: &str, spec: &mut ServiceSpec) {
        let Some(items) = self.seq(v, path) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let (container, host, protocol) = match &item.kind {
                Kind::Map(entries) => {
                    let mut target = None;
                    let mut host = None;
                    let mut protocol = "tcp".to_string();
                    for (k, v) in entries {
                        let p = join(&ip, &k.name);
                        match k.name.as_str() {
                            "target" => {
                                target = self.text(v, &p).and_then(|t| match parse_port(&t) {
                                    Ok(port) => Some(port),
                                    Err(e) => {
                                        self.err(v.line, &p, e);
                                        None
                                    }
                                })
                            }
                            "published" => {
                                if let Some(t) = self.text(v, &p) {
                                    match parse_port(&t) {
                                        Ok(_) => host = Some(t),
                                        Err(e) => self.err(v.line, &p, e),
                                    }
                                }
                            }
                            "protocol" => {
                                if let Some(t) = self.text(v, &p) {
                                    protocol = t.to_ascii_lowercase();
                                }
                            }
                            "host_ip" | "mode" | "name" | "app_protocol" => {
                                self.text(v, &p);
                            }
                            _ => self.other_key(&ip, k),
                        }
                    }
                    let Some(target) = target else {
                        if !entries.iter().any(|(k, _)| k.name == "target") {
                            self.err(item.line, &ip, "`target` (the container port) is required");
                        }
                        continue;
                    };
                    (target, host, protocol)
                }
                _ => {
                    let Some(t) = self.text(item, &ip) else {
                        continue;
                    };
                    match parse_port_entry(&t) {
                        Ok(e) => (
                            e.container,
                            e.published.map(|p| p.to_string()).or(e.host),
                            e.protocol,
                        ),
                        Err(e) => {
                            self.err(item.line, &ip, e);
                            continue;
                        }
                    }
                }
            };
            match protocol.as_str() {
                "tcp" => {}
                "udp" => {
                    self.err(
                        item.line,
                        &ip,
                        format!("UDP port {container} cannot be routed by the proxy: publish it with x-slipway.publish"),
                    );
                    continue;
                }
                other => {
                    self.err(item.line, &ip, format!("protocol {other:?}: expected tcp"));
                    continue;
                }
            }
            if let Some(host) = host {
                let what = if host.bytes().all(|b| b.is_ascii_digit()) {
                    format!("host port {host}")
                } else {
                    format!("host address {host:?}")
                };
                self.notice(
                    item.line,
                    path,
                    format!("{what} is not published; Slipway's proxy routes to container port {container}"),
                );
            }
            if !spec.ports.contains(&container) {
                spec.ports.push(container);
            }
        }
    }

    fn depends_on(&mut self, v: &Node, path: &str) -> Vec<Dep> {
        let mut deps: Vec<Dep> = Vec::new();
        match &v.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(service) = self.nonempty(item, path) {
                        deps.push(Dep {
                            service,
                            condition: DependsCondition::Started,
                            required: true,
                            line: item.line,
                        });
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let p = join(path, &k.name);
                    let mut dep = Dep {
                        service: k.name.clone(),
                        condition: DependsCondition::Started,
                        required: true,
                        line: k.line,
                    };
                    let Some(opts) = self.map_or_null(v, &p) else {
                        continue;
                    };
                    for (ok, ov) in opts {
                        let op = join(&p, &ok.name);
                        match ok.name.as_str() {
                            "condition" => match self.text(ov, &op).as_deref() {
                                Some("service_started") => {
                                    dep.condition = DependsCondition::Started
                                }
                                Some("service_healthy") => {
                                    dep.condition = DependsCondition::Healthy
                                }
                                Some("service_completed_successfully") => {
                                    dep.condition = DependsCondition::CompletedSuccessfully
                                }
                                Some(other) => self.err(
                                    ov.line,
                                    &op,
                                    format!("{other:?}: expected service_started, service_healthy or service_completed_successfully"),
                                ),
                                None => {}
                            },
                            "required" => dep.required = self.boolean(ov, &op).unwrap_or(true),
                            "restart" => {
                                self.boolean(ov, &op);
                            }
                            _ => self.other_key(&p, ok),
                        }
                    }
                    deps.push(dep);
                }
            }
            _ => self.err(
                v.line,
                path,
                format!(
                    "expected a list or a mapping of services, found {}",
                    v.what()
                ),
            ),
        }
        deps
    }

    fn healthcheck(&mut self, v: &Node, path: &str) -> Option<Healthcheck> {
        let entries = self.map(v, path)?;
        let mut check = Healthcheck {
            test: Vec::new(),
            interval_ms: 30_000,
            timeout_ms: 30_000,
            retries: 3,
            start_period_ms: 0,
        };
        let mut disabled = false;
        let mut has_test = false;
        for (k, v) in entries {
            let p = join(path, &k.name);
            let p = p.as_str();
            match k.name.as_str() {
                "test" => {
                    has_test = true;
                    match &v.kind {
                        Kind::Seq(items) => {
                            let words: Vec<String> =
                                items.iter().filter_map(|i| self.text(i, p)).collect();
                            match words.first().map(String::as_str) {
                                Some("NONE") => disabled = true,
                                Some("CMD") if words.len() >= 2 => check.test = words,
                                Some("CMD-SHELL") if words.len() == 2 => check.test = words,
                                Some("CMD") => {
                                    self.err(v.line, p, "CMD needs the program to run after it")
                                }
                                Some("CMD-SHELL") => self.err(
                                    v.line,
                                    p,
                                    "CMD-SHELL takes exactly one command line after it",
                                ),
                                _ if words.len() < items.len() => {}
                                _ => self.err(
                                    v.line,
                                    p,
                                    "a list must start with CMD, CMD-SHELL or NONE",
                                ),
                            }
                        }
                        _ => match self.nonempty(v, p) {
                            Some(none) if none == "NONE" => disabled = true,
                            Some(line) => check.test = vec!["CMD-SHELL".into(), line],
                            None => {}
                        },
                    }
                }
                "interval" => {
                    if let Some(ms) = self.duration(v, p) {
                        check.interval_ms = ms;
                    }
                }
                "timeout" => {
                    if let Some(ms) = self.duration(v, p) {
                        check.timeout_ms = ms;
                    }
                }
                "start_period" => {
                    if let Some(ms) = self.duration(v, p) {
                        check.start_period_ms = ms;
                    }
                }
                "start_interval" => {
                    self.duration(v, p);
                }
                "retries" => {
                    if let Some(n) = self.uint(v, p, 0, 1000) {
                        check.retries = n as u32;
                    }
                }
                "disable" => disabled |= self.boolean(v, p) == Some(true),
                _ => self.other_key(path, k),
            }
        }
        if disabled {
            return None;
        }
        if !has_test {
            self.err(
                v.line,
                path,
                "`test` is required (Slipway does not reuse the image's HEALTHCHECK here); or disable: true",
            );
            return None;
        }
        if check.interval_ms == 0 || check.timeout_ms == 0 {
            self.err(v.line, path, "interval and timeout must be more than 0");
        }
        if check.test.is_empty() {
            return None;
        }
        Some(check)
    }

    fn restart(&mut self, v: &Node, path: &str) -> Option<RestartPolicy> {
        let t = self.text(v, path)?;
        match t.as_str() {
            "no" | "false" => Some(RestartPolicy::No),
            "always" => Some(RestartPolicy::Always),
            "unless-stopped" => Some(RestartPolicy::UnlessStopped),
            "on-failure" => Some(RestartPolicy::OnFailure),
            s if s.starts_with("on-failure:") => {
                let n = &s["on-failure:".len()..];
                if n.parse::<u32>().is_err() {
                    self.err(
                        v.line,
                        path,
                        format!("{s:?}: expected on-failure:N with a number N"),
                    );
                    return None;
                }
                self.notice(
                    v.line,
                    path,
                    "the retry limit is ignored: it is restarted after each failure",
                );
                Some(RestartPolicy::OnFailure)
            }
            other => {
                self.err(
                    v.line,
                    path,
                    format!("{other:?}: expected \"no\", always, on-failure[:N] or unless-stopped"),
                );
                None
            }
        }
    }

    fn add_mount(&mut self, mounts: &mut Vec<Mount>, mount: Mount, line: usize, path: &str) {
        if mounts.iter().any(|m| m.target == mount.target) {
            self.err(line, path, format!("two mounts at {:?}", mount.target));
            return;
        }
        mounts.push(mount);
    }

    /// A repository directory to bind-mount: its normalized path.
    fn repo_dir(&mut self, source: &str, line: usize, path: &str) -> Option<String> {
        let dir = match repo_path(self.dir, source) {
            Ok(d) => d,
            Err(e) => {
                self.err(line, path, e);
                return None;
            }
        };
        if dir != "." && !self.files.is_dir(&dir) {
            let why = if self.files.read(&dir).is_some() {
                "is a file: only directories of the repository can be mounted (mount its directory, or COPY the file in a Dockerfile)"
            } else {
                "is not a directory of the repository"
            };
            self.err(line, path, format!("{source:?} ({dir}) {why}"));
            return None;
        }
        Some(dir)
    }

    fn named_volume(&mut self, name: &str, line: usize, path: &str, decl: &Declared) -> bool {
        if !valid_object_name(name) {
            self.err(
                line,
                path,
                format!("{name:?} is not a volume name; write ./{name} for a directory of the repository"),
            );
            return false;
        }
        if !decl.volumes.iter().any(|v| v == name) {
            self.err(
                line,
                path,
                format!("volume {name:?} is not declared in the top-level `volumes:`"),
            );
            return false;
        }
        true
    }

    fn volumes(&mut self, v: &Node, path: &str, mounts: &mut Vec<Mount>, decl: &Declared) {
        let Some(items) = self.seq(v, path) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let mount = match &item.kind {
                Kind::Map(entries) => self.volume_long(item, entries, &ip, decl),
                _ => self.volume_short(item, &ip, decl),
            };
            if let Some(m) = mount {
                self.add_mount(mounts, m, item.line, &ip);
            }
        }
    }

    fn volume_short(&mut self, item: &Node, path: &str, decl: &Declared) -> Option<Mount> {
        let t = self.nonempty(item, path)?;
        let line = item.line;
        let parts: Vec<&str> = t.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] => {
                self.err(
                    line,
                    path,
                    format!("{t:?}: anonymous volumes are not supported: name it (data:{target}) and declare it in the top-level `volumes:`"),
                );
                return None;
            }
            [s, t] => (*s, *t, ""),
            [s, t, m] => (*s, *t, *m),
            _ => {
                self.err(line, path, format!("{t:?}: expected SOURCE:TARGET[:MODE]"));
                return None;
            }
        };
        if !target.starts_with('/') {
            self.err(
                line,
                path,
                format!("{t:?}: the target must be an absolute path"),
            );
            return None;
        }
        let mut read_only = false;
        for m in mode.split(',').filter(|m| !m.is_empty()) {
            match m {
                "ro" => read_only = true,
                "rw" | "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" | "shared"
                | "slave" | "private" | "rshared" | "rslave" | "rprivate" => {}
                other => {
                    self.err(line, path, format!("{t:?}: unknown mode {other:?}"));
                    return None;
                }
            }
        }
        if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
            let dir = self.repo_dir(source, line, path)?;
            if !read_only {
                self.notice(
                    line,
                    path,
                    format!("{source} is mounted read-only (the deployed commit's files cannot be changed)"),
                );
            }
            return Some(Mount {
                source: MountSource::Repo(dir),
                target: target.to_string(),
                read_only: true,
            });
        }
        if !self.named_volume(source, line, path, decl) {
            return None;
        }
        Some(Mount {
            source: MountSource::Volume(source.to_string()),
            target: target.to_string(),
            read_only,
        })
    }

    fn volume_long(
        &mut self,
        item: &Node,
        entries: &Entries,
        path: &str,
        decl: &Declared,
    ) -> Option<Mount> {
        let mut kind = None;
        let mut source = None;
        let mut target = None;
        let mut read_only = false;
        let mut source_line = item.line;
        for (k, v) in entries {
            let p = join(path, &k.name);
            let p = p.as_str();
            match k.name.as_str() {
                "type" => kind = self.text(v, p),
                "source" => {
                    source_line = v.line;
                    source = self.nonempty(v, p);
                }
                "target" => target = self.nonempty(v, p),
                "read_only" => read_only = self.boolean(v, p).unwrap_or(false),
                "consistency" => {
                    self.text(v, p);
                }
                "bind" => self.sub_options(v, p, &["propagation", "create_host_path", "selinux"]),
                "volume" => self.sub_options(v, p, &["nocopy"]),
                "tmpfs" => self.sub_options(v, p, &["size", "mode"]),
                _ => self.other_key(path, k),
            }
        }
        let Some(target) = target else {
            self.err(item.line, path, "`target` is required");
            return None;
        };
        if !target.starts_with('/') {
            self.err(
                item.line,
                path,
                format!("{target:?}: the target must be an absolute path"),
            );
            return None;
        }
        match kind.as_deref() {
            Some("volume") => {
                let Some(name) = source else {
                    self.err(
                        item.line,
                        path,
                        "anonymous volumes are not supported: give it a `source` declared in the top-level `volumes:`",
                    );
                    return None;
                };
                if !self.named_volume(&name, source_line, path, decl) {
                    return None;
                }
                Some(Mount {
                    source: MountSource::Volume(name),
                    target,
                    read_only,
                })
            }
            Some("bind") => {
                let Some(src) = source else {
                    self.err(item.line, path, "`source` is required for a bind mount");
                    return None;
                };
                let dir = self.repo_dir(&src, source_line, path)?;
                if !read_only {
                    self.notice(
                        item.line,
                        path,
                        format!("{src} is mounted read-only (the deployed commit's files cannot be changed)"),
                    );
                }
                Some(Mount {
                    source: MountSource::Repo(dir),
                    target,
                    read_only: true,
                })
            }
            Some("tmpfs") => {
                if source.is_some() {
                    self.err(source_line, path, "a tmpfs mount has no `source`");
                    return None;
                }
                Some(Mount {
                    source: MountSource::Tmpfs,
                    target,
                    read_only: false,
                })
            }
            Some(other) => {
                self.err(
                    item.line,
                    path,
                    format!("type {other:?} is not supported (volume, bind or tmpfs)"),
                );
                None
            }
            None => {
                if !entries.iter().any(|(k, _)| k.name == "type") {
                    self.err(
                        item.line,
                        path,
                        "`type` is required (volume, bind or tmpfs)",
                    );
                }
                None
            }
        }
    }

    /// A mapping of options that are accepted and not used.
    fn sub_options(&mut self, v: &Node, path: &str, allowed: &[&str]) {
        if let Some(entries) = self.map(v, path) {
            for (k, _) in entries {
                if !allowed.contains(&k.name.as_str()) {
                    self.other_key(path, k);
                }
            }
        }
    }

    fn labels(&mut self, v: &Node, path: &str, labels: &mut BTreeMap<String, String>) {
        for (line, key, value) in self.pairs(v, path) {
            if key.starts_with("io.slipway.") {
                self.err(
                    line,
                    path,
                    format!("{key:?}: io.slipway.* labels are Slipway's own and cannot be set"),
                );
                continue;
            }
            labels.insert(key, value.unwrap_or_default());
        }
    }

    fn service_secrets(&mut self, v: &Node, path: &str, decl: &Declared) -> Vec<String> {
        let mut out = Vec::new();
        let Some(items) = self.seq(v, path) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let (name, line) = match &item.kind {
                Kind::Map(entries) => {
                    let mut source = None;
                    let mut target = None;
                    for (k, v) in entries {
                        let p = join(&ip, &k.name);
                        match k.name.as_str() {
                            "source" => source = self.nonempty(v, &p),
                            "target" => target = self.nonempty(v, &p).map(|t| (v.line, t)),
                            "uid" | "gid" | "mode" => {
                                self.text(v, &p);
                                self.notice(k.line, &p, "is ignored");
                            }
                            _ => self.other_key(&ip, k),
                        }
                    }
                    let Some(source) = source else {
                        self.err(item.line, &ip, "`source` is required");
                        continue;
                    };
                    if let Some((line, target)) = target {
                        if target != source && target != format!("/run/secrets/{source}") {
                            self.err(
                                line,
                                &join(&ip, "target"),
                                format!("{target:?}: secrets are mounted at /run/secrets/{source}; another target is not supported"),
                            );
                        }
                    }
                    (source, item.line)
                }
                _ => match self.nonempty(item, &ip) {
                    Some(name) => (name, item.line),
                    None => continue,
                },
            };
            if !decl.secrets.contains(&name) {
                self.err(
                    line,
                    &ip,
                    format!("secret {name:?} is not declared in the top-level `secrets:`"),
                );
                continue;
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    fn service_networks(&mut self, v: &Node, path: &str, decl: &Declared) {
        let names: Vec<(usize, String)> = match &v.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let p = join(path, &k.name);
                    if let Some(opts) = self.map_or_null(v, &p) {
                        for (ok, _) in opts {
                            match ok.name.as_str() {
                                "aliases" | "ipv4_address" | "ipv6_address" | "link_local_ips"
                                | "mac_address" | "priority" | "gw_priority" | "driver_opts"
                                | "interface_name" => {}
                                _ => self.other_key(&p, ok),
                            }
                        }
                    }
                }
                entries
                    .iter()
                    .map(|(k, _)| (k.line, k.name.clone()))
                    .collect()
            }
            _ => self.string_list(v, path),
        };
        for (line, name) in names {
            if name != "default" && !decl.networks.contains(&name) {
                self.err(
                    line,
                    path,
                    format!("network {name:?} is not declared in the top-level `networks:`"),
                );
            }
        }
    }

    /// `deploy:`: the settings, the restart policy it sets, and its limits
    /// (memory, CPUs).
    #[allow(clippy::type_complexity)]
    fn deploy(
        &mut self,
        v: &Node,
        path: &str,
        labels: &mut BTreeMap<String, String>,
    ) -> (
        ServiceDeploy,
        Option<RestartPolicy>,
        (Option<i64>, Option<i64>),
    ) {
        let mut d = ServiceDeploy::default();
        let mut restart = None;
        let mut limits = (None, None);
        let Some(entries) = self.map_or_null(v, path) else {
            return (d, restart, limits);
        };
        let mut replicas_line = None;
        for (k, v) in entries {
            let p = join(path, &k.name);
            let p = p.as_str();
            match k.name.as_str() {
                "mode" => match self.text(v, p).as_deref() {
                    Some("replicated") => d.mode = DeployMode::Replicated,
                    Some("global") => d.mode = DeployMode::Global,
                    Some(other) => self.err(
                        v.line,
                        p,
                        format!("{other:?}: expected replicated or global"),
                    ),
                    None => {}
                },
                "replicas" => {
                    if let Some(n) = self.uint(v, p, 0, 1000) {
                        d.replicas = n as u32;
                        replicas_line = Some(k.line);
                    }
                }
                "resources" => limits = self.resources(v, p),
                "placement" => {
                    let Some(entries) = self.map(v, p) else {
                        continue;
                    };
                    for (pk, pv) in entries {
                        let pp = join(p, &pk.name);
                        match pk.name.as_str() {
                            "constraints" => {
                                for (line, c) in self.string_list(pv, &pp) {
                                    match parse_constraint(&c) {
                                        Ok(c) => d.constraints.push(c),
                                        Err(e) => self.err(line, &pp, e),
                                    }
                                }
                            }
                            "max_replicas_per_node" => {
                                d.max_replicas_per_node =
                                    self.uint(pv, &pp, 1, 1000).map(|n| n as u32)
                            }
                            "preferences" => {
                                self.notice(pk.line, &pp, "is ignored");
                            }
                            _ => self.other_key(p, pk),
                        }
                    }
                }
                "update_config" => {
                    let Some(entries) = self.map(v, p) else {
                        continue;
                    };
                    for (uk, uv) in entries {
                        let up = join(p, &uk.name);
                        match uk.name.as_str() {
                            "parallelism" => {
                                if let Some(n) = self.uint(uv, &up, 1, 1000) {
                                    d.parallelism = n as u32;
                                }
                            }
                            "order" => match self.text(uv, &up).as_deref() {
                                Some("start-first") => d.order = Some(UpdateOrder::StartFirst),
                                Some("stop-first") => d.order = Some(UpdateOrder::StopFirst),
                                Some(other) => self.err(
                                    uv.line,
                                    &up,
                                    format!("{other:?}: expected start-first or stop-first"),
                                ),
                                None => {}
                            },
                            "failure_action" => match self.text(uv, &up).as_deref() {
                                Some("rollback") => d.rollback_on_failure = true,
                                Some("pause") | Some("continue") => d.rollback_on_failure = false,
                                Some(other) => self.err(
                                    uv.line,
                                    &up,
                                    format!("{other:?}: expected rollback, pause or continue"),
                                ),
                                None => {}
                            },
                            "delay" | "monitor" => {
                                self.duration(uv, &up);
                                self.notice(uk.line, &up, "is ignored: each replica must pass its health check before the next one is replaced");
                            }
                            "max_failure_ratio" => {
                                self.text(uv, &up);
                                self.notice(uk.line, &up, "is ignored");
                            }
                            _ => self.other_key(p, uk),
                        }
                    }
                }
                "restart_policy" => {
                    let Some(entries) = self.map(v, p) else {
                        continue;
                    };
                    for (rk, rv) in entries {
                        let rp = join(p, &rk.name);
                        match rk.name.as_str() {
                            "condition" => match self.text(rv, &rp).as_deref() {
                                Some("none") => restart = Some(RestartPolicy::No),
                                Some("on-failure") => restart = Some(RestartPolicy::OnFailure),
                                Some("any") => restart = Some(RestartPolicy::Always),
                                Some(other) => self.err(
                                    rv.line,
                                    &rp,
                                    format!("{other:?}: expected none, on-failure or any"),
                                ),
                                None => {}
                            },
                            "delay" | "window" => {
                                self.duration(rv, &rp);
                                self.notice(rk.line, &rp, "is ignored");
                            }
                            "max_attempts" => {
                                self.uint(rv, &rp, 0, u32::MAX as u64);
                                self.notice(rk.line, &rp, "is ignored");
                            }
                            _ => self.other_key(p, rk),
                        }
                    }
                }
                "rollback_config" => {
                    self.map(v, p);
                    self.notice(
                        k.line,
                        p,
                        "is ignored: a failed update goes back to the previous release as a whole",
                    );
                }
                "labels" => self.labels(v, p, labels),
                "endpoint_mode" => {
                    self.text(v, p);
                    self.notice(k.line, p, "is ignored");
                }
                _ => self.other_key(path, k),
            }
        }
        if let (DeployMode::Global, Some(line)) = (d.mode, replicas_line) {
            self.err(
                line,
                &join(path, "replicas"),
                "cannot be set with mode: global",
            );
        }
        (d, restart, limits)
    }

    fn resources(&mut self, v: &Node, path: &str) -> (Option<i64>, Option<i64>) {
        let mut limits = (None, None);
        let Some(entries) = self.map(v, path) else {
            return limits;
        };
        for (k, v) in entries {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "limits" => {
                    let Some(entries) = self.map(v, &p) else {
                        continue;
                    };
                    for (lk, lv) in entries {
                        let lp = join(&p, &lk.name);
                        match lk.name.as_str() {
                            "memory" => {
                                limits.0 = self
                                    .text(lv, &lp)
                                    .and_then(|t| self.memory(&t, lv.line, &lp))
                            }
                            "cpus" => {
                                limits.1 =
                                    self.text(lv, &lp).and_then(|t| self.cpus(&t, lv.line, &lp))
                            }
                            "pids" => {
                                self.uint(lv, &lp, 1, u32::MAX as u64);
                                self.notice(lk.line, &lp, "is ignored");
                            }
                            _ => self.other_key(&p, lk),
                        }
                    }
                }
                "reservations" => {
                    self.map(v, &p);
                    self.notice(
                        k.line,
                        &p,
                        "is ignored: Slipway places replicas by their limits",
                    );
                }
                _ => self.other_key(path, k),
            }
        }
        limits
    }

    fn x_slipway(
        &mut self,
        v: &Node,
        path: &str,
        spec: &mut ServiceSpec,
        publish_line: &mut usize,
    ) -> Option<XSlipway> {
        let entries = self.map(v, path)?;
        let mut x = XSlipway {
            line: v.line,
            domains: Vec::new(),
            path: None,
            sticky: false,
            health: None,
            port: None,
            routing: false,
        };
        for (k, v) in entries {
            let p = join(path, &k.name);
            let p = p.as_str();
            match k.name.as_str() {
                "domains" => {
                    x.routing = true;
                    for (line, d) in self.string_list(v, p) {
                        let d = d.trim().to_ascii_lowercase();
                        if !valid_domain(&d) {
                            self.err(line, p, format!("{d:?} is not a valid host name"));
                        } else if !x.domains.contains(&d) {
                            x.domains.push(d);
                        }
                    }
                }
                "path" => {
                    x.routing = true;
                    if let Some(t) = self.nonempty(v, p) {
                        if !t.starts_with('/') || t.contains(char::is_whitespace) {
                            self.err(v.line, p, format!("{t:?}: a path prefix starts with /"));
                        } else {
                            x.path = Some(t);
                        }
                    }
                }
                "sticky" => {
                    x.routing = true;
                    x.sticky = self.boolean(v, p).unwrap_or(false);
                }
                "health" => {
                    x.routing = true;
                    if let Some(t) = self.nonempty(v, p) {
                        if !t.starts_with('/') || t.contains(char::is_whitespace) {
                            self.err(v.line, p, format!("{t:?}: a health path starts with /"));
                        } else {
                            x.health = Some(t);
                        }
                    }
                }
                "port" => {
                    x.routing = true;
                    x.port = self.text(v, p).and_then(|t| match parse_port(&t) {
                        Ok(port) => Some(port),
                        Err(e) => {
                            self.err(v.line, p, e);
                            None
                        }
                    });
                }
                "publish" => {
                    *publish_line = k.line;
                    for (line, t) in self.string_list(v, p) {
                        match parse_publish(&t) {
                            Ok(ps) => {
                                if spec
                                    .publish
                                    .iter()
                                    .any(|q| q.host == ps.host && q.protocol == ps.protocol)
                                {
                                    self.err(
                                        line,
                                        p,
                                        format!("host port {} is published twice", ps.host),
                                    );
                                } else {
                                    spec.publish.push(ps);
                                }
                            }
                            Err(e) => self.err(line, p, e),
                        }
                    }
                }
                _ => self.other_key(path, k),
            }
        }
        Some(x)
    }

    /// Sets the service's ingress: it has one when it has `ports` or says
    /// how to route in `x-slipway`.
    fn ingress(&mut self, svc: &mut Svc, path: &str) {
        let routing = svc.x.as_ref().is_some_and(|x| x.routing);
        if svc.spec.ports.is_empty() && !routing {
            return;
        }
        let x = svc.x.as_ref();
        let port = x
            .and_then(|x| x.port)
            .or_else(|| svc.spec.ports.first().copied())
            .or_else(|| svc.spec.expose.first().copied());
        let Some(port) = port else {
            let line = x.map_or(svc.line, |x| x.line);
            self.err(
                line,
                &join(path, "x-slipway"),
                "no port to route to: add `ports`, `expose` or x-slipway.port",
            );
            return;
        };
        svc.spec.ingress = Some(Ingress {
            port,
            domains: x.map(|x| x.domains.clone()).unwrap_or_default(),
            path: x.and_then(|x| x.path.clone()).unwrap_or_else(|| "/".into()),
            sticky: x.is_some_and(|x| x.sticky),
            health_path: x
                .and_then(|x| x.health.clone())
                .unwrap_or_else(|| "/".into()),
        });
    }

    // ---- across services -------------------------------------------------

    /// Checks every `depends_on` names a service of the file.
    fn dependencies(&mut self, svcs: &mut [Svc]) {
        let names: Vec<String> = svcs.iter().map(|s| s.spec.name.clone()).collect();
        for svc in svcs.iter_mut() {
            let path = format!("services.{}.depends_on", svc.spec.name);
            let mut kept = Vec::new();
            for dep in std::mem::take(&mut svc.deps) {
                if !names.contains(&dep.service) && !dep.required {
                    self.notice(
                        dep.line,
                        &path,
                        format!(
                            "{:?} is not a service of this file; not waited for (required: false)",
                            dep.service
                        ),
                    );
                } else if !names.contains(&dep.service) {
                    self.err(
                        dep.line,
                        &path,
                        format!(
                            "depends on {:?}, which is not a service of this file",
                            dep.service
                        ),
                    );
                } else if kept.iter().any(|d: &Dep| d.service == dep.service) {
                    self.err(
                        dep.line,
                        &path,
                        format!("{:?} is listed twice", dep.service),
                    );
                } else {
                    kept.push(dep);
                }
            }
            svc.deps = kept;
        }
    }

    /// Drops the services with `profiles` (not deployed); fills each kept
    /// service's `depends_on`.
    fn drop_profiled(&mut self, svcs: Vec<Svc>, services_line: usize) -> Vec<Svc> {
        let dropped: Vec<String> = svcs
            .iter()
            .filter(|s| !s.profiles.is_empty())
            .map(|s| s.spec.name.clone())
            .collect();
        let mut kept = Vec::new();
        for mut svc in svcs {
            let path = format!("services.{}", svc.spec.name);
            if !svc.profiles.is_empty() {
                self.notice(
                    svc.line,
                    &path,
                    format!(
                        "has profiles ({}): it is not deployed",
                        svc.profiles.join(", ")
                    ),
                );
                continue;
            }
            let dpath = join(&path, "depends_on");
            let mut deps = Vec::new();
            for dep in std::mem::take(&mut svc.deps) {
                if dropped.contains(&dep.service) {
                    if dep.required {
                        self.err(
                            dep.line,
                            &dpath,
                            format!(
                                "depends on {:?}, which is not deployed (it has profiles)",
                                dep.service
                            ),
                        );
                    } else {
                        self.notice(
                            dep.line,
                            &dpath,
                            format!("{:?} is not deployed (it has profiles); not waited for (required: false)", dep.service),
                        );
                    }
                    continue;
                }
                svc.spec.depends_on.push(Dependency {
                    service: dep.service.clone(),
                    condition: dep.condition,
                });
                deps.push(dep);
            }
            svc.deps = deps;
            kept.push(svc);
        }
        if kept.is_empty() && !dropped.is_empty() {
            self.err(
                services_line,
                "services",
                "every service has profiles: there is nothing to deploy",
            );
        }
        kept
    }

    /// Start order: every service after those it depends on, file order
    /// otherwise. A cycle is an error naming it.
    fn order(&mut self, svcs: Vec<Svc>) -> Vec<Svc> {
        let index: HashMap<String, usize> = svcs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.spec.name.clone(), i))
            .collect();
        let deps: Vec<Vec<usize>> = svcs
            .iter()
            .map(|s| {
                s.deps
                    .iter()
                    .filter_map(|d| index.get(&d.service).copied())
                    .collect()
            })
            .collect();
        let mut placed = vec![false; svcs.len()];
        let mut order = Vec::with_capacity(svcs.len());
        while order.len() < svcs.len() {
            let next = (0..svcs.len()).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
            match next {
                Some(i) => {
                    placed[i] = true;
                    order.push(i);
                }
                None => {
                    // A cycle: walk unplaced dependencies until one repeats.
                    let start = (0..svcs.len()).find(|&i| !placed[i]).unwrap_or(0);
                    let mut walk = vec![start];
                    let mut at = start;
                    let cycle = loop {
                        let Some(&n) = deps[at].iter().find(|&&d| !placed[d]) else {
                            break walk.clone();
                        };
                        if let Some(pos) = walk.iter().position(|&w| w == n) {
                            let mut c = walk[pos..].to_vec();
                            c.push(n);
                            break c;
                        }
                        walk.push(n);
                        at = n;
                    };
                    let first = cycle[0];
                    let names: Vec<&str> =
                        cycle.iter().map(|&i| svcs[i].spec.name.as_str()).collect();
                    let svc = &svcs[first];
                    self.err(
                        svc.deps_line,
                        &format!("services.{}.depends_on", svc.spec.name),
                        format!("dependency cycle: {}", names.join(" → ")),
                    );
                    for (i, p) in placed.iter_mut().enumerate() {
                        if !*p {
                            *p = true;
                            order.push(i);
                        }
                    }
                }
            }
        }
        let mut slots: Vec<Option<Svc>> = svcs.into_iter().map(Some).collect();
        order.into_iter().filter_map(|i| slots[i].take()).collect()
    }

    /// Two services cannot take the same route, nor the same host port.
    fn routes(&mut self, svcs: &[Svc]) {
        for (j, b) in svcs.iter().enumerate() {
            let Some(ib) = &b.spec.ingress else { continue };
            let xb = b.x.as_ref();
            for a in &svcs[..j] {
                let Some(ia) = &a.spec.ingress else { continue };
                let xa = a.x.as_ref();
                if ia.path != ib.path {
                    continue;
                }
                let clash = if !ia.domains.is_empty() && !ib.domains.is_empty() {
                    ia.domains.iter().find(|d| ib.domains.contains(d)).cloned()
                } else if ia.domains.is_empty()
                    && ib.domains.is_empty()
                    && xa.is_some_and(|x| x.path.is_some())
                    && xb.is_some_and(|x| x.path.is_some())
                {
                    Some("the app's host names".to_string())
                } else {
                    None
                };
                if let Some(host) = clash {
                    let line = xb.map_or(b.line, |x| x.line);
                    self.err(
                        line,
                        &format!("services.{}.x-slipway", b.spec.name),
                        format!(
                            "same route as services.{} ({host}, path {})",
                            a.spec.name, ib.path
                        ),
                    );
                }
            }
        }
        let mut seen: Vec<(u16, &str, &str)> = Vec::new();
        for s in svcs {
            for p in &s.spec.publish {
                if let Some((_, _, other)) = seen
                    .iter()
                    .find(|(h, proto, _)| *h == p.host && *proto == p.protocol)
                {
                    self.err(
                        s.publish_line,
                        &format!("services.{}.x-slipway.publish", s.spec.name),
                        format!(
                            "host port {}/{} is also published by services.{other}",
                            p.host, p.protocol
                        ),
                    );
                } else {
                    seen.push((p.host, &p.protocol, &s.spec.name));
                }
            }
        }
    }
}

/// `node.labels.KEY == V`, `node.hostname != H`.
fn parse_constraint(text: &str) -> Result<Constraint, String> {
    let (attr, equal, value) = if let Some((a, v)) = text.split_once("==") {
        (a, true, v)
    } else if let Some((a, v)) = text.split_once("!=") {
        (a, false, v)
    } else {
        return Err(format!(
            "{text:?}: expected ATTRIBUTE == VALUE or ATTRIBUTE != VALUE"
        ));
    };
    let attribute = attr.trim();
    let value = value.trim();
    let ok_attr = attribute == "node.hostname"
        || attribute
            .strip_prefix("node.labels.")
            .is_some_and(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    if !ok_attr {
        return Err(format!(
            "{text:?}: only node.hostname and node.labels.KEY constraints are supported"
        ));
    }
    if value.is_empty() {
        return Err(format!("{text:?}: the value is missing"));
    }
    Ok(Constraint {
        attribute: attribute.to_string(),
        equal,
        value: value.to_string(),
    })
}

/// `HOST:CONTAINER[/tcp|/udp]`, host port 1024–65535.
fn parse_publish(text: &str) -> Result<PublishSpec, String> {
    let t = text.trim();
    let (spec, protocol) = match t.rsplit_once('/') {
        Some((s, p)) => (s, p.to_ascii_lowercase()),
        None => (t, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!("{text:?}: protocol must be tcp or udp"));
    }
    let Some((host, container)) = spec.split_once(':') else {
        return Err(format!("{text:?}: expected HOST:CONTAINER, e.g. 2222:22"));
    };
    let host = parse_port(host).map_err(|e| format!("{text:?}: {e}"))?;
    if host < 1024 {
        return Err(format!(
            "{text:?}: host port {host} is reserved; use 1024-65535"
        ));
    }
    let container = parse_port(container).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(PublishSpec {
        container,
        host,
        protocol,
    })
}
