//! Outbound HTTP to URLs that users give the server (webhooks), without
//! server-side request forgery.
//!
//! A user-given URL must not make the server talk to itself or to its
//! private network: loopback, link-local (cloud metadata at
//! 169.254.169.254), private, shared (CGNAT), unique-local, multicast,
//! broadcast, unspecified and other special-purpose addresses are refused,
//! also when they hide in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, NAT64, 6to4)
//! or in odd IPv4 spellings (`0x7f000001`, `2130706433`: the URL parser
//! reads them as 127.0.0.1). An administrator may allow some of them with
//! [`EgressPolicy::parse`] (the `webhook_allow_list` server setting).
//!
//! The check happens when the request is made, not only when the URL is
//! saved: [`EgressPolicy::request`] resolves the host, checks every address,
//! and builds a client that connects only to the checked addresses (DNS is
//! not asked again, so a rebinding answer cannot slip in between). Redirects
//! are not followed and proxies from the environment are not used.
//! [`EgressPolicy::check_url`] is the early check, at creation, of URLs
//! whose host is a literal address.

#![warn(missing_docs)]

use ipnet::IpNet;
/// The URL type of the checks (reqwest's).
pub use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

/// Why an outbound request was not made (or failed).
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The URL or one of the addresses it resolves to is not allowed.
    #[error("{0}")]
    Refused(String),
    /// The URL is not an absolute http(s) URL with a host.
    #[error("{0}")]
    BadUrl(String),
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {error}")]
    Resolve {
        /// The host.
        host: String,
        /// What the resolver said.
        error: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Special-purpose ranges never reached unless allowed, with the reason
/// shown to users.
const FORBIDDEN: &[(&str, &str)] = &[
    ("0.0.0.0/8", "an unspecified (\"this network\") address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved or broadcast address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address"),
    ("100::/64", "a discard address"),
    ("2001::/32", "a Teredo address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
];

fn forbidden_table() -> &'static [(IpNet, &'static str)] {
    static TABLE: OnceLock<Vec<(IpNet, &'static str)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        FORBIDDEN
            .iter()
            .map(|(net, why)| (net.parse().expect("valid built-in range"), *why))
            .collect()
    })
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (`::ffff:0:0/96`),
/// NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Why `ip` is not a public address (`None` when it is one). An IPv6
/// address embedding an IPv4 one is judged by that IPv4 address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    forbidden_table()
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, why)| *why)
}

/// What outbound requests may reach besides public addresses.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

/// Lower case, without a trailing dot.
fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl EgressPolicy {
    /// Public addresses only.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// A policy allowing, besides public addresses, each entry of `allow`:
    /// a network in CIDR form (`10.0.0.0/8`, `fd00::/8`), one address
    /// (`127.0.0.1`, `::1`), or a host name (`hooks.internal`: every address
    /// it resolves to is then allowed).
    pub fn parse<S: AsRef<str>>(allow: &[S]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in allow {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net);
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if entry.len() <= 253
                && entry.trim_end_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            {
                policy.hosts.push(normal_host(entry));
            } else {
                return Err(format!(
                    "invalid allow-list entry {entry:?}: use a network (10.0.0.0/8), an address (127.0.0.1) or a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether the policy allows connecting to `ip`.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let plain = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        forbidden_reason(ip).is_none()
            || self
                .nets
                .iter()
                .any(|n| n.contains(&ip) || n.contains(&plain))
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = normal_host(host);
        self.hosts.contains(&host)
    }

    fn refusal(ip: IpAddr, host: &str) -> EgressError {
        let why = forbidden_reason(ip).unwrap_or("not allowed");
        let seen = if host.trim_matches(['[', ']']) == ip.to_string() {
            format!("{ip}")
        } else {
            format!("{host} ({ip})")
        };
        EgressError::Refused(format!(
            "refused to send to {seen}: it is {why}, which webhooks may not reach; a server administrator can allow it with the webhook_allow_list setting"
        ))
    }

    /// The early check of a URL when it is saved: an absolute http(s) URL
    /// whose host, when it is a literal address, is allowed. Host names are
    /// checked when a request is made ([`EgressPolicy::request`]).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, EgressError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            EgressError::BadUrl(format!("the URL is not an absolute http(s) URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EgressError::BadUrl(
                "the URL must start with http:// or https://".into(),
            ));
        }
        match parsed.host() {
            None => Err(EgressError::BadUrl("the URL has no host".into())),
            Some(url::Host::Ipv4(v4)) if !self.allows_ip(v4.into()) => {
                Err(Self::refusal(v4.into(), &v4.to_string()))
            }
            Some(url::Host::Ipv6(v6)) if !self.allows_ip(v6.into()) => {
                Err(Self::refusal(v6.into(), &v6.to_string()))
            }
            _ => Ok(parsed),
        }
    }

    /// The addresses a request to `url` may connect to: its literal address,
    /// or every address its host resolves to, each checked. Refused when
    /// any of them is not allowed.
    pub async fn resolve(&self, url: &reqwest::Url) -> Result<Vec<SocketAddr>, EgressError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| EgressError::BadUrl("the URL has no port".into()))?;
        let host = url
            .host_str()
            .ok_or_else(|| EgressError::BadUrl("the URL has no host".into()))?;
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(v4)) => vec![SocketAddr::new(v4.into(), port)],
            Some(url::Host::Ipv6(v6)) => vec![SocketAddr::new(v6.into(), port)],
            _ => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| EgressError::Resolve {
                    host: host.to_owned(),
                    error: e.to_string(),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(EgressError::Resolve {
                host: host.to_owned(),
                error: "no addresses".into(),
            });
        }
        if !self.allows_host(host) {
            if let Some(bad) = addrs.iter().find(|a| !self.allows_ip(a.ip())) {
                return Err(Self::refusal(bad.ip(), host));
            }
        }
        Ok(addrs)
    }

    /// A POST to `url` on a client that connects only to the checked
    /// addresses of its host (no second DNS lookup), follows no redirect,
    /// uses no proxy and gives up after `timeout`.
    pub async fn post(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, EgressError> {
        let parsed = self.check_url(url)?;
        let addrs = self.resolve(&parsed).await?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(NoDns));
        if let Some(url::Host::Domain(host)) = parsed.host() {
            builder = builder.resolve_to_addrs(host, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))?;
        Ok(client.post(parsed))
    }
}

