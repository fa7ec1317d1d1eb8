//! Small value formats of Compose files: durations, shell-like command
//! lines, ports, repository paths and `.env` files.

/// A Compose (Go) duration such as `1m30s`, `10s`, `500ms`, `1.5h`, or `0`,
/// in milliseconds (sub-millisecond parts are dropped).
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a duration (use e.g. 10s, 1m30s, 500ms, 1h)");
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "{text:?} is not a duration: a unit is missing (e.g. 10s)"
                ))
            }
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ns += value * scale;
    }
    let ms = total_ns / 1e6;
    if !ms.is_finite() || ms > 1e13 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(ms as u64)
}

/// Splits a command line like a POSIX shell would split words: blanks
/// separate, `'…'` is literal, `"…"` honours `\"`, `\\`, `\$` and `` \` ``,
/// and a backslash outside quotes escapes the next character. No
/// expansion happens.
pub(crate) fn shell_split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("{line:?}: unterminated ' quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("{line:?}: unterminated \" quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("{line:?}: unterminated \" quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The directory part of a repository path (`deploy/compose.yaml` →
/// `deploy`, `compose.yaml` → ``).
pub(crate) fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// `rel` (relative to the repository directory `base`) as a normalized path
/// from the repository root: no `.`, no `..`, no empty parts; the root is
/// `.`. Refuses absolute paths and paths that leave the repository.
pub(crate) fn repo_path(base: &str, rel: &str) -> Result<String, String> {
    if rel.starts_with('/') || rel.starts_with('~') || rel.starts_with('\\') {
        return Err(format!(
            "{rel:?}: host paths are not allowed (only paths inside the repository, e.g. ./config)"
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(rel.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{rel:?} leaves the repository (too many ..)"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        Ok(".".to_string())
    } else {
        Ok(parts.join("/"))
    }
}

/// A container port `1`–`65535`; ranges are refused.
pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    let t = text.trim();
    if t.contains('-') {
        return Err(format!("{text:?}: port ranges are not supported"));
    }
    match t.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("{text:?} is not a port (1-65535)")),
    }
}

/// A short-syntax `ports:` entry: `80`, `8080:80`, `127.0.0.1:8080:80`,
/// `[::1]:8080:80`, `127.0.0.1::80`, each with an optional `/tcp` or `/udp`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PortEntry {
    pub container: u16,
    /// What was written on the host side (address and/or port), if anything.
    pub host: Option<String>,
    /// The host port, if one was written.
    pub published: Option<u16>,
    pub protocol: String,
}

pub(crate) fn parse_port_entry(text: &str) -> Result<PortEntry, String> {
    let t = text.trim();
    let (spec, protocol) = match t.rsplit_once('/') {
        Some((s, p)) => (s, p.to_ascii_lowercase()),
        None => (t, "tcp".to_string()),
    };
    let (host, container) = match spec.rsplit_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, spec),
    };
    let container = parse_port(container).map_err(|e| format!("{text:?}: {e}"))?;
    let mut published = None;
    if let Some(h) = host {
        // Host side: `PORT`, `IP:PORT`, `IP:` (any port) or `[v6]:PORT`.
        let port_part = if h.starts_with('[') {
            match h.rfind("]:") {
                Some(i) => &h[i + 2..],
                None => "",
            }
        } else {
            match h.rsplit_once(':') {
                Some((_, p)) => p,
                None if h.contains('.') => "",
                None => h,
            }
        };
        if !port_part.is_empty() {
            published = Some(parse_port(port_part).map_err(|e| format!("{text:?}: {e}"))?);
        }
    }
    Ok(PortEntry {
        container,
        host: host.map(str::to_string),
        published,
        protocol,
    })
}

/// One variable of an `env_file`: its value, whether the value should be
/// interpolated (not for single-quoted values), or `None` for a bare `KEY`.
pub(crate) type EnvLine = (String, Option<(String, bool)>);

