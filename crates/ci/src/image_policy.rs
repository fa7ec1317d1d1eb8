//! Which images a pipeline may run.
//!
//! The Docker Engine holds every tenant's images: app releases
//! (`slipway/app-<app>:<sha>`), images other users built, anything an admin
//! loaded. Docker resolves bare ID prefixes (`2c44`), `sha256:` IDs and any
//! local tag, so without a policy one user's step could run, and read, another
//! user's private image. A step, service or `FROM` line may therefore name:
//!
//! * Slipway's base images (`slipway/busybox`, `slipway/debian`) and the code
//!   execution service's language images (`slipway/exec-*`);
//! * images in this server's registry (`<host:port>/<owner>/<name>:<tag>`) that
//!   the pusher may read, pulled with the pusher's rights;
//! * images an admin allowed by name (`ci_allowed_images`, glob patterns such as
//!   `alpine`, `postgres:16*` or `ghcr.io/acme/*`).
//!
//! Everything else is refused when the pipeline is queued, with a message
//! saying what is allowed.

use glob::Pattern;

/// Slipway's own images any pipeline may use (repository names, any tag).
const BASE_IMAGES: &[&str] = &["slipway/busybox", "slipway/debian"];
/// Prefix of the code execution service's language images.
const EXEC_IMAGE_PREFIX: &str = "slipway/exec-";

