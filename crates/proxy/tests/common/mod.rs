//! Test support: in-process hyper backends on 127.0.0.1, a proxy started on
//! an ephemeral port, and a small client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway_proxy::{Proxy, ProxyConfig, RouteTable};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, hyper::Error>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|n| match n {}).boxed()
}

/// A tiny HTTP backend: answers its id, `/headers` (JSON of the request's
/// headers), `/slow?ms=N`, `/echo` (streams the body back), `/health`
/// (200, or 500 when made unhealthy) and `/fail` (500).
pub struct Backend {
    pub id: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// TCP connections it accepted (the proxy's pool reuses them).
    pub accepted: Arc<AtomicUsize>,
    pub healthy: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    pub async fn start(id: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(id, listener)
    }

    fn on(id: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(serve(
            id.to_string(),
            listener,
            hits.clone(),
            accepted.clone(),
            healthy.clone(),
        ));
        Backend {
            id: id.to_string(),
            addr,
            hits,
            accepted,
            healthy,
            task: Some(task),
        }
    }

    /// Stops it: listener and every open connection close at once.
    pub fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Starts it again on the same address.
    pub async fn restart(&mut self) {
        self.kill();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let mut again = Self::on(&self.id, listener);
        self.hits = again.hits.clone();
        self.accepted = again.accepted.clone();
        self.healthy = again.healthy.clone();
        self.task = again.task.take();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(
    id: String,
    listener: TcpListener,
    hits: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r.unwrap(),
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let (id, hits, healthy) = (id.clone(), hits.clone(), healthy.clone());
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                handle(id.clone(), req, hits.clone(), healthy.clone())
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    id: String,
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/health" {
        let ok = healthy.load(Ordering::SeqCst);
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Ok(Response::builder()
            .status(status)
            .body(full("health"))
            .unwrap());
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let resp = match path.as_str() {
        "/headers" => {
            let map: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            Response::new(full(serde_json::to_string(&map).unwrap()))
        }
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(id.clone()))
        }
        "/echo" => Response::new(req.into_body().boxed()),
        "/fail" => Response::builder()
            .status(500)
            .body(full(id.clone()))
            .unwrap(),
        _ => Response::new(full(id.clone())),
    };
    let mut resp = resp;
    resp.headers_mut().insert("x-backend", id.parse().unwrap());
    Ok(resp)
}

/// Starts a proxy with `table` on 127.0.0.1:0.
pub async fn start_proxy(config: ProxyConfig, table: RouteTable) -> (Proxy, SocketAddr) {
    let proxy = Proxy::new(config);
    proxy.set_routes(table);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let p = proxy.clone();
    tokio::spawn(async move { p.serve(listener).await });
    (proxy, addr)
}

/// A keep-alive HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new())
}

/// GET `path` through the proxy at `proxy` with Host `host`: (status, body).
pub async fn get(c: &Client, proxy: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let req = Request::get(format!("http://{proxy}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// Polls `cond` every 25 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond()
}
