//! The Compose file's keys, one by one, into the stack model.
//!
//! This module has the reading context ([`Cx`]: errors, notices, typed
//! reads of YAML values with interpolation), the top level and the checks
//! across services (dependencies, profiles, start order, routes); the keys
//! of one service are in `service`, `mounts` and `deploy`.

mod deploy;
mod mounts;
mod service;

use crate::interp::interpolate;
use crate::values::{dir_of, parse_duration};
use crate::yaml::{self, Key, Kind, Node};
use crate::{
    ParseInput, RepoFiles, StackError, StackErrors, MAX_ERRORS, MAX_FILE_BYTES, MAX_SERVICES,
};
use slipway_domain::stack::{Dependency, DependsCondition, ServiceSpec, StackSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;

type Entries = [(Key, Node)];

/// Most errors collected before giving up on a file (only [`MAX_ERRORS`] are shown).
const COLLECT_ERRORS: usize = 200;

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
