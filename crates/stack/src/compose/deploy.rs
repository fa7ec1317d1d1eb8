//! `deploy` and `x-slipway` of a service, and its ingress.

use super::{join, Cx, Svc, XSlipway};
use crate::values::parse_port;
use crate::yaml::Node;
use slipway_domain::app::valid_domain;
use slipway_domain::stack::{
    Constraint, DeployMode, Ingress, PublishSpec, RestartPolicy, ServiceDeploy, ServiceSpec,
    UpdateOrder,
};
use std::collections::BTreeMap;

impl Cx<'_> {
    /// `deploy:`: the settings, the restart policy it sets, and its limits
    /// (memory, CPUs).
    #[allow(clippy::type_complexity)]
    pub(super) fn deploy(
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

    pub(super) fn resources(&mut self, v: &Node, path: &str) -> (Option<i64>, Option<i64>) {
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

    pub(super) fn x_slipway(
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
    pub(super) fn ingress(&mut self, svc: &mut Svc, path: &str) {
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
        let route = x.and_then(|x| x.path.clone()).unwrap_or_else(|| "/".into());
        svc.spec.ingress = Some(Ingress {
            port,
            domains: x.map(|x| x.domains.clone()).unwrap_or_default(),
            // By default the proxy checks the route's own path: a service
            // routed at /result gets only /result… and may well answer 404
            // on / (which would keep it from ever going live).
            health_path: x
                .and_then(|x| x.health.clone())
                .unwrap_or_else(|| route.clone()),
            path: route,
            sticky: x.is_some_and(|x| x.sticky),
        });
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
