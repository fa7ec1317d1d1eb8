//! Code execution end to end: a real server, real Docker sandboxes on the
//! tiny busybox runtime (seconds per job), real HTTP. Fails loudly without Docker.
//!
//! The language test is ignored by default because it builds the Debian
//! images (minutes, needs the Debian mirror); run it with
//! `cargo test --test exec -- --ignored every_language`.

mod support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

fn require_docker() {
    let ok = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "these tests need a running Docker Engine and none is reachable \
         (run `bash scripts/deps.sh` or start dockerd)"
    );
}

/// A server with an admin and two users; returns (server, alice, bob).
fn server_with_users(env: &[(&str, &str)]) -> (TestServer, String, String) {
    require_docker();
    let server = TestServer::start_with_env(env);
    let admin = server.setup_admin("admin");
    let alice = server.create_user(&admin, "alice");
    let bob = server.create_user(&admin, "bob");
    (server, alice, bob)
}

/// A server with an admin and one user; returns (server, admin, alice).
fn server_with_admin(env: &[(&str, &str)]) -> (TestServer, String, String) {
    require_docker();
    let server = TestServer::start_with_env(env);
    let admin = server.setup_admin("admin");
    let alice = server.create_user(&admin, "alice");
    (server, admin, alice)
}

fn sh(script: &str) -> Value {
    json!({"language": "busybox-sh", "files": [{"name": "main.sh", "content": script}]})
}

/// POST a job; returns (status, body, Retry-After header).
fn submit(server: &TestServer, token: &str, body: &Value) -> (u16, Value, Option<String>) {
    let res = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/exec/jobs", server.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .expect("submit request");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().unwrap_or(Value::Null), retry)
}

fn submit_ok(server: &TestServer, token: &str, body: Value) -> String {
    let (status, body, _) = submit(server, token, &body);
    assert_eq!(status, 202, "submit failed: {body}\n{}", server.log());
    assert_eq!(body["state"], "pending");
    body["id"].as_str().unwrap().to_owned()
}

