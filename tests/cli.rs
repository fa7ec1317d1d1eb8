//! The `slipway` command line against a real server: login, repositories,
//! tokens, `--json`, and one readable error line with a non-zero exit code.

mod support;

use support::*;

#[test]
fn cli_setup_login_repos_and_tokens() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: home.path().join("cli.toml"),
        server: server.url.clone(),
        token: None,
    };
    let code = std::fs::read_to_string(server.data_dir().join("setup-token")).unwrap();

    cli.ok(
        &[
            "admin",
            "setup",
            "--setup-token",
            code.trim(),
            "--username",
            "root",
            "--stdin",
        ],
        Some("root-password\n"),
    );
    assert_eq!(cli.json(&["whoami"])["username"], "root");
    let saved = std::fs::read_to_string(&cli.config).unwrap();
    assert!(saved.contains("slp_"), "token saved");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cli.config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the saved token is private");
    }

    cli.ok(
        &["admin", "create-user", "dev", "--stdin"],
        Some("dev-password\n"),
    );
    cli.ok(
        &["login", "--username", "dev", "--stdin"],
        Some("dev-password\n"),
    );
    assert_eq!(cli.json(&["whoami"])["username"], "dev");

    let created = cli.json(&[
        "repo",
        "create",
        "app",
        "--private",
        "--description",
        "my app",
    ]);
    assert_eq!(created["full_name"], "dev/app");
    let table = cli.ok(&["repo", "list"], None);
    assert!(
        table.contains("dev/app") && table.contains("private"),
        "{table}"
    );
    let listed = cli.json(&["repo", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let token = cli.ok(&["token", "create", "ci", "--scope", "read"], None);
    let token = token.trim();
    assert!(token.starts_with("slp_"));
    let tokens = cli.json(&["token", "list"]);
    let ci = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap();
    assert_eq!(ci["scopes"], serde_json::json!(["read"]));
    assert!(
        !tokens.to_string().contains(token),
        "secrets are never listed"
    );

    // The read-only token clones but is refused a repo creation, with one line and exit code 1.
    let out = cli.run(&["--token", token, "repo", "create", "other"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("403"), "{err}");

    cli.ok(&["token", "revoke", &ci["id"].to_string()], None);
    let out = cli.run(&["--token", token, "whoami"], None);
    assert!(!out.status.success());

    // Bad input: readable one-line errors, non-zero exit.
    for args in [
        vec!["repo", "create", "../evil"],
        vec!["repo", "delete", "dev/app"],
        vec!["repo", "show", "not-a-full-name"],
        vec!["token", "create", "x", "--scope", "everything"],
    ] {
        let out = cli.run(&args, None);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
    assert_eq!(
        cli.json(&["repo", "list"]).as_array().unwrap().len(),
        1,
        "nothing was deleted without --yes"
    );
    cli.ok(&["repo", "delete", "dev/app", "--yes"], None);
    assert!(cli.json(&["repo", "list"]).as_array().unwrap().is_empty());
    assert!(!server.data_dir().join("repos/dev/app.git").exists());

    // An unreachable server: one line that says what to do.
    let dead = Cli {
        config: cli.config.clone(),
        server: "http://127.0.0.1:9".into(),
        token: None,
    };
    let out = dead.run(&["repo", "list"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `slipway server` running?"));
}

#[test]
fn cli_manages_pipeline_secrets_without_showing_values() {
    let server = TestServer::start();
    let admin = server.setup_admin("root");
    let home = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: home.path().join("cli.toml"),
        server: server.url.clone(),
        token: None,
    };
    let (status, _) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(serde_json::json!({"name": "app"})),
    );
    assert_eq!(status, 201);
    let with_token = |args: &[&str]| {
        let mut all = vec!["--token", admin.as_str()];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: &[&str], stdin: Option<&str>| {
        let owned = with_token(args);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        cli.run(&refs, stdin)
    };

    let out = run(
        &["secret", "set", "root/app", "DEPLOY_TOKEN", "--stdin"],
        Some("s3cret-value\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["secret", "list", "root/app"], None);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("DEPLOY_TOKEN"), "{table}");
    assert!(!table.contains("s3cret-value"), "values are never shown");
    let out = run(&["secret", "list", "root/app", "--json"], None);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "DEPLOY_TOKEN");
    assert!(!listed.to_string().contains("s3cret-value"));

    // Bad names and unknown repositories: one error line, exit 1.
    for args in [
        vec!["secret", "set", "root/app", "bad name", "--stdin"],
        vec!["secret", "list", "root/missing"],
        vec!["secret", "list", "not-a-repo"],
    ] {
        let out = run(&args, Some("x\n"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }

    let out = run(&["secret", "remove", "root/app", "DEPLOY_TOKEN"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["secret", "list", "root/app", "--json"], None);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.as_array().unwrap().is_empty());
}

#[test]
fn cli_manages_webhooks_and_shows_a_generated_secret_once() {
    let server = TestServer::start();
    let admin = server.setup_admin("root");
    let home = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: home.path().join("cli.toml"),
        server: server.url.clone(),
        token: Some(admin.clone()),
    };
    let (status, _) = server.api(
        "POST",
        "/repos",
        Some(&admin),
        Some(serde_json::json!({"name": "hooked"})),
    );
    assert_eq!(status, 201);

    // A generated secret is printed once, then never again.
    let added = cli.json(&["webhook", "add", "root/hooked", "http://127.0.0.1:9/ci"]);
    let secret = added["secret"]
        .as_str()
        .expect("generated secret")
        .to_owned();
    assert_eq!(secret.len(), 64, "{added}");
    let text = cli.ok(
        &[
            "webhook",
            "add",
            "root/hooked",
            "https://127.0.0.1:9/other",
            "--stdin",
        ],
        Some("my-own-secret\n"),
    );
    assert!(text.contains("added to root/hooked"), "{text}");
    assert!(!text.contains("my-own-secret"), "{text}");
    let table = cli.ok(&["webhook", "list", "root/hooked"], None);
    assert!(
        table.contains("http://127.0.0.1:9/ci") && table.contains("/other"),
        "{table}"
    );
    assert!(
        !table.contains(&secret) && !table.contains("my-own-secret"),
        "{table}"
    );
    let listed = cli.json(&["webhook", "list", "root/hooked"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));

    // Bad input: one readable line, exit 1, nothing added.
    for (args, stdin) in [
        (
            vec!["webhook", "add", "root/hooked", "ftp://example/x"],
            None,
        ),
        (
            vec!["webhook", "add", "root/missing", "http://127.0.0.1:9/"],
            None,
        ),
        (
            vec![
                "webhook",
                "add",
                "root/hooked",
                "http://127.0.0.1:9/",
                "--stdin",
            ],
            Some("\n"),
        ),
        (vec!["webhook", "remove", "root/hooked", "999"], None),
    ] {
        let err = cli.fails(&args, stdin);
        assert!(err.trim().lines().count() == 1, "{args:?}: {err}");
    }
    assert_eq!(
        cli.json(&["webhook", "list", "root/hooked"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let id = added["id"].to_string();
    cli.ok(&["webhook", "remove", "root/hooked", &id], None);
    let listed = cli.json(&["webhook", "list", "root/hooked"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}
