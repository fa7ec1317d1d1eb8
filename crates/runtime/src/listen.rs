//! Which TCP ports a running container listens on: the deployer and the
//! cluster runner use it to say at once "nothing listens on port P inside
//! the container; it listens on 80" instead of waiting for a health check
//! to time out with an HTTP client error.
//!
//! The container's sockets are read from its network namespace's
//! `/proc/<pid>/net/tcp` and `tcp6` on the host (the container's main
//! process id from the engine; its cgroup must name the container, so a
//! server in another pid namespace never reads a stranger's sockets). When
//! that is not possible (no permission, another pid namespace) they are read
//! inside the container with `cat /proc/net/tcp /proc/net/tcp6` through a
//! Docker exec; images without `cat` then give no answer.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;

use crate::error::{Result, RuntimeError};
use crate::Runtime;

/// Longest wait for the in-container fallback (`cat` through an exec).
const EXEC_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes of `/proc/net/tcp*` read through an exec.
const EXEC_MAX_BYTES: usize = 1 << 20;
/// `st` of a socket in LISTEN state in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// One listening TCP socket of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    /// Local address (`0.0.0.0` or `::` for every address).
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
}

impl Listener {
    fn loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
    }
}

/// Whether a port of a container can be reached from outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortCheck {
    /// A socket listens on it on a reachable address.
    Open,
    /// It listens only on the loopback address: the published port (and so
    /// the proxy) cannot reach it.
    LoopbackOnly,
    /// Nothing listens on it.
    Closed,
}

/// Where Docker's embedded DNS server listens inside containers on
/// user-defined networks (on a random port).
const DOCKER_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// The listening TCP sockets of a container at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listening {
    /// Sockets in LISTEN state, IPv4 and IPv6, sorted.
    pub sockets: BTreeSet<Listener>,
}

impl Listening {
    /// Parses the text of `/proc/net/tcp` and/or `/proc/net/tcp6` (one after
    /// the other is fine: header lines and lines it cannot read are skipped).
    pub fn parse(text: &str) -> Self {
        let sockets = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let _slot = fields.next()?;
                let local = fields.next()?;
                let _remote = fields.next()?;
                if fields.next()? != TCP_LISTEN {
                    return None;
                }
                let (addr, port) = local.split_once(':')?;
                let addr = parse_addr(addr)?;
                // Docker's embedded DNS server, present in every container
                // on a user-defined network: not the app's.
                if addr == IpAddr::V4(DOCKER_DNS) {
                    return None;
                }
                Some(Listener {
                    addr,
                    port: u16::from_str_radix(port, 16).ok()?,
                })
            })
            .collect();
        Listening { sockets }
    }

    /// Whether `port` is open to the outside of the container.
    pub fn check(&self, port: u16) -> PortCheck {
        let mut on_port = self.sockets.iter().filter(|s| s.port == port).peekable();
        if on_port.peek().is_none() {
            PortCheck::Closed
        } else if on_port.all(Listener::loopback) {
            PortCheck::LoopbackOnly
        } else {
            PortCheck::Open
        }
    }

    /// The distinct ports listened on, lowest first.
    pub fn ports(&self) -> Vec<u16> {
        let ports: BTreeSet<u16> = self.sockets.iter().map(|s| s.port).collect();
        ports.into_iter().collect()
    }

    /// What keeps `port` from being reached, in words for the user (None
    /// when it is open), e.g. "nothing listens on port 8080 inside the
    /// container; it listens on 80".
    pub fn problem(&self, port: u16) -> Option<String> {
        match self.check(port) {
            PortCheck::Open => None,
            PortCheck::LoopbackOnly => Some(format!(
                "port {port} is open only on 127.0.0.1 inside the container, which the proxy cannot reach: make the app listen on 0.0.0.0"
            )),
            PortCheck::Closed => {
                let others = self.ports();
                Some(if others.is_empty() {
                    format!(
                        "nothing listens on port {port} inside the container (no TCP port is open in it)"
                    )
                } else {
                    let list: Vec<String> = others.iter().map(u16::to_string).collect();
                    format!(
                        "nothing listens on port {port} inside the container; it listens on {}",
                        list.join(", ")
                    )
                })
            }
        }
    }

    /// True when `port` is certainly misconfigured rather than still
    /// starting: the app listens, but not on `port` (another port, or only
    /// on loopback). An app that listens on nothing yet may be slow to start.
    pub fn misses(&self, port: u16) -> bool {
        match self.check(port) {
            PortCheck::Open => false,
            PortCheck::LoopbackOnly => true,
            PortCheck::Closed => !self.sockets.is_empty(),
        }
    }
}

