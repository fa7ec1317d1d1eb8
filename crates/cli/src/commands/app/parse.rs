//! Client-side checks of obvious bad input for the app commands, so a typo
//! gets one clear line before any request is sent. The server stays the
//! authority: these use the same rules as `slipway_domain` where it has them.

use anyhow::{bail, Context};
use slipway_domain::app::valid_env_key;
use slipway_domain::AppName;
use std::collections::BTreeMap;

/// Checks an app name with the server's rule (it also goes into URL paths).
pub fn app_name(raw: &str) -> anyhow::Result<&str> {
    AppName::parse(raw)?;
    Ok(raw)
}

/// Checks a name used as one URL path segment (secret names).
pub fn segment<'a>(what: &str, raw: &'a str) -> anyhow::Result<&'a str> {
    if raw.is_empty()
        || raw.len() > 128
        || !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        || raw.starts_with('.')
    {
        bail!("invalid {what} {raw:?}: use letters, digits and _");
    }
    Ok(raw)
}

/// What `slipway scale` was asked: an app, maybe one of its stack's
/// services, and the replicas.
#[derive(Debug, PartialEq, Eq)]
pub struct ScaleTarget {
    /// The app.
    pub app: String,
    /// The stack service (`slipway scale APP SERVICE=N`).
    pub service: Option<String>,
    /// Replicas wanted.
    pub replicas: u32,
}

/// `APP=N`, `APP N` or `APP SERVICE=N`.
pub fn scale_target(target: &str, count: Option<&str>) -> anyhow::Result<ScaleTarget> {
    let bad = || {
        anyhow::anyhow!(
            "expected APP=N, or APP SERVICE=N for a service of a stack, with N a number; got {:?}",
            join(target, count)
        )
    };
    let (app, service, n) = match (target.split_once('='), count) {
        (Some((app, n)), None) => (app, None, n),
        (None, Some(c)) => match c.split_once('=') {
            Some((service, n)) => (target, Some(service), n),
            None => (target, None, c),
        },
        _ => return Err(bad()),
    };
    let replicas: u32 = n.trim().parse().ok().ok_or_else(bad)?;
    if let Some(s) = service {
        if !slipway_domain::stack::valid_service_name(s) {
            bail!("invalid service name {s:?}: services are named in lowercase letters, digits, - and _");
        }
    }
    Ok(ScaleTarget {
        app: app_name(app)?.to_owned(),
        service: service.map(str::to_owned),
        replicas,
    })
}

fn join(target: &str, count: Option<&str>) -> String {
    match count {
        Some(c) => format!("{target} {c}"),
        None => target.to_owned(),
    }
}

/// `KEY=VALUE` pairs (the value may contain `=` and be empty); `what` names
/// the flag or command in the error, e.g. `--env`.
pub fn env_pairs(what: &str, pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{what} expects KEY=VALUE, got {pair:?}");
        };
        env.insert(env_key(k)?.to_owned(), v.to_owned());
    }
    Ok(env)
}

/// A variable name to unset (a `KEY=VALUE` here is a slip of the hand).
pub fn env_key(k: &str) -> anyhow::Result<&str> {
    if k.contains('=') {
        bail!("expected a variable name, got {k:?} (`config unset` takes names only)");
    }
    if !valid_env_key(k) {
        bail!("invalid variable name {k:?}: use letters, digits and _, not starting with a digit");
    }
    Ok(k)
}

/// A memory size such as `256M`, `256MiB`, `1G` or `512` (MiB) → MiB.
pub fn memory_mb(raw: &str) -> anyhow::Result<u32> {
    let bad = || format!("invalid memory size {raw:?}: use a size like 256M or 1G");
    let t = raw.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok().with_context(bad)?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mi" | "mib" => 1.0,
        "g" | "gb" | "gi" | "gib" => 1024.0,
        _ => bail!(bad()),
    };
    let mb = (num * factor).round();
    if !(mb >= 1.0 && mb <= f64::from(u32::MAX)) {
        bail!(bad());
    }
    Ok(mb as u32)
}

/// A CPU limit in cores, e.g. `0.5`.
pub fn cpus(raw: &str) -> anyhow::Result<f64> {
    match raw.trim().parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 => Ok(c),
        _ => bail!("invalid CPU limit {raw:?}: use a number of cores like 0.5"),
    }
}

/// A release number, `3` or `v3`.
pub fn release(raw: &str) -> anyhow::Result<i64> {
    raw.strip_prefix('v')
        .unwrap_or(raw)
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("expected a release number like 3 or v3, got {raw:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_forms() {
        let t = |app: &str, service: Option<&str>, replicas| ScaleTarget {
            app: app.into(),
            service: service.map(Into::into),
            replicas,
        };
        assert_eq!(scale_target("web=3", None).unwrap(), t("web", None, 3));
        assert_eq!(scale_target("web", Some("0")).unwrap(), t("web", None, 0));
        assert_eq!(
            scale_target("shop", Some("web=2")).unwrap(),
            t("shop", Some("web"), 2)
        );
        let e = scale_target("web=abc", None).unwrap_err().to_string();
        assert!(e.contains("expected APP=N") && e.contains("web=abc"), "{e}");
        assert!(scale_target("shop", Some("web=x")).is_err());
        assert!(scale_target("shop", Some("Web=1")).is_err());
        assert!(scale_target("shop=1", Some("web=1")).is_err());
        assert!(scale_target("web", None).is_err());
        assert!(scale_target("web=-1", None).is_err());
        assert!(scale_target("Bad_Name=2", None).is_err());
    }

    #[test]
    fn env_and_keys() {
        let env = env_pairs("--env", &["A=1".into(), "URL=x=y".into(), "E=".into()]).unwrap();
        assert_eq!(env["URL"], "x=y");
        assert_eq!(env["E"], "");
        assert!(env_pairs("--env", &["FOO".into()]).is_err());
        assert!(env_pairs("--env", &["1X=2".into()]).is_err());
        assert!(env_key("A=1").is_err());
    }

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(memory_mb("256M").unwrap(), 256);
        assert_eq!(memory_mb("256MiB").unwrap(), 256);
        assert_eq!(memory_mb("1G").unwrap(), 1024);
        assert_eq!(memory_mb("0.5g").unwrap(), 512);
        assert_eq!(memory_mb("300").unwrap(), 300);
        for bad in ["", "M", "12K", "-1M", "0"] {
            assert!(memory_mb(bad).is_err(), "{bad}");
        }
        assert_eq!(cpus("0.5").unwrap(), 0.5);
        assert!(cpus("0").is_err() && cpus("NaN").is_err() && cpus("x").is_err());
        assert_eq!(release("v3").unwrap(), 3);
        assert_eq!(release("12").unwrap(), 12);
        assert!(release("v0").is_err() && release("x").is_err());
        assert!(segment("secret name", "bad name").is_err());
        assert!(segment("secret name", "API_KEY").is_ok());
    }
}
