//! End to end: accounts and tokens over the API, then real `git push` and
//! `git clone` against a real server.

mod support;

use serde_json::json;
use support::*;

#[test]
fn push_clone_round_trip_records_push_events() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    let (status, body) = server.api("POST", "/repos", Some(&admin), Some(json!({"name": "web"})));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["clone_path"], "/git/alice/web.git");

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_repo(&src, 5);
    let url = server.git_url("alice", "web", Some(("alice", &admin)));
    git_ok(&src, &["push", "-q", &url, "main", "feature"]);

    // Clone back: same commits, same tree.
    let clone = work.path().join("clone");
    git_ok(work.path(), &["clone", "-q", &url, clone.to_str().unwrap()]);
    for branch in ["main", "feature"] {
        assert_eq!(
            git_ok(&src, &["rev-parse", branch]),
            git_ok(&clone, &["rev-parse", &format!("origin/{branch}")]),
            "{branch} differs after clone"
        );
    }
    assert_eq!(
        git_ok(&src, &["ls-tree", "-r", "main"]),
        git_ok(&clone, &["ls-tree", "-r", "HEAD"])
    );
    assert_eq!(git_ok(&clone, &["rev-list", "--count", "HEAD"]), "5");

    // One event per ref, recorded before the push returned.
    let (status, events) = server.api("GET", "/repos/alice/web/events", Some(&admin), None);
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let main_sha = git_ok(&src, &["rev-parse", "main"]);
    let main_event = events
        .iter()
        .find(|e| e["ref_name"] == "refs/heads/main")
        .expect("main event");
    assert_eq!(main_event["old_sha"], "0".repeat(40));
    assert_eq!(main_event["new_sha"], main_sha);
    assert_eq!(main_event["pusher"], "alice");
    assert_eq!(main_event["repo"], "alice/web");

    // An update and a branch deletion are recorded with old → new.
    std::fs::write(src.join("more.txt"), "more\n").unwrap();
    git_ok(&src, &["add", "-A"]);
    git_ok(&src, &["commit", "-q", "-m", "more"]);
    git_ok(&src, &["push", "-q", &url, "main", ":feature"]);
    let last = events
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .max()
        .unwrap();
    let (_, newer) = server.api(
        "GET",
        &format!("/repos/alice/web/events?after={last}"),
        Some(&admin),
        None,
    );
    let newer = newer.as_array().unwrap();
    assert_eq!(newer.len(), 2, "{newer:?}");
    let update = newer
        .iter()
        .find(|e| e["ref_name"] == "refs/heads/main")
        .unwrap();
    assert_eq!(update["old_sha"], main_sha);
    assert_eq!(update["new_sha"], git_ok(&src, &["rev-parse", "main"]));
    let deletion = newer
        .iter()
        .find(|e| e["ref_name"] == "refs/heads/feature")
        .unwrap();
    assert_eq!(deletion["new_sha"], "0".repeat(40));

    // Shallow clone and fetch work too.
    let shallow = work.path().join("shallow");
    git_ok(
        work.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &url,
            shallow.to_str().unwrap(),
        ],
    );
    assert_eq!(git_ok(&shallow, &["rev-list", "--count", "HEAD"]), "1");
    git_ok(&clone, &["fetch", "-q", "origin"]);
    assert_eq!(
        git_ok(&clone, &["rev-parse", "origin/main"]),
        git_ok(&src, &["rev-parse", "main"])
    );
}

#[test]
fn public_repositories_clone_anonymously_private_ones_prompt() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "open"})),
    );
    server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "closed", "private": true})),
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_repo(&src, 1);
    for name in ["open", "closed"] {
        git_ok(
            &src,
            &[
                "push",
                "-q",
                &server.git_url("alice", name, Some(("alice", &admin))),
                "main",
            ],
        );
    }
    git_ok(
        work.path(),
        &[
            "clone",
            "-q",
            &server.git_url("alice", "open", None),
            "anon-open",
        ],
    );
    let out = git(
        work.path(),
        &[
            "clone",
            "-q",
            &server.git_url("alice", "closed", None),
            "anon-closed",
        ],
    );
    assert!(
        !out.status.success(),
        "anonymous clone of a private repository must fail"
    );

    // The server answers 401 with a challenge, so a git client prompts.
    let res = reqwest::blocking::get(format!(
        "{}/git/alice/closed.git/info/refs?service=git-upload-pack",
        server.url
    ))
    .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(res
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let body: serde_json::Value = res.json().unwrap();
    assert_eq!(error_code(&body), "unauthorized");

    // Anonymous push to a public repository is refused the same way.
    let out = git(
        &src,
        &[
            "push",
            "-q",
            &server.git_url("alice", "open", None),
            "main:other",
        ],
    );
    assert!(!out.status.success());
    let (_, events) = server.api("GET", "/repos/alice/open/events", Some(&admin), None);
    assert_eq!(
        events.as_array().unwrap().len(),
        1,
        "the refused push recorded nothing"
    );
}

