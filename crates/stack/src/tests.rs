//! Whole files through [`crate::parse`]: realistic stacks, and malformed or
//! forbidden files, each error checked for its file, line and key.

use crate::{default_file, parse, ParseInput, RepoFiles, StackErrors, DEFAULT_FILES};
use slipway_domain::stack::{
    Constraint, DependsCondition, DeployMode, Healthcheck, Ingress, Mount, MountSource,
    PublishSpec, RestartPolicy, StackSpec, UpdateOrder,
};
use std::collections::{BTreeMap, BTreeSet};

/// A commit's files, in memory.
#[derive(Default)]
struct Repo {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Repo {
    /// The voting app's directories, each with a Dockerfile.
    fn voting() -> Repo {
        let mut repo = Repo::default();
        for dir in ["vote", "result", "worker", "seed-data"] {
            repo = repo.file(&format!("{dir}/Dockerfile"), "FROM scratch\n");
        }
        repo.file("healthchecks/redis.sh", "#!/bin/sh\n")
    }

    fn file(mut self, path: &str, content: &str) -> Repo {
        let mut dir = path;
        while let Some(i) = dir.rfind('/') {
            dir = &dir[..i];
            self.dirs.insert(dir.to_string());
        }
        self.files
            .insert(path.to_string(), content.as_bytes().to_vec());
        self
    }
}

impl RepoFiles for Repo {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).cloned()
    }
    fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_in(
    file_name: &str,
    text: &str,
    vars: &BTreeMap<String, String>,
    repo: &Repo,
) -> Result<StackSpec, StackErrors> {
    parse(&ParseInput {
        file_name,
        text,
        vars,
        files: repo,
    })
}

fn ok(text: &str) -> StackSpec {
    match parse_in("compose.yaml", text, &BTreeMap::new(), &Repo::voting()) {
        Ok(spec) => spec,
        Err(e) => panic!("refused:\n{e}\n---\n{text}"),
    }
}

fn errors(text: &str) -> String {
    match parse_in("compose.yaml", text, &BTreeMap::new(), &Repo::voting()) {
        Ok(spec) => panic!("accepted: {spec:#?}\n---\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// `text` is refused, with an error line containing `want`.
#[track_caller]
fn refused(text: &str, want: &str) {
    let errs = errors(text);
    assert!(
        errs.lines().any(|l| l.contains(want)),
        "expected an error containing {want:?}, got:\n{errs}"
    );
}

fn has_notice(spec: &StackSpec, want: &str) -> bool {
    spec.notices.iter().any(|n| n.contains(want))
}

const VOTING: &str = r#"# The voting app, as deployed on Slipway.
services:
  vote:
    build: ./vote
    ports:
      - "5000:80"
    depends_on:
      redis:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    environment:
      - OPTION_A=Cats
      - OPTION_B=Dogs
    x-slipway:
      path: /
  result:
    build:
      context: ./result
    ports: ["5001:80"]
    depends_on:
      db:
        condition: service_healthy
    x-slipway:
      path: /result
  worker:
    build: ./worker
    depends_on:
      - redis
      - db
  redis:
    image: redis:7-alpine
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 5s
      timeout: 3s
      retries: 5
  db:
    image: postgres:16-alpine
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: ${DB_PASSWORD:-postgres}
    volumes:
      - db-data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 10s
      start_period: 1m30s
  migrate:
    build: ./worker
    command: ./migrate up --verbose
    restart: "no"
    depends_on:
      db:
        condition: service_healthy

volumes:
  db-data:
"#;

#[test]
fn the_voting_stack() {
    let spec = ok(VOTING);
    let order: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        order,
        ["redis", "db", "result", "worker", "migrate", "vote"],
        "dependencies first, file order otherwise"
    );
    assert_eq!(spec.volumes, ["db-data"]);

    let vote = spec.service("vote").unwrap();
    let build = vote.build.as_ref().unwrap();
    assert_eq!(
        (build.context.as_str(), build.dockerfile.as_str()),
        ("vote", "Dockerfile")
    );
    assert_eq!(vote.image, None);
    assert_eq!(vote.ports, [80]);
    assert_eq!(vote.restart, RestartPolicy::Always);
    let deps: Vec<(&str, DependsCondition)> = vote
        .depends_on
        .iter()
        .map(|d| (d.service.as_str(), d.condition))
        .collect();
    assert_eq!(
        deps,
        [
            ("redis", DependsCondition::Healthy),
            ("migrate", DependsCondition::CompletedSuccessfully)
        ]
    );
    assert_eq!(vote.environment["OPTION_A"], "Cats");
    assert_eq!(
        vote.ingress,
        Some(Ingress {
            port: 80,
            domains: vec![],
            path: "/".into(),
            sticky: false,
            health_path: "/".into()
        })
    );
    assert!(!vote.is_task(&spec));

    let result = spec.service("result").unwrap();
    assert_eq!(result.build.as_ref().unwrap().context, "result");
    let ingress = result.ingress.as_ref().unwrap();
    assert_eq!((ingress.port, ingress.path.as_str()), (80, "/result"));
    assert_eq!(ingress.health_path, "/result", "checked where it is routed");

    let worker = spec.service("worker").unwrap();
    assert_eq!(worker.ingress, None);
    assert!(worker
        .depends_on
        .iter()
        .all(|d| d.condition == DependsCondition::Started));
    assert_eq!(worker.depends_on.len(), 2);

    let redis = spec.service("redis").unwrap();
    assert_eq!(redis.image.as_deref(), Some("redis:7-alpine"));
    assert_eq!(
        redis.healthcheck,
        Some(Healthcheck {
            test: vec!["CMD".into(), "redis-cli".into(), "ping".into()],
            interval_ms: 5_000,
            timeout_ms: 3_000,
            retries: 5,
            start_period_ms: 0,
        })
    );

    let db = spec.service("db").unwrap();
    assert_eq!(
        db.mounts,
        [Mount {
            source: MountSource::Volume("db-data".into()),
            target: "/var/lib/postgresql/data".into(),
            read_only: false
        }]
    );
    assert!(db.has_volume());
    assert_eq!(db.environment["POSTGRES_PASSWORD"], "postgres");
    assert_eq!(db.environment["POSTGRES_USER"], "postgres");
    let hc = db.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "pg_isready -U postgres"]);
    assert_eq!(
        (
            hc.interval_ms,
            hc.timeout_ms,
            hc.retries,
            hc.start_period_ms
        ),
        (10_000, 30_000, 3, 90_000)
    );

    let migrate = spec.service("migrate").unwrap();
    assert_eq!(migrate.restart, RestartPolicy::No);
    assert_eq!(
        migrate.command.as_deref(),
        Some(&["./migrate".to_string(), "up".into(), "--verbose".into()][..])
    );
    assert!(migrate.is_task(&spec));
    assert_eq!(migrate.depends_on[0].condition, DependsCondition::Healthy);

    assert!(
        has_notice(&spec, "compose.yaml:6: services.vote.ports: host port 5000 is not published; Slipway's proxy routes to container port 80"),
        "{:#?}",
        spec.notices
    );
    assert!(has_notice(
        &spec,
        "services.result.ports: host port 5001 is not published"
    ));
    assert_eq!(spec.notices.len(), 2, "{:#?}", spec.notices);

    // The app's config fills the interpolation.
    let spec = parse_in(
        "compose.yaml",
        VOTING,
        &vars(&[("DB_PASSWORD", "s3cret")]),
        &Repo::voting(),
    )
    .unwrap();
    assert_eq!(
        spec.service("db").unwrap().environment["POSTGRES_PASSWORD"],
        "s3cret"
    );
}

