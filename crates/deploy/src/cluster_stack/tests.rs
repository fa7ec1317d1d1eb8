use super::*;
use slipway_cluster::etcd::ReplicaReport;
use slipway_domain::stack::{
    Constraint, Dependency, DependsCondition, Healthcheck, Ingress, Mount, RestartPolicy,
    ServiceDeploy,
};
use slipway_domain::AppSpec;

fn app() -> AppRecord {
    let mut spec = AppSpec::default();
    spec.env.insert("MODE".into(), "prod".into());
    spec.env.insert("TOKEN".into(), "sealed".into());
    spec.service_replicas.insert("web".into(), 3);
    AppRecord {
        id: 1,
        name: "shop".into(),
        repo_id: 1,
        owner_id: 1,
        spec,
        release: Some(4),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

fn stack() -> StackSpec {
    let db = ServiceSpec {
        name: "db".into(),
        image: Some("postgres:16".into()),
        expose: vec![5432],
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "pg_isready".into()],
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 3,
            start_period_ms: 0,
        }),
        secrets: vec!["TOKEN".into()],
        mounts: vec![Mount {
            source: MountSource::Volume("pgdata".into()),
            target: "/var/lib/postgresql/data".into(),
            read_only: false,
        }],
        deploy: ServiceDeploy {
            constraints: vec![Constraint {
                attribute: "node.labels.disk".into(),
                equal: true,
                value: "ssd".into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let migrate = ServiceSpec {
        name: "migrate".into(),
        image: Some("app:1".into()),
        restart: RestartPolicy::No,
        depends_on: vec![Dependency {
            service: "db".into(),
            condition: DependsCondition::Healthy,
        }],
        ..Default::default()
    };
    let web = ServiceSpec {
        name: "web".into(),
        image: Some("app:1".into()),
        ports: vec![8080, 9090],
        ingress: Some(Ingress {
            port: 8080,
            domains: vec![],
            path: "/api".into(),
            sticky: true,
            health_path: "/api/health".into(),
        }),
        depends_on: vec![Dependency {
            service: "migrate".into(),
            condition: DependsCondition::CompletedSuccessfully,
        }],
        environment: [("MODE".to_string(), "web".to_string())].into(),
        deploy: ServiceDeploy {
            max_replicas_per_node: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let agent = ServiceSpec {
        name: "agent".into(),
        image: Some("agent:1".into()),
        deploy: ServiceDeploy {
            mode: DeployMode::Global,
            ..Default::default()
        },
        ..Default::default()
    };
    StackSpec {
        services: vec![db, migrate, web, agent],
        ..Default::default()
    }
}

fn demand(svc: &str) -> AppDemand {
    let (app, stack) = (app(), stack());
    let secrets = SecretSource {
        server: "http://10.0.0.10:7700".into(),
        names: vec!["TOKEN".into()],
    };
    member_demand(
        &app,
        &stack,
        stack.service(svc).unwrap(),
        vec!["shop.apps.test".into()],
        Some(&secrets),
        Some(&StackFiles {
            server: "http://10.0.0.10:7700".into(),
            sha: "0123456789abcdef".into(),
        }),
        slipway_domain::Resources {
            memory_bytes: Some(128 << 20),
            nano_cpus: Some(500_000_000),
        },
    )
}

#[test]
fn services_become_demands_with_their_placement_ports_and_routes() {
    let db = demand("db");
    assert_eq!(db.app, "shop.db");
    assert_eq!(db.replicas, 1);
    assert_eq!(db.request, Resources::new(500, 128 << 20));
    assert_eq!(db.rules[0].to_string(), "node.labels.disk == ssd");
    assert!(db.hosts.is_empty(), "no ingress, no hosts");
    let t = db.container.as_ref().unwrap();
    let m = t.stack.as_ref().unwrap();
    assert_eq!((m.ports.as_slice(), t.port), (&[5432][..], 5432));
    assert!(
        m.stop_first,
        "a service with a volume is replaced stop-first"
    );
    assert_eq!(m.mounts[0].volume.as_deref(), Some("pgdata"));
    assert_eq!(m.secret_files, ["TOKEN"], "secrets: become files on agents");
    assert!(m.healthcheck.is_some());
    // Secret values never reach etcd: only their names.
    assert!(!t.env.contains_key("TOKEN"));
    assert_eq!(t.env["MODE"], "prod");

    let web = demand("web");
    assert_eq!(web.replicas, 3, "the app's scale override wins");
    assert_eq!(web.max_per_node, Some(1));
    assert_eq!(web.hosts, ["shop.apps.test"]);
    let t = web.container.as_ref().unwrap();
    let m = t.stack.as_ref().unwrap();
    assert_eq!(m.ports, [8080, 9090]);
    assert_eq!(t.port, 8080);
    assert_eq!(t.env["MODE"], "web", "the service's environment wins");
    assert_eq!(m.route_path.as_deref(), Some("/api"));
    assert!(m.sticky && !m.stop_first && !m.one_shot);
    assert_eq!(t.health_path.as_deref(), Some("/api/health"));

    let migrate = demand("migrate");
    assert!(migrate.container.unwrap().stack.unwrap().one_shot);
    assert_eq!(migrate.replicas, 1);
    let agent = demand("agent");
    assert!(agent.global);
    // Only a service that bind-mounts repository files fetches them.
    let db = demand("db");
    assert_eq!(db.container.unwrap().stack.unwrap().files, None);
    let (app, mut stack) = (app(), stack());
    stack.services[2].mounts.push(Mount {
        source: MountSource::Repo("conf".into()),
        target: "/etc/conf".into(),
        read_only: true,
    });
    let files = StackFiles {
        server: "http://10.0.0.10:7700".into(),
        sha: "0123456789abcdef".into(),
    };
    let web = member_demand(
        &app,
        &stack,
        &stack.services[2],
        vec![],
        None,
        Some(&files),
        Default::default(),
    );
    let m = web.container.as_ref().unwrap().stack.as_ref().unwrap();
    assert_eq!(m.files, Some(files));
    assert_eq!(m.mounts[0].repo.as_deref(), Some("conf"));
    assert!(m.mounts[0].read_only);
    // Raw published ports: once per node.
    assert_eq!(web.max_per_node, Some(1), "from the file");
    let mut agent_svc = stack.services[3].clone();
    agent_svc.deploy.mode = DeployMode::Replicated;
    agent_svc.deploy.replicas = 3;
    agent_svc.publish.push(slipway_domain::stack::PublishSpec {
        container: 53,
        host: 5353,
        protocol: "udp".into(),
    });
    let published = member_demand(
        &app,
        &stack,
        &agent_svc,
        vec![],
        None,
        None,
        Default::default(),
    );
    assert_eq!(published.max_per_node, Some(1));
    assert_eq!(
        published.container.unwrap().stack.unwrap().publish,
        [TemplatePublish {
            container: 53,
            host: 5353,
            udp: true
        }]
    );
    assert_eq!(agent.request, Resources::new(500, 128 << 20));
}

#[test]
fn the_revision_alone_does_not_make_containers_differ() {
    let mut a = demand("web");
    let mut b = a.clone();
    a.container.as_mut().unwrap().revision = 3;
    b.container.as_mut().unwrap().revision = 4;
    b.replicas = 7;
    assert!(same_containers(&a, &b));
    b.container.as_mut().unwrap().image = "other".into();
    assert!(!same_containers(&a, &b));
}

fn replica(node: &str, index: u32, state: &str, revision: u64) -> NodeReplica {
    NodeReplica {
        node: node.into(),
        index,
        report: ReplicaReport {
            state: state.into(),
            detail: if state == "failed" {
                "the task exited with code 3".into()
            } else {
                String::new()
            },
            epoch: 1,
            updated_at: chrono::Utc::now(),
            container: None,
            host_port: None,
            address: None,
            revision: Some(revision),
            unreachable: None,
            ports: Default::default(),
        },
    }
}

#[test]
fn services_and_tasks_converge_on_their_revision() {
    let old = [
        replica("n1", 0, "healthy", 3),
        replica("n2", 1, "healthy", 3),
    ];
    assert_eq!(
        service_state(&old, 3, false, 2, 2, false),
        ServiceState::Ready
    );
    assert_eq!(
        service_state(&old, 4, false, 2, 2, false),
        ServiceState::Waiting
    );
    let half = [
        replica("n1", 0, "healthy", 4),
        replica("n2", 1, "running", 4),
    ];
    assert_eq!(
        service_state(&half, 4, false, 2, 2, false),
        ServiceState::Waiting
    );
    // A global service: every assigned node's replica, at least one.
    assert_eq!(
        service_state(&half[..1], 4, false, 0, 1, true),
        ServiceState::Ready
    );
    assert_eq!(
        service_state(&half[..1], 4, false, 0, 2, true),
        ServiceState::Waiting
    );
    // Not placed yet is not ready; scaled to zero is.
    assert_eq!(
        service_state(&[], 4, false, 0, 0, true),
        ServiceState::Waiting
    );
    assert_eq!(
        service_state(&[], 4, false, 1, 0, false),
        ServiceState::Waiting
    );
    assert_eq!(
        service_state(&[], 4, false, 0, 0, false),
        ServiceState::Ready
    );
    // Tasks: the report of this release's revision decides.
    let done = [replica("n1", 0, "completed", 4)];
    assert_eq!(
        service_state(&done, 4, true, 1, 1, false),
        ServiceState::Ready
    );
    assert_eq!(
        service_state(&done, 5, true, 1, 1, false),
        ServiceState::Waiting
    );
    let failed = [replica("n1", 0, "failed", 5)];
    assert_eq!(
        service_state(&failed, 5, true, 1, 1, false),
        ServiceState::TaskFailed("the task exited with code 3".into())
    );
    assert!(waiting_for(&half, 4, false).contains("replica 1 on n2 is running"));
}