#[test]
fn restart_keeps_users_tokens_repos_and_history() {
    let mut server = TestServer::start();
    let admin = server.setup_admin("alice");
    let bob = server.create_user(&admin, "bob");
    server.api(
        "POST",
        "/repos",
        Some(&bob),
        Some(json!({"name": "keep", "private": true})),
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_repo(&src, 3);
    git_ok(
        &src,
        &[
            "push",
            "-q",
            &server.git_url("bob", "keep", Some(("bob", &bob))),
            "main",
        ],
    );

    server.restart();

    let (status, me) = server.api("GET", "/user", Some(&bob), None);
    assert_eq!(status, 200, "token survives restart: {me}");
    assert_eq!(me["username"], "bob");
    let (_, repos) = server.api("GET", "/repos", Some(&bob), None);
    assert_eq!(repos[0]["full_name"], "bob/keep");
    let (_, events) = server.api("GET", "/repos/bob/keep/events", Some(&bob), None);
    assert_eq!(events.as_array().unwrap().len(), 1);
    let clone = work.path().join("clone");
    git_ok(
        work.path(),
        &[
            "clone",
            "-q",
            &server.git_url("bob", "keep", Some(("bob", &bob))),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git_ok(&clone, &["rev-parse", "HEAD"]),
        git_ok(&src, &["rev-parse", "main"])
    );
    // No new setup token after restart: the server is set up.
    assert!(!server.data_dir().join("setup-token").exists());
    let (status, _) = server.api(
        "POST",
        "/setup",
        None,
        Some(json!({"setup_token": "x", "username": "eve", "password": "eve-password"})),
    );
    assert_eq!(status, 409);
}

#[test]
fn head_follows_the_first_branch_pushed_and_can_be_changed() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    let (status, body) = server.api("POST", "/repos", Some(&admin), Some(json!({"name": "old"})));
    assert_eq!(status, 201, "{body}");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    git_ok(&src, &["init", "-q", "-b", "master"]);
    std::fs::write(src.join("a.txt"), "a\n").unwrap();
    git_ok(&src, &["add", "-A"]);
    git_ok(&src, &["commit", "-q", "-m", "on master"]);
    let url = server.git_url("alice", "old", Some(("alice", &admin)));
    let push = git(&src, &["push", &url, "master"]);
    assert!(push.status.success());
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(
        said.contains("remote: Slipway: default branch is now master"),
        "{said}"
    );

    // A plain clone checks out master (before: "remote HEAD refers to nonexistent ref").
    let clone = work.path().join("clone");
    let out = git(work.path(), &["clone", &url, clone.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("nonexistent ref"),
        "{err}"
    );
    assert_eq!(
        git_ok(&clone, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "master"
    );
    let (_, repo) = server.api("GET", "/repos/alice/old", Some(&admin), None);
    assert_eq!(repo["default_branch"], "master");

    // A later branch does not move HEAD; PATCH does, to existing branches only.
    git_ok(&src, &["checkout", "-q", "-b", "main"]);
    git_ok(&src, &["push", "-q", &url, "main"]);
    let (_, repo) = server.api("GET", "/repos/alice/old", Some(&admin), None);
    assert_eq!(repo["default_branch"], "master");
    let (status, repo) = server.api(
        "PATCH",
        "/repos/alice/old",
        Some(&admin),
        Some(json!({"default_branch": "main"})),
    );
    assert_eq!(
        (status, repo["default_branch"].as_str()),
        (200, Some("main")),
        "{repo}"
    );
    let (status, body) = server.api(
        "PATCH",
        "/repos/alice/old",
        Some(&admin),
        Some(json!({"default_branch": "nope", "description": "unchanged"})),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "invalid"),
        "{body}"
    );
    let (_, repo) = server.api("GET", "/repos/alice/old", Some(&admin), None);
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["description"], "", "a refused change changes nothing");
    let (status, body) = server.api(
        "PATCH",
        "/repos/alice/old",
        Some(&admin),
        Some(json!({"default_branch": "--upload-pack=x"})),
    );
    assert_eq!(status, 422, "{body}");
}

#[test]
fn repository_names_are_unique_regardless_of_case() {
    let server = TestServer::start();
    let admin = server.setup_admin("alice");
    let (status, body) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(json!({"name": "A-Upper"})),
    );
    assert_eq!(status, 201, "{body}");
    for twin in ["a-upper", "A-UPPER", "a-Upper"] {
        let (status, body) =
            server.api("POST", "/repos", Some(&admin), Some(json!({"name": twin})));
        assert_eq!(
            (status, error_code(&body).as_str()),
            (409, "conflict"),
            "{twin}: {body}"
        );
    }
    // Lookups ignore case too, and answer with the name as created.
    let (status, body) = server.api("GET", "/repos/alice/a-upper", Some(&admin), None);
    assert_eq!(
        (status, body["name"].as_str()),
        (200, Some("A-Upper")),
        "{body}"
    );
    let (_, list) = server.api("GET", "/repos", Some(&admin), None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
