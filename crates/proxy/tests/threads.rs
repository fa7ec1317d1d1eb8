//! Thread-per-core serving with `Proxy::serve_on`: connections spread over
//! the threads, every request is answered and counted once.

mod common;

use common::*;
use hyper::StatusCode;
use slipway_proxy::{Pool, Proxy, ProxyConfig, Route, RouteTable};

#[tokio::test]
async fn serve_on_threads_answers_and_counts_every_request() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let proxy = Proxy::new(ProxyConfig::default());
    proxy.set_routes(RouteTable::new().route(Route::new(
        "*",
        "/",
        Pool::new("web", vec![a.addr, b.addr]),
    )));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let threads = proxy.serve_on(listener, 2).unwrap();
    assert_eq!(threads.len(), 2);

    // Separate clients: separate connections, handed to both threads.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            let cl = client();
            for _ in 0..10 {
                let (status, _) = get(&cl, addr, "x.test", "/headers").await;
                assert_eq!(status, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.hits() + b.hits(), 40);
    assert_eq!(a.hits(), 20, "round robin over both backends");
    let m = &proxy.metrics().apps["web"];
    assert_eq!(m.requests, 40);
    assert_eq!(m.status_2xx, 40);
    assert_eq!(m.latency_buckets.iter().sum::<u64>(), 40);
    assert!(eventually(5, || proxy.metrics().apps["web"].in_flight == 0).await);
}
