//! The keys of one service.

use super::{join, valid_service_name, Cx, Declared, Dep, Svc};
use crate::values::{parse_env_file, parse_port, parse_port_entry, repo_path, shell_split};
use crate::yaml::{Key, Kind, Node};
use crate::MAX_FILE_BYTES;
use slipway_domain::limits::{parse_cpus, parse_memory, MIN_MEMORY_BYTES, MIN_NANO_CPUS};
use slipway_domain::stack::{
    BuildSpec, DependsCondition, Healthcheck, Mount, MountSource, RestartPolicy, ServiceSpec,
};
use std::collections::BTreeMap;

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

impl Cx<'_> {
    pub(super) fn service(&mut self, key: &Key, node: &Node, decl: &Declared) -> Svc {
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
        let has = |name: &str| entries.iter().any(|(k, _)| k.name == name);
        if entries.is_empty() {
            self.err(key.line, &path, "is empty: it needs `image` or `build`");
        } else if !has("image") && !has("build") {
            // (When one is there but wrong, its own error says so.)
            self.err(key.line, &path, "needs `image` or `build`");
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

    pub(super) fn memory(&mut self, t: &str, line: usize, path: &str) -> Option<i64> {
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

    pub(super) fn cpus(&mut self, t: &str, line: usize, path: &str) -> Option<i64> {
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

    pub(super) fn build(&mut self, v: &Node, path: &str) -> Option<BuildSpec> {
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
        // The Dockerfile, normalized and relative to the context (the build
        // sends only the context's files).
        let df = match repo_path(&spec.context, &spec.dockerfile) {
            Ok(df) => df,
            Err(e) => {
                self.err(dockerfile_line, path, format!("dockerfile: {e}"));
                return None;
            }
        };
        let relative = if spec.context == "." {
            Some(df.as_str())
        } else {
            df.strip_prefix(&format!("{}/", spec.context))
        };
        let Some(relative) = relative else {
            self.err(
                dockerfile_line,
                path,
                format!(
                    "the Dockerfile {df:?} is outside the build context {:?}",
                    spec.context
                ),
            );
            return None;
        };
        spec.dockerfile = relative.to_string();
        if self.files.read(&df).is_none() {
            self.err(
                dockerfile_line,
                path,
                format!("no Dockerfile {df:?} in the repository"),
            );
        }
        Some(spec)
    }

    pub(super) fn command(&mut self, v: &Node, path: &str) -> Option<Vec<String>> {
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

    pub(super) fn env_file(&mut self, v: &Node, path: &str, env: &mut BTreeMap<String, String>) {
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

    pub(super) fn ports(&mut self, v: &Node, path: &str, spec: &mut ServiceSpec) {
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

    pub(super) fn depends_on(&mut self, v: &Node, path: &str) -> Vec<Dep> {
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

    pub(super) fn healthcheck(&mut self, v: &Node, path: &str) -> Option<Healthcheck> {
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

    pub(super) fn restart(&mut self, v: &Node, path: &str) -> Option<RestartPolicy> {
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

    pub(super) fn labels(&mut self, v: &Node, path: &str, labels: &mut BTreeMap<String, String>) {
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

    pub(super) fn service_secrets(&mut self, v: &Node, path: &str, decl: &Declared) -> Vec<String> {
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

    pub(super) fn service_networks(&mut self, v: &Node, path: &str, decl: &Declared) {
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
}
