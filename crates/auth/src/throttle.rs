//! Password-guessing throttle: exponential backoff per (account, client
//! address), per client address and per account.
//!
//! Every password check first asks [`LoginThrottle::begin`], which refuses
//! while one of the attempt's keys is backing off and otherwise counts the
//! attempt as a failure right away, so a burst of concurrent guesses is
//! counted before any of them is answered. A correct password then calls
//! [`LoginThrottle::succeeded`], which takes that count back.
//!
//! * **account + address** (`pair_free` failures free, then 1 s, 2 s, 4 s, …
//!   up to `max_backoff`): one client guessing one account.
//! * **address** (`address_free`, then backoff): one client spraying many
//!   accounts. IPv6 clients are keyed by their /64, the block one host
//!   usually has.
//! * **account** (`account_free`, then backoff): many addresses guessing one
//!   account. It does not apply to an address that logged in to that
//!   account successfully within `known_for`, so an attacker cannot lock the
//!   owner out of the places they usually log in from.
//!
//! The backoff is capped (15 minutes by default), so a correct password
//! always works again within that time once the guessing stops; a key's
//! failures are forgotten `forget_after` after its last one. Unknown
//! accounts are throttled exactly like real ones, so a 429 tells nothing
//! about whether a user exists. State is kept in memory, per server process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The throttle's numbers; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures one address may make against one account before backoff.
    pub pair_free: u32,
    /// Failures one address may make across all accounts before backoff.
    pub address_free: u32,
    /// Failures against one account from all addresses before backoff (for
    /// addresses that have not logged in to it before).
    pub account_free: u32,
    /// The first backoff; each further failure doubles it.
    pub base_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// A key's failures are forgotten this long after its last one.
    pub forget_after: Duration,
    /// How long a successful login exempts its address from the account key.
    pub known_for: Duration,
    /// Keys kept before stale ones are pruned (bounds memory).
    pub max_keys: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            pair_free: 5,
            address_free: 20,
            account_free: 50,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
            known_for: Duration::from_secs(30 * 24 * 3600),
            max_keys: 100_000,
        }
    }
}

/// Which key refused or started backing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleKey {
    /// This address against this account.
    AccountAddress,
    /// This address, any account.
    Address,
    /// This account, any (not known) address.
    Account,
}

/// An attempt refused because a key is backing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until an attempt is allowed again.
    pub retry_after: Duration,
    /// The key that refused.
    pub key: ThrottleKey,
}

/// A key that started backing off with this attempt (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Which key.
    pub key: ThrottleKey,
    /// Failures counted on it.
    pub failures: u32,
    /// How long it refuses attempts.
    pub backoff: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn fresh(now: Instant) -> Self {
        Entry {
            failures: 0,
            last: now,
            blocked_until: None,
        }
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(Default)]
struct State {
    pairs: HashMap<(String, IpAddr), Entry>,
    addresses: HashMap<IpAddr, Entry>,
    accounts: HashMap<String, Entry>,
    /// Addresses that logged in to an account, and when last.
    known: HashMap<(String, IpAddr), Instant>,
}

/// The throttle; share one per server.
#[derive(Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    state: Mutex<State>,
}

impl LoginThrottle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            state: Mutex::default(),
        }
    }

    /// The numbers in force.
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// Asks to check a password for `account` from `addr`. Refused while a
    /// key backs off; otherwise the attempt is counted as a failure now (see
    /// [`LoginThrottle::succeeded`]) and any key that starts backing off
    /// because of it is returned.
    pub fn begin(
        &self,
        account: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<Vec<Lockout>, Throttled> {
        let p = &self.policy;
        let account = account.to_ascii_lowercase();
        let addr = address_key(addr);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.prune(p, now);
        let known = st
            .known
            .get(&(account.clone(), addr))
            .is_some_and(|t| now.duration_since(*t) < p.known_for);
        let pair_key = (account.clone(), addr);
        let mut refused = None;
        for (key, entry) in [
            (ThrottleKey::AccountAddress, st.pairs.get(&pair_key)),
            (ThrottleKey::Address, st.addresses.get(&addr)),
            (
                ThrottleKey::Account,
                st.accounts.get(&account).filter(|_| !known),
            ),
        ] {
            let wait = entry
                .filter(|e| now.duration_since(e.last) < p.forget_after)
                .and_then(|e| e.blocked_until)
                .and_then(|until| until.checked_duration_since(now))
                .filter(|d| !d.is_zero());
            if let Some(wait) = wait {
                if refused.is_none_or(|r: Throttled| wait > r.retry_after) {
                    refused = Some(Throttled {
                        retry_after: wait,
                        key,
                    });
                }
            }
        }
        if let Some(r) = refused {
            return Err(r);
        }
        let mut lockouts = Vec::new();
        let State {
            pairs,
            addresses,
            accounts,
            ..
        } = &mut *st;
        for (key, entry, free) in [
            (
                ThrottleKey::AccountAddress,
                pairs.entry(pair_key).or_insert_with(|| Entry::fresh(now)),
                p.pair_free,
            ),
            (
                ThrottleKey::Address,
                addresses.entry(addr).or_insert_with(|| Entry::fresh(now)),
                p.address_free,
            ),
            (
                ThrottleKey::Account,
                accounts.entry(account).or_insert_with(|| Entry::fresh(now)),
                p.account_free,
            ),
        ] {
            if now.duration_since(entry.last) >= p.forget_after {
                *entry = Entry::fresh(now);
            }
            entry.failures += 1;
            entry.last = now;
            if entry.failures > free {
                let backoff = backoff(p, entry.failures - free);
                entry.blocked_until = Some(now + backoff);
                lockouts.push(Lockout {
                    key,
                    failures: entry.failures,
                    backoff,
                });
            }
        }
        Ok(lockouts)
    }

    /// The password was right: the account + address key is cleared, the
    /// attempt's count is taken back from the others, and the address is
    /// remembered as one the account's owner uses.
    pub fn succeeded(&self, account: &str, addr: IpAddr, now: Instant) {
        let p = &self.policy;
        let account = account.to_ascii_lowercase();
        let addr = address_key(addr);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.pairs.remove(&(account.clone(), addr));
        if let Some(e) = st.addresses.get_mut(&addr) {
            take_back(e, p.address_free);
        }
        if let Some(e) = st.accounts.get_mut(&account) {
            take_back(e, p.account_free);
        }
        st.known.insert((account, addr), now);
    }
}

