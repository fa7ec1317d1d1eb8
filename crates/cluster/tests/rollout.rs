//! Rollouts on agents: a real etcd on loopback, an agent on the local
//! Docker Engine, busybox httpd replicas.
//!
//! - A revision change starts before it stops: a client that follows the
//!   replica's report (address:host_port) never sees a connection error
//!   while revision 1 is replaced by a revision 2 that needs 2 s to start.
//! - Agents pull release images from a real Slipway registry (the
//!   `slipway-registry` router) behind a guard that checks node
//!   credentials in etcd, as the server's does: a wrong credential is
//!   reported as a failed pull (and retried), the node's own pulls.
//!
//! Needs Docker: fails loudly without it.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use slipway_cluster::control::{self, LoopOptions};
use slipway_cluster::etcd::{ReplicaReport, Session};
use slipway_cluster::runner::{Runner, RunnerOptions};
use slipway_cluster::testing::replicas::{self, docker, running, start_agent, wait_until, Cleanup};
use slipway_cluster::testing::EtcdCluster;
use slipway_cluster::{AppDemand, ClusterStore, ContainerTemplate, ReplicaId};
use slipway_runtime::images::RegistryAuth;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(2);

/// A leader running the scheduling loop on `store`.
async fn scheduler(store: &ClusterStore, id: &str) -> tokio::task::JoinHandle<()> {
    let session = Session::start(store).await.unwrap();
    let leader = store.campaign(&session, id).await.unwrap();
    let s = store.clone();
    tokio::spawn(async move {
        let _session = session;
        let _ = control::run_scheduler(&s, &leader, LoopOptions::default(), std::future::pending())
            .await;
    })
}

/// A busybox httpd serving `text` on 8080 after `delay_s` seconds.
fn httpd(revision: u64, image: &str, text: &str, delay_s: u32) -> ContainerTemplate {
    ContainerTemplate {
        revision,
        image: image.into(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "mkdir -p /tmp/www && echo '{text}' > /tmp/www/index.html && sleep {delay_s} \
                 && exec httpd -f -p 8080 -h /tmp/www"
            ),
        ],
        env: Default::default(),
        port: 8080,
        health_path: Some("/".into()),
        secrets: None,
        ..Default::default()
    }
}

/// One replica of `t`, routed for `APP.apps.test`.
fn demand(app: &str, t: ContainerTemplate) -> AppDemand {
    AppDemand {
        hosts: vec![format!("{app}.apps.test")],
        ..replicas::demand(app, 1, Some(t))
    }
}

/// Replica 0's report on `node`.
async fn report_of(store: &ClusterStore, node: &str, app: &str) -> Option<ReplicaReport> {
    let id = ReplicaId {
        app: app.into(),
        index: 0,
    };
    store.reports(node).await.ok()?.remove(&id)
}

