//! Node pull credentials end to end: a real etcd on loopback and a real
//! `slipway server` in cluster mode. A join answers a new `slpn_…`
//! credential (the previous one stops working); the registry accepts it as
//! Basic `<node>:<credential>` for pulls only — not for pushes, not for
//! listing repositories, not for another node's id. The same credential
//! fetches the secrets of cluster apps (`/api/v1/cluster/apps/{app}/secrets`,
//! its success path is in `cluster_deploy`); nothing else does.

mod support;

use serde_json::json;
use slipway_cluster::testing::EtcdCluster;
use support::*;

/// A registry request with Basic credentials; the status.
fn registry(server: &TestServer, method: &str, path: &str, user: &str, secret: &str) -> u16 {
    reqwest::blocking::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", server.url))
        .basic_auth(user, Some(secret))
        .send()
        .expect("registry request")
        .status()
        .as_u16()
}

#[test]
fn joins_issue_node_credentials_that_only_pull() {
    let etcd = EtcdCluster::start(1);
    let endpoints = etcd.endpoints().join(",");
    let prefix = format!("/pull-{}", std::process::id());
    let server = TestServer::start_with_env(&[
        ("SLIPWAY_CLUSTER_ETCD_ENDPOINTS", endpoints.as_str()),
        ("SLIPWAY_CLUSTER_PREFIX", prefix.as_str()),
        ("SLIPWAY_CLUSTER_NODE_ID", "server-1"),
    ]);
    let admin = server.setup_admin("admin");
    let (s, issued) = server.api(
        "POST",
        "/cluster/join-tokens",
        Some(&admin),
        Some(json!({})),
    );
    assert_eq!(s, 201, "{issued}");
    let join = issued["token"].as_str().unwrap().to_owned();

    let (s, first) = server.api("POST", "/cluster/join", Some(&join), Some(json!({})));
    assert_eq!(s, 200, "{first}");
    let node = first["node_id"].as_str().unwrap().to_owned();
    let old = first["credential"].as_str().unwrap().to_owned();
    assert!(old.starts_with("slpn_"), "{first}");
    // Joining again (same node id) replaces the credential.
    let (s, again) = server.api(
        "POST",
        "/cluster/join",
        Some(&join),
        Some(json!({"node_id": node})),
    );
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["node_id"], node.as_str());
    let cred = again["credential"].as_str().unwrap().to_owned();
    assert_ne!(cred, old);

    // Pulls (GET/HEAD) pass the guard: the ping, and a manifest that does
    // not exist (404 from the registry itself, not 401/403).
    assert_eq!(registry(&server, "GET", "/v2/", &node, &cred), 200);
    assert_eq!(
        registry(&server, "GET", "/v2/admin/web/manifests/v1", &node, &cred),
        404
    );
    assert_eq!(
        registry(&server, "HEAD", "/v2/bob/other/manifests/v1", &node, &cred),
        404
    );
    // Everything else is refused.
    assert_eq!(registry(&server, "GET", "/v2/", &node, &old), 401);
    assert_eq!(registry(&server, "GET", "/v2/", "node-other", &cred), 401);
    assert_eq!(registry(&server, "GET", "/v2/_catalog", &node, &cred), 403);
    assert_eq!(
        registry(
            &server,
            "POST",
            "/v2/admin/web/blobs/uploads/",
            &node,
            &cred
        ),
        403
    );
    assert_eq!(
        registry(
            &server,
            "DELETE",
            "/v2/admin/web/manifests/v1",
            &node,
            &cred
        ),
        403
    );
    // Not an API token either.
    let (s, _) = server.api("GET", "/nodes", Some(&cred), None);
    assert_eq!(s, 401);

    // App secrets: only with a current node credential, only for a
    // cluster app this server deploys.
    let secrets = "/api/v1/cluster/apps/web/secrets";
    assert_eq!(registry(&server, "GET", secrets, &node, &cred), 404);
    assert_eq!(registry(&server, "GET", secrets, &node, &old), 401);
    assert_eq!(registry(&server, "GET", secrets, "node-other", &cred), 401);
    assert_eq!(registry(&server, "GET", secrets, "admin", &admin), 401);
    let (s, body) = server.api("GET", "/cluster/apps/web/secrets", Some(&admin), None);
    assert_eq!(s, 401, "an access token is not a node credential: {body}");
    assert_eq!(error_code(&body), "unauthorized");
}
