//! Repository browsing end to end: a real server, a real `git push` of a
//! repository with a few commits, two branches, nested folders, a symlink, a
//! binary file and a file over the inline limit; then the REST routes for
//! branches, history (paged), one commit, directories and files (JSON and
//! raw), the refusal of refs and paths that could become options or escape
//! the tree, private repositories hidden from outsiders, and empty ones.

mod support;

use serde_json::{json, Value};
use support::*;

/// Size of `big.txt`: over the 1 MiB shown inline.
const BIG: usize = 1024 * 1024 + 4096;

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `?k=v&…`, encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// alice's public `alice/demo`: five commits on main (the second adds the
/// binary, HTML and nested files, the third the big file and a symlink), and
/// `feature` one commit ahead. Returns main's shas, oldest first.
fn push_demo(server: &TestServer, token: &str) -> Vec<String> {
    let (s, b) = server.api("POST", "/repos", Some(token), Some(json!({"name": "demo"})));
    assert_eq!(s, 201, "{b}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo");
    std::fs::create_dir_all(dir.join("src/lib/deep")).unwrap();
    git_ok(&dir, &["init", "-q", "-b", "main"]);
    let commit = |msg: &str| {
        git_ok(&dir, &["add", "-A"]);
        git_ok(&dir, &["commit", "-q", "-m", msg]);
        git_ok(&dir, &["rev-parse", "HEAD"])
    };
    let mut shas = Vec::new();
    std::fs::write(dir.join("README.md"), "# Demo\n").unwrap();
    shas.push(commit("first: readme"));
    std::fs::write(dir.join("src/lib/deep/nested.txt"), "deep inside\n").unwrap();
    std::fs::write(dir.join("image.bin"), [0u8, 1, 2, 255, 0, 7]).unwrap();
    std::fs::write(
        dir.join("page.html"),
        "<html><script>alert(document.cookie)</script></html>\n",
    )
    .unwrap();
    shas.push(commit("second: files\n\nwith a body paragraph"));
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    std::fs::write(dir.join("big.txt"), line.repeat(BIG / line.len())).unwrap();
    std::os::unix::fs::symlink("README.md", dir.join("link")).unwrap();
    shas.push(commit("third: big file"));
    for n in 4..=5 {
        std::fs::write(dir.join("README.md"), format!("# Demo\n\nrevision {n}\n")).unwrap();
        shas.push(commit(&format!("commit {n}")));
    }
    git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("feature.txt"), "only on feature\n").unwrap();
    commit("feature work");
    let url = server.git_url("alice", "demo", Some(("alice", token)));
    git_ok(&dir, &["push", "-q", &url, "main", "feature"]);
    shas
}

