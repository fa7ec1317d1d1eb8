//! Handling of one client request: route lookup, upstream choice with one
//! retry, header rewriting, streaming of bodies and upgrade tunnels.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;

use crate::headers::{client_value, header_bytes, set_forwarded, strip_hop_by_hop, wants_upgrade};
use crate::proxy::Inner;
use crate::route::normalize_host;
use crate::table::LivePool;
use crate::upstream::{InFlight, Upstream};
use crate::ProxyBody;

/// A JSON error answer in Slipway's shape `{"error":{"code","message"}}`.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn full(body: String) -> ProxyBody {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Methods that may be replayed on another upstream (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The upstream of an access-log line, `-` when none answered.
struct UpstreamField(Option<SocketAddr>);

impl std::fmt::Display for UpstreamField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// What the access log and metrics need about one exchange.
struct Exchange<'a> {
    start: Instant,
    method: &'a Method,
    host: &'a str,
    uri: &'a hyper::Uri,
    pool: &'a LivePool,
}

impl Exchange<'_> {
    fn finish(&self, status: StatusCode, upstream: Option<SocketAddr>) {
        let elapsed = self.start.elapsed();
        self.pool.metrics.record(status.as_u16(), elapsed);
        // Fields are only evaluated (and the line formatted) when a
        // subscriber wants this level and target.
        tracing::info!(
            target: "slipway_proxy::access",
            app = %self.pool.app,
            method = %self.method,
            host = %self.host,
            path = %self.uri.path(),
            status = status.as_u16(),
            upstream = %UpstreamField(upstream),
            duration_us = elapsed.as_micros() as u64,
            "request"
        );
    }

    fn fail(&self, status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
        self.finish(status, None);
        error_response(status, code, message)
    }
}

