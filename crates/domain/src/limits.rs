//! CPU, memory and process limits of tenant containers.
//!
//! Every container a user's work runs in (CI steps and services, app
//! replicas) gets a memory, CPU and pids limit: the server's default when the
//! user asks for none, what they ask for up to the server's maximum. One
//! push or one app can then never starve the server or the other tenants.

use serde::{Deserialize, Serialize};

/// Limits as asked for (a pipeline file's `resources:`) or as applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes (swap included: no swap beyond it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// CPU limit in billionths of a CPU (1.5 CPUs = 1_500_000_000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
}

impl Resources {
    /// `memory 512 MiB, 1.5 CPUs` (what `pipeline show` and `ps` print).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory_bytes {
            parts.push(format!("memory {}", format_bytes(m)));
        }
        if let Some(n) = self.nano_cpus {
            parts.push(format!("{} CPU", n as f64 / 1e9));
        }
        if parts.is_empty() {
            "unlimited".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A server's limits for one kind of container: defaults and maximums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitPolicy {
    /// Memory given when none is asked for.
    pub default_memory_bytes: i64,
    /// Most memory that may be asked for.
    pub max_memory_bytes: i64,
    /// CPU given when none is asked for (billionths of a CPU).
    pub default_nano_cpus: i64,
    /// Most CPU that may be asked for.
    pub max_nano_cpus: i64,
    /// Processes one container may run.
    pub pids: i64,
}

impl LimitPolicy {
    /// The limits to apply for a request; `what` names the requester in errors
    /// (`step "build"`).
    pub fn resolve(&self, asked: Resources, what: &str) -> Result<Resources, String> {
        let memory = asked.memory_bytes.unwrap_or(self.default_memory_bytes);
        if memory < MIN_MEMORY_BYTES {
            return Err(format!(
                "{what}: memory {} is below the minimum of {}",
                format_bytes(memory),
                format_bytes(MIN_MEMORY_BYTES)
            ));
        }
        if memory > self.max_memory_bytes {
            return Err(format!(
                "{what}: memory {} is over this server's maximum of {}",
                format_bytes(memory),
                format_bytes(self.max_memory_bytes)
            ));
        }
        let cpus = asked.nano_cpus.unwrap_or(self.default_nano_cpus);
        if cpus < MIN_NANO_CPUS {
            return Err(format!("{what}: cpus must be at least 0.01"));
        }
        if cpus > self.max_nano_cpus {
            return Err(format!(
                "{what}: {} CPUs is over this server's maximum of {}",
                cpus as f64 / 1e9,
                self.max_nano_cpus as f64 / 1e9
            ));
        }
        Ok(Resources {
            memory_bytes: Some(memory),
            nano_cpus: Some(cpus),
        })
    }
}

impl LimitPolicy {
    /// Like [`LimitPolicy::resolve`], but a request outside the bounds is
    /// brought within them (a release made before the maximum was lowered
    /// still starts, within today's maximum).
    pub fn clamp(&self, asked: Resources) -> Resources {
        Resources {
            memory_bytes: Some(
                asked
                    .memory_bytes
                    .unwrap_or(self.default_memory_bytes)
                    .clamp(
                        MIN_MEMORY_BYTES,
                        self.max_memory_bytes.max(MIN_MEMORY_BYTES),
                    ),
            ),
            nano_cpus: Some(
                asked
                    .nano_cpus
                    .unwrap_or(self.default_nano_cpus)
                    .clamp(MIN_NANO_CPUS, self.max_nano_cpus.max(MIN_NANO_CPUS)),
            ),
        }
    }
}

/// Smallest memory limit accepted: the engine refuses less than 6 MiB.
pub const MIN_MEMORY_BYTES: i64 = 8 << 20;
/// Smallest CPU limit accepted (0.01 CPU).
pub const MIN_NANO_CPUS: i64 = 10_000_000;

/// Parses a memory size: bytes (`1073741824`) or a number with a unit
/// (`512m`, `512MiB`, `1g`, `1.5GB`, `64k`); units are powers of 1024.
pub fn parse_memory(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("memory {text:?}: expected a size such as 512m or 2g"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "memory {text:?}: unknown unit {other:?} (use k, m or g)"
            ))
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes > i64::MAX as f64 / 2.0 {
        return Err(format!("memory {text:?} is too large"));
    }
    Ok(bytes as i64)
}

/// Parses a CPU count (`1`, `0.5`, `"2"`) into billionths of a CPU.
pub fn parse_cpus(text: &str) -> Result<i64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("cpus {text:?}: expected a number such as 0.5 or 2"))?;
    if !v.is_finite() || v <= 0.0 || v > 1024.0 {
        return Err(format!(
            "cpus {text:?}: expected a number between 0.01 and 1024"
        ));
    }
    Ok((v * 1e9).round() as i64)
}

/// `512 MiB`, `2 GiB`, `1.5 GiB`, `300 KiB`.
pub fn format_bytes(bytes: i64) -> String {
    let b = bytes as f64;
    let (value, unit) = if b >= (1u64 << 30) as f64 {
        (b / (1u64 << 30) as f64, "GiB")
    } else if b >= (1 << 20) as f64 {
        (b / (1 << 20) as f64, "MiB")
    } else if b >= 1024.0 {
        (b / 1024.0, "KiB")
    } else {
        return format!("{bytes} B");
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.trim_end_matches(".0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LimitPolicy {
        LimitPolicy {
            default_memory_bytes: 1 << 30,
            max_memory_bytes: 4 << 30,
            default_nano_cpus: 1_000_000_000,
            max_nano_cpus: 2_000_000_000,
            pids: 4096,
        }
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("5t").is_err());
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert!(parse_cpus("0").is_err());
    }

    #[test]
    fn defaults_fill_in_and_maximums_hold() {
        let p = policy();
        let r = p.resolve(Resources::default(), "step \"a\"").unwrap();
        assert_eq!(r.memory_bytes, Some(1 << 30));
        assert_eq!(r.nano_cpus, Some(1_000_000_000));
        assert_eq!(r.describe(), "memory 1 GiB, 1 CPU");
        let e = p
            .resolve(
                Resources {
                    memory_bytes: Some(8 << 30),
                    nano_cpus: None,
                },
                "step \"a\"",
            )
            .unwrap_err();
        assert!(e.contains("maximum of 4 GiB"), "{e}");
        assert!(p
            .resolve(
                Resources {
                    memory_bytes: None,
                    nano_cpus: Some(3_000_000_000)
                },
                "x"
            )
            .is_err());
    }
}