fn wait(server: &TestServer, token: &str, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(240);
    loop {
        let (status, job) = server.api("GET", &format!("/exec/jobs/{id}"), Some(token), None);
        assert_eq!(status, 200, "{job}");
        let state = job["state"].as_str().unwrap();
        if state != "pending" && state != "running" {
            return job;
        }
        assert!(
            Instant::now() < until,
            "job {id} did not finish: {job}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(server: &TestServer, token: &str, body: Value) -> Value {
    let id = submit_ok(server, token, body);
    wait(server, token, &id)
}

/// Containers still named after `job` once its teardown (which runs after
/// the result is stored) had up to 30 s to finish; empty when all are gone.
fn sandbox_containers(job: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("name=slipway-exec-job-{job}-"),
            ])
            .output()
            .unwrap();
        let left = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn basics_hello_stdin_args_compile_error_output_and_privacy() {
    let (server, alice, bob) = server_with_users(&[]);

    let (status, runtimes) = server.api("GET", "/exec/runtimes", Some(&alice), None);
    assert_eq!(status, 200, "{runtimes}");
    let names: Vec<&str> = runtimes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["language"].as_str().unwrap())
        .collect();
    for lang in [
        "busybox-sh",
        "python",
        "c",
        "c++",
        "go",
        "javascript",
        "ruby",
        "bash",
    ] {
        assert!(names.contains(&lang), "{lang} missing from {names:?}");
    }

    let hello = run(&server, &alice, sh("echo hello, world"));
    assert_eq!(hello["state"], "succeeded", "{hello}");
    assert_eq!(hello["run"]["stdout"], "hello, world\n");
    assert_eq!(hello["run"]["exit_code"], 0);
    assert_eq!(hello["compile"]["exit_code"], 0);
    assert_eq!(hello["run"]["truncated"], false);
    assert!(hello["started_at"].is_string() && hello["finished_at"].is_string());
    assert!(sandbox_containers(hello["id"].as_str().unwrap()).is_empty());

    let mut echo = sh("read line; echo \"in=$line args=$# $1|$2\"; echo oops >&2; exit 3");
    echo["stdin"] = json!("from stdin\n");
    echo["args"] = json!(["a b", "c"]);
    let echo = run(&server, &alice, echo);
    assert_eq!(echo["state"], "failed", "{echo}");
    assert_eq!(echo["run"]["stdout"], "in=from stdin args=2 a b|c\n");
    assert_eq!(echo["run"]["stderr"], "oops\n");
    assert_eq!(echo["run"]["exit_code"], 3);

    let broken = run(&server, &alice, sh("if then fi (("));
    assert_eq!(broken["state"], "failed", "{broken}");
    assert_ne!(broken["compile"]["exit_code"], 0);
    assert!(!broken["compile"]["stderr"].as_str().unwrap().is_empty());
    assert!(
        broken["run"].is_null(),
        "must not run after a compile error"
    );

    let writer = run(
        &server,
        &alice,
        sh("echo result-data > output/result.txt; mkdir output/sub; echo nested > output/sub/n.txt"),
    );
    assert_eq!(writer["state"], "succeeded", "{writer}");
    let id = writer["id"].as_str().unwrap();
    let res = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/exec/jobs/{id}/output.zip", server.url))
        .bearer_auth(&alice)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("result.txt").unwrap(), &mut text).unwrap();
    assert_eq!(text, "result-data\n");
    assert!(zip.by_name("sub/n.txt").is_ok());

    // Privacy: bob sees none of alice's jobs.
    let (status, body) = server.api("GET", &format!("/exec/jobs/{id}"), Some(&bob), None);
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (status, _) = server.api(
        "GET",
        &format!("/exec/jobs/{id}/output.zip"),
        Some(&bob),
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = server.api("DELETE", &format!("/exec/jobs/{id}"), Some(&bob), None);
    assert_eq!(status, 404);
    let (_, bobs) = server.api("GET", "/exec/jobs", Some(&bob), None);
    assert_eq!(bobs, json!([]));
    let (_, alices) = server.api("GET", "/exec/jobs", Some(&alice), None);
    assert_eq!(alices.as_array().unwrap().len(), 4);

    // Validation and auth.
    for bad in [
        json!({"language": "cobol", "files": [{"content": "x"}]}),
        json!({"language": "busybox-sh", "files": []}),
        json!({"language": "busybox-sh", "files": [{"name": "../evil", "content": "x"}]}),
        json!({"language": "busybox-sh", "files": [{"name": "a/b", "content": "x"}]}),
        json!({"language": "busybox-sh", "files": [{"content": "x"}], "run_timeout": 999999999}),
    ] {
        let (status, body, _) = submit(&server, &alice, &bad);
        assert_eq!(status, 422, "{bad} -> {body}");
        error_code(&body);
    }
    let (status, _) = server.api("POST", "/exec/jobs", None, Some(sh("echo")));
    assert_eq!(status, 401);

    // Synchronous run and cancellation.
    let (status, done) = server.api("POST", "/exec/run", Some(&bob), Some(sh("echo sync")));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["run"]["stdout"], "sync\n");
    // The first file is the entry point whatever its name (as `slipway exec run hi.sh` sends it),
    // and a second file keeps its own name.
    let (status, done) = server.api(
        "POST",
        "/exec/run",
        Some(&bob),
        Some(json!({"language": "busybox-sh", "stdin": "piped",
            "files": [{"name": "hi.sh", "content": ". ./lib.sh; greet; cat"},
                      {"name": "lib.sh", "content": "greet() { echo hello-from-lib; }"}]})),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["run"]["stdout"], "hello-from-lib\npiped", "{done}");
    let slow = submit_ok(&server, &bob, sh("sleep 30"));
    let (status, body) = server.api("DELETE", &format!("/exec/jobs/{slow}"), Some(&bob), None);
    assert_eq!(status, 200, "{body}");
    let cancelled = wait(&server, &bob, &slow);
    assert_eq!(cancelled["state"], "cancelled");
}

