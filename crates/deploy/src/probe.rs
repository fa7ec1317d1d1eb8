//! The deployer's own readiness probe: a new replica gets traffic only after
//! `rise` consecutive successful `GET`s of its health path.

use slipway_domain::HealthSpec;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why a replica never became ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The deadline passed; carries the last failure.
    Timeout(String),
    /// The container exited; carries the exit code.
    Exited(i64),
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
pub(crate) async fn wait_ready(
    rt: &slipway_runtime::Runtime,
    container: &str,
    addr: SocketAddr,
    health: &HealthSpec,
) -> Result<(), NotReady> {
    let client = client();
    let deadline = Instant::now() + Duration::from_millis(health.start_timeout_ms);
    let spacing = Duration::from_millis((health.interval_ms / 4).clamp(50, 500));
    let mut streak = 0;
    let mut last = String::from("no check ran");
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
            }
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout(last));
        }
        tokio::time::sleep(spacing).await;
    }
}
