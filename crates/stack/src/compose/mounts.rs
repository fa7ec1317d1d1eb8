//! `volumes` and `tmpfs` of a service: named volumes, repository directories, tmpfs.

use super::{join, valid_object_name, Cx, Declared, Entries};
use crate::values::repo_path;
use crate::yaml::{Kind, Node};
use slipway_domain::stack::{Mount, MountSource};

impl Cx<'_> {
    pub(super) fn add_mount(
        &mut self,
        mounts: &mut Vec<Mount>,
        mount: Mount,
        line: usize,
        path: &str,
    ) {
        if mounts.iter().any(|m| m.target == mount.target) {
            self.err(line, path, format!("two mounts at {:?}", mount.target));
            return;
        }
        mounts.push(mount);
    }

    /// A repository directory to bind-mount: its normalized path.
    pub(super) fn repo_dir(&mut self, source: &str, line: usize, path: &str) -> Option<String> {
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

    pub(super) fn named_volume(
        &mut self,
        name: &str,
        line: usize,
        path: &str,
        decl: &Declared,
    ) -> bool {
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

    pub(super) fn volumes(
        &mut self,
        v: &Node,
        path: &str,
        mounts: &mut Vec<Mount>,
        decl: &Declared,
    ) {
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

    pub(super) fn volume_short(
        &mut self,
        item: &Node,
        path: &str,
        decl: &Declared,
    ) -> Option<Mount> {
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

    pub(super) fn volume_long(
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
    pub(super) fn sub_options(&mut self, v: &Node, path: &str, allowed: &[&str]) {
        if let Some(entries) = self.map(v, path) {
            for (k, _) in entries {
                if !allowed.contains(&k.name.as_str()) {
                    self.other_key(path, k);
                }
            }
        }
    }
}