#[test]
fn containment_bombs_limits_network_and_isolation() {
    // One user's jobs side by side: the snoop must run while the secret job does.
    let (server, alice, _) = server_with_users(&[
        ("SLIPWAY_EXEC_WORKERS", "4"),
        ("SLIPWAY_EXEC_MAX_RUNNING_PER_USER", "4"),
    ]);
    let port = server.url.rsplit(':').next().unwrap().to_owned();

    // A job holding a secret in its files while the snoop runs.
    let mut secret =
        sh("echo TOP-SECRET-A > /work/secret.txt; echo TOP-SECRET-B > /tmp/secret.txt; sleep 4");
    secret["run_timeout"] = json!(10000);
    let secret = submit_ok(&server, &alice, secret);
    let fork_bomb = submit_ok(&server, &alice, sh("while :; do sleep 100 & done"));
    let mut mem = sh("x=aaaaaaaaaaaaaaaa; while :; do x=\"$x$x\"; done");
    mem["memory_limit"] = json!(32 * 1024 * 1024);
    let memory_bomb = submit_ok(&server, &alice, mem);
    let mut spin = sh("while :; do :; done");
    spin["run_timeout"] = json!(2000);
    let infinite = submit_ok(&server, &alice, spin);
    let flood = submit_ok(&server, &alice, sh("yes"));
    let network = submit_ok(
        &server,
        &alice,
        sh(&format!(
            "if wget -q -T 2 -O- http://127.0.0.1:{port}/healthz; then echo NET-OPEN; else echo NET-BLOCKED; fi\n\
             if nc -w 2 1.1.1.1 80 </dev/null; then echo NET-OPEN; else echo NET-BLOCKED; fi\n\
             ls /sys/class/net"
        )),
    );
    let readonly = submit_ok(
        &server,
        &alice,
        sh("for f in /etc/passwd /x /usr/y /home/slipway/z; do if echo x > $f; then echo WROTE $f; fi; done 2>/dev/null\n\
            echo ok > /tmp/t && echo tmp-ok\nid -u"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut snoop = sh(
        "cat /work/secret.txt /tmp/secret.txt 2>&1; find / -name secret.txt 2>/dev/null; \
         grep -rs TOP-SECRE[T] /work /tmp /home /var 2>/dev/null | head; ls -a /work; echo snoop-done",
    );
    snoop["run_timeout"] = json!(20000);
    let snoop = submit_ok(&server, &alice, snoop);

    let job = wait(&server, &alice, &fork_bomb);
    assert_eq!(job["state"], "failed", "fork bomb: {job}");
    assert!(
        job["run"]["stderr"].as_str().unwrap().contains("fork"),
        "fork bomb should die of the pids limit: {job}"
    );

    let job = wait(&server, &alice, &memory_bomb);
    assert_eq!(job["state"], "failed", "memory bomb: {job}");
    assert_eq!(job["run"]["oom_killed"], true, "memory bomb: {job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("out of memory") && error.contains("32 MiB"),
        "memory bomb: {job}"
    );

    let job = wait(&server, &alice, &infinite);
    assert_eq!(job["state"], "timed_out", "infinite loop: {job}");
    assert_eq!(job["run"]["timed_out"], true);

    let job = wait(&server, &alice, &flood);
    assert_eq!(job["run"]["truncated"], true, "flood: {job}");
    // 16 MiB of short lines come back in a second or two (Docker's log
    // driver, when it copied them too, took ~25 s and hit the hard deadline).
    let took = secs_between(&job, "started_at", "finished_at");
    assert!(took < 15.0, "flood took {took} s: {job}");
    let out = job["run"]["stdout"].as_str().unwrap();
    assert!(
        out.len() <= 64 * 1024 && out.starts_with("y\ny\n"),
        "flood: {}",
        out.len()
    );

    let job = wait(&server, &alice, &network);
    let out = job["run"]["stdout"].as_str().unwrap();
    assert_eq!(out.matches("NET-BLOCKED").count(), 2, "network: {job}");
    assert!(
        !out.contains("NET-OPEN") && !out.contains("eth0"),
        "network: {job}"
    );

    let job = wait(&server, &alice, &readonly);
    let out = job["run"]["stdout"].as_str().unwrap();
    assert!(!out.contains("WROTE"), "read-only root: {job}");
    assert!(
        out.contains("tmp-ok") && out.contains("1000"),
        "read-only root: {job}"
    );

    let job = wait(&server, &alice, &snoop);
    let out = job["run"]["stdout"].as_str().unwrap();
    assert!(out.contains("snoop-done"), "{job}");
    assert!(
        !out.contains("TOP-SECRET"),
        "another job's files leaked: {job}"
    );
    assert_eq!(wait(&server, &alice, &secret)["state"], "succeeded");

    // The host and the service are fine afterwards, and nothing is left behind.
    let after = run(&server, &alice, sh("echo still alive"));
    assert_eq!(after["run"]["stdout"], "still alive\n", "{after}");
    for id in [
        &fork_bomb,
        &memory_bomb,
        &infinite,
        &flood,
        &network,
        &readonly,
        &snoop,
    ] {
        assert!(
            sandbox_containers(id).is_empty(),
            "sandbox of {id} left behind"
        );
    }
}

#[test]
fn many_concurrent_jobs_are_bounded_and_none_are_lost_or_mixed() {
    let (server, alice, bob) = server_with_users(&[
        ("SLIPWAY_EXEC_MAX_PENDING", "32"),
        ("SLIPWAY_EXEC_WORKERS", "4"),
    ]);
    let server = std::sync::Arc::new(server);
    let mut threads = Vec::new();
    // 200 submissions from 8 threads and 2 users, three kinds of program.
    for t in 0..8 {
        let server = server.clone();
        let token = if t % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        threads.push(std::thread::spawn(move || {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for i in 0..25 {
                let marker = format!("marker-{t}-{i}");
                let program = match i % 3 {
                    0 => format!("echo {marker}"),
                    1 => format!("i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; echo {marker}"),
                    _ => format!("mkdir -p output; echo {marker} > output/m; cat output/m"),
                };
                let (status, body, retry) = submit(&server, &token, &sh(&program));
                match status {
                    202 => accepted.push((body["id"].as_str().unwrap().to_owned(), marker)),
                    429 => {
                        assert_eq!(error_code(&body), "too_many_requests");
                        assert!(retry.is_some(), "429 without Retry-After");
                        refused += 1;
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            (token, accepted, refused)
        }));
    }
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: usize = results.iter().map(|r| r.2).sum();
    let accepted: usize = results.iter().map(|r| r.1.len()).sum();
    assert_eq!(refused + accepted, 200);
    assert!(
        refused > 0,
        "a queue of 32 must refuse some of 200 fast submissions"
    );
    assert!(accepted >= 32, "only {accepted} accepted");
    println!("200 submissions: {accepted} accepted, {refused} refused with 429");

    let mut ids = HashSet::new();
    for (token, jobs, _) in &results {
        for (id, marker) in jobs {
            assert!(ids.insert(id.clone()), "duplicate id {id}");
            let job = wait(&server, token, id);
            assert_eq!(job["state"], "succeeded", "{job}");
            assert_eq!(
                job["run"]["stdout"],
                format!("{marker}\n"),
                "mixed up: {job}"
            );
            assert_eq!(job["attempts"], 1);
        }
    }
    for token in [&alice, &bob] {
        let (_, list) = server.api("GET", "/exec/jobs", Some(token), None);
        let mine: HashSet<String> = results
            .iter()
            .filter(|r| &r.0 == token)
            .flat_map(|r| r.1.iter().map(|(id, _)| id.clone()))
            .collect();
        let listed: HashSet<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            listed, mine,
            "job lists must hold exactly the user's own jobs"
        );
    }
}

#[test]
fn a_server_restart_loses_no_accepted_job() {
    // Both workers for alice (the per-user cap would run her jobs one at a
    // time, and the restart could fall between two of them).
    let (mut server, alice, _) = server_with_users(&[
        ("SLIPWAY_EXEC_WORKERS", "2"),
        ("SLIPWAY_EXEC_MAX_RUNNING_PER_USER", "2"),
    ]);
    let jobs: Vec<(String, String)> = (0..10)
        .map(|i| {
            let marker = format!("survivor-{i}");
            let id = submit_ok(&server, &alice, sh(&format!("sleep 1; echo {marker}")));
            (id, marker)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    server.restart();
    let mut retried = 0;
    for (id, marker) in &jobs {
        let job = wait(&server, &alice, id);
        assert_eq!(job["state"], "succeeded", "{job}\n{}", server.log());
        assert_eq!(job["run"]["stdout"], format!("{marker}\n"));
        if job["attempts"].as_i64().unwrap() > 1 {
            retried += 1;
        }
    }
    assert!(
        retried > 0,
        "the restart should have interrupted a running job"
    );
    for (id, _) in &jobs {
        assert!(
            sandbox_containers(id).is_empty(),
            "sandbox of {id} left behind"
        );
    }
}

/// Builds every language image (Debian bootstrap ~100 s, then apt) and runs
/// hello world plus a stdin echo in each. Run with
/// `cargo test --test exec -- --ignored every_language --nocapture`.
#[test]
#[ignore = "builds the Debian language images: minutes and the Debian mirror"]
fn every_language_runs_hello_world_and_echoes_stdin() {
    let (server, alice, _) = server_with_users(&[]);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["exec", "images", "build"])
        .status()
        .unwrap();
    assert!(status.success(), "building the language images failed");
    let programs = [
        ("python", "import sys\nprint('hello ' + sys.stdin.readline().strip())\n"),
        ("javascript", "const l = require('fs').readFileSync(0, 'utf8').split('\\n')[0];\nconsole.log('hello ' + l);\n"),
        ("c", "#include <stdio.h>\nint main(void){char b[64];fgets(b,64,stdin);b[5]=0;printf(\"hello %s\\n\",b);return 0;}\n"),
        ("c++", "#include <iostream>\n#include <string>\nint main(){std::string s;std::getline(std::cin,s);std::cout<<\"hello \"<<s<<std::endl;}\n"),
        ("go", "package main\nimport (\"bufio\";\"fmt\";\"os\";\"strings\")\nfunc main(){r:=bufio.NewReader(os.Stdin);l,_:=r.ReadString('\\n');fmt.Println(\"hello \"+strings.TrimSpace(l))}\n"),
        ("ruby", "puts \"hello #{STDIN.gets.strip}\"\n"),
        ("bash", "read -r l; echo \"hello $l\"\n"),
        ("busybox-sh", "read l; echo \"hello $l\"\n"),
    ];
    for (lang, code) in programs {
        let job = run(
            &server,
            &alice,
            json!({"language": lang, "files": [{"content": code}], "stdin": "world\n",
                   "compile_timeout": 120000, "memory_limit": 1073741824}),
        );
        assert_eq!(job["state"], "succeeded", "{lang}: {job}");
        assert_eq!(job["run"]["stdout"], "hello world\n", "{lang}: {job}");
        eprintln!("{lang}: ok in {} ms", job["run"]["time_ms"]);
    }
}

#[test]
fn cli_exec_run_prints_output_and_exit_status() {
    let (server, alice, _) = server_with_users(&[]);
    let dir = tempfile::tempdir().unwrap();
    let slipway = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .current_dir(dir.path())
            .env("SLIPWAY_SERVER", &server.url)
            .env("SLIPWAY_TOKEN", &alice)
            .env("SLIPWAY_CLI_CONFIG", dir.path().join("cli.toml"))
            .output()
            .unwrap()
    };
    std::fs::write(dir.path().join("hi.sh"), "echo \"hello $1\"; cat").unwrap();
    let out = slipway(&[
        "exec",
        "run",
        "hi.sh",
        "--lang",
        "busybox-sh",
        "--stdin",
        "piped",
        "--",
        "world",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\npiped");

    // A failing program: its stderr is shown and the CLI exits non-zero with one error line.
    std::fs::write(dir.path().join("bad.sh"), "echo oops >&2; exit 3").unwrap();
    let out = slipway(&["exec", "run", "bad.sh", "--lang", "busybox-sh"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("oops") && err.contains("exit code 3"), "{err}");

    // --json gives the whole result; the jobs list has both runs.
    let out = slipway(&["exec", "run", "hi.sh", "--lang", "busybox-sh", "--json"]);
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "succeeded", "{job}");
    let out = slipway(&["exec", "jobs", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 3, "{jobs}");

    // An unknown language: one readable line, exit 1.
    let out = slipway(&["exec", "run", "hi.sh", "--lang", "cobol"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("unknown language"),
        "{err}"
    );

    // A language whose image is not built here: the command that builds it,
    // never a job without an exit code.
    let out = slipway(&["exec", "runtimes", "--json"]);
    let runtimes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let missing = runtimes
        .iter()
        .find(|r| r["installed"] == false && r["language"] != "busybox-sh");
    let Some(language) = missing.and_then(|r| r["language"].as_str()) else {
        eprintln!(
            "every language image is built on this machine: the missing-image case is not checked"
        );
        return;
    };
    std::fs::write(dir.path().join("x.src"), "hello").unwrap();
    let out = slipway(&["exec", "run", "x.src", "--lang", language]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let build = format!("slipway exec images build {language}");
    assert!(
        err.lines().count() == 1 && err.contains(&build) && !err.contains("null"),
        "{err}"
    );
    let (status, body, _) = submit(
        &server,
        &alice,
        &json!({"language": language, "files": [{"content": "x"}]}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "runtime_not_installed"),
        "{body}"
    );
}

/// Scrape `/metrics` of `server` (with `token`, if any); returns (status, body).
fn scrape(server: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::blocking::Client::new().get(format!("{}/metrics", server.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().expect("scrape /metrics");
    (res.status().as_u16(), res.text().unwrap())
}

/// The value of sample `name` whose labels include all of `labels` (summed when several match).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn warm_pool_serves_jobs_and_leaks_nothing_between_them() {
    let (server, admin, alice) = server_with_admin(&[
        ("SLIPWAY_EXEC_WORKERS", "1"),
        ("SLIPWAY_EXEC_POOL_SIZE", "2"),
        ("RUST_LOG", "warn,slipway_exec=info"),
    ]);
    // A job that leaves files in /work and /tmp and a detached process behind.
    let leaker = run(
        &server,
        &alice,
        sh(
            "echo LEAKED-W > /work/leak.txt; echo LEAKED-T > /tmp/leak.txt; \
            setsid sleep 1000 > /dev/null 2>&1 < /dev/null & \
            sleep 1000 > /dev/null 2>&1 & echo planted",
        ),
    );
    assert_eq!(leaker["run"]["stdout"], "planted\n", "{leaker}");
    let probe = "cat /work/leak.txt /tmp/leak.txt 2>/dev/null; ls -a /work /tmp; \
                 ps -o pid,user,args | grep -c 'sleep 100[0]'; echo probe-done";
    for i in 0..4 {
        // Let the refill finish, so the next job is served warm.
        std::thread::sleep(Duration::from_millis(1500));
        let job = run(&server, &alice, sh(probe));
        let out = job["run"]["stdout"].as_str().unwrap();
        assert!(
            out.ends_with("0\nprobe-done\n"),
            "job {i} sees a leftover process: {job}"
        );
        assert!(
            !out.contains("LEAKED") && !out.contains("leak.txt"),
            "job {i} sees leftover files: {job}"
        );
    }
    let (status, text) = scrape(&server, Some(&admin));
    assert_eq!(status, 200, "{text}");
    let hits = sample(
        &text,
        "slipway_exec_pool_hits_total",
        &[("language", "busybox-sh")],
    );
    assert!(
        hits.unwrap_or(0.0) >= 3.0,
        "the probes should be served warm:\n{text}"
    );
    assert!(sandbox_containers(leaker["id"].as_str().unwrap()).is_empty());

    // A clean shutdown removes the idle warm sandboxes it kept.
    let log = server.log();
    let instance = log
        .split("code execution service started")
        .nth(1)
        .and_then(|rest| rest.split("instance").nth(1))
        .and_then(|rest| {
            // Past any colour codes and `=`: the 16 hex digits.
            rest.split(|c: char| !c.is_ascii_hexdigit())
                .find(|w| w.len() == 16)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no exec instance in the log:\n{log}"));
    let warm = |instance: &str| {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.slipway.exec.instance={instance}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(!warm(&instance).is_empty(), "the pool keeps warm sandboxes");
    let mut server = server;
    assert!(
        server.terminate(Duration::from_secs(20)),
        "SIGTERM should stop the server"
    );
    let left = warm(&instance);
    assert!(left.is_empty(), "sandboxes left after a clean stop: {left}");
}

#[test]
fn memory_peak_is_reported_per_phase() {
    let (server, alice, _) = server_with_users(&[]);
    let small = run(&server, &alice, sh("echo small"));
    let big = run(
        &server,
        &alice,
        sh("awk 'BEGIN { s = sprintf(\"%52428800s\", \"\"); print length(s) }'"),
    );
    assert_eq!(big["run"]["stdout"], "52428800\n", "{big}");
    let kb = big["run"]["memory_kb"]
        .as_u64()
        .expect("memory_kb of the run");
    assert!(kb > 40_000, "50 MB allocated but memory_kb = {kb}: {big}");
    let small_kb = small["run"]["memory_kb"]
        .as_u64()
        .expect("memory_kb of a small run");
    assert!(small_kb < kb / 4, "small job {small_kb} kB vs big {kb} kB");
    assert!(small["compile"]["memory_kb"].as_u64().is_some(), "{small}");
}

#[test]
fn metrics_count_jobs_and_need_an_admin() {
    let (server, admin, alice) = server_with_admin(&[]);
    let (status, body) = scrape(&server, None);
    assert_eq!(status, 401, "{body}");
    let err: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error_code(&err), "unauthorized");
    let (status, _) = scrape(&server, Some(&alice));
    assert_eq!(status, 403);

    let (_, before) = scrape(&server, Some(&admin));
    let ok = [("language", "busybox-sh"), ("outcome", "succeeded")];
    let failed = [("language", "busybox-sh"), ("outcome", "failed")];
    let ok0 = sample(&before, "slipway_exec_jobs_total", &ok).unwrap_or(0.0);
    run(&server, &alice, sh("echo one"));
    run(&server, &alice, sh("echo two"));
    run(&server, &alice, sh("exit 4"));
    let (status, text) = scrape(&server, Some(&admin));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        sample(&text, "slipway_exec_jobs_total", &ok),
        Some(ok0 + 2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "slipway_exec_jobs_total", &failed),
        Some(1.0),
        "{text}"
    );
    let lang = [("language", "busybox-sh")];
    let runs = sample(&text, "slipway_exec_run_seconds_count", &lang);
    assert_eq!(runs, Some(3.0), "{text}");
    let waits = sample(&text, "slipway_exec_queue_wait_seconds_count", &lang);
    assert_eq!(waits, Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "slipway_exec_queue_length", &[]),
        Some(0.0),
        "{text}"
    );
    let hits = sample(&text, "slipway_exec_pool_hits_total", &lang).unwrap_or(0.0);
    let misses = sample(&text, "slipway_exec_pool_misses_total", &lang).unwrap_or(0.0);
    assert_eq!(hits + misses, 3.0, "{text}");
    assert!(misses >= 1.0, "the first job of a language misses: {text}");

    // With `metrics_public` anyone may scrape.
    drop(server);
    let public = TestServer::start_with_env(&[("SLIPWAY_METRICS_PUBLIC", "true")]);
    let (status, text) = scrape(&public, None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("slipway_exec_queue_length"), "{text}");
}

#[test]
fn a_zip_upload_runs_like_a_file_list() {
    use std::io::Write;
    let (server, alice, _) = server_with_users(&[]);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in [
        (
            "main.sh",
            "cd \"$(dirname \"$0\")\"; . ./lib.sh; greet \"$1\" \"$2\"; cat\n",
        ),
        ("lib.sh", "greet() { echo \"hi $1 $2\"; }\n"),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let zip_bytes = w.finish().unwrap().into_inner();
    let client = reqwest::blocking::Client::new();
    let res = client
        .post(format!(
            "{}/api/v1/exec/run?language=busybox-sh&args=a&args=b%20c&stdin=from-stdin",
            server.url
        ))
        .bearer_auth(&alice)
        .header("content-type", "application/zip")
        .body(zip_bytes)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let job: Value = res.json().unwrap();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["run"]["stdout"], "hi a b c\nfrom-stdin", "{job}");

    // Not a zip, or a zip without the language: clear 422s.
    for (url, body) in [
        (
            "/api/v1/exec/jobs?language=busybox-sh",
            b"not a zip".to_vec(),
        ),
        ("/api/v1/exec/jobs", b"PK".to_vec()),
    ] {
        let res = client
            .post(format!("{}{url}", server.url))
            .bearer_auth(&alice)
            .header("content-type", "application/zip")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(res.status(), 422);
        let err: Value = res.json().unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().len() > 10,
            "{err}"
        );
    }
}

/// A job's timestamp `field` (`created_at`, `started_at`, `finished_at`).
fn time_of(job: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = job[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {job}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap()
}

/// Seconds from `from` to `to` of `job`.
fn secs_between(job: &Value, from: &str, to: &str) -> f64 {
    (time_of(job, to) - time_of(job, from)).num_milliseconds() as f64 / 1000.0
}

#[test]
fn another_users_job_waits_for_one_job_slot_not_the_whole_queue() {
    // Two workers that one user may both use: only the queue's order is tested.
    let (server, alice, bob) = server_with_users(&[
        ("SLIPWAY_EXEC_WORKERS", "2"),
        ("SLIPWAY_EXEC_MAX_RUNNING_PER_USER", "2"),
    ]);
    let backlog: Vec<String> = (0..10)
        .map(|i| submit_ok(&server, &alice, sh(&format!("sleep 4; echo a{i}"))))
        .collect();
    // Alice's first jobs hold both workers when Bob's one-liner comes in.
    std::thread::sleep(Duration::from_millis(1000));
    let echo = run(&server, &bob, sh("echo bob"));
    assert_eq!(echo["state"], "succeeded", "{echo}");
    assert_eq!(echo["run"]["stdout"], "bob\n");
    let alices: Vec<Value> = backlog.iter().map(|id| wait(&server, &alice, id)).collect();
    let bob_started = time_of(&echo, "started_at");
    let done_before = alices
        .iter()
        .filter(|a| time_of(a, "finished_at") <= bob_started)
        .count();
    let started_before = alices
        .iter()
        .filter(|a| time_of(a, "started_at") < time_of(&echo, "created_at"))
        .count();
    println!(
        "bob's echo waited {:.1} s; {done_before} of alice's 10 jobs (4 s each) ended before it started",
        secs_between(&echo, "created_at", "started_at")
    );
    // First come, first served would run it after 8 of alice's jobs ended
    // (~16 s); fairly it takes the first worker that frees up.
    assert!(
        done_before <= 2,
        "bob's job started after {done_before} of alice's jobs ended: {echo}"
    );
    assert!(started_before >= 1, "alice's jobs should be running first");
}

#[test]
fn one_user_gets_at_most_half_the_workers_by_default() {
    // Two workers: one user may run one job at a time; the other worker
    // stays free, so another user's job starts at once.
    require_docker();
    let server = TestServer::start_with_env(&[("SLIPWAY_EXEC_WORKERS", "2")]);
    let admin = server.setup_admin("admin");
    let alice = server.create_user(&admin, "alice");
    let bob = server.create_user(&admin, "bob");
    let backlog: Vec<String> = (0..4)
        .map(|i| submit_ok(&server, &alice, sh(&format!("sleep 3; echo a{i}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    // The metrics show who waits and whom the cap holds back.
    let (_, text) = scrape(&server, Some(&admin));
    assert_eq!(
        sample(&text, "slipway_exec_queue_users", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "slipway_exec_users_at_running_cap", &[]),
        Some(1.0),
        "{text}"
    );
    let echo = run(&server, &bob, sh("echo bob"));
    assert_eq!(echo["state"], "succeeded", "{echo}");
    let mut alices: Vec<Value> = backlog.iter().map(|id| wait(&server, &alice, id)).collect();
    println!(
        "bob's echo waited {:.1} s behind alice's 4 jobs",
        secs_between(&echo, "created_at", "started_at")
    );
    let first_end = alices
        .iter()
        .map(|a| time_of(a, "finished_at"))
        .min()
        .unwrap();
    assert!(
        time_of(&echo, "started_at") < first_end,
        "bob's job waited for one of alice's although a worker was free: {echo}"
    );
    // Alice's jobs ran one after another: never two at once.
    alices.sort_by_key(|a| time_of(a, "started_at"));
    for pair in alices.windows(2) {
        assert!(
            time_of(&pair[1], "started_at") >= time_of(&pair[0], "finished_at"),
            "two of alice's jobs ran at once: {} and {}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn a_job_that_fills_its_disk_says_so_and_keeps_its_output() {
    let (server, alice, _) = server_with_users(&[]);
    // Files of 15 MiB (one file may hold 16) until the 64 MiB of /work are gone.
    let fill = |dir: &str| {
        format!(
            "i=0; while [ $i -lt 30 ]; do i=$((i+1)); \
             dd if=/dev/zero of={dir}/big$i bs=1M count=15 || break; done"
        )
    };
    let full = run(
        &server,
        &alice,
        sh(&format!("echo before; {}; echo after", fill("/work"))),
    );
    assert_eq!(full["state"], "failed", "{full}");
    let error = full["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("sandbox disk full"), "{full}");
    assert_eq!(full["run"]["disk_full"], true, "{full}");
    assert_eq!(full["run"]["stdout"], "before\nafter\n", "{full}");
    assert!(
        full["run"]["stderr"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{full}"
    );
    assert!(full["run"]["exit_code"].is_i64(), "{full}");

    // /tmp too (with room in memory for its 256 MiB).
    let mut tmp = sh(&format!("echo tmp; {} 2>/dev/null; exit 3", fill("/tmp")));
    tmp["memory_limit"] = json!(1 << 30);
    let tmp = run(&server, &alice, tmp);
    assert_eq!(tmp["run"]["disk_full"], true, "{tmp}");
    assert_eq!(tmp["run"]["exit_code"], 3, "{tmp}");
    assert_eq!(tmp["run"]["stdout"], "tmp\n", "{tmp}");
    assert!(tmp["error"]
        .as_str()
        .unwrap()
        .starts_with("sandbox disk full"));

    // A program that fills its disk and makes room again is fine.
    let tidy = run(
        &server,
        &alice,
        sh(&format!(
            "{} 2>/dev/null; rm big*; echo tidy",
            fill("/work")
        )),
    );
    assert_eq!(tidy["state"], "succeeded", "{tidy}");
    assert_eq!(tidy["run"]["disk_full"], false, "{tidy}");
    assert!(tidy["error"].is_null(), "{tidy}");
}

#[test]
fn every_job_gets_the_servers_cpu_memory_and_pids_limits() {
    let (server, alice, _) = server_with_users(&[
        ("SLIPWAY_EXEC_CPUS", "0.5"),
        ("SLIPWAY_EXEC_PIDS", "40"),
        ("SLIPWAY_EXEC_MEMORY_BYTES", "104857600"),
        ("SLIPWAY_EXEC_MAX_MEMORY_BYTES", "209715200"),
    ]);
    // The sandbox's own cgroup, v2 or v1, as "cpu=<millicpus> pids=<n> mem=<bytes>".
    let probe = "C=/sys/fs/cgroup\n\
        if [ -r $C/cpu.max ]; then read q p < $C/cpu.max; n=$(cat $C/pids.max); m=$(cat $C/memory.max)\n\
        else q=$(cat $C/cpu/cpu.cfs_quota_us); p=$(cat $C/cpu/cpu.cfs_period_us); \
        n=$(cat $C/pids/pids.max); m=$(cat $C/memory/memory.limit_in_bytes); fi\n\
        echo cpu=$((q * 1000 / p)) pids=$n mem=$m";
    let job = run(&server, &alice, sh(probe));
    assert_eq!(
        job["run"]["stdout"], "cpu=500 pids=40 mem=104857600\n",
        "{job}"
    );
    let mut bigger = sh(probe);
    bigger["memory_limit"] = json!(150 << 20);
    let job = run(&server, &alice, bigger);
    assert_eq!(
        job["run"]["stdout"], "cpu=500 pids=40 mem=157286400\n",
        "{job}"
    );
    let mut too_big = sh(probe);
    too_big["memory_limit"] = json!(300 << 20);
    let (status, body, _) = submit(&server, &alice, &too_big);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "invalid"),
        "{body}"
    );
    // Over the memory limit: failed, and said in words.
    let mut hog = sh("x=aaaaaaaaaaaaaaaa; while :; do x=\"$x$x\"; done");
    hog["memory_limit"] = json!(16 << 20);
    let job = run(&server, &alice, hog);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["run"]["oom_killed"], true, "{job}");
    assert!(
        job["error"].as_str().unwrap_or_default().starts_with(
            "out of memory: the program went over the sandbox's memory limit of 16 MiB"
        ),
        "{job}"
    );
}