/// An image reference taken apart the way Docker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (`docker.io` when none is written).
    pub domain: String,
    /// Repository path, `library/` added for official Docker Hub images.
    pub path: String,
    /// Tag (`latest` when neither tag nor digest is written).
    pub tag: Option<String>,
    /// `sha256:…` digest, when pinned.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `reference`; bare image IDs and `sha256:` IDs are refused.
    pub fn parse(reference: &str) -> Result<Self, String> {
        let r = reference.trim();
        if r.is_empty() || r.len() > 255 || r.chars().any(|c| c.is_whitespace()) {
            return Err("an image reference must be non-empty, without spaces".into());
        }
        if r.starts_with("sha256:") || (r.len() <= 64 && r.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(format!(
                "{r:?} looks like an image ID; name images by repository and tag (e.g. slipway/busybox:latest)"
            ));
        }
        let (rest, digest) = match r.split_once('@') {
            Some((name, d)) => (name, Some(d.to_string())),
            None => (r, None),
        };
        if let Some(d) = &digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{r:?}: a digest is sha256: and 64 hex digits"));
            }
        }
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        let tag = match (tag, &digest) {
            (Some(t), _) if t.is_empty() => return Err(format!("{r:?}: empty tag")),
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, after))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), after.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let domain = match domain.as_str() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            _ => domain,
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let valid_component = |c: &str| {
            !c.is_empty()
                && c.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
                })
        };
        if !path.split('/').all(valid_component) {
            return Err(format!(
                "{r:?}: repository names are lower-case letters, digits and . _ - separated by /"
            ));
        }
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The short form Docker shows: `alpine`, `slipway/busybox`, `ghcr.io/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain == "docker.io" {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The fully qualified name without tag: `docker.io/library/alpine`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// Where an allowed image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Present in the local engine (a base image or an admin-allowed one).
    Local,
    /// This server's registry: pulled with the pusher's rights before use.
    Registry {
        /// The registry repository's owner (a user); the pusher must be them
        /// or an administrator.
        owner: String,
    },
}

/// The server's image rules for pipelines (module documentation).
#[derive(Debug, Clone, Default)]
pub struct ImagePolicy {
    allowed: Vec<Pattern>,
}

impl ImagePolicy {
    /// A policy allowing, besides base and registry images, the admin's
    /// `allowed` patterns.
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed
            .iter()
            .map(|p| {
                Pattern::new(p.trim()).map_err(|e| format!("allowed image pattern {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ImagePolicy { allowed })
    }

    /// Whether `image` may be used, and where it comes from; the error says
    /// why not. `registry_hosts` are the `host:port` names this server's
    /// registry answers to.
    pub fn check(&self, image: &str, registry_hosts: &[String]) -> Result<ImageSource, String> {
        let r = ImageRef::parse(image)?;
        let familiar = r.familiar_name();
        if r.domain == "docker.io"
            && (BASE_IMAGES.contains(&familiar.as_str()) || familiar.starts_with(EXEC_IMAGE_PREFIX))
        {
            return Ok(ImageSource::Local);
        }
        if registry_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&r.domain))
        {
            return match r.path.split_once('/') {
                Some((owner, name)) if !name.is_empty() => Ok(ImageSource::Registry {
                    owner: owner.to_string(),
                }),
                _ => Err(format!(
                    "{image:?}: registry images are {}/<owner>/<name>:<tag>",
                    r.domain
                )),
            };
        }
        let tag = r.tag.as_deref().unwrap_or("latest");
        let candidates = [
            familiar.clone(),
            format!("{familiar}:{tag}"),
            r.full_name(),
            format!("{}:{tag}", r.full_name()),
        ];
        if self
            .allowed
            .iter()
            .any(|p| candidates.iter().any(|c| p.matches(c)))
        {
            return Ok(ImageSource::Local);
        }
        Err(format!(
            "image {image:?} is not allowed on this server: use slipway/busybox, slipway/debian, \
             a slipway/exec-* image{}, or an image in this server's registry that you can read{}",
            if self.allowed.is_empty() {
                String::new()
            } else {
                format!(
                    ", or one the administrator allowed ({})",
                    self.allowed
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            if self.allowed.is_empty() {
                "; an administrator can allow more with the ci_allowed_images setting"
            } else {
                ""
            }
        ))
    }
}

/// The images a Dockerfile builds on: every `FROM` image and `COPY --from=`
/// image that is not an earlier stage. `ARG` defaults declared before the
/// first `FROM` are substituted; a reference still holding a variable is
/// returned as written, so the policy refuses it.
pub fn dockerfile_images(dockerfile: &str) -> Vec<String> {
    let mut args: std::collections::HashMap<String, String> = Default::default();
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut seen_from = false;
    for line in logical_lines(dockerfile) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        match instruction.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for decl in words {
                    if let Some((k, v)) = decl.split_once('=') {
                        args.insert(k.to_string(), v.trim_matches('"').to_string());
                    }
                }
            }
            "FROM" => {
                seen_from = true;
                let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
                let Some(image) = rest.first() else { continue };
                let image = substitute(image, &args);
                if !stages.iter().any(|s| s.eq_ignore_ascii_case(&image)) && image != "scratch" {
                    images.push(image);
                }
                if rest.len() >= 3 && rest[1].eq_ignore_ascii_case("as") {
                    stages.push(rest[2].to_string());
                }
            }
            "COPY" | "ADD" => {
                for w in words {
                    if let Some(from) = w.strip_prefix("--from=") {
                        let from = substitute(from, &args);
                        let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&from))
                            || from.parse::<usize>().is_ok();
                        if !is_stage {
                            images.push(from);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    images
}

/// Lines with `\` continuations joined and comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if current.is_empty() && line.starts_with('#') {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `$NAME` and `${NAME}` replaced by known `args`; unknown ones stay.
fn substitute(word: &str, args: &std::collections::HashMap<String, String>) -> String {
    let mut out = word.to_string();
    for (k, v) in args {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Policy(ImagePolicy);

    impl Policy {
        fn check(&self, image: &str) -> Result<ImageSource, String> {
            self.0.check(image, &["127.0.0.1:7700".to_string()])
        }
    }

    fn policy() -> Policy {
        Policy(
            ImagePolicy::new(&[
                "alpine".into(),
                "postgres:16*".into(),
                "ghcr.io/acme/*".into(),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn ids_and_digests_are_refused() {
        let p = policy();
        for id in ["2c44", "2C44", "sha256:2c44aa", &"a".repeat(64), "deadbeef"] {
            let e = p.check(id).unwrap_err();
            assert!(e.contains("image ID"), "{id}: {e}");
        }
    }

    #[test]
    fn base_images_and_registry_images_pass() {
        let p = policy();
        for ok in [
            "slipway/busybox:latest",
            "slipway/busybox",
            "docker.io/slipway/debian:bookworm",
            "slipway/exec-python:3.11",
        ] {
            assert_eq!(p.check(ok), Ok(ImageSource::Local), "{ok}");
        }
        assert_eq!(
            p.check("127.0.0.1:7700/dev/tools:1"),
            Ok(ImageSource::Registry {
                owner: "dev".into()
            })
        );
    }

    #[test]
    fn other_local_images_need_the_allow_list() {
        let p = policy();
        for bad in [
            "slipway/app-web:abc123",
            "slipway/app-web",
            "slipway/other",
            "postgres:15",
            "ubuntu",
            "ghcr.io/other/x:1",
            "localhost:5000/x",
            "127.0.0.1:7700/solo",
        ] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
        for ok in [
            "alpine",
            "alpine:3.19",
            "docker.io/library/alpine:3",
            "postgres:16.2",
            "ghcr.io/acme/tool:2",
        ] {
            assert_eq!(p.check(ok), Ok(ImageSource::Local), "{ok}");
        }
        assert!(ImagePolicy::default()
            .check("alpine", &[])
            .unwrap_err()
            .contains("ci_allowed_images"));
    }

    #[test]
    fn references_parse_like_docker() {
        let r = ImageRef::parse("localhost:5000/a/b:1@sha256:".to_string().as_str());
        assert!(r.is_err());
        let r = ImageRef::parse("127.0.0.1:7700/dev/web:abc").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("127.0.0.1:7700", "dev/web")
        );
        assert_eq!(r.tag.as_deref(), Some("abc"));
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.full_name(), "docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");
        assert!(ImageRef::parse("Upper/Case").is_err());
    }

    #[test]
    fn dockerfile_bases_exclude_stages() {
        let text = "# syntax\nARG BASE=slipway/busybox:latest\nFROM ${BASE} AS build\nRUN echo \\\n  hi\nFROM --platform=linux/amd64 slipway/app-other:1\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --from=2c44 /etc/passwd /x\nFROM build\nFROM $UNKNOWN\n";
        assert_eq!(
            dockerfile_images(text),
            vec![
                "slipway/busybox:latest",
                "slipway/app-other:1",
                "2c44",
                "$UNKNOWN"
            ]
        );
    }
}
