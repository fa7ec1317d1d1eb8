//! The deployer's own readiness probe: a new replica gets traffic only after
//! `rise` consecutive successful `GET`s of its health path.

use slipway_domain::HealthSpec;
use slipway_runtime::PortWatch;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why a replica never became ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The deadline passed; carries the last failure.
    Timeout(String),
    /// The container exited; carries the exit code.
    Exited(i64),
    /// The container runs but cannot be reached on the app's port: it
    /// listens on another one, or only on 127.0.0.1. Carries the message
    /// and the other ports it listens on.
    Unreachable(String, Vec<u16>),
}

/// One health check: any 2xx/3xx answer within the timeout is a success.
pub(crate) async fn check(
    client: &reqwest::Client,
    addr: SocketAddr,
    health: &HealthSpec,
) -> Result<(), String> {
    let url = format!("http://{addr}{}", health.path);
    match client
        .get(&url)
        .timeout(Duration::from_millis(health.timeout_ms))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(()),
        Ok(r) => Err(format!("GET {} answered {}", health.path, r.status())),
        Err(e) if e.is_timeout() => Err(format!(
            "GET {} did not answer within {} ms",
            health.path, health.timeout_ms
        )),
        Err(e) if e.is_connect() => Err(format!("nothing listens on the app port yet ({addr})")),
        Err(e) => Err(format!("GET {} failed: {e}", health.path)),
    }
}

/// What to do about an app port nothing listens on, given the ports the
/// container does listen on (empty: it listens only on 127.0.0.1).
pub(crate) fn port_hint(app: &str, port: u16, others: &[u16]) -> String {
    match others {
        [] => String::new(),
        [one] => format!(
            " (make the app listen on $PORT, {port}, or set the app's port to {one}: `slipway app set {app} --port {one}`)"
        ),
        _ => format!(
            " (make the app listen on $PORT, {port}, or set the app's port: `slipway app set {app} --port N`)"
        ),
    }
}

/// A client for probes: no proxy, no connection reuse between probes.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// Probes until `rise` consecutive successes, the container exits or
/// `start_timeout_ms` passes. Probes are spaced by a fraction of the
/// interval while starting, so a fast app goes live fast.
///
/// While probes fail, the container's listening sockets are looked at
/// ([`PortWatch`]): when it listens, but not on `port` (or only on
/// 127.0.0.1) several times in a row, the
/// wait ends early with [`NotReady::Unreachable`], which names the ports it
/// does listen on. A container that listens on nothing yet may be a slow
/// starter: it gets the whole `start_timeout_ms`, and the timeout says that
/// nothing listens.
pub(crate) async fn wait_ready(
    rt: &slipway_runtime::Runtime,
    container: &str,
    addr: SocketAddr,
    port: u16,
    health: &HealthSpec,
) -> Result<(), NotReady> {
    let client = client();
    let deadline = Instant::now() + Duration::from_millis(health.start_timeout_ms);
    let spacing = Duration::from_millis((health.interval_ms / 4).clamp(50, 500));
    let mut streak = 0;
    let mut last = String::from("no check ran");
    let mut watch = PortWatch::new();
    loop {
        match check(&client, addr, health).await {
            Ok(()) => {
                streak += 1;
                if streak >= health.rise {
                    return Ok(());
                }
            }
            Err(e) => {
                streak = 0;
                last = e;
                if let Ok(state) = rt.inspect(container).await {
                    if !state.running {
                        return Err(NotReady::Exited(state.exit_code.unwrap_or(-1)));
                    }
                }
                if watch.look(rt, container, port).await {
                    if let Some(problem) = watch.problem() {
                        last = problem.to_owned();
                    }
                    if watch.unreachable() {
                        return Err(NotReady::Unreachable(last, watch.other_ports().to_vec()));
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout(last));
        }
        tokio::time::sleep(spacing).await;
    }
}