/// An address of `/proc/net/tcp` (8 hex digits) or `tcp6` (32): 32-bit
/// words printed in the machine's byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Whether the cgroup file of a process names container `id` (cgroupfs:
/// `/docker/<id>`; systemd: `docker-<id>.scope`).
fn cgroup_names(cgroup: &str, id: &str) -> bool {
    !id.is_empty() && cgroup.lines().any(|l| l.contains(id))
}

impl Runtime {
    /// The TCP sockets container `id` listens on (it must be running):
    /// read on the host from its process's `/proc/<pid>/net/tcp{,6}`, or
    /// inside it through `cat` when the host cannot.
    pub async fn listening(&self, id: &str) -> Result<Listening> {
        let state = self.inspect(id).await?;
        if !state.running {
            return Err(RuntimeError::Io {
                action: format!("reading the sockets of container `{id}`"),
                source: std::io::Error::other("the container is not running"),
            });
        }
        if let Some(pid) = state.pid {
            match host_sockets(pid, &state.id).await {
                Ok(l) => return Ok(l),
                Err(e) => {
                    tracing::debug!(container = %id, pid, error = %e, "cannot read the container's sockets on the host; asking inside it")
                }
            }
        }
        self.listening_inside(id).await
    }

    /// The fallback of [`Runtime::listening`]: `cat /proc/net/tcp
    /// /proc/net/tcp6` inside the container through a Docker exec (public
    /// so both ways can be checked against each other).
    pub async fn listening_inside(&self, id: &str) -> Result<Listening> {
        let fail = |e: String| RuntimeError::Io {
            action: format!("reading the sockets inside container `{id}`"),
            source: std::io::Error::other(e),
        };
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(vec!["cat", "/proc/net/tcp", "/proc/net/tcp6"]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        let read = async {
            let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| fail(e.to_string()))?
            else {
                return Err(fail("the exec did not attach".into()));
            };
            let mut text = Vec::new();
            while let Some(chunk) = output.next().await {
                if let LogOutput::StdOut { message } = chunk.map_err(|e| fail(e.to_string()))? {
                    text.extend_from_slice(&message);
                    if text.len() > EXEC_MAX_BYTES {
                        break;
                    }
                }
            }
            Ok(String::from_utf8_lossy(&text).into_owned())
        };
        let text = tokio::time::timeout(EXEC_TIMEOUT, read)
            .await
            .map_err(|_| fail("`cat /proc/net/tcp` did not answer in time".into()))??;
        // `cat` fails without tcp6 (no IPv6) but has printed tcp; without
        // `cat` nothing is printed at all.
        if !text.contains("local_address") {
            return Err(fail(
                "`cat /proc/net/tcp` printed nothing (no `cat` in the image?)".into(),
            ));
        }
        Ok(Listening::parse(&text))
    }
}

