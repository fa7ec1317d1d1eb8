//! The `slipway` command line against a real server: login, repositories,
//! tokens, `--json`, and one readable error line with a non-zero exit code.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use support::*;

struct Cli {
    config: std::path::PathBuf,
    server: String,
}

impl Cli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_CLI_CONFIG", &self.config)
            .env("SLIPWAY_SERVER", &self.server)
            .env_remove("SLIPWAY_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "slipway {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all, None)).unwrap()
    }
}

#[test]
fn cli_setup_login_repos_and_tokens() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: home.path().join("cli.toml"),
        server: server.url.clone(),
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
            "--password-stdin",
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
        &["admin", "create-user", "dev", "--password-stdin"],
        Some("dev-password\n"),
    );
    cli.ok(
        &["login", "--username", "dev", "--password-stdin"],
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
    };
    let out = dead.run(&["repo", "list"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `slipway server` running?"));
}
