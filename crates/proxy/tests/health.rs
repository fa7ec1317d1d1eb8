//! Active checks, passive ejection, retries and draining.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use slipway_proxy::{HealthCheck, Pool, ProxyConfig, Route, RouteTable};

fn check() -> HealthCheck {
    HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        rise: 3,
        fall: 2,
    }
}

fn table(addrs: Vec<std::net::SocketAddr>, health: Option<HealthCheck>) -> RouteTable {
    let mut pool = Pool::new("web", addrs);
    pool.health = health;
    RouteTable::new().route(Route::new("*", "/", pool))
}

#[tokio::test]
async fn killed_backend_is_skipped_at_once_marked_down_and_comes_back_after_rise() {
    let mut backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs = backends.iter().map(|b| b.addr).collect();
    let (proxy, addr) = start_proxy(ProxyConfig::default(), table(addrs, Some(check()))).await;
    let cl = client();
    for _ in 0..9 {
        assert_eq!(get(&cl, addr, "x.test", "/").await.0, StatusCode::OK);
    }
    let dead = backends[1].addr;
    backends[1].kill();

    // No client sees the dead replica: the first failure is retried elsewhere.
    for _ in 0..30 {
        let (status, body) = get(&cl, addr, "x.test", "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_ne!(body, "b");
    }
    let status =
        |p: &slipway_proxy::Proxy| p.upstreams().into_iter().find(|u| u.addr == dead).unwrap();
    assert!(
        eventually(5, || !status(&proxy).up).await,
        "active check never marked it down"
    );

    // Back after `rise` passing checks (and the passive ejection is lifted).
    backends[1].restart().await;
    let back = Instant::now(); // three checks 100 ms apart: at least 200 ms after the first
    assert!(eventually(5, || status(&proxy).up && !status(&proxy).ejected).await);
    assert!(
        back.elapsed() >= Duration::from_millis(150),
        "came back before rise=3 checks"
    );
    for _ in 0..9 {
        assert_eq!(get(&cl, addr, "x.test", "/").await.0, StatusCode::OK);
    }
    assert_eq!(backends[1].hits(), 3);
}

#[tokio::test]
async fn no_healthy_upstream_answers_503_json() {
    // Every replica dead: connection errors eject them.
    let (mut a, mut b) = (Backend::start("a").await, Backend::start("b").await);
    let (_proxy, addr) =
        start_proxy(ProxyConfig::default(), table(vec![a.addr, b.addr], None)).await;
    a.kill();
    b.kill();
    let cl = client();
    for _ in 0..3 {
        let (status, body) = get(&cl, addr, "x.test", "/").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_healthy_upstream");
        assert!(v["error"]["message"].as_str().unwrap().contains("web"));
    }

    // Replicas alive but failing their health checks.
    let (c, d) = (Backend::start("c").await, Backend::start("d").await);
    let (proxy, addr) = start_proxy(
        ProxyConfig::default(),
        table(vec![c.addr, d.addr], Some(check())),
    )
    .await;
    assert_eq!(get(&cl, addr, "x.test", "/").await.0, StatusCode::OK);
    c.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    d.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(eventually(5, || proxy.upstreams().iter().all(|u| !u.up)).await);
    assert_eq!(
        get(&cl, addr, "x.test", "/").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(proxy.metrics().apps["web"].status_5xx, 1);
}

#[tokio::test]
async fn a_5xx_streak_ejects_the_replica_for_a_cooldown() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = ProxyConfig {
        eject_after_errors: 3,
        eject_cooldown: Duration::from_secs(30),
        ..ProxyConfig::default()
    };
    let (proxy, addr) = start_proxy(config, table(vec![a.addr, b.addr], None)).await;
    let cl = client();
    // Round robin alternates: a answers 500 on /fail three times, then is ejected.
    for _ in 0..6 {
        assert_eq!(
            get(&cl, addr, "x.test", "/fail").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let ejected: Vec<_> = proxy
        .upstreams()
        .into_iter()
        .filter(|u| u.ejected)
        .collect();
    assert_eq!(
        ejected.len(),
        2,
        "both replicas failed three times: {ejected:?}"
    );
    assert_eq!(
        get(&cl, addr, "x.test", "/").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn removed_upstream_drains_its_in_flight_requests() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (proxy, addr) =
        start_proxy(ProxyConfig::default(), table(vec![a.addr, b.addr], None)).await;
    let cl = client();
    let slow = {
        let cl = cl.clone();
        tokio::spawn(async move { get(&cl, addr, "x.test", "/slow?ms=1000").await })
    };
    assert!(
        eventually(5, || a.hits() == 1).await,
        "round robin starts with the first"
    );
    assert_eq!(proxy.in_flight("web", a.addr), 1);

    proxy.set_routes(table(vec![b.addr], None));
    let gone = proxy
        .upstreams()
        .into_iter()
        .find(|u| u.addr == a.addr)
        .unwrap();
    assert!(!gone.in_table && gone.in_flight == 1, "{gone:?}");
    for _ in 0..5 {
        assert_eq!(get(&cl, addr, "x.test", "/").await.1, "b");
    }
    assert!(
        !proxy
            .wait_idle("web", a.addr, Duration::from_millis(100))
            .await,
        "drained while a request was in flight"
    );
    let started = Instant::now();
    assert!(proxy.wait_idle("web", a.addr, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(proxy.in_flight("web", a.addr), 0);
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
    // An upstream nobody knows is idle.
    assert!(
        proxy
            .wait_idle("web", "127.0.0.1:9".parse().unwrap(), Duration::ZERO)
            .await
    );
}

#[tokio::test]
async fn a_request_that_never_reached_a_dead_replica_goes_to_another_whatever_its_method() {
    let mut dead = Backend::start("dead").await;
    let live = Backend::start("live").await;
    let (_proxy, addr) = start_proxy(
        ProxyConfig::default(),
        table(vec![dead.addr, live.addr], None),
    )
    .await;
    dead.kill();
    let cl = client();
    for i in 0..4 {
        let req = hyper::Request::post(format!("http://{addr}/echo"))
            .header("host", "x.test")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                "body {i}"
            ))))
            .unwrap();
        let resp = cl.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, format!("body {i}").as_bytes());
    }
    assert_eq!(live.hits(), 4);
}
