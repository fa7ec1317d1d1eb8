//! The registry served in-process on 127.0.0.1 and driven by the real Docker
//! Engine (pull, run, push) and by plain HTTP for the error paths.

use bollard::image::{CreateImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions};
use futures::StreamExt;
use slipway_registry::{import_from_docker, router, Digest, Limits, Registry};
use slipway_runtime::{images, ContainerSpec, Runtime};
use std::time::Duration;

async fn docker() -> Runtime {
    Runtime::connect()
        .await
        .unwrap_or_else(|e| panic!("these tests need a running Docker Engine (start dockerd): {e}"))
}

/// Serves `registry` on a free loopback port; returns `127.0.0.1:PORT`.
async fn serve(registry: Registry) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(registry)).await.unwrap();
    });
    addr.to_string()
}

fn test_limits() -> Limits {
    Limits {
        gc_grace: Duration::ZERO,
        ..Limits::default()
    }
}

async fn pull(rt: &Runtime, image: &str, tag: &str) -> Result<(), String> {
    let options = CreateImageOptions {
        from_image: image.to_owned(),
        tag: tag.to_owned(),
        ..Default::default()
    };
    let mut stream = rt.docker().create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn push(rt: &Runtime, image: &str, tag: &str) -> Result<(), String> {
    let options = PushImageOptions {
        tag: tag.to_owned(),
    };
    let mut stream = rt.docker().push_image(image, Some(options), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| e.to_string())?;
        if let Some(e) = info.error {
            return Err(e);
        }
    }
    Ok(())
}

async fn remove_local(rt: &Runtime, reference: &str) {
    let options = RemoveImageOptions {
        force: true,
        noprune: false,
    };
    let _ = rt
        .docker()
        .remove_image(reference, Some(options), None)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pulls_imported_images_and_pushes_new_ones() {
    let rt = docker().await;
    images::ensure_busybox(&rt).await.expect("busybox image");
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open_with(dir.path().join("registry"), test_limits()).unwrap();
    let host = serve(registry.clone()).await;

    // Import straight from the engine, then pull it back over HTTP and run it.
    let digest = import_from_docker(&registry, &rt, images::BUSYBOX_IMAGE, "test/busybox", "v1")
        .await
        .expect("import busybox");
    assert!(Digest::parse(&digest).is_ok(), "{digest}");
    assert_eq!(registry.tags("test/busybox").await.unwrap(), vec!["v1"]);
    let pulled = format!("{host}/test/busybox");
    let pulled_ref = format!("{pulled}:v1");
    remove_local(&rt, &pulled_ref).await;
    let outcome = async {
        pull(&rt, &pulled, "v1").await?;
        let out = rt
            .run(&ContainerSpec::new(&pulled_ref).cmd(["echo", "hello from the registry"]))
            .await
            .map_err(|e| e.to_string())?;
        if !out.status.success() || out.logs.stdout_str().trim() != "hello from the registry" {
            return Err(format!(
                "unexpected run: {:?} {}",
                out.status,
                out.logs.stdout_str()
            ));
        }

        // Push a locally tagged image, drop the local tag, pull it back.
        let other = format!("{host}/test/other");
        let other_ref = format!("{other}:v1");
        let tag = TagImageOptions {
            repo: other.clone(),
            tag: "v1".to_owned(),
        };
        rt.docker()
            .tag_image(images::BUSYBOX_IMAGE, Some(tag))
            .await
            .map_err(|e| e.to_string())?;
        let pushed = push(&rt, &other, "v1").await;
        remove_local(&rt, &other_ref).await;
        pushed?;
        pull(&rt, &other, "v1").await?;
        let found = images::image_exists(&rt, &other_ref)
            .await
            .map_err(|e| e.to_string())?;
        remove_local(&rt, &other_ref).await;
        if !found {
            return Err("pushed image did not come back".into());
        }
        Ok::<_, String>(())
    }
    .await;
    remove_local(&rt, &pulled_ref).await;
    outcome.expect("pull, run, push and pull back");
    assert_eq!(registry.tags("test/other").await.unwrap(), vec!["v1"]);
    let catalog: serde_json::Value = reqwest::get(format!("http://{host}/v2/_catalog"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog,
        serde_json::json!({"repositories": ["test/busybox", "test/other"]})
    );
}

/// Everything under `dir` that is a regular file (to check nothing was kept).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("not an OCI error body ({status}): {text:?}"));
    let code = body["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OCI error body: {body}"))
        .to_owned();
    (status, code)
}