/// Per-connection facts every request of the connection shares.
pub(crate) struct Client {
    /// Its `X-Forwarded-For` entry, formatted once.
    pub forwarded_for: HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl Client {
    pub fn new(remote: SocketAddr, scheme: &'static str) -> Self {
        Client {
            forwarded_for: client_value(remote.ip()),
            scheme,
        }
    }
}

/// The request target to send upstream: origin form, reusing the client's
/// bytes when it already is (HTTP/1.1), else its path and query.
fn origin_form(uri: &hyper::Uri) -> Option<hyper::Uri> {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return Some(uri.clone());
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
    hyper::Uri::builder().path_and_query(pq).build().ok()
}

impl Inner {
    /// Answers one client request.
    pub(crate) async fn handle(
        &self,
        mut req: Request<Incoming>,
        client: &Client,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        if header_bytes(req.headers()) > self.config.max_header_bytes {
            return error_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "request headers exceed the proxy's limit",
            );
        }
        // The Host as received: the URI's authority (HTTP/2, absolute form)
        // wins over the header. Cloning a parsed header value is a refcount.
        let host_value = match req.uri().authority() {
            Some(a) => match HeaderValue::from_str(a.as_str()) {
                Ok(v) => v,
                Err(_) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "missing_host",
                        "the request has no Host header",
                    )
                }
            },
            None => match req.headers().get(HOST) {
                Some(h) if h.to_str().is_ok() => h.clone(),
                _ => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "missing_host",
                        "the request has no Host header",
                    )
                }
            },
        };
        let host_raw = host_value.to_str().unwrap_or_default();
        let host = normalize_host(host_raw);
        let Some(pool) = self.table.load().find(&host, req.uri().path()).cloned() else {
            return error_response(
                StatusCode::NOT_FOUND,
                "no_route",
                &format!("no app is routed at {host}{}", req.uri().path()),
            );
        };

        let upgrade = req.version() == Version::HTTP_11 && wants_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let method = parts.method;
        let ex = Exchange {
            start,
            method: &method,
            host: &host,
            uri: &parts.uri,
            pool: &pool,
        };
        let mut headers = parts.headers;
        // Sticky sessions: the replica the client's cookie names, if any.
        let affinity = pool
            .sticky_cookie
            .as_deref()
            .and_then(|name| cookie_value(&headers, name));
        strip_hop_by_hop(&mut headers, upgrade);
        set_forwarded(
            &mut headers,
            &client.forwarded_for,
            client.scheme,
            &host_value,
        );
        if parts.uri.authority().is_some() || headers.get_all(HOST).iter().nth(1).is_some() {
            headers.insert(HOST, host_value.clone());
        }
        // A request that never left can go to another replica whatever its
        // method; one that failed after sending is replayed only when it is
        // idempotent and bodiless (rebuilt from a copy of its head).
        let replay = (idempotent(&method) && body.is_end_stream()).then(|| headers.clone());
        let Some(uri) = origin_form(&parts.uri) else {
            return ex.fail(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "invalid request target",
            );
        };
        let build = |headers, body| {
            let mut out = Request::new(body);
            *out.method_mut() = method.clone();
            *out.uri_mut() = uri.clone();
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = headers;
            out
        };
        let mut out = Some(build(headers, body.boxed_unsync()));
        let mut replay = replay;
        let mut guard: Option<InFlight> = None;

        for attempt in 0..2 {
            let tried = guard.as_ref().map(|g| &g.upstream);
            let affine = match (&affinity, tried) {
                (Some(token), None) => pool.pick_affine(token),
                _ => None,
            };
            let Some(up) = affine
                .or_else(|| pool.pick(tried))
                .or_else(|| pool.pick(None))
            else {
                return ex.fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_healthy_upstream",
                    &format!("app {} has no healthy replica", pool.app),
                );
            };
            let up: &Upstream = match &mut guard {
                Some(g) => {
                    g.retarget(up);
                    &g.upstream
                }
                None => &guard.insert(InFlight::new(up, pool.clone())).upstream,
            };
            let last = attempt == 1;
            let mut sender = match up
                .conns
                .checkout(up.addr, self.config.connect_timeout)
                .await
            {
                Ok(sender) => sender,
                Err(e) => {
                    up.eject(self.config.eject_cooldown, "connect error");
                    tracing::warn!(app = %pool.app, upstream = %up.addr, error = %e, attempt, "upstream connect failed");
                    if !last {
                        continue;
                    }
                    return if pool.pick(None).is_none() {
                        ex.fail(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "no_healthy_upstream",
                            &format!("app {} has no healthy replica", pool.app),
                        )
                    } else {
                        ex.fail(
                            StatusCode::BAD_GATEWAY,
                            "bad_gateway",
                            &format!("replica of app {} failed", pool.app),
                        )
                    };
                }
            };
            let req = out.take().expect("request present for each attempt");
            let sent =
                tokio::time::timeout(self.config.response_timeout, sender.try_send_request(req))
                    .await;
            let resp = match sent {
                Ok(Ok(resp)) => resp,
                Ok(Err(mut e)) => {
                    let unsent = e.take_message();
                    if unsent.is_none() {
                        up.record_status(
                            true,
                            self.config.eject_after_errors,
                            self.config.eject_cooldown,
                        );
                    }
                    tracing::warn!(app = %pool.app, upstream = %up.addr, error = %e.error(), sent = unsent.is_none(), attempt, "upstream request failed");
                    if !last {
                        out = unsent.or_else(|| replay.take().map(|h| build(h, empty())));
                        if out.is_some() {
                            continue;
                        }
                    }
                    return ex.fail(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        &format!("replica of app {} failed", pool.app),
                    );
                }
                Err(_) => {
                    up.record_status(
                        true,
                        self.config.eject_after_errors,
                        self.config.eject_cooldown,
                    );
                    return ex.fail(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        &format!("replica of app {} did not answer in time", pool.app),
                    );
                }
            };
            let status = resp.status();
            up.record_status(
                status.is_server_error(),
                self.config.eject_after_errors,
                self.config.eject_cooldown,
            );
            ex.finish(status, Some(up.addr));
            let stick = match &pool.sticky_cookie {
                Some(name) if affinity.as_deref() != Some(up.affinity.as_str()) => {
                    HeaderValue::from_str(&format!(
                        "{name}={}; Path=/; HttpOnly; SameSite=Lax",
                        up.affinity
                    ))
                    .ok()
                }
                _ => None,
            };
            let guard = guard.take().expect("guard set for each attempt");
            let mut resp = respond(resp, client_upgrade, guard, sender);
            if let Some(cookie) = stick {
                resp.headers_mut().append(hyper::header::SET_COOKIE, cookie);
            }
            return resp;
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// Turns the upstream's answer into the client's: hop-by-hop headers go,
/// the body streams through holding the in-flight guard, a 101 starts a tunnel.
fn respond(
    mut resp: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    guard: InFlight,
    sender: SendRequest<ProxyBody>,
) -> Response<ProxyBody> {
    if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client, upstream, guard));
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, empty());
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let body = Guarded {
        inner: body,
        done: false,
        sender: Some(sender),
        guard,
    };
    Response::from_parts(parts, body.boxed_unsync())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Copies bytes both ways between an upgraded client and upstream connection.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, guard: InFlight) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                tracing::debug!(upstream = %guard.upstream.addr, error = %e, "tunnel closed");
            }
        }
        Err(e) => {
            tracing::debug!(upstream = %guard.upstream.addr, error = %e, "upgrade failed")
        }
    }
    drop(guard);
}

/// A response body that keeps its request counted in flight until it ends,
/// then hands the upstream connection back to its pool.
struct Guarded {
    inner: Incoming,
    done: bool,
    sender: Option<SendRequest<ProxyBody>>,
    guard: InFlight,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None) => self.done = true,
            std::task::Poll::Ready(Some(Err(_))) => self.sender = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.done || self.inner.is_end_stream() {
            if let Some(sender) = self.sender.take() {
                self.guard.upstream.conns.put_back(sender);
            }
        }
    }
}
