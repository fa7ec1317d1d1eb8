//! The deploy commands of the `slipway` command line (`app`, `config`,
//! `scale`, `releases`, `ps`, `open`…) against a real server, for everything
//! that needs no running app: names and bad input refused with one line,
//! create/list/show round trips, configuration, secrets that are never shown,
//! and deletion that must be confirmed.

mod support;

use serde_json::json;
use support::*;

/// A server with an administrator `root`, its repository `root/web`, and a
/// CLI logged in as root.
fn fixture() -> (TestServer, Cli, tempfile::TempDir) {
    let server = TestServer::start();
    let token = server.setup_admin("root");
    let (status, body) = server.api("POST", "/repos", Some(&token), Some(json!({"name": "web"})));
    assert_eq!(status, 201, "{body}");
    let home = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: home.path().join("cli.toml"),
        server: server.url.clone(),
        token: Some(token),
    };
    (server, cli, home)
}

#[test]
fn bad_names_and_input_are_refused_with_one_line() {
    let (_server, cli, _home) = fixture();
    let too_long = "a".repeat(41);
    for name in ["Bad_Name", "-x", too_long.as_str()] {
        let err = cli.fails(&["app", "create", name, "--repo", "root/web"], None);
        assert!(err.contains("invalid app name"), "{name}: {err}");
    }
    let err = cli.fails(&["app", "create", "web", "--repo", "root/missing"], None);
    assert!(err.contains("missing") || err.contains("404"), "{err}");
    let err = cli.fails(&["app", "create", "web", "--repo", "not-a-repo"], None);
    assert!(err.contains("OWNER/NAME"), "{err}");
    let err = cli.fails(
        &["app", "create", "web", "--repo", "root/web", "--env", "FOO"],
        None,
    );
    assert!(err.contains("KEY=VALUE") && err.contains("FOO"), "{err}");
    let err = cli.fails(
        &[
            "app", "create", "web", "--repo", "root/web", "--memory", "lots",
        ],
        None,
    );
    assert!(err.contains("256M"), "{err}");
    let err = cli.fails(&["scale", "web=abc"], None);
    assert!(
        err.contains("expected APP=N") && err.contains("N a number") && err.contains("web=abc"),
        "{err}"
    );
    cli.fails(&["scale", "web"], None);
    cli.fails(&["rollback", "web", "vX"], None);
    // Nothing above reached the server as a create.
    assert_eq!(cli.json(&["app", "list"]), json!([]));
}