fn take_back(e: &mut Entry, free: u32) {
    e.failures = e.failures.saturating_sub(1);
    if e.failures <= free {
        e.blocked_until = None;
    }
}

/// The backoff after the `n`-th failure past the free ones (n ≥ 1).
fn backoff(p: &ThrottlePolicy, n: u32) -> Duration {
    let factor = 1u32 << (n - 1).min(20);
    p.base_backoff.saturating_mul(factor).min(p.max_backoff)
}

impl State {
    /// Drops stale keys once there are too many.
    fn prune(&mut self, p: &ThrottlePolicy, now: Instant) {
        let live = |e: &Entry| now.duration_since(e.last) < p.forget_after;
        if self.pairs.len() > p.max_keys {
            self.pairs.retain(|_, e| live(e));
        }
        if self.addresses.len() > p.max_keys {
            self.addresses.retain(|_, e| live(e));
        }
        if self.accounts.len() > p.max_keys {
            self.accounts.retain(|_, e| live(e));
        }
        if self.known.len() > p.max_keys {
            self.known
                .retain(|_, t| now.duration_since(*t) < p.known_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(t: &LoginThrottle, account: &str, addr: &str, now: Instant) -> Result<(), Throttled> {
        t.begin(account, ip(addr), now).map(|_| ())
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_expires() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..5 {
            fail(&t, "alice", "10.1.1.1", now).unwrap();
        }
        // The 6th is allowed and starts a 1 s backoff.
        let lock = t.begin("alice", ip("10.1.1.1"), now).unwrap();
        assert_eq!(
            lock,
            vec![Lockout {
                key: ThrottleKey::AccountAddress,
                failures: 6,
                backoff: Duration::from_secs(1)
            }]
        );
        let r = fail(&t, "Alice", "10.1.1.1", now).unwrap_err();
        assert_eq!(r.retry_after, Duration::from_secs(1));
        // After it, the next failure doubles it.
        let later = now + Duration::from_secs(1);
        fail(&t, "alice", "10.1.1.1", later).unwrap();
        let r = fail(&t, "alice", "10.1.1.1", later).unwrap_err();
        assert_eq!(r.retry_after, Duration::from_secs(2));
        assert_eq!(
            backoff(t.policy(), 30),
            Duration::from_secs(15 * 60),
            "capped"
        );
        // Another address is not held back by this pair.
        fail(&t, "alice", "10.2.2.2", later).unwrap();
        // A success after the backoff clears the pair.
        let after = later + Duration::from_secs(2);
        t.begin("alice", ip("10.1.1.1"), after).unwrap();
        t.succeeded("alice", ip("10.1.1.1"), after);
        fail(&t, "alice", "10.1.1.1", after).unwrap();
    }

    #[test]
    fn one_address_spraying_accounts_is_held_back() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..20 {
            fail(&t, &format!("user{i}"), "2001:db8::1", now).unwrap();
        }
        fail(&t, "user-x", "2001:db8::2", now).unwrap();
        // Same /64, other host: the address key refuses.
        let r = fail(&t, "user-y", "2001:db8::3", now).unwrap_err();
        assert_eq!(r.key, ThrottleKey::Address);
        fail(&t, "user-y", "2001:db9::3", now).unwrap();
    }

    #[test]
    fn many_addresses_guessing_one_account_do_not_lock_out_its_known_address() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        t.begin("bob", ip("192.0.2.7"), now).unwrap();
        t.succeeded("bob", ip("192.0.2.7"), now);
        for i in 0..50 {
            fail(&t, "bob", &format!("198.51.100.{i}"), now).unwrap();
        }
        fail(&t, "bob", "203.0.113.1", now).unwrap();
        let r = fail(&t, "bob", "203.0.113.2", now).unwrap_err();
        assert_eq!(r.key, ThrottleKey::Account);
        // The owner's usual address still gets through.
        t.begin("bob", ip("192.0.2.7"), now).unwrap();
        // And everyone else after the backoff.
        fail(&t, "bob", "203.0.113.2", now + Duration::from_secs(4)).unwrap();
    }

    #[test]
    fn failures_are_forgotten() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..6 {
            fail(&t, "carol", "10.0.0.9", now).unwrap();
        }
        assert!(fail(&t, "carol", "10.0.0.9", now).is_err());
        let much_later = now + Duration::from_secs(3601);
        for _ in 0..5 {
            fail(&t, "carol", "10.0.0.9", much_later).unwrap();
        }
    }
}
