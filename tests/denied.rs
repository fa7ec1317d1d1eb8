//! Every refused request gets the documented status and JSON error, and
//! leaves the data as it was.

mod support;

use serde_json::json;
use support::*;

fn refs(server: &TestServer, owner: &str, name: &str) -> String {
    let repo = server
        .data_dir()
        .join("repos")
        .join(owner)
        .join(format!("{name}.git"));
    git_ok(
        &repo,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

#[test]
fn wrong_or_revoked_tokens_are_refused() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    for bad in ["slp_wrong", "", "x".repeat(300).as_str()] {
        let (status, body) = server.api("GET", "/user", Some(bad), None);
        assert_eq!(status, 401, "token {bad:?}: {body}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    let (status, body) = server.api("GET", "/user", None, None);
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));

    // A revoked token stops working at once.
    let (_, issued) = server.api(
        "POST",
        "/user/tokens",
        Some(&admin),
        Some(json!({"name": "temp"})),
    );
    let temp = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(server.api("GET", "/user", Some(&temp), None).0, 200);
    let id = issued["info"]["id"].as_i64().unwrap();
    assert_eq!(
        server
            .api("DELETE", &format!("/user/tokens/{id}"), Some(&admin), None)
            .0,
        204
    );
    assert_eq!(server.api("GET", "/user", Some(&temp), None).0, 401);

    // git with a wrong token: refused, nothing written.
    server.api("POST", "/repos", Some(&admin), Some(json!({"name": "r"})));
    let work = tempfile::tempdir().unwrap();
    make_repo(work.path(), 1);
    let out = git(
        work.path(),
        &[
            "push",
            "-q",
            &server.git_url("alice", "r", Some(("alice", "slp_wrong"))),
            "main",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(refs(&server, "alice", "r"), "");

    // Wrong password at login.
    let (status, body) = server.api(
        "POST",
        "/auth/login",
        None,
        Some(json!({"username": "alice", "password": "nope-nope"})),
    );
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
}

#[test]
fn private_repositories_and_access_levels() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    let bob = server.create_user(&admin, "bob");
    let carol = server.create_user(&admin, "carol");
    server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "secret", "private": true})),
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_repo(&src, 2);
    git_ok(
        &src,
        &[
            "push",
            "-q",
            &server.git_url("alice", "secret", Some(("alice", &admin))),
            "main",
        ],
    );
    let before = refs(&server, "alice", "secret");

    // Bob cannot see it: 404 on the API and in git, and it is not listed.
    let (status, body) = server.api("GET", "/repos/alice/secret", Some(&bob), None);
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (_, list) = server.api("GET", "/repos", Some(&bob), None);
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    let out = git(
        work.path(),
        &[
            "clone",
            "-q",
            &server.git_url("alice", "secret", Some(("bob", &bob))),
            "b",
        ],
    );
    assert!(!out.status.success());

    // Read-only collaborator: can clone, cannot push (403).
    let (status, _) = server.api(
        "PUT",
        "/repos/alice/secret/collaborators/bob",
        Some(&admin),
        Some(json!({"access": "read"})),
    );
    assert_eq!(status, 204);
    git_ok(
        work.path(),
        &[
            "clone",
            "-q",
            &server.git_url("alice", "secret", Some(("bob", &bob))),
            "bob-clone",
        ],
    );
    let bob_clone = work.path().join("bob-clone");
    std::fs::write(bob_clone.join("x.txt"), "x").unwrap();
    git_ok(&bob_clone, &["add", "-A"]);
    git_ok(&bob_clone, &["commit", "-q", "-m", "x"]);
    let out = git(&bob_clone, &["push", "-q", "origin", "main"]);
    assert!(!out.status.success(), "read-only push must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(refs(&server, "alice", "secret"), before);
    let res = reqwest::blocking::Client::new()
        .get(format!(
            "{}/git/alice/secret.git/info/refs?service=git-receive-pack",
            server.url
        ))
        .basic_auth("bob", Some(&bob))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    // Bob cannot manage it either.
    let (status, body) = server.api("DELETE", "/repos/alice/secret", Some(&bob), None);
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    let (status, _) = server.api(
        "PUT",
        "/repos/alice/secret/collaborators/carol",
        Some(&bob),
        Some(json!({"access": "admin"})),
    );
    assert_eq!(status, 403);

    // Write collaborator: push works.
    server.api(
        "PUT",
        "/repos/alice/secret/collaborators/bob",
        Some(&admin),
        Some(json!({"access": "write"})),
    );
    git_ok(&bob_clone, &["push", "-q", "origin", "main"]);
    assert_ne!(refs(&server, "alice", "secret"), before);

    // Carol is no admin: user management is refused.
    let (status, _) = server.api("GET", "/users", Some(&carol), None);
    assert_eq!(status, 403);
    // A read-only token cannot create repositories or mint stronger tokens.
    let (_, ro) = server.api(
        "POST",
        "/user/tokens",
        Some(&carol),
        Some(json!({"name": "ro", "scopes": ["read"]})),
    );
    let ro = ro["token"].as_str().unwrap().to_owned();
    let (status, body) = server.api("POST", "/repos", Some(&ro), Some(json!({"name": "nope"})));
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    let (status, _) = server.api(
        "POST",
        "/user/tokens",
        Some(&carol),
        Some(json!({"name": "x", "scopes": ["admin"]})),
    );
    assert_eq!(status, 403);
}