/// Reads a `.env` style file: `KEY=VALUE` lines, `#` comments, blank lines,
/// an optional `export ` prefix; values may be `"double"` (with `\n`,
/// `\"`, `\\` escapes) or `'single'` quoted; unquoted values end at ` #`.
/// The error is (line in that file, message).
pub(crate) fn parse_env_file(text: &str) -> Result<Vec<EnvLine>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((n, format!("expected KEY=VALUE, found {raw:?}")));
        }
        let value = match value {
            None => None,
            Some(v) => {
                let v = v.trim_start();
                if let Some(body) = v.strip_prefix('"') {
                    let mut s = String::new();
                    let mut chars = body.chars();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.next() {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('r') => s.push('\r'),
                                Some(c @ ('"' | '\\')) => s.push(c),
                                Some(c) => {
                                    s.push('\\');
                                    s.push(c);
                                }
                                None => {}
                            },
                            c => s.push(c),
                        }
                    }
                    if !closed {
                        return Err((n, format!("unterminated \" quote in {raw:?}")));
                    }
                    Some((s, true))
                } else if let Some(body) = v.strip_prefix('\'') {
                    match body.find('\'') {
                        Some(end) => Some((body[..end].to_string(), false)),
                        None => return Err((n, format!("unterminated ' quote in {raw:?}"))),
                    }
                } else {
                    let v = match v.find(" #") {
                        Some(i) => &v[..i],
                        None => v,
                    };
                    Some((v.trim_end().to_string(), true))
                }
            }
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500));
        assert_eq!(parse_duration("2h45m"), Ok(9_900_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("10").unwrap_err().contains("unit"));
        assert!(parse_duration("10 s").is_err());
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c 'echo "hi there"' "a b" c\ d"#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a b", "c d"]
        );
        assert_eq!(
            shell_split(r#"python -m "x\"y" ''"#).unwrap(),
            vec!["python", "-m", "x\"y", ""]
        );
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
        assert!(shell_split("echo 'open").is_err());
    }

    #[test]
    fn repo_paths() {
        assert_eq!(repo_path("", "./conf"), Ok("conf".into()));
        assert_eq!(repo_path("deploy", "./conf/"), Ok("deploy/conf".into()));
        assert_eq!(repo_path("deploy", "../app"), Ok("app".into()));
        assert_eq!(repo_path("deploy", ".."), Ok(".".into()));
        assert_eq!(repo_path("", "."), Ok(".".into()));
        assert_eq!(repo_path("a/b", "./x/../y"), Ok("a/b/y".into()));
        assert!(repo_path("", "../etc").unwrap_err().contains("leaves"));
        assert!(repo_path("deploy", "../../x").is_err());
        assert!(repo_path("", "/etc").unwrap_err().contains("host paths"));
        assert!(repo_path("", "~/x").is_err());
        assert_eq!(dir_of("deploy/compose.yaml"), "deploy");
        assert_eq!(dir_of("compose.yaml"), "");
    }

    #[test]
    fn port_entries() {
        let p = parse_port_entry("80").unwrap();
        assert_eq!((p.container, p.host, p.published), (80, None, None));
        let p = parse_port_entry("8080:80").unwrap();
        assert_eq!((p.container, p.published), (80, Some(8080)));
        let p = parse_port_entry("127.0.0.1:8080:80/tcp").unwrap();
        assert_eq!(
            (p.container, p.published, p.protocol.as_str()),
            (80, Some(8080), "tcp")
        );
        let p = parse_port_entry("127.0.0.1::80").unwrap();
        assert_eq!((p.container, p.published), (80, None));
        assert_eq!(p.host.as_deref(), Some("127.0.0.1:"));
        let p = parse_port_entry("[::1]:8080:80").unwrap();
        assert_eq!((p.container, p.published), (80, Some(8080)));
        assert_eq!(parse_port_entry("53/udp").unwrap().protocol, "udp");
        assert!(parse_port_entry("3000-3005")
            .unwrap_err()
            .contains("ranges"));
        assert!(parse_port_entry("8000-8001:80")
            .unwrap_err()
            .contains("ranges"));
        assert!(parse_port_entry("70000").is_err());
        assert!(parse_port_entry("web").is_err());
        assert!(parse_port_entry("0").is_err());
    }

    #[test]
    fn env_files() {
        let text =
            "# comment\n\nA=1\nexport B = two \nC=\"x y\\n\" \nD='$lit'\nE=val # note\nF\nG=\n";
        let got = parse_env_file(text).unwrap();
        assert_eq!(
            got,
            vec![
                ("A".into(), Some(("1".into(), true))),
                ("B".into(), Some(("two".into(), true))),
                ("C".into(), Some(("x y\n".into(), true))),
                ("D".into(), Some(("$lit".into(), false))),
                ("E".into(), Some(("val".into(), true))),
                ("F".into(), None),
                ("G".into(), Some(("".into(), true))),
            ]
        );
        assert_eq!(parse_env_file("A=1\nnot a line\n").unwrap_err().0, 2);
        assert_eq!(parse_env_file("A=\"open\n").unwrap_err().0, 1);
    }
}