/// Docker's example-voting-app `compose.yaml`, unedited.
const EXAMPLE_VOTING_APP: &str = r#"# version is optional
services:
  vote:
    build: 
      context: ./vote
      target: dev
    depends_on:
      redis:
        condition: service_healthy 
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 15s
      timeout: 5s
      retries: 3
      start_period: 10s
    volumes:
     - ./vote:/usr/local/app
    ports:
      - "8080:80"
    networks:
      - front-tier
      - back-tier

  result:
    build: ./result
    # use nodemon rather than node for local dev
    entrypoint: nodemon --inspect=0.0.0.0 server.js
    depends_on:
      db:
        condition: service_healthy 
    volumes:
      - ./result:/usr/local/app
    ports:
      - "8081:80"
      - "127.0.0.1:9229:9229"
    networks:
      - front-tier
      - back-tier

  worker:
    build:
      context: ./worker
    depends_on:
      redis:
        condition: service_healthy 
      db:
        condition: service_healthy 
    networks:
      - back-tier

  redis:
    image: redis:alpine
    volumes:
      - "./healthchecks:/healthchecks"
    healthcheck:
      test: /healthchecks/redis.sh
      interval: "5s"
    networks:
      - back-tier

  db:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: "postgres"
      POSTGRES_PASSWORD: "postgres"
    volumes:
      - "db-data:/var/lib/postgresql/data"
      - "./healthchecks:/healthchecks"
    healthcheck:
      test: /healthchecks/postgres.sh
      interval: "5s"
    networks:
      - back-tier

  # this service runs once to seed the database with votes
  # it won't run unless you specify the "seed" profile
  # docker compose --profile seed up -d
  seed:
    build: ./seed-data
    profiles: [seed]
    depends_on:
      vote:
        condition: service_healthy 
    networks:
      - front-tier
    restart: "no"

volumes:
  db-data:

networks:
  front-tier:
  back-tier:
"#;

#[test]
fn docker_example_voting_app() {
    let spec = ok(EXAMPLE_VOTING_APP);
    let order: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["redis", "vote", "db", "result", "worker"]);
    let vote = spec.service("vote").unwrap();
    assert_eq!(vote.build.as_ref().unwrap().target.as_deref(), Some("dev"));
    assert_eq!(
        vote.mounts,
        [Mount {
            source: MountSource::Repo("vote".into()),
            target: "/usr/local/app".into(),
            read_only: true
        }]
    );
    assert_eq!(vote.ingress.as_ref().unwrap().port, 80);
    let result = spec.service("result").unwrap();
    assert_eq!(
        result.entrypoint.as_deref(),
        Some(
            &[
                "nodemon".to_string(),
                "--inspect=0.0.0.0".into(),
                "server.js".into()
            ][..]
        )
    );
    assert_eq!(result.ports, [80, 9229]);
    assert_eq!(result.ingress.as_ref().unwrap().port, 80);
    let redis = spec.service("redis").unwrap();
    assert_eq!(
        redis.healthcheck.as_ref().unwrap().test,
        ["CMD-SHELL", "/healthchecks/redis.sh"]
    );
    assert_eq!(
        redis.mounts[0].source,
        MountSource::Repo("healthchecks".into())
    );
    assert!(spec.service("seed").is_none());
    for want in [
        "compose.yaml:19: services.vote.ports: host port 8080 is not published",
        "services.result.ports: host port 9229 is not published; Slipway's proxy routes to container port 9229",
        "compose.yaml:78: services.seed: has profiles (seed): it is not deployed",
        "networks: custom networks (front-tier, back-tier) are merged into the stack's private network",
        "compose.yaml:17: services.vote.volumes[0]: ./vote is mounted read-only",
    ] {
        assert!(has_notice(&spec, want), "no notice {want:?} in {:#?}", spec.notices);
    }
    // Notices come in line order.
    let lines: Vec<usize> = spec
        .notices
        .iter()
        .map(|n| n.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "{:#?}",
        spec.notices
    );
}