/// The sockets of the network namespace of host process `pid`, which must
/// belong to container `id`.
async fn host_sockets(pid: u32, id: &str) -> std::io::Result<Listening> {
    let cgroup = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await?;
    if !cgroup_names(&cgroup, id) {
        return Err(std::io::Error::other(
            "the process is not the container's here (another pid namespace?)",
        ));
    }
    let mut text = tokio::fs::read_to_string(format!("/proc/{pid}/net/tcp")).await?;
    match tokio::fs::read_to_string(format!("/proc/{pid}/net/tcp6")).await {
        Ok(t6) => text.push_str(&t6),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // IPv6 disabled
        Err(e) => return Err(e),
    }
    // The process may have exited and its pid been reused meanwhile.
    let again = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await?;
    if !cgroup_names(&again, id) {
        return Err(std::io::Error::other("the container's process went away"));
    }
    Ok(Listening::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0200A8C0:1F90 0300A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0B00007F:B551 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_are_read_from_proc_net_tcp() {
        let l = Listening::parse(&format!("{TCP}{TCP6}"));
        // Docker's DNS server on 127.0.0.11 is not the app's (little-endian hosts).
        if cfg!(target_endian = "little") {
            assert_eq!(l.ports(), vec![80, 3000, 8081, 8082]);
        }
        if cfg!(target_endian = "little") {
            assert!(l.sockets.contains(&Listener {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 8081
            }));
            assert!(l.sockets.contains(&Listener {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 8082
            }));
            assert_eq!(l.check(8081), PortCheck::LoopbackOnly);
            assert_eq!(l.check(8082), PortCheck::LoopbackOnly);
        }
        assert_eq!(l.check(80), PortCheck::Open);
        assert_eq!(l.check(3000), PortCheck::Open);
        // An established connection from port 8080 is not a listener.
        assert_eq!(l.check(8080), PortCheck::Closed);
        assert_eq!(
            l.problem(8080).unwrap(),
            "nothing listens on port 8080 inside the container; it listens on 80, 3000, 8081, 8082"
        );
        assert!(l.misses(8080));
        assert!(!l.misses(80));
        assert_eq!(l.problem(80), None);
    }

    #[test]
    fn a_container_listening_on_nothing_may_still_be_starting() {
        let l = Listening::parse(TCP.lines().next().unwrap());
        assert!(l.sockets.is_empty());
        assert!(!l.misses(8080));
        assert_eq!(
            l.problem(8080).unwrap(),
            "nothing listens on port 8080 inside the container (no TCP port is open in it)"
        );
    }

    #[test]
    fn a_process_belongs_to_the_container_its_cgroup_names() {
        let id = "3f2a";
        assert!(cgroup_names("12:pids:/docker/3f2a\n", id));
        assert!(cgroup_names("0::/system.slice/docker-3f2a.scope\n", id));
        assert!(!cgroup_names("0::/user.slice\n", id));
        assert!(!cgroup_names("0::/\n", ""));
    }
}

/// Time after a watch starts before the container's sockets are looked at:
/// a program may open a helper port just before its main one.
pub const PORT_GRACE: Duration = Duration::from_secs(2);
/// Pause between two looks at the container's sockets.
pub const PORT_LOOK_EVERY: Duration = Duration::from_secs(1);
/// Consecutive looks that must find the app's port unreachable (the
/// container listens, but not on it) before the replica is given up.
pub const PORT_LOOKS: u32 = 3;

/// Watches the sockets of a container that is not healthy yet, so the
/// single-node deployer and the cluster runner decide alike (and quickly)
/// that an app listens on the wrong port: a look after [`PORT_GRACE`], then
/// every [`PORT_LOOK_EVERY`], [`PORT_LOOKS`] misses in a row to conclude.
#[derive(Debug)]
pub struct PortWatch {
    since: std::time::Instant,
    looked: Option<std::time::Instant>,
    misses: u32,
    problem: Option<String>,
    other_ports: Vec<u16>,
}

impl Default for PortWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl PortWatch {
    /// A watch starting now.
    pub fn new() -> Self {
        PortWatch {
            since: std::time::Instant::now(),
            looked: None,
            misses: 0,
            problem: None,
            other_ports: Vec::new(),
        }
    }

    /// Looks at container `id`'s sockets when a look is due; true when it
    /// read them now. A look that cannot read them changes nothing.
    pub async fn look(&mut self, rt: &Runtime, id: &str, port: u16) -> bool {
        let due = self.since.elapsed() >= PORT_GRACE
            && self.looked.is_none_or(|t| t.elapsed() >= PORT_LOOK_EVERY);
        if !due {
            return false;
        }
        self.looked = Some(std::time::Instant::now());
        match rt.listening(id).await {
            Ok(sockets) => {
                self.problem = sockets.problem(port);
                self.misses = if sockets.misses(port) {
                    self.misses + 1
                } else {
                    0
                };
                let mut others = sockets.ports();
                if sockets.check(port) == PortCheck::LoopbackOnly {
                    others.clear(); // it listens on the right port
                }
                others.retain(|p| *p != port);
                self.other_ports = others;
                true
            }
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "cannot see the replica's sockets");
                false
            }
        }
    }

    /// Why the port cannot be reached, as last seen ("nothing listens on
    /// port 8080 inside the container; it listens on 80").
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Whether the last [`PORT_LOOKS`] looks all found the container
    /// listening, but not reachable on the port: conclusive.
    pub fn unreachable(&self) -> bool {
        self.misses >= PORT_LOOKS
    }

    /// The other ports it listened on at the last look (empty when it
    /// listens on the right port, but only on 127.0.0.1).
    pub fn other_ports(&self) -> &[u16] {
        &self.other_ports
    }
}
