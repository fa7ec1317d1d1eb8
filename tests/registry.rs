//! The image registry under `/v2` of the real server: token authentication
//! with Docker's Basic challenge, owner-only access, scopes, and a real
//! Docker Engine pushing and pulling through it.

mod support;

use bollard::auth::DockerCredentials;
use bollard::image::{CreateImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions};
use futures::StreamExt;
use serde_json::{json, Value};
use slipway_runtime::{images, Runtime};
use support::TestServer;

fn credentials(host: &str, user: &str, token: &str) -> DockerCredentials {
    DockerCredentials {
        username: Some(user.to_owned()),
        password: Some(token.to_owned()),
        serveraddress: Some(host.to_owned()),
        ..Default::default()
    }
}

async fn push(rt: &Runtime, image: &str, cred: DockerCredentials) -> Result<(), String> {
    let options = PushImageOptions { tag: "v1" };
    let mut stream = rt.docker().push_image(image, Some(options), Some(cred));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| e.to_string())?;
        if let Some(e) = info.error {
            return Err(e);
        }
    }
    Ok(())
}

async fn pull(rt: &Runtime, image: &str, cred: DockerCredentials) -> Result<(), String> {
    let options = CreateImageOptions {
        from_image: image,
        tag: "v1",
        ..Default::default()
    };
    let mut stream = rt.docker().create_image(Some(options), None, Some(cred));
    while let Some(item) = stream.next().await {
        item.map_err(|e| e.to_string())?;
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

/// Sends a request to the registry with Basic credentials (if any).
fn registry_call(
    server: &TestServer,
    method: &str,
    path: &str,
    cred: Option<(&str, &str)>,
) -> reqwest::blocking::Response {
    let client = reqwest::blocking::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{}{path}", server.url));
    if let Some((user, token)) = cred {
        req = req.basic_auth(user, Some(token));
    }
    req.send().expect("registry request")
}

fn oci_code(res: reqwest::blocking::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().expect("OCI error body");
    let code = body["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OCI error body: {body}"))
        .to_owned();
    (status, code)
}

#[test]
fn registry_needs_tokens_and_keeps_repositories_to_their_owners() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio
        .block_on(Runtime::connect())
        .unwrap_or_else(|e| panic!("this test needs a running Docker Engine (start dockerd): {e}"));
    tokio
        .block_on(images::ensure_busybox(&rt))
        .expect("busybox image");
    let server = TestServer::start();
    let admin = server.setup_admin("admin");
    let alice = server.create_user(&admin, "alice");
    let bob = server.create_user(&admin, "bob");
    let host = server.url.strip_prefix("http://").unwrap().to_owned();

    // Anonymous: 401 with the challenge docker answers with credentials.
    let res = registry_call(&server, "GET", "/v2/", None);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Basic realm=\"slipway-registry\""
    );
    assert_eq!(oci_code(res), (401, "UNAUTHORIZED".into()));
    let res = registry_call(&server, "GET", "/v2/", Some(("alice", "slp_not-a-token")));
    assert_eq!(oci_code(res), (401, "UNAUTHORIZED".into()));
    let res = registry_call(&server, "GET", "/v2/", Some(("alice", &alice)));
    assert_eq!(res.status(), 200);

    // Alice pushes to alice/x with her token, and pulls it back.
    let image = format!("{host}/alice/x");
    let reference = format!("{image}:v1");
    let outcome = tokio.block_on(async {
        let tag = TagImageOptions {
            repo: image.as_str(),
            tag: "v1",
        };
        rt.docker()
            .tag_image(images::BUSYBOX_IMAGE, Some(tag))
            .await
            .map_err(|e| e.to_string())?;
        let pushed = push(&rt, &image, credentials(&host, "alice", &alice)).await;
        remove_local(&rt, &reference).await;
        pushed?;
        pull(&rt, &image, credentials(&host, "alice", &alice)).await?;
        let found = images::image_exists(&rt, &reference)
            .await
            .map_err(|e| e.to_string())?;
        remove_local(&rt, &reference).await;
        if !found {
            return Err("the pushed image did not come back".to_owned());
        }
        // Bob may not pull it.
        match pull(&rt, &image, credentials(&host, "bob", &bob)).await {
            Ok(()) => {
                remove_local(&rt, &reference).await;
                Err("bob pulled alice's image".to_owned())
            }
            Err(_) => Ok(()),
        }
    });
    outcome.expect("push and pull through the server");
    let res = registry_call(
        &server,
        "GET",
        "/v2/alice/x/manifests/v1",
        Some(("bob", &bob)),
    );
    assert_eq!(oci_code(res), (403, "DENIED".into()));
    let res = registry_call(
        &server,
        "POST",
        "/v2/alice/x/blobs/uploads/",
        Some(("bob", &bob)),
    );
    assert_eq!(oci_code(res), (403, "DENIED".into()));
    let res = registry_call(&server, "GET", "/v2/x/tags/list", Some(("bob", &bob)));
    assert_eq!(oci_code(res), (403, "DENIED".into()));

    // The catalog shows only what the caller may read; admins see all.
    let catalog = |who: &str, token: &str| -> Value {
        registry_call(&server, "GET", "/v2/_catalog", Some((who, token)))
            .json()
            .unwrap()
    };
    assert_eq!(catalog("bob", &bob), json!({"repositories": []}));
    assert_eq!(
        catalog("alice", &alice),
        json!({"repositories": ["alice/x"]})
    );
    assert_eq!(
        catalog("admin", &admin),
        json!({"repositories": ["alice/x"]})
    );

    // A read-only token pulls but cannot push.
    let (status, body) = server.api(
        "POST",
        "/user/tokens",
        Some(&alice),
        Some(json!({"name": "pull-only", "scopes": ["read"]})),
    );
    assert_eq!(status, 201, "{body}");
    let read_only = body["token"].as_str().unwrap().to_owned();
    let res = registry_call(
        &server,
        "GET",
        "/v2/alice/x/manifests/v1",
        Some(("alice", &read_only)),
    );
    assert_eq!(res.status(), 200);
    let res = registry_call(
        &server,
        "POST",
        "/v2/alice/x/blobs/uploads/",
        Some(("alice", &read_only)),
    );
    assert_eq!(oci_code(res), (403, "DENIED".into()));
    let other = format!("{host}/alice/y");
    let refused = tokio.block_on(async {
        let tag = TagImageOptions {
            repo: other.as_str(),
            tag: "v1",
        };
        rt.docker()
            .tag_image(images::BUSYBOX_IMAGE, Some(tag))
            .await
            .expect("tag image");
        let result = push(&rt, &other, credentials(&host, "alice", &read_only)).await;
        remove_local(&rt, &format!("{other}:v1")).await;
        result
    });
    assert!(refused.is_err(), "a read-only token pushed an image");
    let res = registry_call(
        &server,
        "GET",
        "/v2/alice/y/tags/list",
        Some(("alice", &alice)),
    );
    assert_eq!(oci_code(res), (404, "NAME_UNKNOWN".into()));
}