#[test]
fn every_key_of_a_full_service() {
    let text = r#"version: "3.9"
name: shop
x-defaults: &defaults
  restart: unless-stopped
  labels:
    team: web
services:
  web:
    <<: *defaults
    image: ghcr.io/acme/web:1.2
    command: ["gunicorn", "-b", "0.0.0.0:8000", 4]
    entrypoint: ["/entry.sh"]
    environment:
      - DEBUG=false
      - SECRET_KEY
      - EMPTY=
    labels:
      - com.example.tier=front
    working_dir: /srv
    user: "1000:1000"
    expose: ["8000", 9000/tcp, 53/udp]
    tmpfs: [/tmp, "/run:size=64m"]
    secrets:
      - api_key
      - source: db_password
        target: /run/secrets/db_password
    container_name: web1
    init: true
    stop_grace_period: 1m
    logging:
      driver: json-file
    x-notes: ignored
    x-slipway:
      domains: [Shop.Example.com, www.shop.example.com]
      path: /
      sticky: true
      health: /healthz
      port: 8000
      publish: ["2222:22", "5353:53/udp"]
    deploy:
      mode: replicated
      replicas: ${REPLICAS:-3}
      resources:
        limits:
          cpus: "0.5"
          memory: 512M
        reservations:
          memory: 128m
      placement:
        constraints:
          - node.labels.zone == eu-1
          - "node.hostname != spare"
        max_replicas_per_node: 2
      update_config:
        parallelism: 2
        order: start-first
        failure_action: pause
      restart_policy:
        condition: on-failure
      labels:
        com.example.deploy: "yes"
  cache:
    image: memcached
    mem_limit: 64m
    cpus: 0.25
    deploy:
      mode: global
      restart_policy:
        condition: none
      update_config:
        order: stop-first
secrets:
  api_key:
    file: ./api_key.txt
  db_password:
    environment: DB_PASSWORD
"#;
    let spec = parse_in(
        "compose.yaml",
        text,
        &vars(&[("SECRET_KEY", "k3y")]),
        &Repo::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = spec.service("web").unwrap();
    assert_eq!(web.image.as_deref(), Some("ghcr.io/acme/web:1.2"));
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["gunicorn", "-b", "0.0.0.0:8000", "4"]
    );
    assert_eq!(web.entrypoint.as_deref().unwrap(), ["/entry.sh"]);
    assert_eq!(web.environment["DEBUG"], "false");
    assert_eq!(web.environment["SECRET_KEY"], "k3y");
    assert_eq!(web.environment["EMPTY"], "");
    assert_eq!(
        web.restart,
        RestartPolicy::UnlessStopped,
        "the service's `restart` wins"
    );
    assert!(
        !web.labels.contains_key("team"),
        "a merge (<<) is shallow: the service's own `labels` replaces the merged one"
    );
    assert_eq!(web.labels["com.example.tier"], "front");
    assert_eq!(web.labels["com.example.deploy"], "yes");
    assert_eq!(web.working_dir.as_deref(), Some("/srv"));
    assert_eq!(web.user.as_deref(), Some("1000:1000"));
    assert_eq!(web.expose, [8000, 9000]);
    assert_eq!(web.ports, Vec::<u16>::new());
    assert_eq!(
        web.mounts,
        [
            Mount {
                source: MountSource::Tmpfs,
                target: "/tmp".into(),
                read_only: false
            },
            Mount {
                source: MountSource::Tmpfs,
                target: "/run".into(),
                read_only: false
            }
        ]
    );
    assert_eq!(web.secrets, ["api_key", "db_password"]);
    assert_eq!(
        web.ingress,
        Some(Ingress {
            port: 8000,
            domains: vec!["shop.example.com".into(), "www.shop.example.com".into()],
            path: "/".into(),
            sticky: true,
            health_path: "/healthz".into(),
        })
    );
    assert_eq!(
        web.publish,
        [
            PublishSpec {
                container: 22,
                host: 2222,
                protocol: "tcp".into()
            },
            PublishSpec {
                container: 53,
                host: 5353,
                protocol: "udp".into()
            }
        ]
    );
    let d = &web.deploy;
    assert_eq!(d.mode, DeployMode::Replicated);
    assert_eq!(d.replicas, 3);
    assert_eq!(d.nano_cpus, Some(500_000_000));
    assert_eq!(d.memory_bytes, Some(512 << 20));
    assert_eq!(
        d.constraints,
        [
            Constraint {
                attribute: "node.labels.zone".into(),
                equal: true,
                value: "eu-1".into()
            },
            Constraint {
                attribute: "node.hostname".into(),
                equal: false,
                value: "spare".into()
            }
        ]
    );
    assert_eq!(d.max_replicas_per_node, Some(2));
    assert_eq!(d.parallelism, 2);
    assert_eq!(d.order, Some(UpdateOrder::StartFirst));
    assert!(!d.rollback_on_failure);

    let cache = spec.service("cache").unwrap();
    assert_eq!(cache.deploy.mode, DeployMode::Global);
    assert_eq!(cache.deploy.memory_bytes, Some(64 << 20));
    assert_eq!(cache.deploy.nano_cpus, Some(250_000_000));
    assert_eq!(
        cache.restart,
        RestartPolicy::No,
        "deploy.restart_policy applies"
    );
    assert_eq!(cache.deploy.order, Some(UpdateOrder::StopFirst));
    assert!(cache.deploy.rollback_on_failure);
    assert_eq!(cache.ingress, None);

    for want in [
        "compose.yaml:1: version: is obsolete and ignored",
        "compose.yaml:2: name: is ignored",
        "services.web.container_name: is ignored",
        "services.web.init: is ignored",
        "services.web.stop_grace_period: is ignored",
        "services.web.logging: is ignored",
        "services.web.deploy.resources.reservations: is ignored",
        "secrets.api_key: its source is not read: Slipway mounts the app's secret \"api_key\"",
    ] {
        assert!(
            has_notice(&spec, want),
            "no notice {want:?} in {:#?}",
            spec.notices
        );
    }
    // The replicas count came from a default, not from an unset variable.
    assert!(!has_notice(&spec, "REPLICAS"));
}

