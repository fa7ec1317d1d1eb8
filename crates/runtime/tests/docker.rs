//! Real tests against the running Docker Engine (no mocks).
//!
//! Every test fails loudly if the engine is unreachable. Each test labels
//! what it creates with a unique `io.slipway.test=<id>` and removes it with
//! `Runtime::cleanup`, also when the test body panics, so tests can run in
//! parallel and leave nothing behind.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use slipway_runtime::images::{self, BuildOptions};
use slipway_runtime::{
    ContainerSpec, LabelFilter, LogOptions, LogStream, NetworkMode, Runtime, RuntimeError,
    Security, BUSYBOX_IMAGE,
};

const TEST_LABEL: &str = "io.slipway.test";

/// A name unique across parallel tests and repeated runs.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "slipway-test-{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect() -> Runtime {
    match Runtime::connect().await {
        Ok(rt) => rt,
        Err(e) => panic!(
            "these tests need a running Docker Engine and none is reachable: {e}\n\
             (start it with `dockerd >/tmp/dockerd.log 2>&1 &`)"
        ),
    }
}

/// Make sure slipway/busybox exists, once per test process.
async fn ensure_busybox(rt: &Runtime) {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            images::ensure_busybox(rt)
                .await
                .expect("bootstrapping slipway/busybox failed");
        })
        .await;
}

/// Run `body` with a connected runtime, the busybox image and a unique test
/// label; afterwards remove everything carrying that label, even on panic.
async fn with_env<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Runtime, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = connect().await;
    ensure_busybox(&rt).await;
    let id = unique(name);
    let outcome = AssertUnwindSafe(body(rt.clone(), id.clone()))
        .catch_unwind()
        .await;
    let report = rt
        .cleanup(&LabelFilter::managed().with(TEST_LABEL, &id))
        .await
        .expect("cleanup after test failed");
    assert!(
        report.failures.is_empty(),
        "cleanup failures: {:?}",
        report.failures
    );
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn busybox(test_id: &str) -> ContainerSpec {
    ContainerSpec::new(BUSYBOX_IMAGE)
        .name(unique("c"))
        .label(TEST_LABEL, test_id)
}

fn test_labels(test_id: &str) -> HashMap<String, String> {
    HashMap::from([(TEST_LABEL.to_string(), test_id.to_string())])
}

#[tokio::test]
async fn bootstrap_busybox_imports_a_working_image_in_seconds() {
    let rt = connect().await;
    let tag = format!("slipway/busybox-test:{}", unique("img"));
    let started = Instant::now();
    let id = images::bootstrap_busybox(&rt, &tag).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bootstrap took {:?}",
        started.elapsed()
    );
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(images::image_exists(&rt, &tag).await.unwrap());

    let listed = images::list_images(&rt, Some(&tag), Some(&LabelFilter::managed()))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].tags.contains(&tag));
    assert_eq!(listed[0].labels["io.slipway.managed"], "true");

    let out = rt
        .run(
            &ContainerSpec::new(&tag)
                .name(unique("c"))
                .user("slipway")
                .shell("id -u; whoami; grep nobody /etc/passwd | cut -d: -f3; stat -c %a /tmp; ls /bin | wc -l; echo $PATH"),
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<String> = out.logs.stdout_str().lines().map(String::from).collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "slipway");
    assert_eq!(lines[2], "65534");
    assert_eq!(lines[3], "1777");
    assert!(
        lines[4].parse::<u32>().unwrap() > 50,
        "few applets: {lines:?}"
    );
    assert!(lines[5].contains("/usr/bin") && lines[5].contains("/bin"));

    images::remove_image(&rt, &tag, true).await.unwrap();
    assert!(!images::image_exists(&rt, &tag).await.unwrap());
    // Removing again is not an error.
    images::remove_image(&rt, &tag, true).await.unwrap();
}