#[tokio::test]
async fn bad_uploads_and_manifests_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let registry = Registry::open_with(root.clone(), test_limits()).unwrap();
    let host = serve(registry.clone()).await;
    let http = reqwest::Client::new();
    let wrong = Digest::of(b"something else");

    // Monolithic upload with the wrong digest.
    let res = http
        .post(format!(
            "http://{host}/v2/t/app/blobs/uploads/?digest={wrong}"
        ))
        .body("layer bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "DIGEST_INVALID".into()));

    // Chunked upload completed with the wrong digest.
    let res = http
        .post(format!("http://{host}/v2/t/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let res = http
        .patch(format!("http://{host}{location}"))
        .body("chunk one")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["range"], "0-8");
    let res = http
        .put(format!("http://{host}{location}?digest={wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "DIGEST_INVALID".into()));
    assert!(
        files_under(&root.join("blobs")).is_empty(),
        "a bad blob was stored"
    );
    assert!(
        files_under(&root.join("uploads")).is_empty(),
        "upload left behind"
    );

    // A good chunked upload works and is readable (also by range).
    let blob = b"config bytes".to_vec();
    let good = Digest::of(&blob);
    let res = http
        .post(format!("http://{host}/v2/t/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let res = http
        .put(format!("http://{host}{location}?digest={good}"))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()["docker-content-digest"],
        good.to_string().as_str()
    );
    let res = http
        .get(format!("http://{host}/v2/t/app/blobs/{good}"))
        .header("range", "bytes=7-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"bytes");
    // Another repository cannot read it by digest.
    let res = http
        .get(format!("http://{host}/v2/t/other/blobs/{good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (404, "BLOB_UNKNOWN".into()));

    // A manifest whose layer was never uploaded.
    let missing = Digest::of(b"never uploaded");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": blob.len(), "digest": good.to_string()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1, "digest": missing.to_string()}],
    });
    let res = http
        .put(format!("http://{host}/v2/t/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "MANIFEST_BLOB_UNKNOWN".into()));
    let res = http
        .get(format!("http://{host}/v2/t/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (404, "MANIFEST_UNKNOWN".into()));
    let res = http
        .put(format!("http://{host}/v2/t/app/manifests/v1"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "MANIFEST_INVALID".into()));

    // Names that could escape the directory, or break the grammar.
    for path in [
        "/v2/t/%2e%2e/x/tags/list",
        "/v2/t/../../x/tags/list",
        "/v2/T/app/tags/list",
        "/v2/t//app/tags/list",
        "/v2/t/tags/tags/list",
    ] {
        let res = http
            .get(format!("http://{host}{path}"))
            .send()
            .await
            .unwrap();
        // The client may normalise `..` away: then the path leaves /v2 or
        // names another (empty) repository; either way nothing is served.
        if res.status() == 404 {
            continue;
        }
        assert_eq!(
            error_code(res).await,
            (400, "NAME_INVALID".into()),
            "{path}"
        );
    }
    for name in ["..", "/etc", "a/../../b", "Upper/case", "a/tags"] {
        assert!(registry.tags(name).await.is_err(), "{name} accepted");
        assert!(
            registry.start_upload(name).await.is_err(),
            "{name} accepted"
        );
    }
    let res = http
        .put(format!("http://{host}/v2/t/app/manifests/..%2Fx"))
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "TAG_INVALID".into()));
    let res = http
        .patch(format!("http://{host}/v2/t/app/blobs/uploads/..%2F..%2Fx"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
}

/// Pushes a small image with a shared and a unique layer as `repo:tag`.
async fn push_image(registry: &Registry, repo: &str, tag: &str) -> Vec<Digest> {
    let mut digests = vec![];
    for content in [
        format!("config of {repo}:{tag}"),
        "shared layer".to_owned(),
        format!("unique layer of {repo}:{tag}"),
    ] {
        let d = Digest::of(content.as_bytes());
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(content))]);
        registry.put_blob_stream(repo, &d, body).await.unwrap();
        digests.push(d);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": digests[0].to_string()},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "size": 1, "digest": digests[1].to_string()},
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "size": 1, "digest": digests[2].to_string()},
        ],
    });
    let m = registry
        .put_manifest(repo, tag, manifest.to_string().as_bytes(), None)
        .await
        .unwrap();
    digests.push(m);
    digests
}

fn blob_exists(root: &std::path::Path, d: &Digest) -> bool {
    root.join("blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
        .exists()
}

#[tokio::test]
async fn retention_keeps_the_newest_tags_and_gc_frees_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let registry = Registry::open_with(root.clone(), test_limits()).unwrap();
    let mut pushed = vec![];
    for tag in ["v1", "v2", "v3", "v4"] {
        pushed.push(push_image(&registry, "alice/web", tag).await);
    }
    let other = push_image(&registry, "bob/api", "v1").await;

    let removed = registry.retain("alice/web", 2).await.unwrap();
    assert_eq!(removed, vec!["v2", "v1"]);
    assert_eq!(registry.tags("alice/web").await.unwrap(), vec!["v3", "v4"]);
    let report = registry.gc().await.unwrap();
    // v1 and v2 each lose their config, unique layer and manifest.
    assert_eq!(report.blobs_deleted, 6, "{report:?}");
    for old in &pushed[..2] {
        for d in [&old[0], &old[2], &old[3]] {
            assert!(!blob_exists(&root, d), "{d} survived gc");
        }
    }
    for d in pushed[2..].iter().chain([&other]).flatten() {
        assert!(blob_exists(&root, d), "{d} was collected");
    }
    assert!(registry.get_manifest("alice/web", "v4").await.is_ok());
    assert!(registry.get_manifest("alice/web", "v1").await.is_err());

    registry.delete_repository("bob/api").await.unwrap();
    assert!(registry.tags("bob/api").await.is_err());
    assert_eq!(registry.repositories().await.unwrap(), vec!["alice/web"]);
    registry.gc().await.unwrap();
    assert!(
        !blob_exists(&root, &other[2]),
        "bob's unique layer survived"
    );
    assert!(
        blob_exists(&root, &other[1]),
        "the shared layer was collected"
    );
}