/// The client's resolver: every name it may reach was resolved (and
/// checked) already and is pinned, so any other lookup is refused.
struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            Err(format!("{name} was not checked before the request; refusing to resolve it").into())
        })
    }
}

/// The full chain of an error from sending a request, without its URL (it
/// may carry a secret): reqwest's top-level message alone says little.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &EgressPolicy, url: &str) -> bool {
        matches!(policy.check_url(url), Err(EgressError::Refused(_)))
    }

    #[test]
    fn special_addresses_are_refused_in_every_spelling() {
        let p = EgressPolicy::public_only();
        for url in [
            "http://127.0.0.1/",
            "http://127.1.2.3:8080/hook",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a00:1::]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[ff02::1]/",
        ] {
            assert!(refused(&p, url), "{url} was not refused");
        }
        for url in [
            "http://93.184.215.14/",
            "https://[2606:4700::1111]/",
            "http://172.32.0.1/",
            "https://hooks.example.com/x",
            "http://localhost:9/",
        ] {
            assert!(p.check_url(url).is_ok(), "{url} was refused");
        }
        assert!(matches!(
            p.check_url("ftp://example.com/"),
            Err(EgressError::BadUrl(_))
        ));
        let msg = p
            .check_url("http://169.254.169.254/")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("link-local") && msg.contains("webhook_allow_list"),
            "{msg}"
        );
    }

    #[test]
    fn the_allow_list_opens_networks_addresses_and_hosts() {
        let p =
            EgressPolicy::parse(&["127.0.0.1", "10.0.0.0/8", "[::1]", "Hooks.Internal."]).unwrap();
        assert!(p.check_url("http://127.0.0.1:9/").is_ok());
        assert!(p.check_url("http://[::ffff:127.0.0.1]:9/").is_ok());
        assert!(p.check_url("http://10.9.8.7/").is_ok());
        assert!(p.check_url("http://[::1]/").is_ok());
        assert!(refused(&p, "http://127.0.0.2/"));
        assert!(refused(&p, "http://192.168.0.1/"));
        assert!(p.allows_host("hooks.internal"));
        assert!(EgressPolicy::parse(&["not a host!"]).is_err());
        assert!(EgressPolicy::parse(&["10.0.0.0/33"]).is_err());
        assert!(EgressPolicy::parse(&[""]).unwrap().nets.is_empty());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let p = EgressPolicy::public_only();
        let url = Url::parse("http://localhost:9/hook").unwrap();
        let e = p.resolve(&url).await.unwrap_err().to_string();
        assert!(e.contains("localhost") && e.contains("loopback"), "{e}");
        assert!(p
            .post("http://localhost:9/", Duration::from_secs(1))
            .await
            .is_err());
        let allowed = EgressPolicy::parse(&["localhost"]).unwrap();
        assert!(!allowed.resolve(&url).await.unwrap().is_empty());
        let loopback = EgressPolicy::parse(&["127.0.0.0/8", "::1"]).unwrap();
        assert!(!loopback.resolve(&url).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_request_goes_to_the_checked_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await;
        });
        let url = format!("http://localhost:{port}/");
        let refused = EgressPolicy::public_only()
            .post(&url, Duration::from_secs(5))
            .await;
        assert!(matches!(refused, Err(EgressError::Refused(_))));
        // Allowed: the name is resolved once, checked, and the client pinned
        // to that address (its own resolver refuses every lookup).
        let p = EgressPolicy::parse(&["127.0.0.1", "::1"]).unwrap();
        let res = p
            .post(&url, Duration::from_secs(5))
            .await
            .unwrap()
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 204);
    }
}