fn subjects(page: &Value) -> Vec<String> {
    page["commits"]
        .as_array()
        .unwrap_or_else(|| panic!("no commits in {page}"))
        .iter()
        .map(|c| c["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn branches_history_and_one_commit() {
    let server = TestServer::start();
    let token = server.setup_admin("alice");
    let shas = push_demo(&server, &token);
    let get = |path: &str| {
        let (s, b) = server.api(
            "GET",
            &format!("/repos/alice/demo{path}"),
            Some(&token),
            None,
        );
        assert_eq!(s, 200, "GET {path}: {b}");
        b
    };

    let b = get("/branches");
    assert_eq!(b["default_branch"], "main", "{b}");
    let branches = b["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 2, "{b}");
    assert_eq!(branches[0]["name"], "main");
    assert_eq!(branches[0]["default"], true);
    assert_eq!(branches[0]["sha"], shas[4].as_str());
    assert_eq!(branches[0]["summary"], "commit 5");
    assert_eq!(branches[1]["name"], "feature");
    assert_eq!(branches[1]["default"], false);
    assert_eq!(branches[1]["summary"], "feature work");
    assert!(branches[1]["time"].as_str().unwrap().contains('T'));

    // Pages of two, by cursor and by offset.
    let page = get(&format!("/commits{}", query(&[("limit", "2")])));
    assert_eq!(page["ref"], "main");
    assert_eq!(page["commit"], shas[4].as_str());
    assert_eq!(subjects(&page), ["commit 5", "commit 4"]);
    assert_eq!(page["has_more"], true);
    let c = &page["commits"][0];
    assert_eq!(c["sha"], shas[4].as_str());
    assert_eq!(c["parents"], json!([shas[3]]));
    assert_eq!(c["author"], "Test");
    assert_eq!(c["email"], "test@example.com");
    assert!(c["time"].as_str().unwrap().starts_with("20"), "{c}");
    let last = page["commits"][1]["sha"].as_str().unwrap();
    let next = get(&format!(
        "/commits{}",
        query(&[("limit", "2"), ("after", last)])
    ));
    assert_eq!(subjects(&next), ["third: big file", "second: files"]);
    assert_eq!(next["has_more"], true);
    let tail = get(&format!(
        "/commits{}",
        query(&[("limit", "2"), ("skip", "4")])
    ));
    assert_eq!(subjects(&tail), ["first: readme"]);
    assert_eq!(tail["has_more"], false);
    assert_eq!(tail["commits"][0]["parents"], json!([]));
    let all = get(&format!("/commits{}", query(&[("limit", "1000")])));
    assert_eq!(subjects(&all).len(), 5, "limit is clamped, not refused");
    // By path and by branch.
    let src = get(&format!("/commits{}", query(&[("path", "src/lib")])));
    assert_eq!(subjects(&src), ["second: files"]);
    let readme = get(&format!("/commits{}", query(&[("path", "README.md")])));
    assert_eq!(subjects(&readme).len(), 3);
    let feature = get(&format!(
        "/commits{}",
        query(&[("ref", "feature"), ("limit", "1")])
    ));
    assert_eq!(subjects(&feature), ["feature work"]);
    let by_sha = get(&format!("/commits{}", query(&[("ref", &shas[1][..10])])));
    assert_eq!(subjects(&by_sha), ["second: files", "first: readme"]);

    // One commit: message and changed files against its parent.
    let d = get(&format!("/commits/{}", shas[1]));
    assert_eq!(d["subject"], "second: files");
    assert_eq!(d["message"], "second: files\n\nwith a body paragraph");
    assert_eq!(d["parents"], json!([shas[0]]));
    let files = d["files"].as_array().unwrap();
    let paths: Vec<_> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["image.bin", "page.html", "src/lib/deep/nested.txt"],
        "{d}"
    );
    assert!(files.iter().all(|f| f["status"] == "added"), "{d}");
    assert_eq!(files[0]["binary"], true);
    assert_eq!(files[0]["additions"], Value::Null);
    assert_eq!(files[2]["additions"], 1);
    assert_eq!(
        d["stats"],
        json!({"files": 3, "additions": 2, "deletions": 0})
    );
    assert_eq!(d["files_truncated"], false);
    let short = get(&format!("/commits/{}", &shas[4][..8]));
    assert_eq!(short["sha"], shas[4].as_str());
    assert_eq!(short["files"][0]["status"], "modified");
    assert_eq!(short["stats"]["deletions"], 1);
    let root = get(&format!("/commits/{}", shas[0]));
    assert_eq!(
        root["files"][0]["path"], "README.md",
        "a root commit lists its files"
    );

    for (path, status) in [
        ("/commits/0000000000000000000000000000000000000000", 404),
        ("/commits/nope", 404),
        (&format!("/commits{}", query(&[("ref", "nope")])), 404),
        (&format!("/commits{}", query(&[("after", "feature")])), 422),
        (
            &format!("/commits{}", query(&[("after", &"0".repeat(40))])),
            404,
        ),
        (&format!("/commits{}", query(&[("limit", "many")])), 422),
        (&format!("/commits{}", query(&[("skip", "-1")])), 422),
    ] {
        let (s, b) = server.api(
            "GET",
            &format!("/repos/alice/demo{path}"),
            Some(&token),
            None,
        );
        assert_eq!(s, status, "GET {path}: {b}");
        error_code(&b);
    }
}

#[test]
fn directories_and_files_as_json_and_raw() {
    let server = TestServer::start();
    let token = server.setup_admin("alice");
    push_demo(&server, &token);
    let get = |path: &str| {
        let (s, b) = server.api(
            "GET",
            &format!("/repos/alice/demo{path}"),
            Some(&token),
            None,
        );
        assert_eq!(s, 200, "GET {path}: {b}");
        b
    };

    let root = get("/tree");
    assert_eq!(root["ref"], "main");
    assert_eq!(root["path"], "");
    let entries = root["entries"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("src", "dir"),
            ("README.md", "file"),
            ("big.txt", "file"),
            ("image.bin", "file"),
            ("link", "symlink"),
            ("page.html", "file"),
        ]
    );
    assert_eq!(entries[0]["size"], Value::Null);
    assert_eq!(entries[3]["size"], 6);
    assert_eq!(entries[3]["mode"], "100644");
    assert_eq!(entries[4]["mode"], "120000");
    let lib = get(&format!("/tree{}", query(&[("path", "src/lib")])));
    assert_eq!(lib["entries"][0]["name"], "deep");
    assert_eq!(lib["entries"][0]["path"], "src/lib/deep");
    let deep = get(&format!("/tree{}", query(&[("path", "src/lib/deep/")])));
    assert_eq!(deep["path"], "src/lib/deep");
    assert_eq!(deep["entries"][0]["path"], "src/lib/deep/nested.txt");
    let feature = get(&format!("/tree{}", query(&[("ref", "feature")])));
    assert!(
        feature["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "feature.txt"),
        "{feature}"
    );

    // Text inline; binary and large files described, not sent.
    let text = get(&format!(
        "/blob{}",
        query(&[("path", "src/lib/deep/nested.txt")])
    ));
    assert_eq!(text["content"], "deep inside\n");
    assert_eq!(text["binary"], false);
    assert_eq!(text["truncated"], false);
    assert_eq!(text["name"], "nested.txt");
    assert_eq!(text["size"], 12);
    let readme = get(&format!(
        "/blob{}",
        query(&[("path", "README.md"), ("ref", "main")])
    ));
    assert!(readme["content"].as_str().unwrap().contains("revision 5"));
    assert_eq!(readme["ref"], "main");
    let feature_file = get(&format!(
        "/blob{}",
        query(&[("path", "feature.txt"), ("ref", "feature")])
    ));
    assert_eq!(feature_file["content"], "only on feature\n");
    let bin = get(&format!("/blob{}", query(&[("path", "image.bin")])));
    assert_eq!(bin["binary"], true, "{bin}");
    assert_eq!(bin["content"], Value::Null);
    let big = get(&format!("/blob{}", query(&[("path", "big.txt")])));
    assert_eq!(big["truncated"], true, "{}", big["size"]);
    assert_eq!(big["binary"], false);
    assert_eq!(big["content"], Value::Null);
    let big_size = big["size"].as_u64().unwrap();
    assert!(big_size > 1024 * 1024, "{big_size}");
    let link = get(&format!("/blob{}", query(&[("path", "link")])));
    assert_eq!(
        link["content"], "README.md",
        "a symlink's content is its target"
    );

    // Raw bytes: opaque, never sniffed, never run.
    let http = reqwest::blocking::Client::new();
    let raw = |path: &str| {
        let url = format!(
            "{}/api/v1/repos/alice/demo/blob{}",
            server.url,
            query(&[("path", path), ("raw", "1")])
        );
        let res = http.get(url).bearer_auth(&token).send().unwrap();
        assert_eq!(res.status(), 200, "raw {path}");
        res
    };
    let res = raw("page.html");
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let disposition = h["content-disposition"].to_str().unwrap();
    assert_eq!(disposition, "attachment; filename=\"page.html\"");
    assert!(res.text().unwrap().contains("<script>"));
    let res = raw("image.bin");
    assert_eq!(res.headers()["content-length"], "6");
    assert_eq!(res.bytes().unwrap().as_ref(), [0u8, 1, 2, 255, 0, 7]);
    let res = raw("big.txt");
    assert_eq!(res.bytes().unwrap().len() as u64, big_size);

    // Wrong kinds and missing things.
    for (path, status) in [
        (format!("/blob{}", query(&[("path", "src")])), 422),
        (format!("/blob{}", query(&[("path", "")])), 422),
        ("/blob".to_owned(), 422),
        (format!("/tree{}", query(&[("path", "README.md")])), 422),
        (format!("/blob{}", query(&[("path", "nope.txt")])), 404),
        (format!("/tree{}", query(&[("path", "src/nope")])), 404),
        (format!("/blob{}", query(&[("path", "feature.txt")])), 404),
        (format!("/tree{}", query(&[("ref", "nope")])), 404),
        (
            format!("/blob{}", query(&[("path", "image.bin"), ("raw", "yes")])),
            422,
        ),
    ] {
        let (s, b) = server.api(
            "GET",
            &format!("/repos/alice/demo{path}"),
            Some(&token),
            None,
        );
        assert_eq!(s, status, "GET {path}: {b}");
        error_code(&b);
    }
}

#[test]
fn refs_and_paths_that_could_escape_are_refused() {
    let server = TestServer::start();
    let token = server.setup_admin("alice");
    push_demo(&server, &token);
    let bad_refs = [
        "--upload-pack=x",
        "--output=/tmp/slipway-pwned",
        "-h",
        "../x",
        "a..b",
        "main~1",
        "main^",
        "main:README.md",
        "HEAD@{0}",
        "ma in",
        "main\n",
    ];
    for r in bad_refs {
        for route in ["/tree", "/commits", "/blob"] {
            let q = query(&[("ref", r), ("path", "README.md")]);
            let path = format!("/repos/alice/demo{route}{q}");
            let (s, b) = server.api("GET", &path, Some(&token), None);
            assert_eq!(s, 422, "GET {path}: {b}");
            assert_eq!(error_code(&b), "invalid", "{b}");
            assert!(
                b["error"]["message"].as_str().unwrap().contains("ref"),
                "{b}"
            );
        }
    }
    for sha in ["--upload-pack=x", "a..b", "main~1", "-h", "main%5E"] {
        let path = format!("/repos/alice/demo/commits/{sha}");
        let (s, b) = server.api("GET", &path, Some(&token), None);
        assert_eq!(s, 422, "GET {path}: {b}");
        error_code(&b);
    }
    let bad_paths = [
        "../etc/passwd",
        "/etc/passwd",
        "src/../../etc/passwd",
        "./README.md",
        "src//lib",
        "a\0b",
        "line\nbreak",
    ];
    let long = "a/".repeat(2100);
    for p in bad_paths.iter().copied().chain([long.as_str()]) {
        for route in ["/tree", "/commits", "/blob"] {
            let path = format!("/repos/alice/demo{route}{}", query(&[("path", p)]));
            let (s, b) = server.api("GET", &path, Some(&token), None);
            assert_eq!(s, 422, "GET {route} path={p:?}: {b}");
            assert_eq!(error_code(&b), "invalid", "{b}");
        }
    }
    // Nothing was written outside, and the repository still answers.
    assert!(!std::path::Path::new("/tmp/slipway-pwned").exists());
    let (s, _) = server.api("GET", "/repos/alice/demo/tree", Some(&token), None);
    assert_eq!(s, 200);
}

#[test]
fn private_repositories_stay_hidden_and_empty_ones_list_nothing() {
    let server = TestServer::start();
    let token = server.setup_admin("alice");
    let bob = server.create_user(&token, "bob");
    push_demo(&server, &token);
    let (s, b) = server.api(
        "PATCH",
        "/repos/alice/demo",
        Some(&token),
        Some(json!({"private": true})),
    );
    assert_eq!(s, 200, "{b}");
    let routes = [
        "/branches".to_owned(),
        "/commits".to_owned(),
        "/commits/main".to_owned(),
        "/tree".to_owned(),
        format!("/blob{}", query(&[("path", "README.md")])),
        format!("/blob{}", query(&[("path", "README.md"), ("raw", "1")])),
    ];
    for route in &routes {
        let path = format!("/repos/alice/demo{route}");
        for who in [Some(bob.as_str()), None] {
            let (s, b) = server.api("GET", &path, who, None);
            assert_eq!(s, 404, "GET {path} as {who:?}: {b}");
            assert_eq!(error_code(&b), "not_found");
        }
        let (s, b) = server.api("GET", &path, Some(&token), None);
        assert!(s == 200, "the owner reads {path}: {s} {b}");
    }
    // A collaborator with read access sees it.
    let (s, b) = server.api(
        "PUT",
        "/repos/alice/demo/collaborators/bob",
        Some(&token),
        Some(json!({"access": "read"})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = server.api("GET", "/repos/alice/demo/branches", Some(&bob), None);
    assert_eq!(s, 200, "{b}");

    // Public repositories are readable without a token.
    let (s, b) = server.api(
        "PATCH",
        "/repos/alice/demo",
        Some(&token),
        Some(json!({"private": false})),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = server.api("GET", "/repos/alice/demo/tree", None, None);
    assert_eq!(s, 200, "{b}");

    // An empty repository: no branches, no commits, an empty root.
    let (s, b) = server.api(
        "POST",
        "/repos",
        Some(&token),
        Some(json!({"name": "empty"})),
    );
    assert_eq!(s, 201, "{b}");
    let get = |path: &str| {
        server.api(
            "GET",
            &format!("/repos/alice/empty{path}"),
            Some(&token),
            None,
        )
    };
    let (s, b) = get("/branches");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["branches"], json!([]));
    assert_eq!(b["default_branch"], "main");
    let (s, b) = get("/commits");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["commits"], json!([]));
    assert_eq!(b["ref"], Value::Null);
    assert_eq!(b["has_more"], false);
    let (s, b) = get("/tree");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["entries"], json!([]));
    assert_eq!(b["ref"], Value::Null);
    for path in [
        format!("/blob{}", query(&[("path", "README.md")])),
        format!("/tree{}", query(&[("path", "src")])),
        format!("/tree{}", query(&[("ref", "main")])),
        "/commits/main".to_owned(),
    ] {
        let (s, b) = get(&path);
        assert_eq!(s, 404, "GET {path}: {b}");
        error_code(&b);
    }
    // Unknown repositories are 404 like hidden ones.
    let (s, b) = server.api("GET", "/repos/alice/nope/branches", Some(&token), None);
    assert_eq!(s, 404, "{b}");
}
