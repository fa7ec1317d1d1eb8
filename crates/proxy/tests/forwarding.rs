//! Forwarding correctness: headers, HTTP/2 (h2c and TLS ALPN), WebSocket
//! upgrades, streamed bodies and header limits.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway_proxy::{Pool, ProxyConfig, Route, RouteTable, TlsConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

fn one(addr: std::net::SocketAddr) -> RouteTable {
    RouteTable::new().route(Route::new(
        "app.example.com",
        "/",
        Pool::new("web", vec![addr]),
    ))
}

#[tokio::test]
async fn forwarded_headers_arrive_and_hop_by_hop_ones_do_not() {
    let b = Backend::start("a").await;
    let (_proxy, addr) = start_proxy(ProxyConfig::default(), one(b.addr)).await;
    let req = Request::get(format!("http://{addr}/headers"))
        .header("host", "app.example.com:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-app", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-backend"], "a");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example.com:8443");
    assert_eq!(h["host"], "app.example.com:8443");
    assert_eq!(h["x-app"], "kept");
    for hop in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(h.get(hop).is_none(), "{hop} was forwarded: {h}");
    }
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_a_closed_one_is_replaced() {
    let mut b = Backend::start("a").await;
    let (_proxy, addr) = start_proxy(ProxyConfig::default(), one(b.addr)).await;
    let cl = client();
    for _ in 0..100 {
        assert_eq!(
            get(&cl, addr, "app.example.com", "/").await.0,
            StatusCode::OK
        );
    }
    // One client asking in turn: one upstream connection serves them all.
    assert_eq!(b.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    let big = "x".repeat(200_000);
    let posted = cl
        .request(
            Request::post(format!("http://{addr}/echo"))
                .header("host", "app.example.com")
                .body(Full::new(Bytes::from(big.clone())))
                .unwrap(),
        )
        .await
        .unwrap();
    let echoed = posted.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), big.len());
    assert_eq!(
        get(&cl, addr, "app.example.com", "/").await.0,
        StatusCode::OK
    );
    assert_eq!(b.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The upstream closes its idle connections (a restart): the pooled one
    // is found closed and the next request gets a fresh one, not an error.
    b.restart().await;
    for _ in 0..5 {
        assert_eq!(
            get(&cl, addr, "app.example.com", "/").await.0,
            StatusCode::OK
        );
    }
    assert_eq!(b.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let b = Backend::start("a").await;
    let (_proxy, addr) = start_proxy(ProxyConfig::default(), one(b.addr)).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("http://app.example.com/headers")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(h["x-forwarded-host"], "app.example.com");
        assert_eq!(h["host"], "app.example.com");
    }
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate_negotiates_h2_and_http1() {
    let b = Backend::start("a").await;
    let proxy = slipway_proxy::Proxy::new(ProxyConfig::default());
    proxy.set_routes(one(b.addr));
    let (tls, pem) = TlsConfig::self_signed(&["app.example.com"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let p = proxy.clone();
    tokio::spawn(async move { p.serve_tls(listener, tls).await });

    // The same certificate also loads from files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &pem.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &pem.key_pem).unwrap();
    TlsConfig::from_pem_files(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
    assert!(TlsConfig::from_pem("junk", "junk").is_err());

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    for alpn in ["h2", "http/1.1"] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("app.example.com").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let io = TokioIo::new(tls);
        let resp = if alpn == "h2" {
            let (mut s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(c);
            let req = Request::get("https://app.example.com/headers")
                .body(Empty::<Bytes>::new())
                .unwrap();
            s.send_request(req).await.unwrap()
        } else {
            let (mut s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(c);
            let req = Request::get("/headers")
                .header("host", "app.example.com")
                .body(Empty::<Bytes>::new())
                .unwrap();
            s.send_request(req).await.unwrap()
        };
        assert_eq!(resp.status(), StatusCode::OK, "{alpn}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(h["x-forwarded-proto"], "https", "{alpn}");
    }
}

/// A WebSocket echo server (tokio-tungstenite) on 127.0.0.1.
async fn ws_echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_echo_passes_through_the_proxy() {
    let upstream = ws_echo().await;
    let (proxy, addr) = start_proxy(ProxyConfig::default(), one(upstream)).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://app.example.com/socket", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got.into_data().len(), 100_000);
    // The tunnel counts as in flight, so draining waits for it.
    assert_eq!(proxy.in_flight("web", upstream), 1);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    assert!(
        proxy
            .wait_idle("web", upstream, Duration::from_secs(5))
            .await
    );
    assert_eq!(proxy.metrics().apps["web"].status_1xx, 1);
}

#[tokio::test]
async fn a_50_mb_body_streams_both_ways_without_buffering() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 50;
    let b = Backend::start("a").await;
    let (_proxy, addr) = start_proxy(ProxyConfig::default(), one(b.addr)).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
    let body = StreamBody::new(tokio_stream_from(rx));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/echo")
        .header("host", "app.example.com")
        .body(body)
        .unwrap();
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    let resp = tokio::spawn(async move { send.send_request(req).await.unwrap() });
    // The echo of the first megabyte comes back while 49 are still unsent:
    // neither the proxy nor the backend waits for the whole request.
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("response head while streaming")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first echoed bytes while the request is still streaming")
        .unwrap()
        .unwrap();
    let mut received = first.into_data().unwrap().len();
    let sender = tokio::spawn(async move {
        for _ in 1..CHUNKS {
            tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
        }
    });
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            assert!(data.iter().all(|c| *c == b'x'));
            received += data.len();
        }
    }
    sender.await.unwrap();
    assert_eq!(received, CHUNK * CHUNKS);
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn oversized_headers_are_rejected_with_431() {
    let b = Backend::start("a").await;
    let config = ProxyConfig {
        max_header_bytes: 16 * 1024,
        ..ProxyConfig::default()
    };
    let (_proxy, addr) = start_proxy(config, one(b.addr)).await;
    let cl = client();
    let send = |size: usize| {
        let cl = cl.clone();
        async move {
            let req = Request::get(format!("http://{addr}/"))
                .header("host", "app.example.com")
                .header("x-big", "v".repeat(size))
                .body(Full::new(Bytes::new()))
                .unwrap();
            cl.request(req).await.map(|r| r.status())
        }
    };
    assert_eq!(send(4 * 1024).await.unwrap(), StatusCode::OK);
    // Under the limit passes; over it the proxy answers 431 (its own check or hyper's parser).
    assert_eq!(send(12 * 1024).await.unwrap(), StatusCode::OK);
    assert_eq!(send(15 * 1024).await.unwrap(), StatusCode::OK);
    for size in [17 * 1024, 200 * 1024] {
        match send(size).await {
            Ok(status) => assert_eq!(
                status,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{size}"
            ),
            Err(e) => panic!("{size}-byte header: no 431 answer: {e}"),
        }
    }
    assert_eq!(b.hits(), 3);
}