#[tokio::test]
async fn exit_code_and_separate_stdout_stderr() {
    with_env("exit", |rt, t| async move {
        let out = rt
            .run(&busybox(&t).shell("echo to-stdout; echo to-stderr >&2; exit 3"))
            .await
            .unwrap();
        assert_eq!(out.status.code, 3);
        assert!(!out.status.oom_killed);
        assert!(!out.status.success());
        assert_eq!(out.logs.stdout_str(), "to-stdout\n");
        assert_eq!(out.logs.stderr_str(), "to-stderr\n");
    })
    .await;
}

#[tokio::test]
async fn logs_follow_streams_until_the_container_exits() {
    with_env("follow", |rt, t| async move {
        let id = rt
            .create(
                &busybox(&t).shell(
                    "for i in 1 2 3; do echo line$i; sleep 1; done; echo finished >&2; exit 0",
                ),
            )
            .await
            .unwrap();
        rt.start(&id).await.unwrap();
        let mut logs = Box::pin(rt.logs(&id, LogOptions::follow()));
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut first_at = None;
        let started = Instant::now();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), logs.next())
            .await
            .expect("log stream did not end after the container exited")
        {
            let chunk = chunk.unwrap();
            first_at.get_or_insert(started.elapsed());
            match chunk.stream {
                LogStream::Stdout => stdout.push_str(&String::from_utf8_lossy(&chunk.data)),
                LogStream::Stderr => stderr.push_str(&String::from_utf8_lossy(&chunk.data)),
            }
        }
        assert_eq!(stdout, "line1\nline2\nline3\n");
        assert_eq!(stderr, "finished\n");
        // Output arrived while the container was still running, not only at the end.
        assert!(
            first_at.unwrap() < Duration::from_millis(2500),
            "first chunk after {first_at:?}"
        );
        let status = rt.wait(&id).await.unwrap();
        assert!(status.success());
        // tail: only the last line (counted over both streams).
        let mut tail = Box::pin(rt.logs(
            &id,
            LogOptions {
                tail: Some(1),
                ..Default::default()
            },
        ));
        let last = tail.next().await.unwrap().unwrap();
        assert_eq!(last.stream, LogStream::Stderr);
        assert_eq!(&last.data[..], b"finished\n");
        assert!(tail.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn memory_limit_is_enforced_and_oom_killed_reported() {
    with_env("oom", |rt, t| async move {
        // The shell keeps ~200 MB of command substitution output in memory.
        let out = rt
            .run(
                &busybox(&t)
                    .memory(16 * 1024 * 1024)
                    .shell("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}"),
            )
            .await
            .unwrap();
        assert!(out.status.oom_killed, "OOMKilled not reported: {out:?}");
        assert_eq!(out.status.code, 137);
        assert!(!out.logs.stdout_str().contains("survived"));

        // Control: the same work within a sufficient limit succeeds.
        let ok = rt
            .run(
                &busybox(&t)
                    .memory(64 * 1024 * 1024)
                    .shell("x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo survived ${#x}"),
            )
            .await
            .unwrap();
        assert!(ok.status.success(), "{ok:?}");
        assert_eq!(ok.logs.stdout_str(), "survived 1000000\n");
    })
    .await;
}

#[tokio::test]
async fn pids_limit_stops_a_fork_loop() {
    with_env("pids", |rt, t| async move {
        let script = "n=0; for i in $(seq 1 64); do sleep 60 & n=$((n+1)); done; echo started $n";
        let limited = rt
            .run(&busybox(&t).pids_limit(16).shell(script))
            .await
            .unwrap();
        assert_ne!(limited.status.code, 0, "{limited:?}");
        assert!(
            limited.logs.stderr_str().contains("can't fork"),
            "{limited:?}"
        );
        assert!(!limited.logs.stdout_str().contains("started 64"));

        let unlimited = rt
            .run(&busybox(&t).pids_limit(200).shell(script))
            .await
            .unwrap();
        assert!(unlimited.status.success(), "{unlimited:?}");
        assert_eq!(unlimited.logs.stdout_str(), "started 64\n");
    })
    .await;
}

#[tokio::test]
async fn published_port_is_reachable_on_loopback_only() {
    with_env("port", |rt, t| async move {
        let id = rt
            .create(&busybox(&t).publish(8080, 0).shell(
                "mkdir -p /tmp/www && echo hello-slipway > /tmp/www/index.html && \
                 exec httpd -f -p 8080 -h /tmp/www",
            ))
            .await
            .unwrap();
        rt.start(&id).await.unwrap();
        let port = rt.host_port(&id, 8080).await.unwrap();
        assert_ne!(port, 0);
        let state = rt.inspect(&id).await.unwrap();
        assert!(state.running);
        assert!(!state.ports.is_empty());
        for p in &state.ports {
            assert_eq!(p.host_ip, "127.0.0.1", "port bound beyond loopback: {p:?}");
        }
        assert!(matches!(
            rt.host_port(&id, 9999).await,
            Err(RuntimeError::PortNotPublished { .. })
        ));

        let body = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let attempt = (|| -> std::io::Result<String> {
                    let mut s = TcpStream::connect(("127.0.0.1", port))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
                    let mut buf = String::new();
                    s.read_to_string(&mut buf)?;
                    Ok(buf)
                })();
                match attempt {
                    Ok(b) if b.contains("hello-slipway") => return b,
                    other if Instant::now() > deadline => {
                        panic!("httpd not reachable on 127.0.0.1:{port}: {other:?}")
                    }
                    _ => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        })
        .await
        .unwrap();
        assert!(body.starts_with("HTTP/1."), "{body}");

        rt.kill(&id, None).await.unwrap();
        rt.remove(&id).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn listening_ports_are_seen_from_the_host_and_inside() {
    with_env("listen", |rt, t| async move {
        let id = rt
            .create(&busybox(&t).publish(8080, 0).shell(
                "mkdir -p /tmp/www && httpd -p 3000 -h /tmp/www && \
                 httpd -p 127.0.0.1:8081 -h /tmp/www && exec sleep 600",
            ))
            .await
            .unwrap();
        rt.start(&id).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let seen = loop {
            let seen = rt.listening(&id).await.expect("the container's sockets");
            if seen.ports() == vec![3000, 8081] {
                break seen;
            }
            assert!(Instant::now() < deadline, "{seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            seen.problem(8080).as_deref(),
            Some("nothing listens on port 8080 inside the container; it listens on 3000, 8081")
        );
        assert_eq!(seen.check(3000), slipway_runtime::PortCheck::Open);
        assert_eq!(seen.check(8081), slipway_runtime::PortCheck::LoopbackOnly);
        // The in-container way (images whose process the host cannot see) agrees.
        let inside = rt.listening_inside(&id).await.expect("cat /proc/net/tcp");
        assert_eq!(inside, seen);
        // A stopped container has no sockets to look at.
        rt.kill(&id, None).await.unwrap();
        rt.wait(&id).await.unwrap();
        assert!(rt.listening(&id).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn cleanup_removes_labelled_leftovers_only() {
    let rt = connect().await;
    ensure_busybox(&rt).await;
    let t = unique("cleanup");
    let other = unique("cleanup-other");
    let labels = test_labels(&t);

    let net = unique("net");
    let vol = unique("vol");
    rt.create_network(&net, &labels, true).await.unwrap();
    rt.create_volume(&vol, &labels).await.unwrap();
    let running = rt
        .create(
            &busybox(&t)
                .network(NetworkMode::Named {
                    name: net.clone(),
                    aliases: vec!["db".into()],
                })
                .volume(&vol, "/data")
                .shell("sleep 600"),
        )
        .await
        .unwrap();
    rt.start(&running).await.unwrap();
    let created_only = rt.create(&busybox(&t).shell("true")).await.unwrap();
    let unrelated = rt.create(&busybox(&other).shell("true")).await.unwrap();

    let filter = LabelFilter::managed().with(TEST_LABEL, &t);
    let found = rt.list_containers(&filter).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");

    let report = rt.cleanup(&filter).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.containers.len(), 2, "{report:?}");
    assert!(report.containers.contains(&running));
    assert!(report.containers.contains(&created_only));
    assert_eq!(report.networks, vec![net.clone()]);
    assert_eq!(report.volumes, vec![vol.clone()]);

    assert!(rt.list_containers(&filter).await.unwrap().is_empty());
    assert!(rt.list_networks(&filter).await.unwrap().is_empty());
    assert!(rt.list_volumes(&filter).await.unwrap().is_empty());
    assert!(rt.inspect(&running).await.unwrap_err().is_not_found());
    // The object with a different label value survived.
    assert_eq!(rt.inspect(&unrelated).await.unwrap().status, "created");

    let again = rt.cleanup(&filter).await.unwrap();
    assert_eq!(again.removed(), 0);
    let rest = rt
        .cleanup(&LabelFilter::managed().with(TEST_LABEL, &other))
        .await
        .unwrap();
    assert_eq!(rest.containers, vec![unrelated]);
}

#[tokio::test]
async fn disabled_network_leaves_only_loopback() {
    with_env("nonet", |rt, t| async move {
        let script = "ls /sys/class/net; echo routes=$(tail -n +2 /proc/net/route | wc -l)";
        let offline = rt
            .run(
                &busybox(&t)
                    .security(Security::sandbox())
                    .tmpfs("/tmp", Some(1 << 20))
                    .shell(script),
            )
            .await
            .unwrap();
        assert!(offline.status.success(), "{offline:?}");
        assert_eq!(offline.logs.stdout_str(), "lo\nroutes=0\n");

        // Control: the default bridge gives an interface and a route.
        let online = rt.run(&busybox(&t).shell(script)).await.unwrap();
        assert!(online.logs.stdout_str().contains("eth0"), "{online:?}");
        assert!(!online.logs.stdout_str().contains("routes=0"), "{online:?}");
    })
    .await;
}

#[tokio::test]
async fn read_only_rootfs_rejects_writes_outside_tmpfs() {
    with_env("rofs", |rt, t| async move {
        let out = rt
            .run(
                &busybox(&t)
                    .security(Security::sandbox())
                    .tmpfs("/tmp", Some(4 << 20))
                    .shell(
                        "touch /etc/x 2>/dev/null && echo etc-writable; \
                         touch /root-file 2>/dev/null && echo root-writable; \
                         touch /tmp/ok && echo tmp-writable; \
                         chown 1000 /tmp/ok 2>/dev/null || echo chown-denied; \
                         echo done",
                    ),
            )
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            out.logs.stdout_str(),
            "tmp-writable\nchown-denied\ndone\n",
            "{out:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn kill_stops_a_long_running_sleep() {
    with_env("kill", |rt, t| async move {
        let id = rt.create(&busybox(&t).shell("sleep 1000")).await.unwrap();
        rt.start(&id).await.unwrap();
        assert!(rt.inspect(&id).await.unwrap().running);
        let started = Instant::now();
        rt.kill(&id, None).await.unwrap();
        let status = rt.wait(&id).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(status.code, 137);
        assert!(!status.oom_killed);
        let state = rt.inspect(&id).await.unwrap();
        assert!(!state.running);
        assert_eq!(state.status, "exited");
        // Killing a stopped container and removing twice are not errors.
        rt.kill(&id, None).await.unwrap();
        rt.remove(&id).await.unwrap();
        rt.remove(&id).await.unwrap();
        assert!(rt.inspect(&id).await.unwrap_err().is_not_found());
    })
    .await;
}

#[tokio::test]
async fn stop_sends_sigterm_before_killing() {
    with_env("stop", |rt, t| async move {
        let id = rt
            .create(&busybox(&t).shell(
                "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 1; done",
            ))
            .await
            .unwrap();
        rt.start(&id).await.unwrap();
        // Wait until the trap is installed before stopping.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rt
            .collect_logs(&id)
            .await
            .unwrap()
            .stdout_str()
            .contains("ready")
        {
            assert!(Instant::now() < deadline, "container never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rt.stop(&id, 20).await.unwrap();
        let status = rt.wait(&id).await.unwrap();
        assert_eq!(status.code, 0, "SIGTERM trap did not run");
        assert!(rt
            .collect_logs(&id)
            .await
            .unwrap()
            .stdout_str()
            .contains("got-term"));
        // Stopping a stopped container is fine.
        rt.stop(&id, 1).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn volumes_persist_and_binds_can_be_read_only() {
    with_env("mounts", |rt, t| async move {
        let vol = unique("vol");
        rt.create_volume(&vol, &test_labels(&t)).await.unwrap();
        let write = rt
            .run(
                &busybox(&t)
                    .volume(&vol, "/data")
                    .shell("echo kept > /data/f"),
            )
            .await
            .unwrap();
        assert!(write.status.success(), "{write:?}");
        let read = rt
            .run(&busybox(&t).volume(&vol, "/data").shell("cat /data/f"))
            .await
            .unwrap();
        assert_eq!(read.logs.stdout_str(), "kept\n");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "from-host\n").unwrap();
        let out = rt
            .run(&busybox(&t).bind(dir.path(), "/src", true).shell(
                "cat /src/in.txt; touch /src/new 2>/dev/null && echo writable || echo read-only",
            ))
            .await
            .unwrap();
        assert_eq!(out.logs.stdout_str(), "from-host\nread-only\n");
        assert!(!dir.path().join("new").exists());
    })
    .await;
}

#[tokio::test]
async fn spec_settings_reach_the_engine() {
    with_env("spec", |rt, t| async move {
        let id = rt
            .create(
                &busybox(&t)
                    .memory(32 << 20)
                    .nano_cpus(500_000_000)
                    .pids_limit(64)
                    .env("GREETING", "hi")
                    .working_dir("/tmp")
                    .user("1000:1000")
                    .label("io.slipway.owner", "ci")
                    .label("io.slipway.pipeline", "42")
                    .shell("true"),
            )
            .await
            .unwrap();
        let raw = rt.docker().inspect_container(&id, None).await.unwrap();
        let hc = raw.host_config.unwrap();
        assert_eq!(hc.memory, Some(32 << 20));
        assert_eq!(hc.memory_swap, Some(32 << 20));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.pids_limit, Some(64));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        let cfg = raw.config.unwrap();
        assert!(cfg.env.unwrap().contains(&"GREETING=hi".to_string()));
        assert_eq!(cfg.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(cfg.user.as_deref(), Some("1000:1000"));
        let state = rt.inspect(&id).await.unwrap();
        assert_eq!(state.labels["io.slipway.managed"], "true");
        assert_eq!(state.labels["io.slipway.owner"], "ci");
        assert_eq!(state.labels["io.slipway.pipeline"], "42");
        assert_eq!(state.status, "created");
    })
    .await;
}

#[tokio::test]
async fn missing_image_is_reported_without_pulling() {
    let rt = connect().await;
    let err = rt
        .create(&ContainerSpec::new("slipway/does-not-exist:never").name(unique("c")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::ImageMissing { .. }),
        "unexpected: {err:?}"
    );
    assert!(err.to_string().contains("never pulls"), "{err}");
}

#[tokio::test]
async fn dockerfile_builds_on_the_busybox_image() {
    with_env("build", |rt, t| async move {
        let tag = format!("slipway/build-test:{}", unique("b"));
        let dockerfile = "FROM slipway/busybox:latest\n\
                          ARG FLAVOUR=plain\n\
                          COPY greeting.txt /greeting.txt\n\
                          RUN echo \"built-$FLAVOUR\" > /built.txt\n\
                          CMD [\"sh\", \"-c\", \"cat /greeting.txt /built.txt\"]\n";
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("Dockerfile.slipway"), dockerfile).unwrap();
        std::fs::write(ctx.path().join("greeting.txt"), "hello\n").unwrap();
        let context = images::context_from_dir(ctx.path()).await.unwrap();

        let mut opts = BuildOptions::new(&tag);
        opts.dockerfile = Some("Dockerfile.slipway".into());
        opts.build_args.insert("FLAVOUR".into(), "spicy".into());
        let mut log = Vec::new();
        let id = images::build_image_with(&rt, context, &opts, |l| log.push(l.to_string()))
            .await
            .unwrap();
        assert!(id.starts_with("sha256:"));
        assert!(log.iter().any(|l| l.contains("Step 1/")), "{log:?}");

        let listed = images::list_images(&rt, Some(&tag), Some(&LabelFilter::managed()))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "build should carry the managed label");

        let out = rt
            .run(
                &ContainerSpec::new(&tag)
                    .name(unique("c"))
                    .label(TEST_LABEL, &t),
            )
            .await
            .unwrap();
        assert_eq!(out.logs.stdout_str(), "hello\nbuilt-spicy\n");

        // A failing RUN ends the stream with a Build error.
        let bad = images::dockerfile_context("FROM slipway/busybox:latest\nRUN exit 7\n").unwrap();
        let mut lines = Box::pin(images::build_image(
            &rt,
            bad,
            &BuildOptions::new(format!("slipway/build-test:{}", unique("bad"))),
        ));
        let mut failed = None;
        while let Some(item) = lines.next().await {
            if let Err(e) = item {
                failed = Some(e);
            }
        }
        let failed = failed.expect("failing build reported no error");
        assert!(
            matches!(failed, RuntimeError::Build { .. }),
            "unexpected: {failed:?}"
        );

        images::remove_image(&rt, &tag, true).await.unwrap();
    })
    .await;
}

/// The futures the API server spawns must be `Send`.
#[allow(dead_code)]
fn runtime_futures_are_send(rt: &Runtime, spec: &ContainerSpec, f: &LabelFilter) {
    fn send<T: Send>(_: T) {}
    send(rt.run(spec));
    send(rt.cleanup(f));
    send(rt.logs("x", LogOptions::default()));
    send(images::bootstrap_busybox(rt, BUSYBOX_IMAGE));
    send(images::bootstrap_debian(rt, "bookworm", "t", None, |_| {}));
    send(images::build_language_layer(rt, "b", "t", &["x"], |_| {}));
}

/// Slow path, run on demand: `cargo test -p slipway-runtime --test docker -- --ignored`.
/// Needs root, `apt-get install debootstrap` and the Debian mirror.
#[tokio::test]
#[ignore = "slow (minutes): debootstrap + apt-get from the Debian mirror; run with --ignored"]
async fn debian_bootstrap_and_language_layer() {
    let rt = connect().await;
    let suffix = unique("deb");
    let base = format!("slipway/debian-test:{suffix}");
    let mut stages = Vec::new();
    let id = images::bootstrap_debian(&rt, "bookworm", &base, None, |ev| {
        if let images::ProgressEvent::Stage(s) = &ev {
            eprintln!("stage: {s}");
            stages.push(s.clone());
        }
    })
    .await
    .unwrap();
    assert!(id.starts_with("sha256:"));
    for s in ["debootstrap", "archive", "import"] {
        assert!(
            stages.iter().any(|x| x == s),
            "stage {s} missing: {stages:?}"
        );
    }

    let layer = format!("slipway/lang-test:{suffix}");
    let mut log = Vec::new();
    images::build_language_layer(&rt, &base, &layer, &["jq"], |ev| {
        if let images::ProgressEvent::Log(l) = ev {
            log.push(l);
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log.join("\n")));

    let out = rt
        .run(
            &ContainerSpec::new(&layer)
                .name(unique("c"))
                .shell("cat /etc/debian_version; echo '{\"a\":1}' | jq .a"),
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = out.logs.stdout_str();
    assert!(stdout.starts_with("12."), "{stdout}");
    assert!(stdout.ends_with("1\n"), "{stdout}");

    images::remove_image(&rt, &layer, true).await.unwrap();
    images::remove_image(&rt, &base, true).await.unwrap();
}
