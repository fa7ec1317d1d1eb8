//! Active health checks: one small task per upstream sends `GET path` on a
//! fresh connection every interval and flips the upstream down after `fall`
//! failures and up after `rise` successes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::Upstream;

/// How often a task without a configured check looks again for one.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs the checks of `up` until it leaves the route table.
pub(crate) async fn run(up: Arc<Upstream>) {
    let (mut ok, mut failed) = (0u32, 0u32);
    loop {
        let check = up.health.lock().expect("health lock").clone();
        let Some(check) = check else {
            tokio::time::sleep(IDLE_POLL).await;
            if up.removed.load(Ordering::Relaxed) {
                return;
            }
            continue;
        };
        tokio::time::sleep(check.interval).await;
        if up.removed.load(Ordering::Relaxed) {
            return;
        }
        let passed = tokio::time::timeout(check.timeout, probe(&up, &check.path))
            .await
            .unwrap_or(false);
        if passed {
            failed = 0;
            ok = ok.saturating_add(1);
            if !up.is_up() && ok >= check.rise.max(1) {
                up.set_up(true);
            }
        } else {
            ok = 0;
            failed = failed.saturating_add(1);
            if up.is_up() && failed >= check.fall.max(1) {
                up.set_up(false);
            }
        }
    }
}

/// One check: 2xx or 3xx on a new connection is a pass.
async fn probe(up: &Upstream, path: &str) -> bool {
    let Ok(stream) = TcpStream::connect(up.addr).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, up.addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .header(hyper::header::USER_AGENT, "slipway-health")
        .body(Empty::<Bytes>::new());
    let passed = match req {
        Ok(req) => match sender.send_request(req).await {
            Ok(resp) => resp.status().is_success() || resp.status().is_redirection(),
            Err(_) => false,
        },
        Err(_) => false,
    };
    conn.abort();
    passed
}