#[test]
fn missing_repositories_and_traversal_attempts() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "real"})),
    );
    let work = tempfile::tempdir().unwrap();
    make_repo(work.path(), 1);

    // Push to a repository that does not exist.
    let out = git(
        work.path(),
        &[
            "push",
            "-q",
            &server.git_url("alice", "ghost", Some(("alice", &admin))),
            "main",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!server.data_dir().join("repos/alice/ghost.git").exists());

    // Names that try to leave the namespace are refused at creation ...
    for bad in [
        "../x",
        "a/../../b",
        "..",
        ".git",
        "x.git",
        "a b",
        "-rf",
        &"n".repeat(101),
    ] {
        let (status, body) = server.api("POST", "/repos", Some(&admin), Some(json!({"name": bad})));
        assert_eq!(
            (status, error_code(&body).as_str()),
            (422, "invalid"),
            "name {bad:?}"
        );
    }
    let (status, _) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "x", "owner": "../alice"})),
    );
    assert!(
        status == 404 || status == 422,
        "owner traversal gave {status}"
    );
    // ... and in URLs, encoded or not.
    let client = reqwest::blocking::Client::new();
    for path in [
        "/git/alice/..%2F..%2Freal.git/info/refs?service=git-upload-pack",
        "/git/%2e%2e/real.git/info/refs?service=git-upload-pack",
        "/git/alice/%2e%2e.git/info/refs?service=git-upload-pack",
        "/api/v1/repos/alice/..%2Freal",
        "/api/v1/repos/%2e%2e/real",
    ] {
        let res = client
            .get(format!("{}{path}", server.url))
            .bearer_auth(&admin)
            .basic_auth("alice", Some(&admin))
            .send()
            .unwrap();
        let status = res.status().as_u16();
        assert!(status == 404 || status == 400, "{path} gave {status}");
    }
    // Only smart HTTP is served, not raw files of the repository.
    let res = client
        .get(format!("{}/git/alice/real.git/HEAD", server.url))
        .basic_auth("alice", Some(&admin))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let res = client
        .get(format!("{}/git/alice/real.git/config", server.url))
        .basic_auth("alice", Some(&admin))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);

    // Duplicate creation is a conflict and keeps the original.
    let (status, body) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "real", "description": "dup"})),
    );
    assert_eq!((status, error_code(&body).as_str()), (409, "conflict"));
}

#[test]
fn oversized_bodies_are_refused_without_damage() {
    let server = TestServer::start_with_env(&[("SLIPWAY_MAX_PUSH_BYTES", "300000")]);
    let admin = server.setup_admin("alice");
    server.api("POST", "/repos", Some(&admin), Some(json!({"name": "big"})));

    // A JSON body over the API limit (1 MiB): 413 with the JSON error shape.
    let huge = "d".repeat(2 * 1024 * 1024);
    let (status, body) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "x", "description": huge})),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "payload_too_large")
    );
    // Malformed JSON and unknown fields: 400/422 with the error shape.
    let res = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/repos", server.url))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let (status, body) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "y", "colour": "red"})),
    );
    assert_eq!((status, error_code(&body).as_str()), (422, "invalid"));

    // A push over the push limit fails and changes nothing.
    let work = tempfile::tempdir().unwrap();
    make_repo(work.path(), 1);
    let url = server.git_url("alice", "big", Some(("alice", &admin)));
    git_ok(work.path(), &["push", "-q", &url, "main"]);
    let before = refs(&server, "alice", "big");
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let noise: Vec<u8> = (0..2_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(work.path().join("noise.bin"), noise).unwrap();
    git_ok(work.path(), &["add", "-A"]);
    git_ok(work.path(), &["commit", "-q", "-m", "noise"]);
    let out = git(work.path(), &["push", "-q", &url, "main"]);
    assert!(!out.status.success(), "oversized push must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("413"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(refs(&server, "alice", "big"), before);
    let (_, events) = server.api("GET", "/repos/alice/big/events", Some(&admin), None);
    assert_eq!(events.as_array().unwrap().len(), 1);
    // The server still serves normally afterwards.
    git_ok(work.path(), &["clone", "-q", &url, "after"]);
}