/// `GET /` on `address:port`: the body of a 200, or the error.
async fn http_get(address: &str, port: u16) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((address, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let (head, body) = out.split_once("\r\n\r\n").ok_or("no response head")?;
        if head.starts_with("HTTP/1.") && head.contains(" 200 ") {
            Ok(body.trim().to_owned())
        } else {
            Err(format!("answer: {head}"))
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_change_starts_before_it_stops() {
    let rt = docker().await;
    let etcd = EtcdCluster::start(1);
    let tag = std::process::id();
    let app = format!("roll-{tag}");
    let node = format!("ro-{tag}");
    let _cleanup = Cleanup::app(&rt, &app);
    let opts = etcd.store_options("/t-rollout", TTL);
    let store = ClusterStore::connect(opts.clone()).await.unwrap();
    let _scheduler = scheduler(&store, "server-1").await;
    let agent = start_agent(&opts, &rt, &node).await;
    let runner_opts = RunnerOptions::default();
    assert_eq!(runner_opts.drain, Duration::from_secs(1));
    let _runner = Runner::spawn(
        rt.clone(),
        ClusterStore::connect(opts.clone()).await.unwrap(),
        agent.status(),
        runner_opts,
    );
    let image = slipway_runtime::BUSYBOX_IMAGE;
    store
        .put_demand(&demand(&app, httpd(1, image, "revision 1", 0)))
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "revision 1 healthy", || {
        let (store, node, app) = (&store, &node, &app);
        async move {
            let r = report_of(store, node, app).await?;
            (r.state == "healthy"
                && r.revision == Some(1)
                && r.address.as_deref() == Some("127.0.0.1"))
            .then_some(())
        }
    })
    .await;

    // A client follows the report and sends requests, one every 10 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (store, node, app, stop) = (store.clone(), node.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut errors, mut bodies) = (0u32, Vec::new(), Vec::<String>::new());
            for _ in 0..4000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let r = report_of(&store, &node, &app).await;
                let target = r.and_then(|r| Some((r.address?, r.host_port?)));
                match target {
                    Some((address, port)) => match http_get(&address, port).await {
                        Ok(body) => {
                            ok += 1;
                            if bodies.last() != Some(&body) {
                                bodies.push(body);
                            }
                        }
                        Err(e) => errors.push(e),
                    },
                    None => errors.push("no address reported".into()),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, errors, bodies)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Revision 2 needs 2 s before it answers: revision 1 serves meanwhile.
    let changed = Instant::now();
    store
        .put_demand(&demand(&app, httpd(2, image, "revision 2", 2)))
        .await
        .unwrap();
    let both_running = AtomicBool::new(false);
    let (_, switched) = wait_until(Duration::from_secs(30), "revision 2 reported", || {
        let (rt, store, node, app, both) = (&rt, &store, &node, &app, &both_running);
        async move {
            let r = report_of(store, node, app).await?;
            if running(rt, app).await.len() == 2 && r.revision == Some(1) {
                both.store(true, Ordering::SeqCst);
            }
            (r.state == "healthy" && r.revision == Some(2)).then_some(())
        }
    })
    .await;
    assert!(
        both_running.load(Ordering::SeqCst),
        "the old revision was not kept running (and reported) next to the new one"
    );
    let (_, gone) = wait_until(Duration::from_secs(10), "revision 1 removed", || {
        let (rt, app) = (&rt, &app);
        async move { (running(rt, app).await.len() == 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, errors, bodies) = client.await.unwrap();
    println!(
        "revision change: new revision reported {switched:?} after the demand changed \
         (it needs 2 s to start), old container removed {gone:?} later (drain 1 s); \
         client: {ok} requests answered, {} errors, bodies {bodies:?}",
        errors.len()
    );
    assert!(errors.is_empty(), "the client saw errors: {errors:?}");
    assert_eq!(bodies, ["revision 1", "revision 2"]);
    assert!(switched >= Duration::from_secs(2), "{switched:?}");
    assert!(ok > 50, "only {ok} requests");
    let _ = changed;

    agent.stop().await.unwrap();
}

/// Basic `<node>:<secret>` of a request.
fn basic(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (node, secret) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))?;
    Some((node, secret))
}

/// What the server's registry guard does for node credentials: pulls only,
/// the credential checked against etcd.
async fn node_guard(store: ClusterStore, req: Request, next: Next) -> Response {
    let allowed = match basic(&req) {
        Some((node, secret)) => store
            .check_node_credential(&node, &secret)
            .await
            .unwrap_or(false),
        None => false,
    };
    if allowed && matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let mut res = (StatusCode::UNAUTHORIZED, "authentication required").into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"test\""),
    );
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_pull_release_images_with_their_node_credential() {
    let rt = docker().await;
    let etcd = EtcdCluster::start(1);
    let tag = std::process::id();
    let app = format!("pull-{tag}");
    let node = format!("pn-{tag}");
    let opts = etcd.store_options("/t-pull", TTL);
    let store = ClusterStore::connect(opts.clone()).await.unwrap();

    // A registry holding the release image, on loopback.
    let dir = tempfile::tempdir().unwrap();
    let registry = slipway_registry::Registry::open(dir.path().to_path_buf()).unwrap();
    let repo = format!("test/{app}");
    slipway_registry::import_from_docker(
        &registry,
        &rt,
        slipway_runtime::BUSYBOX_IMAGE,
        &repo,
        "v1",
    )
    .await
    .expect("store the image in the registry");
    let guard_store = store.clone();
    let router = slipway_registry::router(registry).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let store = guard_store.clone();
            async move { node_guard(store, req, next).await }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let image = format!("{host}/{repo}:v1");
    // Removes the test's containers and the pulled image even when it panics.
    let _cleanup = Cleanup::app(&rt, &app).with_image(&image);
    slipway_runtime::images::remove_image(&rt, &image, true)
        .await
        .unwrap();

    // Credentials: only the digest is stored; a new join replaces the old one.
    let first = store.issue_node_credential(&node).await.unwrap();
    let credential = store.issue_node_credential(&node).await.unwrap();
    assert!(credential.starts_with("slpn_"));
    assert!(!store.check_node_credential(&node, &first).await.unwrap());
    assert!(store
        .check_node_credential(&node, &credential)
        .await
        .unwrap());
    assert!(!store
        .check_node_credential("other", &credential)
        .await
        .unwrap());

    let _scheduler = scheduler(&store, "server-1").await;
    let agent = start_agent(&opts, &rt, &node).await;
    let wrong = RunnerOptions {
        pull_auth: Some(RegistryAuth {
            username: node.clone(),
            password: "slpn_wrong".into(),
        }),
        ..Default::default()
    };
    let runner = Runner::spawn(
        rt.clone(),
        ClusterStore::connect(opts.clone()).await.unwrap(),
        agent.status(),
        wrong,
    );
    store
        .put_demand(&demand(&app, httpd(1, &image, "pulled", 0)))
        .await
        .unwrap();
    let (failed, took) = wait_until(Duration::from_secs(30), "a failed pull reported", || {
        let (store, node, app) = (&store, &node, &app);
        async move {
            let r = report_of(store, node, app).await?;
            (r.state == "failed").then_some(r)
        }
    })
    .await;
    println!(
        "wrong credential: reported after {took:?}: {}",
        failed.detail
    );
    assert!(
        failed
            .detail
            .starts_with(&format!("pulling {image} failed: ")),
        "{}",
        failed.detail
    );
    assert_eq!(failed.revision, Some(1));
    drop(runner);

    // The node's own credential pulls; the replica answers.
    let right = RunnerOptions {
        pull_auth: Some(RegistryAuth {
            username: node.clone(),
            password: credential.clone(),
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let _runner = Runner::spawn(
        rt.clone(),
        ClusterStore::connect(opts.clone()).await.unwrap(),
        agent.status(),
        right,
    );
    let (report, _) = wait_until(
        Duration::from_secs(60),
        "the pulled replica healthy",
        || {
            let (store, node, app) = (&store, &node, &app);
            async move {
                let r = report_of(store, node, app).await?;
                (r.state == "healthy").then_some(r)
            }
        },
    )
    .await;
    let body = http_get("127.0.0.1", report.host_port.unwrap())
        .await
        .unwrap();
    assert_eq!(body, "pulled");
    assert!(slipway_runtime::images::image_exists(&rt, &image)
        .await
        .unwrap());
    println!(
        "node credential: image pulled and replica healthy {:?} after the runner started",
        started.elapsed()
    );
    agent.stop().await.unwrap();
}
