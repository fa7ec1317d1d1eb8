//! Connecting to an engine that is not there must fail fast with advice.
//! (Own test binary: it changes DOCKER_HOST for the whole process.)

use std::time::{Duration, Instant};

#[tokio::test]
async fn unreachable_engine_error_says_how_to_start_it() {
    std::env::set_var("DOCKER_HOST", "unix:///nonexistent/slipway-test.sock");
    let started = Instant::now();
    let err = slipway_runtime::Runtime::connect()
        .await
        .expect_err("connecting to a missing socket must fail");
    assert!(started.elapsed() < Duration::from_secs(20));
    let msg = err.to_string();
    assert!(
        msg.contains("cannot reach the Docker Engine at unix:///nonexistent/slipway-test.sock"),
        "{msg}"
    );
    assert!(msg.contains("sudo dockerd"), "{msg}");
    assert!(msg.contains("systemctl start docker"), "{msg}");
}
