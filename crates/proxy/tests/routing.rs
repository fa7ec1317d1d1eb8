//! Routing by Host and path, balancing, metrics and atomic table swaps.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use slipway_proxy::{Balance, Pool, ProxyConfig, Route, RouteTable};

#[tokio::test]
async fn routes_by_host_and_longest_path_prefix() {
    let (a, b, c, d) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    );
    let table = RouteTable::new()
        .route(Route::new(
            "app.example.com",
            "/",
            Pool::new("web", vec![a.addr]),
        ))
        .route(Route::new(
            "app.example.com",
            "/api",
            Pool::new("api", vec![b.addr]),
        ))
        .route(Route::new(
            "*.example.com",
            "/",
            Pool::new("wild", vec![c.addr]),
        ))
        .route(Route::new(
            "App.Example.com",
            "/api/v2",
            Pool::new("v2", vec![d.addr]),
        ));
    let (proxy, addr) = start_proxy(ProxyConfig::default(), table).await;
    let cl = client();

    for (host, path, want) in [
        ("app.example.com", "/", "a"),
        ("APP.example.com:8080", "/index.html", "a"),
        ("app.example.com", "/api", "b"),
        ("app.example.com", "/api/users?x=1", "b"),
        ("app.example.com", "/apix", "a"),
        ("app.example.com", "/api/v2/x", "d"),
        ("other.example.com", "/api", "c"),
        ("a.b.example.com", "/", "c"),
    ] {
        let (status, body) = get(&cl, addr, host, path).await;
        assert_eq!(status, StatusCode::OK, "{host}{path}");
        assert_eq!(body, want, "{host}{path}");
    }

    for host in ["example.com", "unknown.org"] {
        let (status, body) = get(&cl, addr, host, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_route", "{body}");
        assert!(v["error"]["message"].as_str().unwrap().contains(host));
    }

    let m = proxy.metrics();
    assert_eq!(m.apps["web"].requests, 3);
    assert_eq!(m.apps["web"].status_2xx, 3);
    assert_eq!(m.apps["api"].requests, 2);
    assert_eq!(m.apps["wild"].requests, 2);
    assert_eq!(m.apps["v2"].latency_buckets.iter().sum::<u64>(), 1);
    assert_eq!(m.apps["web"].in_flight, 0);
}

#[tokio::test]
async fn round_robin_spreads_evenly_over_three_backends() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let pool = Pool::new("web", backends.iter().map(|b| b.addr).collect());
    let (_proxy, addr) = start_proxy(
        ProxyConfig::default(),
        RouteTable::new().route(Route::new("*", "/", pool)),
    )
    .await;
    let cl = client();
    for _ in 0..30 {
        assert_eq!(get(&cl, addr, "x.test", "/").await.0, StatusCode::OK);
    }
    for b in &backends {
        assert_eq!(b.hits(), 10, "backend {}", b.id);
    }
}

#[tokio::test]
async fn least_connections_prefers_the_idle_backend() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let pool = Pool::new("web", vec![a.addr, b.addr]).balance(Balance::LeastConnections);
    let (proxy, addr) = start_proxy(
        ProxyConfig::default(),
        RouteTable::new().route(Route::new("*", "/", pool)),
    )
    .await;
    let cl = client();
    let slow = {
        let cl = cl.clone();
        tokio::spawn(async move { get(&cl, addr, "x.test", "/slow?ms=1500").await })
    };
    assert!(eventually(5, || a.hits() + b.hits() == 1).await);
    let busy = if a.hits() == 1 { "a" } else { "b" };
    assert_eq!(proxy.metrics().apps["web"].in_flight, 1);
    for _ in 0..10 {
        let (status, body) = get(&cl, addr, "x.test", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(body, busy, "a request went to the busy backend");
    }
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, busy));
}

#[tokio::test]
async fn swapping_the_table_under_load_fails_no_request() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let table = |idx: &[usize]| {
        let pool = Pool::new("web", idx.iter().map(|i| backends[*i].addr).collect());
        RouteTable::new().route(Route::new("*", "/", pool))
    };
    let (proxy, addr) = start_proxy(ProxyConfig::default(), table(&[0, 1])).await;
    let mut load = Vec::new();
    for _ in 0..4 {
        let cl = client();
        load.push(tokio::spawn(async move {
            for _ in 0..50 {
                let (status, _) = get(&cl, addr, "x.test", "/slow?ms=5").await;
                assert_eq!(status, StatusCode::OK);
            }
        }));
    }
    for set in [[1, 2], [2, 0], [0, 1], [1, 2]] {
        tokio::time::sleep(Duration::from_millis(60)).await;
        proxy.set_routes(table(&set));
    }
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(proxy.metrics().apps["web"].status_2xx, 200);
    assert_eq!(proxy.routes(), table(&[1, 2]));
}

/// GET with an optional `Cookie` header: (body, the `Set-Cookie` answered).
async fn get_with_cookie(
    c: &Client,
    proxy: std::net::SocketAddr,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut req = hyper::Request::get(format!("http://{proxy}/")).header("host", "x.test");
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let resp = c
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let set = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (String::from_utf8_lossy(&body).to_string(), set)
}

#[tokio::test]
async fn sticky_sessions_send_a_client_back_to_its_replica_until_it_goes() {
    let mut backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let pool = Pool::new("web", backends.iter().map(|b| b.addr).collect()).sticky(true);
    let (_proxy, addr) = start_proxy(
        ProxyConfig::default(),
        RouteTable::new().route(Route::new("*", "/", pool)),
    )
    .await;
    let cl = client();
    // The first answer sets the cookie naming the replica that served it.
    let (first, set) = get_with_cookie(&cl, addr, None).await;
    let set = set.expect("a sticky pool sets its cookie");
    assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    // With it, every request goes back there (no new cookie); round robin
    // would have spread them.
    for _ in 0..12 {
        let (body, again) = get_with_cookie(&cl, addr, Some(&format!("other=1; {cookie}"))).await;
        assert_eq!(body, first);
        assert_eq!(again, None);
    }
    // Its replica dies: the client moves to another one, with a new cookie.
    let gone = backends.iter().position(|b| b.id == first).unwrap();
    backends[gone].kill();
    let (moved, set) = get_with_cookie(&cl, addr, Some(&cookie)).await;
    assert_ne!(moved, first);
    let new_cookie = set.expect("a new cookie for the new replica");
    assert_ne!(new_cookie.split(';').next().unwrap(), cookie);
    // Without stickiness nothing is set.
    let plain = Pool::new("web", vec![backends[(gone + 1) % 3].addr]);
    let (_p2, addr2) = start_proxy(
        ProxyConfig::default(),
        RouteTable::new().route(Route::new("*", "/", plain)),
    )
    .await;
    assert_eq!(get_with_cookie(&cl, addr2, None).await.1, None);
}