#[test]
fn interpolation() {
    let text = r#"services:
  app:
    image: "registry.example.com/app:${TAG:-latest}"
    environment:
      URL: postgres://${DB_USER}:${DB_PASS}@db/$DB_NAME
      PRICE: "$$5"
      MODE: ${MODE-fallback}
      LEVEL: ${LEVEL:+verbose}
      MISSING: ${NOT_SET}
    deploy:
      replicas: ${REPLICAS}
"#;
    let v = vars(&[
        ("DB_USER", "app"),
        ("DB_PASS", "pw"),
        ("DB_NAME", "shop"),
        ("MODE", ""),
        ("LEVEL", "1"),
        ("REPLICAS", "2"),
    ]);
    let spec = parse_in("compose.yaml", text, &v, &Repo::default()).unwrap();
    let app = spec.service("app").unwrap();
    assert_eq!(
        app.image.as_deref(),
        Some("registry.example.com/app:latest")
    );
    assert_eq!(app.environment["URL"], "postgres://app:pw@db/shop");
    assert_eq!(app.environment["PRICE"], "$5");
    assert_eq!(app.environment["MODE"], "");
    assert_eq!(app.environment["LEVEL"], "verbose");
    assert_eq!(app.environment["MISSING"], "");
    assert_eq!(app.deploy.replicas, 2);
    assert!(
        has_notice(
            &spec,
            "compose.yaml:9: services.app.environment.MISSING: variable NOT_SET is not set: an empty string is used"
        ),
        "{:#?}",
        spec.notices
    );

    let required = "services:\n  app:\n    image: app\n    environment:\n      KEY: ${API_KEY:?set API_KEY in the app's config}\n";
    refused(
        required,
        "compose.yaml:5: services.app.environment.KEY: required variable API_KEY is missing a value: set API_KEY in the app's config",
    );
    refused(
        "services:\n  app:\n    image: app\n    command: echo $1\n",
        "compose.yaml:4: services.app.command: \"echo $1\": invalid interpolation (write $$ for a literal $)",
    );
    refused(
        "services:\n  app:\n    image: app:${TAG\n",
        "compose.yaml:3: services.app.image: \"app:${TAG\": unterminated ${",
    );
}