#[test]
fn apps_round_trip_config_and_deletion() {
    let (server, cli, _home) = fixture();
    let created = cli.json(&[
        "app",
        "create",
        "web",
        "--repo",
        "root/web",
        "--port",
        "8080",
        "--replicas",
        "2",
        "--health-path",
        "/healthz",
        "--domain",
        "web.example.test",
        "--env",
        "GREETING=hello=world",
        "--memory",
        "256M",
        "--cpus",
        "0.5",
    ]);
    assert_eq!(created["name"], "web");
    assert_eq!(created["repo"], "root/web");
    assert_eq!(created["replicas"], 2);
    assert_eq!(created["health"]["path"], "/healthz");
    assert_eq!(created["domains"], json!(["web.example.test"]));
    assert_eq!(created["env"], json!({"GREETING": "hello=world"}));
    assert_eq!(created["memory_mb"], 256);
    assert_eq!(created["cpus"], 0.5);
    assert!(created["release"].is_null(), "never deployed: {created}");

    // A second app with the same name is refused by the server, in one line.
    cli.fails(&["app", "create", "web", "--repo", "root/web"], None);

    let table = cli.ok(&["app", "list"], None);
    assert!(
        table.contains("web") && table.contains("root/web"),
        "{table}"
    );
    let listed = cli.json(&["app", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let shown = cli.json(&["app", "show", "web"]);
    assert_eq!(shown, listed[0], "list and show agree");
    for key in [
        "name", "repo", "branch", "port", "replicas", "status", "url",
    ] {
        assert_eq!(shown[key], created[key], "{key}");
    }
    let text = cli.ok(&["app", "show", "web"], None);
    assert!(text.contains(shown["url"].as_str().unwrap()), "{text}");

    // Settings change with PATCH; nothing to change is refused client-side.
    let set = cli.json(&["app", "set", "web", "--replicas", "3", "--branch", "prod"]);
    assert_eq!(set["replicas"], 3);
    assert_eq!(set["branch"], "prod");
    assert_eq!(set["port"], 8080, "untouched settings stay");
    cli.fails(&["app", "set", "web"], None);

    // Configuration: set (values may hold '='), list, unset.
    cli.ok(&["config", "set", "web", "A=1", "B=x=y"], None);
    let config = cli.json(&["config", "web"]);
    assert_eq!(
        config["env"],
        json!({"A": "1", "B": "x=y", "GREETING": "hello=world"})
    );
    let table = cli.ok(&["config", "web"], None);
    assert!(table.contains("B") && table.contains("x=y"), "{table}");
    cli.ok(&["config", "unset", "web", "A", "GREETING"], None);
    assert_eq!(cli.json(&["config", "web"])["env"], json!({"B": "x=y"}));
    let err = cli.fails(&["config", "set", "web", "NOPE"], None);
    assert!(err.contains("KEY=VALUE"), "{err}");
    cli.fails(&["config", "unset", "web", "B=x"], None);
    cli.fails(&["config", "set", "web", "1BAD=x"], None);
    assert_eq!(cli.json(&["config", "web"])["env"], json!({"B": "x=y"}));

    // Never deployed: no releases, no replicas, but a URL.
    let releases = cli.ok(&["releases", "web"], None);
    assert!(releases.contains("No releases"), "{releases}");
    assert_eq!(cli.json(&["releases", "web"]), json!([]));
    let ps = cli.ok(&["ps", "web"], None);
    assert!(ps.contains("No replicas"), "{ps}");
    let url = cli.ok(&["open", "web"], None);
    assert_eq!(url.trim(), shown["url"].as_str().unwrap());

    // Access follows the repository: anyone may read the public root/web and
    // so see the app, but only its writers change it.
    let other = server.create_user(cli.token.as_deref().unwrap(), "eve");
    let eve = Cli {
        config: cli.config.clone(),
        server: cli.server.clone(),
        token: Some(other),
    };
    assert_eq!(eve.json(&["app", "show", "web"])["name"], "web");
    for args in [
        vec!["config", "set", "web", "EVIL=1"],
        vec!["scale", "web=0"],
        vec!["app", "set", "web", "--port", "9999"],
        vec!["app", "delete", "web", "--yes"],
    ] {
        let err = eve.fails(&args, None);
        assert!(err.contains("403"), "{args:?}: {err}");
    }
    // Once the repository is private, she no longer sees the app at all.
    let (status, body) = server.api(
        "PATCH",
        "/repos/root/web",
        cli.token.as_deref(),
        Some(json!({"private": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(eve.json(&["app", "list"]), json!([]));
    let err = eve.fails(&["app", "show", "web"], None);
    assert!(err.contains("404"), "{err}");
    assert_eq!(cli.json(&["config", "web"])["env"], json!({"B": "x=y"}));

    // Deletion must be confirmed; without a terminal, --yes is the only way.
    let err = cli.fails(&["app", "delete", "web"], Some("web\n"));
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(cli.json(&["app", "show", "web"])["name"], "web");
    cli.ok(&["app", "delete", "web", "--yes"], None);
    let err = cli.fails(&["app", "show", "web"], None);
    assert!(err.contains("404"), "{err}");
    assert_eq!(cli.json(&["app", "list"]), json!([]));
}

#[test]
fn app_secrets_are_read_from_stdin_and_never_shown() {
    let (_server, cli, _home) = fixture();
    cli.ok(&["app", "create", "web", "--repo", "root/web"], None);
    const VALUE: &str = "s3cret-value-never-printed";

    cli.ok(
        &["app", "secret", "set", "web", "DB_PASSWORD"],
        Some(&format!("{VALUE}\n")),
    );
    let table = cli.ok(&["app", "secret", "list", "web"], None);
    assert!(table.contains("DB_PASSWORD"), "{table}");
    assert!(!table.contains(VALUE), "values are never shown");
    let listed = cli.json(&["app", "secret", "list", "web"]);
    assert_eq!(listed[0]["name"], "DB_PASSWORD");
    for args in [
        vec!["app", "secret", "list", "web"],
        vec!["app", "show", "web"],
        vec!["app", "list"],
        vec!["config", "web"],
    ] {
        let shown = cli.json(&args).to_string();
        assert!(!shown.contains(VALUE), "{args:?} shows the value: {shown}");
    }
    assert_eq!(
        cli.json(&["app", "show", "web"])["secrets"],
        json!(["DB_PASSWORD"])
    );

    // No value, a bad name, an unknown app: one line each.
    cli.fails(&["app", "secret", "set", "web", "EMPTY"], Some(""));
    cli.fails(&["app", "secret", "set", "web", "bad name"], Some("x\n"));
    cli.fails(&["app", "secret", "list", "nope"], None);

    cli.ok(&["app", "secret", "remove", "web", "DB_PASSWORD"], None);
    assert_eq!(cli.json(&["app", "secret", "list", "web"]), json!([]));
}
