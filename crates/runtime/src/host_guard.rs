//! Keeping tenant containers away from the host's own ports.
//!
//! Containers on a bridge reach the host through the bridge's gateway
//! address, and with it every port the host listens on for all addresses:
//! Slipway's API, etcd, PostgreSQL, SSH. Docker's isolation rules only cover
//! traffic between bridges (FORWARD), not traffic to the host itself (INPUT).
//! So every network Slipway makes gets a bridge interface named
//! `slipbr<hash>` ([`bridge_name`]), and one firewall rule drops new
//! connections from any such interface to the host. Replies to the host's
//! own connections (the proxy talking to a replica) still pass; DNS is
//! answered inside each container by the engine, and traffic to the outside
//! world is forwarded, not delivered to the host, so egress still works.

use std::process::Command;

/// Prefix of the bridge interfaces of Slipway's networks.
pub const BRIDGE_PREFIX: &str = "slipbr";

/// The bridge interface name of network `network` (at most 15 characters,
/// the kernel's limit).
pub fn bridge_name(network: &str) -> String {
    // FNV-1a, stable across builds and runs (DefaultHasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in network.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{BRIDGE_PREFIX}{:09x}", hash & 0xf_ffff_ffff)
}

/// The rule, as `iptables` arguments after the chain operation.
fn rule() -> Vec<String> {
    [
        "INPUT",
        "-i",
        &format!("{BRIDGE_PREFIX}+"),
        "-m",
        "conntrack",
        "!",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-m",
        "comment",
        "--comment",
        "slipway: tenant containers may not open connections to the host",
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Installs the firewall rule unless it is there (idempotent). Fails with
/// a readable reason when `iptables` is missing or not permitted; the
/// caller logs it (containers then can reach the host's ports).
pub fn block_host_access() -> Result<(), String> {
    let run = |op: &str| {
        let mut args = vec!["-w".to_string(), op.to_string()];
        args.extend(rule());
        if op == "-I" {
            // First in the chain: before any ACCEPT of the host's own rules.
            args.insert(3, "1".into());
        }
        Command::new("iptables").args(&args).output()
    };
    match run("-C") {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(format!("cannot run iptables: {e}")),
    }
    let out = run("-I").map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables refused the rule: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_are_short_stable_and_prefixed() {
        let a = bridge_name("slipway-ci-abc-1-net");
        assert_eq!(a, bridge_name("slipway-ci-abc-1-net"));
        assert_ne!(a, bridge_name("slipway-ci-abc-2-net"));
        assert!(a.starts_with(BRIDGE_PREFIX) && a.len() <= 15, "{a}");
    }
}