#[test]
fn env_files_are_read_next_to_the_compose_file() {
    let text = r#"services:
  api:
    image: api
    env_file:
      - ./common.env
      - path: ./local.env
        required: false
      - ../shared/extra.env
    environment:
      LOG: debug
"#;
    let repo = Repo::default()
        .file(
            "deploy/common.env",
            "# shared settings\nexport LOG=info\nGREETING=\"hello world\"\nHOST=${HOSTNAME:-localhost} # where\nRAW='${NOT_INTERPOLATED}'\nTOKEN\n",
        )
        .file("shared/extra.env", "EXTRA=1\n");
    let spec = parse_in(
        "deploy/docker-compose.yml",
        text,
        &vars(&[("TOKEN", "t0k")]),
        &repo,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let env = &spec.service("api").unwrap().environment;
    assert_eq!(env["LOG"], "debug", "environment overrides env_file");
    assert_eq!(env["GREETING"], "hello world");
    assert_eq!(env["HOST"], "localhost");
    assert_eq!(env["RAW"], "${NOT_INTERPOLATED}");
    assert_eq!(env["TOKEN"], "t0k");
    assert_eq!(env["EXTRA"], "1");

    let err = parse_in(
        "deploy/docker-compose.yml",
        "services:\n  api:\n    image: api\n    env_file: missing.env\n",
        &BTreeMap::new(),
        &repo,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("deploy/docker-compose.yml:4: services.api.env_file: \"missing.env\": no file \"deploy/missing.env\" in the repository"),
        "{err}"
    );
    let bad = repo.file("deploy/bad.env", "A=1\nthis is not a variable\n");
    let err = parse_in(
        "deploy/docker-compose.yml",
        "services:\n  api:\n    image: api\n    env_file: [bad.env]\n",
        &BTreeMap::new(),
        &bad,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("deploy/docker-compose.yml:4: services.api.env_file: deploy/bad.env:2: expected KEY=VALUE"),
        "{err}"
    );
}

#[test]
fn bind_mounts_are_normalized_read_only_repository_directories() {
    let text = r#"services:
  proxy:
    image: nginx
    volumes:
      - ./nginx/conf.d:/etc/nginx/conf.d:ro
      - ../static/:/usr/share/nginx/html
      - .:/src
      - type: bind
        source: ./nginx
        target: /nginx
      - type: tmpfs
        target: /var/cache/nginx
      - type: volume
        source: logs
        target: /var/log/nginx
        read_only: true
volumes:
  logs: {}
"#;
    let repo = Repo::default()
        .file("deploy/nginx/conf.d/site.conf", "server {}\n")
        .file("static/index.html", "<p>hi</p>\n");
    let spec = parse_in("deploy/compose.yaml", text, &BTreeMap::new(), &repo)
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = spec.service("proxy").unwrap();
    let sources: Vec<(&MountSource, &str, bool)> = proxy
        .mounts
        .iter()
        .map(|m| (&m.source, m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        sources,
        [
            (
                &MountSource::Repo("deploy/nginx/conf.d".into()),
                "/etc/nginx/conf.d",
                true
            ),
            (
                &MountSource::Repo("static".into()),
                "/usr/share/nginx/html",
                true
            ),
            (&MountSource::Repo("deploy".into()), "/src", true),
            (&MountSource::Repo("deploy/nginx".into()), "/nginx", true),
            (&MountSource::Tmpfs, "/var/cache/nginx", false),
            (&MountSource::Volume("logs".into()), "/var/log/nginx", true),
        ]
    );
    assert!(has_notice(
        &spec,
        "deploy/compose.yaml:6: services.proxy.volumes[1]: ../static/ is mounted read-only"
    ));
    assert!(
        !has_notice(&spec, "volumes[0]"),
        "ro was asked: {:#?}",
        spec.notices
    );
}

#[test]
fn profiles_drop_services() {
    let text = r#"services:
  app:
    image: app
    depends_on:
      debug:
        condition: service_started
        required: false
  debug:
    image: busybox
    profiles: [debug]
  admin:
    image: adminer
    profiles:
      - tools
"#;
    let spec = ok(text);
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app"]);
    assert!(spec.service("app").unwrap().depends_on.is_empty());
    assert!(has_notice(
        &spec,
        "compose.yaml:8: services.debug: has profiles (debug): it is not deployed"
    ));
    assert!(has_notice(&spec, "services.admin: has profiles (tools)"));
    assert!(has_notice(
        &spec,
        "compose.yaml:5: services.app.depends_on: \"debug\" is not deployed"
    ));

    refused(
        "services:\n  app:\n    image: app\n    depends_on: [debug]\n  debug:\n    image: busybox\n    profiles: [debug]\n",
        "compose.yaml:4: services.app.depends_on: depends on \"debug\", which is not deployed (it has profiles)",
    );
    refused(
        "services:\n  debug:\n    image: busybox\n    profiles: [debug]\n",
        "compose.yaml:1: services: every service has profiles",
    );
}

#[test]
fn healthchecks_restart_and_long_ports() {
    let text = r#"services:
  a:
    image: a
    healthcheck:
      test: ["NONE"]
    restart: on-failure:5
    ports:
      - target: 8080
        published: "80"
        protocol: tcp
        mode: host
  b:
    image: b
    healthcheck:
      disable: true
    restart: on-failure
  c:
    image: c
    healthcheck:
      test: curl -f http://localhost/ || exit 1
      interval: 1m30s
      timeout: 500ms
      retries: 10
      start_period: 0
"#;
    let spec = ok(text);
    let a = spec.service("a").unwrap();
    assert_eq!(a.healthcheck, None);
    assert_eq!(a.restart, RestartPolicy::OnFailure);
    assert_eq!(a.ports, [8080]);
    assert!(has_notice(
        &spec,
        "services.a.restart: the retry limit is ignored"
    ));
    assert!(has_notice(&spec, "compose.yaml:8: services.a.ports: host port 80 is not published; Slipway's proxy routes to container port 8080"));
    assert_eq!(spec.service("b").unwrap().healthcheck, None);
    let d = ok("services:\n  d:\n    image: d\n    healthcheck:\n      test: NONE\n");
    assert_eq!(d.services[0].healthcheck, None);
    let c = spec.service("c").unwrap().healthcheck.clone().unwrap();
    assert_eq!(c.test, ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]);
    assert_eq!((c.interval_ms, c.timeout_ms, c.retries), (90_000, 500, 10));
}

#[test]
fn the_default_file_names() {
    assert_eq!(DEFAULT_FILES[0], "compose.yaml");
    let repo = Repo::default()
        .file("docker-compose.yml", "")
        .file("compose.yml", "");
    assert_eq!(default_file(&repo), Some("compose.yml"));
    assert_eq!(default_file(&Repo::default()), None);
}

// ---- refused files -------------------------------------------------------

#[test]
fn privileged_is_refused() {
    refused(
        "services:\n  web:\n    image: nginx\n  db:\n    image: postgres\n    privileged: true\n",
        "compose.yaml:6: services.db.privileged: not allowed (containers run unprivileged)",
    );
    refused(
        "services:\n  db:\n    image: postgres\n    privileged: yes\n",
        "compose.yaml:4: services.db.privileged: not allowed",
    );
    refused(
        "services:\n  db:\n    image: postgres\n    privileged: ${PRIV:-true}\n",
        "compose.yaml:4: services.db.privileged: not allowed",
    );
    refused(
        "services:\n  db:\n    image: postgres\n    privileged: maybe\n",
        "compose.yaml:4: services.db.privileged: expected true or false, found \"maybe\"",
    );
    ok("services:\n  db:\n    image: postgres\n    privileged: false\n");
}

#[test]
fn host_namespaces_are_refused() {
    for (key, value, why) in [
        (
            "network_mode",
            "host",
            "not allowed (each stack runs on its own private network)",
        ),
        ("network_mode", "bridge", "not allowed"),
        ("pid", "host", "not allowed"),
        (
            "ipc",
            "host",
            "not allowed (containers cannot share an IPC namespace)",
        ),
        ("userns_mode", "host", "not allowed"),
        ("uts", "host", "not allowed"),
        ("cgroup", "host", "not allowed"),
    ] {
        refused(
            &format!("services:\n  web:\n    image: nginx\n    {key}: {value}\n"),
            &format!("compose.yaml:4: services.web.{key}: {why}"),
        );
    }
}

#[test]
fn capabilities_devices_and_kernel_settings_are_refused() {
    refused(
        "services:\n  web:\n    image: nginx\n    cap_add:\n      - NET_ADMIN\n",
        "compose.yaml:4: services.web.cap_add: not allowed (containers cannot gain capabilities)",
    );
    refused(
        "services:\n  web:\n    image: nginx\n    devices:\n      - /dev/kvm:/dev/kvm\n",
        "compose.yaml:4: services.web.devices: not allowed",
    );
    refused(
        "services:\n  web:\n    image: nginx\n    security_opt: [\"seccomp:unconfined\"]\n",
        "compose.yaml:4: services.web.security_opt: not allowed",
    );
    refused(
        "services:\n  web:\n    image: nginx\n    sysctls:\n      net.core.somaxconn: 1024\n",
        "compose.yaml:4: services.web.sysctls: not allowed",
    );
}

#[test]
fn host_paths_are_refused() {
    refused(
        "services:\n  ci:\n    image: docker\n    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n",
        "compose.yaml:5: services.ci.volumes[0]: \"/var/run/docker.sock\": host paths are not allowed",
    );
    refused(
        "services:\n  ci:\n    image: docker\n    volumes:\n      - ./data:/data\n      - ~/.ssh:/root/.ssh:ro\n",
        "compose.yaml:6: services.ci.volumes[1]: \"~/.ssh\": host paths are not allowed",
    );
    refused(
        "services:\n  ci:\n    image: docker\n    volumes:\n      - type: bind\n        source: /etc\n        target: /host-etc\n",
        "compose.yaml:6: services.ci.volumes[0]: \"/etc\": host paths are not allowed",
    );
}

#[test]
fn escaping_the_repository_is_refused() {
    refused(
        "services:\n  web:\n    image: nginx\n    volumes:\n      - ../../etc:/etc/host:ro\n",
        "compose.yaml:5: services.web.volumes[0]: \"../../etc\" leaves the repository",
    );
    refused(
        "services:\n  web:\n    build: ../outside\n",
        "compose.yaml:3: services.web.build: \"../outside\" leaves the repository",
    );
}

#[test]
fn bind_mounts_need_a_directory_of_the_repository() {
    refused(
        "services:\n  web:\n    image: nginx\n    volumes:\n      - ./healthchecks/redis.sh:/check.sh:ro\n",
        "compose.yaml:5: services.web.volumes[0]: \"./healthchecks/redis.sh\" (healthchecks/redis.sh) is a file",
    );
    refused(
        "services:\n  web:\n    image: nginx\n    volumes:\n      - ./nowhere:/x\n",
        "compose.yaml:5: services.web.volumes[0]: \"./nowhere\" (nowhere) is not a directory of the repository",
    );
}

#[test]
fn dependency_cycles_are_named() {
    refused(
        "services:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    depends_on: [a]\n",
        "compose.yaml:4: services.a.depends_on: dependency cycle: a → b → a",
    );
    refused(
        "services:\n  web:\n    image: w\n  a:\n    image: a\n    depends_on: [c]\n  b:\n    image: b\n    depends_on:\n      a:\n        condition: service_started\n  c:\n    image: c\n    depends_on: [b]\n",
        "compose.yaml:6: services.a.depends_on: dependency cycle: a → c → b → a",
    );
    refused(
        "services:\n  a:\n    image: a\n    depends_on: [a]\n",
        "services.a.depends_on: dependency cycle: a → a",
    );
}

#[test]
fn unknown_dependencies_are_refused() {
    refused(
        "services:\n  web:\n    image: w\n    depends_on:\n      - db\n",
        "compose.yaml:5: services.web.depends_on: depends on \"db\", which is not a service of this file",
    );
    let spec = ok("services:\n  web:\n    image: w\n    depends_on:\n      cache:\n        condition: service_started\n        required: false\n");
    assert!(spec.services[0].depends_on.is_empty());
    assert!(has_notice(&spec, "compose.yaml:5: services.web.depends_on: \"cache\" is not a service of this file; not waited for"));
    refused(
        "services:\n  web:\n    image: w\n    depends_on:\n      db:\n        condition: service_ready\n  db:\n    image: d\n",
        "compose.yaml:6: services.web.depends_on.db.condition: \"service_ready\": expected service_started",
    );
}

#[test]
fn bad_durations_are_refused() {
    refused(
        "services:\n  db:\n    image: d\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 10\n",
        "compose.yaml:6: services.db.healthcheck.interval: \"10\" is not a duration: a unit is missing",
    );
    refused(
        "services:\n  db:\n    image: d\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      timeout: 5 minutes\n",
        "compose.yaml:6: services.db.healthcheck.timeout: \"5 minutes\" is not a duration",
    );
}

#[test]
fn bad_ports_are_refused() {
    refused(
        "services:\n  web:\n    image: w\n    ports:\n      - \"8000-8010:8000-8010\"\n",
        "compose.yaml:5: services.web.ports[0]: \"8000-8010:8000-8010\": \"8000-8010\": port ranges are not supported",
    );
    refused(
        "services:\n  web:\n    image: w\n    ports:\n      - 80\n      - \"99999\"\n",
        "compose.yaml:6: services.web.ports[1]: \"99999\": \"99999\" is not a port",
    );
    refused(
        "services:\n  dns:\n    image: w\n    ports:\n      - \"53:53/udp\"\n",
        "compose.yaml:5: services.dns.ports[0]: UDP port 53 cannot be routed by the proxy: publish it with x-slipway.publish",
    );
    refused(
        "services:\n  web:\n    image: w\n    expose: [\"http\"]\n",
        "compose.yaml:4: services.web.expose: \"http\" is not a port",
    );
    refused(
        "services:\n  ssh:\n    image: w\n    x-slipway:\n      publish: [\"22:22\"]\n",
        "compose.yaml:5: services.ssh.x-slipway.publish: \"22:22\": host port 22 is reserved; use 1024-65535",
    );
}

#[test]
fn duplicate_routes_are_refused() {
    refused(
        r#"services:
  api:
    image: api
    expose: [8080]
    x-slipway:
      domains: [shop.example.com]
      path: /api
  api2:
    image: api
    expose: [8080]
    x-slipway:
      domains: [www.example.com, shop.example.com]
      path: /api
"#,
        "compose.yaml:12: services.api2.x-slipway: same route as services.api (shop.example.com, path /api)",
    );
    refused(
        "services:\n  a:\n    image: a\n    ports: [\"80\"]\n    x-slipway:\n      path: /app\n  b:\n    image: b\n    ports: [\"80\"]\n    x-slipway:\n      path: /app\n",
        "compose.yaml:11: services.b.x-slipway: same route as services.a (the app's host names, path /app)",
    );
    // Two services routed without explicit paths: the second gets its own host name.
    ok("services:\n  a:\n    image: a\n    ports: [\"80\"]\n  b:\n    image: b\n    ports: [\"80\"]\n");
    refused(
        "services:\n  a:\n    image: a\n    x-slipway:\n      publish: [\"2222:22\"]\n  b:\n    image: b\n    x-slipway:\n      publish: [\"2222:22\"]\n",
        "compose.yaml:9: services.b.x-slipway.publish: host port 2222/tcp is also published by services.a",
    );
}

#[test]
fn ingress_needs_a_port() {
    refused(
        "services:\n  web:\n    image: w\n    x-slipway:\n      domains: [example.com]\n",
        "compose.yaml:5: services.web.x-slipway: no port to route to",
    );
    refused(
        "services:\n  web:\n    image: w\n    expose: [80]\n    x-slipway:\n      domains: [not_a_domain!]\n      path: api\n",
        "compose.yaml:6: services.web.x-slipway.domains: \"not_a_domain!\" is not a valid host name",
    );
    refused(
        "services:\n  web:\n    image: w\n    expose: [80]\n    x-slipway:\n      path: api\n",
        "compose.yaml:6: services.web.x-slipway.path: \"api\": a path prefix starts with /",
    );
    // Only publishing raw ports does not route HTTP.
    let spec = ok(
        "services:\n  game:\n    image: g\n    x-slipway:\n      publish: [\"27015:27015/udp\"]\n",
    );
    assert_eq!(spec.services[0].ingress, None);
    // The first `expose` is routed to when x-slipway says how.
    let spec = ok("services:\n  web:\n    image: w\n    expose: [3000, 3001]\n    x-slipway:\n      sticky: true\n");
    assert_eq!(spec.services[0].ingress.as_ref().unwrap().port, 3000);
}

#[test]
fn extends_include_and_configs_are_refused() {
    refused(
        "services:\n  web:\n    extends:\n      file: common.yml\n      service: base\n",
        "compose.yaml:3: services.web.extends: not supported",
    );
    refused(
        "include:\n  - other.yaml\nservices:\n  web:\n    image: w\n",
        "compose.yaml:1: include: not supported",
    );
    refused(
        "services:\n  web:\n    image: w\nconfigs:\n  site:\n    file: ./site.conf\n",
        "compose.yaml:4: configs: not supported",
    );
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    refused(
        "services:\n  web:\n    imag: nginx\n",
        "compose.yaml:3: services.web.imag: unknown key",
    );
    refused(
        "servics:\n  web:\n    image: nginx\n",
        "compose.yaml:1: servics: unknown key",
    );
    refused(
        "services:\n  web:\n    image: w\n    deploy:\n      resources:\n        limits:\n          gpu: 1\n",
        "compose.yaml:7: services.web.deploy.resources.limits.gpu: unknown key",
    );
    refused(
        "services:\n  web:\n    image: w\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      retry: 3\n",
        "compose.yaml:6: services.web.healthcheck.retry: unknown key",
    );
    refused(
        "services:\n  web:\n    image: w\n    x-slipway:\n      domain: example.com\n",
        "compose.yaml:5: services.web.x-slipway.domain: unknown key",
    );
    // x- keys are ignored at every level.
    ok("x-top: 1\nservices:\n  web:\n    image: w\n    x-mine: {a: 1}\n    deploy:\n      x-note: hi\n");
}

#[test]
fn volumes_must_be_named_and_declared() {
    refused(
        "services:\n  db:\n    image: d\n    volumes:\n      - /var/lib/data\n",
        "compose.yaml:5: services.db.volumes[0]: \"/var/lib/data\": anonymous volumes are not supported: name it (data:/var/lib/data)",
    );
    refused(
        "services:\n  db:\n    image: d\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n",
        "compose.yaml:5: services.db.volumes[0]: volume \"pgdata\" is not declared in the top-level `volumes:`",
    );
    refused(
        "services:\n  db:\n    image: d\nvolumes:\n  data:\n    external: true\n",
        "compose.yaml:6: volumes.data.external: not supported",
    );
    refused(
        "services:\n  db:\n    image: d\nvolumes:\n  data:\n    driver_opts:\n      type: none\n      o: bind\n      device: /srv\n",
        "compose.yaml:6: volumes.data.driver_opts: not allowed (driver options can mount host paths)",
    );
    refused(
        "services:\n  db:\n    image: d\n    volumes:\n      - data:/a\n      - data:/a\nvolumes:\n  data:\n",
        "compose.yaml:6: services.db.volumes[1]: two mounts at \"/a\"",
    );
}

#[test]
fn slipway_labels_and_bad_names_are_refused() {
    refused(
        "services:\n  web:\n    image: w\n    labels:\n      io.slipway.app: other\n",
        "compose.yaml:5: services.web.labels: \"io.slipway.app\": io.slipway.* labels are Slipway's own",
    );
    refused(
        "services:\n  Web:\n    image: w\n",
        "compose.yaml:2: services.Web: invalid service name",
    );
    refused(
        "services:\n  web:\n    environment:\n      A: b\n",
        "compose.yaml:2: services.web: needs `image` or `build`",
    );
    refused(
        "services: {}\n",
        "compose.yaml:1: services: at least one service is required",
    );
    refused("version: '3'\n", "compose.yaml:1: services: is required");
    refused("", "compose.yaml:1: the file is empty");
}

#[test]
fn bad_values_are_refused() {
    refused(
        "services:\n  web:\n    image: w\n    restart: sometimes\n",
        "compose.yaml:4: services.web.restart: \"sometimes\": expected \"no\", always, on-failure[:N] or unless-stopped",
    );
    refused(
        "services:\n  web:\n    image: w\n    healthcheck:\n      test: [\"curl\", \"-f\", \"localhost\"]\n",
        "compose.yaml:5: services.web.healthcheck.test: a list must start with CMD, CMD-SHELL or NONE",
    );
    refused(
        "services:\n  web:\n    image: w\n    healthcheck:\n      interval: 5s\n",
        "compose.yaml:5: services.web.healthcheck: `test` is required",
    );
    refused(
        "services:\n  web:\n    image: w\n    deploy:\n      placement:\n        constraints: [node.role == manager]\n",
        "compose.yaml:6: services.web.deploy.placement.constraints: \"node.role == manager\": only node.hostname and node.labels.KEY constraints are supported",
    );
    refused(
        "services:\n  web:\n    image: w\n    deploy:\n      mode: global\n      replicas: 3\n",
        "compose.yaml:6: services.web.deploy.replicas: cannot be set with mode: global",
    );
    refused(
        "services:\n  web:\n    image: w\n    deploy:\n      resources:\n        limits:\n          memory: lots\n",
        "compose.yaml:7: services.web.deploy.resources.limits.memory: memory \"lots\": expected a size",
    );
    refused(
        "services:\n  web:\n    image: w\n    deploy:\n      replicas: many\n",
        "compose.yaml:5: services.web.deploy.replicas: expected a whole number from 0 to 1000, found \"many\"",
    );
    refused(
        "services:\n  web:\n    image: w\n    ports: \"80:80\"\n",
        "compose.yaml:4: services.web.ports: expected a list, found a scalar",
    );
    refused(
        "services:\n  web:\n    image: w\n    command: \"echo 'unclosed\"\n",
        "compose.yaml:4: services.web.command: \"echo 'unclosed\": unterminated ' quote",
    );
}

#[test]
fn secrets_must_be_declared() {
    refused(
        "services:\n  web:\n    image: w\n    secrets:\n      - db_password\n",
        "compose.yaml:5: services.web.secrets[0]: secret \"db_password\" is not declared in the top-level `secrets:`",
    );
    refused(
        "services:\n  web:\n    image: w\n    secrets:\n      - source: key\n        target: /etc/key.pem\nsecrets:\n  key:\n    file: key.pem\n",
        "compose.yaml:6: services.web.secrets[0].target: \"/etc/key.pem\": secrets are mounted at /run/secrets/key",
    );
}

#[test]
fn builds_are_checked() {
    refused(
        "services:\n  web:\n    build: ./missing\n",
        "compose.yaml:3: services.web.build: \"./missing\": no directory \"missing\" in the repository",
    );
    assert_eq!(
        errors("services:\n  web:\n    build: ./missing\n")
            .lines()
            .count(),
        1,
        "one error, not also \"needs image or build\""
    );
    refused(
        "services:\n  web:\n    build:\n      context: ./vote\n      dockerfile: Dockerfile.prod\n",
        "compose.yaml:5: services.web.build: no Dockerfile \"vote/Dockerfile.prod\" in the repository",
    );
    refused(
        "services:\n  web:\n    build: https://github.com/acme/web.git\n",
        "compose.yaml:3: services.web.build: \"https://github.com/acme/web.git\": remote build contexts are not supported",
    );
    refused(
        "services:\n  web:\n    build:\n      context: .\n      network: host\n",
        "compose.yaml:5: services.web.build.network: not allowed",
    );
    refused(
        "services:\n  web:\n    build:\n      context: ./vote\n      dockerfile: ../result/Dockerfile\n",
        "compose.yaml:5: services.web.build: the Dockerfile \"result/Dockerfile\" is outside the build context \"vote\"",
    );
    let spec = parse_in(
        "deploy/compose.yaml",
        "services:\n  web:\n    build:\n      context: ..\n      dockerfile: ./docker/web.Dockerfile\n",
        &BTreeMap::new(),
        &Repo::default().file("docker/web.Dockerfile", "FROM scratch\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let build = spec.services[0].build.as_ref().unwrap();
    assert_eq!(
        (build.context.as_str(), build.dockerfile.as_str()),
        (".", "docker/web.Dockerfile")
    );
    let spec = ok("services:\n  web:\n    image: acme/web\n    build:\n      context: vote\n      args:\n        - VERSION=1.2\n        - UNSET_ARG\n");
    let web = &spec.services[0];
    assert_eq!(web.image.as_deref(), Some("acme/web"));
    let build = web.build.as_ref().unwrap();
    assert_eq!(build.context, "vote");
    assert_eq!(build.args.len(), 1);
    assert_eq!(build.args["VERSION"], "1.2");
}

#[test]
fn yaml_problems_have_lines() {
    refused(
        "services:\n  web:\n    image: w\n    ports: [80\n",
        "compose.yaml:4: invalid YAML",
    );
    refused(
        "services:\n  web:\n    image: w\n    image: v\n",
        "compose.yaml:4: duplicate key \"image\" (already set on line 3)",
    );
    refused(
        "services:\n  web:\n    image: w\n---\nservices: {}\n",
        "compose.yaml:4: only one YAML document",
    );
    refused(
        "services:\n  web:\n    image: !reset null\n",
        "compose.yaml:3: the YAML tag !reset is not supported",
    );
}

#[test]
fn input_is_bounded() {
    let mut big = String::from("services:\n  web:\n    image: w\n    environment:\n");
    while big.len() <= crate::MAX_FILE_BYTES {
        big.push_str("      KEY_WITH_A_LONG_NAME_TO_FILL_THE_FILE: some value to fill the file\n");
    }
    refused(
        &big,
        "compose.yaml:1: the file is 257 KiB; at most 256 KiB is accepted",
    );

    let mut many = String::from("services:\n");
    for i in 0..65 {
        many.push_str(&format!("  s{i}:\n    image: w\n"));
    }
    refused(
        &many,
        "compose.yaml:1: services: 65 services; at most 64 are accepted",
    );

    let mut bomb = String::from("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 9].join(", ");
        bomb.push_str(&format!("x-l{i}: &l{i} [{refs}]\n"));
    }
    bomb.push_str("services:\n  web:\n    image: w\n    command: *l8\n");
    refused(&bomb, "too large once its aliases are expanded");

    let deep = format!(
        "services:\n  web:\n    image: w\n    x-deep: {}{}\n",
        "[".repeat(64),
        "]".repeat(64)
    );
    refused(
        &deep,
        "compose.yaml:4: the document is nested more than 32 levels deep",
    );
}

#[test]
fn all_errors_are_listed_in_line_order() {
    let text = "services:\n  web:\n    image: w\n    privileged: true\n    network_mode: host\n    volumes:\n      - /:/host\n  db:\n    image: d\n    cap_add: [ALL]\n    depends_on: [nothing]\n";
    let errs = match parse_in("compose.yaml", text, &BTreeMap::new(), &Repo::default()) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    let lines: Vec<usize> = errs.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 5, 7, 10, 11]);
    assert_eq!(errs.more, 0);
    let shown = errs.to_string();
    assert_eq!(shown.lines().count(), 5);
    assert!(shown.starts_with("compose.yaml:4: services.web.privileged: not allowed"));

    let mut many = String::from("services:\n");
    for i in 0..30 {
        many.push_str(&format!("  s{i}:\n    image: w\n    privileged: true\n"));
    }
    let errs = parse_in("compose.yaml", &many, &BTreeMap::new(), &Repo::default()).unwrap_err();
    assert_eq!(errs.errors.len(), crate::MAX_ERRORS);
    assert_eq!(errs.more, 10);
    assert!(errs.to_string().ends_with("… and 10 more"));
}

#[test]
fn anchors_and_merges_as_compose_files_use_them() {
    let text = r#"x-common: &common
  image: app:1
  environment: &env
    LOG: info
  restart: always
services:
  web:
    <<: *common
    command: web
    ports: ["8000"]
  worker:
    <<: *common
    command: worker
    environment:
      <<: *env
      QUEUE: default
    restart: on-failure
"#;
    let spec = ok(text);
    let web = spec.service("web").unwrap();
    assert_eq!(web.image.as_deref(), Some("app:1"));
    assert_eq!(web.environment["LOG"], "info");
    let worker = spec.service("worker").unwrap();
    assert_eq!(worker.restart, RestartPolicy::OnFailure);
    assert_eq!(worker.environment.len(), 2);
    // An error inside merged content points at where it is written.
    refused(
        "x-bad: &bad\n  privileged: true\nservices:\n  web:\n    <<: *bad\n    image: w\n",
        "compose.yaml:2: services.web.privileged: not allowed",
    );
}
